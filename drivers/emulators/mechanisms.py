"""The contract between protocol emulators and the virtual hardware behind them.

A protocol emulator (NE-1000, MT-SICS, Modbus) is only a translator: it parses requests,
calls one of these *mechanisms* and encodes the answer. The mechanisms are implemented
by :class:`medtwin.drivers.emulators.physical_bench.PhysicalBench`, which evaluates the
``device_models`` physics at the shared clock's "now" on every call, so every protocol
sees the same pump, the same line and the same balance.

Every method is synchronous and cheap (it advances the physics to ``clock.now()``
first). Methods raise :class:`ValueError` for a request the mechanism cannot carry out
(a rate beyond what the drive can do, a negative diameter); the protocol layer turns that
into the device's own error reply (``?OOR``, ``ES``, Modbus exception 3).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from medtwin.drivers.base import PumpAlarm, PumpState

__all__ = [
    "BalanceMechanism",
    "BalanceSnapshot",
    "BenchIOMechanism",
    "PumpMechanism",
    "PumpSnapshot",
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
