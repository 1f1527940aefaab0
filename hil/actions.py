"""The scenario action table: every action a scenario step (or a bench test) can take.

One :class:`Action` per action word, in :data:`ACTIONS`. An entry says everything the rest
of medtwin needs to know about the action:

* ``kind``: the device kind it addresses (``None`` for ``mark``, a note in the run's log);
* ``arguments`` and ``alternatives``: which fields of a ``[[steps]]`` entry it needs and
  the bounds beyond each field's own range; :meth:`Action.validate` is what
  :class:`medtwin.hil.config.Step` runs, so the scenario file's errors come from here;
* ``plan``: how the step becomes device commands before the run, checked against the
  device's declared limits (a ``set_diameter`` by syringe name resolved to its inner
  diameter, a ``bolus`` expanded to stop / target / rate / start and back, a ``program``
  expanded into the rate / start / stop commands of its phases);
* ``call``: the device call, an async function of the driver and the planned value;
* ``twin`` and ``twin_valued``: the model input recorded for the twin once the device
  acknowledged the command (``tare`` and ``zero`` both restart the twin's net mass).

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

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from medtwin.device_models.base import ParameterError
from medtwin.device_models.schedule import CommandKind
from medtwin.device_models.syringes import SyringeLibrary
from medtwin.drivers.base import Balance, BenchIO, InfusionPump
from medtwin.drivers.errors import ConfigurationError
from medtwin.drivers.ne1000.program import Phase, PhaseFunction, ProgramError, expand_program

if TYPE_CHECKING:
    # Type-only: medtwin.hil.config imports this module to validate steps.
    from medtwin.hil.config import DeviceConfig, DeviceKind

__all__ = [
    "ACTIONS",
    "Action",
    "Argument",
    "PlanContext",
    "PlanState",
    "PlannedStep",
    "StepArguments",
    "unknown_action_message",
]


class StepArguments(Protocol):
    """What an action reads from a step: its time, note and argument fields
    (:class:`medtwin.hil.config.Step`)."""

    @property
    def at(self) -> float: ...
    @property
    def action(self) -> str: ...
    @property
    def note(self) -> str: ...


@dataclass(frozen=True)
class Argument:
    """One field of a ``[[steps]]`` entry an action takes.

    ``name`` is the step's field (``rate_ml_h``, ``volume_ml`` ...), whose own range (e.g.
    ``rate_ml_h >= 0``) the step checks for every action; ``gt`` is a stricter lower bound
    this action needs (a bolus of 0 mL is no bolus).
    """

    name: str
    required: bool = True
    gt: float | None = None


@dataclass(frozen=True)
class PlannedStep:
    """A step as executed: one device command at ``t_s``.

    ``label`` names where it came from (``steps[3]`` or ``steps[3] (bolus)``); ``value`` is
    the argument the device call gets (NaN when the action takes none).
    """

    t_s: float
    action: str
    device: str | None
    value: float = math.nan
    note: str = ""
    label: str = ""


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
    ) -> PlannedStep:
        """A command of this step (by default the step's own action, at its time)."""
        return PlannedStep(
            self.step.at if t_s is None else t_s,
            action or self.step.action,
            self.device_name,
            value,
            note=note,
            label=self.where if label is None else label,
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
        value = getattr(self.step, name)
        assert value is not None, f"{self.step.action}: {name} was validated as given"
        return float(value)


DeviceCall = Callable[[Any, float], Awaitable[Any]]
Planner = Callable[[PlanContext], list[PlannedStep]]


@dataclass(frozen=True)
class Action:
    """One scenario action. A new entry gives:

    1. ``name``, the word scenario files use, and ``summary``, the line the docs show;
    2. ``kind``, the device kind it addresses (``None``: no device; the runner writes the
       step's note in the run's log);
    3. ``arguments`` (step fields, required or optional, with any stricter lower bound)
       and ``alternatives`` (of which at least one must be given); :meth:`validate`
       checks them for every step, with errors naming the step;
    4. ``plan(context)``, returning the device commands the step becomes; it checks the
       values against ``context.device.limits`` and raises ``context.refuse(...)``, before
       anything is sent. An action that only expands into other actions (``bolus``) has
       no ``call`` of its own;
    5. ``call(driver, value)``, the coroutine that sends one planned command to the driver
       of ``kind`` (:mod:`medtwin.drivers.base`) and returns what the device answered;
    6. ``twin`` (and ``twin_valued``: whether the value goes with it), the model input the
       twin records once the device acknowledged the command; ``None`` when the twin's
       model has no such input.
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

    def validate(self, step: Any) -> None:
        """Check that ``step`` carries this action's arguments.

        Raises
        ------
        ValueError
            Naming the missing or out-of-range argument (pydantic turns it into the
            scenario file's ``file:steps[i]`` error).
        """
        for arg in self.arguments:
            if arg.required and getattr(step, arg.name) is None:
                raise ValueError(f"action {self.name!r} needs {arg.name}")
        if self.alternatives and all(getattr(step, a) is None for a in self.alternatives):
            raise ValueError(f"action {self.name!r} needs {' or '.join(self.alternatives)}")
        for arg in self.arguments:
            value = getattr(step, arg.name)
            if arg.gt is not None and value is not None and not value > arg.gt:
                raise ValueError(f"action {self.name!r} needs {arg.name} > {arg.gt:g}")

    def twin_input(self, value: float | None) -> tuple[CommandKind, float] | None:
        """The twin's input for this action sent with ``value`` (None: the twin does not
        see it). Only the inputs that carry a value keep it; the others get NaN (a tare's
        NaN means "the twin's own settled reading now")."""
        if self.twin is None:
            return None
        if not self.twin_valued or value is None:
            return self.twin, math.nan
        return self.twin, float(value)


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
    diameter = getattr(ctx.step, "diameter_mm", None)
    if diameter is None:
        try:
            diameter = ctx.library.get(getattr(ctx.step, "syringe", None) or "").inner_diameter_mm
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
    for number, raw in enumerate(getattr(ctx.step, "phases", None) or [], 1):
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


# --------------------------------------------------------------------------- the table

_RATE = Argument("rate_ml_h")
_VOLUME = Argument("volume_ml")

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
                Argument("diameter_mm", required=False),
                Argument("syringe", required=False),
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
            arguments=(Argument("volume_ml", gt=0.0), Argument("rate_ml_h", gt=0.0)),
        ),
        Action(
            "program",
            "pump",
            "run a Pumping Program (`phases`: RAT, INC, DEC, STP, JMP, LPS, LOP, LPE, PAS, "
            "BEP, OUT, EVN as the NE-1000 manual defines them), expanded before the run into "
            "the rate / start / stop commands of its phases",
            _plan_program,
            arguments=(Argument("phases"),),
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
