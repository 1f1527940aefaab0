"""What a scenario asks of a bench, checked before anything moves: the run's plan.

:func:`plan_steps` turns the scenario's steps and its procedures' steps into device commands
(:class:`~medtwin.hil.actions.PlannedStep`): each step's action is looked up in
:data:`medtwin.hil.actions.ACTIONS`, bound to the bench's device of the action's kind, and
planned by the entry (checked against the device's declared limits, a syringe name resolved
to its diameter, a bolus expanded). :class:`RunPlan` adds the sampling ticks, the
comparator's settings per channel and the procedures. Every error is a
:class:`~medtwin.drivers.errors.ConfigurationError` naming ``file:field``, raised before the
run store is opened, so a scenario the bench cannot run creates no database.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from medtwin.device_models.syringes import SyringeLibrary, default_library
from medtwin.drivers.errors import ConfigurationError
from medtwin.hil.actions import ACTIONS, PlanContext, PlannedStep, PlanState, StepArguments
from medtwin.hil.comparator import ChannelSpec
from medtwin.hil.config import BenchConfig, DeviceConfig, ScenarioConfig
from medtwin.hil.monitor_twin import channel_defs, declared_params
from medtwin.hil.patient_link import PatientPlan, plan_patient
from medtwin.hil.procedures import Procedure, parse_procedures
from medtwin.hil.rig import check_bench
from medtwin.hil.twin import twin_params

__all__ = ["PlannedStep", "RunPlan", "plan_steps"]


def _device_for(
    bench: BenchConfig, scenario: ScenarioConfig, where: str, step: StepArguments
) -> DeviceConfig | None:
    """The device a step addresses: the one it names, else the bench's device of the
    action's kind (None for an action that addresses none)."""
    kind = ACTIONS[step.action].kind
    if kind is None:
        return None
    name: str | None = getattr(step, "device", None)
    if name is None:
        cfg = bench.device_of_kind(kind)
        if cfg is None:
            raise ConfigurationError(
                f"action {step.action!r} needs a {kind}, and bench {bench.name!r} has none",
                source=scenario.source,
                field=f"{where}.action",
            )
        return cfg
    try:
        cfg = bench.device(name)
    except KeyError:
        raise ConfigurationError(
            f"no device {name!r} on bench {bench.name!r}",
            source=scenario.source,
            field=f"{where}.device",
        ) from None
    if cfg.kind != kind:
        raise ConfigurationError(
            f"action {step.action!r} needs a {kind}, but {name!r} is a {cfg.kind}",
            source=scenario.source,
            field=f"{where}.device",
        )
    return cfg


def plan_steps(
    bench: BenchConfig, scenario: ScenarioConfig, library: SyringeLibrary | None = None
) -> list[PlannedStep]:
    """Expand and check the scenario's steps against the bench.

    Raises
    ------
    ConfigurationError
        A step that names an unknown device, addresses a device of the wrong kind, or that
        the pump would refuse (outside its declared limits), naming the step.
    """
    library = library or default_library()
    labelled: list[tuple[str, StepArguments]] = [
        (f"steps[{i}]", step) for i, step in enumerate(scenario.steps)
    ]
    for procedure in parse_procedures(scenario.procedures, source=scenario.source):
        if procedure.end_s > scenario.duration + 1e-6:
            raise ConfigurationError(
                f"{procedure.kind} ends at {procedure.end_s:g} s, after the scenario "
                f"({scenario.duration:g} s); lengthen duration",
                source=scenario.source,
                field=procedure.label,
            )
        labelled += [(f"{procedure.label} ({procedure.kind})", step) for step in procedure.steps()]
    labelled.sort(key=lambda item: item[1].at)  # stable: same-time steps keep their order
    state = PlanState()  # one pump per bench: its basal rate and whether it runs
    planned: list[PlannedStep] = []
    for where, step in labelled:
        device = _device_for(bench, scenario, where, step)
        context = PlanContext(step, where, device, library, scenario.source, state)
        planned += ACTIONS[step.action].plan(context)
    planned.sort(key=lambda s: s.t_s)  # stable: same-time steps keep their order
    late = next((s for s in planned if s.t_s > scenario.duration), None)
    if late is not None:
        raise ConfigurationError(
            f"{late.label} ends after the scenario ({late.t_s:g} s > {scenario.duration:g} s)",
            source=scenario.source,
            field="duration",
        )
    return planned


def _sample_ticks(bench: BenchConfig, scenario: ScenarioConfig) -> dict[float, list[str]]:
    ticks: dict[float, list[str]] = defaultdict(list)
    for name, interval in scenario.sampling.items():
        try:
            bench.device(name)
        except KeyError:
            raise ConfigurationError(
                f"no device {name!r} on bench {bench.name!r}",
                source=scenario.source,
                field=f"sampling.{name}",
            ) from None
        count = math.floor(scenario.duration / interval + 1e-9)
        for k in range(count + 1):
            ticks[round(k * interval, 9)].append(name)
    return ticks


@dataclass(frozen=True)
class RunPlan:
    """What a scenario asks of a bench, checked against it without touching any device
    or the store: the planned steps (limits checked), the sampling ticks, each channel's
    comparator settings and the procedures.

    :meth:`of` raises :class:`~medtwin.drivers.errors.ConfigurationError` naming file:field for
    a scenario the bench cannot run, so a command can refuse it before it opens (or
    creates) a database.
    """

    steps: list[PlannedStep]
    ticks: dict[float, list[str]]
    specs: dict[str, ChannelSpec]
    procedures: list[Procedure]
    #: The scenario's ``[patient]`` checked against the bench (None without one).
    patient: PatientPlan | None = None

    @classmethod
    def of(cls, bench: BenchConfig, scenario: ScenarioConfig) -> RunPlan:
        # The bench alone first (emulated truth, faults, options, the twin's parameters):
        # the errors its start would raise after the store had been opened.
        check_bench(bench)
        twin_params(bench)
        for cfg in bench.devices:
            if cfg.kind == "oximeter":
                declared_params(bench, cfg)  # the monitor twin's
        patient = plan_patient(bench, scenario)
        return cls(
            steps=plan_steps(bench, scenario),
            ticks=_sample_ticks(bench, scenario),
            specs=_channel_specs(bench, scenario, patient),
            procedures=parse_procedures(scenario.procedures, source=scenario.source),
            patient=patient,
        )


def _channel_specs(
    bench: BenchConfig, scenario: ScenarioConfig, patient: PatientPlan | None = None
) -> dict[str, ChannelSpec]:
    specs: dict[str, ChannelSpec] = {}
    known: set[str] = set()
    channels: list[tuple[str, str, Mapping[str, Any]]] = [
        (f"{cfg.name}.{ch.quantity}", ch.unit, ch.defaults)
        for cfg in bench.devices
        for ch in channel_defs(cfg.kind)
    ]
    if patient is not None:  # the patient's channels are judged like any other
        channels += [(ch.name, ch.unit, ch.defaults) for ch in patient.channels]
    for name, unit, defaults in channels:
        known.add(name)
        options = {**defaults, **scenario.tolerances.get(name, {})}
        specs[name] = ChannelSpec.from_mapping(
            name, {"unit": unit, **options}, source=scenario.source
        )
    unknown = sorted(set(scenario.tolerances) - known)
    if unknown:
        raise ConfigurationError(
            f"no channel {unknown[0]!r} on this bench; channels are {', '.join(sorted(known))}",
            source=scenario.source,
            field=f"tolerances.{unknown[0]}",
        )
    return specs
