"""The patient at the end of the line: the pump's delivered flow drives a PK/PD model.

A scenario's ``[patient]`` table (:class:`~medtwin.hil.config.PatientConfig`) names the drug,
its concentration in the syringe, the PK model and the patient's covariates. During the run
the drug input of the patient is the delivered flow (mL/h) times the concentration (mg/mL),
twice, side by side like every other channel:

* ``real``: the real device's *measured* delivery. With a balance on the bench (``delivery =
  "auto"`` or ``"balance"``) it is the balance's flow between consecutive readings, the
  runner's ``<balance>.flow_ml_h``: the net mass difference converted to volume with d of
  the run's gravimetric policy (:mod:`medtwin.hil.analysis.gravimetry`). Without one
  (``"pump"``), the pump's reported infused volume, differenced between its readings. The
  balance is preferred because it weighs what left the line; the pump's counter only says
  what the pump believes it moved (an under-sized syringe or a worn lead screw do not show
  in it).
* ``twin``: the same quantity of the twin, at the same timestamps (the twin's balance flow,
  with the same d, or its infused-volume counter).

Between two readings of the source device the flow is taken as constant (the mean flow of
the interval, which is what a volume difference measures), so the PK model is advanced
exactly across each interval: live and incremental, one ``advance(dt_s, dose_mg_min)`` per
reading, as the readings arrive (no re-computation at the end). The interval that spans a
tare or zero of the balance (or a ``clear_volume`` of the pump, when the counter is the
source) counts as no delivery: its volume difference is the reset, not the drug. Before the
first reading the patient has received nothing. The delivered volume is the running maximum
of the measured one (a dip of the balance's noise is made up before any new dose counts), so
the dose is never negative, as the PK model requires, and no bias builds up at zero flow.

Channels (source ``real`` and ``twin``, no device: the patient is not a bench device), one
value per reading of the source device:

=========================  ========  =====================================================
``patient.dose_mg_min``    mg/min    drug input over the interval ending at the reading
``patient.cp``             ng/mL     plasma concentration (µg/mL, "ug/mL", for propofol)
``patient.ce``             ng/mL     effect-site concentration (likewise)
``patient.bis``            –         BIS, the PD model's response to ``ce``
``patient.map_mmhg``       mmHg      mean arterial pressure: resting mean × the drug's factor
``patient.hr_bpm``         1/min     heart rate, likewise
``patient.rr_min``         1/min     respiratory rate: resting rate × ventilation (or the
                                     ventilator's rate with ``airway = "ventilated"``)
``patient.spo2_percent``   %         SpO2 of the respiration loop (PaCO2 feedback, FiO2)
=========================  ========  =====================================================

Breathing is :mod:`medtwin.device_models.patient.respiration`'s loop, advanced across each
interval with the drug's ventilatory drive at the interval's start. The other vital signs
are the patient's resting means by age and sex
(:func:`~medtwin.device_models.patient.vitals.baseline_for`) scaled by the PD model's
factors: the drug's effect on the mean, without the physiological variability (which would
differ between the two sides by chance, not by the pump).

The comparator judges them with the tolerance band only (they are smooth, deterministic
functions of the delivered volume): :func:`patient_channels` gives the defaults, which a
scenario's ``[tolerances."patient.cp"]`` table overrides as for any channel.

The models are :mod:`medtwin.device_models.patient.pk` (:func:`~.pk.pk_params`,
:class:`~.pk.PKIntegrator`, exact across each interval) and
:mod:`medtwin.device_models.patient.pd` (:func:`~.pd.drug_effects`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from medtwin.device_models.base import ParameterError
from medtwin.device_models.patient.demographics import Demographics
from medtwin.device_models.patient.pd import SpO2Params, drug_effects
from medtwin.device_models.patient.pk import DRUGS, PKIntegrator, PKParams, pk_params
from medtwin.device_models.patient.respiration import (
    RespirationIntegrator,
    RespirationParams,
    ventilatory_drive,
)
from medtwin.device_models.patient.vitals import baseline_for, mean_arterial_pressure
from medtwin.device_models.schedule import CommandKind
from medtwin.drivers.errors import ConfigurationError
from medtwin.hil.comparator import DriftEvent, LiveComparator
from medtwin.hil.config import BenchConfig, PatientConfig, ScenarioConfig
from medtwin.hil.store import RunWriter
from numpy.typing import NDArray

__all__ = [
    "PATIENT_PREFIX",
    "PatientChannel",
    "PatientLink",
    "PatientPlan",
    "patient_channels",
    "plan_patient",
]

#: Every patient channel is named ``patient.<quantity>``.
PATIENT_PREFIX = "patient"

#: The flow tolerance the patient channels' defaults start from: the balance flow
#: channel's default band (:data:`medtwin.hil.twin.CHANNEL_KINDS`), mL/h and fraction.
_FLOW_ABS_TOL_ML_H = 0.05
_REL_TOL = 0.05
_PERSISTENCE_S = 300.0
#: BIS is shown in whole units: a difference of 2 is beyond the display's rounding.
_BIS_ABS_TOL = 2.0

#: Commands after which the source's volume restarts from zero: the interval that spans
#: one carries no dose (see the module docstring).
_RESETS = {"balance": frozenset({CommandKind.TARE}), "pump": frozenset({CommandKind.CLEAR_VOLUME})}


@dataclass(frozen=True)
class PatientChannel:
    """One patient quantity: its unit and the comparator's defaults for it."""

    quantity: str
    unit: str
    defaults: Mapping[str, Any]

    @property
    def name(self) -> str:
        return f"{PATIENT_PREFIX}.{self.quantity}"


@dataclass(frozen=True)
class PatientPlan:
    """A scenario's patient checked against its bench (:func:`plan_patient`).

    Attributes
    ----------
    config : PatientConfig
        The ``[patient]`` table.
    pump : str
        The bench device infusing the drug.
    source : str
        The bench device whose readings give the delivered volume (a balance or the pump).
    quantity : str
        The source's quantity: ``flow_ml_h`` (a balance) or ``infused_ml`` (the pump).
    demographics : Demographics
        The covariates.
    pk : PKParams
        The PK model's parameters (:func:`medtwin.device_models.patient.pk.pk_params`).
    channels : tuple of PatientChannel
    baseline : mapping
        ``map_mmhg``, ``hr_bpm``, ``rr_min``: the patient's resting means by age and sex
        (:func:`medtwin.device_models.patient.vitals.baseline_for`; MAP from its systolic
        and diastolic pressures by the one-third rule), without variability.
    """

    config: PatientConfig
    pump: str
    source: str
    quantity: str
    demographics: Demographics
    pk: PKParams
    channels: tuple[PatientChannel, ...]
    #: The patient's resting MAP (mmHg), HR and RR (1/min), which the drug's effects scale.
    baseline: Mapping[str, float] = dataclasses.field(default_factory=dict)

    @property
    def source_kind(self) -> str:
        return "balance" if self.quantity == "flow_ml_h" else "pump"

    @property
    def twin_key(self) -> str:
        """The twin's channel key (``kind.quantity``) of the same quantity."""
        return f"{self.source_kind}.{self.quantity}"


def _field(error: ParameterError) -> str:
    """The ``[patient]`` field a model's error names (its message starts with the name)."""
    head = str(error).split(" ", 1)[0]
    return f"patient.{head}" if head in PatientConfig.model_fields else "patient"


def plan_patient(bench: BenchConfig, scenario: ScenarioConfig) -> PatientPlan | None:
    """The scenario's ``[patient]`` checked against ``bench`` (None without one).

    Raises
    ------
    ConfigurationError
        Naming ``file:patient.<field>``: a ``pump`` that is not a pump of the bench, a
        ``delivery`` from a device the bench lacks or the scenario does not sample, a PK
        ``model`` unknown for the drug, covariates outside the model's range.
    """
    cfg = scenario.patient
    if cfg is None:
        return None

    def fail(message: str, field: str) -> ConfigurationError:
        return ConfigurationError(message, source=scenario.source, field=field)

    if cfg.pump is None:
        pump = bench.device_of_kind("pump")
        if pump is None:
            raise fail(f"bench {bench.name!r} has no pump to infuse the patient", "patient")
    else:
        try:
            pump = bench.device(cfg.pump)
        except KeyError:
            raise fail(f"no device {cfg.pump!r} on bench {bench.name!r}", "patient.pump") from None
        if pump.kind != "pump":
            raise fail(f"{cfg.pump!r} is a {pump.kind}, not a pump", "patient.pump")
    balance = bench.device_of_kind("balance")
    if cfg.delivery == "balance" and balance is None:
        raise fail(f"bench {bench.name!r} has no balance to weigh the delivery", "patient.delivery")
    source = balance if balance is not None and cfg.delivery != "pump" else pump
    if source.name not in scenario.sampling:
        raise fail(
            f"the patient's delivery is read from {source.name!r}, which [sampling] does not "
            "sample; add it there"
            + ("" if source.kind == "pump" else ', or set delivery = "pump"'),
            "patient.delivery",
        )
    demographics = Demographics(
        age_y=cfg.age_y, weight_kg=cfg.weight_kg, height_cm=cfg.height_cm, sex=cfg.sex
    )
    pk = _pk_params(cfg, demographics, fail)
    plan = PatientPlan(
        config=cfg,
        pump=pump.name,
        source=source.name,
        quantity="flow_ml_h" if source.kind == "balance" else "infused_ml",
        demographics=demographics,
        pk=pk,
        channels=(),
        baseline=_baseline(demographics),
    )
    return _with_channels(plan)


class _Side:
    """One side of the patient (real or twin): its PK state and the volume it was given.

    The delivered volume is the running maximum of the measured cumulative volume: a
    weighing vessel never gives fluid back, so a dip is the balance's noise, and the next
    rise first makes it up. The dose of each interval is therefore never negative (which
    the PK model requires) and the doses add up to the largest volume measured, so no bias
    accumulates at zero flow (clipping each interval at 0 would add half the noise each
    time).
    """

    def __init__(self, plan: PatientPlan) -> None:
        self.plan = plan
        self.state: PKIntegrator | None = None  # from the first reading on
        self.t_s = math.nan  # time of the last reading taken in
        self.counter_ml = math.nan  # the pump's last finite counter (counter source only)
        self.volume_ml = 0.0  # measured cumulative volume since the first reading
        self.delivered_ml = 0.0  # its running maximum: what the patient was given
        # Ventilation with PaCO2 feedback, the airway and FiO2 (the respiration module)
        self.breath_params = RespirationParams(airway=plan.config.airway)
        self.breathing = RespirationIntegrator(
            plan.baseline["spo2_percent"],
            params=self.breath_params,
            spo2_params=SpO2Params(fio2=plan.config.fio2),
        )
        self.drive = 1.0  # the drug's ventilatory drive at the last reading (none yet)

    def take(
        self, t: NDArray[np.float64], values: NDArray[np.float64], reset: bool
    ) -> dict[str, NDArray[np.float64]]:
        """Take a block of the source's readings at ``t`` (s, shape (n,)): each interval's
        dose, then the patient advanced exactly across it at that constant dose; the
        patient's quantities at each reading (arrays of shape (n,), keyed by quantity)."""
        n = t.shape[0]
        concentration = self.plan.config.concentration_mg_ml
        dose = np.zeros(n)
        cp = np.empty(n)
        ce = np.empty(n)
        vent = np.empty(n)
        spo2 = np.empty(n)
        for k in range(n):
            value = float(values[k])
            dt_s = float(t[k]) - self.t_s  # NaN at the first reading
            if self.plan.quantity == "flow_ml_h":
                added = value * dt_s / 3600.0  # the interval's mean flow × its length
            else:
                added = value - self.counter_ml
                if math.isfinite(value):
                    self.counter_ml = value
            if not math.isfinite(added) or (reset and k == 0):
                added = 0.0  # no earlier reading, a gap in the counter, or a reset
            self.volume_ml += added
            if self.state is None:  # the first reading: nothing delivered before it
                self.state = PKIntegrator(self.plan.pk)
                self.t_s = float(t[k])
            elif dt_s > 0.0:
                given = max(0.0, self.volume_ml - self.delivered_ml)
                self.delivered_ml += given
                dose[k] = given * concentration / (dt_s / 60.0)
                # the drug's drive over the interval is the one at its start (held)
                self.breathing.advance(dt_s, self.drive)
                self.state.advance(dt_s, float(dose[k]))
                self.t_s = float(t[k])
            cp[k], ce[k] = float(self.state.cp[0]), float(self.state.ce[0])
            self.drive = float(
                ventilatory_drive({self.plan.pk.drug: max(ce[k], 0.0)}, self.breath_params)
            )
            self.breathing.advance(0.0, self.drive)  # the ventilation now, at this drive
            vent[k] = float(self.breathing.ventilation_fraction[()])
            spo2[k] = float(self.breathing.spo2_percent[()])
        effects = drug_effects({self.plan.pk.drug: np.maximum(ce, 0.0)})
        base = self.plan.baseline
        if self.breath_params.airway == "ventilated":
            rr = np.full(n, self.breath_params.ventilator_rate_min)
        else:
            rr = base["rr_min"] * vent**self.breath_params.rr_exponent
            rr = np.where(vent > 0.0, rr, 0.0)  # central apnoea
        return {
            "dose_mg_min": dose,
            "cp": cp,
            "ce": ce,
            "bis": effects.bis,
            "map_mmhg": base["map_mmhg"] * effects.map_factor,
            "hr_bpm": base["hr_bpm"] * effects.hr_factor,
            "rr_min": rr,
            "spo2_percent": spo2,
        }


class PatientLink:
    """The patient of one run, driven by the real device's and the twin's delivery.

    The runner calls :meth:`open` once the run is recorded, :meth:`command` after every
    command a device accepted, and :meth:`update` with every block of readings (the twin's
    values at the same timestamps beside them).
    """

    def __init__(self, plan: PatientPlan) -> None:
        self.plan = plan
        self._sides = {"real": _Side(plan), "twin": _Side(plan)}
        self._ids: dict[tuple[str, str], int] = {}
        self._writer: RunWriter | None = None
        self._comparator: LiveComparator | None = None
        self._reset = False

    def open(self, writer: RunWriter, comparator: LiveComparator | None) -> None:
        """Declare the patient's channels (real and twin) in the run."""
        self._writer, self._comparator = writer, comparator
        for ch in self.plan.channels:
            for source in ("real", "twin"):
                self._ids[ch.quantity, source] = writer.add_channel(
                    ch.name, unit=ch.unit, source=source
                )

    def command(self, device: str, kind: CommandKind) -> None:
        """A command ``device`` accepted: a reset of the source's volume (a tare, a counter
        cleared) makes the next interval carry no dose."""
        if device == self.plan.source and kind in _RESETS[self.plan.source_kind]:
            self._reset = True

    def update(
        self,
        device: str,
        t: NDArray[np.float64],
        real: Mapping[str, NDArray[np.float64]],
        twin: Mapping[str, NDArray[np.float64]],
    ) -> list[DriftEvent]:
        """Take a block of ``device``'s readings (ascending ``t``, s, shape (n,); ``real``
        keyed by quantity, ``twin`` by ``kind.quantity``, as the runner holds them): advance
        both sides, store their channels, feed the comparator; its drift events."""
        if device != self.plan.source or t.shape[0] == 0:
            return []
        assert self._writer is not None, "PatientLink.open() first"
        given = {"real": real[self.plan.quantity], "twin": twin[self.plan.twin_key]}
        values = {
            source: side.take(t, given[source], self._reset) for source, side in self._sides.items()
        }
        self._reset = False
        events: list[DriftEvent] = []
        for ch in self.plan.channels:
            r, w = values["real"][ch.quantity], values["twin"][ch.quantity]
            self._writer.append(self._ids[ch.quantity, "real"], t, r)
            self._writer.append(self._ids[ch.quantity, "twin"], t, w)
            if self._comparator is not None:
                known = np.isfinite(w)
                events += self._comparator.update(ch.name, t[known], r[known], w[known])
        return events


# --------------------------------------------------------------------------- the PK/PD models
# The one place this module touches device_models/patient/pk.py and pd.py.


def _pk_params(cfg: PatientConfig, demographics: Demographics, fail: Any) -> PKParams:
    try:
        return pk_params(cfg.drug, cfg.model, demographics)
    except ParameterError as exc:
        raise fail(str(exc), _field(exc)) from None


def _baseline(patient: Demographics) -> dict[str, float]:
    vitals = baseline_for(patient)
    return {
        "map_mmhg": float(mean_arterial_pressure(vitals.nibp_sys_mmhg, vitals.nibp_dia_mmhg)),
        "hr_bpm": vitals.hr_bpm,
        "rr_min": vitals.rr_min,
        "spo2_percent": vitals.spo2_percent,
    }


def _with_channels(plan: PatientPlan) -> PatientPlan:
    return dataclasses.replace(plan, channels=patient_channels(plan))


def patient_channels(plan: PatientPlan) -> tuple[PatientChannel, ...]:
    """The patient's channels and the comparator's defaults for them.

    The dose's absolute tolerance is the balance flow channel's (0.05 mL/h) at the
    syringe's concentration; the concentrations' is that dose held to steady state
    (dose / clearance), in the drug's unit.
    """
    dose_tol = _FLOW_ABS_TOL_ML_H * plan.config.concentration_mg_ml / 60.0
    unit, factor = DRUGS[plan.pk.drug]
    conc_tol = dose_tol / plan.pk.cl1_l_min * factor
    band = {"rel_tol": _REL_TOL, "persistence_s": _PERSISTENCE_S, "detectors": ("tolerance",)}
    return (
        PatientChannel("dose_mg_min", "mg/min", {**band, "abs_tol": dose_tol}),
        PatientChannel("cp", unit, {**band, "abs_tol": conc_tol}),
        PatientChannel("ce", unit, {**band, "abs_tol": conc_tol}),
        PatientChannel("bis", "", {**band, "rel_tol": 0.0, "abs_tol": _BIS_ABS_TOL}),
        PatientChannel("map_mmhg", "mmHg", {**band, "abs_tol": 0.0}),
        PatientChannel("hr_bpm", "1/min", {**band, "abs_tol": 0.0}),
        PatientChannel("rr_min", "1/min", {**band, "abs_tol": 0.0}),
        PatientChannel("spo2_percent", "%", {**band, "abs_tol": 0.0}),
    )
