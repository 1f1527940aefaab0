"""The ``program`` scenario action: an NE-1000 Pumping Program (phases with loops, jumps,
INC/DEC and timed pauses) expanded before the run into the rate / start / stop commands of
its phases, which the pump receives and the twin records alike."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import pytest
from medtwin.device_models.schedule import CommandKind
from medtwin.device_models.syringes import default_library
from medtwin.drivers.clock import VirtualClock
from medtwin.drivers.errors import ConfigurationError
from medtwin.drivers.ne1000.program import Phase, PhaseFunction, expand_program
from medtwin.hil.actions import ACTIONS, PlanContext, PlannedStep
from medtwin.hil.config import load_bench, scenario_from_text
from medtwin.hil.packaged import bench_path
from medtwin.hil.runner import Runner
from medtwin.hil.store import RunStore

PROGRAM = """phases = [
  {function = "RAT", rate_ml_h = 60.0, volume_ml = 0.5},
  {function = "LPS"},
  {function = "PAS", argument = 10},
  {function = "INC", rate_ml_h = 60.0, volume_ml = 0.5},
  {function = "LOP", argument = 1},
  {function = "STP"},
]
"""


def _plan(phases_toml: str, at: str = "60s") -> list[PlannedStep]:
    bench = load_bench(bench_path("emulated-nominal"))
    scenario = scenario_from_text(
        'name = "s"\nduration = "1h"\n[sampling]\npump = "10s"\n[[steps]]\n'
        f'at = "{at}"\naction = "program"\nnote = "ramp"\n' + phases_toml
    )
    step = scenario.steps[0]
    device = bench.device_of_kind("pump")
    return ACTIONS["program"].plan(
        PlanContext(step, "steps[0]", device, default_library(), "s.toml")
    )


def test_a_program_becomes_the_commands_of_its_phases() -> None:
    planned = _plan(PROGRAM)
    assert [(p.t_s, p.action, p.value) for p in planned] == [
        (60.0, "set_target", 0.0),
        (60.0, "set_rate", 60.0),
        (60.0, "start", pytest.approx(math.nan, nan_ok=True)),
        (90.0, "stop", pytest.approx(math.nan, nan_ok=True)),  # PAS 10
        (100.0, "set_rate", 120.0),  # INC: 60 + 60 mL/h for 0.5 mL
        (100.0, "start", pytest.approx(math.nan, nan_ok=True)),
        (115.0, "stop", pytest.approx(math.nan, nan_ok=True)),  # the loop: PAS again
        (125.0, "set_rate", 180.0),
        (125.0, "start", pytest.approx(math.nan, nan_ok=True)),
        (135.0, "stop", pytest.approx(math.nan, nan_ok=True)),  # STP: the program ends
    ]
    assert {p.label for p in planned} == {"steps[0] (program)"}
    assert planned[0].note == "ramp"
    # What the twin records: the same rate schedule as the emulated pump's program run.
    rate, t_rate = 0.0, []
    for p in planned:
        twin = ACTIONS[p.action].twin_input(p.value)
        assert twin is not None
        if twin[0] is CommandKind.SET_RATE:
            rate = twin[1]
        elif twin[0] is CommandKind.START:
            t_rate.append((p.t_s, rate))
        elif twin[0] is CommandKind.STOP:
            t_rate.append((p.t_s, 0.0))
    segments = expand_program(
        [
            Phase(PhaseFunction.RATE, 60.0, 0.5),
            Phase(PhaseFunction.LOOP_START),
            Phase(PhaseFunction.PAUSE, argument=10),
            Phase(PhaseFunction.INCREMENT, 60.0, 0.5),
            Phase(PhaseFunction.LOOP, argument=1),
            Phase(PhaseFunction.STOP),
        ]
    )
    t = 60.0
    expected = []
    for segment in segments:
        expected.append((t, segment.rate_ml_h))
        t += segment.duration_s
    assert t_rate == expected


@pytest.mark.parametrize(
    ("phases", "message"),
    [
        (
            'phases = [{function = "RAT", rate_ml_h = 5000.0, volume_ml = 1.0}]\n',
            "steps[0].rate_ml_h",
        ),
        (
            'phases = [{function = "RAT", rate_ml_h = 5.0, direction = "withdraw"}]\n',
            "infusion phases only",
        ),
        ('phases = [{function = "JMP", argument = 1}]\n', "without pumping"),
        ('phases = [{function = "XYZ"}]\n', "steps[0].phases[0]"),
        ('phases = [{function = "RAT", speed = 3}]\n', "unknown key"),
        ('phases = [{function = "LOP", argument = 0}]\n', "LOP argument 0 outside 1-99"),
    ],
)
def test_a_program_the_pump_would_refuse_stops_the_plan(phases: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message.replace("[", r"\[").replace("]", r"\]")):
        _plan(phases)


def test_a_program_step_needs_its_phases() -> None:
    with pytest.raises(ConfigurationError, match="needs phases"):
        scenario_from_text(
            'name = "s"\nduration = "1h"\n[sampling]\npump = "10s"\n[[steps]]\n'
            'at = "0s"\naction = "program"\n'
        )


@pytest.mark.slow
async def test_a_program_step_runs_on_the_emulated_bench_and_the_twin_follows(
    tmp_path: Path,
) -> None:
    # The runner sends the expanded commands to the emulated NE-1000; the twin records
    # exactly what the pump acknowledged, so the two agree with no drift, and the pump's
    # counter holds the program's volume (0.5 + 2 × 0.5 mL).
    scenario = scenario_from_text(
        'name = "program"\nduration = "10min"\n[sampling]\npump = "5s"\nbalance = "5s"\n'
        '[[steps]]\nat = "0s"\naction = "tare"\n'
        '[[steps]]\nat = "30s"\naction = "set_diameter"\nsyringe = "BD Plastipak 50 mL"\n'
        '[[steps]]\nat = "60s"\naction = "program"\n' + PROGRAM
    )
    db = f"sqlite:///{tmp_path / 'runs.db'}"
    with RunStore(db) as store:
        runner = Runner(
            load_bench(bench_path("emulated-nominal")), scenario, store=store, clock=VirtualClock()
        )
        async with asyncio.timeout(300):
            result = await runner.run()
    assert result.status == "completed"
    assert result.drift_events == []
    with RunStore(db) as store:
        run = store.load_run(result.run_id)
    commands = [e for e in run.events if e.kind == "command" and "(program)" in e.message]
    assert [e.data["action"] for e in commands] == [
        "set_target",
        "set_rate",
        "start",
        "stop",
        "set_rate",
        "start",
        "stop",
        "set_rate",
        "start",
        "stop",
    ]
    assert [round(e.t_s) for e in commands][-1] == 135
    infused = run.channel("pump.infused_ml")
    assert infused.values[-1] == pytest.approx(1.5, abs=2e-3)
