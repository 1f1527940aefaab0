"""IEC 60601-2-24 accuracy, occlusion and bolus analyses of gravimetric infusion-pump logs.

Pure functions over numpy arrays that return frozen dataclasses; nothing here reads a file,
prints or touches a device. The run store, the report and ``medtwin analyze`` call them on
real and twin data alike.

What is implemented, and how sure we are of it
-----------------------------------------------
The method is the one of IEC 60601-2-24:1998 clause 50.102 (flow accuracy, start-up and
trumpet curves), kept by the 2012 edition in clause 201.12.1. The clause numbers of the
2012 edition and the exact formulas below are marked **[std?]**: they agree with
manufacturers' IFUs (B. Braun Perfusor, BD Alaris 8000, Smiths CADD) and with the Chinese
adoption GB 9706.27 as quoted publicly (sources in docs/analysis.md), but have not been
checked against a licensed copy of the standard. Every figure that could differ is
therefore a keyword argument (S, d, the windows, the analysis periods). d comes from the
one gravimetric policy of :mod:`medtwin.hil.analysis.gravimetry` (water temperature, air
buoyancy, evaporation).

* Flow per sample, ``Q_i = 60·(W_i − W_{i−1}) / (S·d)`` mL/h, with W in g, the sample
  interval S in min and the density d in g/mL. **[std?]**
* Mean flow error over an analysis period of length T (A: the second hour; B: the last
  hour of a long test), ``A = 100·(Q̄ − r)/r`` with ``Q̄ = 60·(W_end − W_start)/(T·d)``.
  **[std?]**
* Trumpet curve: for each observation window P (2, 5, 11, 19, 31 min; 1 min when asked),
  ``Ep(max) = max_j (S/P)·Σ_{i=j}^{j+P/S−1} 100·(Q_i − r)/r`` over
  ``j = 1 … m``, ``m = (T − P)/S + 1`` (the window count is **[src]**; the Ep formula is
  **[std?]**), and Ep(min) the minimum of the same.
* Occlusion (2012 edition, the occlusion clause under 201.12.4.4; the sub-clause number is
  **not** confirmed by our sources): time from occlusion to alarm, pressure at alarm and the
  unintended bolus collected after release "until the pressure is reduced". **[src]** for
  the measurands (AS 60601.2.24:2018 summary), **[std?]** for the exact end-of-bolus rule.
* Bolus accuracy (1998 clause 50.106, named by INFUSCALE; the 2012 clause number is not
  confirmed): the deviation of each bolus from its set volume, the mean and the worst.

Time origin
-----------
Times in a log are seconds in any time base (0 at pump start, or a Unix timestamp); the
test starts at ``start_s`` (default: the first sample) and every period and window is in
minutes after that.

Why hand-written
----------------
No maintained library implements IEC 60601-2-24 (the packages that do, e.g. INFUSCALE or
Datrend's DTP, are closed). The sliding-window extremes are a cumulative sum per window
length: O(n) per window and no Python loop over samples, so a 96-hour log sampled every
0.5 s takes milliseconds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from medtwin.device_models.water import water_density_g_ml as _model_water_density
from medtwin.drivers.errors import AnalysisError
from medtwin.hil.analysis.gravimetry import GravimetricPolicy

__all__ = [
    "DEFAULT_ANALYSIS_PERIOD_MIN",
    "DEFAULT_DENSITY_G_ML",
    "DEFAULT_SAMPLE_INTERVAL_MIN",
    "DEFAULT_STARTUP_PERIOD_MIN",
    "DEFAULT_WATER_DENSITY_G_ML",
    "DEFAULT_WINDOWS_MIN",
    "WINDOWS_WITH_1MIN",
    "BolusAccuracy",
    "GravimetricSeries",
    "MeanFlowError",
    "OcclusionResult",
    "StartupCurve",
    "TrumpetCurve",
    "TrumpetWindow",
    "bolus_accuracy",
    "flow_from_mass",
    "last_hour_period_min",
    "mean_flow_error",
    "occlusion_analysis",
    "resample_to_interval",
    "startup_curve",
    "trumpet_curve",
    "trumpet_windows",
    "water_density_g_ml",
]

FloatArray = npt.NDArray[np.float64]

#: S for pumps, 0.5 min (B. Braun IFUs, GB 9706.27; drop-counting controllers use 1 min).
DEFAULT_SAMPLE_INTERVAL_MIN = 0.5
#: 0.998 g/mL, the d many IFUs and analysers quote for water at about 20 °C (0.99821 g/mL by
#: Tanaka 2001). Kept for ``--density 0.998``-style comparisons; the analyses default to
#: :data:`DEFAULT_DENSITY_G_ML`.
DEFAULT_WATER_DENSITY_G_ML = 0.998
#: d of the default gravimetric policy (:mod:`medtwin.hil.analysis.gravimetry`): water at
#: 20 °C with the air-buoyancy correction, 0.997160 g/mL, the default of every analysis here.
DEFAULT_DENSITY_G_ML = GravimetricPolicy().density_g_ml
#: T0, the start-up period plotted as Q_i against time.
DEFAULT_STARTUP_PERIOD_MIN = 120.0
#: T1, the second hour of the test, from which the trumpet curve is derived.
DEFAULT_ANALYSIS_PERIOD_MIN = (60.0, 120.0)
#: P, the observation windows of the trumpet curve the standard lists (2, 5, 11, 19, 31 min,
#: also in Datrend's DTP help). The 1-min window comes from a national deviation
#: (GB 9706.27) and is computed only when asked for.
DEFAULT_WINDOWS_MIN: tuple[float, ...] = (2.0, 5.0, 11.0, 19.0, 31.0)
#: The same with the 1-min window of GB 9706.27.
WINDOWS_WITH_1MIN: tuple[float, ...] = (1.0, *DEFAULT_WINDOWS_MIN)

# Times are compared with a tolerance relative to S: CSV round trips and float arithmetic
# (0.1 + 0.2) must not make an on-grid log look off-grid, while a real timing offset
# (milliseconds) must.
_GRID_TOLERANCE = 1e-6

# Tanaka M., Girard G., Davis R., Peuto A., Bignell N., "Recommended table for the density
# of water between 0 °C and 40 °C based on recent experimental reports", Metrologia 38
# (2001) 301-309, eq. (1): air-free SMOW at 101.325 kPa, a1..a4 in °C, °C, °C², °C.


# --------------------------------------------------------------------------- results


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


# --------------------------------------------------------------------------- helpers


def water_density_g_ml(temperature_c: float) -> float:
    """Density of air-free pure water at ``temperature_c`` (0–40 °C), g/mL.

    The twin's own formula (:func:`medtwin.device_models.water.water_density_g_ml`, Tanaka et al.
    2001), so analysis and physics never disagree on d.

    Raises
    ------
    AnalysisError
        If the temperature is not finite or outside 0–40 °C.
    """
    try:
        return float(_model_water_density(float(temperature_c)))
    except (TypeError, ValueError) as exc:
        raise AnalysisError(str(exc)) from None


def _positive(value: float, name: str, unit: str) -> float:
    number = float(value)
    if not math.isfinite(number) or number <= 0:
        raise AnalysisError(f"{name} must be a finite number > 0 {unit}, got {value!r}")
    return number


def _non_negative(value: float, name: str, unit: str, hint: str = "") -> float:
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise AnalysisError(f"{name} must be a finite number >= 0 {unit}, got {value!r}{hint}")
    return number


def _array(values: npt.ArrayLike, name: str) -> FloatArray:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise AnalysisError(f"{name} must be numeric: {exc}") from None
    if array.ndim != 1:
        raise AnalysisError(f"{name} must be one-dimensional, got shape {array.shape}")
    finite = np.isfinite(array)
    if not finite.all():
        index = int(np.flatnonzero(~finite)[0])
        raise AnalysisError(
            f"{name} has a non-finite value ({float(array[index])!r}) at index {index}; "
            f"{int((~finite).sum())} of {array.size} values are NaN or infinite"
        )
    return array


def _time_and_values(
    t_s: npt.ArrayLike, values: npt.ArrayLike, name: str, *, min_samples: int = 2
) -> tuple[FloatArray, FloatArray]:
    t = _array(t_s, "t_s")
    v = _array(values, name)
    if t.shape != v.shape:
        raise AnalysisError(f"t_s has {t.size} samples but {name} has {v.size}")
    if t.size < min_samples:
        raise AnalysisError(f"the log has {t.size} samples; at least {min_samples} are needed")
    steps = np.diff(t)
    if (steps <= 0).any():
        index = int(np.flatnonzero(steps <= 0)[0]) + 1
        raise AnalysisError(
            f"t_s is not strictly increasing: sample {index} is at {float(t[index])!r} s, "
            f"sample {index - 1} at {float(t[index - 1])!r} s"
        )
    return t, v


def _steps(length_min: float, interval_min: float, what: str) -> int:
    """``length_min / interval_min`` as an int, or an AnalysisError naming ``what``."""
    count = round(length_min / interval_min)
    if abs(count * interval_min - length_min) > _GRID_TOLERANCE * interval_min:
        raise AnalysisError(
            f"{what} ({length_min:g} min) is not a whole number of sample intervals "
            f"S = {interval_min:g} min"
        )
    return int(count)


def _period(
    analysis_period_min: Sequence[float], series: GravimetricSeries, what: str
) -> tuple[float, float, int, int]:
    """Validate an analysis period against the log; grid indices of its two ends."""
    if len(analysis_period_min) != 2:
        raise AnalysisError(
            f"{what} must be (start_min, end_min), got {tuple(analysis_period_min)!r}"
        )
    start_min, end_min = (float(x) for x in analysis_period_min)
    if not (math.isfinite(start_min) and math.isfinite(end_min)) or start_min < 0:
        raise AnalysisError(f"{what} {start_min:g}–{end_min:g} min must be finite and >= 0")
    if end_min <= start_min:
        raise AnalysisError(f"{what} {start_min:g}–{end_min:g} min ends before it starts")
    s = series.sample_interval_min
    i_start = _steps(start_min, s, f"the start of the {what}")
    i_end = _steps(end_min, s, f"the end of the {what}")
    if i_end > series.t_min.size - 1:
        raise AnalysisError(
            f"the balance log covers {series.coverage_min:g} min but the {what} "
            f"{start_min:g}–{end_min:g} min needs {end_min:g} min of data"
        )
    return start_min, end_min, i_start, i_end


# --------------------------------------------------------------------------- flow


def resample_to_interval(
    t_s: npt.ArrayLike,
    mass_g: npt.ArrayLike,
    *,
    sample_interval_min: float = DEFAULT_SAMPLE_INTERVAL_MIN,
    start_s: float | None = None,
) -> GravimetricSeries:
    """Put a balance log onto the S grid ``start_s + k·S`` by linear interpolation of mass.

    IEC 60601-2-24 (1998 50.102) reads the balance every S; logs from other tools come at
    their own rate (0.5 s, 7 s, jittered wall-clock times). Mass is the quantity that is
    interpolated, not flow, so the total delivered between two grid points is preserved
    for any log whose mass is linear between its samples. A log already on the grid is
    returned unchanged with ``resampled=False``.

    Parameters
    ----------
    t_s : array_like, shape (n,)
        Sample times in s, strictly increasing.
    mass_g : array_like, shape (n,)
        Balance readings in g.
    sample_interval_min : float
        S in min.
    start_s : float, optional
        Test start in the log's time base (default: the first sample). Samples before it
        are ignored; it may not precede the first sample.

    Returns
    -------
    GravimetricSeries
        ``t_min`` and ``mass_g`` of shape (k,), ``k = ⌊coverage/S⌋ + 1``.

    Raises
    ------
    AnalysisError
        On NaNs, non-increasing time, mismatched lengths, a start outside the log, or a log
        shorter than one sample interval.
    """
    interval_min = _positive(sample_interval_min, "the sample interval S", "min")
    t, mass = _time_and_values(t_s, mass_g, "mass_g")
    origin_s = float(t[0]) if start_s is None else float(start_s)
    step_s = interval_min * 60.0
    tolerance_s = _GRID_TOLERANCE * step_s
    if not math.isfinite(origin_s) or origin_s < t[0] - tolerance_s or origin_s > t[-1]:
        raise AnalysisError(
            f"the test start {origin_s!r} s is outside the balance log "
            f"({float(t[0])!r}–{float(t[-1])!r} s)"
        )
    coverage_s = float(t[-1]) - origin_s
    count = math.floor(coverage_s / step_s + _GRID_TOLERANCE) + 1
    if count < 2:
        raise AnalysisError(
            f"the balance log covers {coverage_s / 60.0:g} min after the test start, less "
            f"than one sample interval S = {interval_min:g} min"
        )
    steps_k = np.arange(count, dtype=np.float64)
    grid_s = origin_s + steps_k * step_s
    max_gap_s = float(np.max(np.diff(t)))
    on_grid = t.size == count and bool(np.all(np.abs(t - grid_s) <= tolerance_s))
    if on_grid:
        grid_mass = mass.copy()
        note = ""
    else:
        grid_mass = np.interp(grid_s, t, mass)
        note = (
            f"resampled {t.size} balance samples (median interval "
            f"{float(np.median(np.diff(t))):.6g} s, largest gap {max_gap_s:.6g} s) onto the "
            f"S = {interval_min:g} min grid by linear interpolation of mass: {count} points"
        )
    t_min = steps_k * interval_min
    t_min.setflags(write=False)
    grid_mass.setflags(write=False)
    return GravimetricSeries(
        t_min=t_min,
        mass_g=grid_mass,
        sample_interval_min=interval_min,
        start_s=origin_s,
        coverage_min=coverage_s / 60.0,
        source_samples=int(t.size),
        resampled=not on_grid,
        max_gap_s=max_gap_s,
        note=note,
    )


def flow_from_mass(
    mass_g: npt.ArrayLike,
    *,
    sample_interval_min: float = DEFAULT_SAMPLE_INTERVAL_MIN,
    density_g_ml: float = DEFAULT_DENSITY_G_ML,
    evaporation_loss_g_h: float = 0.0,
) -> FloatArray:
    """Flow per sample interval from balance readings on the S grid (1998 50.102).

    ``Q_i = 60·(W_i − W_{i−1}) / (S·d) + e/d`` mL/h, where ``e`` is the evaporation loss
    rate measured with the pump stopped (the balance loses ``e·S/60`` g per interval that
    the pump did deliver, so it is added back). The first term is the standard's formula
    **[std?]**; the correction is common gravimetric practice, not from the standard's text.

    Parameters
    ----------
    mass_g : array_like, shape (n,)
        W_0 … W_{n−1} in g, one every S.
    sample_interval_min : float
        S in min.
    density_g_ml : float
        d in g/mL (:func:`water_density_g_ml` gives it for a temperature).
    evaporation_loss_g_h : float
        Evaporation loss as a positive rate, g/h (0: no correction).

    Returns
    -------
    ndarray, shape (n − 1,)
        Q_1 … Q_{n−1} in mL/h.
    """
    interval_min = _positive(sample_interval_min, "the sample interval S", "min")
    density = _positive(density_g_ml, "the density d", "g/mL")
    evaporation = _non_negative(
        evaporation_loss_g_h,
        "the evaporation loss",
        "g/h",
        " (give the loss as a positive rate: a balance slope of -0.002 g/h is 0.002)",
    )
    mass = _array(mass_g, "mass_g")
    if mass.size < 2:
        raise AnalysisError(f"mass_g has {mass.size} samples; at least 2 are needed")
    flow: FloatArray = np.diff(mass) * (60.0 / (interval_min * density)) + evaporation / density
    return flow


def startup_curve(
    t_s: npt.ArrayLike,
    mass_g: npt.ArrayLike,
    *,
    sample_interval_min: float = DEFAULT_SAMPLE_INTERVAL_MIN,
    density_g_ml: float = DEFAULT_DENSITY_G_ML,
    evaporation_loss_g_h: float = 0.0,
    period_min: float = DEFAULT_STARTUP_PERIOD_MIN,
    start_s: float | None = None,
) -> StartupCurve:
    """Start-up curve: Q_i against time over T0 (1998 50.102; 2012 201.12.1 **[std?]**).

    It shows the delay in onset of delivery caused by mechanical slack and compliance.

    Parameters
    ----------
    t_s, mass_g : array_like, shape (n,)
        The balance log (s, g); resampled onto the S grid when needed.
    sample_interval_min, density_g_ml, evaporation_loss_g_h
        As in :func:`flow_from_mass`.
    period_min : float
        T0 in min (the first 2 h by default).
    start_s : float, optional
        Test start, as in :func:`resample_to_interval`.

    Raises
    ------
    AnalysisError
        If the log is shorter than T0 (naming both), or as in :func:`resample_to_interval`.
    """
    series = resample_to_interval(
        t_s, mass_g, sample_interval_min=sample_interval_min, start_s=start_s
    )
    t0_min = _positive(period_min, "the start-up period T0", "min")
    _, _, _, i_end = _period((0.0, t0_min), series, "start-up period T0")
    flow = flow_from_mass(
        series.mass_g[: i_end + 1],
        sample_interval_min=series.sample_interval_min,
        density_g_ml=density_g_ml,
        evaporation_loss_g_h=evaporation_loss_g_h,
    )
    t_min = series.t_min[1 : i_end + 1].copy()
    t_min.setflags(write=False)
    flow.setflags(write=False)
    return StartupCurve(
        t_min=t_min,
        flow_ml_h=flow,
        period_min=t0_min,
        sample_interval_min=series.sample_interval_min,
        series=series,
    )


def last_hour_period_min(
    t_s: npt.ArrayLike,
    *,
    sample_interval_min: float = DEFAULT_SAMPLE_INTERVAL_MIN,
    start_s: float | None = None,
    length_min: float = 60.0,
) -> tuple[float, float]:
    """The analysis period for B: the last ``length_min`` of the log, on the S grid.

    For long tests (e.g. 72–96 h for long-life sets) the standard also evaluates the last
    hour **[std?]**; pass the result as ``analysis_period_min`` to :func:`mean_flow_error`
    or :func:`trumpet_curve`.

    Parameters
    ----------
    t_s : array_like, shape (n,)
        Sample times of the log, s.
    sample_interval_min : float
        S in min; the period ends on the last full grid point.
    start_s : float, optional
        Test start in the log's time base (default: the first sample).
    length_min : float
        Length of the period, min.

    Raises
    ------
    AnalysisError
        If the log is shorter than ``length_min`` (naming both).
    """
    interval_min = _positive(sample_interval_min, "the sample interval S", "min")
    length = _positive(length_min, "the period length", "min")
    t = _array(t_s, "t_s")
    if t.size < 2:
        raise AnalysisError(f"the log has {t.size} samples; at least 2 are needed")
    origin_s = float(t[0]) if start_s is None else float(start_s)
    coverage_min = (float(t[-1]) - origin_s) / 60.0
    end_min = math.floor(coverage_min / interval_min + _GRID_TOLERANCE) * interval_min
    _steps(length, interval_min, "the period length")
    if end_min - length < -_GRID_TOLERANCE * interval_min:
        raise AnalysisError(
            f"the balance log covers {coverage_min:g} min but the last-hour period needs "
            f"{length:g} min of data"
        )
    return (max(end_min - length, 0.0), end_min)


def _period_flow(
    series: GravimetricSeries,
    *,
    rate_ml_h: float,
    analysis_period_min: Sequence[float],
    density_g_ml: float,
    evaporation_loss_g_h: float,
) -> tuple[MeanFlowError, FloatArray, int]:
    rate = _positive(rate_ml_h, "the set rate r", "mL/h")
    density = _positive(density_g_ml, "the density d", "g/mL")
    start_min, end_min, i_start, i_end = _period(analysis_period_min, series, "analysis period")
    window_mass = series.mass_g[i_start : i_end + 1]
    flow = flow_from_mass(
        window_mass,
        sample_interval_min=series.sample_interval_min,
        density_g_ml=density,
        evaporation_loss_g_h=evaporation_loss_g_h,
    )
    period_min = end_min - start_min
    # Q̄ from the mass difference, as the standard defines it, rather than mean(Q_i): the
    # two agree to rounding, but this one is what a hand calculation reproduces.
    delivered_ml = (
        float(window_mass[-1] - window_mass[0]) + evaporation_loss_g_h * period_min / 60.0
    ) / density
    mean_flow = delivered_ml * 60.0 / period_min
    result = MeanFlowError(
        rate_ml_h=rate,
        analysis_period_min=(start_min, end_min),
        delivered_ml=delivered_ml,
        mean_flow_ml_h=mean_flow,
        error_percent=100.0 * (mean_flow - rate) / rate,
        resampled=series.resampled,
        note=series.note,
    )
    return result, flow, i_start


def mean_flow_error(
    t_s: npt.ArrayLike,
    mass_g: npt.ArrayLike,
    *,
    rate_ml_h: float,
    analysis_period_min: Sequence[float] = DEFAULT_ANALYSIS_PERIOD_MIN,
    sample_interval_min: float = DEFAULT_SAMPLE_INTERVAL_MIN,
    density_g_ml: float = DEFAULT_DENSITY_G_ML,
    evaporation_loss_g_h: float = 0.0,
    start_s: float | None = None,
) -> MeanFlowError:
    """Mean flow error A (or B) over an analysis period (1998 50.102 **[std?]**).

    ``A = 100·(Q̄ − r)/r`` with ``Q̄ = 60·(W_end − W_start)/(T·d)`` (plus the evaporation
    correction), T the length of the period in min.

    Parameters
    ----------
    t_s, mass_g : array_like, shape (n,)
        The balance log (s, g); resampled onto the S grid when needed.
    rate_ml_h : float
        Set rate r, mL/h.
    analysis_period_min : (float, float)
        Start and end in min after the test start; both multiples of S. Default the second
        hour (A); :func:`last_hour_period_min` gives the period for B.
    sample_interval_min, density_g_ml, evaporation_loss_g_h
        As in :func:`flow_from_mass`.
    start_s : float, optional
        Test start, as in :func:`resample_to_interval`.

    Raises
    ------
    AnalysisError
        If the log is shorter than the period (naming both lengths), on NaNs,
        non-increasing time or invalid parameters.
    """
    series = resample_to_interval(
        t_s, mass_g, sample_interval_min=sample_interval_min, start_s=start_s
    )
    result, _, _ = _period_flow(
        series,
        rate_ml_h=rate_ml_h,
        analysis_period_min=analysis_period_min,
        density_g_ml=density_g_ml,
        evaporation_loss_g_h=evaporation_loss_g_h,
    )
    return result


def trumpet_windows(
    flow_ml_h: npt.ArrayLike,
    *,
    rate_ml_h: float,
    sample_interval_min: float = DEFAULT_SAMPLE_INTERVAL_MIN,
    windows_min: Sequence[float] = DEFAULT_WINDOWS_MIN,
    period_start_min: float = 0.0,
) -> tuple[TrumpetWindow, ...]:
    """Ep(max) and Ep(min) for each observation window over flows Q_1 … Q_n.

    ``Ep(P) = max/min over j = 1 … m of (S/P)·Σ_{i=j}^{j+p−1} 100·(Q_i − r)/r`` with
    ``p = P/S`` and ``m = (T − P)/S + 1 = n − p + 1`` (1998 50.102; the Ep formula is
    **[std?]**, m is **[src]**). Each window length costs one difference of a cumulative
    sum, O(n), with no Python loop over samples.

    Note that Ep(max) ≥ A ≥ Ep(min) is only guaranteed when P divides T: with m sliding
    windows the first and last p−1 samples lie in fewer windows than the rest, so a flow
    error concentrated at the very ends of the period can pull A outside [Ep(min), Ep(max)]
    for P = 11, 19 or 31 min over a 60-min period. That is the standard's formula; it is not
    corrected here.

    Parameters
    ----------
    flow_ml_h : array_like, shape (n,)
        Q_i over the analysis period, mL/h.
    rate_ml_h : float
        Set rate r, mL/h.
    sample_interval_min : float
        S in min.
    windows_min : sequence of float
        The observation windows P in min; each a multiple of S and no longer than T = n·S.
    period_start_min : float
        Time of the period's first grid point, min (only used to report window starts).

    Raises
    ------
    AnalysisError
        If a window is longer than the period (naming both), not a multiple of S, or on
        NaNs / invalid parameters.
    """
    rate = _positive(rate_ml_h, "the set rate r", "mL/h")
    interval_min = _positive(sample_interval_min, "the sample interval S", "min")
    flow = _array(flow_ml_h, "flow_ml_h")
    if flow.size < 1:
        raise AnalysisError("flow_ml_h is empty; the analysis period has no samples")
    if len(windows_min) == 0:
        raise AnalysisError("no observation windows were given")
    period_min = flow.size * interval_min
    error_percent = (flow - rate) * (100.0 / rate)
    # Centring on the mean before the cumulative sum keeps the running total near zero, so
    # a 96-hour log sampled every 0.5 s loses no digits to the subtraction below.
    mean_error = float(np.mean(error_percent))
    running = np.zeros(flow.size + 1)
    np.cumsum(error_percent - mean_error, out=running[1:])
    results = []
    for window in windows_min:
        window_min = _positive(window, "an observation window P", "min")
        if window_min > period_min * (1.0 + _GRID_TOLERANCE):
            raise AnalysisError(
                f"the observation window P = {window_min:g} min is longer than the "
                f"analysis period T = {period_min:g} min"
            )
        p = _steps(window_min, interval_min, f"the observation window P = {window_min:g} min")
        window_means = (running[p:] - running[:-p]) * (1.0 / p) + mean_error
        j_max = int(np.argmax(window_means))
        j_min = int(np.argmin(window_means))
        results.append(
            TrumpetWindow(
                window_min=window_min,
                samples_per_window=p,
                window_count=int(window_means.size),
                ep_max_percent=float(window_means[j_max]),
                ep_min_percent=float(window_means[j_min]),
                ep_max_start_min=period_start_min + j_max * interval_min,
                ep_min_start_min=period_start_min + j_min * interval_min,
            )
        )
    return tuple(results)


def trumpet_curve(
    t_s: npt.ArrayLike,
    mass_g: npt.ArrayLike,
    *,
    rate_ml_h: float,
    sample_interval_min: float = DEFAULT_SAMPLE_INTERVAL_MIN,
    density_g_ml: float = DEFAULT_DENSITY_G_ML,
    evaporation_loss_g_h: float = 0.0,
    analysis_period_min: Sequence[float] = DEFAULT_ANALYSIS_PERIOD_MIN,
    windows_min: Sequence[float] = DEFAULT_WINDOWS_MIN,
    start_s: float | None = None,
) -> TrumpetCurve:
    """Trumpet curve and mean error of an analysis period (1998 50.102; 2012 201.12.1).

    Resamples the log onto the S grid when needed, computes Q_i over the analysis period
    (:func:`flow_from_mass`), A over the same period (:func:`mean_flow_error`) and Ep(max) /
    Ep(min) for each window (:func:`trumpet_windows`). See the module docstring for which
    formulas are confirmed.

    Parameters
    ----------
    t_s, mass_g : array_like, shape (n,)
        The balance log (s, g).
    rate_ml_h : float
        Set rate r, mL/h.
    sample_interval_min, density_g_ml, evaporation_loss_g_h
        As in :func:`flow_from_mass`.
    analysis_period_min : (float, float)
        Start and end, min after the test start (default the second hour).
    windows_min : sequence of float
        Observation windows P, min.
    start_s : float, optional
        Test start, as in :func:`resample_to_interval`.

    Raises
    ------
    AnalysisError
        Log shorter than the analysis period (naming both lengths), a window longer than the
        period, NaNs, non-increasing time, or values that are not multiples of S.
    """
    series = resample_to_interval(
        t_s, mass_g, sample_interval_min=sample_interval_min, start_s=start_s
    )
    mean_error, flow, _ = _period_flow(
        series,
        rate_ml_h=rate_ml_h,
        analysis_period_min=analysis_period_min,
        density_g_ml=density_g_ml,
        evaporation_loss_g_h=evaporation_loss_g_h,
    )
    windows = trumpet_windows(
        flow,
        rate_ml_h=mean_error.rate_ml_h,
        sample_interval_min=series.sample_interval_min,
        windows_min=windows_min,
        period_start_min=mean_error.analysis_period_min[0],
    )
    return TrumpetCurve(
        rate_ml_h=mean_error.rate_ml_h,
        sample_interval_min=series.sample_interval_min,
        analysis_period_min=mean_error.analysis_period_min,
        density_g_ml=float(density_g_ml),
        evaporation_loss_g_h=float(evaporation_loss_g_h),
        mean_flow_ml_h=mean_error.mean_flow_ml_h,
        mean_error_percent=mean_error.error_percent,
        windows=windows,
        resampled=series.resampled,
        note=series.note,
    )


# --------------------------------------------------------------------------- occlusion


def occlusion_analysis(
    t_s: npt.ArrayLike,
    pressure_mmhg: npt.ArrayLike,
    alarm: npt.ArrayLike,
    mass_g: npt.ArrayLike,
    *,
    occlusion_s: float,
    release_s: float,
    density_g_ml: float = DEFAULT_DENSITY_G_ML,
    bolus_end_s: float | None = None,
    settled_margin_mmhg: float = 5.0,
) -> OcclusionResult:
    """Time to alarm, pressure at alarm and unintended bolus of one occlusion test.

    2012 edition (AS 60601.2.24:2018), occlusion clause under 201.12.4.4 — the sub-clause
    number is not confirmed. Procedure **[src]**: run at the chosen rate and alarm threshold
    until flow is constant, occlude, measure the pressure at alarm and the time from
    occlusion to alarm, empty the vessel, reopen and collect the unintended bolus "until the
    pressure is reduced".

    The alarm is the first sample at or after ``occlusion_s`` (and no later than
    ``release_s``) with the flag set. Unless ``bolus_end_s`` is given, the bolus ends at the
    first sample after the release whose pressure is within ``settled_margin_mmhg`` of the
    pre-occlusion baseline (the median pressure before the occlusion); that rule is our
    reading of "until the pressure is reduced" **[std?]**, hence configurable. The bolus is
    the balance mass at that time minus the mass at the release (both linearly
    interpolated), so emptying the vessel before the release does not matter.

    Parameters
    ----------
    t_s : array_like, shape (n,)
        Sample times, s, strictly increasing.
    pressure_mmhg : array_like, shape (n,)
        Line pressure downstream of the pump, mmHg.
    alarm : array_like of bool or 0/1, shape (n,)
        Occlusion alarm flag of the pump.
    mass_g : array_like, shape (n,)
        Balance reading, g.
    occlusion_s, release_s : float
        When the stopcock was closed and reopened, s (in the log's time base).
    density_g_ml : float
        d to turn the bolus mass into volume, g/mL.
    bolus_end_s : float, optional
        End of bolus collection, s; default the pressure rule above.
    settled_margin_mmhg : float
        Margin above the baseline at which the pressure counts as reduced, mmHg.

    Raises
    ------
    AnalysisError
        On NaNs, mismatched lengths, non-increasing time, times outside the log, an alarm
        already raised at the occlusion, or a pressure that never settles after release.
    """
    t, pressure = _time_and_values(t_s, pressure_mmhg, "pressure_mmhg")
    _, mass = _time_and_values(t, mass_g, "mass_g")
    flags_raw = _array(alarm, "alarm")
    if flags_raw.shape != t.shape:
        raise AnalysisError(f"t_s has {t.size} samples but alarm has {flags_raw.size}")
    if not np.isin(flags_raw, (0.0, 1.0)).all():
        index = int(np.flatnonzero(~np.isin(flags_raw, (0.0, 1.0)))[0])
        raise AnalysisError(
            f"alarm must be true/false (or 0/1); index {index} is {float(flags_raw[index])!r}"
        )
    flags = flags_raw.astype(bool)
    density = _positive(density_g_ml, "the density d", "g/mL")
    margin = _non_negative(settled_margin_mmhg, "settled_margin_mmhg", "mmHg")
    occluded = float(occlusion_s)
    released = float(release_s)
    t_first, t_last = float(t[0]), float(t[-1])
    if not (math.isfinite(occluded) and t_first < occluded <= t_last):
        raise AnalysisError(
            f"the occlusion time {occlusion_s!r} s must lie after the first sample and "
            f"within the log ({t_first!r}–{t_last!r} s)"
        )
    if not (math.isfinite(released) and occluded < released <= t_last):
        raise AnalysisError(
            f"the release time {release_s!r} s must lie after the occlusion "
            f"({occluded!r} s) and within the log (ends at {t_last!r} s)"
        )

    before = t < occluded
    baseline = float(np.median(pressure[before]))
    i_occ = int(np.searchsorted(t, occluded, side="left"))
    i_rel = int(np.searchsorted(t, released, side="right"))
    if flags[i_occ]:
        raise AnalysisError(
            f"the alarm is already raised at the occlusion ({float(t[i_occ])!r} s); "
            "acknowledge it and let the flow settle before occluding"
        )
    during = flags[i_occ:i_rel]
    if during.any():
        i_alarm = i_occ + int(np.argmax(during))
        alarm_s: float | None = float(t[i_alarm])
        time_to_alarm: float | None = float(t[i_alarm]) - occluded
        pressure_at_alarm: float | None = float(pressure[i_alarm])
    else:
        alarm_s = time_to_alarm = pressure_at_alarm = None
    peak = float(np.max(pressure[i_occ:i_rel]))

    if bolus_end_s is None:
        after = np.flatnonzero((t >= released) & (pressure <= baseline + margin))
        if after.size == 0:
            raise AnalysisError(
                f"the pressure never returned to within {margin:g} mmHg of the "
                f"pre-occlusion baseline {baseline:g} mmHg after the release at {released!r} "
                "s; pass bolus_end_s or a larger settled_margin_mmhg"
            )
        end_s = float(t[after[0]])
    else:
        end_s = float(bolus_end_s)
        if not (math.isfinite(end_s) and released <= end_s <= t_last):
            raise AnalysisError(
                f"bolus_end_s {bolus_end_s!r} s must lie between the release ({released!r} s) "
                f"and the end of the log ({t_last!r} s)"
            )
    bolus_mass = float(np.interp(end_s, t, mass) - np.interp(released, t, mass))
    return OcclusionResult(
        occlusion_s=occluded,
        release_s=released,
        baseline_pressure_mmhg=baseline,
        alarm_s=alarm_s,
        time_to_alarm_s=time_to_alarm,
        pressure_at_alarm_mmhg=pressure_at_alarm,
        peak_pressure_mmhg=peak,
        bolus_end_s=end_s,
        bolus_mass_g=bolus_mass,
        bolus_volume_ml=bolus_mass / density,
    )


# --------------------------------------------------------------------------- bolus


def bolus_accuracy(
    expected_volume_ml: float | npt.ArrayLike,
    measured_mass_g: npt.ArrayLike,
    *,
    density_g_ml: float = DEFAULT_DENSITY_G_ML,
) -> BolusAccuracy:
    """Deviation of each delivered bolus from its set volume (1998 50.106).

    ``deviation_i = 100·(W_i/d − V_i)/V_i``. The standard's number of boluses and which
    statistics it asks the manufacturer to disclose are **[std?]**; this reports the mean,
    the largest, the smallest and the worst (largest magnitude) deviation.

    Parameters
    ----------
    expected_volume_ml : float or array_like, shape (n,)
        Set volume of every bolus (one value for all) or of each, mL; each > 0.
    measured_mass_g : array_like, shape (n,)
        Mass of each bolus on the balance, g.
    density_g_ml : float
        d, g/mL.

    Raises
    ------
    AnalysisError
        No boluses, NaNs, a set volume <= 0, or mismatched lengths.
    """
    density = _positive(density_g_ml, "the density d", "g/mL")
    measured_g = _array(measured_mass_g, "measured_mass_g")
    if measured_g.size == 0:
        raise AnalysisError("measured_mass_g is empty: no boluses to evaluate")
    if np.ndim(expected_volume_ml) == 0:
        expected = _array(
            np.full(measured_g.size, expected_volume_ml, dtype=object), "expected_volume_ml"
        )
    else:
        expected = _array(expected_volume_ml, "expected_volume_ml")
        if expected.size != measured_g.size:
            raise AnalysisError(
                f"expected_volume_ml has {expected.size} boluses but measured_mass_g has "
                f"{measured_g.size}"
            )
    if (expected <= 0).any():
        index = int(np.flatnonzero(expected <= 0)[0])
        raise AnalysisError(
            f"expected_volume_ml must be > 0 mL; bolus {index} is {float(expected[index])!r} mL"
        )
    measured_ml = measured_g / density
    deviation = (measured_ml - expected) * 100.0 / expected
    worst = int(np.argmax(np.abs(deviation)))
    for array in (expected, measured_ml, deviation):
        array.setflags(write=False)
    return BolusAccuracy(
        expected_ml=expected,
        measured_ml=measured_ml,
        deviation_percent=deviation,
        mean_deviation_percent=float(np.mean(deviation)),
        max_deviation_percent=float(np.max(deviation)),
        min_deviation_percent=float(np.min(deviation)),
        worst_deviation_percent=float(deviation[worst]),
        worst_index=worst,
    )
