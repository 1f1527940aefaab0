"""The NE-1000's Pumping Program running on the pump mechanism (the emulator's part).

:class:`ProgramExecution` executes a program (:mod:`medtwin.drivers.ne1000.program`, the
phase functions of the NE-1000 User Manual, publication 1200-01, §8 and §10.4) on a
:class:`~medtwin.drivers.emulators.mechanisms.PumpMechanism`: each pumping phase sets the
direction and rate and runs; its end (the phase's volume dispensed at its rate) and the
end of a pause phase are device-time call-backs (``mechanism.call_at``), so a phase
change happens at its exact instant of device time however rarely a client polls, and
a virtual-clock run gives the same schedule as the twin's expansion
(:func:`medtwin.drivers.ne1000.program.expand_program`).

A user ``STP`` pauses the program (prompt ``P``) and keeps what is left of the current
phase; ``RUN`` resumes it. An alarm (a stall) ends the program; a rate the syringe cannot
run stops it with the ``A?O`` alarm (phase out of range) and a program that loops without
taking time with ``A?E`` (program error).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from medtwin.drivers.base import PumpState
from medtwin.drivers.emulators.mechanisms import PumpMechanism, PumpSnapshot
from medtwin.drivers.ne1000.codec import AlarmCode, ErrorCode, RateUnit, VolumeUnit
from medtwin.drivers.ne1000.program import (
    MAX_PHASES,
    PUMPING,
    UNSUPPORTED_FUNCTIONS,
    Phase,
    PhaseFunction,
    ProgramCursor,
    ProgramError,
    format_function,
    parse_function,
    rate_limits_ml_h,
)

__all__ = ["ProgramCommands", "ProgramExecution", "RefusedCommand"]


class ProgramExecution:
    """One run of a Pumping Program on a mechanism.

    Parameters
    ----------
    mechanism : PumpMechanism
        The drive; needs ``call_at`` (device-time call-backs).
    phases : sequence of Phase
        The program memory (phase 1 first).
    start : int
        The phase ``RUN n`` named.
    check_rate : callable
        ``check_rate(rate_ml_h)`` raises ValueError for a rate the pump refuses with the
        configured syringe (its ``RAT`` range).
    on_alarm : callable
        Called with the program alarm (``A?O``, ``A?E``) when the program stops on one.
    """

    def __init__(
        self,
        mechanism: PumpMechanism,
        phases: Sequence[Phase],
        start: int,
        *,
        check_rate: Callable[[float], None],
        on_alarm: Callable[[AlarmCode], None],
    ) -> None:
        self.mechanism = mechanism
        self.cursor = ProgramCursor(phases, start)
        self.check_rate = check_rate
        self.on_alarm = on_alarm
        self.phase_number = start
        self.phase: Phase | None = None
        self.running = False  # started and not ended (paused counts as running)
        self.paused = False
        self._cancel: Callable[[], None] | None = None
        # What is left of the current phase (mL for pumping, s for a pause) and where it
        # began (pump counter, device time).
        self._left = 0.0
        self._began_counter = 0.0
        self._began_t = 0.0

    # -- control --------------------------------------------------------------------------

    def start(self) -> None:
        self.running = True
        self._next_phase()

    def pause(self) -> None:
        """A user ``STP``: stop the motor, keep the rest of the current phase."""
        if not self.running or self.paused:
            return
        self._cancel_timer()
        snap = self.mechanism.snapshot()
        if self.phase is not None and self.phase.function in PUMPING:
            if math.isfinite(self._left):
                self._left = max(self._left - (self._counter(snap) - self._began_counter), 0.0)
        elif self.phase is not None:
            self._left = max(self._left - (snap.t_s - self._began_t), 0.0)
        self.mechanism.stop()
        self.paused = True

    def resume(self) -> None:
        if not self.paused:
            return
        self.paused = False
        if self.phase is None or self._left <= 0:
            self._next_phase()
        else:
            self._run_phase(self.phase, self._left)

    def abort(self) -> None:
        """The program ends (stopped by the user from pause, an alarm, a reset)."""
        self._cancel_timer()
        self.running = self.paused = False
        self.phase = None

    @property
    def timed_pause(self) -> bool:
        """In a ``PAS`` phase (status prompt ``T``)."""
        return (
            self.running
            and not self.paused
            and self.phase is not None
            and self.phase.function is PhaseFunction.PAUSE
        )

    # -- execution ---------------------------------------------------------------------------

    def _counter(self, snap: object) -> float:
        infusing = getattr(snap, "infusing", True)
        return float(getattr(snap, "infused_ml" if infusing else "withdrawn_ml", 0.0))

    def _cancel_timer(self) -> None:
        if self._cancel is not None:
            self._cancel()
            self._cancel = None

    def _next_phase(self) -> None:
        self._cancel_timer()
        try:
            number, phase = self.cursor.next_timed()
        except ProgramError:
            self._fail(AlarmCode.PROGRAM_ERROR)
            return
        self.phase_number, self.phase = number, phase
        if phase is None:  # STP phase or past the last phase: the program ends
            self.mechanism.stop()
            self.running = False
            return
        if phase.function is PhaseFunction.PAUSE:
            self._run_phase(phase, float(phase.argument))
        else:
            self._run_phase(phase, phase.volume_ml if phase.volume_ml > 0 else math.inf)

    def _run_phase(self, phase: Phase, left: float) -> None:
        snap = self.mechanism.snapshot()
        self._left, self._began_t = left, snap.t_s
        if phase.function is PhaseFunction.PAUSE:
            self.mechanism.stop()
            self._cancel = self.mechanism.call_at(snap.t_s + left, self._next_phase)
            return
        rate = self.cursor.rate_ml_h
        try:
            self.check_rate(rate)
            self.mechanism.set_direction(phase.infuse)
            self.mechanism.set_rate_ml_h(rate)
            self.mechanism.set_volume_target_ml(None)
            self.mechanism.start()
        except ValueError:
            self._fail(AlarmCode.OUT_OF_RANGE)
            return
        except RuntimeError:  # an alarm is active: the program cannot run
            self.abort()
            return
        self._began_counter = self._counter(self.mechanism.snapshot())
        if math.isfinite(left):
            self._cancel = self.mechanism.call_at(snap.t_s + left / rate * 3600.0, self._done)

    def _done(self) -> None:
        self._cancel = None
        snap = self.mechanism.snapshot()
        if snap.state not in (PumpState.INFUSING, PumpState.WITHDRAWING):
            # Stopped by an alarm (a stall) meanwhile: the program has ended with it.
            self.abort()
            return
        self._next_phase()

    def _fail(self, code: AlarmCode) -> None:
        self.mechanism.stop()
        self.abort()
        self.on_alarm(code)


class RefusedCommand(Exception):
    """A command answered with a command error (``?``, ``?NA``, ``?OOR``)."""

    def __init__(self, error: ErrorCode) -> None:
        self.error = error
        super().__init__(error.value)


class ProgramCommands:
    """The NE-1000 firmware's program-memory commands (``PHN``, ``FUN``, ``RESET``, ``RUN``
    of a program) and the rate check (a mix-in of
    :class:`medtwin.drivers.emulators.ne1000.NE1000Protocol`, which holds the state
    declared here). The selected phase's data are the protocol's ``rate_*``,
    ``volume_*`` and ``infuse`` fields; the other phases are kept in ``_stored``."""

    mechanism: PumpMechanism
    diameter_mm: float
    speed_range_mm_h: tuple[float, float]
    rate_value: float
    rate_unit: RateUnit
    volume_value: float
    volume_unit: VolumeUnit
    infuse: bool
    phase_number: int
    phase_count: int
    function: PhaseFunction
    function_argument: int
    _stored: dict[int, tuple[Any, ...]]
    _program: ProgramExecution | None
    _program_alarm: AlarmCode | None
    _paused: bool
    _snap: PumpSnapshot

    def _running(self, snapshot: PumpSnapshot | None = None) -> bool:
        raise NotImplementedError

    def _clear_foreign_alarms(self, snapshot: PumpSnapshot) -> None:
        raise NotImplementedError

    @staticmethod
    def _apply(action: Callable[[], object]) -> None:
        """Run a mechanism action; its ValueError is ``?OOR``, its RuntimeError ``?NA``."""
        try:
            action()
        except ValueError:
            raise RefusedCommand(ErrorCode.OUT_OF_RANGE) from None
        except RuntimeError:
            raise RefusedCommand(ErrorCode.NOT_APPLICABLE) from None

    def _cmd_phn(self, argument: str) -> str:
        if not argument:
            program = self._program
            running = program is not None and program.running
            # While a program runs, the current phase is the one it executes.
            return f"{program.phase_number if running else self.phase_number:02d}"  # type: ignore[union-attr]
        if not argument.isdigit() or len(argument) > 2:
            raise RefusedCommand(ErrorCode.UNRECOGNIZED)
        number = int(argument)
        if not 1 <= number <= MAX_PHASES:
            raise RefusedCommand(ErrorCode.OUT_OF_RANGE)
        self._require_program_stopped()
        self._stored[self.phase_number] = self._phase_fields()
        self._load_phase(number)
        self.phase_count = max(self.phase_count, number)
        return ""

    def _cmd_fun(self, argument: str) -> str:
        if not argument:
            return format_function(Phase(self.function, argument=self.function_argument))
        if argument.startswith(UNSUPPORTED_FUNCTIONS):
            raise RefusedCommand(ErrorCode.NOT_APPLICABLE)  # TTL inputs, fill, sub-programs
        try:
            function, value = parse_function(argument)
        except ValueError:
            raise RefusedCommand(ErrorCode.UNRECOGNIZED) from None
        self._apply(lambda: Phase(function, argument=value).check())
        self._require_program_stopped()
        self.function, self.function_argument = function, value
        return ""

    def _cmd_reset(self, argument: str) -> str:
        if argument:
            raise RefusedCommand(ErrorCode.UNRECOGNIZED)
        # Unverified (the manual's command table could not be read): the pump stops and
        # its Pumping Program memory returns to one RAT phase; the syringe, rate, volume
        # and direction of phase 1 and the communication settings are kept.
        if self._program is not None:
            self._program.abort()
            self._program = None
        if self._running(self._snap) or self._snap.state is PumpState.WAITING:
            self.mechanism.stop()
        if self.phase_number != 1:
            self._stored[self.phase_number] = self._phase_fields()
            self._load_phase(1)
        self._stored.clear()
        self.phase_count = 1
        self.function, self.function_argument = PhaseFunction.RATE, 0
        self._program_alarm = None
        self._paused = False
        return ""

    def _cmd_not_emulated(self, argument: str) -> str:
        # A command of the manual whose hardware (TTL I/O, buzzer, keypad) the emulated
        # pump does not have: "not applicable", never "not recognised".
        raise RefusedCommand(ErrorCode.NOT_APPLICABLE)

    # -- pumping program ---------------------------------------------------------------------

    def _phase_fields(self) -> tuple[Any, ...]:
        return (
            self.rate_value,
            self.rate_unit,
            self.volume_value,
            self.volume_unit,
            self.infuse,
            self.function,
            self.function_argument,
        )

    def _load_phase(self, number: int) -> None:
        fields = self._stored.pop(number, None) or (
            0.0,
            self.rate_unit,
            0.0,
            self.volume_unit,
            True,
            PhaseFunction.RATE,
            0,
        )
        (
            self.rate_value,
            self.rate_unit,
            self.volume_value,
            self.volume_unit,
            self.infuse,
            self.function,
            self.function_argument,
        ) = fields
        self.phase_number = number

    def phases(self) -> list[Phase]:
        """The program memory as phases (phase 1 first)."""
        out: list[Phase] = []
        for number in range(1, self.phase_count + 1):
            fields = (
                self._phase_fields() if number == self.phase_number else self._stored.get(number)
            )
            if fields is None:
                out.append(Phase())
                continue
            rate, rate_unit, volume, volume_unit, infuse, function, value = fields
            out.append(
                Phase(function, rate * rate_unit.ml_h, volume * volume_unit.ml, infuse, value)
            )
        return out

    def _is_program(self) -> bool:
        return (
            self.phase_count > 1
            or self.phase_number != 1
            or (self.function is not PhaseFunction.RATE)
        )

    def _selected_phase_is_live(self) -> bool:
        """Whether phase data set now act on the drive at once: phase 1 of a one-phase
        program, or the phase a running program is in."""
        program = self._program
        if program is not None and program.running:
            return program.phase_number == self.phase_number
        return not self._is_program()

    def _require_program_stopped(self) -> None:
        program = self._program
        if self._running() or (program is not None and program.running):
            raise RefusedCommand(ErrorCode.NOT_APPLICABLE)

    def _run_program(self, start: int | None) -> str:
        program = self._program
        if program is not None and program.running:
            if program.paused and start is None:
                program.resume()
            return ""
        self._clear_foreign_alarms(self._snap)
        self._program = ProgramExecution(
            self.mechanism,
            self.phases(),
            start or 1,
            check_rate=self._check_rate,
            on_alarm=self._set_program_alarm,
        )
        self._program.start()
        self._paused = False
        return ""

    def _set_program_alarm(self, code: AlarmCode) -> None:
        self._program_alarm = code

    def _check_rate(self, rate_ml_h: float) -> None:
        """ValueError unless the pump can run ``rate_ml_h`` with the configured syringe:
        the drive's plunger speed range × the syringe's area (manual §12.7), within what
        the mechanism can do."""
        low, high = rate_limits_ml_h(
            self.diameter_mm,
            min_speed_mm_h=self.speed_range_mm_h[0],
            max_speed_mm_h=self.speed_range_mm_h[1],
        )
        high = min(high, self.mechanism.rate_range_ml_h()[1])
        # The table's limits are printed to 4 digits: accept what rounds onto them.
        if not low * (1 - 5e-4) <= rate_ml_h <= high * (1 + 5e-4):
            raise ValueError(f"rate {rate_ml_h:g} mL/h outside {low:.4g}-{high:.4g} mL/h")
