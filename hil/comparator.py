"""Drift comparator: residuals between the real device and its twin, and three drift detectors.

For every channel the runner hands over aligned arrays ``t_s``, ``real`` and ``twin`` (the twin
evaluated at the real samples' timestamps). The residual ``r = real − twin`` is watched by

1. a **tolerance band** ``|r| > abs_tol + rel_tol·|twin|`` that must persist for
   ``persistence_s`` (and, once fired, be respected again for ``persistence_s`` before it can
   fire again);
2. a **two-sided CUSUM** (Page 1954) on ``z = r/σ`` with reference value ``k`` and decision
   interval ``h`` in σ units. Each side is the Lindley recursion ``S_n = max(0, S_{n−1} + x_n)``
   (``x = z − k`` upwards, ``x = −z − k`` downwards), evaluated in closed form per segment as
   ``S = C − minimum.accumulate(min(C, 0))`` with ``C = cumsum(x)``;
3. an **EWMA chart** (Roberts 1959; Lucas & Saccucci 1990) ``E_n = (1−λ)E_{n−1} + λ z_n``
   computed with :func:`scipy.signal.lfilter`, against the *exact* time-varying limits
   ``±L·sqrt(λ/(2−λ)·(1 − (1−λ)^{2n}))`` (within 1 % of the asymptotic ones after ~2/λ
   samples; they keep the chart's false-alarm rate right from the start of a run).

σ is the channel's declared ``noise_sd`` or, when that is ``None``, a robust estimate from the
first ``noise_window_s`` of the run (:func:`robust_noise_sd`: MAD of the first differences,
one 3σ-rejection step, divided by √2). Differencing removes a linear drift exactly and the
rejection ignores the odd step or spike, so a drift already under way in the window does not
inflate σ.

Alarm semantics (what one :class:`DriftEvent` means)
----------------------------------------------------
Every detector reports **one event per drift episode**. After it fires in one direction it is
*latched* in that direction until its statistic is back at target, and only then re-armed:

* tolerance: the band must be respected again for ``persistence_s``;
* EWMA: ``E`` must come back to the target side (``E ≤ 0`` after a high alarm);
* CUSUM (``cusum_rearm = "latch"``, the default): the alarming side is reset to ``h`` and then
  runs as ``S_n = min(h, S_{n−1} + x_n)``; it is re-armed (reset to 0) when ``S`` reaches 0,
  i.e. when the evidence accumulated for the drift is used up (about ``h/k`` in-control
  samples). With ``cusum_rearm = "restart"`` the classic textbook rule applies instead: reset
  to 0 after every alarm, so a drift that persists fires again every ``≈ h/(δ − k)`` samples.

The classic restart rule turns one persistent drift into thousands of events per day, which is
noise for the QA engineer and makes the batch cost grow with the number of alarms; latching
keeps alarms rare, so the segment-wise recomputation after each alarm stays cheap.

Gaps (``real`` = NaN, e.g. while a device was lost) neither fire nor reset: NaN samples are
dropped before the detectors, whose state is held across the gap; the persistence clock of the
tolerance band pauses from the last sample before the gap to the first one after it; σ's
first differences never span a gap.

Onset estimates: the first sample after the detector's statistic was last at target (CUSUM:
after ``S`` was last 0, the classic Page/Hinkley change-point estimate; EWMA: after ``E`` was
last on the target side; tolerance: the first out-of-band sample of the episode). Magnitude:
mean residual from onset to detection, in channel units, and relative to the twin's mean over
the same span (taken as the mean of its values at onset and detection) when that is
meaningfully away from zero.

Why hand-written: river's detectors (``PageHinkley``, ``ADWIN``) are per-sample, do not
standardise by a channel's noise level and report neither onset nor magnitude; ruptures is
offline only. The detectors here are a few numpy/scipy primitives (``cumsum``,
``minimum.accumulate``, ``lfilter``) arranged so that the batch :func:`compare` and the live
:class:`LiveComparator` run the *same* block code (plus, for single samples, a plain-float
path doing the identical IEEE operations), which makes their events bit-identical whatever
the block sizes. Both CUSUM sides use one running sum: ``C`` of a phase is ``B − B₀`` with
``B = Σr/σ − k·i`` (high side) or ``−Σr/σ − k·i`` (low side), ``i`` the sample index.

Defaults (see ``docs/comparator.md``): ``k = 0.5`` (optimal for a 1σ shift) with ``h = 18``,
and ``λ = 0.01, L = 6.3``. The literature's ``h = 4–5`` (in-control ARL 170–470 samples)
would raise hundreds of false events per day at 1 Hz; with these values the in-control
average run lengths (Brook & Evans 1972 Markov chain / integral equation) are 2.1×10⁸
(CUSUM) and 1.3×10¹⁰ (EWMA) samples, and still 1.4×10⁷ and 1.2×10⁷ under a constant model
error of 0.1σ: under 1.5 % chance of any false event in 24 h at 1 Hz even then. The EWMA is
the small-shift detector (0.25σ found after ~6 k samples, CUSUM ~116 k), the CUSUM the fast
one (1σ after ~36 samples, 2σ after ~13).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import KW_ONLY, asdict, dataclass, fields
from typing import Any, Final, Literal, NoReturn, TypeAlias, cast, get_args

import numpy as np
from medtwin.drivers.errors import AnalysisError, ConfigurationError
from medtwin.drivers.units import parse_duration_s
from numpy.typing import ArrayLike, NDArray
from scipy.signal import lfilter
from scipy.stats import median_abs_deviation

__all__ = [
    "DETECTORS",
    "MIN_NOISE_PAIRS",
    "ChannelComparison",
    "ChannelSpec",
    "Detector",
    "Direction",
    "DriftEvent",
    "LiveComparator",
    "ResidualStats",
    "compare",
    "robust_noise_sd",
]

_log = logging.getLogger(__name__)

FloatArray: TypeAlias = NDArray[np.float64]
BoolArray: TypeAlias = NDArray[np.bool_]
IntArray: TypeAlias = NDArray[np.intp]

Detector: TypeAlias = Literal["tolerance", "cusum", "ewma"]
Direction: TypeAlias = Literal["high", "low"]
SigmaSource: TypeAlias = Literal["declared", "estimated", "pending", "unavailable"]
Rearm: TypeAlias = Literal["latch", "restart"]

DETECTORS: Final[tuple[Detector, ...]] = ("tolerance", "cusum", "ewma")

#: A σ estimate needs at least this many pairs of adjacent valid samples; with fewer, the
#: estimation window is extended until there are (the MAD of 30 differences is within about
#: ±20 % of σ; the 600 s default window at 1 Hz gives ±5 %).
MIN_NOISE_PAIRS: Final = 30

# Batch block length: 64 k float64 = 512 kB per array, so the dozen arrays one block touches
# stay in L2/L3 cache; chosen by measurement (bench_comparator), not critical.
_BATCH_BLOCK: Final = 1 << 16
# First CUSUM segment after a phase change; doubled while no alarm is found, so a phase of
# length m costs O(m) and an alarm costs O(_FIRST_CHUNK) extra.
_FIRST_CHUNK: Final = 256
_MAX_CHUNK: Final = 1 << 22
# Live blocks up to this length go through the per-sample path (cheaper than numpy below it).
_SCALAR_BLOCK: Final = 32
_ORDER: Final[dict[str, int]] = {"tolerance": 0, "cusum": 1, "ewma": 2}

# (t_s, valid-sample index, Σr before the sample, twin at the sample): what an event needs
# to know about its onset sample (Σr *through* the sample for the detection sample).
_Mark: TypeAlias = tuple[float, int, float, float]


# --------------------------------------------------------------------------------------------
# Public data model
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChannelSpec:
    """How one channel's residual is judged. Field names are the scenario file's keys.

    Parameters
    ----------
    name : str
        Channel name (``mass_g``, ``pressure_mmhg``, ...).
    unit : str
        Unit of the channel (for reports only).
    abs_tol : float
        Absolute half-width of the tolerance band, channel units; ``inf`` (default) switches
        the band off unless ``rel_tol`` is set.
    rel_tol : float
        Relative half-width of the band, as a fraction of ``|twin|`` (0.02 = 2 %).
    persistence_s : float
        How long, s, the band must be exceeded before it fires (and respected before it may
        fire again). Time inside data gaps does not count.
    noise_sd : float or None
        The residual's white-noise standard deviation σ, channel units; ``None`` estimates it
        from the first ``noise_window_s`` of the run.
    noise_window_s : float
        Length, s, of the window σ is estimated from.
    cusum_k, cusum_h : float
        CUSUM reference value and decision interval, in σ units.
    cusum_rearm : {"latch", "restart"}
        What the CUSUM does after an alarm (see the module docstring).
    ewma_lambda : float
        EWMA weight λ, 0 < λ ≤ 1.
    ewma_l : float
        EWMA limit width L, in standard deviations of the EWMA statistic.
    detectors : tuple of {"tolerance", "cusum", "ewma"}
        The detectors that run.
    min_samples : int
        No detector may fire before the channel has delivered this many valid samples
        (statistics still accumulate during the warm-up).
    """

    name: str
    _: KW_ONLY
    unit: str = ""
    abs_tol: float = math.inf
    rel_tol: float = 0.0
    persistence_s: float = 10.0
    noise_sd: float | None = None
    noise_window_s: float = 600.0
    cusum_k: float = 0.5
    cusum_h: float = 18.0
    cusum_rearm: Rearm = "latch"
    ewma_lambda: float = 0.01
    ewma_l: float = 6.3
    detectors: tuple[Detector, ...] = DETECTORS
    min_samples: int = 30

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigurationError(
                f"channel name must be a non-empty string, got {self.name!r}", field="tolerances"
            )
        if not isinstance(self.unit, str):
            self._fail("unit", f"expected a string, got {self.unit!r}")
        self._number("abs_tol", allow_inf=True, minimum=0.0, strict=False)
        self._number("rel_tol", minimum=0.0, strict=False)
        self._number("persistence_s", minimum=0.0, strict=False)
        if self.noise_sd is not None:
            self._number("noise_sd", minimum=0.0, strict=True)
        self._number("noise_window_s", minimum=0.0, strict=True)
        self._number("cusum_k", minimum=0.0, strict=False)
        self._number("cusum_h", minimum=0.0, strict=True)
        self._number("ewma_lambda", minimum=0.0, strict=True)
        if self.ewma_lambda > 1.0:
            self._fail("ewma_lambda", f"expected 0 < λ ≤ 1, got {self.ewma_lambda!r}")
        self._number("ewma_l", minimum=0.0, strict=True)
        if self.cusum_rearm not in get_args(Rearm):
            self._fail("cusum_rearm", f"expected 'latch' or 'restart', got {self.cusum_rearm!r}")
        if isinstance(self.min_samples, bool) or not isinstance(self.min_samples, int):
            self._fail("min_samples", f"expected an integer, got {self.min_samples!r}")
        if self.min_samples < 0:
            self._fail("min_samples", f"expected an integer ≥ 0, got {self.min_samples!r}")
        detectors: object = self.detectors
        if isinstance(detectors, str) or not isinstance(detectors, Iterable):
            self._fail("detectors", f"expected a list of {list(DETECTORS)}, got {detectors!r}")
        names = tuple(detectors)
        for det in names:
            if det not in DETECTORS:
                self._fail("detectors", f"unknown detector {det!r}; expected some of {DETECTORS}")
        if len(set(names)) != len(names):
            self._fail("detectors", f"detector listed twice in {list(names)}")
        object.__setattr__(self, "detectors", names)
        for name in ("abs_tol", "rel_tol", "persistence_s", "noise_window_s", "cusum_k"):
            object.__setattr__(self, name, float(getattr(self, name)))
        for name in ("cusum_h", "ewma_lambda", "ewma_l"):
            object.__setattr__(self, name, float(getattr(self, name)))
        if self.noise_sd is not None:
            object.__setattr__(self, "noise_sd", float(self.noise_sd))

    def _fail(self, name: str, message: str) -> NoReturn:
        raise ConfigurationError(message, field=f"tolerances.{self.name}.{name}")

    def _number(self, name: str, *, minimum: float, strict: bool, allow_inf: bool = False) -> None:
        value = getattr(self, name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            self._fail(name, f"expected a number, got {value!r}")
        value = float(value)
        if math.isnan(value) or (math.isinf(value) and not allow_inf):
            self._fail(name, f"expected a finite number, got {value!r}")
        if value < minimum or (strict and value == minimum):
            relation = ">" if strict else "≥"
            self._fail(name, f"expected a number {relation} {minimum:g}, got {value!r}")

    @property
    def needs_sigma(self) -> bool:
        """Whether a σ-based detector (CUSUM or EWMA) is enabled."""
        return "cusum" in self.detectors or "ewma" in self.detectors

    @classmethod
    def from_mapping(
        cls, name: str, table: Mapping[str, Any], *, source: str | None = None
    ) -> ChannelSpec:
        """Build a spec from a scenario's ``[tolerances.<name>]`` table.

        Keys are the field names of this class. ``persistence_s`` and ``noise_window_s`` also
        accept duration strings (``"30s"``, ``"10min"``); leaving ``noise_sd`` out means
        "estimate it".

        Raises
        ------
        ConfigurationError
            Naming ``source`` and ``tolerances.<name>.<key>`` for an unknown key, a value of
            the wrong type or out of range.
        """
        known = {f.name for f in fields(cls) if f.name not in ("name", "_")}
        kwargs: dict[str, Any] = {}
        for key, value in table.items():
            where = f"tolerances.{name}.{key}"
            if key == "name":
                if value != name:
                    raise ConfigurationError(
                        f"table is for channel {name!r} but says name = {value!r}",
                        source=source,
                        field=where,
                    )
                continue
            if key not in known:
                raise ConfigurationError(
                    f"unknown field {key!r}; expected one of {sorted(known)}",
                    source=source,
                    field=where,
                )
            if key in ("persistence_s", "noise_window_s") and isinstance(value, str):
                try:
                    value = parse_duration_s(value)
                except ValueError as exc:
                    raise ConfigurationError(str(exc), source=source, field=where) from None
            if key == "detectors" and isinstance(value, list):
                value = tuple(value)
            kwargs[key] = value
        try:
            return cls(name, **kwargs)
        except ConfigurationError as exc:
            message = str(exc).split(": ", 1)[-1] if exc.field else str(exc)
            raise ConfigurationError(message, source=source, field=exc.field) from None

    def as_json(self) -> dict[str, Any]:
        """The spec as JSON-safe values (``abs_tol = inf`` becomes ``null``: no absolute band)."""
        out = asdict(self)
        out["detectors"] = list(self.detectors)
        return {key: _json_float(value) for key, value in out.items()}


@dataclass(frozen=True)
class DriftEvent:
    """One detected drift episode on one channel.

    Attributes
    ----------
    channel, unit : str
        The channel and its unit.
    statistic : {"tolerance", "cusum", "ewma"}
        The detector that fired.
    direction : {"high", "low"}
        ``"high"`` when the real device reads above its twin.
    onset_t_s : float
        Estimated start of the drift, s (same clock as the input ``t_s``).
    detected_t_s : float
        Time of the sample at which the detector fired, s.
    magnitude : float
        Mean residual from onset to detection, channel units (signed).
    magnitude_rel : float or None
        ``magnitude / |mean twin|`` (0.02 = 2 %), the twin's mean over the span taken as the
        mean of its values at onset and at detection (exact for a twin that is linear over
        the span); None where that mean is not meaningfully away from zero: ``≤ abs_tol``
        when ``abs_tol`` is finite, else exactly zero.
    value : float
        The statistic when it fired: the residual (tolerance, channel units), ``S`` (CUSUM, σ
        units) or ``E`` (EWMA, σ units).
    threshold : float
        What it crossed: the band half-width (channel units), ``h`` or the EWMA limit (σ).
    n_samples : int
        Valid samples from onset to detection, inclusive.
    """

    channel: str
    statistic: Detector
    direction: Direction
    onset_t_s: float
    detected_t_s: float
    magnitude: float
    magnitude_rel: float | None
    value: float
    threshold: float
    n_samples: int
    unit: str = ""

    def as_json(self) -> dict[str, Any]:
        """The event as a JSON-safe dict (non-finite floats become ``null``)."""
        return {key: _json_float(value) for key, value in asdict(self).items()}


@dataclass(frozen=True)
class ResidualStats:
    """Summary of one channel's residual ``real − twin`` over the valid samples.

    ``mean``, ``sd`` (sample, ddof = 1), ``rms`` and ``max_abs`` are in channel units and NaN
    when there are too few samples; ``sigma`` is the σ the CUSUM/EWMA used (None when it
    could not be estimated) and ``sigma_source`` says where it came from: ``"declared"``
    (``noise_sd``), ``"estimated"``, ``"pending"`` (live, estimation window still open) or
    ``"unavailable"`` (the residual did not vary, or the run was too short to estimate it).
    """

    channel: str
    unit: str
    n: int
    n_missing: int
    mean: float
    sd: float
    rms: float
    max_abs: float
    sigma: float | None
    sigma_source: SigmaSource

    def as_json(self) -> dict[str, Any]:
        """The statistics as a JSON-safe dict (NaN becomes ``null``)."""
        return {key: _json_float(value) for key, value in asdict(self).items()}


@dataclass(frozen=True, eq=False)
class ChannelComparison:
    """Result of :func:`compare` for one channel.

    The trace arrays all have shape ``(n,)``, aligned with the input ``t_s`` (or are None
    when :func:`compare` was called with ``traces=False``); they are NaN at gaps and where a
    detector did not run (disabled, σ unavailable, no band declared). ``z`` is ``r/σ``;
    ``cusum_pos``/``cusum_neg`` are the two CUSUM sides (σ units, the alarming value at
    alarm samples); ``ewma_limit`` is the (positive) EWMA limit, σ units;
    ``tolerance_band`` the band half-width, channel units.
    """

    spec: ChannelSpec
    events: tuple[DriftEvent, ...]
    stats: ResidualStats
    t_s: FloatArray
    residual: FloatArray | None
    z: FloatArray | None
    cusum_pos: FloatArray | None
    cusum_neg: FloatArray | None
    ewma: FloatArray | None
    ewma_limit: FloatArray | None
    tolerance_band: FloatArray | None

    def as_json(self) -> dict[str, Any]:
        """Spec, statistics and events for the run summary (the traces are left out)."""
        return {
            "channel": self.spec.name,
            "spec": self.spec.as_json(),
            "stats": self.stats.as_json(),
            "events": [event.as_json() for event in self.events],
        }


def _json_float(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# --------------------------------------------------------------------------------------------
# σ estimate
# --------------------------------------------------------------------------------------------


def robust_noise_sd(residual: ArrayLike) -> float | None:
    """White-noise σ of a residual, robustly, from its first differences.

    Over the differences ``Δr`` of adjacent samples that are both valid (NaN marks a gap; no
    difference spans one):

    1. ``s₀ = MAD(Δr)/Φ⁻¹(3/4)`` (normalised median absolute deviation);
    2. one reweighting step: the standard deviation of the differences within ``±3·s₀`` of
       their median, divided by ``sqrt(1 − 6φ(3)/(1 − 2Φ(−3)))`` to undo the truncation of
       a normal distribution at ±3σ;
    3. ``σ̂ = that / √2`` (the difference of two independent samples has variance 2σ²).

    Differencing cancels a linear trend exactly and the rejection step ignores a minority of
    steps and spikes, so a drift already under way in the window does not inflate σ̂. The
    reweighting recovers most of the efficiency MAD gives up: over 600 white-noise samples σ̂
    scatters by 3.7 % (MAD alone: 5.2 %), which matters because an underestimated σ inflates
    every standardised residual. When more than half of the differences are identical (a
    quantised, nearly constant residual) ``s₀`` is 0 and the plain standard deviation of the
    differences is used instead. Spreads below 10⁻¹⁰ of the largest difference count as 0:
    they are the rounding of a noiseless residual, not noise.

    The estimator assumes white noise: a low-pass filtered instrument (correlated samples)
    makes it too small; declare ``noise_sd`` for such channels.

    Parameters
    ----------
    residual : array_like, shape (n,)
        Residual samples in time order, NaN at gaps.

    Returns
    -------
    float or None
        σ in the residual's units, or None with fewer than :data:`MIN_NOISE_PAIRS` pairs or
        a residual that does not vary at all.
    """
    r = np.asarray(residual, dtype=np.float64)
    return _sigma_from_diffs(r[1:] - r[:-1])


# Variance of a standard normal truncated to ±3: 1 − 2·3·φ(3)/(1 − 2Φ(−3)).
_TRUNCATED_VAR: Final = 1.0 - 6.0 * math.exp(-4.5) / math.sqrt(2.0 * math.pi) / math.erf(
    3.0 / math.sqrt(2.0)
)


_ROUNDING: Final = 1e-10


def _sigma_from_diffs(diffs: FloatArray) -> float | None:
    d = diffs[~np.isnan(diffs)]
    if d.size < MIN_NOISE_PAIRS:
        return None
    center = float(np.median(d))
    s0 = float(median_abs_deviation(d, scale="normal"))
    # Spreads below this are floating-point rounding of a noiseless residual (a display
    # counter minus a smooth twin, say), not noise.
    rounding = _ROUNDING * float(np.max(np.abs(d)))
    if s0 > rounding:
        inliers = d[np.abs(d - center) <= 3.0 * s0]
        spread = math.sqrt(float(np.var(inliers)) / _TRUNCATED_VAR)
    else:
        spread = float(np.std(d, ddof=1))
    sigma = spread / math.sqrt(2.0)
    return sigma if spread > rounding and math.isfinite(sigma) else None


# --------------------------------------------------------------------------------------------
# Block engine shared by compare() and LiveComparator
# --------------------------------------------------------------------------------------------

_INDEX_BASE: Final = np.arange(_BATCH_BLOCK, dtype=np.float64)
# The exact EWMA limits are computed this many samples at a time until (1 − λ)^(2n) no
# longer changes them; stopping there also keeps the product out of the (slow) subnormals.
_LIMIT_SPAN: Final = 4096


class _Work:
    """Scratch arrays reused from block to block.

    Large temporaries are not free: once a few hundred kB are alive at once, the allocator
    maps fresh pages for every block, and on a VM a first touch costs far more than the
    arithmetic (measured: three live 512 kB temporaries made a 30 µs expression take 1.6 ms).
    """

    def __init__(self) -> None:
        self.cap = -1
        self.ensure(0)

    def ensure(self, n: int) -> None:
        if n <= self.cap:
            return
        self.cap = n
        self.r, self.P, self.g, self.tau, self.tmp = (np.empty(n + 1) for _ in range(5))
        self.high, self.low, self.run, self.stat, self.z = (np.empty(n + 1) for _ in range(5))
        self.mask, self.mask2 = (np.empty(n + 1, dtype=bool) for _ in range(2))


@dataclass(slots=True)
class _Block:
    """The valid samples of one input block, with what every detector needs.

    In batch use the arrays are views of the engine's scratch space, valid until the next
    block; :meth:`keep` makes an independent copy for blocks that wait for σ.
    """

    t: FloatArray  # (m,) s
    r: FloatArray  # (m,) residual
    twin: FloatArray  # (m,)
    g: FloatArray  # (m,) index among the channel's valid samples, as float
    P: FloatArray  # (m+1,) P[j] = Σ r over the channel's valid samples before sample j
    tau: FloatArray | None  # (m,) s, clock that pauses across gaps (tolerance band only)
    offset: int  # valid-sample index of the first sample
    raw: slice | IntArray  # where the samples sit in the traces

    def mark(self, j: int) -> _Mark:
        return (float(self.t[j]), self.offset + j, float(self.P[j]), float(self.twin[j]))

    def here(self, j: int) -> _Mark:
        """Like :meth:`mark` but with Σr *through* sample ``j``."""
        return (float(self.t[j]), self.offset + j, float(self.P[j + 1]), float(self.twin[j]))

    def keep(self) -> _Block:
        tau = None if self.tau is None else self.tau.copy()
        raw = self.raw if isinstance(self.raw, slice) else self.raw.copy()
        return _Block(
            self.t.copy(),
            self.r.copy(),
            self.twin.copy(),
            self.g.copy(),
            self.P.copy(),
            tau,
            self.offset,
            raw,
        )


@dataclass(slots=True)
class _Trace:
    """Full-length trace arrays that compare() returns (None in live use)."""

    residual: FloatArray
    z: FloatArray
    cusum_pos: FloatArray
    cusum_neg: FloatArray
    ewma: FloatArray
    ewma_limit: FloatArray
    band: FloatArray

    @classmethod
    def empty(cls, n: int) -> _Trace:
        return cls(*(np.full(n, np.nan) for _ in range(7)))


@dataclass(slots=True)
class _TolSide:
    high: bool
    armed: bool = True
    cur_out: bool | None = None  # category of the current run; None before the first sample
    run_tau: float = 0.0
    run_mark: _Mark | None = None


@dataclass(slots=True)
class _CusumSide:
    high: bool
    ext: float  # running min (armed) / max (latched) of the base over the phase, incl. its start
    latched: bool = False
    onset: _Mark | None = None  # first sample after the last zero; None = the next sample
    chunk: int = _FIRST_CHUNK


@dataclass(slots=True)
class _EwmaState:
    zi: float = 0.0  # lfilter's internal state, (1 − λ)·E of the last sample
    q: float = 1.0  # (1 − λ)^(2n) of the exact limits; 0.0 once it no longer matters
    armed_high: bool = True
    armed_low: bool = True
    onset_high: _Mark | None = None
    onset_low: _Mark | None = None


class _ChannelEngine:
    """All state of one channel; :meth:`feed` processes one block of raw samples.

    Bit-identical results for any split of the input into blocks rest on three rules: running
    sums are continued from the carried value (``cumsum`` of ``[carry, x…]``, ``lfilter`` with
    the carried ``zi``), element-wise formulas never depend on where a block starts, and every
    search (phase ends, last zero) is exact.
    """

    def __init__(self, spec: ChannelSpec, *, trace: _Trace | None) -> None:
        self.spec = spec
        self.trace = trace
        # input bookkeeping
        self.n_raw = 0
        self.n_valid = 0
        self.last_t: float | None = None
        self.t_first: float | None = None
        self.last_valid = False
        self.last_r = math.nan
        self.last_valid_t = math.nan
        self.p_sum = 0.0
        self.gap_s = 0.0
        self.last_tau = -math.inf
        # σ
        self.sigma: float | None = spec.noise_sd
        self.sigma_source: SigmaSource = "declared" if spec.noise_sd is not None else "pending"
        self.window_open = spec.noise_sd is None
        self.window_diffs: list[FloatArray] = []
        self.window_pairs = 0
        self.pending: list[_Block] = []
        # detectors
        self.band_on = "tolerance" in spec.detectors and not (
            math.isinf(spec.abs_tol) and spec.rel_tol == 0.0
        )
        self.tol = (_TolSide(high=True), _TolSide(high=False))
        # Both CUSUM sides run on a "base" array B with S = B − min(B over the phase): for
        # the high side B = Σr/σ − k·i, for the low side B = −Σr/σ − k·i. Before the first
        # sample (i = −1, Σr = 0) both equal k.
        k = spec.cusum_k
        self.cusum = (_CusumSide(high=True, ext=k), _CusumSide(high=False, ext=k))
        self.ewma = _EwmaState()
        self.min_index = float(max(spec.min_samples - 1, 0))
        lam = spec.ewma_lambda
        self.ewma_b = np.array([lam])
        self.ewma_a = np.array([1.0, -(1.0 - lam)])
        self.ewma_b0 = float(self.ewma_b[0])
        self.ewma_a1 = float(self.ewma_a[1])
        self.ewma_q_step = (1.0 - lam) * (1.0 - lam)
        self.ewma_c = lam / (2.0 - lam)
        self.ewma_lim_inf = spec.ewma_l * math.sqrt(self.ewma_c * (1.0 - 0.0))
        self.rel_floor = spec.abs_tol if math.isfinite(spec.abs_tol) else 0.0
        # residual statistics (pairwise update of mean and M2, Chan, Golub & LeVeque 1979)
        self.stat_n = 0
        self.stat_mean = 0.0
        self.stat_m2 = 0.0
        self.stat_max_abs = math.nan
        self.work = _Work()

    # ---------------------------------------------------------------- input
    def feed(self, t: FloatArray, real: FloatArray, twin: FloatArray) -> list[DriftEvent]:
        """Validate, then process one block of raw samples; return its events in time order."""
        if not (t.shape == real.shape == twin.shape) or t.ndim != 1:
            raise AnalysisError(
                f"channel {self.spec.name!r}: t_s, real and twin must be 1-D arrays of one "
                f"length, got shapes {t.shape}, {real.shape} and {twin.shape}"
            )
        n = t.shape[0]
        if n == 0:
            return []
        w = self.work
        w.ensure(n)
        r = np.subtract(real, twin, out=w.r[:n])
        all_valid = bool(np.isfinite(r, out=w.mask[:n]).all())
        self._validate(t, real, twin, all_valid)
        # -- from here on the block is accepted and the state changes
        valid = None if all_valid else ~np.isnan(r)
        raw_offset = self.n_raw
        if self.t_first is None:
            self.t_first = float(t[0])
        if self.trace is not None:
            self.trace.residual[raw_offset : raw_offset + n] = r
        blk = self._prepare(t, r, twin, valid, raw_offset)
        events: list[DriftEvent] = []
        if blk is not None:
            rmax, rmin = self._update_stats(blk.r)
            if self.band_on:
                events.extend(self._tolerance(blk, rmax, rmin))
        if self.window_open:
            self._noise_window(t, r, valid, blk, events)
        elif blk is not None and self.sigma is not None and self.spec.needs_sigma:
            events.extend(self._statistical(blk))
        # carried input state (after the window search, which reads the previous values)
        self.n_raw += n
        self.last_t = float(t[-1])
        self.last_valid = True if valid is None else bool(valid[-1])
        if blk is not None:
            self.last_r = float(blk.r[-1])
            self.last_valid_t = float(blk.t[-1])
        if len(events) > 1:
            events.sort(key=_event_key)
        return events

    def _validate(self, t: FloatArray, real: FloatArray, twin: FloatArray, all_valid: bool) -> None:
        name = self.spec.name
        n = t.shape[0]
        first, last = float(t[0]), float(t[-1])
        increasing = math.isfinite(first) and math.isfinite(last)
        if increasing and n > 1:
            w = self.work
            steps = np.subtract(t[1:], t[:-1], out=w.tmp[: n - 1])
            increasing = bool(np.greater(steps, 0.0, out=w.mask2[: n - 1]).all())
        if increasing and self.last_t is not None:
            increasing = first > self.last_t
        if not increasing:
            bad = ~np.isfinite(t)
            if bad.any():
                i = int(np.argmax(bad))
                raise AnalysisError(
                    f"channel {name!r}: t_s[{self.n_raw + i}] = {float(t[i])!r} is not a finite "
                    "time; every sample needs a timestamp (mark a lost reading with real = NaN)"
                )
            if self.last_t is not None and not first > self.last_t:
                raise AnalysisError(
                    f"channel {name!r}: t_s[{self.n_raw}] = {first!r} s does not come after the "
                    f"previous sample at {self.last_t!r} s; timestamps must strictly increase"
                )
            i = int(np.argmax(~(np.diff(t) > 0))) + 1
            raise AnalysisError(
                f"channel {name!r}: t_s[{self.n_raw + i}] = {float(t[i])!r} s does not come "
                f"after t_s[{self.n_raw + i - 1}] = {float(t[i - 1])!r} s; timestamps must "
                "strictly increase"
            )
        if all_valid:
            return
        bad = ~np.isfinite(twin)
        if bad.any():
            i = int(np.argmax(bad))
            raise AnalysisError(
                f"channel {name!r}: twin[{self.n_raw + i}] = {float(twin[i])!r} at "
                f"t = {float(t[i])!r} s is not finite; the twin must be evaluated at every sample"
            )
        bad = np.isinf(real)
        if bad.any():
            i = int(np.argmax(bad))
            raise AnalysisError(
                f"channel {name!r}: real[{self.n_raw + i}] = {float(real[i])!r} at "
                f"t = {float(t[i])!r} s is infinite; a lost reading is NaN, anything else must be "
                "a finite number"
            )

    def _prepare(
        self,
        t: FloatArray,
        r: FloatArray,
        twin: FloatArray,
        valid: BoolArray | None,
        raw_offset: int,
    ) -> _Block | None:
        n = t.shape[0]
        w = self.work
        raw: slice | IntArray
        gap_follow: BoolArray | None = None
        if valid is None:
            m = n
            vt, vr, vtwin = t, r, twin
            raw = slice(raw_offset, raw_offset + n)
            # a gap can only end at the first sample (the previous block ended invalid)
            gap_first = not self.last_valid and self.n_valid > 0
        else:
            idx = np.flatnonzero(valid)
            m = idx.shape[0]
            if m == 0:
                return None
            vt, vr, vtwin = t[idx], r[idx], twin[idx]
            raw = idx + raw_offset
            prev_valid = np.empty(n, dtype=bool)
            prev_valid[0] = self.last_valid
            prev_valid[1:] = valid[:-1]
            gap_follow = ~prev_valid[idx]
            if self.n_valid == 0:
                gap_follow[0] = False  # the channel's first sample follows nothing
            gap_first = False
        tau: FloatArray | None = None
        if self.band_on:
            # The persistence clock τ = t − (time spent in gaps so far). A gap spans from the
            # last valid sample before it to the first one after it.
            # Rounding can make t − gaps step back by an ulp at a gap; τ is kept
            # non-decreasing (a running max), which the run logic relies on.
            if gap_follow is None or not gap_follow.any():
                if gap_first:
                    self.gap_s += float(vt[0]) - self.last_valid_t
                tau = np.subtract(vt, self.gap_s, out=w.tau[:m])
            else:
                prev_t = np.empty(m)
                prev_t[0] = self.last_valid_t
                prev_t[1:] = vt[:-1]
                gaps = np.empty(m + 1)
                gaps[0] = self.gap_s
                gaps[1:] = np.where(gap_follow, vt - prev_t, 0.0)
                np.cumsum(gaps, out=gaps)
                tau = np.subtract(vt, gaps[1:], out=w.tau[:m])
                self.gap_s = float(gaps[-1])
            if tau[0] < self.last_tau:
                tau[0] = self.last_tau
                np.maximum.accumulate(tau, out=tau)
            elif gap_follow is not None and gap_follow.any():
                np.maximum.accumulate(tau, out=tau)
            self.last_tau = float(tau[-1])
        P = w.P[: m + 1]
        P[0] = self.p_sum
        P[1:] = vr
        np.cumsum(P, out=P)
        self.p_sum = float(P[-1])
        g = w.g[:m]
        if m <= _INDEX_BASE.shape[0]:
            np.add(_INDEX_BASE[:m], float(self.n_valid), out=g)
        else:
            g[:] = np.arange(self.n_valid, self.n_valid + m, dtype=np.float64)
        blk = _Block(vt, vr, vtwin, g, P, tau, self.n_valid, raw)
        self.n_valid += m
        return blk

    def _update_stats(self, r: FloatArray) -> tuple[float, float]:
        nb = r.shape[0]
        rmax, rmin = float(r.max()), float(r.min())
        mean_b = float(r.mean())
        dev = np.subtract(r, mean_b, out=self.work.tmp[:nb])
        np.square(dev, out=dev)
        m2_b = float(dev.sum())
        max_b = max(abs(rmax), abs(rmin))
        na = self.stat_n
        if na == 0:
            self.stat_mean, self.stat_m2, self.stat_max_abs = mean_b, m2_b, max_b
        else:
            n = na + nb
            delta = mean_b - self.stat_mean
            self.stat_mean += delta * nb / n
            self.stat_m2 += m2_b + delta * delta * na * nb / n
            self.stat_max_abs = max(self.stat_max_abs, max_b)
        self.stat_n = na + nb
        return rmax, rmin

    def stats(self) -> ResidualStats:
        n = self.stat_n
        mean = self.stat_mean if n else math.nan
        sd = math.sqrt(self.stat_m2 / (n - 1)) if n > 1 else math.nan
        rms = math.sqrt(self.stat_m2 / n + mean * mean) if n else math.nan
        return ResidualStats(
            channel=self.spec.name,
            unit=self.spec.unit,
            n=n,
            n_missing=self.n_raw - self.n_valid,
            mean=mean,
            sd=sd,
            rms=rms,
            max_abs=self.stat_max_abs if n else math.nan,
            sigma=self.sigma,
            sigma_source=self.sigma_source,
        )

    # ---------------------------------------------------------------- σ window
    def _noise_window(
        self,
        t: FloatArray,
        r: FloatArray,
        valid: BoolArray | None,
        blk: _Block | None,
        events: list[DriftEvent],
    ) -> None:
        """Collect first differences until the window is complete, then estimate σ.

        The window closes at the first sample that is ``noise_window_s`` or more after the
        channel's first sample *and* has at least MIN_NOISE_PAIRS adjacent valid pairs before
        it; σ comes from those pairs. The rule only looks at the data, so live and batch close
        it at the same sample.
        """
        assert self.t_first is not None
        n = t.shape[0]
        if valid is None:
            valid = np.ones(n, dtype=bool)
        prev_valid = np.empty(n, dtype=bool)
        prev_valid[0] = self.last_valid
        prev_valid[1:] = valid[:-1]
        pair_end = valid & prev_valid
        pairs_through = np.cumsum(pair_end) + self.window_pairs
        pairs_before = np.empty(n, dtype=np.int64)
        pairs_before[0] = self.window_pairs
        pairs_before[1:] = pairs_through[:-1]
        closes = (t - self.t_first >= self.spec.noise_window_s) & (pairs_before >= MIN_NOISE_PAIRS)
        stop = int(np.argmax(closes)) if closes.any() else n
        if stop:
            prev_r = np.empty(stop)
            prev_r[0] = self.last_r
            prev_r[1:] = r[: stop - 1]
            self.window_diffs.append((r[:stop] - prev_r)[pair_end[:stop]])
            self.window_pairs = int(pairs_through[stop - 1])
        if blk is not None and self.spec.needs_sigma:
            self.pending.append(blk.keep())
        if stop < n:
            events.extend(self._close_window(complete=True))

    def _close_window(self, *, complete: bool) -> list[DriftEvent]:
        """Estimate σ from the collected differences and catch up on the buffered samples."""
        self.window_open = False
        diffs = np.concatenate(self.window_diffs) if self.window_diffs else np.empty(0)
        self.window_diffs = []
        self.sigma = _sigma_from_diffs(diffs)
        pending, self.pending = self.pending, []
        if self.sigma is None:
            self.sigma_source = "unavailable"
            if not self.spec.needs_sigma:
                return []
            reason = (
                f"the residual did not vary over the first {self.spec.noise_window_s:g} s"
                if complete
                else f"the run ended with {diffs.size} pairs of adjacent readings, fewer "
                f"than the {MIN_NOISE_PAIRS} needed"
            )
            _log.warning(
                "channel %r: %s; no σ, so the CUSUM and EWMA detectors did not run "
                "(declare noise_sd to enable them)",
                self.spec.name,
                reason,
            )
            return []
        self.sigma_source = "estimated"
        events: list[DriftEvent] = []
        if self.spec.needs_sigma:
            for old in pending:
                events.extend(self._statistical(old))
        return events

    def finish(self) -> list[DriftEvent]:
        """End of the run: a σ window still open is closed with the samples there are."""
        if not self.window_open:
            return []
        events = self._close_window(complete=False)
        events.sort(key=_event_key)
        return events

    # ---------------------------------------------------------------- tolerance band
    def _tolerance(self, blk: _Block, rmax: float, rmin: float) -> list[DriftEvent]:
        spec = self.spec
        band: FloatArray | float
        if spec.rel_tol == 0.0:
            band = spec.abs_tol
        else:
            band = spec.abs_tol + spec.rel_tol * np.abs(blk.twin)
        if self.trace is not None:
            self.trace.band[blk.raw] = band
        events: list[DriftEvent] = []
        for side in self.tol:
            out: BoolArray | None
            if isinstance(band, float):
                quiet = rmax <= band if side.high else rmin >= -band
                out = None if quiet else (blk.r > band if side.high else blk.r < -band)
            else:
                out = blk.r > band if side.high else blk.r < -band
                if not out.any():
                    out = None
            events.extend(self._tolerance_side(side, blk, out, band))
        return events

    def _tolerance_side(
        self, side: _TolSide, blk: _Block, out: BoolArray | None, band: FloatArray | float
    ) -> list[DriftEvent]:
        """Debounced band of one direction: fire when out for ``persistence_s``, re-arm when in.

        Works on runs (maximal stretches of samples out of / inside the band), so the cost
        beyond one comparison per sample grows with the number of excursions, not samples.
        A run *qualifies* once ``τ − τ(run start) ≥ persistence_s`` (and, for an out-run,
        the warm-up is over); an out-run that qualifies while armed fires and disarms, an
        in-run that qualifies re-arms. τ never decreases, so an in-run qualifies iff its last
        sample does.
        """
        persistence = self.spec.persistence_s
        tau = blk.tau
        assert tau is not None
        n = tau.shape[0]
        if out is None:  # the whole block is inside the band in this direction
            if side.cur_out is not False:
                side.cur_out = False
                side.run_tau = float(tau[0])
                side.run_mark = blk.mark(0)
            if not side.armed:
                side.armed = bool(tau[-1] - side.run_tau >= persistence)
            return []
        pos = np.flatnonzero(out)
        breaks = np.flatnonzero(pos[1:] - pos[:-1] > 1) + 1
        first_i = np.concatenate(([0], breaks))
        last_i = np.concatenate((breaks - 1, [pos.shape[0] - 1]))
        out_start, out_end = pos[first_i], pos[last_i]
        runs = out_start.shape[0]
        # elapsed time at every out sample since the start of its run
        start_tau = tau[out_start]
        continues_out = side.cur_out is True and out_start[0] == 0
        if continues_out:
            start_tau[0] = side.run_tau
        run_of = np.repeat(np.arange(runs), last_i - first_i + 1)
        qualified = tau[pos] - start_tau[run_of] >= persistence
        if blk.g[0] < self.min_index:
            qualified &= blk.g[pos] >= self.min_index
        fire_at = np.full(runs, -1)
        hits = np.flatnonzero(qualified)
        if hits.size:
            ids, first = np.unique(run_of[hits], return_index=True)
            fire_at[ids] = pos[hits[first]]
        # the in-run before each out-run, and the one after the last
        in_start = np.concatenate(([0], out_end + 1))
        in_end = np.concatenate((out_start - 1, [n - 1]))
        present = in_end >= in_start
        in_tau = tau[np.minimum(in_start, n - 1)]
        if side.cur_out is False and present[0]:
            in_tau[0] = side.run_tau  # continues the carried in-run
        in_ok = present & (tau[np.maximum(in_end, 0)] - in_tau >= persistence)
        # assertions in time order: in-run k, out-run k, …, the trailing in-run
        kinds = np.zeros(2 * runs + 1, dtype=bool)
        kinds[1::2] = True
        asserted = np.empty(2 * runs + 1, dtype=bool)
        asserted[0::2] = in_ok
        asserted[1::2] = fire_at >= 0
        order = np.flatnonzero(asserted)
        events: list[DriftEvent] = []
        if order.size:
            kind = kinds[order]
            before = np.empty_like(kind)
            before[0] = not side.armed
            before[1:] = kind[:-1]
            for k in (order[kind & ~before] // 2).tolist():
                f = int(fire_at[k])
                carried = k == 0 and continues_out
                onset = side.run_mark if carried else blk.mark(int(out_start[k]))
                assert onset is not None
                threshold = band if isinstance(band, float) else float(band[f])
                events.append(
                    self._event(
                        "tolerance", side.high, onset, blk.here(f), float(blk.r[f]), threshold
                    )
                )
            side.armed = not bool(kind[-1])
        # carry the run the block ends in
        if out_end[-1] == n - 1:
            if not (runs == 1 and continues_out):
                side.run_tau = float(start_tau[-1])
                side.run_mark = blk.mark(int(out_start[-1]))
            side.cur_out = True
        else:
            j = int(out_end[-1]) + 1
            side.run_tau = float(tau[j])
            side.run_mark = blk.mark(j)
            side.cur_out = False
        return events

    # ---------------------------------------------------------------- CUSUM and EWMA
    def _statistical(self, blk: _Block) -> list[DriftEvent]:
        sigma = self.sigma
        assert sigma is not None
        trace = self.trace
        m = blk.t.shape[0]
        events: list[DriftEvent] = []
        w = self.work
        if "cusum" in self.spec.detectors:
            high_base = np.divide(blk.P[1:], sigma, out=w.high[:m])
            k_i = np.multiply(blk.g, self.spec.cusum_k, out=w.tmp[:m])
            low_base = np.add(high_base, k_i, out=w.low[:m])
            np.negative(low_base, out=low_base)
            np.subtract(high_base, k_i, out=high_base)
            for side, base in zip(self.cusum, (high_base, low_base), strict=True):
                s_trace = None if trace is None else np.empty(m)
                events.extend(self._cusum_side(side, blk, base, s_trace))
                if trace is not None:
                    (trace.cusum_pos if side.high else trace.cusum_neg)[blk.raw] = s_trace
        if "ewma" in self.spec.detectors or trace is not None:
            z = np.divide(blk.r, sigma, out=w.z[:m])
            if trace is not None:
                trace.z[blk.raw] = z
            if "ewma" in self.spec.detectors:
                events.extend(self._ewma(blk, z))
        return events

    def _cusum_side(
        self, side: _CusumSide, blk: _Block, base: FloatArray, s_trace: FloatArray | None
    ) -> list[DriftEvent]:
        """One CUSUM side over one block, segment by segment (a segment ends at a phase change).

        With ``B`` the side's base array and ``B₀`` its value at the phase's first sample:
        armed, ``S = B − min(B₀, running min B)`` (the Lindley recursion
        ``S_n = max(0, S_{n−1} + x_n)`` in closed form); latched, ``S = h − (max(B₀, running
        max B) − B)``, i.e. ``S_n = min(h, S_{n−1} + x_n)``. A phase ends at an alarm (armed)
        or when ``S`` reaches 0 (latched); that sample starts the next phase.
        """
        h = self.spec.cusum_h
        restart = self.spec.cusum_rearm == "restart"
        n = base.shape[0]
        g = blk.g
        events: list[DriftEvent] = []
        pos = 0
        while pos < n:
            end = min(n, pos + side.chunk)
            X = base[pos:end]
            ext = side.ext
            run = self.work.run[: end - pos]
            if not side.latched:
                M = np.minimum.accumulate(X, out=run)
                np.minimum(M, ext, out=M)
                stat = np.subtract(X, M, out=self.work.stat[: end - pos])
                a = -1
                if float(stat.max()) > h:
                    hit = stat > h
                    if g[pos] < self.min_index:
                        hit &= g[pos:end] >= self.min_index
                    if hit.any():
                        a = int(np.argmax(hit))
                if a < 0:
                    if s_trace is not None:
                        s_trace[pos:end] = stat
                    side.ext = float(M[-1])
                    # the last zero of S is the last place B reaches its new minimum
                    p, low = _last_min(X)
                    if low <= ext:
                        j = pos + p + 1
                        side.onset = blk.mark(j) if j < n else None
                    elif side.onset is None:
                        side.onset = blk.mark(pos)
                    pos = end
                    side.chunk = min(2 * side.chunk, _MAX_CHUNK)
                    continue
                q = pos + a
                if s_trace is not None:
                    s_trace[pos : q + 1] = stat[: a + 1]
                onset = side.onset if side.onset is not None else blk.mark(pos)
                if a > 0:
                    p, low = _last_min(X[:a])
                    if low <= ext:
                        onset = blk.mark(pos + p + 1)
                events.append(
                    self._event("cusum", side.high, onset, blk.here(q), float(stat[a]), h)
                )
                side.latched = not restart
            else:
                Mx = np.maximum.accumulate(X, out=run)
                np.maximum(Mx, ext, out=Mx)
                y = np.subtract(Mx, X, out=self.work.stat[: end - pos])  # h − S
                if float(y.max()) < h:
                    if s_trace is not None:
                        np.subtract(h, y, out=s_trace[pos:end])
                    side.ext = float(Mx[-1])
                    pos = end
                    side.chunk = min(2 * side.chunk, _MAX_CHUNK)
                    continue
                b = int(np.argmax(y >= h))
                q = pos + b
                if s_trace is not None:
                    np.subtract(h, y[:b], out=s_trace[pos:q])
                    s_trace[q] = 0.0
                side.latched = False
            # the phase ends at sample q, which starts the next one
            side.ext = float(base[q])
            side.onset = None
            side.chunk = _FIRST_CHUNK
            pos = q + 1
        return events

    def _ewma_limits(self, n: int) -> FloatArray | float:
        """Exact limits ``L·sqrt(λ/(2−λ)·(1 − (1−λ)^{2i}))`` for the next ``n`` samples."""
        st = self.ewma
        if st.q == 0.0:
            return self.ewma_lim_inf
        parts: list[FloatArray] = []
        done = 0
        while done < n and st.q != 0.0:
            span = min(n - done, _LIMIT_SPAN)
            q = np.full(span + 1, self.ewma_q_step)
            q[0] = st.q
            np.cumprod(q, out=q)
            parts.append(self.spec.ewma_l * np.sqrt(self.ewma_c * (1.0 - q[1:])))
            # once 1 − q rounds to 1 the limits are the asymptotic ones, exactly
            st.q = 0.0 if 1.0 - q[-1] == 1.0 else float(q[-1])
            done += span
        if done < n:
            parts.append(np.full(n - done, self.ewma_lim_inf))
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _ewma(self, blk: _Block, z: FloatArray) -> list[DriftEvent]:
        st = self.ewma
        filtered = lfilter(self.ewma_b, self.ewma_a, z, zi=np.array([st.zi]))
        ewma = cast(FloatArray, filtered[0])
        st.zi = float(filtered[1][0])
        n = ewma.shape[0]
        lim = self._ewma_limits(n)
        if self.trace is not None:
            self.trace.ewma[blk.raw] = ewma
            self.trace.ewma_limit[blk.raw] = lim
        emax, emin = float(ewma.max()), float(ewma.min())
        gated = blk.g[0] < self.min_index
        events: list[DriftEvent] = []
        for is_high in (True, False):
            armed = st.armed_high if is_high else st.armed_low
            onset = st.onset_high if is_high else st.onset_low
            # quiet: the limit is nowhere crossed in this direction
            if isinstance(lim, float):
                quiet = emax <= lim if is_high else emin >= -lim
                out_assert = None if quiet else (ewma > lim if is_high else ewma < -lim)
            else:
                out_assert = ewma > lim if is_high else ewma < -lim
            if out_assert is not None and gated:
                out_assert &= blk.g >= self.min_index
            reaches_target = emin <= 0.0 if is_high else emax >= 0.0
            if out_assert is not None and out_assert.any():
                at_target = ewma <= 0.0 if is_high else ewma >= 0.0
                fires, armed = _latch(out_assert, at_target, armed)
                if fires:
                    last_target = np.maximum.accumulate(np.where(at_target, np.arange(n), -1))
                    for f in fires:
                        lt = int(last_target[f])
                        if lt >= 0:
                            mark = blk.mark(lt + 1)
                        else:
                            mark = onset if onset is not None else blk.mark(0)
                        threshold = lim if isinstance(lim, float) else float(lim[f])
                        events.append(
                            self._event(
                                "ewma", is_high, mark, blk.here(f), float(ewma[f]), threshold
                            )
                        )
            elif reaches_target:
                armed = True
            # onset candidate: the sample after the last one on the target side
            if reaches_target:
                last_on_target = ewma[-1] <= 0.0 if is_high else ewma[-1] >= 0.0
                if last_on_target:
                    onset = None
                else:
                    at_target = ewma <= 0.0 if is_high else ewma >= 0.0
                    onset = blk.mark(_last_true(at_target) + 1)
            elif onset is None:
                onset = blk.mark(0)
            if is_high:
                st.armed_high, st.onset_high = armed, onset
            else:
                st.armed_low, st.onset_low = armed, onset
        return events

    # ---------------------------------------------------------------- one sample at a time
    @property
    def scalar_ok(self) -> bool:
        """Whether the per-sample path may be used (live use, σ settled)."""
        return self.trace is None and not self.window_open

    def feed_samples(self, t: FloatArray, real: FloatArray, twin: FloatArray) -> list[DriftEvent]:
        """:meth:`feed` for a few samples, processed one at a time in plain Python floats.

        Python floats are IEEE doubles like numpy's, and each operation below is the one the
        block code applies element-wise, in the same order, so the results are bit-identical
        (the live-versus-batch tests check it) at a fraction of the ~50 numpy calls a block
        costs.
        """
        if not (t.shape == real.shape == twin.shape) or t.ndim != 1:
            raise AnalysisError(
                f"channel {self.spec.name!r}: t_s, real and twin must be 1-D arrays of one "
                f"length, got shapes {t.shape}, {real.shape} and {twin.shape}"
            )
        n = t.shape[0]
        self.work.ensure(n)
        r = real - twin
        self._validate(t, real, twin, bool(np.isfinite(r).all()))
        events: list[DriftEvent] = []
        for t_i, r_i, twin_i in zip(t.tolist(), r.tolist(), twin.tolist(), strict=True):
            events.extend(self._one(t_i, r_i, twin_i))
        return events

    def feed_scalar(self, t: float, real: float, twin: float) -> list[DriftEvent]:
        """One sample given as Python floats (validated here)."""
        name = self.spec.name
        i = self.n_raw
        if not math.isfinite(t):
            raise AnalysisError(
                f"channel {name!r}: t_s[{i}] = {t!r} is not a finite time; every sample "
                "needs a timestamp (mark a lost reading with real = NaN)"
            )
        if self.last_t is not None and not t > self.last_t:
            raise AnalysisError(
                f"channel {name!r}: t_s[{i}] = {t!r} s does not come after the previous "
                f"sample at {self.last_t!r} s; timestamps must strictly increase"
            )
        if not math.isfinite(twin):
            raise AnalysisError(
                f"channel {name!r}: twin[{i}] = {twin!r} at t = {t!r} s is not finite; the "
                "twin must be evaluated at every sample"
            )
        if math.isinf(real):
            raise AnalysisError(
                f"channel {name!r}: real[{i}] = {real!r} at t = {t!r} s is infinite; a lost "
                "reading is NaN, anything else must be a finite number"
            )
        return self._one(t, real - twin, twin)

    def _one(self, t: float, r: float, twin: float) -> list[DriftEvent]:
        """One validated sample; mirrors feed() → _prepare/_tolerance/_statistical."""
        self.n_raw += 1
        if math.isnan(r):
            self.last_t = t
            self.last_valid = False
            return []
        spec = self.spec
        gap = not self.last_valid and self.n_valid > 0
        self.last_t = t
        self.last_valid = True
        self.last_r = r
        p_before = self.p_sum
        p_after = p_before + r
        self.p_sum = p_after
        g_int = self.n_valid
        g = float(g_int)
        self.n_valid += 1
        mark: _Mark = (t, g_int, p_before, twin)
        here = (t, g_int, p_after, twin)
        # residual statistics: a one-sample block has mean r and M2 0
        max_b = abs(r)
        na = self.stat_n
        if na == 0:
            self.stat_mean, self.stat_m2, self.stat_max_abs = r, 0.0, max_b
        else:
            n = na + 1
            delta = r - self.stat_mean
            self.stat_mean += delta * 1 / n
            self.stat_m2 += 0.0 + delta * delta * na * 1 / n
            self.stat_max_abs = max(self.stat_max_abs, max_b)
        self.stat_n = na + 1
        events: list[DriftEvent] = []
        ready = g >= self.min_index
        if self.band_on:
            if gap:
                self.gap_s += t - self.last_valid_t
            tau = t - self.gap_s
            if tau < self.last_tau:
                tau = self.last_tau
            self.last_tau = tau
            band = spec.abs_tol if spec.rel_tol == 0.0 else spec.abs_tol + spec.rel_tol * abs(twin)
            persistence = spec.persistence_s
            for side in self.tol:
                out = r > band if side.high else r < -band
                if side.cur_out is not out:
                    side.cur_out = out
                    side.run_tau = tau
                    side.run_mark = mark
                qualified = tau - side.run_tau >= persistence
                if not out:
                    if qualified:
                        side.armed = True
                elif qualified and ready:
                    if side.armed:
                        onset = side.run_mark
                        assert onset is not None
                        events.append(self._event("tolerance", side.high, onset, here, r, band))
                    side.armed = False
        self.last_valid_t = t
        sigma = self.sigma
        if sigma is None or not spec.needs_sigma:
            return events
        if "cusum" in spec.detectors:
            h = spec.cusum_h
            p_scaled = p_after / sigma
            k_i = g * spec.cusum_k
            low = -(p_scaled + k_i)
            for cside, x in zip(self.cusum, (p_scaled - k_i, low), strict=True):
                ext = cside.ext
                if not cside.latched:
                    m = x if x < ext else ext
                    stat = x - m
                    if stat > h and ready:
                        onset = cside.onset if cside.onset is not None else mark
                        events.append(self._event("cusum", cside.high, onset, here, stat, h))
                        cside.latched = spec.cusum_rearm != "restart"
                        cside.ext = x
                        cside.onset = None
                        cside.chunk = _FIRST_CHUNK
                    else:
                        cside.ext = m
                        if x <= ext:
                            cside.onset = None
                        elif cside.onset is None:
                            cside.onset = mark
                        cside.chunk = min(2 * cside.chunk, _MAX_CHUNK)
                else:
                    mx = x if x > ext else ext
                    if mx - x < h:
                        cside.ext = mx
                        cside.chunk = min(2 * cside.chunk, _MAX_CHUNK)
                    else:
                        cside.latched = False
                        cside.ext = x
                        cside.onset = None
                        cside.chunk = _FIRST_CHUNK
        if "ewma" in spec.detectors:
            st = self.ewma
            z = r / sigma
            # lfilter's direct form II transposed: y = zi + b0·x; zi ← b1·x − a1·y (b1 = 0)
            e = st.zi + self.ewma_b0 * z
            st.zi = 0.0 * z - self.ewma_a1 * e
            if st.q == 0.0:
                lim = self.ewma_lim_inf
            else:
                q = st.q * self.ewma_q_step
                lim = spec.ewma_l * math.sqrt(self.ewma_c * (1.0 - q))
                st.q = 0.0 if 1.0 - q == 1.0 else q
            for is_high in (True, False):
                armed = st.armed_high if is_high else st.armed_low
                onset_e = st.onset_high if is_high else st.onset_low
                out = (e > lim if is_high else e < -lim) and ready
                at_target = e <= 0.0 if is_high else e >= 0.0
                if out:
                    if armed:
                        start = onset_e if onset_e is not None else mark
                        events.append(self._event("ewma", is_high, start, here, e, lim))
                    armed = False
                elif at_target:
                    armed = True
                if at_target:
                    onset_e = None
                elif onset_e is None:
                    onset_e = mark
                if is_high:
                    st.armed_high, st.onset_high = armed, onset_e
                else:
                    st.armed_low, st.onset_low = armed, onset_e
        return events

    # ---------------------------------------------------------------- events
    def _event(
        self,
        statistic: Detector,
        high: bool,
        onset: _Mark,
        here: _Mark,
        value: float,
        threshold: float,
    ) -> DriftEvent:
        """An event detected at ``here`` = (t, index, Σr *through* the sample, twin)."""
        t_on, g_on, p_on, twin_on = onset
        t_det, g_det, p_det, twin_det = here
        count = g_det - g_on + 1
        mean_r = (p_det - p_on) / count
        # the twin's mean over onset..detection, by the trapezoid (exact for a linear twin)
        twin_mean = 0.5 * (twin_on + twin_det)
        rel = mean_r / abs(twin_mean) if abs(twin_mean) > self.rel_floor else None
        return DriftEvent(
            channel=self.spec.name,
            statistic=statistic,
            direction="high" if high else "low",
            onset_t_s=t_on,
            detected_t_s=t_det,
            magnitude=mean_r,
            magnitude_rel=rel,
            value=value,
            threshold=threshold,
            n_samples=count,
            unit=self.spec.unit,
        )


def _latch(out_assert: BoolArray, in_assert: BoolArray, armed: bool) -> tuple[list[int], bool]:
    """Fire positions of a latching alarm, and whether it is armed after the block.

    ``out_assert`` marks samples where the alarm condition holds, ``in_assert`` samples that
    re-arm it (the two never overlap). Armed, the first ``out`` sample fires and disarms;
    disarmed, the first ``in`` sample re-arms. Each step is one forward search, so the cost
    is one pass over the block plus a few calls per state change.
    """
    fires: list[int] = []
    n = out_assert.shape[0]
    pos = 0
    while pos < n:
        mask = out_assert if armed else in_assert
        j = pos + int(np.argmax(mask[pos:]))
        if not mask[j]:
            break
        if armed:
            fires.append(j)
        armed = not armed
        pos = j + 1
    return fires, armed


def _scalar(value: object) -> float | None:
    """``value`` as a float if it is a plain real number (Python or numpy scalar), else None."""
    if isinstance(value, float | int | np.floating | np.integer):
        return float(value)
    return None


def _last_true(mask: BoolArray) -> int:
    """Index of the last True in ``mask`` (−1 if none); searches backwards in growing steps."""
    hi = int(mask.shape[0])
    step = 256
    while hi > 0:
        lo = max(0, hi - step)
        seg = mask[lo:hi]
        if seg.any():
            return hi - 1 - int(np.argmax(seg[::-1]))
        hi = lo
        step *= 8
    return -1


def _last_min(x: FloatArray) -> tuple[int, float]:
    """Index of the last occurrence of the minimum of ``x``, and the minimum."""
    p = int(np.argmin(x))
    v = float(x[p])
    # ties are rare (quantised data), and the tail after the first minimum is usually short
    tail = x[p + 1 :] == v
    if tail.any():
        p = p + 1 + _last_true(tail)
    return p, v


def _event_key(event: DriftEvent) -> tuple[float, int, int]:
    return (event.detected_t_s, _ORDER[event.statistic], 0 if event.direction == "high" else 1)


def _as_float_array(channel: str, label: str, value: ArrayLike) -> FloatArray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise AnalysisError(
            f"channel {channel!r}: {label} must be numbers, got {type(value).__name__} ({exc})"
        ) from None
    return arr


# --------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------


def compare(
    spec: ChannelSpec,
    t_s: ArrayLike,
    real: ArrayLike,
    twin: ArrayLike,
    *,
    traces: bool = True,
) -> ChannelComparison:
    """Compare one channel of a whole run: residual, detectors, events, statistics, traces.

    Parameters
    ----------
    spec : ChannelSpec
        Tolerances and detector settings of the channel.
    t_s : array_like, shape (n,)
        Sample times, s, finite and strictly increasing.
    real : array_like, shape (n,)
        The device's readings, channel units; NaN where no reading was obtained (a gap).
    twin : array_like, shape (n,)
        The twin evaluated at ``t_s``, channel units; finite.
    traces : bool
        Also return the per-sample traces for plotting. They cost seven arrays of 8 bytes
        per sample (560 MB for 10 M samples); ``False`` leaves them ``None`` and keeps the
        memory use independent of the run length.

    Returns
    -------
    ChannelComparison
        Events (sorted by detection time), residual statistics and traces.

    Raises
    ------
    AnalysisError
        Naming the channel and the sample, for arrays of different shapes, non-finite or
        non-increasing times, a non-finite twin or an infinite reading.
    """
    name = spec.name
    t = _as_float_array(name, "t_s", t_s)
    re = _as_float_array(name, "real", real)
    tw = _as_float_array(name, "twin", twin)
    if not (t.shape == re.shape == tw.shape) or t.ndim != 1:
        raise AnalysisError(
            f"channel {name!r}: t_s, real and twin must be 1-D arrays of one length, got "
            f"shapes {t.shape}, {re.shape} and {tw.shape}"
        )
    n = t.shape[0]
    trace = _Trace.empty(n) if traces else None
    engine = _ChannelEngine(spec, trace=trace)
    events: list[DriftEvent] = []
    for start in range(0, n, _BATCH_BLOCK):
        stop = start + _BATCH_BLOCK
        events.extend(engine.feed(t[start:stop], re[start:stop], tw[start:stop]))
    events.extend(engine.finish())
    events.sort(key=_event_key)
    return ChannelComparison(
        spec=spec,
        events=tuple(events),
        stats=engine.stats(),
        t_s=t,
        residual=None if trace is None else trace.residual,
        z=None if trace is None else trace.z,
        cusum_pos=None if trace is None else trace.cusum_pos,
        cusum_neg=None if trace is None else trace.cusum_neg,
        ewma=None if trace is None else trace.ewma,
        ewma_limit=None if trace is None else trace.ewma_limit,
        tolerance_band=None if trace is None else trace.band,
    )


class LiveComparator:
    """The comparator fed sample by sample (or in small blocks) during a run.

    Its events are identical to :func:`compare` on the same data, whatever the block sizes,
    once :meth:`finish` has been called at the end of the run. When σ is estimated, CUSUM and
    EWMA events are only produced once the estimation window is complete (the samples seen
    so far are then caught up): such an event is *reported* later than its
    ``detected_t_s``. Memory and time per sample are O(1) (the window's samples are the only
    ones buffered); one sample costs a few microseconds.

    Parameters
    ----------
    specs : iterable of ChannelSpec, or mapping of name to ChannelSpec
        One spec per channel; names must be unique.
    """

    def __init__(self, specs: Iterable[ChannelSpec] | Mapping[str, ChannelSpec]) -> None:
        items = list(specs.values()) if isinstance(specs, Mapping) else list(specs)
        self._engines: dict[str, _ChannelEngine] = {}
        for spec in items:
            if not isinstance(spec, ChannelSpec):
                raise ConfigurationError(
                    f"expected ChannelSpec objects, got {type(spec).__name__}",
                    field="tolerances",
                )
            if spec.name in self._engines:
                raise ConfigurationError("channel declared twice", field=f"tolerances.{spec.name}")
            self._engines[spec.name] = _ChannelEngine(spec, trace=None)
        self._events: list[DriftEvent] = []

    @property
    def channels(self) -> tuple[str, ...]:
        """The channel names, in declaration order."""
        return tuple(self._engines)

    @property
    def events(self) -> list[DriftEvent]:
        """Every event so far, in the order they were reported."""
        return list(self._events)

    def update(
        self, channel: str, t_s: ArrayLike, real: ArrayLike, twin: ArrayLike
    ) -> list[DriftEvent]:
        """Feed one sample (scalars) or a block (1-D arrays) of one channel.

        Returns the events this call produced, sorted by detection time. On bad input an
        :class:`AnalysisError` is raised and the channel's state is left untouched.
        """
        engine = self._engines.get(channel)
        if engine is None:
            raise ConfigurationError(
                f"no tolerances declared for channel {channel!r}; declared: {list(self._engines)}",
                field=f"tolerances.{channel}",
            )
        t_f, real_f, twin_f = _scalar(t_s), _scalar(real), _scalar(twin)
        if engine.scalar_ok and t_f is not None and real_f is not None and twin_f is not None:
            new = engine.feed_scalar(t_f, real_f, twin_f)
        else:
            t = np.atleast_1d(_as_float_array(channel, "t_s", t_s))
            re = np.atleast_1d(_as_float_array(channel, "real", real))
            tw = np.atleast_1d(_as_float_array(channel, "twin", twin))
            if engine.scalar_ok and t.shape[0] <= _SCALAR_BLOCK:
                new = engine.feed_samples(t, re, tw)
            else:
                new = engine.feed(t, re, tw)
        self._events.extend(new)
        return new

    def finish(self) -> list[DriftEvent]:
        """Call once at the end of the run; returns the events this still produces.

        A channel whose σ estimation window never completed (a run shorter than
        ``noise_window_s``) gets σ from the samples there are, as :func:`compare` does at
        the end of its data, and its buffered samples go through the CUSUM and EWMA. Later
        updates of such a channel are not expected; they would be processed with that σ.
        """
        new: list[DriftEvent] = []
        for engine in self._engines.values():
            new.extend(engine.finish())
        new.sort(key=_event_key)
        self._events.extend(new)
        return new

    def stats(self) -> dict[str, ResidualStats]:
        """Residual statistics per channel so far."""
        return {name: engine.stats() for name, engine in self._engines.items()}

    def sigma(self, channel: str) -> float | None:
        """The σ in use for ``channel`` (None until estimated, or if it cannot be)."""
        engine = self._engines.get(channel)
        if engine is None:
            raise ConfigurationError(
                f"no tolerances declared for channel {channel!r}; declared: {list(self._engines)}",
                field=f"tolerances.{channel}",
            )
        return engine.sigma
