"""Baseline vital signs of one patient and their seeded physiological variability.

The vital-sign state is seven numbers on a time grid: heart rate (HR), pulse-oximetry
saturation (SpO2), respiratory rate (RR), non-invasive blood pressure (systolic,
diastolic; the mean is derived), core temperature and perfusion index (PI).

* **Baseline** (:func:`baseline_for`): age- and sex-dependent norms. Children's HR and RR
  follow the medians of Fleming et al. 2011 (Lancet 377:1011,
  doi:10.1016/S0140-6736(10)62226-X); the blood pressure of children the 50th centiles of
  the NHBPEP Fourth Report (Pediatrics 2004;114:555, doi:10.1542/peds.114.2.S2.555), of
  adults the age trends of Franklin et al. 1997 (Circulation 96:308,
  doi:10.1161/01.CIR.96.1.308); temperature Mackowiak et al. 1992 (JAMA 268:1578,
  doi:10.1001/jama.1992.03490120092034); PI Lima et al. 2002 (Crit Care Med 30:1210,
  doi:10.1097/00003246-200206000-00006). Only the figures of Fleming's abstract (HR 127
  at birth, 145 at one month, 113 at two years; RR 44 at birth, 26 at two years) were
  checked against the paper; the other table entries are approximate readings of the
  cited centile charts and are marked so below. Every value is a :func:`param` of
  :class:`VitalBaseline` and can be overridden (``with_overrides``) or calibrated.
* **Variability** (:func:`ou_deviations`, :func:`add_variability`): each vital is its
  (event-shaped) mean plus an Ornstein–Uhlenbeck deviation, the continuous-time
  counterpart of OpenICE's bounded random walk ``NumberWithJitter``, sampled with its
  exact discretisation ``d[k] = a·d[k−1] + σ·√(1−a²)·w[k]``, ``a = exp(−Δt/τ)``, so the
  stationary mean and standard deviation are exactly the parameters whatever the grid.
  The result is reflected into the vital's physiological bounds.
* **Respiration** (:func:`respiratory_phase_rad`): the breathing phase, the integral of
  ``2π·RR/60``; respiratory sinus arrhythmia modulates the R-R intervals with it
  (:mod:`medtwin.device_models.patient.signals`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import partial

import numpy as np
from medtwin.device_models.base import ParameterError, param, validate
from medtwin.device_models.patient.demographics import Demographics
from numpy.typing import ArrayLike, NDArray
from scipy.signal import lfilter

__all__ = [
    "VITALS",
    "VariabilityParams",
    "VitalBaseline",
    "VitalSigns",
    "WalkParams",
    "add_variability",
    "baseline_for",
    "baseline_trajectories",
    "mean_arterial_pressure",
    "ou_deviations",
    "reflect",
    "respiratory_phase_rad",
    "time_grid",
]

#: The vital signs the model generates, by their field names (NIBP mean is derived).
VITALS = (
    "hr_bpm",
    "spo2_percent",
    "rr_min",
    "nibp_sys_mmhg",
    "nibp_dia_mmhg",
    "temp_c",
    "pi_percent",
)

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class VitalBaseline:
    """The resting means of one patient's vital signs (a 40-year-old man by default)."""

    hr_bpm: float = param(70.0, unit="1/min", doc="heart rate", minimum=20.0, maximum=250.0)
    spo2_percent: float = param(
        97.5, unit="%", doc="pulse-oximetry saturation", minimum=50.0, maximum=100.0
    )
    rr_min: float = param(14.0, unit="1/min", doc="respiratory rate", minimum=1.0, maximum=80.0)
    nibp_sys_mmhg: float = param(
        120.0, unit="mmHg", doc="systolic pressure", minimum=40.0, maximum=260.0
    )
    nibp_dia_mmhg: float = param(
        78.0, unit="mmHg", doc="diastolic pressure", minimum=20.0, maximum=160.0
    )
    temp_c: float = param(36.8, unit="°C", doc="core temperature", minimum=30.0, maximum=43.0)
    pi_percent: float = param(
        1.4,
        unit="%",
        doc="perfusion index (pulsatile/static absorbance)",
        minimum=0.02,
        maximum=20.0,
    )

    def __post_init__(self) -> None:
        validate(self)
        if self.nibp_dia_mmhg >= self.nibp_sys_mmhg:
            raise ParameterError(
                f"parameter nibp_dia_mmhg = {self.nibp_dia_mmhg:g} mmHg must be below "
                f"nibp_sys_mmhg = {self.nibp_sys_mmhg:g} mmHg"
            )


# (age_y, median) knots. Fleming 2011: the birth, 1-month and 2-year values are from the
# paper's abstract; the later knots are approximate readings of its centile chart
# (unverified), and the adult values (18 y and over) are conventional resting means.
_HR_KNOTS = ((0.0, 127.0), (1 / 12, 145.0), (2.0, 113.0), (6.0, 96.0), (12.0, 82.0), (18.0, 72.0))
_RR_KNOTS = ((0.0, 44.0), (2.0, 26.0), (6.0, 21.0), (12.0, 18.0), (18.0, 15.0), (30.0, 14.0))
# 50th-centile systolic/diastolic pressure of children at median height (NHBPEP 2004,
# approximate readings, unverified) and the adult trend: systolic rising about linearly
# with age, diastolic peaking in the fifties then falling (Franklin 1997, read from the
# figures, unverified). Women are a few mmHg lower before the menopause (same source).
_SYS_KNOTS = (
    (0.0, 72.0),
    (1.0, 86.0),
    (6.0, 97.0),
    (12.0, 106.0),
    (17.0, 114.0),
    (30.0, 118.0),
    (50.0, 126.0),
    (70.0, 136.0),
    (90.0, 144.0),
)
_DIA_KNOTS = (
    (0.0, 40.0),
    (1.0, 40.0),
    (6.0, 58.0),
    (12.0, 62.0),
    (17.0, 66.0),
    (30.0, 76.0),
    (50.0, 80.0),
    (70.0, 76.0),
    (90.0, 70.0),
)


def _knots(knots: tuple[tuple[float, float], ...], age_y: float) -> float:
    ages, values = zip(*knots, strict=True)
    return float(np.interp(age_y, ages, values))


def baseline_for(patient: Demographics) -> VitalBaseline:
    """The age- and sex-dependent resting vital signs of a patient.

    Parameters
    ----------
    patient : Demographics
        Age (years) and sex are read; weight and height are not (the children's blood
        pressure centiles are taken at median height).

    Returns
    -------
    VitalBaseline
        Means for HR, RR and NIBP from the knot tables above (linear in age between
        knots), SpO2 97.5 %, temperature 36.8 °C (Mackowiak 1992) and PI 1.4 %
        (Lima 2002, median of healthy adults).
    """
    age = patient.age_y
    female = patient.sex == "female"
    hr = _knots(_HR_KNOTS, age) + (3.0 if female and age >= 12.0 else 0.0)
    sys = _knots(_SYS_KNOTS, age) - (5.0 if female and 12.0 <= age < 55.0 else 0.0)
    dia = _knots(_DIA_KNOTS, age) - (3.0 if female and 12.0 <= age < 55.0 else 0.0)
    return VitalBaseline(
        hr_bpm=round(hr, 1),
        rr_min=round(_knots(_RR_KNOTS, age), 1),
        nibp_sys_mmhg=round(sys, 1),
        nibp_dia_mmhg=round(dia, 1),
    )


@dataclass(frozen=True)
class WalkParams:
    """One vital's bounded random walk: an Ornstein–Uhlenbeck deviation from its mean.

    ``sd`` is the stationary standard deviation and ``tau_s`` the correlation time (the
    autocorrelation is ``exp(−|lag|/τ)``); the sum of mean and deviation is reflected
    into ``[lower, upper]``. With ``log_scale`` the deviation is multiplicative:
    ``value = mean·exp(d)`` (for the perfusion index, which varies over decades).
    """

    sd: float = param(1.0, unit="vital's unit", doc="stationary standard deviation", minimum=0.0)
    tau_s: float = param(60.0, unit="s", doc="correlation time", minimum=1e-3)
    lower: float = param(0.0, unit="vital's unit", doc="physiological lower bound")
    upper: float = param(1.0, unit="vital's unit", doc="physiological upper bound")
    log_scale: bool = param(False, unit="", doc="multiplicative (log-normal) deviation")

    def __post_init__(self) -> None:
        validate(self)
        if not self.lower < self.upper:
            raise ParameterError(
                f"parameter lower = {self.lower:g} must be below upper = {self.upper:g}"
            )


@dataclass(frozen=True)
class VariabilityParams:
    """The variability of every vital sign.

    The standard deviations and correlation times are model choices of this project
    (slow minute-scale drifts of a resting patient, not fitted to a data set); the
    bounds are the ranges a monitor can display (SpO2 0–100 %, as a drug-induced apnoea
    can take it far below the 70 % where oximeters stop being calibrated). Diastolic pressure is
    correlated with systolic pressure (``bp_correlation``).
    """

    hr: WalkParams = field(default_factory=partial(WalkParams, 2.0, 120.0, 20.0, 250.0))
    spo2: WalkParams = field(default_factory=partial(WalkParams, 0.4, 30.0, 0.0, 100.0))
    rr: WalkParams = field(default_factory=partial(WalkParams, 1.0, 60.0, 0.0, 80.0))
    nibp_sys: WalkParams = field(default_factory=partial(WalkParams, 4.0, 300.0, 40.0, 260.0))
    nibp_dia: WalkParams = field(default_factory=partial(WalkParams, 2.5, 300.0, 20.0, 160.0))
    temp: WalkParams = field(default_factory=partial(WalkParams, 0.05, 3600.0, 30.0, 43.0))
    pi: WalkParams = field(default_factory=partial(WalkParams, 0.15, 60.0, 0.02, 20.0, True))
    bp_correlation: float = param(
        0.7,
        unit="",
        doc="correlation of diastolic with systolic deviation",
        minimum=-1.0,
        maximum=1.0,
    )


@dataclass(frozen=True)
class VitalSigns:
    """Vital signs on a time grid; every array has shape ``(n,)`` like ``t_s``."""

    t_s: FloatArray
    hr_bpm: FloatArray
    spo2_percent: FloatArray
    rr_min: FloatArray
    nibp_sys_mmhg: FloatArray
    nibp_dia_mmhg: FloatArray
    nibp_mean_mmhg: FloatArray
    temp_c: FloatArray
    pi_percent: FloatArray


def time_grid(t_s: ArrayLike) -> FloatArray:
    """``t_s`` as a float array, checked: one-dimensional, finite, strictly increasing."""
    t = np.asarray(t_s, dtype=np.float64)
    if t.ndim != 1 or t.size == 0:
        raise ParameterError(f"t_s must be a non-empty 1-D array, got shape {t.shape}")
    if not np.all(np.isfinite(t)):
        raise ParameterError("t_s must be finite")
    if t.size > 1 and not np.all(np.diff(t) > 0.0):
        raise ParameterError("t_s must be strictly increasing")
    return t


def mean_arterial_pressure(
    sys_mmhg: FloatArray | float, dia_mmhg: FloatArray | float
) -> FloatArray:
    """The conventional estimate ``MAP = DBP + (SBP − DBP)/3`` (mmHg).

    Oscillometric monitors measure MAP directly (the maximum of the cuff oscillations)
    and estimate systolic and diastolic pressures from it; the one-third rule relates them
    for a resting adult at normal heart rate.
    """
    return np.asarray(dia_mmhg + (np.asarray(sys_mmhg) - dia_mmhg) / 3.0, dtype=np.float64)


def reflect(x: ArrayLike, lower: float, upper: float) -> FloatArray:
    """Fold ``x`` into ``[lower, upper]`` by reflection at the bounds (a triangle wave).

    A reflected random walk keeps its local increments, unlike clipping, which would pile
    probability mass up at the bound.
    """
    width = upper - lower
    u = np.mod(np.asarray(x, dtype=np.float64) - lower, 2.0 * width)
    return np.asarray(lower + width - np.abs(u - width), dtype=np.float64)


def ou_deviations(
    t_s: ArrayLike,
    sd: float,
    tau_s: float,
    rng: np.random.Generator,
    *,
    d0: float | None = None,
) -> FloatArray:
    """An Ornstein–Uhlenbeck path with mean 0, exactly discretised on ``t_s``.

    ``d[k] = a_k·d[k−1] + sd·√(1 − a_k²)·w[k]`` with ``a_k = exp(−(t_k − t_{k−1})/τ)`` and
    ``w`` standard normal: the transition density of the continuous process, so any grid
    (uniform or not) gives the same statistics. ``d[0] = d0``, or a draw from the
    stationary law ``N(0, sd²)``.

    Parameters
    ----------
    t_s : array_like, shape (n,)
        Strictly increasing times (s).
    sd, tau_s : float
        Stationary standard deviation (any unit) and correlation time (s).
    rng : numpy.random.Generator
        Consumes ``n`` standard normals.
    d0 : float, optional
        Initial deviation.

    Returns
    -------
    ndarray, shape (n,)
    """
    t = time_grid(t_s)
    w = rng.standard_normal(t.size)
    out = np.empty(t.size)
    out[0] = sd * w[0] if d0 is None else d0
    if t.size == 1:
        return out
    dt = np.diff(t)
    if np.allclose(dt, dt[0], rtol=1e-9, atol=0.0):
        a = math.exp(-float(dt[0]) / tau_s)
        b = sd * math.sqrt(max(1.0 - a * a, 0.0))
        out[1:], _ = lfilter([b], [1.0, -a], w[1:], zi=np.array([a * out[0]]))
        return out
    # Non-uniform grid: d_k = A_k·(d_0 + Σ_j b_j w_j / A_j), A_k = exp(−(t_k − t_0)/τ),
    # evaluated in blocks spanning at most 10 τ so that 1/A_j stays below e^10.
    a_k = np.exp(-dt / tau_s)
    b_k = sd * np.sqrt(np.maximum(1.0 - a_k * a_k, 0.0))
    start = 0
    while start < t.size - 1:
        stop = int(np.searchsorted(t, t[start] + 10.0 * tau_s, side="right"))
        stop = min(max(stop, start + 2), t.size)
        log_a = -(t[start + 1 : stop] - t[start]) / tau_s
        acc = np.cumsum(b_k[start : stop - 1] * w[start + 1 : stop] * np.exp(-log_a))
        out[start + 1 : stop] = np.exp(log_a) * (out[start] + acc)
        start = stop - 1
    return out


def baseline_trajectories(t_s: ArrayLike, baseline: VitalBaseline) -> dict[str, FloatArray]:
    """The constant means of every vital of :data:`VITALS` on ``t_s`` (events then shape them)."""
    t = time_grid(t_s)
    return {name: np.full(t.size, float(getattr(baseline, name))) for name in VITALS}


def add_variability(
    t_s: ArrayLike,
    means: dict[str, FloatArray],
    params: VariabilityParams,
    rng: np.random.Generator,
    *,
    rr_hold_zero: NDArray[np.bool_] | None = None,
) -> VitalSigns:
    """Mean trajectories plus seeded bounded random walks: the patient's vital signs.

    Parameters
    ----------
    t_s : array_like, shape (n,)
        Time grid (s).
    means : dict
        One array of shape ``(n,)`` per name of :data:`VITALS` (the baseline shaped by
        events and drug effects).
    params : VariabilityParams
    rng : numpy.random.Generator
        Seeded; the draws are made in the order of :data:`VITALS`.
    rr_hold_zero : ndarray of bool, shape (n,), optional
        Where the patient does not breathe (apnoea): RR is exactly 0 there.

    Returns
    -------
    VitalSigns
        Each vital ``reflect(mean + d)`` (PI: ``reflect(mean·exp(d))``), and the NIBP mean
        from :func:`mean_arterial_pressure`.
    """
    t = time_grid(t_s)
    missing = [name for name in VITALS if name not in means]
    if missing:
        raise ParameterError(f"means lacks {', '.join(missing)}")
    walks = {
        "hr_bpm": params.hr,
        "spo2_percent": params.spo2,
        "rr_min": params.rr,
        "nibp_sys_mmhg": params.nibp_sys,
        "nibp_dia_mmhg": params.nibp_dia,
        "temp_c": params.temp,
        "pi_percent": params.pi,
    }
    dev = {name: ou_deviations(t, walk.sd, walk.tau_s, rng) for name, walk in walks.items()}
    # Diastolic deviation = ρ·(σ_d/σ_s)·systolic + √(1−ρ²)·own: an OU path again when
    # both share τ (the defaults), with the diastolic standard deviation kept.
    rho = params.bp_correlation
    s_sys, s_dia = params.nibp_sys.sd, params.nibp_dia.sd
    if s_sys > 0.0:
        dev["nibp_dia_mmhg"] = (
            rho * (s_dia / s_sys) * dev["nibp_sys_mmhg"]
            + math.sqrt(1.0 - rho * rho) * dev["nibp_dia_mmhg"]
        )
    out: dict[str, FloatArray] = {}
    for name, walk in walks.items():
        mean = np.asarray(means[name], dtype=np.float64)
        if mean.shape != t.shape:
            raise ParameterError(f"means[{name!r}] has shape {mean.shape}, expected {t.shape}")
        # A mean outside the bounds (a drug effect, an event) is clipped first: reflecting
        # it whole would fold it to the far side of the range.
        mean = np.clip(mean, walk.lower, walk.upper)
        value = mean * np.exp(dev[name]) if walk.log_scale else mean + dev[name]
        out[name] = reflect(value, walk.lower, walk.upper)
    if rr_hold_zero is not None:
        out["rr_min"] = np.where(rr_hold_zero, 0.0, out["rr_min"])
    # Reflection is per vital: keep the diastolic pressure below the systolic one.
    out["nibp_dia_mmhg"] = np.minimum(out["nibp_dia_mmhg"], out["nibp_sys_mmhg"] - 5.0)
    return VitalSigns(
        t_s=t,
        nibp_mean_mmhg=mean_arterial_pressure(out["nibp_sys_mmhg"], out["nibp_dia_mmhg"]),
        **out,
    )


def respiratory_phase_rad(t_s: ArrayLike, rr_min: ArrayLike) -> FloatArray:
    """The breathing phase ``φ(t) = 2π ∫ RR(u)/60 du`` (rad), 0 at ``t_s[0]``.

    Trapezoidal in ``t_s`` (RR piecewise linear between the grid points); during apnoea
    (RR = 0) the phase stands still, so every signal driven by it goes flat.

    Returns
    -------
    ndarray, shape (n,)
    """
    t = time_grid(t_s)
    f = np.asarray(rr_min, dtype=np.float64) / 60.0
    if f.shape != t.shape:
        raise ParameterError(f"rr_min has shape {f.shape}, expected {t.shape}")
    steps = 0.5 * (f[1:] + f[:-1]) * np.diff(t)
    return np.concatenate(([0.0], 2.0 * np.pi * np.cumsum(steps)))
