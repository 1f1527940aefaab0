"""Closed-loop respiration: drug-depressed ventilation with PaCO2 feedback, the airway
(spontaneous or ventilated), the inspired O2 fraction and the lungs' and blood's O2 store.

The open-loop chain of :mod:`.pd` (ventilation fraction → SpO2) lets an opioid stop the
breathing for good: nothing drives it back. Real breathing is a feedback loop: as PaCO2
rises, it drives ventilation up against the drug. This module closes that loop.

**CO2 (Bouillon et al. 2003, Anesthesiology 99:779, doi:10.1097/00000542-200310000-00007).**
An indirect-response model of PaCO2 with the ventilation stimulated by a CO2 "effect
compartment" and depressed by the drug::

    dP/dt  = kel·(P0 − P·V)                 PaCO2 P (mmHg), baseline P0
    dPe/dt = ke0·(P − Pe)                   the CO2 effect compartment Pe
    V      = min(D(C)·(Pe/P0)^F, Vmax)      ventilation relative to baseline
    D(C)   = Π_d 1/(1 + (C_d/C50_d)^γ_d)    the drugs' depression of the drive

CO2 production is constant (``kel·P0``) and its elimination proportional to ventilation
times PaCO2 (the alveolar ventilation equation), so at steady state ``P = P0/V``. The
parameters of the abstract: F = 4.30, ke0,CO2 = 0.92 /min, kel,CO2 = 0.08 /min, baseline
PaCO2 42.4 mmHg, C50 (remifentanil) 0.92 ng/mL, Hill coefficient 1.25. The equations above
are our reading of "indirect response model with a CO2 feedback"; the paper's full text
(its equations) was NOT read, so where exactly the power law and the drug term sit is
unverified. Propofol: Bouillon et al. 2004, Anesthesiology 100:240
(doi:10.1097/00000542-200402000-00009) give F 4.37, ke0,CO2 0.95 /min, kel,CO2 0.11 /min in
their abstract; its propofol C50 and steepness were not readable in the source we had: the
defaults below (1.33 µg/mL, γ 1) are unverified. The two drugs multiply (no interaction
term: an assumption; Nieuwenhuijs et al. 2003, Anesthesiology 98:312, found synergy).
Bouillon's power law never reaches apnoea; a drive ``D`` below ``apnoea_drive_fraction``
is taken as central apnoea (unverified threshold, configurable), and the CO2 drive is
capped at ``max_ventilation_fraction`` (4× baseline; unverified): the unbounded power law
would wash out the CO2 gathered in an apnoea within seconds and overshoot into hypocapnia.

**Airway.** ``spontaneous``: ``V`` as above, and the displayed respiratory rate is the
patient's baseline rate times ``V^rr_exponent`` (exponent 1: the tidal volume is taken as
unchanged, so the rate carries the whole change, as opioids slow breathing). ``ventilated``:
the ventilator sets ``V = ventilator_minute_fraction`` whatever the drugs, and the displayed
rate is ``ventilator_rate_min``. An apnoea event stops the ventilation in both (in the
ventilated airway: a disconnection).

**O2.** The alveolar PO2 ``A`` of the lungs' store, from an O2 balance::

    (FRC/713 + Qb·S'(Pa)/100)·dA/dt = VA0·V·(PIO2 − A)/713 − VO2

with ``PIO2 = FiO2·(Pb − PH2O)``, ``713 = Pb − PH2O`` at sea level, ``VA0 = 713·VO2·R/P0``
(so that at steady state ``A = PIO2 − P0/(R·V) = PIO2 − PaCO2/R``: the alveolar gas
equation), ``Pa = A − offset`` the arterial PO2 (the A–a offset reproduces the patient's
baseline SpO2 on room air, ``baseline_fio2``), ``S'`` the slope of the Severinghaus curve
(J Appl Physiol 1979;46:599, doi:10.1152/jappl.1979.46.3.599) and ``Qb`` the O2 bound to the
haemoglobin that follows the arterial saturation (~5 L blood × 150 g/L × 1.34 mL/g ≈ 1 L:
an estimate). In apnoea the lungs' store alone falls by ``VO2·713/FRC`` ≈ 71 mmHg/min: from
room air (PAO2 ≈ 100 mmHg) SpO2 reaches 90 % within about a minute; after breathing
FiO2 0.9 (PAO2 ≈ 600 mmHg) only after about 7-8 min, the order of Benumof et al. 1997
(Anesthesiology 87:979, doi:10.1097/00000542-199710000-00034; figures not fitted, as
remembered from its summary: unverified). ``FRC``, ``VO2`` and ``Qb`` are typical adult
values (unverified, configurable).

**Low PO2.** The arterial PO2 is held at or above ``pao2_floor_mmhg`` (20 mmHg, SpO2 ≈
32 %): the Severinghaus curve was fitted to data from the physiological range, and what
it gives at lower PO2 (a patient in peri-arrest) is not claimed by this model; the range of
the fit was not checked in the paper (unverified).

Integration: each sample interval (inputs held, zero-order hold as the PK input) is cut
into equal substeps of at most ``max_step_s`` and integrated with the classical 4th-order
Runge–Kutta scheme, vectorised over patients. :class:`RespirationIntegrator` (live) and
:func:`simulate_respiration` (batch) run the same steps, so they agree to rounding.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from medtwin.device_models.base import ParameterError, param, validate
from medtwin.device_models.patient.pd import (
    PD_DRUGS,
    SpO2Params,
    severinghaus_pao2_mmhg,
    severinghaus_spo2_percent,
)
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "AIRWAYS",
    "RespirationIntegrator",
    "RespirationParams",
    "RespirationResult",
    "simulate_respiration",
    "ventilatory_drive",
]

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

#: The airway modes.
AIRWAYS = ("spontaneous", "ventilated")


@dataclass(frozen=True)
class RespirationParams:
    """The respiratory control loop, the airway and the O2 store (dotted names
    ``respiration.…``)."""

    airway: str = param(
        "spontaneous", unit="", doc="spontaneous (drug-depressed, CO2 feedback) or ventilated"
    )
    co2_gain: float = param(
        4.30, unit="1", doc="F, gain of the CO2 response (Bouillon 2003)", minimum=0.0, maximum=20.0
    )
    kel_co2_per_min: float = param(
        0.08, unit="1/min", doc="kel,CO2 (Bouillon 2003)", minimum=1e-4, maximum=10.0
    )
    ke0_co2_per_min: float = param(
        0.92, unit="1/min", doc="ke0,CO2 (Bouillon 2003)", minimum=1e-4, maximum=60.0
    )
    remifentanil_c50_ng_ml: float = param(
        0.92, unit="ng/mL", doc="C50 for ventilatory depression (Bouillon 2003)", minimum=1e-6
    )
    remifentanil_gamma: float = param(
        1.25, unit="1", doc="Hill coefficient (Bouillon 2003)", minimum=0.1, maximum=20.0
    )
    propofol_c50_ug_ml: float = param(
        1.33, unit="ug/mL", doc="C50 for ventilatory depression (unverified)", minimum=1e-6
    )
    propofol_gamma: float = param(
        1.0, unit="1", doc="Hill coefficient (unverified)", minimum=0.1, maximum=20.0
    )
    apnoea_drive_fraction: float = param(
        0.02,
        unit="1",
        doc="drug drive D below which breathing stops (central apnoea; unverified)",
        minimum=0.0,
        maximum=1.0,
    )
    max_ventilation_fraction: float = param(
        4.0,
        unit="1",
        doc="cap on the spontaneous ventilation the CO2 drive reaches (unverified)",
        minimum=1.0,
        maximum=30.0,
    )
    rr_exponent: float = param(
        1.0,
        unit="1",
        doc="RR = baseline RR × V^exponent (1: tidal volume unchanged)",
        minimum=0.0,
        maximum=1.0,
    )
    ventilator_minute_fraction: float = param(
        1.0,
        unit="1",
        doc="ventilated airway: minute ventilation relative to the patient's baseline",
        minimum=0.1,
        maximum=5.0,
    )
    ventilator_rate_min: float = param(
        12.0,
        unit="1/min",
        doc="ventilated airway: the set rate (displayed RR)",
        minimum=1.0,
        maximum=60.0,
    )
    o2_consumption_ml_min: float = param(
        250.0, unit="mL/min", doc="VO2 (typical adult; unverified)", minimum=10.0, maximum=2000.0
    )
    frc_ml: float = param(
        2500.0,
        unit="mL",
        doc="functional residual capacity (typical adult; unverified)",
        minimum=100.0,
        maximum=8000.0,
    )
    blood_o2_store_ml: float = param(
        1000.0,
        unit="mL",
        doc="O2 on haemoglobin following the arterial saturation, at 100 % (estimate)",
        minimum=0.0,
        maximum=5000.0,
    )
    baseline_fio2: float = param(
        0.21,
        unit="1",
        doc="FiO2 at which baseline.spo2_percent holds (room air)",
        minimum=0.05,
        maximum=1.0,
    )
    pao2_floor_mmhg: float = param(
        20.0,
        unit="mmHg",
        doc="lowest arterial PO2 modelled (see the module docstring)",
        minimum=0.0,
        maximum=60.0,
    )
    max_step_s: float = param(
        1.0, unit="s", doc="largest integration substep", minimum=1e-3, maximum=60.0
    )


def _check(params: RespirationParams, spo2: SpO2Params) -> None:
    validate(params)
    validate(spo2)
    if params.airway not in AIRWAYS:
        raise ParameterError(
            f"parameter airway = {params.airway!r}: expected one of {', '.join(AIRWAYS)}"
        )


def ventilatory_drive(
    ce_by_drug: Mapping[str, ArrayLike], params: RespirationParams | None = None
) -> FloatArray:
    """The drugs' depression of the ventilatory drive, ``D = Π_d 1/(1 + (C_d/C50_d)^γ_d)``.

    Parameters
    ----------
    ce_by_drug : mapping
        Effect-site concentration by drug (``"propofol"`` µg/mL, ``"remifentanil"`` ng/mL),
        arrays of broadcastable shapes; a missing drug is 0.

    Returns
    -------
    ndarray
        In (0, 1], of the broadcast shape.
    """
    p = RespirationParams() if params is None else params
    validate(p)
    unknown = sorted(set(ce_by_drug) - set(PD_DRUGS))
    if unknown:
        raise ParameterError(f"ce_by_drug: unknown drug {unknown[0]!r}; known {sorted(PD_DRUGS)}")
    c50 = {"propofol": p.propofol_c50_ug_ml, "remifentanil": p.remifentanil_c50_ng_ml}
    gamma = {"propofol": p.propofol_gamma, "remifentanil": p.remifentanil_gamma}
    out: FloatArray = np.ones(())
    for drug in PD_DRUGS:
        c = np.asarray(ce_by_drug.get(drug, 0.0), dtype=float)
        if c.size and not (np.min(c) >= 0.0 and np.max(c) < math.inf):
            raise ParameterError(f"ce_by_drug[{drug!r}] must be finite and >= 0")
        out = out / (1.0 + (c / c50[drug]) ** gamma[drug])
    return out


@dataclass(frozen=True)
class _Constants:
    """Everything the right-hand side needs, per minute, derived once."""

    ventilated: bool
    p0: float
    f: float
    kel: float
    ke0: float
    v_set: float
    v_max: float
    threshold: float
    pio2: float
    r: float
    va0_per_dry: float  # VA0/713 (mL/min/mmHg)
    vo2: float
    frc_per_dry: float  # FRC/713 (mL/mmHg)
    qb: float
    floor_a: FloatArray  # lowest alveolar PO2: floor + offset, shape (B,) or ()
    offset: FloatArray


def _constants(p: RespirationParams, s: SpO2Params, baseline_spo2: FloatArray) -> _Constants:
    dry = s.barometric_pressure_mmhg - s.water_vapour_mmhg
    p0 = s.paco2_baseline_mmhg
    base_alveolar = p.baseline_fio2 * dry - p0 / s.respiratory_quotient
    offset = base_alveolar - severinghaus_pao2_mmhg(np.clip(baseline_spo2, 1.0, 99.9))
    va0 = dry * p.o2_consumption_ml_min * s.respiratory_quotient / p0
    return _Constants(
        ventilated=p.airway == "ventilated",
        p0=p0,
        f=p.co2_gain,
        kel=p.kel_co2_per_min,
        ke0=p.ke0_co2_per_min,
        v_set=p.ventilator_minute_fraction,
        v_max=p.max_ventilation_fraction,
        threshold=p.apnoea_drive_fraction,
        pio2=s.fio2 * dry,
        r=s.respiratory_quotient,
        va0_per_dry=va0 / dry,
        vo2=p.o2_consumption_ml_min,
        frc_per_dry=p.frc_ml / dry,
        qb=p.blood_o2_store_ml,
        floor_a=np.asarray(p.pao2_floor_mmhg + offset, dtype=float),
        offset=np.asarray(offset, dtype=float),
    )


def _ventilation(c: _Constants, pe: FloatArray, drive: FloatArray, on: BoolArray) -> FloatArray:
    if c.ventilated:
        return np.where(on, c.v_set, 0.0)
    breathing = on & (drive >= c.threshold) if c.threshold > 0.0 else on
    stim = np.maximum(pe, 0.0) / c.p0
    return np.where(breathing, np.minimum(drive * stim**c.f, c.v_max), 0.0)


def _severinghaus_slope(pa: FloatArray) -> FloatArray:
    """dS/dP of the Severinghaus curve (%/mmHg), P >= 0."""
    q = pa * (pa * pa + 150.0)
    out: FloatArray = 100.0 * 23400.0 * (3.0 * pa * pa + 150.0) / (q + 23400.0) ** 2
    return out


def _rates(
    c: _Constants, x: tuple[FloatArray, FloatArray, FloatArray], drive: FloatArray, on: BoolArray
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """The right-hand side, per minute."""
    p, pe, a = x
    v = _ventilation(c, pe, drive, on)
    dp = c.kel * (c.p0 - p * v)
    dpe = c.ke0 * (p - pe)
    pa = np.maximum(a - c.offset, 0.0)
    capacity = c.frc_per_dry + c.qb * _severinghaus_slope(pa) / 100.0
    da = (c.va0_per_dry * v * (c.pio2 - a) - c.vo2) / capacity
    return dp, dpe, da


def _advance(
    c: _Constants,
    x: tuple[FloatArray, FloatArray, FloatArray],
    dt_s: float,
    drive: FloatArray,
    on: BoolArray,
    max_step_s: float,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """RK4 across ``dt_s`` in equal substeps of at most ``max_step_s``, inputs held."""
    if dt_s <= 0.0:
        return x
    n = max(1, math.ceil(dt_s / max_step_s - 1e-12))
    h = dt_s / n / 60.0  # minutes
    p, pe, a = x
    for _ in range(n):
        k1 = _rates(c, (p, pe, a), drive, on)
        k2 = _rates(c, (p + 0.5 * h * k1[0], pe + 0.5 * h * k1[1], a + 0.5 * h * k1[2]), drive, on)
        k3 = _rates(c, (p + 0.5 * h * k2[0], pe + 0.5 * h * k2[1], a + 0.5 * h * k2[2]), drive, on)
        k4 = _rates(c, (p + h * k3[0], pe + h * k3[1], a + h * k3[2]), drive, on)
        p = p + h / 6.0 * (k1[0] + 2.0 * k2[0] + 2.0 * k3[0] + k4[0])
        pe = pe + h / 6.0 * (k1[1] + 2.0 * k2[1] + 2.0 * k3[1] + k4[1])
        a = np.maximum(a + h / 6.0 * (k1[2] + 2.0 * k2[2] + 2.0 * k3[2] + k4[2]), c.floor_a)
    return p, pe, a


def _integrate_one(
    c: _Constants,
    x: tuple[FloatArray, FloatArray, FloatArray],
    t: FloatArray,
    drive: FloatArray,
    on: BoolArray,
    p: RespirationParams,
    paco2: FloatArray,
    pa_out: FloatArray,
    vent: FloatArray,
) -> None:
    """:func:`_advance` over every interval of ``t`` for one patient, in Python floats.

    The arithmetic is :func:`_rates`/:func:`_advance`'s, operation for operation (a day on a
    1 s grid is 86,400 intervals: numpy's per-call overhead on 0-d arrays would dominate).
    Fills ``paco2``, ``pa_out`` and ``vent`` (shape (n,)) in place.
    """
    p0, f, kel, ke0 = c.p0, c.f, c.kel, c.ke0
    v_set, v_max, threshold = c.v_set, c.v_max, c.threshold
    pio2, va0, vo2, frc, qb = c.pio2, c.va0_per_dry, c.vo2, c.frc_per_dry, c.qb
    floor_a, offset = float(c.floor_a), float(c.offset)
    floor_pa = p.pao2_floor_mmhg
    ventilated = c.ventilated

    def ventilation(pe: float, dr: float, breathing: bool) -> float:
        if ventilated:
            return v_set if breathing else 0.0
        if not breathing or (threshold > 0.0 and not dr >= threshold):
            return 0.0
        return float(min(dr * (max(pe, 0.0) / p0) ** f, v_max))

    def rates(pc: float, pe: float, a: float, dr: float, br: bool) -> tuple[float, float, float]:
        # ventilation() inlined: this runs four times per step
        if ventilated:
            v = v_set if br else 0.0
        elif not br or (threshold > 0.0 and not dr >= threshold):
            v = 0.0
        else:
            v = dr * ((pe if pe > 0.0 else 0.0) / p0) ** f
            if v > v_max:
                v = v_max
        pa = a - offset if a > offset else 0.0
        pa2 = pa * pa
        q = pa * (pa2 + 150.0) + 23400.0
        capacity = frc + qb * 23400.0 * (3.0 * pa2 + 150.0) / (q * q)
        return kel * (p0 - pc * v), ke0 * (pc - pe), (va0 * v * (pio2 - a) - vo2) / capacity

    pc, pe, a = float(x[0]), float(x[1]), float(x[2])
    dts = np.diff(t).tolist()
    drives = drive.tolist()
    breathing = on.tolist()
    pa_now = np.empty(t.size)
    for k in range(t.size):
        dr, br = drives[k], breathing[k]
        paco2[k] = pc
        pa_now[k] = a
        vent[k] = ventilation(pe, dr, br)
        if k + 1 == t.size:
            break
        dt_s = dts[k]
        if dt_s <= 0.0:
            continue
        n = max(1, math.ceil(dt_s / p.max_step_s - 1e-12))
        h = dt_s / n / 60.0
        for _ in range(n):
            k1 = rates(pc, pe, a, dr, br)
            k2 = rates(pc + 0.5 * h * k1[0], pe + 0.5 * h * k1[1], a + 0.5 * h * k1[2], dr, br)
            k3 = rates(pc + 0.5 * h * k2[0], pe + 0.5 * h * k2[1], a + 0.5 * h * k2[2], dr, br)
            k4 = rates(pc + h * k3[0], pe + h * k3[1], a + h * k3[2], dr, br)
            pc = pc + h / 6.0 * (k1[0] + 2.0 * k2[0] + 2.0 * k3[0] + k4[0])
            pe = pe + h / 6.0 * (k1[1] + 2.0 * k2[1] + 2.0 * k3[1] + k4[1])
            a = max(a + h / 6.0 * (k1[2] + 2.0 * k2[2] + 2.0 * k3[2] + k4[2]), floor_a)
    pa_out[...] = np.maximum(pa_now - offset, floor_pa)


class RespirationIntegrator:
    """The live form of :func:`simulate_respiration`.

    Starts at the baseline steady state (PaCO2 = P0, breathing ``spo2_params.fio2``).

    Parameters
    ----------
    baseline_spo2_percent : float or array_like, shape (B,)
        Each patient's SpO2 on room air (``params.baseline_fio2``) at baseline ventilation.
    params : RespirationParams, optional
    spo2_params : SpO2Params, optional
        Gas constants, ``fio2`` and the baseline PaCO2.
    """

    def __init__(
        self,
        baseline_spo2_percent: ArrayLike,
        *,
        params: RespirationParams | None = None,
        spo2_params: SpO2Params | None = None,
    ) -> None:
        self.params = RespirationParams() if params is None else params
        self.spo2_params = SpO2Params() if spo2_params is None else spo2_params
        _check(self.params, self.spo2_params)
        base = np.asarray(baseline_spo2_percent, dtype=float)
        self._c = _constants(self.params, self.spo2_params, base)
        c = self._c
        p0 = np.full(base.shape, c.p0)
        a0 = np.maximum(np.full(base.shape, c.pio2 - c.p0 / c.r), c.floor_a)
        self._x: tuple[FloatArray, FloatArray, FloatArray] = (p0, p0.copy(), a0)
        self._drive: FloatArray = np.ones(base.shape)
        self._on: BoolArray = np.ones(base.shape, dtype=bool)

    @property
    def paco2_mmhg(self) -> FloatArray:
        """Arterial PCO2 now (mmHg)."""
        return self._x[0].copy()

    @property
    def pao2_mmhg(self) -> FloatArray:
        """Arterial PO2 now (mmHg)."""
        return np.maximum(self._x[2] - self._c.offset, self.params.pao2_floor_mmhg)

    @property
    def spo2_percent(self) -> FloatArray:
        """SpO2 now (%)."""
        return severinghaus_spo2_percent(self.pao2_mmhg)

    @property
    def ventilation_fraction(self) -> FloatArray:
        """Minute ventilation relative to baseline now, with the last inputs."""
        return _ventilation(self._c, self._x[1], self._drive, self._on)

    def advance(self, dt_s: float, drive: ArrayLike = 1.0, breathing: ArrayLike = True) -> None:
        """Advance ``dt_s`` seconds with the drug drive (:func:`ventilatory_drive`) and the
        breathing flag (False: an apnoea event) held constant."""
        if not (dt_s >= 0.0 and math.isfinite(dt_s)):
            raise ParameterError(f"dt_s = {dt_s!r} must be a finite number >= 0")
        shape = self._x[0].shape
        self._drive = np.broadcast_to(np.asarray(drive, dtype=float), shape).copy()
        self._on = np.broadcast_to(np.asarray(breathing, dtype=bool), shape).copy()
        self._x = _advance(self._c, self._x, dt_s, self._drive, self._on, self.params.max_step_s)


@dataclass(frozen=True)
class RespirationResult:
    """:func:`simulate_respiration`'s output, each of shape (n,) or (B, n).

    Attributes
    ----------
    paco2_mmhg, pao2_mmhg : ndarray
        Arterial PCO2 and PO2 (mmHg).
    spo2_percent : ndarray
        Severinghaus of ``pao2_mmhg`` (%).
    ventilation_fraction : ndarray
        Minute ventilation relative to baseline over the interval starting at each sample.
    rr_min : ndarray
        The displayed respiratory rate (1/min): see the module docstring.
    apnoea : ndarray of bool
        No ventilation (an apnoea event, or the drive below the apnoea threshold).
    """

    paco2_mmhg: FloatArray
    pao2_mmhg: FloatArray
    spo2_percent: FloatArray
    ventilation_fraction: FloatArray
    rr_min: FloatArray
    apnoea: BoolArray


def simulate_respiration(
    t_s: ArrayLike,
    drive: ArrayLike,
    baseline_spo2_percent: ArrayLike,
    *,
    baseline_rr_min: ArrayLike = 12.0,
    breathing: ArrayLike | None = None,
    params: RespirationParams | None = None,
    spo2_params: SpO2Params | None = None,
) -> RespirationResult:
    """The closed respiratory loop over time.

    Parameters
    ----------
    t_s : array_like, shape (n,)
        Sample times (s), non-decreasing.
    drive : array_like, shape (n,) or (B, n)
        The drug drive (:func:`ventilatory_drive`), held from each sample to the next.
    baseline_spo2_percent : float or array_like, shape (B,)
        SpO2 on room air at baseline ventilation.
    baseline_rr_min : float or array_like, shape (n,), (B,) or (B, n)
        The resting rate the spontaneous airway's RR scales.
    breathing : array_like of bool, shape (n,) or (B, n), optional
        False during an apnoea event (held like ``drive``); default True.
    params, spo2_params : optional

    Returns
    -------
    RespirationResult
    """
    p = RespirationParams() if params is None else params
    s = SpO2Params() if spo2_params is None else spo2_params
    _check(p, s)
    t = np.asarray(t_s, dtype=float).reshape(-1)
    if t.size == 0:
        raise ParameterError("t_s is empty")
    dt = np.diff(t)
    if not np.all(np.isfinite(t)) or np.any(dt < 0.0):
        raise ParameterError("t_s must be finite and non-decreasing")
    d = np.asarray(drive, dtype=float)
    if d.ndim == 0 or d.shape[-1] != t.size:
        raise ParameterError(f"drive has shape {d.shape}; its last axis must have {t.size} samples")
    if not (np.min(d) >= 0.0 and np.max(d) <= 1.0):
        raise ParameterError("drive must lie in [0, 1]")
    on = np.ones(d.shape, dtype=bool) if breathing is None else np.asarray(breathing, dtype=bool)
    base = np.asarray(baseline_spo2_percent, dtype=float)
    batch = np.broadcast_shapes(d.shape[:-1], on.shape[:-1], base.shape)
    shape = (*batch, t.size)
    d = np.broadcast_to(d, shape)
    on = np.broadcast_to(on, shape)
    live = RespirationIntegrator(np.broadcast_to(base, batch), params=p, spo2_params=s)
    c = live._c
    paco2 = np.empty(shape)
    pa = np.empty(shape)
    vent = np.empty(shape)
    steady = bool(np.all(on)) and (
        (c.ventilated and c.v_set == 1.0) or (not c.ventilated and bool(np.all(d == 1.0)))
    )
    if steady:  # the baseline steady state is a fixed point: nothing to integrate
        paco2[...] = live._x[0][..., None]
        pa[...] = live.pao2_mmhg[..., None]
        vent[...] = 1.0
    elif batch == ():  # one patient: the same steps on Python floats, many times faster
        _integrate_one(c, live._x, t, d, on, p, paco2, pa, vent)
    else:
        for k in range(t.size):
            paco2[..., k] = live._x[0]
            pa[..., k] = live.pao2_mmhg
            vent[..., k] = _ventilation(c, live._x[1], d[..., k], on[..., k])
            if k + 1 < t.size:
                live.advance(float(dt[k]), d[..., k], on[..., k])
    if c.ventilated:
        rr = np.where(on, p.ventilator_rate_min, 0.0)
    else:
        rr = np.asarray(baseline_rr_min, dtype=float) * vent**p.rr_exponent
        rr = np.where(vent > 0.0, rr, 0.0)
    return RespirationResult(
        paco2_mmhg=paco2,
        pao2_mmhg=pa,
        spo2_percent=severinghaus_spo2_percent(pa),
        ventilation_fraction=vent,
        rr_min=np.broadcast_to(rr, shape).astype(float),
        apnoea=np.asarray(vent <= 0.0),
    )
