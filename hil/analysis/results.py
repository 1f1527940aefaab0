"""Result dataclasses of the IEC 60601-2-24 analyses (:mod:`medtwin.hil.analysis.iec60601_2_24`).

Frozen and JSON-friendly: a gridded balance log, the start-up curve (1998 clause 50.102), a
mean flow error A or B, the trumpet curve with one entry per observation window, an
occlusion test (2012 edition, occlusion clause) and bolus accuracy (1998 clause 50.106).
The formulas that produce them, and which of them are confirmed, are in the analysis
module's docstring and in docs/analysis.md. Re-exported by
:mod:`medtwin.hil.analysis.iec60601_2_24`, where callers import them from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "BolusAccuracy",
    "GravimetricSeries",
    "MeanFlowError",
    "OcclusionResult",
    "StartupCurve",
    "TrumpetCurve",
    "TrumpetWindow",
]

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, eq=False)
class GravimetricSeries:
    """A balance log on the S grid.

    Attributes
    ----------
    t_min : ndarray, shape (n,)
        Grid times in min after the test start: ``0, S, 2S, …``.
    mass_g : ndarray, shape (n,)
        Balance reading at each grid time in g.
    sample_interval_min : float
        S in min.
    start_s : float
        Test start in the log's own time base, s.
    coverage_min : float
        How long the raw log runs after the test start, min (the grid may end up to one S
        earlier).
    source_samples : int
        Number of samples in the raw log.
    resampled : bool
        True when the raw log was not already on the grid and the mass was linearly
        interpolated onto it.
    max_gap_s : float
        Largest interval between two raw samples, s.
    note : str
        Human-readable account of the resampling ("" when none happened).
    """

    t_min: FloatArray
    mass_g: FloatArray
    sample_interval_min: float
    start_s: float
    coverage_min: float
    source_samples: int
    resampled: bool
    max_gap_s: float
    note: str


@dataclass(frozen=True, eq=False)
class StartupCurve:
    """Start-up curve over T0: Q_i against time (IEC 60601-2-24:1998 50.102).

    Attributes
    ----------
    t_min : ndarray, shape (k,)
        End of each sample interval in min after the test start (``S, 2S, …, T0``).
    flow_ml_h : ndarray, shape (k,)
        Q_i in mL/h.
    period_min : float
        T0 in min.
    sample_interval_min : float
        S in min.
    series : GravimetricSeries
        The gridded log the curve was computed from (carries the resampling note).
    """

    t_min: FloatArray
    flow_ml_h: FloatArray
    period_min: float
    sample_interval_min: float
    series: GravimetricSeries


@dataclass(frozen=True)
class MeanFlowError:
    """Mean flow error over one analysis period (A for the second hour, B for the last).

    Attributes
    ----------
    rate_ml_h : float
        Set rate r in mL/h.
    analysis_period_min : tuple of float
        (start, end) of the period in min after the test start.
    delivered_ml : float
        Volume delivered over the period in mL (evaporation added back).
    mean_flow_ml_h : float
        Q̄ in mL/h.
    error_percent : float
        ``100·(Q̄ − r)/r`` in %.
    resampled : bool
        Whether the log had to be interpolated onto the S grid.
    note : str
        The resampling note ("" when none happened).
    """

    rate_ml_h: float
    analysis_period_min: tuple[float, float]
    delivered_ml: float
    mean_flow_ml_h: float
    error_percent: float
    resampled: bool = False
    note: str = ""


@dataclass(frozen=True)
class TrumpetWindow:
    """Ep(max) and Ep(min) for one observation window P.

    Attributes
    ----------
    window_min : float
        P in min.
    samples_per_window : int
        ``P/S``.
    window_count : int
        m, the number of window positions: ``(T − P)/S + 1``.
    ep_max_percent, ep_min_percent : float
        Largest and smallest mean % flow error over any window of length P.
    ep_max_start_min, ep_min_start_min : float
        Where those windows start, min after the test start.
    """

    window_min: float
    samples_per_window: int
    window_count: int
    ep_max_percent: float
    ep_min_percent: float
    ep_max_start_min: float
    ep_min_start_min: float


@dataclass(frozen=True)
class TrumpetCurve:
    """A trumpet curve with the mean error A of its analysis period (1998 50.102).

    Attributes
    ----------
    rate_ml_h : float
        Set rate r in mL/h.
    sample_interval_min : float
        S in min.
    analysis_period_min : tuple of float
        (start, end) of the analysis period in min after the test start.
    density_g_ml : float
        d used to turn mass into volume.
    evaporation_loss_g_h : float
        Evaporation rate added back, g/h.
    mean_flow_ml_h : float
        Q̄ over the analysis period, mL/h.
    mean_error_percent : float
        A (or B) over the analysis period, %.
    windows : tuple of TrumpetWindow
        One per observation window, in the order asked for.
    resampled : bool
        Whether the log had to be interpolated onto the S grid.
    note : str
        The resampling note ("" when none happened).
    """

    rate_ml_h: float
    sample_interval_min: float
    analysis_period_min: tuple[float, float]
    density_g_ml: float
    evaporation_loss_g_h: float
    mean_flow_ml_h: float
    mean_error_percent: float
    windows: tuple[TrumpetWindow, ...]
    resampled: bool = False
    note: str = ""

    def window(self, window_min: float) -> TrumpetWindow:
        """The result for observation window ``window_min`` (KeyError if not computed)."""
        for entry in self.windows:
            if math.isclose(entry.window_min, window_min, rel_tol=1e-9, abs_tol=1e-12):
                return entry
        raise KeyError(f"no trumpet window of {window_min:g} min was computed")

    def as_dict(self) -> dict[str, Any]:
        """JSON-able dict; the schema of ``medtwin analyze trumpet --json``.

        Window keys are P in min formatted with ``:g`` (``"1"``, ``"2"``, … ``"31"``).
        """
        return {
            "rate_ml_h": self.rate_ml_h,
            "interval_min": self.sample_interval_min,
            "analysis_period_min": list(self.analysis_period_min),
            "density_g_ml": self.density_g_ml,
            "evaporation_loss_g_h": self.evaporation_loss_g_h,
            "mean_flow_ml_h": self.mean_flow_ml_h,
            "mean_error_percent": self.mean_error_percent,
            "resampled": self.resampled,
            "resampling_note": self.note or None,
            "windows": {
                f"{w.window_min:g}": {
                    "ep_max": w.ep_max_percent,
                    "ep_min": w.ep_min_percent,
                    "samples_per_window": w.samples_per_window,
                    "window_count": w.window_count,
                    "ep_max_start_min": w.ep_max_start_min,
                    "ep_min_start_min": w.ep_min_start_min,
                }
                for w in self.windows
            },
        }


@dataclass(frozen=True)
class OcclusionResult:
    """One occlusion test (2012 edition, occlusion clause; see the module docstring).

    Attributes
    ----------
    occlusion_s, release_s : float
        When the line was occluded and reopened, in the log's time base, s.
    baseline_pressure_mmhg : float
        Median line pressure before the occlusion, mmHg.
    alarm_s : float or None
        First sample at or after the occlusion with the alarm raised; None if the pump did
        not alarm before the release.
    time_to_alarm_s : float or None
        ``alarm_s − occlusion_s``, s.
    pressure_at_alarm_mmhg : float or None
        Line pressure at ``alarm_s``, mmHg.
    peak_pressure_mmhg : float
        Highest line pressure between occlusion and release, mmHg.
    bolus_end_s : float
        End of the bolus collection, s.
    bolus_mass_g : float
        Mass collected from release to ``bolus_end_s``, g.
    bolus_volume_ml : float
        ``bolus_mass_g / d``, mL.
    """

    occlusion_s: float
    release_s: float
    baseline_pressure_mmhg: float
    alarm_s: float | None
    time_to_alarm_s: float | None
    pressure_at_alarm_mmhg: float | None
    peak_pressure_mmhg: float
    bolus_end_s: float
    bolus_mass_g: float
    bolus_volume_ml: float

    @property
    def alarm_raised(self) -> bool:
        """Whether the pump alarmed between occlusion and release."""
        return self.alarm_s is not None


@dataclass(frozen=True, eq=False)
class BolusAccuracy:
    """Bolus volume accuracy over n boluses (1998 clause 50.106; see the module docstring).

    Attributes
    ----------
    expected_ml : ndarray, shape (n,)
        Set volume of each bolus, mL.
    measured_ml : ndarray, shape (n,)
        Delivered volume (mass / d), mL.
    deviation_percent : ndarray, shape (n,)
        ``100·(measured − expected)/expected`` per bolus, %.
    mean_deviation_percent : float
        Mean of the deviations, %.
    max_deviation_percent, min_deviation_percent : float
        Largest and smallest (most negative) single deviation, %.
    worst_deviation_percent : float
        The single deviation of largest magnitude, with its sign, %.
    worst_index : int
        Index (0-based) of that bolus.
    """

    expected_ml: FloatArray
    measured_ml: FloatArray
    deviation_percent: FloatArray
    mean_deviation_percent: float
    max_deviation_percent: float
    min_deviation_percent: float
    worst_deviation_percent: float
    worst_index: int
