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

Layout
------
This module holds the flow analyses (resampling, Q_i, start-up, A/B, trumpet) and is the
one import path for all of them: the result dataclasses live in
:mod:`medtwin.hil.analysis.results`, the occlusion and bolus analyses in
:mod:`medtwin.hil.analysis.occlusion_bolus`, the input checks in ``_inputs``, and d in
:mod:`medtwin.hil.analysis.gravimetry`; every public name is re-exported here.

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

import numpy as np
import numpy.typing as npt
from medtwin.device_models.water import water_density_g_ml as _model_water_density
from medtwin.drivers.errors import AnalysisError
from medtwin.hil.analysis._inputs import _array, _non_negative, _positive, _time_and_values
from medtwin.hil.analysis.gravimetry import DEFAULT_DENSITY_G_ML
from medtwin.hil.analysis.occlusion_bolus import bolus_accuracy, occlusion_analysis
from medtwin.hil.analysis.results import (
    BolusAccuracy,
    GravimetricSeries,
    MeanFlowError,
    OcclusionResult,
    StartupCurve,
    TrumpetCurve,
    TrumpetWindow,
)

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
#: :data:`DEFAULT_DENSITY_G_ML`, the d of the default gravimetric policy
#: (:mod:`medtwin.hil.analysis.gravimetry`: water at 20 °C with air buoyancy, 0.997156 g/mL).
DEFAULT_WATER_DENSITY_G_ML = 0.998
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
