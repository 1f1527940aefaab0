"""The scenario action table: every action a scenario step (or a bench test) can take.

One :class:`Action` per action word, in :data:`ACTIONS`. An entry says everything the rest
of medtwin needs to know about the action:

* ``kind``: the device kind it addresses (``None`` for ``mark``, a note in the run's log);
* ``arguments`` and ``alternatives``: the named arguments a ``[[steps]]`` entry gives it
  (name, unit, type, range: :class:`Argument`), of which the ``alternatives`` are "at least
  one of"; :meth:`Action.check_arguments` is what :class:`medtwin.hil.config.Step` runs
  on the step's keys, so a new argument needs no other declaration and the scenario file's
  errors come from here;
* ``plan``: how the step becomes device commands before the run, checked against the
  device's declared limits (a ``set_diameter`` by syringe name resolved to its inner
  diameter, a ``bolus`` expanded to stop / target / rate / start and back, a ``program``
  expanded into the rate / start / stop commands of its phases);
* ``call``: the device call, an async function of the driver, the planned step's main
  value and (when it takes a third parameter) all its named arguments
  (:attr:`PlannedStep.arguments`: ``set_nibp`` sends systolic and diastolic);
* ``twin`` and ``twin_valued``: the pump-side model input recorded for the twin once the
  device acknowledged the command (``tare`` and ``zero`` both restart the twin's net
  mass); ``settings``: the simulator settings the step changes, which the monitor twin's
  patient follows (:mod:`medtwin.hil.monitor_twin`).

Scenario validation (:mod:`medtwin.hil.config`), planning (:mod:`medtwin.hil.plan`), the
runner, the twin's replay of a stored run (:func:`medtwin.hil.twin.schedule_from_events`)
and the pytest plug-in's device handles (:mod:`medtwin.fixtures.devices`) all read this
table, so a scenario run and a bench test cannot disagree on what an action does. Adding
an action is adding one entry here (and the driver method it calls, if it is new);
docs/benches-and-scenarios.md lists the table, checked against it by the tests.

A ``bolus`` is planned as the bolus-accuracy test of IEC 60601-2-24 (1998 edition, clause
50.106) delivers one: the bolus volume at its own rate, then the basal rate again; the
procedure that analyses it is :class:`medtwin.hil.procedures.BolusProcedure`.
"""

from __future__ import annotations

import difflib
import inspect
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, Protocol

from medtwin.device_models.base import ParameterError
from medtwin.device_models.schedule import CommandKind
from medtwin.device_models.syringes import SyringeLibrary
from medtwin.drivers.base import Balance, BenchIO, InfusionPump
from medtwin.drivers.errors import ConfigurationError
from medtwin.drivers.ne1000.program import Phase, PhaseFunction, ProgramError, expand_program
from medtwin.drivers.vital_signs import PatientSimulator, SimulatorLimits

if TYPE_CHECKING:
    # Type-only: medtwin.hil.config imports this module to validate steps.
    from medtwin.hil.config import DeviceConfig, DeviceKind

__all__ = [
    "ACTIONS",
    "NO_ARGUMENTS",
    "Action",
    "Argument",
    "ArgumentError",
    "ArgumentType",
    "PlanContext",
    "PlanState",
    "PlannedStep",
    "StepArguments",
    "unknown_action_message",
]


class StepArguments(Protocol):
    """What an action reads from a step: its time, note and named arguments
    (:class:`medtwin.hil.config.Step`)."""

    @property
    def at(self) -> float: ...
    @property
    def action(self) -> str: ...
    @property
    def note(self) -> str: ...
    @property
    def arguments(self) -> Mapping[str, Any]: ...


class ArgumentError(ValueError):
    """A step's argument refused by its action's declaration; ``argument`` names it (None:
    the step as a whole, e.g. a missing one), so the file's error names ``steps[i].<it>``."""

    def __init__(self, message: str, argument: str | None = None) -> None:
        super().__init__(message)
        self.argument = argument


#: The type of an argument's value: a ``number`` (float, in the argument's unit), a ``text``
#: (a syringe's library name) or ``tables`` (a list of tables: a program's phases).
ArgumentType = Literal["number", "text", "tables"]

#: The arguments of a planned step that has none.
NO_ARGUMENTS: Mapping[str, float] = MappingProxyType({})


@dataclass(frozen=True)
class Argument:
    """One named argument an action takes: a key of the ``[[steps]]`` entry.

    ``name`` carries its unit (``rate_ml_h``, ``systolic_mmhg``), ``unit`` says it again
    for the docs; ``gt``, ``ge`` and ``le`` are the bounds every step is checked against
    when the scenario is read (a bolus of 0 mL is no bolus; an SpO2 above 100 % is no
    SpO2). A device's *declared* limits are checked later, when the step is planned
    against the bench.
    """

    name: str
    unit: str = ""
    required: bool = True
    gt: float | None = None
    ge: float | None = None
    le: float | None = None
    type: ArgumentType = "number"

    def check(self, action: str, value: Any) -> Any:
        """``value`` as the action gets it (a float for a number).

        Raises
        ------
        ValueError
            Naming the action and the argument: the wrong type, or out of range.
        """
        if self.type == "text":
            if not isinstance(value, str):
                raise ArgumentError(f"action {action!r}: {self.name} must be a text", self.name)
            return value
        if self.type == "tables":
            if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
                raise ArgumentError(
                    f"action {action!r}: {self.name} must be a list of tables", self.name
                )
            return value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ArgumentError(f"action {action!r}: {self.name} must be a number", self.name)
        number = float(value)
        if not math.isfinite(number):
            raise ArgumentError(
                f"action {action!r}: {self.name} must be a finite number", self.name
            )
        for op, bound, ok in (
            (">", self.gt, lambda b: number > b),
            (">=", self.ge, lambda b: number >= b),
            ("<=", self.le, lambda b: number <= b),
        ):
            if bound is not None and not ok(bound):
                raise ArgumentError(
                    f"action {action!r} needs {self.name} {op} {bound:g} (got {number:g})",
                    self.name,
                )
        return number

    def describe(self) -> str:
        """The argument as the docs' action table shows it: ``rate_ml_h`` (mL/h) >= 0."""
        unit = f" ({self.unit})" if self.unit else ""
        bounds = [
            f"{op} {bound:g}"
            for op, bound in ((">", self.gt), (">=", self.ge), ("<=", self.le))
            if bound is not None
        ]
        return f"`{self.name}`{unit}" + (" " + ", ".join(bounds) if bounds else "")


@dataclass(frozen=True)
class PlannedStep:
    """A step as executed: one device command at ``t_s``.

    ``label`` names where it came from (``steps[3]`` or ``steps[3] (bolus)``);
    ``arguments`` are the command's named arguments (``{"rate_ml_h": 5.0}``,
    ``{"systolic_mmhg": 120.0, "diastolic_mmhg": 80.0}``); ``value`` is the action's main
    argument (its first number argument; NaN when it takes none), the one a single-valued
    device call gets.
    """

    t_s: float
    action: str
    device: str | None
    value: float = math.nan
    note: str = ""
    label: str = ""
    arguments: Mapping[str, float] = field(default_factory=lambda: NO_ARGUMENTS)

    def describe(self) -> str:
        """``set_rate 5`` or ``set_nibp systolic_mmhg=120 diastolic_mmhg=80``."""
        if len(self.arguments) > 1:
            return " ".join([self.action, *(f"{k}={v:g}" for k, v in self.arguments.items())])
        return self.action + ("" if math.isnan(self.value) else f" {self.value:g}")


@dataclass
class PlanState:
    """What planning carries from one step to the next: the pump's basal rate (where a
    bolus returns to) and whether it is running (so that it runs on after the bolus)."""

    rate_ml_h: float = 0.0
    running: bool = False


@dataclass(frozen=True)
class PlanContext:
    """One step being planned: the step, where it came from, the device it addresses."""

    step: StepArguments
    where: str
    device: DeviceConfig | None
    library: SyringeLibrary
    source: str
    state: PlanState = field(default_factory=PlanState)
    #: What a refused step means for the caller (a bench test's ``act()``: nothing sent).
    consequence: str = "the run was not started"

    @property
    def device_name(self) -> str | None:
        return None if self.device is None else self.device.name

    def planned(
        self,
        action: str | None = None,
        value: float = math.nan,
        *,
        t_s: float | None = None,
        label: str | None = None,
        note: str = "",
        arguments: Mapping[str, float] | None = None,
    ) -> PlannedStep:
        """A command of this step (by default the step's own action, at its time).

        Give the main ``value`` (it becomes the argument of that name) or all the named
        ``arguments`` (the main value is then taken from them)."""
        name = action or self.step.action
        entry = ACTIONS.get(name)
        main = None if entry is None else entry.main
        if arguments is None:
            arguments = {main: value} if main and not math.isnan(value) else {}
        elif main and main in arguments and math.isnan(value):
            value = arguments[main]
        return PlannedStep(
            self.step.at if t_s is None else t_s,
            name,
            self.device_name,
            value,
            note=note,
            label=self.where if label is None else label,
            arguments=MappingProxyType(dict(arguments)) if arguments else NO_ARGUMENTS,
        )

    def refuse(self, argument: str, message: str) -> ConfigurationError:
        """The error for a step the device would refuse, naming ``file:steps[i].argument``."""
        return ConfigurationError(
            f"{message}; {self.consequence}",
            source=self.source,
            field=self.field(argument),
        )

    def field(self, argument: str) -> str:
        """Where ``argument`` of this step is (``steps[3].rate_ml_h``)."""
        return f"{self.where}.{argument}" if self.where else argument

    def argument(self, name: str) -> float:
        value = self.step.arguments.get(name)
        assert value is not None, f"{self.step.action}: {name} was validated as given"
        return float(value)


DeviceCall = Callable[..., Awaitable[Any]]
Planner = Callable[[PlanContext], list[PlannedStep]]


@dataclass(frozen=True)
class Action:
    """One scenario action. A new entry gives:

    1. ``name``, the word scenario files use, and ``summary``, the line the docs show;
    2. ``kind``, the device kind it addresses (``None``: no device; the runner writes the
       step's note in the run's log);
    3. ``arguments`` (:class:`Argument`: name, unit, type, required or optional, range)
       and ``alternatives`` (of which at least one must be given);
       :meth:`check_arguments` checks every step's keys against them, with errors naming
       the step; nothing else declares an argument;
    4. ``plan(context)``, returning the device commands the step becomes; it checks the
       values against ``context.device.limits`` and raises ``context.refuse(...)``, before
       anything is sent. An action that only expands into other actions (``bolus``) has
       no ``call`` of its own;
    5. ``call(driver, value[, arguments])``, the coroutine that sends one planned command
       to the driver of ``kind`` and returns what the device answered: ``value`` is the
       main argument, ``arguments`` (given when the call takes a third parameter) all of
       them by name;
    6. ``twin`` (and ``twin_valued``: whether the value goes with it), the pump-side model
       input the twin records once the device acknowledged the command; ``None`` when the
       pump twin has no such input; ``settings``, for a patient simulator's action, the
       simulator setting (a :class:`~medtwin.drivers.emulators.mechanisms.SimulatorSettings`
       field) each argument sets, which the monitor twin's patient follows.
    """

    name: str
    kind: DeviceKind | None
    summary: str
    plan: Planner
    call: DeviceCall | None = None
    twin: CommandKind | None = None
    twin_valued: bool = False
    arguments: tuple[Argument, ...] = ()
    alternatives: tuple[str, ...] = ()
    settings: Mapping[str, str] = field(default_factory=dict)

    @property
    def main(self) -> str | None:
        """The argument a planned step's ``value`` carries: the first number argument."""
        return next((a.name for a in self.arguments if a.type == "number"), None)

    @property
    def call_takes_arguments(self) -> bool:
        """Whether :attr:`call` takes the named arguments as a third parameter (a call of
        a single-valued action may take ``(driver, value)`` only)."""
        if self.call is None:
            return False
        try:
            parameters = inspect.signature(self.call).parameters
        except (TypeError, ValueError):  # pragma: no cover - a builtin
            return False
        return len(parameters) >= 3 or any(
            p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters.values()
        )

    async def send(self, driver: Any, step: PlannedStep) -> Any:
        """Send one planned command to ``driver`` (the action's device call)."""
        assert self.call is not None, f"{self.name} is planned into other actions"
        if self.call_takes_arguments:
            return await self.call(driver, step.value, step.arguments)
        return await self.call(driver, step.value)

    def check_arguments(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """The step's named arguments checked against this action's declaration.

        ``given`` are the step's keys beyond ``at``, ``action``, ``device`` and ``note``;
        a None value counts as not given. Returns them converted (numbers as float).

        Raises
        ------
        ValueError
            Naming an argument the action does not take (with the closest it does), a
            missing one, or one of the wrong type or out of range (pydantic turns it into
            the scenario file's ``file:steps[i]`` error).
        """
        declared = {a.name: a for a in self.arguments}
        present = {k: v for k, v in given.items() if v is not None}
        for key in present:
            if key not in declared:
                raise ArgumentError(_unknown_argument(self, key), key)
        for arg in self.arguments:
            if arg.required and arg.name not in present:
                raise ArgumentError(f"action {self.name!r} needs {arg.name}")
        if self.alternatives and not any(a in present for a in self.alternatives):
            raise ArgumentError(f"action {self.name!r} needs {' or '.join(self.alternatives)}")
        return {key: declared[key].check(self.name, value) for key, value in present.items()}

    def validate(self, step: StepArguments) -> None:
        """Check that ``step`` carries this action's arguments (:meth:`check_arguments`)."""
        self.check_arguments(step.arguments)

    def twin_input(self, value: float | None) -> tuple[CommandKind, float] | None:
        """The twin's input for this action sent with ``value`` (None: the twin does not
        see it). Only the inputs that carry a value keep it; the others get NaN (a tare's
        NaN means "the twin's own settled reading now")."""
        if self.twin is None:
            return None
        if not self.twin_valued or value is None:
            return self.twin, math.nan
        return self.twin, float(value)

    def settings_input(self, arguments: Mapping[str, Any]) -> dict[str, float]:
        """The simulator settings this action, sent with ``arguments``, changes (setting
        name → value); empty for an action that sets none. Arguments missing from a
        stored event (null in JSON) are left out."""
        return {
            setting: float(arguments[name])
            for name, setting in self.settings.items()
            if isinstance(arguments.get(name), int | float)
        }


def _unknown_argument(entry: Action, key: str) -> str:
    names = [a.name for a in entry.arguments]
    if not names:
        return f"action {entry.name!r} takes no arguments; unknown field {key!r}"
    close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown field {key!r} for action {entry.name!r} (it takes {', '.join(names)}){hint}"


# --------------------------------------------------------------------------- planners


def _plan_plain(ctx: PlanContext) -> list[PlannedStep]:
    return [ctx.planned(note=ctx.step.note)]


def _plan_start(ctx: PlanContext) -> list[PlannedStep]:
    ctx.state.running = True
    return _plan_plain(ctx)


def _plan_stop(ctx: PlanContext) -> list[PlannedStep]:
    ctx.state.running = False
    return _plan_plain(ctx)


def _check_rate(ctx: PlanContext, rate: float, what: str) -> None:
    assert ctx.device is not None
    limits = ctx.device.limits
    if not limits.min_rate_ml_h <= rate <= limits.max_rate_ml_h:
        raise ctx.refuse(
            "rate_ml_h",
            f"{what} {rate:g} mL/h is outside {ctx.device.name}'s declared limits "
            f"[{limits.min_rate_ml_h:g}, {limits.max_rate_ml_h:g}] mL/h",
        )


def _check_volume(ctx: PlanContext, volume: float, what: str) -> None:
    assert ctx.device is not None
    limits = ctx.device.limits
    if volume > limits.max_volume_ml:
        raise ctx.refuse(
            "volume_ml",
            f"{what} {volume:g} mL exceeds {ctx.device.name}'s declared maximum "
            f"{limits.max_volume_ml:g} mL",
        )


def _plan_rate(ctx: PlanContext) -> list[PlannedStep]:
    rate = ctx.argument("rate_ml_h")
    _check_rate(ctx, rate, "rate")
    ctx.state.rate_ml_h = rate
    return [ctx.planned(value=rate)]


def _plan_diameter(ctx: PlanContext) -> list[PlannedStep]:
    assert ctx.device is not None
    diameter = ctx.step.arguments.get("diameter_mm")
    if diameter is None:
        try:
            diameter = ctx.library.get(ctx.step.arguments.get("syringe") or "").inner_diameter_mm
        except ParameterError as exc:
            raise ConfigurationError(
                str(exc), source=ctx.source, field=ctx.field("syringe")
            ) from None
    limits = ctx.device.limits
    if not limits.min_diameter_mm <= diameter <= limits.max_diameter_mm:
        raise ctx.refuse(
            "diameter_mm",
            f"syringe diameter {diameter:g} mm is outside {ctx.device.name}'s declared "
            f"range [{limits.min_diameter_mm:g}, {limits.max_diameter_mm:g}] mm",
        )
    return [ctx.planned(value=float(diameter))]


def _plan_target(ctx: PlanContext) -> list[PlannedStep]:
    volume = ctx.argument("volume_ml")
    _check_volume(ctx, volume, "volume")
    return [ctx.planned(value=volume)]


def _plan_bolus(ctx: PlanContext) -> list[PlannedStep]:
    volume, rate = ctx.argument("volume_ml"), ctx.argument("rate_ml_h")
    _check_rate(ctx, rate, "bolus rate")
    _check_volume(ctx, volume, "bolus")
    # A bolus is a volume target at the bolus rate, then back to the basal rate (the pump
    # stops by itself at the target; one more second lets it get there).
    label = f"{ctx.where} (bolus)"
    t = ctx.step.at
    done = t + volume / rate * 3600.0 + 1.0
    planned = [
        ctx.planned("stop", label=label),
        ctx.planned("set_target", volume, label=label),
        ctx.planned("set_rate", rate, label=label),
        ctx.planned("start", label=label, note=ctx.step.note),
        ctx.planned("set_target", 0.0, t_s=done, label=label),
        ctx.planned("set_rate", ctx.state.rate_ml_h, t_s=done, label=label),
    ]
    if ctx.state.running:
        planned.append(ctx.planned("start", t_s=done, label=label))
    return planned


def _program_phases(ctx: PlanContext) -> list[Phase]:
    phases: list[Phase] = []
    keys = {"function", "rate_ml_h", "volume_ml", "argument", "direction"}
    for number, raw in enumerate(ctx.step.arguments.get("phases") or [], 1):
        where = f"phases[{number - 1}]"
        unknown = set(raw) - keys
        if unknown:
            raise ctx.refuse(where, f"phase {number}: unknown key(s) {sorted(unknown)}")
        try:
            function = PhaseFunction(str(raw.get("function", "")).upper())
            phase = Phase(
                function,
                float(raw.get("rate_ml_h", 0.0)),
                float(raw.get("volume_ml", 0.0)),
                str(raw.get("direction", "infuse")) == "infuse",
                int(raw.get("argument", 0)),
            )
            phase.check()
        except (TypeError, ValueError) as exc:
            raise ctx.refuse(where, f"phase {number}: {exc}") from None
        if not phase.infuse:
            raise ctx.refuse(where, f"phase {number}: scenarios run infusion phases only")
        phases.append(phase)
    return phases


def _plan_program(ctx: PlanContext) -> list[PlannedStep]:
    """The Pumping Program's phases (NE-1000 manual 1200-01 §8) expanded into the rate
    schedule they produce (:func:`medtwin.drivers.ne1000.program.expand_program`: loops,
    jumps, INC/DEC and timed pauses resolved), sent as rate / start / stop commands at
    each phase's start, so the twin's input is exactly what the pump received."""
    phases = _program_phases(ctx)
    try:
        segments = expand_program(phases)
    except ProgramError as exc:
        raise ctx.refuse("phases", str(exc)) from None
    label = f"{ctx.where} (program)"
    t = ctx.step.at
    planned = [ctx.planned("set_target", 0.0, label=label)]
    running = ctx.state.running
    for segment in segments:
        if segment.rate_ml_h > 0:
            _check_rate(ctx, segment.rate_ml_h, f"phase {segment.phase} rate")
            planned.append(ctx.planned("set_rate", segment.rate_ml_h, t_s=t, label=label))
            if not running:
                planned.append(ctx.planned("start", t_s=t, label=label))
            running = True
            ctx.state.rate_ml_h = segment.rate_ml_h
        elif running:
            planned.append(ctx.planned("stop", t_s=t, label=label))
            running = False
        t += segment.duration_s
    ctx.state.running = running
    if planned:
        planned[0] = ctx.planned("set_target", 0.0, label=label, note=ctx.step.note)
    return planned


def _simulator_limits(ctx: PlanContext) -> SimulatorLimits:
    assert ctx.device is not None
    return ctx.device.limits.simulator_limits()


def _plan_setting(ctx: PlanContext) -> list[PlannedStep]:
    """A simulator setting, checked against the simulator's declared limits (the ranges the
    bench declares for it, by default the ProSim 8's own) before the run; the limit each
    argument is checked against is named in :data:`SIMULATOR_LIMIT_OF`."""
    assert ctx.device is not None
    limits = _simulator_limits(ctx)
    entry = ACTIONS[ctx.step.action]
    values = {a.name: ctx.argument(a.name) for a in entry.arguments}
    for name, value in values.items():
        what = SIMULATOR_LIMIT_OF[name]
        low, high = getattr(limits, what)
        if not low <= value <= high:
            raise ctx.refuse(
                name,
                f"{name} {value:g} is outside {ctx.device.name}'s declared limits "
                f"[{low:g}, {high:g}] (limits.{what})",
            )
    if "diastolic_mmhg" in values and values["diastolic_mmhg"] > values["systolic_mmhg"]:
        raise ctx.refuse(
            "diastolic_mmhg",
            f"diastolic {values['diastolic_mmhg']:g} mmHg is above systolic "
            f"{values['systolic_mmhg']:g} mmHg",
        )
    return [ctx.planned(arguments=values, note=ctx.step.note)]


#: The simulator limit (a :class:`~medtwin.drivers.vital_signs.SimulatorLimits` field, the
#: key of a simulator's ``limits`` table in the bench file) each argument is checked against.
SIMULATOR_LIMIT_OF: dict[str, str] = {
    "heart_rate_bpm": "heart_rate_bpm",
    "spo2_percent": "spo2_percent",
    "resp_rate_min": "resp_rate_min",
    "systolic_mmhg": "nibp_mmhg",
    "diastolic_mmhg": "nibp_mmhg",
}


# --------------------------------------------------------------------------- device calls


async def _set_diameter(pump: InfusionPump, value: float) -> None:
    await pump.set_syringe_diameter(value)


async def _set_rate(pump: InfusionPump, value: float) -> None:
    await pump.set_rate(value)


async def _set_target(pump: InfusionPump, value: float) -> None:
    # 0 (or NaN from a test that passed None) is "no target".
    await pump.set_volume_target(value if value and not math.isnan(value) else None)


async def _start(pump: InfusionPump, value: float) -> None:
    await pump.start()


async def _stop(pump: InfusionPump, value: float) -> None:
    await pump.stop()


async def _clear_alarms(pump: InfusionPump, value: float) -> None:
    await pump.clear_alarms()


async def _clear_volume(pump: InfusionPump, value: float) -> None:
    await pump.clear_volume()


async def _occlude(io: BenchIO, value: float) -> None:
    await io.set_occluded(True)


async def _release(io: BenchIO, value: float) -> None:
    await io.set_occluded(False)


async def _tare(balance: Balance, value: float) -> float:
    return await balance.tare()


async def _zero(balance: Balance, value: float) -> None:
    await balance.zero()


async def _set_heart_rate(simulator: PatientSimulator, value: float) -> None:
    await simulator.set_heart_rate(value)


async def _set_spo2(simulator: PatientSimulator, value: float) -> None:
    await simulator.set_spo2(value)


async def _set_resp_rate(simulator: PatientSimulator, value: float) -> None:
    await simulator.set_resp_rate(value)


async def _set_nibp(
    simulator: PatientSimulator, value: float, arguments: Mapping[str, float] = NO_ARGUMENTS
) -> None:
    if "diastolic_mmhg" not in arguments:
        raise ConfigurationError(
            "set_nibp needs systolic_mmhg and diastolic_mmhg; the caller passed the "
            "systolic value only (send the planned step's arguments)"
        )
    await simulator.set_nibp(arguments.get("systolic_mmhg", value), arguments["diastolic_mmhg"])


# --------------------------------------------------------------------------- the table

_RATE = Argument("rate_ml_h", "mL/h", ge=0.0)
_VOLUME = Argument("volume_ml", "mL", ge=0.0)

#: Every scenario action, by name, in the order the docs list them. Everything looks an
#: action up here when it is used, so an entry added to this dict is an action everywhere.
ACTIONS: dict[str, Action] = {
    a.name: a
    for a in (
        Action(
            "set_diameter",
            "pump",
            "program the syringe's inner diameter; a `syringe` (library name) is resolved "
            "to its diameter before the run",
            _plan_diameter,
            _set_diameter,
            CommandKind.SET_DIAMETER,
            twin_valued=True,
            arguments=(
                Argument("diameter_mm", "mm", required=False, gt=0.0),
                Argument("syringe", required=False, type="text"),
            ),
            alternatives=("diameter_mm", "syringe"),
        ),
        Action(
            "set_rate",
            "pump",
            "set the rate, checked against the declared limits",
            _plan_rate,
            _set_rate,
            CommandKind.SET_RATE,
            twin_valued=True,
            arguments=(_RATE,),
        ),
        Action(
            "set_target",
            "pump",
            "volume after which the pump stops by itself (0: no target)",
            _plan_target,
            _set_target,
            CommandKind.SET_TARGET,
            twin_valued=True,
            arguments=(_VOLUME,),
        ),
        Action("start", "pump", "start infusing", _plan_start, _start, CommandKind.START),
        Action("stop", "pump", "stop infusing", _plan_stop, _stop, CommandKind.STOP),
        Action(
            "clear_alarms",
            "pump",
            "acknowledge the pump's alarms",
            _plan_plain,
            _clear_alarms,
            CommandKind.CLEAR_ALARMS,
        ),
        Action(
            "clear_volume",
            "pump",
            "reset the infused-volume counters",
            _plan_plain,
            _clear_volume,
            CommandKind.CLEAR_VOLUME,
        ),
        Action(
            "bolus",
            "pump",
            "stop, target `volume_ml`, bolus rate, start; back to the basal rate (and "
            "running, if it was) when the bolus is done",
            _plan_bolus,
            arguments=(Argument("volume_ml", "mL", gt=0.0), Argument("rate_ml_h", "mL/h", gt=0.0)),
        ),
        Action(
            "program",
            "pump",
            "run a Pumping Program (`phases`: RAT, INC, DEC, STP, JMP, LPS, LOP, LPE, PAS, "
            "BEP, OUT, EVN as the NE-1000 manual defines them), expanded before the run into "
            "the rate / start / stop commands of its phases",
            _plan_program,
            arguments=(Argument("phases", type="tables"),),
        ),
        Action(
            "occlude",
            "bench-io",
            "close the pinch valve downstream of the pump",
            _plan_plain,
            _occlude,
            CommandKind.OCCLUDE,
        ),
        Action(
            "release",
            "bench-io",
            "open the pinch valve",
            _plan_plain,
            _release,
            CommandKind.RELEASE,
        ),
        # The twin's net mass starts from its own settled reading when the balance is tared
        # or zeroed; the real balance's tare noise stays in the residual (see CHANNEL_KINDS
        # in medtwin.hil.twin).
        Action("tare", "balance", "tare the balance", _plan_plain, _tare, CommandKind.TARE),
        Action("zero", "balance", "zero the balance", _plan_plain, _zero, CommandKind.TARE),
        Action(
            "set_heart_rate",
            "simulator",
            "set the simulated patient's heart rate, checked against the simulator's "
            "declared limits",
            _plan_setting,
            _set_heart_rate,
            arguments=(Argument("heart_rate_bpm", "bpm", gt=0.0),),
            settings={"heart_rate_bpm": "heart_rate_bpm"},
        ),
        Action(
            "set_spo2",
            "simulator",
            "set the simulated patient's arterial oxygen saturation",
            _plan_setting,
            _set_spo2,
            arguments=(Argument("spo2_percent", "%", ge=0.0, le=100.0),),
            settings={"spo2_percent": "spo2_percent"},
        ),
        Action(
            "set_resp_rate",
            "simulator",
            "set the simulated patient's respiration rate",
            _plan_setting,
            _set_resp_rate,
            arguments=(Argument("resp_rate_min", "1/min", ge=0.0),),
            settings={"resp_rate_min": "resp_rate_min"},
        ),
        Action(
            "set_nibp",
            "simulator",
            "set the simulated non-invasive blood pressure (diastolic not above systolic)",
            _plan_setting,
            _set_nibp,
            arguments=(
                Argument("systolic_mmhg", "mmHg", ge=0.0),
                Argument("diastolic_mmhg", "mmHg", ge=0.0),
            ),
            settings={"systolic_mmhg": "nibp_sys_mmhg", "diastolic_mmhg": "nibp_dia_mmhg"},
        ),
        Action("mark", None, "write the step's `note` in the run's event log", _plan_plain),
    )
}


def unknown_action_message() -> str:
    """The error for an action word not in the table, listing the table's actions (worded
    as pydantic words a choice between literals, which the actions were before the table)."""
    quoted = [repr(n) for n in ACTIONS]
    if len(quoted) == 1:
        return f"Input should be {quoted[0]}"
    return f"Input should be {', '.join(quoted[:-1])} or {quoted[-1]}"
