"""What the comparator reports: drift events, residual statistics, one channel's comparison.

Every detector builds its events with :func:`drift_event`, so onset, magnitude and the
relative magnitude mean the same whichever detector fired (see the package docstring,
"Alarm semantics").
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Final, Literal, TypeAlias

from medtwin.hil.comparator.block import FloatArray, Mark
from medtwin.hil.comparator.spec import ChannelSpec, Detector, Direction, json_float

__all__ = [
    "ChannelComparison",
    "DriftEvent",
    "ResidualStats",
    "SigmaSource",
    "drift_event",
    "event_key",
]

SigmaSource: TypeAlias = Literal["declared", "estimated", "pending", "unavailable"]

# Events of one sample are listed in this detector order (then high before low).
_ORDER: Final[dict[str, int]] = {"tolerance": 0, "cusum": 1, "ewma": 2}


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
        return {key: json_float(value) for key, value in asdict(self).items()}


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
        return {key: json_float(value) for key, value in asdict(self).items()}


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


def drift_event(
    spec: ChannelSpec,
    statistic: Detector,
    high: bool,
    onset: Mark,
    here: Mark,
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
    # relative magnitudes of a twin inside the absolute band are not meaningful
    rel_floor = spec.abs_tol if math.isfinite(spec.abs_tol) else 0.0
    rel = mean_r / abs(twin_mean) if abs(twin_mean) > rel_floor else None
    return DriftEvent(
        channel=spec.name,
        statistic=statistic,
        direction="high" if high else "low",
        onset_t_s=t_on,
        detected_t_s=t_det,
        magnitude=mean_r,
        magnitude_rel=rel,
        value=value,
        threshold=threshold,
        n_samples=count,
        unit=spec.unit,
    )


def event_key(event: DriftEvent) -> tuple[float, int, int]:
    """Sort key: detection time, then detector, then high before low."""
    return (event.detected_t_s, _ORDER[event.statistic], 0 if event.direction == "high" else 1)
