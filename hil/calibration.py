"""Calibration: fit the twin's parameters to a recorded run, and keep the fit per device.

A stored run holds what the real devices did and the commands they received. Replaying
those commands through the twin (:func:`medtwin.hil.twin.twin_series`) with candidate parameters
and comparing with the recorded readings turns drift into numbers: the true bore of the
syringe, the wear rate of the lead screw, the compliance of the line. This module

1. rebuilds the run's twin from the stored bench file and twin parameters, and its input
   schedule from the stored command events;
2. fits the named parameters with :func:`scipy.optimize.least_squares` (trust-region
   reflective, bounds from each parameter's declared range, ``x_scale="jac"``) to the
   residual ``real − twin`` of the balance's net mass (gravimetry, the method of
   IEC 60601-2-24's flow test) and, when a fitted parameter is a line or compliance
   parameter, of the line pressure as well;
3. reports estimates with standard errors and their correlation matrix, and the residual
   RMS before and after;
4. stores the result as a new version of the device's calibration
   (:meth:`medtwin.hil.store.RunStore.save_calibration`), which a bench with
   ``[twin] calibration = "latest"`` then uses.

Statistics
----------
Each channel's residual is divided by its noise level σ, estimated robustly from the first
differences of the residual against the starting twin
(:func:`medtwin.hil.comparator.robust_noise_sd`, the comparator's estimator), so channels in
different units combine and a noisy channel counts less. Samples that are NaN (gaps of a lost
device) are skipped.

The balance's net mass carries, from each tare to the next, the noise sample the real
balance read when it was tared (see :data:`medtwin.hil.twin.CHANNEL_KINDS`): a constant offset of
about one σ that no twin parameter explains. One offset per tare segment is therefore a
nuisance parameter. It enters linearly, so it is eliminated exactly (variable projection):
the residual of each segment is taken about its mean, and its degree of freedom is
subtracted.

Standard errors come from the Jacobian ``J`` of the weighted residuals at the optimum,
scaled by the residual variance: ``cov = s²·(JᵀJ)⁻¹`` with ``s² = Σr²/(N − p − k)``
(``N`` samples, ``p`` parameters, ``k`` offsets). With a correct noise model ``s² ≈ 1``;
scaling by it keeps the errors honest when the noise is larger than estimated. This is
the covariance :func:`scipy.optimize.curve_fit` reports (``absolute_sigma=False``);
``curve_fit`` itself is not used because it takes a model of one independent variable and
has no way to evaluate its finite differences as one batch. Before the fit, the Jacobian
at the start is checked: a parameter the channels do not depend on, or parameters whose
effects are proportional, are refused rather than fitted to a meaningless value; a fit
that ends where a parameter is undetermined (a zero singular value of ``J``) is refused
too.

The Jacobian is a forward difference evaluated for all parameters in **one** vectorised
model call (:class:`medtwin.device_models.system.ParameterBatch`: the base point plus one
perturbed row per parameter) instead of one simulation per parameter; the benchmark
``benchmarks/bench_calibration.py`` measures the difference against scipy's default
``2-point`` scheme.

Devices are identified by ``model/serial`` as they reported themselves in the run
(:func:`calibration_key`). A device whose protocol reports no serial number (the NE-1000's
``VER`` gives model and firmware only) is filed under its place on the bench instead:
``model/<bench name>:<device name>``.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from medtwin.device_models.base import ParameterError, ParameterInfo, list_parameters
from medtwin.device_models.system import ParameterBatch, SystemParams
from medtwin.drivers.errors import AnalysisError, ConfigurationError
from medtwin.hil.comparator import robust_noise_sd
from medtwin.hil.config import BenchConfig, bench_from_text
from medtwin.hil.store import CalibrationRecord, RunData, RunStore
from medtwin.hil.twin import (
    CHANNEL_KINDS,
    calibration_key,
    schedule_from_events,
    twin_params,
    twin_series,
)
from numpy.typing import NDArray

__all__ = [
    "DEFAULT_PARAMETERS",
    "FD_RELATIVE_STEP",
    "Calibration",
    "ChannelFit",
    "ParameterEstimate",
    "Validation",
    "calibrate",
    "calibration_key",
    "fittable_parameters",
    "run_device_key",
    "save_calibration",
    "validate",
]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]

#: What ``medtwin calibrate`` fits when ``--params`` is not given, per pump kind: the
#: two parameters behind a pump that delivers more or less than it counts.
DEFAULT_PARAMETERS: dict[str, tuple[str, ...]] = {
    "syringe": ("pump.syringe.inner_diameter_mm", "pump.drive.wear_percent_per_h"),
    "volumetric": ("pump.efficiency", "pump.wear_percent_per_h"),
}

#: Relative forward-difference step, as scipy's ``2-point`` scheme applies it:
#: ``h = step·max(1, |x|)`` in the parameter's unit. 1e-6 rather than √ε ≈ 1.5e-8: the
#: closed-form model loses a few digits to cancellation over a 2-hour run (derivatives
#: from steps of 1e-4, 1e-6 and 1.5e-8 agree to ~5e-7 on the drift bench's run), and a
#: truncation error of that order is far below any standard error.
FD_RELATIVE_STEP = 1e-6

#: Fewest valid samples a channel needs to take part in a fit.
MIN_CHANNEL_SAMPLES = 10

#: A parameter whose name matches one of these also fits the line pressure channels
#: (line resistance and compliance show in the pressure first; the mass sees them only in
#: transients).
_PRESSURE_INFORMED = ("line.", "compliance")

#: Singular values of the weighted Jacobian below this fraction of the largest count as 0
#: (a direction in parameter space the data do not constrain).
_RANK_RTOL = 1e-10


# --------------------------------------------------------------------------- identity


def _calibrated_device(bench: BenchConfig) -> str:
    """The device whose calibration the twin uses (the runner's rule)."""
    if bench.twin.device:
        return bench.twin.device
    pump = bench.device_of_kind("pump")
    return (pump or bench.devices[0]).name


def run_device_key(run: RunData, bench: BenchConfig | None = None, *, source: str = "RUN") -> str:
    """The calibration key of the run's calibrated device (the pump unless the bench's
    ``[twin] device`` names another), from the identity it reported in the run."""
    bench = bench or _bench(run)
    name = _calibrated_device(bench)
    for info in run.devices:
        if info.name == name:
            identity = info.identity if isinstance(info.identity, Mapping) else {}
            return calibration_key(
                str(identity.get("model") or ""),
                str(identity.get("serial") or ""),
                bench=bench.name,
                device=name,
            )
    raise ConfigurationError(
        f"run {run.info.id} recorded no identity for device {name!r}, so a calibration "
        "cannot be tied to it",
        source=source,
    )


# --------------------------------------------------------------------------- parameters


def _float_parameter(info: ParameterInfo) -> bool:
    return isinstance(info.value, float) and not isinstance(info.value, bool)


def fittable_parameters(params: SystemParams) -> list[ParameterInfo]:
    """The parameters a fit can vary: every real-valued (float) leaf of ``params``.

    Integer, boolean and text parameters (step counts, flags, names) are not continuous
    and are left out.
    """
    return [info for info in list_parameters(params) if _float_parameter(info)]


def _get(params: SystemParams, name: str) -> Any:
    return functools.reduce(getattr, name.split("."), params)


def _resolve_names(
    names: Sequence[str], params: SystemParams, *, source: str
) -> list[ParameterInfo]:
    by_name = {info.name: info for info in list_parameters(params)}
    fittable = [info.name for info in fittable_parameters(params)]
    seen: set[str] = set()
    out: list[ParameterInfo] = []
    for raw in names:
        name = raw.strip()
        if not name:
            raise ConfigurationError(
                "empty parameter name; expected comma-separated dotted names such as "
                "pump.syringe.inner_diameter_mm",
                source=source,
            )
        if name in seen:
            raise ConfigurationError(f"parameter {name!r} is named twice", source=source)
        seen.add(name)
        info = by_name.get(name)
        if info is None:
            raise ConfigurationError(
                f"unknown parameter {name!r}; the fittable parameters of this twin are: "
                + ", ".join(fittable),
                source=source,
            )
        if not _float_parameter(info):
            raise ConfigurationError(
                f"parameter {name!r} is not a real number ({type(info.value).__name__}) and "
                "cannot be fitted; the fittable parameters of this twin are: "
                + ", ".join(fittable),
                source=source,
            )
        out.append(info)
    if not out:
        raise ConfigurationError("no parameters to fit", source=source)
    return out


def _leaf_values(params: SystemParams) -> dict[str, Any]:
    return {info.name: info.value for info in list_parameters(params)}


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(tree, Mapping):
        for key, value in tree.items():
            out.update(_flatten(value, f"{prefix}{key}."))
    else:
        out[prefix[:-1]] = tree
    return out


def _bench(run: RunData) -> BenchConfig:
    return bench_from_text(run.bench_text, source=f"run {run.info.id}: bench")


def _run_twin(run: RunData, bench: BenchConfig) -> tuple[SystemParams, SystemParams]:
    """(the bench's nominal twin, the twin exactly as the run used it).

    They differ when the run's twin carried a calibration (``calibration = "latest"``);
    the stored twin parameters are authoritative.
    """
    nominal = twin_params(bench)
    stored = _flatten(run.twin_params) if isinstance(run.twin_params, Mapping) else {}
    current = _leaf_values(nominal)
    overrides = {
        name: value
        for name, value in stored.items()
        if name in current
        and isinstance(value, int | float)
        and not isinstance(value, bool)
        and not isinstance(current[name], bool | str)
        and value != current[name]
    }
    if not overrides:
        return nominal, nominal
    try:
        return nominal, nominal.with_overrides(overrides)
    except ParameterError as exc:
        raise ConfigurationError(
            f"the twin parameters stored with run {run.info.id} do not fit its bench: {exc}",
            source="RUN",
        ) from None


# --------------------------------------------------------------------------- channels


@dataclass(frozen=True)
class _Channel:
    """One recorded channel taking part in the fit (valid samples only)."""

    name: str  # as recorded, e.g. "balance.mass_g"
    unit: str
    twin_key: str  # kind.quantity, e.g. "balance.mass_g"
    t_s: FloatArray
    real: FloatArray
    sigma: float
    # (start, stop) sample ranges that each carry their own constant offset
    segments: tuple[tuple[int, int], ...]
    columns: IntArray = field(default_factory=lambda: np.empty(0, dtype=np.intp))


def _real_series(run: RunData, name: str) -> tuple[FloatArray, FloatArray] | None:
    matches = [ch for ch in run.channels if ch.name == name and str(ch.source) == "real"]
    if len(matches) != 1:
        return None
    ch = matches[0]
    keep = np.isfinite(ch.values) & np.isfinite(ch.t_s)
    if int(keep.sum()) < MIN_CHANNEL_SAMPLES:
        return None
    return np.asarray(ch.t_s[keep], dtype=float), np.asarray(ch.values[keep], dtype=float)


def _tare_segments(run: RunData, device: str, t_s: FloatArray) -> tuple[tuple[int, int], ...]:
    tares = sorted(
        float(e.t_s)
        for e in run.events
        if e.kind == "command"
        and e.device == device
        and isinstance(e.data, Mapping)
        and e.data.get("action") in ("tare", "zero")
    )
    bounds = [0, *(int(np.searchsorted(t_s, t, side="left")) for t in tares), t_s.size]
    pairs = sorted({(a, b) for a, b in itertools.pairwise(bounds) if b > a})
    return tuple(pairs)


def _select_channels(
    run: RunData, bench: BenchConfig, names: Sequence[str], *, source: str = "RUN"
) -> list[tuple[str, str, str, str, FloatArray, FloatArray, tuple[tuple[int, int], ...]]]:
    """(name, unit, twin key, device, t, real, segments) of every channel to fit."""
    balance = bench.device_of_kind("balance")
    mass = None if balance is None else _real_series(run, f"{balance.name}.mass_g")
    if balance is None or mass is None:
        why = (
            f"bench {bench.name!r} has no balance"
            if balance is None
            else f"it holds fewer than {MIN_CHANNEL_SAMPLES} valid readings of "
            f"{balance.name}.mass_g"
        )
        raise ConfigurationError(
            f"run {run.info.id} has no balance data to calibrate against ({why}); "
            "calibration fits the twin to the gravimetric mass, so pick a run with a balance",
            source=source,
        )
    t_mass, v_mass = mass
    chosen = [
        (
            f"{balance.name}.mass_g",
            "g",
            "balance.mass_g",
            balance.name,
            t_mass,
            v_mass,
            _tare_segments(run, balance.name, t_mass),
        )
    ]
    if any(token in name for name in names for token in _PRESSURE_INFORMED):
        for kind in ("bench-io", "pump"):
            cfg = bench.device_of_kind(kind)
            if cfg is None:
                continue
            series = _real_series(run, f"{cfg.name}.pressure_mmhg")
            if series is None:
                continue  # e.g. the NE-1000 reports no pressure
            unit = next(c.unit for c in CHANNEL_KINDS[kind] if c.quantity == "pressure_mmhg")
            chosen.append(
                (
                    f"{cfg.name}.pressure_mmhg",
                    unit,
                    f"{kind}.pressure_mmhg",
                    cfg.name,
                    series[0],
                    series[1],
                    (),
                )
            )
    return chosen


# --------------------------------------------------------------------------- the problem


class _Problem:
    """Weighted residuals of a run for a batch of values of the fitted parameters."""

    def __init__(
        self,
        base: SystemParams,
        run: RunData,
        channels: list[_Channel],
        names: list[str],
    ) -> None:
        self.base = base
        self.schedule = schedule_from_events(run.events)
        self.names = names
        self.grid = np.unique(np.concatenate([ch.t_s for ch in channels]))
        self.channels = [
            dataclasses.replace(ch, columns=np.searchsorted(self.grid, ch.t_s).astype(np.intp))
            for ch in channels
        ]
        self.size = sum(ch.t_s.size for ch in self.channels)
        self.n_offsets = sum(len(ch.segments) for ch in self.channels)
        self.model_calls = 0
        self.model_rows = 0
        # device_models' batch path evaluates a sub-batch of rows that meet an event with
        # the constants of the whole batch, which fails when rows differ in whether they
        # meet it. The one event a fit varies is the wear onset (an event only while the
        # wear rate is > 0, at the onset time), so rows are grouped by both.
        self._wear = _wear_names(base)
        self._rate_columns = [j for j, n in enumerate(names) if n == self._wear[0]]
        self._onset_columns = [j for j, n in enumerate(names) if n == self._wear[1]]

    def _groups(self, keys: list[tuple[Any, ...]]) -> list[IntArray]:
        order: dict[tuple[Any, ...], list[int]] = {}
        for row, key in enumerate(keys):
            order.setdefault(key, []).append(row)
        return [np.array(rows, dtype=np.intp) for rows in order.values()]

    # -- model --------------------------------------------------------------------------

    def twins(self, *params: SystemParams) -> list[dict[str, FloatArray]]:
        """Whole parameter sets, batched: for each, the twin of each channel at its
        samples (arrays of shape (n_c,))."""
        rate, onset = self._wear
        keys = [(_get(p, rate) / 100.0 / 3600.0 > 0, _get(p, onset)) for p in params]
        result: list[dict[str, FloatArray]] = [{} for _ in params]
        for rows in self._groups(keys):
            self.model_calls += 1
            self.model_rows += int(rows.size)
            out = twin_series([params[i] for i in rows], self.schedule, self.grid)
            for k, i in enumerate(rows):
                result[i] = {ch.name: out[ch.twin_key][k, ch.columns] for ch in self.channels}
        return result

    def _simulate(self, X: FloatArray) -> dict[str, FloatArray]:
        """Every twin channel for each row of ``X`` (shape (B, p)), shape (B, n_grid)."""
        worn = X[:, self._rate_columns] / 100.0 / 3600.0 > 0
        onsets = X[:, self._onset_columns]
        keys = [(*worn[i].tolist(), *onsets[i].tolist()) for i in range(X.shape[0])]
        result: dict[str, FloatArray] = {}
        for rows in self._groups(keys):
            batch = ParameterBatch(self.base, {n: X[rows, j] for j, n in enumerate(self.names)})
            self.model_calls += 1
            self.model_rows += int(rows.size)
            out = twin_series(batch, self.schedule, self.grid)
            for ch in self.channels:
                block = result.setdefault(ch.twin_key, np.empty((X.shape[0], self.grid.size)))
                block[rows] = out[ch.twin_key]
        return result

    def residuals(self, X: FloatArray) -> FloatArray:
        """Weighted, offset-projected residuals for each row of ``X``: shape (B, N)."""
        out = self._simulate(np.atleast_2d(X))
        res = np.empty((out[self.channels[0].twin_key].shape[0], self.size))
        start = 0
        for ch in self.channels:
            r = (ch.real[None, :] - out[ch.twin_key][:, ch.columns]) / ch.sigma
            for a, b in ch.segments:
                r[:, a:b] -= r[:, a:b].mean(axis=1, keepdims=True)
            res[:, start : start + r.shape[1]] = r
            start += r.shape[1]
        return res

    def offsets(self, twin: Mapping[str, FloatArray]) -> dict[str, list[float]]:
        """The nuisance offsets (channel units) of each channel's segments, given the
        twin's values (:meth:`twins`)."""
        out: dict[str, list[float]] = {}
        for ch in self.channels:
            if ch.segments:
                r = ch.real - twin[ch.name]
                out[ch.name] = [float(np.mean(r[a:b])) for a, b in ch.segments]
        return out


def _wear_names(params: SystemParams) -> tuple[str, str]:
    """Dotted names of the wear rate and the wear onset of the twin's pump."""
    prefix = "pump.drive." if params.pump_kind == "syringe" else "pump."
    return prefix + "wear_percent_per_h", prefix + "wear_onset_s"


def _steps(x: FloatArray, lb: FloatArray, ub: FloatArray) -> FloatArray:
    """Forward-difference steps (scipy's 2-point rule), flipped to stay inside bounds."""
    h = FD_RELATIVE_STEP * np.maximum(1.0, np.abs(x))
    return np.where(x + h > ub, -h, h)


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class ParameterEstimate:
    """One fitted parameter.

    ``value`` and ``stderr`` in ``unit``; ``before`` is the run's twin value; ``lower`` /
    ``upper`` the declared range (None: open); ``at_bound`` is True when the optimum sits
    on a bound (its standard error then describes the unconstrained curvature only).
    """

    name: str
    unit: str
    value: float
    stderr: float
    before: float
    lower: float | None
    upper: float | None
    at_bound: bool

    @property
    def change(self) -> float:
        return self.value - self.before


@dataclass(frozen=True)
class ChannelFit:
    """A channel of the fit: samples used, noise σ, residual RMS before and after (plain
    ``real − twin`` in ``unit``, as the comparator sees it)."""

    name: str
    unit: str
    samples: int
    sigma: float
    rms_before: float
    rms_after: float

    def as_json(self) -> dict[str, Any]:
        return {
            "unit": self.unit,
            "samples": self.samples,
            "sigma": _finite(self.sigma),
            "rms_before": _finite(self.rms_before),
            "rms_after": _finite(self.rms_after),
        }


@dataclass(frozen=True)
class Calibration:
    """The outcome of :func:`calibrate` (nothing is stored until :func:`save_calibration`)."""

    run_id: int
    device_key: str
    estimates: dict[str, ParameterEstimate]
    fixed: dict[str, float]
    carried: dict[str, float]
    correlation: FloatArray  # (p, p), NaN where undetermined
    channels: dict[str, ChannelFit]
    offsets: dict[str, list[float]]
    residual_channel: str
    residual_unit: str
    residual_rms_before: float
    residual_rms_after: float
    residual_variance: float
    dof: int
    nfev: int
    njev: int
    model_calls: int
    model_rows: int
    fit_wall_s: float
    status: int
    message: str
    jacobian: str

    @property
    def names(self) -> list[str]:
        return list(self.estimates)

    def overrides(self) -> dict[str, float]:
        """Every parameter the calibrated twin sets: fitted, fixed and carried over."""
        return {
            **self.carried,
            **self.fixed,
            **{name: e.value for name, e in self.estimates.items()},
        }

    def stored_params(self) -> dict[str, dict[str, float | None]]:
        """``{name: {"value", "stderr"}}`` for the store: fixed and carried-over
        parameters (not estimated here) have ``stderr`` None."""
        out: dict[str, dict[str, float | None]] = {
            name: {"value": value, "stderr": None}
            for name, value in {**self.carried, **self.fixed}.items()
        }
        for name, e in self.estimates.items():
            out[name] = {"value": e.value, "stderr": e.stderr}
        return out

    def correlation_json(self) -> dict[str, Any]:
        return {
            "names": self.names,
            "matrix": [[_finite(v) for v in row] for row in self.correlation.tolist()],
        }

    def as_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "device_key": self.device_key,
            "params": {
                name: {
                    "value": e.value,
                    "stderr": _finite(e.stderr),
                    "before": e.before,
                    "unit": e.unit,
                    "lower": e.lower,
                    "upper": e.upper,
                    "at_bound": e.at_bound,
                }
                for name, e in self.estimates.items()
            },
            "fixed": dict(self.fixed),
            "carried": dict(self.carried),
            "residual_rms_before": _finite(self.residual_rms_before),
            "residual_rms_after": _finite(self.residual_rms_after),
            "residual_channel": self.residual_channel,
            "residual_unit": self.residual_unit,
            "correlation": self.correlation_json(),
            "channels": {name: ch.as_json() for name, ch in self.channels.items()},
            "offsets": {
                name: [_finite(v) for v in values] for name, values in self.offsets.items()
            },
            "fit": {
                "method": "scipy.optimize.least_squares (trf, x_scale='jac')",
                "jacobian": self.jacobian,
                "stderr": "sqrt(diag(s²·(JᵀJ)⁻¹)), J at the optimum, s² = residual variance",
                "residual_variance": _finite(self.residual_variance),
                "dof": self.dof,
                "nfev": self.nfev,
                "njev": self.njev,
                "model_calls": self.model_calls,
                "model_rows": self.model_rows,
                "wall_s": round(self.fit_wall_s, 4),
                "status": self.status,
                "message": self.message,
            },
        }


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _rms(values: FloatArray) -> float:
    return float(np.sqrt(np.mean(np.square(values)))) if values.size else math.nan


# --------------------------------------------------------------------------- the fit


def _covariance(J: FloatArray, residual_variance: float) -> tuple[FloatArray, FloatArray]:
    """(standard errors (p,), correlation (p, p)) from the weighted Jacobian ``J``."""
    p = J.shape[1]
    _, s, vt = np.linalg.svd(J, full_matrices=False)
    if s.size == 0 or s[0] == 0:
        return np.full(p, math.inf), np.full((p, p), math.nan)
    keep = s > _RANK_RTOL * s[0]
    v = vt.T
    cov = (v[:, keep] / s[keep] ** 2) @ v[:, keep].T * residual_variance
    stderr = np.sqrt(np.maximum(np.diag(cov), 0.0))
    if not np.all(keep):
        # A parameter with a component along an unconstrained direction is undetermined.
        free = np.any(np.abs(v[:, ~keep]) > 1e-8, axis=1)
        stderr[free] = math.inf
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = cov / np.outer(stderr, stderr)
    corr[~np.isfinite(corr)] = math.nan
    np.fill_diagonal(corr, np.where(np.isfinite(stderr) & (stderr > 0), 1.0, math.nan))
    return stderr, corr


#: Columns of the Jacobian (each scaled to unit norm) whose smallest singular value falls
#: below this fraction of the largest are too close to proportional to be told apart.
_IDENTIFIABLE_RTOL = 1e-6


def _check_identifiable(J: FloatArray, names: list[str], run_id: int) -> None:
    """Refuse a fit the run cannot support, before fitting (nothing to store).

    A parameter the fitted channels do not depend on at all, or a set of parameters whose
    effects are proportional, would wander along a flat valley of the cost and be stored
    with a meaningless value.
    """
    norms = np.linalg.norm(J, axis=0)
    dead = [n for n, norm in zip(names, norms, strict=True) if not norm > 0]
    if dead:
        raise ConfigurationError(
            f"run {run_id} carries no information about {', '.join(dead)}: the fitted "
            "channels do not depend on it; leave it out of --params",
            source="--params",
        )
    if len(names) < 2:
        return
    _, s, vt = np.linalg.svd(J / norms, full_matrices=False)
    if s[-1] < _IDENTIFIABLE_RTOL * s[0]:
        null = np.abs(vt[-1])
        tied = [n for n, weight in zip(names, null, strict=True) if weight > 0.1]
        raise ConfigurationError(
            f"run {run_id} cannot tell {', '.join(tied)} apart (their effects on the fitted "
            "channels are proportional); fit one of them and fix the others with --fix",
            source="--params",
        )


def calibrate(
    run: RunData,
    *,
    parameters: Sequence[str] | None = None,
    fixed: Mapping[str, float] | None = None,
    jacobian: Literal["batched", "2-point"] = "batched",
    max_evaluations: int = 100,
    start: Mapping[str, float] | None = None,
) -> Calibration:
    """Fit twin parameters to a recorded run.

    Parameters
    ----------
    run : RunData
        A stored run (:meth:`medtwin.hil.store.RunStore.load_run`) with balance readings.
    parameters : sequence of str, optional
        Dotted names of the parameters to fit (default: :data:`DEFAULT_PARAMETERS` for the
        twin's pump kind).
    fixed : mapping, optional
        Parameters held at given values during the fit (and stored with the result), e.g.
        ``{"pump.drive.wear_onset_s": 1800.0}``. When the syringe's inner diameter is
        fitted and the twin's ``pump.configured_inner_diameter_mm`` is 0 ("the syringe's"),
        it is fixed at the twin's syringe diameter: the pump is programmed with the
        library diameter, the fit estimates the real bore.
    jacobian : {"batched", "2-point"}
        ``"batched"``: forward differences for all parameters in one vectorised model
        call. ``"2-point"``: scipy's own scheme, one model call per parameter (the
        benchmark's baseline).
    max_evaluations : int
        Largest number of residual evaluations (``max_nfev``) before giving up.
    start : mapping, optional
        Starting values of fitted parameters (default: the run's twin). Needed where the
        twin's value is a degenerate start, e.g. a wear onset fitted while the twin's wear
        rate is 0 (the onset has no effect there, so the fit cannot tell where to move it).

    Returns
    -------
    Calibration

    Raises
    ------
    ConfigurationError
        Unknown or non-real parameter names, fixed values outside their ranges, a run
        without balance data or whose stored bench no longer validates.
    AnalysisError
        The fit did not converge, or the model cannot be evaluated.
    """
    from scipy.optimize import least_squares

    bench = _bench(run)
    device_key = run_device_key(run, bench)
    nominal, run_twin = _run_twin(run, bench)
    kind = run_twin.pump_kind
    infos = _resolve_names(
        list(parameters) if parameters else list(DEFAULT_PARAMETERS[kind]),
        run_twin,
        source="--params",
    )
    names = [info.name for info in infos]
    fixed_values = _fixed(run_twin, names, fixed or {})
    try:
        base = run_twin.with_overrides(fixed_values) if fixed_values else run_twin
    except ParameterError as exc:
        raise ConfigurationError(str(exc), source="--fix") from None
    current = _leaf_values(run_twin)
    nominal_values = _leaf_values(nominal)
    carried = {
        name: float(value)
        for name, value in current.items()
        if name not in names
        and name not in fixed_values
        and isinstance(value, int | float)
        and not isinstance(value, bool)
        and value != nominal_values.get(name)
    }

    selected = _select_channels(run, bench, names)
    # The same samples, unweighted: the run's own twin (for "before") and the starting
    # point (for the noise estimate) evaluated once each.
    plain = _Problem(
        run_twin, run, [_Channel(n, u, k, t, v, 1.0, ()) for n, u, k, _, t, v, _ in selected], []
    )
    if base is run_twin:
        (twin_before,) = plain.twins(run_twin)
        start_twin = twin_before
    else:
        twin_before, start_twin = plain.twins(run_twin, base)
    channels: list[_Channel] = []
    for name, unit, key, _, t, real, segments in selected:
        sigma = robust_noise_sd(real - start_twin[name])
        if sigma is None or not sigma > 0:
            if name.endswith(".mass_g"):
                raise AnalysisError(
                    f"run {run.info.id}: cannot estimate the noise of {name} from its "
                    f"{t.size} readings (they do not vary); nothing to weight the fit by"
                )
            continue
        channels.append(_Channel(name, unit, key, t, real, sigma, segments))

    problem = _Problem(base, run, channels, names)
    lb = np.array([-math.inf if i.minimum is None else float(i.minimum) for i in infos])
    ub = np.array([math.inf if i.maximum is None else float(i.maximum) for i in infos])
    # trf starts strictly inside the bounds; nudging a start on a bound (wear 0) here, by
    # trf's own margin, lets the Jacobian computed for the check below be reused.
    margin = 1e-10 * np.maximum(1.0, np.abs(np.where(np.isfinite(lb), lb, ub)))
    x0 = np.array([float(_get(base, n)) for n in names])
    for name, value in (start or {}).items():
        if name not in names:
            raise ConfigurationError(
                f"{name!r} is not among the fitted parameters ({', '.join(names)})",
                source="--start",
            )
        j = names.index(name)
        if not (math.isfinite(value) and lb[j] <= value <= ub[j]):
            raise ConfigurationError(
                f"{name} = {value!r} is outside its range [{lb[j]:g}, {ub[j]:g}]",
                source="--start",
            )
        x0[j] = value
    rate, onset = _wear_names(base)
    if onset in names and (x0[names.index(rate)] if rate in names else _get(base, rate)) == 0:
        raise ConfigurationError(
            f"{onset} is fitted while the wear rate {rate} starts at 0, where the onset has "
            f"no effect; give a starting wear rate (--start {rate}=0.5) or fix the onset",
            source="--start",
        )
    x0 = np.where(x0 <= lb, lb + margin, np.where(x0 >= ub, ub - margin, x0))
    dof = problem.size - len(names) - problem.n_offsets
    if dof <= 0:
        raise AnalysisError(
            f"run {run.info.id}: {problem.size} samples cannot determine {len(names)} "
            f"parameters and {problem.n_offsets} tare offsets"
        )

    # One entry each: scipy asks for the residual and then the Jacobian at the same point.
    cache: dict[bytes, FloatArray] = {}
    jac_cache: dict[bytes, FloatArray] = {}

    def fun(x: FloatArray) -> FloatArray:
        key = np.asarray(x, dtype=float).tobytes()
        hit = cache.get(key)
        if hit is not None:
            return hit
        r: FloatArray
        try:
            r = problem.residuals(np.asarray(x, dtype=float)[None, :])[0]
        except ParameterError:
            # A trial point the model refuses: trf answers a non-finite residual by
            # shrinking its trust region.
            r = np.full(problem.size, math.inf)
        cache.clear()
        cache[key] = r
        return r

    def jac(x: FloatArray) -> FloatArray:
        x = np.asarray(x, dtype=float)
        known = jac_cache.get(x.tobytes())
        if known is not None:
            return known
        h = _steps(x, lb, ub)
        rows = x[None, :] + np.diag(h)
        f0 = cache.get(x.tobytes())
        if f0 is None:
            rows = np.vstack([x[None, :], rows])
        try:
            res = problem.residuals(rows)
        except ParameterError as exc:
            raise AnalysisError(
                f"run {run.info.id}: the model cannot be evaluated next to "
                f"{dict(zip(names, x.tolist(), strict=True))}: {exc}"
            ) from None
        if f0 is None:
            f0, res = res[0], res[1:]
        J = np.asarray(((res - f0[None, :]) / h[:, None]).T)
        jac_cache.clear()
        jac_cache[x.tobytes()] = J
        return J

    _check_identifiable(jac(x0), names, run.info.id)
    started = time.perf_counter()
    try:
        result = least_squares(
            fun,
            x0,
            jac=jac if jacobian == "batched" else "2-point",
            bounds=(lb, ub),
            method="trf",
            x_scale="jac",
            max_nfev=max_evaluations,
        )
    except ValueError as exc:
        raise AnalysisError(f"run {run.info.id}: the fit could not start: {exc}") from None
    fit_wall_s = time.perf_counter() - started
    if not result.success:
        raise AnalysisError(
            f"run {run.info.id}: the fit of {', '.join(names)} did not converge "
            f"({result.message.rstrip('.')}; {result.nfev} evaluations); nothing was stored"
        )
    x = np.asarray(result.x, dtype=float)
    # trf re-evaluates the Jacobian after every accepted step, so result.jac is the one at
    # result.x (unmodified: the loss is linear).
    J = np.asarray(result.jac, dtype=float)
    residual = fun(x)
    residual_variance = float(residual @ residual) / dof
    stderr, corr = _covariance(J, residual_variance)
    if not np.all(np.isfinite(stderr)):
        lost = [n for n, e in zip(names, stderr, strict=True) if not math.isfinite(e)]
        raise AnalysisError(
            f"run {run.info.id}: the fit ended where the run no longer determines "
            f"{', '.join(lost)} (at {dict(zip(names, x.tolist(), strict=True))}); fix it with "
            "--fix or start elsewhere with --start; nothing was stored"
        )
    fitted = base.with_overrides(dict(zip(names, x.tolist(), strict=True)))
    (twin_after,) = problem.twins(fitted)
    channel_fits = {
        ch.name: ChannelFit(
            ch.name,
            ch.unit,
            int(ch.t_s.size),
            ch.sigma,
            _rms(ch.real - twin_before[ch.name]),
            _rms(ch.real - twin_after[ch.name]),
        )
        for ch in problem.channels
    }
    mass = problem.channels[0]
    active = np.asarray(result.active_mask)
    estimates = {
        info.name: ParameterEstimate(
            name=info.name,
            unit=info.unit,
            value=float(x[j]),
            stderr=float(stderr[j]),
            before=float(_get(run_twin, info.name)),
            lower=None if info.minimum is None else float(info.minimum),
            upper=None if info.maximum is None else float(info.maximum),
            at_bound=bool(active[j] != 0),
        )
        for j, info in enumerate(infos)
    }
    return Calibration(
        run_id=run.info.id,
        device_key=device_key,
        estimates=estimates,
        fixed={name: float(_get(base, name)) for name in fixed_values},
        carried=carried,
        correlation=corr,
        channels=channel_fits,
        offsets=problem.offsets(twin_after),
        residual_channel=mass.name,
        residual_unit=mass.unit,
        residual_rms_before=channel_fits[mass.name].rms_before,
        residual_rms_after=channel_fits[mass.name].rms_after,
        residual_variance=residual_variance,
        dof=dof,
        nfev=int(result.nfev),
        njev=int(result.njev or 0),
        model_calls=problem.model_calls,
        model_rows=problem.model_rows,
        fit_wall_s=fit_wall_s,
        status=int(result.status),
        message=str(result.message),
        jacobian=jacobian,
    )


def _fixed(params: SystemParams, names: list[str], fixed: Mapping[str, float]) -> dict[str, float]:
    by_name = {info.name: info for info in list_parameters(params)}
    out: dict[str, float] = {}
    for name, value in fixed.items():
        info = by_name.get(name)
        if info is None or not _float_parameter(info):
            raise ConfigurationError(
                f"unknown parameter {name!r}; the fittable parameters of this twin are: "
                + ", ".join(i.name for i in fittable_parameters(params)),
                source="--fix",
            )
        if name in names:
            raise ConfigurationError(
                f"parameter {name!r} cannot be both fitted and fixed", source="--fix"
            )
        try:
            out[name] = float(value)
        except (TypeError, ValueError):
            raise ConfigurationError(
                f"{name} = {value!r}: expected a number in {info.unit or 'its unit'}",
                source="--fix",
            ) from None
    configured = "pump.configured_inner_diameter_mm"
    if (
        "pump.syringe.inner_diameter_mm" in names
        and configured not in out
        and configured in by_name
        and not by_name[configured].value
    ):
        # 0 means "the syringe's diameter": fitting the bore would move the pump's own
        # setting with it and cancel the effect being measured.
        out[configured] = float(_get(params, "pump.syringe.inner_diameter_mm"))
    return out


# --------------------------------------------------------------------------- validation


@dataclass(frozen=True)
class Validation:
    """A calibration replayed on another run: residual RMS of each channel with the
    bench's nominal twin and with the calibrated one (plain ``real − twin``)."""

    run_id: int
    device_key: str
    channel: str
    unit: str
    rms_nominal: float
    rms_calibrated: float
    channels: dict[str, tuple[float, float]]

    @property
    def improved(self) -> bool:
        return self.rms_calibrated < self.rms_nominal

    def as_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "device_key": self.device_key,
            "residual_channel": self.channel,
            "residual_unit": self.unit,
            "residual_rms_nominal": _finite(self.rms_nominal),
            "residual_rms_calibrated": _finite(self.rms_calibrated),
            "improved": self.improved,
            "channels": {
                name: {"rms_nominal": _finite(a), "rms_calibrated": _finite(b)}
                for name, (a, b) in self.channels.items()
            },
        }


def validate(
    run: RunData, calibration: Mapping[str, float], *, channels: Sequence[str] = ()
) -> Validation:
    """Replay ``run`` with the bench's nominal twin and with ``calibration`` applied.

    Parameters
    ----------
    run : RunData
        The run to predict (another run of the same device).
    calibration : mapping
        ``{dotted name: value}``, e.g. :meth:`Calibration.overrides`.
    channels : sequence of str
        Extra channels to report (the balance mass is always reported); channels the run
        does not have are skipped.
    """
    bench = _bench(run)
    device_key = run_device_key(run, bench, source="--validate")
    nominal = twin_params(bench)
    try:
        calibrated = nominal.with_overrides(dict(calibration))
    except ParameterError as exc:
        raise ConfigurationError(
            f"the calibration does not fit the twin of run {run.info.id}: {exc}",
            source="--validate",
        ) from None
    selected = _select_channels(run, bench, (), source="--validate")
    mass_name = selected[0][0]
    wanted = {mass_name, *channels}
    extra = [
        entry
        for entry in _select_channels(run, bench, ("line.",), source="--validate")
        if entry[0] in wanted and entry[0] != mass_name
    ]
    fit_channels = [_Channel(n, u, k, t, v, 1.0, ()) for n, u, k, _, t, v, _ in [*selected, *extra]]
    problem = _Problem(nominal, run, fit_channels, [])
    before, after = problem.twins(nominal, calibrated)
    table = {
        ch.name: (_rms(ch.real - before[ch.name]), _rms(ch.real - after[ch.name]))
        for ch in problem.channels
    }
    return Validation(
        run_id=run.info.id,
        device_key=device_key,
        channel=mass_name,
        unit=problem.channels[0].unit,
        rms_nominal=table[mass_name][0],
        rms_calibrated=table[mass_name][1],
        channels=table,
    )


# --------------------------------------------------------------------------- storage


def save_calibration(
    store: RunStore, calibration: Calibration, *, note: str = ""
) -> CalibrationRecord:
    """Store ``calibration`` as the next version of its device's calibration."""
    return store.save_calibration(
        calibration.device_key,
        params=calibration.stored_params(),
        run_id=calibration.run_id,
        correlation=calibration.correlation_json(),
        residual_rms_before=calibration.residual_rms_before,
        residual_rms_after=calibration.residual_rms_after,
        note=note,
    )
