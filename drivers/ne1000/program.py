"""The NE-1000 Pumping Program and the pump's rate limits (pure: no I/O).

The Multi-Phaser pumps run a *Pumping Program* of up to 41 *phases* (New Era NE-1000 User
Manual, publication 1200-01, §8 "Pumping Programs" and the RS-232 command set §10.4): ``PHN
n`` selects phase n, ``FUN <function>`` sets its function, and ``RAT``/``VOL``/``DIR`` set
the phase data (rate, volume to be dispensed, direction) of the selected phase. ``RUN n``
starts the program at phase n. The phase functions this module knows (the manual's LCD
mnemonic in brackets):

==========  ============================================================================
``RAT``     pump at the phase's rate and direction until its volume is dispensed
            (``VOL 0``: pump until stopped) [RATE]
``INC``     add the phase's rate to the rate running before, then pump as ``RAT`` [INCR]
``DEC``     subtract the phase's rate from it, then pump as ``RAT`` [DECR]
``STP``     stop the pump: the program ends [STOP]
``JMP nn``  continue at phase nn [JP:nn]
``LPS``     the first phase of a loop [LP:ST]
``LOP nn``  go back to the loop's first phase nn times, then go on [LP:nn]
``LPE``     the end of a loop: closes the innermost open loop [LP:EN]
``PAS nn``  pause pumping nn seconds (status ``T``) [PS:nn]
``BEP``     sound a short beep [bEEP]
``OUT n``   set the program's TTL output to n (0/1) [OUT.n]
``EVN nn``  arm the event trigger: a falling edge on the TTL event input jumps to phase
            nn [Et:nn]; the emulated pump has no TTL input, so the trigger never fires
==========  ============================================================================

The manual's other phase functions (``FIL``, ``PRI``, ``PRL``, ``IF``, ``EVS``, ``EVR``)
need the TTL inputs or sub-programs; :data:`UNSUPPORTED_FUNCTIONS` lists them, and the
emulator answers them ``?NA``.

Unverified (the manual's program chapter could not be read; the choices are documented in
docs/protocols/ne1000.md): ``LOP nn`` loops back nn times, so the loop body runs nn + 1
times; ``LPE`` only closes the loop; a program that runs past its last defined phase
stops; the ``PHN`` and ``FUN`` query replies use two-digit phase numbers (``01``,
``JMP05``).

Rate limits: the manual's table "Syringe Diameters and Rate Limits" (§12.7) gives each
syringe's minimum and maximum rate; both are a fixed plunger speed times the syringe's
cross-section (the drive's slowest and fastest lead-screw speeds). The speeds here come
from New Era's NE-1000 specification, 0.73 µL/h minimum with a B-D 1 mL syringe
(4.699 mm) and 2120 mL/h maximum with a B-D 60 mL syringe (26.59 mm): unverified against
the table itself, so they are arguments of :func:`rate_limits_ml_h` and options of the
emulator.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

__all__ = [
    "MAX_PHASES",
    "MAX_SPEED_MM_H",
    "MIN_SPEED_MM_H",
    "PUMPING",
    "UNSUPPORTED_FUNCTIONS",
    "Phase",
    "PhaseFunction",
    "ProgramCursor",
    "ProgramError",
    "RateSegment",
    "expand_program",
    "format_function",
    "parse_function",
    "rate_limits_ml_h",
    "walk_program",
]

#: Phases in the program memory (manual §10.2.1, ``<phase data>``: 1 to 41).
MAX_PHASES = 41


def _area_mm2(diameter_mm: float) -> float:
    return math.pi * diameter_mm**2 / 4.0


#: Slowest plunger speed, mm/h: 0.73 µL/h on a 4.699 mm syringe (unverified, see above).
MIN_SPEED_MM_H = 0.73 / _area_mm2(4.699)
#: Fastest plunger speed, mm/h: 2120 mL/h on a 26.59 mm syringe (unverified, see above).
MAX_SPEED_MM_H = 2120.0e3 / _area_mm2(26.59)


def rate_limits_ml_h(
    diameter_mm: float,
    *,
    min_speed_mm_h: float = MIN_SPEED_MM_H,
    max_speed_mm_h: float = MAX_SPEED_MM_H,
) -> tuple[float, float]:
    """Lowest and highest rate (mL/h) the pump accepts for a syringe of ``diameter_mm``:
    the drive's plunger speed range times the syringe's cross-section."""
    area_mm2 = _area_mm2(diameter_mm)
    return min_speed_mm_h * area_mm2 / 1000.0, max_speed_mm_h * area_mm2 / 1000.0


class PhaseFunction(enum.StrEnum):
    """Phase functions of ``FUN`` (the emulated and driven subset, see the module doc)."""

    RATE = "RAT"
    INCREMENT = "INC"
    DECREMENT = "DEC"
    STOP = "STP"
    JUMP = "JMP"
    LOOP = "LOP"
    LOOP_START = "LPS"
    LOOP_END = "LPE"
    PAUSE = "PAS"
    BEEP = "BEP"
    OUTPUT = "OUT"
    EVENT = "EVN"


#: Phase functions of the manual that the emulator answers ``?NA`` (TTL inputs, fill,
#: sub-programs).
UNSUPPORTED_FUNCTIONS = ("FIL", "PRI", "PRL", "IF", "EVS", "EVR")

#: Functions that pump (they carry rate, volume and direction).
PUMPING = frozenset({PhaseFunction.RATE, PhaseFunction.INCREMENT, PhaseFunction.DECREMENT})
#: Functions with an integer argument and its range.
_ARGUMENT_RANGE = {
    PhaseFunction.JUMP: (1, MAX_PHASES),
    PhaseFunction.LOOP: (1, 99),
    PhaseFunction.PAUSE: (0, 99),
    PhaseFunction.OUTPUT: (0, 1),
    PhaseFunction.EVENT: (1, MAX_PHASES),
}


class ProgramError(ValueError):
    """A phase or program the pump would not accept (the driver checks before sending)."""


@dataclass(frozen=True, slots=True)
class Phase:
    """One phase of a Pumping Program.

    ``rate_ml_h``, ``volume_ml`` (0: pump until stopped) and ``infuse`` are the phase data
    of a pumping phase (``RAT``, ``INC``, ``DEC``; for ``INC``/``DEC`` the rate is the
    step). ``argument`` is the integer of ``JMP`` (phase), ``LOP`` (count), ``PAS``
    (seconds), ``OUT`` (level) and ``EVN`` (phase).
    """

    function: PhaseFunction = PhaseFunction.RATE
    rate_ml_h: float = 0.0
    volume_ml: float = 0.0
    infuse: bool = True
    argument: int = 0

    def check(self) -> None:
        """Raise :class:`ProgramError` if the phase is not one the pump accepts."""
        bounds = _ARGUMENT_RANGE.get(self.function)
        if bounds is not None and not bounds[0] <= self.argument <= bounds[1]:
            raise ProgramError(
                f"{self.function.value} argument {self.argument} outside {bounds[0]}-{bounds[1]}"
            )
        if self.function in PUMPING:
            if not (math.isfinite(self.rate_ml_h) and self.rate_ml_h >= 0):
                raise ProgramError(f"phase rate {self.rate_ml_h!r} mL/h must be >= 0")
            if not (math.isfinite(self.volume_ml) and self.volume_ml >= 0):
                raise ProgramError(f"phase volume {self.volume_ml!r} mL must be >= 0")


def format_function(phase: Phase) -> str:
    """The ``FUN`` argument (and query reply) of a phase: ``RAT``, ``JMP05``, ``PAS10``."""
    if phase.function in _ARGUMENT_RANGE:
        return f"{phase.function.value}{phase.argument:02d}"
    return phase.function.value


def parse_function(text: str) -> tuple[PhaseFunction, int]:
    """``FUN`` argument → (function, integer argument). ValueError if not a known form."""
    for function in PhaseFunction:
        if text.startswith(function.value):
            rest = text[len(function.value) :]
            if function in _ARGUMENT_RANGE:
                if not rest.isdigit() or len(rest) > 2:
                    raise ValueError(f"{function.value} needs a 1-2 digit number")
                return function, int(rest)
            if rest:
                raise ValueError(f"{function.value} takes no argument")
            return function, 0
    raise ValueError(f"unknown phase function {text!r}")


@dataclass(frozen=True, slots=True)
class RateSegment:
    """A stretch of a program's execution: ``duration_s`` at ``rate_ml_h`` (0: not
    pumping) in ``infuse`` direction; ``duration_s`` is ``inf`` for a phase that pumps
    until stopped (or a program that ends stopped)."""

    phase: int
    duration_s: float
    rate_ml_h: float
    infuse: bool = True


def expand_program(
    phases: Sequence[Phase], *, start: int = 1, max_steps: int = 100_000
) -> list[RateSegment]:
    """The rate schedule a program produces from phase ``start`` (1-based), as the
    emulated pump executes it (same loop, jump and pause semantics).

    The schedule ends with the segment that never finishes: a continuous pumping phase
    (``VOL 0``; rate > 0, ``inf``) or the program's end (rate 0, ``inf``). Zero-length
    phases are left out. Raises :class:`ProgramError` for a program that loops without
    pumping or pausing (more than ``max_steps`` phases executed).
    """
    segments: list[RateSegment] = []
    for step in walk_program(phases, start=start, max_steps=max_steps):
        number, phase, rate = step
        if phase is None:
            segments.append(RateSegment(number, math.inf, 0.0))
            break
        if phase.function is PhaseFunction.PAUSE:
            if phase.argument > 0:
                segments.append(RateSegment(number, float(phase.argument), 0.0))
            continue
        if rate <= 0:
            if phase.volume_ml > 0:
                raise ProgramError(f"phase {number} pumps {phase.volume_ml} mL at rate 0")
            segments.append(RateSegment(number, math.inf, 0.0, phase.infuse))
            break
        if phase.volume_ml <= 0:
            segments.append(RateSegment(number, math.inf, rate, phase.infuse))
            break
        segments.append(RateSegment(number, phase.volume_ml / rate * 3600.0, rate, phase.infuse))
    return segments


def walk_program(
    phases: Sequence[Phase], *, start: int = 1, max_steps: int = 100_000
) -> Iterator[tuple[int, Phase | None, float]]:
    """The phases a program executes that take time: ``(number, phase, rate_ml_h)`` for
    each pumping or pause phase (the rate after ``INC``/``DEC``), then ``(number, None,
    0.0)`` when the program stops. The interpreter the emulator runs, step by step."""
    runner = ProgramCursor(phases, start)
    for _ in range(max_steps):
        number, phase = runner.next_timed()
        yield number, phase, runner.rate_ml_h
        if phase is None:
            return
        if phase.function in PUMPING and phase.volume_ml <= 0:
            return
    raise ProgramError(f"the program executed more than {max_steps} phases without ending")


class ProgramCursor:
    """Where a running program is: the phase to execute next, the loop stack and the
    rate ``INC``/``DEC`` start from. :meth:`next_timed` executes the instant phases
    (jumps, loops, beeps, outputs, triggers) and returns the next phase that takes time
    (pumping or pause) or ``None`` when the program stops."""

    def __init__(self, phases: Sequence[Phase], start: int = 1) -> None:
        if not 1 <= start <= MAX_PHASES:
            raise ProgramError(f"start phase {start} outside 1-{MAX_PHASES}")
        self.phases = list(phases)
        self.next_phase = start
        self.rate_ml_h = 0.0
        self.output = 0
        self.event_phase = 0
        self.beeps = 0
        # Loop stack: [first phase of the loop body, loops back remaining (None: not yet
        # counted)].
        self._loops: list[list[int | None]] = []

    def next_timed(self, max_instant: int = 10_000) -> tuple[int, Phase | None]:
        for _ in range(max_instant):
            number = self.next_phase
            if number > len(self.phases):
                return number, None  # past the last defined phase: the program ends
            phase = self.phases[number - 1]
            self.next_phase = number + 1
            function = phase.function
            if function is PhaseFunction.STOP:
                return number, None
            if function is PhaseFunction.JUMP:
                self.next_phase = phase.argument
            elif function is PhaseFunction.LOOP_START:
                self._loops.append([number + 1, None])
            elif function is PhaseFunction.LOOP:
                if not self._loops:
                    raise ProgramError(f"phase {number}: LOP without LPS")
                loop = self._loops[-1]
                if loop[1] is None:
                    loop[1] = phase.argument
                if loop[1]:
                    loop[1] -= 1
                    self.next_phase = int(loop[0] or 1)
                else:
                    self._loops.pop()
            elif function is PhaseFunction.LOOP_END:
                if self._loops:
                    self._loops.pop()
            elif function is PhaseFunction.BEEP:
                self.beeps += 1
            elif function is PhaseFunction.OUTPUT:
                self.output = phase.argument
            elif function is PhaseFunction.EVENT:
                self.event_phase = phase.argument
            elif function is PhaseFunction.PAUSE:
                return number, phase
            else:  # pumping
                if function is PhaseFunction.RATE:
                    self.rate_ml_h = phase.rate_ml_h
                elif function is PhaseFunction.INCREMENT:
                    self.rate_ml_h += phase.rate_ml_h
                else:
                    self.rate_ml_h = max(self.rate_ml_h - phase.rate_ml_h, 0.0)
                return number, phase
        raise ProgramError(f"the program loops through {max_instant} phases without pumping")
