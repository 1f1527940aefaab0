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

from medtwin.drivers.base import PumpState
from medtwin.drivers.emulators.mechanisms import PumpMechanism
from medtwin.drivers.ne1000.codec import AlarmCode
from medtwin.drivers.ne1000.program import (
    PUMPING,
    Phase,
    PhaseFunction,
    ProgramCursor,
    ProgramError,
)

__all__ = ["ProgramExecution"]


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
