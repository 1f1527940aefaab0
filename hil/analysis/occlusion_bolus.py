"""IEC 60601-2-24 occlusion and bolus-accuracy analyses of a gravimetric log.

Part of :mod:`medtwin.hil.analysis.iec60601_2_24` (which re-exports both functions; see its
docstring for what is confirmed): the occlusion test of the 2012 edition (time to alarm,
pressure at alarm, unintended bolus after the release) and bolus accuracy after the 1998
edition's clause 50.106. Pure functions over arrays; volumes through d from the gravimetric
policy (:mod:`medtwin.hil.analysis.gravimetry`).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from medtwin.drivers.errors import AnalysisError
from medtwin.hil.analysis._inputs import _array, _non_negative, _positive, _time_and_values
from medtwin.hil.analysis.gravimetry import DEFAULT_DENSITY_G_ML
from medtwin.hil.analysis.results import BolusAccuracy, OcclusionResult

__all__ = ["bolus_accuracy", "occlusion_analysis"]


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
