"""The composed patient: demographics, drug input, vital signs, events and signals.

:func:`simulate_patient` (or :meth:`PatientModel.simulate`) runs, on one time grid:

1. **Baseline** — :func:`~medtwin.device_models.patient.vitals.baseline_for` the
   demographics (or the ``baseline`` of :class:`PatientParams`).
2. **Drugs** (optional) — each :class:`Infusion`'s pump flow × concentration is the dose
   rate of the three-compartment PK model (:func:`medtwin.device_models.patient.pk.simulate`,
   exact for piecewise-constant rates); the effect-site concentrations drive
   :func:`medtwin.device_models.patient.pd.drug_effects`: HR and both blood pressures
   are multiplied by their factors (scaling systolic and diastolic by the MAP factor
   scales the MAP by it). BIS is the response surface (its awake value without drugs).
3. **Respiration** — :mod:`medtwin.device_models.patient.respiration`: the drugs' drive
   (:func:`~.respiration.ventilatory_drive`), PaCO2 feedback (Bouillon 2003), the airway
   (``respiration.airway``: spontaneous or ventilated), the inspired O2 fraction
   (``spo2.fio2``) and the O2 store give PaCO2, SpO2 and the displayed RR. An apnoea
   event stops the ventilation there (its own PO2 parameters are not used here).
4. **Events** — :func:`~medtwin.device_models.patient.events.apply_events` on those means
   (the other events).
5. **Variability** — :func:`~medtwin.device_models.patient.vitals.add_variability`; RR is
   held at exactly 0 during an apnoea event, where the respiration model does not breathe
   and wherever its mean is below ``apnoea_threshold_rr_min``.

The returned :class:`PatientRecord` holds the vital signs and flags, and generates the
signals on demand (:mod:`medtwin.device_models.patient.signals`) from a seed drawn from
the caller's generator, so the R peaks, plethysmogram and respiration of one record are
consistent with each other and reproducible whatever order they are asked for in.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from medtwin.device_models.base import ParameterError, param, validate
from medtwin.device_models.patient import pk
from medtwin.device_models.patient.demographics import Demographics
from medtwin.device_models.patient.events import Apnoea, Event, apply_events
from medtwin.device_models.patient.pd import PD_DRUGS, PDParams, SpO2Params, drug_effects
from medtwin.device_models.patient.respiration import (
    RespirationParams,
    simulate_respiration,
    ventilatory_drive,
)
from medtwin.device_models.patient.signals import (
    CardiacProcess,
    SignalParams,
    cardiac_process,
    pleth,
    quantise,
    respiration,
)
from medtwin.device_models.patient.vitals import (
    VariabilityParams,
    VitalBaseline,
    add_variability,
    baseline_for,
    baseline_trajectories,
    time_grid,
)
from numpy.typing import ArrayLike, NDArray

__all__ = ["Infusion", "PatientModel", "PatientParams", "PatientRecord", "simulate_patient"]

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class PatientParams:
    """Every parameter of the patient model, addressable by dotted name
    (``baseline.hr_bpm``, ``variability.spo2.sd``, ``signals.pleth.ptt_s``,
    ``pd.map_effect.remifentanil_c50_ng_ml``, ``spo2.fio2``, ``respiration.airway``, ...)."""

    baseline: VitalBaseline = field(default_factory=VitalBaseline)
    variability: VariabilityParams = field(default_factory=VariabilityParams)
    signals: SignalParams = field(default_factory=SignalParams)
    pd: PDParams = field(default_factory=PDParams)
    spo2: SpO2Params = field(default_factory=SpO2Params)
    respiration: RespirationParams = field(default_factory=RespirationParams)
    apnoea_threshold_rr_min: float = param(
        1.0, unit="1/min", doc="mean RR below which the patient is apnoeic", minimum=0.0
    )

    @classmethod
    def for_patient(cls, demographics: Demographics) -> PatientParams:
        """Default parameters with the age- and sex-dependent baseline of ``demographics``."""
        return cls(baseline=baseline_for(demographics))


@dataclass(frozen=True)
class Infusion:
    """One drug infused by a pump.

    Attributes
    ----------
    drug : str
        ``"propofol"`` or ``"remifentanil"`` (the drugs :mod:`.pd` knows).
    model : str
        The PK model (``"schnider"``, ``"marsh"``, ``"minto"``, ...; see :mod:`.pk`).
    concentration_mg_ml : float
        Drug concentration in the syringe (mg/mL).
    rate_ml_h : array_like, shape (m,)
        The pump's flow (mL/h), held from each ``rate_times_s`` to the next.
    rate_times_s : array_like, shape (m,), optional
        When each rate starts (s, non-decreasing, ≥ 0); default: the simulation's time
        grid (``rate_ml_h`` then has one value per grid point).
    """

    drug: str
    model: str
    concentration_mg_ml: float
    rate_ml_h: ArrayLike
    rate_times_s: ArrayLike | None = None


@dataclass(frozen=True)
class PatientRecord:
    """A simulated patient on a time grid; every array has shape ``(n,)`` like ``t_s``.

    Attributes
    ----------
    t_s : ndarray
        Time (s).
    hr_bpm, spo2_percent, rr_min : ndarray
        Heart rate (1/min), SpO2 (%), respiratory rate (1/min).
    nibp_sys_mmhg, nibp_dia_mmhg, nibp_mean_mmhg : ndarray
        Blood pressure (mmHg).
    temp_c, pi_percent : ndarray
        Temperature (°C), perfusion index (%).
    bis : ndarray
        Bispectral index (its awake value without drugs).
    cp_by_drug, ce_by_drug : dict
        Plasma and effect-site concentration per infused drug (µg/mL propofol, ng/mL
        remifentanil); empty without infusions.
    sensor_off, motion, apnoea : ndarray of bool
        Event flags.
    motion_amplitude : ndarray
        Relative motion-artefact amplitude.
    paco2_mmhg : ndarray
        Arterial PCO2 (mmHg) of the respiration model (no variability).
    params : PatientParams
        The parameters used (the signals read ``params.signals``).
    signal_seed : int
        Seeds the signals' generators (drawn from the caller's generator).
    """

    t_s: FloatArray
    hr_bpm: FloatArray
    spo2_percent: FloatArray
    rr_min: FloatArray
    nibp_sys_mmhg: FloatArray
    nibp_dia_mmhg: FloatArray
    nibp_mean_mmhg: FloatArray
    temp_c: FloatArray
    pi_percent: FloatArray
    bis: FloatArray
    cp_by_drug: dict[str, FloatArray]
    ce_by_drug: dict[str, FloatArray]
    sensor_off: NDArray[np.bool_]
    motion: NDArray[np.bool_]
    apnoea: NDArray[np.bool_]
    motion_amplitude: FloatArray
    paco2_mmhg: FloatArray
    params: PatientParams
    signal_seed: int

    def _only(self, table: Mapping[str, FloatArray], name: str) -> FloatArray:
        if not table:
            return np.zeros(self.t_s.size)
        if len(table) > 1:
            raise ParameterError(f"{name}: several drugs ({', '.join(table)}); use {name}_by_drug")
        return next(iter(table.values()))

    @property
    def cp(self) -> FloatArray:
        """The plasma concentration of the one infused drug (zeros without infusion)."""
        return self._only(self.cp_by_drug, "cp")

    @property
    def ce(self) -> FloatArray:
        """The effect-site concentration of the one infused drug (zeros without infusion)."""
        return self._only(self.ce_by_drug, "ce")

    def _rng(self, stream: int) -> np.random.Generator:
        # Independent, reproducible streams: 0 the R-R process, 1 the pleth, 2 respiration.
        child = np.random.SeedSequence(self.signal_seed).spawn(3)[stream]
        return np.random.default_rng(child)

    @functools.cached_property
    def cardiac(self) -> CardiacProcess:
        """The beat and breath phases every signal of this record shares (computed once)."""
        return cardiac_process(
            self.t_s, self.hr_bpm, self.rr_min, self.params.signals.hrv, self._rng(0)
        )

    def r_peak_times_s(self) -> FloatArray:
        """R-peak times (s) within the record, shape (k,)."""
        return self.cardiac.r_peak_times_s()

    def pleth(
        self, fs_hz: float = 75.0, bits: int | None = None
    ) -> tuple[FloatArray, FloatArray | NDArray[np.uint8] | NDArray[np.uint16]]:
        """The plethysmogram: sample times (s) and samples, full scale [0, 1] as floats, or
        quantised to ``bits`` = 8 (0..255, Nonin #2) or 16 (0..65535, Nonin #7)."""
        t, x = pleth(
            self.cardiac,
            self.t_s,
            self.pi_percent,
            fs_hz=fs_hz,
            params=self.params.signals.pleth,
            rng=self._rng(1),
            sensor_off=self.sensor_off,
            motion_amplitude=self.motion_amplitude,
        )
        return (t, x) if bits is None else (t, quantise(x, bits))

    def resp(self, fs_hz: float = 25.0) -> tuple[FloatArray, FloatArray]:
        """The respiration signal: sample times (s) and samples (a.u.)."""
        return respiration(
            self.cardiac, fs_hz=fs_hz, params=self.params.signals.resp, rng=self._rng(2)
        )


def _drug_input(
    t: FloatArray, infusions: Sequence[Infusion], demographics: Demographics
) -> tuple[dict[str, FloatArray], dict[str, FloatArray]]:
    cp_by_drug: dict[str, FloatArray] = {}
    ce_by_drug: dict[str, FloatArray] = {}
    for i, inf in enumerate(infusions):
        if inf.drug in ce_by_drug:
            raise ParameterError(f"infusions[{i}].drug = {inf.drug!r} is infused twice")
        if inf.drug not in PD_DRUGS:
            raise ParameterError(
                f"infusions[{i}].drug = {inf.drug!r}: expected one of {', '.join(PD_DRUGS)}"
            )
        if t[0] < 0.0:
            raise ParameterError("t_s must be >= 0 with infusions (the PK starts at t = 0)")
        times = t if inf.rate_times_s is None else np.asarray(inf.rate_times_s, dtype=float)
        rate = np.asarray(inf.rate_ml_h, dtype=float)
        if rate.shape != times.shape:
            raise ParameterError(
                f"infusions[{i}].rate_ml_h has shape {rate.shape}, expected {times.shape}"
            )
        params = pk.pk_params(inf.drug, inf.model, demographics)
        dose = pk.dose_rate_mg_min(rate, inf.concentration_mg_ml)
        result = pk.simulate(params, t, times, dose)
        cp_by_drug[inf.drug] = result.cp[0]
        ce_by_drug[inf.drug] = result.ce[0]
    return cp_by_drug, ce_by_drug


def simulate_patient(
    t_s: ArrayLike,
    *,
    rng: np.random.Generator,
    demographics: Demographics | None = None,
    params: PatientParams | None = None,
    events: Sequence[Event] = (),
    infusions: Sequence[Infusion] = (),
) -> PatientRecord:
    """Simulate one patient on a time grid.

    Parameters
    ----------
    t_s : array_like, shape (n,)
        Strictly increasing times (s); ≥ 0 when there are infusions. A 1 s grid is the
        usual choice (the signals are generated at their own rates from it).
    rng : numpy.random.Generator
        Seeded; the vitals' variability draws from it, then one integer seeds the
        signals.
    demographics : Demographics, optional
        Default ``Demographics()``; read by the PK models (and by the baseline when
        ``params`` is not given).
    params : PatientParams, optional
        Default ``PatientParams.for_patient(demographics)``.
    events : sequence of Event
        Scripted events (:func:`~medtwin.device_models.patient.events.event_from_mapping`).
    infusions : sequence of Infusion
        At most one per drug.

    Returns
    -------
    PatientRecord
    """
    t = time_grid(t_s)
    who = Demographics() if demographics is None else demographics
    p = PatientParams.for_patient(who) if params is None else params
    validate(p)
    means = baseline_trajectories(t, p.baseline)
    cp_by_drug, ce_by_drug = _drug_input(t, infusions, who)
    effects = drug_effects(ce_by_drug if ce_by_drug else {"propofol": np.zeros(t.size)}, p.pd)
    bis = np.broadcast_to(effects.bis, t.shape).astype(float)
    if ce_by_drug:
        means["hr_bpm"] *= effects.hr_factor
        means["nibp_sys_mmhg"] *= effects.map_factor
        means["nibp_dia_mmhg"] *= effects.map_factor
    # The respiration model carries an apnoea event's gas exchange (breathing stops, PaCO2
    # rises, the O2 store empties); apply_events gets the other events.
    apnoeas = [e for e in events if isinstance(e, Apnoea)]
    stopped = np.zeros(t.size, dtype=bool)
    for event in apnoeas:
        stopped |= (t >= event.at_s) & (t < event.end_s())
    drive = ventilatory_drive(ce_by_drug, p.respiration) if ce_by_drug else np.ones(t.size)
    resp = simulate_respiration(
        t,
        np.broadcast_to(drive, t.shape),
        p.baseline.spo2_percent,
        baseline_rr_min=means["rr_min"],
        breathing=~stopped,
        params=p.respiration,
        spo2_params=p.spo2,
    )
    means["spo2_percent"] = resp.spo2_percent
    means["rr_min"] = resp.rr_min
    fx = apply_events(t, means, [e for e in events if not isinstance(e, Apnoea)])
    fx.means["rr_min"][resp.apnoea] = 0.0
    hold = resp.apnoea | fx.apnoea | (fx.means["rr_min"] < p.apnoea_threshold_rr_min)
    vitals = add_variability(t, fx.means, p.variability, rng, rr_hold_zero=hold)
    return PatientRecord(
        t_s=t,
        hr_bpm=vitals.hr_bpm,
        spo2_percent=vitals.spo2_percent,
        rr_min=vitals.rr_min,
        nibp_sys_mmhg=vitals.nibp_sys_mmhg,
        nibp_dia_mmhg=vitals.nibp_dia_mmhg,
        nibp_mean_mmhg=vitals.nibp_mean_mmhg,
        temp_c=vitals.temp_c,
        pi_percent=vitals.pi_percent,
        bis=bis,
        cp_by_drug=cp_by_drug,
        ce_by_drug=ce_by_drug,
        sensor_off=fx.sensor_off,
        motion=fx.motion,
        apnoea=hold,
        motion_amplitude=fx.motion_amplitude,
        paco2_mmhg=resp.paco2_mmhg,
        params=p,
        signal_seed=int(rng.integers(2**63)),
    )


@dataclass(frozen=True)
class PatientModel:
    """A patient to simulate repeatedly: demographics, parameters, events and infusions.

    ``PatientModel(demographics).simulate(t_s, rng)`` is :func:`simulate_patient` with
    these arguments.
    """

    demographics: Demographics = field(default_factory=Demographics)
    params: PatientParams | None = None
    events: tuple[Event, ...] = ()
    infusions: tuple[Infusion, ...] = ()

    def simulate(self, t_s: ArrayLike, rng: np.random.Generator) -> PatientRecord:
        """Simulate on ``t_s`` with the seeded ``rng``."""
        return simulate_patient(
            t_s,
            rng=rng,
            demographics=self.demographics,
            params=self.params,
            events=self.events,
            infusions=self.infusions,
        )
