"""Volumetric (peristaltic / finger) pump: rotor cycles, per-finger ripple, efficiency.

The rotor is stepped at ``f = Q_set / Δv_cfg`` with ``Δv_cfg = volume_per_rev/rotor_steps``
(the pump's calibrated stroke volume). Each step pushes ``(1 + ripple)`` of its share of
the stroke and, at every finger hand-over (``rotor_steps/fingers`` steps), the tube
re-expands and draws back ``ripple`` of a finger's volume: a sawtooth of cumulative
volume whose mean is exactly the stroke volume, i.e. the cyclic "multiple percent"
pulsation of pumps.md §5 with a period of one finger.

The delivered fraction (efficiency) is ``efficiency · (1 − drop/100 · P_back/100)``: it
falls with the static back-pressure the pump works against (the line's equilibrium
pressure of the current phase — pressure build-up during an occlusion does not reduce
the stroke volume in this model, which keeps the system linear), and tubing fatigue
reduces it further over time like the syringe drive's wear. A dead zone at start
(``startup_dead_volume_ml``) is taken up before delivery begins, like backlash.

The pressure sensor downstream of the fingers reads the line pressure plus an offset;
the occlusion alarm fires at the threshold after the detection latency.
"""

from __future__ import annotations

from dataclasses import dataclass

from medtwin.device_models.base import param

__all__ = ["VolumetricPumpParams"]


@dataclass(frozen=True)
class VolumetricPumpParams:
    """Nominal large-volume pump (values are plausible, not from a specific device)."""

    volume_per_rev_ml: float = param(
        0.25, unit="mL", doc="calibrated stroke volume per rotor revolution", minimum=1e-6
    )
    rotor_steps_per_rev: int = param(
        400, unit="steps/rev", doc="motor steps per rotor revolution", minimum=1
    )
    fingers: int = param(8, unit="", doc="fingers (rollers) per revolution", minimum=1)
    ripple_fraction: float = param(
        0.10,
        unit="",
        doc="draw-back per finger hand-over, fraction of a finger's volume",
        minimum=0.0,
        maximum=0.9,
    )
    efficiency: float = param(
        1.0, unit="", doc="true / calibrated stroke volume", minimum=0.0, maximum=2.0
    )
    efficiency_drop_percent_per_100_mmhg: float = param(
        1.0, unit="%/100 mmHg", doc="stroke-volume loss with back-pressure", minimum=0.0
    )
    startup_dead_volume_ml: float = param(
        0.02, unit="mL", doc="dead zone taken up before delivery starts", minimum=0.0
    )
    set_compliance_ul_per_mmhg: float = param(
        1.5, unit="µL/mmHg", doc="compliance of the pumping segment", minimum=0.0
    )
    max_step_rate_hz: float = param(
        2000.0, unit="steps/s", doc="fastest rotor step rate", minimum=1e-6
    )
    occlusion_threshold_mmhg: float = param(
        500.0, unit="mmHg", doc="downstream occlusion alarm threshold", minimum=0.0
    )
    occlusion_latency_s: float = param(
        2.0, unit="s", doc="time from threshold crossing to alarm (nominal)", minimum=0.0
    )
    sensor_offset_mmhg: float = param(
        0.0, unit="mmHg", doc="pressure-sensor offset (reading − true)"
    )
    backoff_ml: float = param(
        0.0, unit="mL", doc="automatic pressure relief after an alarm (0: none)", minimum=0.0
    )
    container_ml: float = param(
        0.0, unit="mL", doc="volume in the container (0: unlimited)", minimum=0.0
    )
    near_empty_ml: float = param(
        0.0, unit="mL", doc="near-empty pre-alarm when this remains (0: none)", minimum=0.0
    )
    wear_percent_per_h: float = param(
        0.0,
        unit="%/h",
        doc="tubing fatigue: stroke-volume loss, growing linearly",
        minimum=0.0,
        maximum=100.0,
    )
    wear_onset_s: float = param(0.0, unit="s", doc="time the fatigue starts", minimum=0.0)
    quantised_steps: bool = param(
        True, unit="", doc="discrete rotor steps and finger ripple (false: smooth mean flow)"
    )

    def volume_per_step_ml(self) -> float:
        return self.volume_per_rev_ml / self.rotor_steps_per_rev

    def rate_range_ml_h(self) -> tuple[float, float]:
        return (0.0, self.max_step_rate_hz * self.volume_per_step_ml() * 3600.0)
