"""Syringe pump drive: stepper → lead screw → plunger → volume, with backlash, wear,
force-based occlusion sensing and motor stall.

Kinematics: the motor makes microsteps at ``f = Q_set / Δv_cfg`` where
``Δv_cfg = A_cfg · lead/(steps_per_rev · microsteps)`` is the volume per microstep the
pump *believes* in (its configured syringe diameter). The plunger actually moves the
true syringe's area ``A_true``, so a mis-sized syringe is a flow error of
``(A_true/A_cfg − 1)`` (≈ 2 % per 1 % of diameter). Delivery is discrete per microstep
(pulsatile at low rates); the lead screw's free play (backlash, in mm) must be taken up
before the plunger moves, then the syringe assembly (a spring of the syringe's
``assembly_stiffness_n_per_mm``) is loaded; below the stopper's breakaway friction its rim
creeps at ``force/creep_resistance_n_s_per_mm`` (the outflow follows the drive with the time
constant ``creep_resistance/stiffness``), and when the force reaches the breakaway the rim
jumps forward as the spring relaxes to the sliding friction
(the start-up delay of Neff et al. 2001, Paediatr Anaesth 11(5):561-5, and Neff et al.
2007, Eur J Anaesthesiol 24(7):602-8; see :mod:`medtwin.device_models.syringes`).
Lead-screw wear makes each step deliver ``(1 − w(t))`` of its nominal volume, ``w``
growing linearly from the wear onset.

Sensing (patent US10314971): the pump measures plunger force
``F = P·A_true + F_friction`` while moving (``F_friction``: the syringe's
``stopper_friction_n``) and estimates the pressure as
``(F − F_compensation)/A_cfg``; the occlusion alarm fires when that estimate reaches the
threshold, after a detection latency. The motor stalls (stall alarm) when the force
needed exceeds ``max_force_n``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from medtwin.device_models.base import param
from medtwin.device_models.syringes import SyringeSpec

__all__ = ["PA_PER_MMHG", "SyringeDriveParams", "SyringePumpParams"]

PA_PER_MMHG = 133.322387415


@dataclass(frozen=True)
class SyringeDriveParams:
    """Stepper and lead screw. Defaults: a 1.8° motor at 1/16 microstepping on a 1.25 mm
    lead screw; backlash and force are nominal. The stopper's friction belongs to the
    syringe (:class:`~medtwin.device_models.syringes.SyringeSpec`)."""

    steps_per_rev: int = param(200, unit="steps/rev", doc="full steps per revolution", minimum=1)
    microsteps: int = param(16, unit="", doc="microsteps per full step", minimum=1)
    lead_mm: float = param(1.25, unit="mm", doc="lead-screw travel per revolution", minimum=1e-6)
    backlash_mm: float = param(
        0.2, unit="mm", doc="free play taken up before the plunger moves (nominal)", minimum=0.0
    )
    max_step_rate_hz: float = param(
        2000.0, unit="steps/s", doc="fastest microstep rate", minimum=1e-6
    )
    max_force_n: float = param(
        150.0, unit="N", doc="force at which the motor stalls (nominal)", minimum=0.0
    )
    friction_compensation_n: float = param(
        8.0, unit="N", doc="friction the pump subtracts from the force sensor", minimum=0.0
    )
    wear_percent_per_h: float = param(
        0.0,
        unit="%/h",
        doc="lead-screw wear: loss of volume per step, growing linearly",
        minimum=0.0,
        maximum=100.0,
    )
    wear_onset_s: float = param(0.0, unit="s", doc="time the wear starts", minimum=0.0)

    @property
    def travel_per_step_mm(self) -> float:
        return self.lead_mm / (self.steps_per_rev * self.microsteps)


@dataclass(frozen=True)
class SyringePumpParams:
    """A syringe pump with the syringe loaded in it.

    ``syringe`` is the syringe physically in the pump (truth); the pump computes its step
    rate from ``configured_inner_diameter_mm`` (0 means: the syringe's library diameter,
    a correctly programmed pump).
    """

    syringe: SyringeSpec = field(default_factory=SyringeSpec)
    drive: SyringeDriveParams = field(default_factory=SyringeDriveParams)
    configured_inner_diameter_mm: float = param(
        0.0, unit="mm", doc="diameter programmed in the pump (0: the syringe's)", minimum=0.0
    )
    fill_ml: float = param(
        0.0, unit="mL", doc="volume loaded in the syringe (0: its nominal volume)", minimum=0.0
    )
    pressure_sensor: bool = param(
        True,
        unit="",
        doc=(
            "the pump senses plunger force and alarms at occlusion_threshold_mmhg "
            "(false: no sensor, e.g. the New Era NE-1000: an occlusion only stalls the "
            "motor at drive.max_force_n)"
        ),
    )
    occlusion_threshold_mmhg: float = param(
        500.0, unit="mmHg", doc="occlusion alarm threshold (sensed pressure)", minimum=0.0
    )
    occlusion_latency_s: float = param(
        2.0, unit="s", doc="time from threshold crossing to alarm (nominal)", minimum=0.0
    )
    backoff_ml: float = param(
        0.0, unit="mL", doc="automatic back-off after an occlusion alarm (0: none)", minimum=0.0
    )
    near_empty_ml: float = param(
        3.0, unit="mL", doc="near-empty pre-alarm when this volume remains", minimum=0.0
    )
    quantised_steps: bool = param(
        True, unit="", doc="deliver in discrete microsteps (false: continuous motion)"
    )

    @property
    def configured_diameter_mm(self) -> float:
        return self.configured_inner_diameter_mm or self.syringe.inner_diameter_mm

    @property
    def fill_volume_ml(self) -> float:
        return self.fill_ml or self.syringe.nominal_volume_ml

    def volume_per_step_ml(self, diameter_mm: float | None = None) -> float:
        """Volume per microstep for a syringe of ``diameter_mm`` (default: configured)."""
        d = diameter_mm if diameter_mm is not None else self.configured_diameter_mm
        return math.pi * d**2 / 4.0 * self.drive.travel_per_step_mm / 1000.0

    def rate_range_ml_h(self, diameter_mm: float | None = None) -> tuple[float, float]:
        """Rates the drive can run (the maximum step rate bounds the top)."""
        dv = self.volume_per_step_ml(diameter_mm)
        return (0.0, self.drive.max_step_rate_hz * dv * 3600.0)
