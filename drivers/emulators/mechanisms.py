"""The contract between protocol emulators and the virtual hardware behind them.

A protocol emulator (NE-1000, MT-SICS, Modbus, the oximeters, ProSim 8) is only a
translator: it parses requests, calls one of these *mechanisms* and encodes the answer.
The pump-side mechanisms are implemented by
:class:`medtwin.drivers.emulators.physical_bench.PhysicalBench`, which evaluates the
``device_models`` physics at the shared clock's "now" on every call, so every protocol
sees the same pump, the same line and the same balance. The patient-side ones
(:class:`OximeterMechanism`, :class:`PatientSimulatorMechanism`) are implemented by one
shared patient (``medtwin.drivers.emulators.patient_world``): a simulator's settings move
the patient every oximeter of the bench observes, each through its own monitor model.

Every method is synchronous and cheap (it advances the physics to ``clock.now()``
first). Methods raise :class:`ValueError` for a request the mechanism cannot carry out
(a rate beyond what the drive can do, a negative diameter); the protocol layer turns that
into the device's own error reply (``?OOR``, ``ES``, Modbus exception 3).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from medtwin.drivers.base import PumpAlarm, PumpState

__all__ = [
    "BalanceMechanism",
    "BalanceSnapshot",
    "BenchIOMechanism",
    "OximeterMechanism",
    "OximeterSnapshot",
    "PatientSimulatorMechanism",
    "PumpMechanism",
    "PumpSnapshot",
    "SimulatorSettings",
]


@dataclass(frozen=True, slots=True)
class PumpSnapshot:
    """What the pump's firmware knows at one instant.

    ``infused_ml``/``withdrawn_ml`` are the pump's own counters (drive steps × the
    configured syringe), as a real pump reports them. ``pressure_mmhg`` is the pressure the
    pump *senses* (force sensor incl. friction offset for syringe pumps).
    ``rate_ml_h`` is the rate the pump is currently delivering by its own account (the
    setpoint while running, 0 otherwise).
    """

    t_s: float
    state: PumpState
    alarms: frozenset[PumpAlarm]
    rate_ml_h: float
    rate_setpoint_ml_h: float
    infusing: bool  # direction: True infuse, False withdraw
    infused_ml: float
    withdrawn_ml: float
    volume_target_ml: float | None
    diameter_mm: float
    pressure_mmhg: float
    uptime_s: float
    #: The plunger has reached the end of the syringe (the container is empty); a pump
    #: without an end-of-syringe sensor sees it only as a motor stall.
    syringe_empty: bool = False


class PumpMechanism(Protocol):
    """An infusion pump's drive, as its firmware controls it."""

    model: str
    serial: str
    firmware: str

    def snapshot(self) -> PumpSnapshot:
        """State at ``clock.now()``."""
        ...

    def rate_range_ml_h(self) -> tuple[float, float]:
        """Lowest and highest rate the drive can run with the configured syringe."""
        ...

    def call_at(self, t_s: float, callback: Callable[[], None]) -> Callable[[], None]:
        """Run ``callback`` when the device time (``snapshot().t_s``) reaches ``t_s``, with
        the physics at that instant (the firmware's own timer, e.g. the next phase of a
        pumping program); returns a function that cancels it."""
        ...

    def set_pressure_sensor(self, present: bool) -> None:
        """Whether the drive senses plunger force and raises the occlusion alarm at its
        threshold (False: no sensor, an occlusion only stalls the motor at the drive's
        force limit). Set by the protocol emulator from the pump model it emulates."""
        ...

    def set_diameter_mm(self, diameter_mm: float) -> None:
        """Configured syringe inner diameter (what the pump believes). ValueError if invalid."""
        ...

    def set_rate_ml_h(self, rate_ml_h: float) -> None:
        """Rate setpoint; takes effect at once if running. ValueError outside rate_range."""
        ...

    def set_direction(self, infuse: bool) -> None: ...

    def set_volume_target_ml(self, volume_ml: float | None) -> None:
        """Stop (end-of-infusion) after this volume from the next start; None: no target."""
        ...

    def start(self) -> None:
        """Run at the setpoint. Raises RuntimeError naming the alarm if a *blocking* alarm
        (occlusion, stall, communication timeout, empty) is active; end-of-infusion after a
        volume target does not block a new start."""
        ...

    def purge(self) -> None:
        """Run at the maximum rate until stopped. RuntimeError if an alarm is active."""
        ...

    def stop(self) -> None: ...

    def clear_alarms(self) -> None: ...

    def clear_volume(self, which: Literal["infused", "withdrawn", "both"] = "both") -> None:
        """Reset the dispensed counters."""
        ...

    def raise_alarm(self, alarm: PumpAlarm) -> None:
        """Set an alarm from outside the physics (e.g. a safe-mode communication timeout);
        the pump stops, as a real one does on a high-priority alarm."""
        ...


@dataclass(frozen=True, slots=True)
class BalanceSnapshot:
    """What the balance would display now.

    ``net_g`` is quantised to the readability and includes noise; ``stable`` is the
    balance's stability detector; ``overload``/``underload`` mirror ``S +``/``S -``.
    """

    t_s: float
    net_g: float
    gross_g: float
    tare_g: float
    stable: bool
    overload: bool
    underload: bool


class BalanceMechanism(Protocol):
    """A balance's weighing cell and display."""

    model: str
    serial: str
    firmware: str
    capacity_g: float
    readability_g: float

    def snapshot(self) -> BalanceSnapshot: ...

    def tare(self) -> float:
        """Tare at the current gross value; returns the new tare (g)."""
        ...

    def zero(self) -> None:
        """Set the zero point to the current gross value and clear the tare."""
        ...

    def clear_tare(self) -> None: ...


class BenchIOMechanism(Protocol):
    """The bench I/O module: pinch valve (coil) and inline pressure transducer."""

    model: str
    serial: str

    def set_occluded(self, occluded: bool) -> None: ...

    def occluded(self) -> bool: ...

    def pressure_mmhg(self) -> float:
        """Inline transducer reading (line pressure, mmHg, with the transducer's noise)."""
        ...


# --------------------------------------------------------------------------- patient side


@dataclass(frozen=True, slots=True)
class OximeterSnapshot:
    """What a pulse oximeter (or a monitor's SpO2/HR module) displays now.

    The values are the *monitor model's* output for this device's own parameters (its
    averaging, bias, delays; :mod:`medtwin.device_models.monitor`), fed by the shared
    patient. ``None`` is an invalid value (dashes on the display, 127/511 on Nonin).
    ``alarms`` are the active alarm condition names of
    :data:`medtwin.device_models.monitor.alarms.CONDITIONS` (``"spo2_low"`` …).
    ``extended`` carries slower-averaged values a protocol also sends (Nonin's 8-beat
    ``E-`` values: ``"spo2_extended_percent"``, ``"hr_extended_bpm"``).
    """

    t_s: float
    spo2_percent: float | None
    pulse_rate_bpm: float | None
    pi_percent: float | None
    sensor_off: bool
    searching: bool
    low_perfusion: bool
    artifact: bool
    signal_loss: bool
    alarms: frozenset[str]
    extended: dict[str, float | None]


class OximeterMechanism(Protocol):
    """A pulse oximeter's optical front end and processing, as its firmware sees them."""

    model: str
    serial: str
    firmware: str

    def snapshot(self) -> OximeterSnapshot:
        """Displayed values at ``clock.now()`` (the world is advanced to now first)."""
        ...

    def pleth(self, t_s: Sequence[float]) -> list[float]:
        """Plethysmogram samples in [0, 1] at the given device times (ascending, none in
        the future); a protocol quantises them to its own width (Nonin #2: 8 bit, #7:
        16 bit)."""
        ...


@dataclass(frozen=True, slots=True)
class SimulatorSettings:
    """What a patient simulator (ProSim 8) is set to: the patient the monitors see.

    ``ibp`` maps a channel (1, 2) to ``(systolic, diastolic)`` mmHg, equal for a static
    pressure; ``ibp_wave`` maps a channel to its waveform name.
    """

    remote: bool
    heart_rate_bpm: float
    spo2_percent: float
    resp_rate_min: float
    nibp_sys_mmhg: float
    nibp_dia_mmhg: float
    ibp: dict[int, tuple[float, float]]
    ibp_wave: dict[int, str]


class PatientSimulatorMechanism(Protocol):
    """The patient a simulator generates, as its remote interface changes it.

    Setters raise :class:`ValueError` for a value the simulator cannot generate (the
    protocol layer answers with its own error reply); a change takes effect at
    ``clock.now()`` for every oximeter observing the same patient.
    """

    model: str
    serial: str
    firmware: str

    def settings(self) -> SimulatorSettings: ...

    def set_remote(self, remote: bool) -> None: ...

    def set_heart_rate_bpm(self, bpm: float) -> None: ...

    def set_spo2_percent(self, percent: float) -> None: ...

    def set_resp_rate_min(self, per_min: float) -> None: ...

    def set_nibp_mmhg(self, systolic: float, diastolic: float) -> None: ...

    def set_ibp_mmhg(self, channel: int, systolic: float, diastolic: float) -> None: ...

    def set_ibp_wave(self, channel: int, wave: str) -> None: ...
