"""The inputs of a simulation: a timeline of commands, piecewise constant between them.

A :class:`Schedule` is what the real device saw, in the order it saw it: rate changes,
start/stop, syringe diameter, volume targets, alarms cleared, and the bench's own
actions (pinch valve closed/opened, back-pressure changed, balance tared). Commands at
the same time apply in the order they were added. Between two command times every input
is constant, which is what lets the models use exact closed-form updates.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

__all__ = ["Alarm", "Command", "CommandKind", "Schedule"]


class CommandKind(enum.StrEnum):
    SET_RATE = "set_rate"  # value: mL/h
    SET_DIRECTION = "set_direction"  # value: +1 infuse, -1 withdraw
    SET_DIAMETER = "set_diameter"  # value: configured syringe diameter, mm
    SET_TARGET = "set_target"  # value: volume to be infused, mL (0: none)
    START = "start"
    STOP = "stop"
    PURGE = "purge"  # run at the drive's maximum rate until stopped
    CLEAR_ALARMS = "clear_alarms"
    CLEAR_VOLUME = "clear_volume"
    RAISE_ALARM = "raise_alarm"  # value: an Alarm bit (e.g. a communication timeout, a stall)
    OCCLUDE = "occlude"  # close the pinch valve downstream
    RELEASE = "release"  # open it
    SET_BACK_PRESSURE = "set_back_pressure"  # value: outlet pressure, mmHg
    TARE = "tare"  # value: tare in g, or NaN for "the settled reading now"


class Alarm(enum.IntFlag):
    """Alarm bits. The first five are the reference Modbus pump map's bits 0–4."""

    NONE = 0
    OCCLUSION = 1
    END_OF_INFUSION = 2
    NEAR_EMPTY = 4
    MOTOR_STALL = 8
    COMMUNICATION_TIMEOUT = 16
    EMPTY = 32  # the syringe / container is empty (also sets END_OF_INFUSION)

    @classmethod
    def blocking(cls) -> Alarm:
        """Alarms that stop the pump and must be cleared before it runs again."""
        return cls.OCCLUSION | cls.MOTOR_STALL | cls.COMMUNICATION_TIMEOUT | cls.EMPTY


_NEEDS_VALUE = {
    CommandKind.SET_RATE,
    CommandKind.SET_DIRECTION,
    CommandKind.SET_DIAMETER,
    CommandKind.SET_TARGET,
    CommandKind.RAISE_ALARM,
    CommandKind.SET_BACK_PRESSURE,
}


@dataclass(frozen=True)
class Command:
    """One input change at scenario time ``t_s``."""

    t_s: float
    kind: CommandKind
    value: float = math.nan

    def __post_init__(self) -> None:
        if not math.isfinite(self.t_s) or self.t_s < 0:
            raise ValueError(f"command {self.kind} at t={self.t_s!r} s: time must be >= 0")
        if self.kind in _NEEDS_VALUE and not math.isfinite(self.value):
            raise ValueError(f"command {self.kind} at t={self.t_s:g} s needs a finite value")
        if self.kind is CommandKind.SET_RATE and self.value < 0:
            raise ValueError(f"rate {self.value:g} mL/h at t={self.t_s:g} s must be >= 0")
        if self.kind is CommandKind.SET_DIRECTION and self.value not in (1.0, -1.0):
            raise ValueError("direction must be +1 (infuse) or -1 (withdraw)")
        if self.kind is CommandKind.SET_DIAMETER and self.value <= 0:
            raise ValueError(f"syringe diameter {self.value:g} mm must be > 0")
        if self.kind is CommandKind.SET_TARGET and self.value < 0:
            raise ValueError(f"volume target {self.value:g} mL must be >= 0")


class Schedule:
    """An ordered timeline of :class:`Command` s.

    Build it fluently::

        Schedule().set_rate(0, 5.0).start(0).occlude(5400).release(6600)
    """

    def __init__(self, commands: Iterable[Command] = ()) -> None:
        self._commands: list[Command] = []
        for command in commands:
            self.add(command)

    def add(self, command: Command) -> Schedule:
        # Stable insertion: same-time commands keep the order they were added in.
        index = len(self._commands)
        while index > 0 and self._commands[index - 1].t_s > command.t_s:
            index -= 1
        self._commands.insert(index, command)
        return self

    def _add(self, t_s: float, kind: CommandKind, value: float = math.nan) -> Schedule:
        return self.add(Command(float(t_s), kind, float(value)))

    def set_rate(self, t_s: float, rate_ml_h: float) -> Schedule:
        return self._add(t_s, CommandKind.SET_RATE, rate_ml_h)

    def set_direction(self, t_s: float, infuse: bool) -> Schedule:
        return self._add(t_s, CommandKind.SET_DIRECTION, 1.0 if infuse else -1.0)

    def set_diameter(self, t_s: float, diameter_mm: float) -> Schedule:
        return self._add(t_s, CommandKind.SET_DIAMETER, diameter_mm)

    def set_target(self, t_s: float, volume_ml: float | None) -> Schedule:
        return self._add(t_s, CommandKind.SET_TARGET, volume_ml or 0.0)

    def start(self, t_s: float) -> Schedule:
        return self._add(t_s, CommandKind.START)

    def stop(self, t_s: float) -> Schedule:
        return self._add(t_s, CommandKind.STOP)

    def purge(self, t_s: float) -> Schedule:
        return self._add(t_s, CommandKind.PURGE)

    def clear_alarms(self, t_s: float) -> Schedule:
        return self._add(t_s, CommandKind.CLEAR_ALARMS)

    def clear_volume(self, t_s: float) -> Schedule:
        return self._add(t_s, CommandKind.CLEAR_VOLUME)

    def raise_alarm(self, t_s: float, alarm: Alarm) -> Schedule:
        return self._add(t_s, CommandKind.RAISE_ALARM, float(int(alarm)))

    def occlude(self, t_s: float) -> Schedule:
        return self._add(t_s, CommandKind.OCCLUDE)

    def release(self, t_s: float) -> Schedule:
        return self._add(t_s, CommandKind.RELEASE)

    def set_back_pressure(self, t_s: float, pressure_mmhg: float) -> Schedule:
        return self._add(t_s, CommandKind.SET_BACK_PRESSURE, pressure_mmhg)

    def tare(self, t_s: float, tare_g: float | None = None) -> Schedule:
        return self._add(t_s, CommandKind.TARE, math.nan if tare_g is None else tare_g)

    def __iter__(self) -> Iterator[Command]:
        return iter(self._commands)

    def __len__(self) -> int:
        return len(self._commands)

    def __getitem__(self, index: int) -> Command:
        return self._commands[index]

    @property
    def times_s(self) -> list[float]:
        """Distinct command times, ascending."""
        return sorted({c.t_s for c in self._commands})

    def at(self, t_s: float) -> list[Command]:
        """Commands at exactly ``t_s``, in order."""
        return [c for c in self._commands if c.t_s == t_s]
