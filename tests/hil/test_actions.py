"""The scenario action table: one entry per action, read by every path that takes one.

The entries are checked against themselves (device call, device kind and twin input agree),
against the docs (the action list in docs/benches-and-scenarios.md is rendered from the
table), and end to end: an action added to the table is validated, planned, sent, mirrored
to the twin and replayed by the runner and by the pytest plug-in alike, with no other edit.
"""

from __future__ import annotations

import asyncio
import math
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal
from unittest import mock

import pydantic
import pytest
from medtwin.device_models.schedule import CommandKind
from medtwin.device_models.syringes import default_library
from medtwin.drivers.base import Balance, BenchIO, Device, InfusionPump
from medtwin.drivers.clock import VirtualClock
from medtwin.drivers.errors import ConfigurationError
from medtwin.drivers.vital_signs import PatientSimulator
from medtwin.fixtures.bench import HilBench
from medtwin.fixtures.devices import DeviceCall
from medtwin.fixtures.options import HilOptions
from medtwin.hil.actions import ACTIONS, Action, PlanContext, PlannedStep
from medtwin.hil.config import load_bench, load_scenario, scenario_from_text
from medtwin.hil.packaged import bench_path
from medtwin.hil.runner import Runner, plan_steps
from medtwin.hil.store import RunStore
from medtwin.hil.twin import schedule_from_events

DOCS = Path(__file__).resolve().parents[2] / "docs" / "benches-and-scenarios.md"

#: The driver interface each device kind's actions are sent to.
DRIVER_OF_KIND: dict[str, type[Device]] = {
    "pump": InfusionPump,
    "balance": Balance,
    "bench-io": BenchIO,
    "simulator": PatientSimulator,
}

#: What each action does to its driver: method, arguments, for a planned value of 2.5.
EXPECTED_CALLS: dict[str, tuple[str, tuple[Any, ...]]] = {
    "set_diameter": ("set_syringe_diameter", (2.5,)),
    "set_rate": ("set_rate", (2.5,)),
    "set_target": ("set_volume_target", (2.5,)),
    "start": ("start", ()),
    "stop": ("stop", ()),
    "clear_alarms": ("clear_alarms", ()),
    "clear_volume": ("clear_volume", ()),
    "occlude": ("set_occluded", (True,)),
    "release": ("set_occluded", (False,)),
    "tare": ("tare", ()),
    "zero": ("zero", ()),
    "set_heart_rate": ("set_heart_rate", (2.5,)),
    "set_spo2": ("set_spo2", (2.5,)),
    "set_resp_rate": ("set_resp_rate", (2.5,)),
    "set_nibp": ("set_nibp", (2.5, 1.5)),
}

#: The named arguments of each action's planned step (the main value 2.5 first).
ARGUMENTS: dict[str, dict[str, float]] = {"set_nibp": {"systolic_mmhg": 2.5, "diastolic_mmhg": 1.5}}


# --------------------------------------------------------------------------- the entries


def test_every_entry_is_keyed_by_its_name_and_addresses_a_known_kind() -> None:
    for name, entry in ACTIONS.items():
        assert entry.name == name
        assert entry.kind is None or entry.kind in DRIVER_OF_KIND
        assert entry.summary


@pytest.mark.parametrize("name", list(ACTIONS))
def test_device_call_and_twin_input_are_consistent(name: str) -> None:
    entry = ACTIONS[name]
    if entry.kind is None:  # mark: a note, no device, nothing for the twin
        assert entry.call is None
        assert entry.twin is None
        return
    if entry.call is None:  # bolus: planned into other actions, each with its own call
        assert entry.twin is None
        if name == "program":  # a one-phase program: rate and volume as a phase
            planned = _plan_text(
                entry, 'phases = [{function = "RAT", rate_ml_h = 60.0, volume_ml = 1.0}]\n'
            )
        else:
            planned = _plan(entry, volume_ml=1.0, rate_ml_h=60.0)
        assert {p.action for p in planned} <= {n for n, a in ACTIONS.items() if a.call}
        return
    # The call takes the driver of the action's kind (its annotation says so) ...
    hints = typing.get_type_hints(entry.call)
    first = next(iter(hints.values()))
    assert first is DRIVER_OF_KIND[entry.kind]
    # ... and calls the one method expected of it, with the planned value.
    driver = mock.create_autospec(DRIVER_OF_KIND[entry.kind], instance=True)
    arguments = ARGUMENTS.get(name, {entry.main: 2.5} if entry.main else {})
    step = PlannedStep(0.0, name, "d", 2.5 if entry.main else math.nan, arguments=arguments)
    asyncio.run(entry.send(driver, step))
    method, args = EXPECTED_CALLS[name]
    getattr(driver, method).assert_awaited_once_with(*args)
    if entry.kind == "simulator":  # the monitor twin's patient follows the settings
        assert entry.twin is None
        assert set(entry.settings) == {a.name for a in entry.arguments}
        assert entry.settings_input(arguments) == {
            entry.settings[k]: v for k, v in arguments.items()
        }
        return
    # Every action the device sees changes the twin's input, named after it (tare and zero
    # both restart the twin's net mass).
    assert entry.twin is not None
    assert entry.twin == (CommandKind.TARE if name == "zero" else CommandKind(name))
    kind, value = entry.twin_input(2.5) or (None, math.nan)
    assert kind is entry.twin
    assert (value == 2.5) if entry.twin_valued else math.isnan(value)
    # A value stored as null (JSON has no NaN) replays as no value.
    assert math.isnan((entry.twin_input(None) or (None, 0.0))[1])


def test_set_target_zero_means_no_target() -> None:
    call = ACTIONS["set_target"].call
    assert call is not None
    for value in (0.0, math.nan):
        pump = mock.create_autospec(InfusionPump, instance=True)
        asyncio.run(call(pump, value))
        pump.set_volume_target.assert_awaited_once_with(None)


def _plan(entry: Action, **arguments: Any) -> list[PlannedStep]:
    text = "".join(f"{k} = {v!r}\n" for k, v in arguments.items()).replace("'", '"')
    return _plan_text(entry, text)


def _plan_text(entry: Action, arguments: str) -> list[PlannedStep]:
    bench = load_bench(bench_path("emulated-nominal"))
    step = scenario_from_text(
        'name = "s"\nduration = "1h"\n[sampling]\npump = "10s"\n[[steps]]\nat = "0s"\n'
        f'action = "{entry.name}"\n' + arguments
    ).steps[0]
    device = bench.device_of_kind(entry.kind) if entry.kind else None
    return entry.plan(PlanContext(step, "steps[0]", device, default_library(), "s.toml"))


# --------------------------------------------------------------------------- validation

SCENARIO = 'name = "s"\nduration = "1h"\n[sampling]\nbalance = "5s"\n'


def _step(text: str) -> str:
    return SCENARIO + '[[steps]]\nat = "0s"\n' + text


def test_an_unknown_action_is_refused_as_a_choice_of_the_table() -> None:
    # The same error as when the actions were a Literal type: pydantic's own wording.
    class Old(pydantic.BaseModel):
        action: Literal[tuple(ACTIONS)]  # type: ignore[valid-type]

    with pytest.raises(pydantic.ValidationError) as literal:
        Old(action="launch")
    expected = literal.value.errors()[0]["msg"]
    for value in ('"launch"', "5"):
        with pytest.raises(ConfigurationError) as info:
            scenario_from_text(_step(f"action = {value}\n"), source="s.toml")
        assert str(info.value) == f"s.toml:steps[0].action: {expected}"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('action = "set_rate"\n', "action 'set_rate' needs rate_ml_h"),
        ('action = "set_target"\n', "action 'set_target' needs volume_ml"),
        ('action = "set_diameter"\n', "action 'set_diameter' needs diameter_mm or syringe"),
        ('action = "bolus"\nrate_ml_h = 60.0\n', "action 'bolus' needs volume_ml"),
        ('action = "bolus"\nvolume_ml = 0.0\nrate_ml_h = 60.0\n', "needs volume_ml > 0"),
        ('action = "bolus"\nvolume_ml = 1.0\nrate_ml_h = 0.0\n', "needs rate_ml_h > 0"),
        ('action = "set_rate"\nrate_ml_h = -1.0\n', "needs rate_ml_h >= 0 (got -1)"),
        ('action = "start"\nrate_ml_h = 1.0\n', "action 'start' takes no arguments"),
        ('action = "set_rate"\nrate_mlh = 1.0\n', "did you mean 'rate_ml_h'?"),
    ],
)
def test_arguments_are_checked_by_the_entry(text: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=r"s.toml:steps\[0\]") as info:
        scenario_from_text(_step(text), source="s.toml")
    assert message in str(info.value)


def test_a_syringe_name_is_planned_to_its_diameter_and_checked_against_the_limits() -> None:
    (planned,) = _plan(ACTIONS["set_diameter"], syringe="BD Plastipak 50 mL")
    assert planned.action == "set_diameter"
    assert 20 < planned.value < 40
    with pytest.raises(ConfigurationError, match=r"s.toml:steps\[0\].syringe"):
        _plan(ACTIONS["set_diameter"], syringe="no such syringe")


# --------------------------------------------------------------------------- the docs


def _docs_table() -> str:
    """The action list of docs/benches-and-scenarios.md, rendered from the table."""

    def arguments(entry: Action) -> str:
        parts = []
        if entry.alternatives:
            parts.append(" or ".join(f"`{a}`" for a in entry.alternatives))
        for arg in entry.arguments:
            if arg.name in entry.alternatives:
                continue
            parts.append(arg.describe() + ("" if arg.required else " (optional)"))
        return ", ".join(parts)

    rows = ["| action | device | arguments | what it does |", "|---|---|---|---|"]
    for entry in ACTIONS.values():
        rows.append(
            f"| `{entry.name}` | {entry.kind or '–'} | {arguments(entry)} | {entry.summary} |"
        )
    return "\n".join(rows)


def test_the_docs_list_every_action_as_the_table_has_it() -> None:
    expected = _docs_table()
    text = DOCS.read_text(encoding="utf-8")
    assert expected in text, (
        "docs/benches-and-scenarios.md does not list the actions as medtwin.hil.actions has "
        "them; replace its action table with:\n\n" + expected
    )


# --------------------------------------------------------------------------- one table


async def _pause(pump: InfusionPump, value: float) -> None:
    await pump.stop()


@pytest.fixture
def pause(monkeypatch: pytest.MonkeyPatch) -> Action:
    """A new action, ``pause``, added to the table as a plug-in would: nothing else knows it."""
    entry = Action(
        "pause",
        "pump",
        "stop infusing for a while",
        lambda ctx: [ctx.planned(note=ctx.step.note)],
        _pause,
        CommandKind.STOP,
    )
    monkeypatch.setitem(ACTIONS, "pause", entry)
    return entry


async def test_an_action_added_to_the_table_runs_in_a_scenario(
    pause: Action, tmp_path: Path, write_toml: Callable[[Path, str, str], Path]
) -> None:
    bench = load_bench(bench_path("emulated-nominal"))
    scenario = load_scenario(
        write_toml(
            tmp_path,
            "pause.toml",
            'name = "pause"\nduration = "2min"\n[sampling]\npump = "10s"\n'
            '[[steps]]\nat = "0s"\naction = "set_rate"\nrate_ml_h = 10.0\n'
            '[[steps]]\nat = "0s"\naction = "start"\n'
            '[[steps]]\nat = "1min"\naction = "pause"\n',
        )
    )
    assert [s.action for s in plan_steps(bench, scenario)] == ["set_rate", "start", "pause"]
    with RunStore(f"sqlite:///{tmp_path / 'runs.db'}") as store:
        runner = Runner(bench, scenario, store=store, clock=VirtualClock())
        async with asyncio.timeout(120):
            result = await runner.run()
        assert result.status == "completed"
        run = store.load_run(result.run_id)
    commands = [e for e in run.events if e.kind == "command"]
    assert [e.data["action"] for e in commands] == ["set_rate", "start", "pause"]
    # The pump stopped, the twin with it, and the stored run replays the same input.
    assert runner.twin is not None
    assert [c.kind for c in runner.twin.schedule][-1] is CommandKind.STOP
    infused = run.channel("pump.infused_ml", source="real")
    assert infused.values[-1] == pytest.approx(infused.values[6], abs=1e-3)  # still after 60 s
    schedule = schedule_from_events(run.events)
    assert [c.kind for c in schedule] == [CommandKind.SET_RATE, CommandKind.START, pause.twin]


def test_an_action_added_to_the_table_runs_from_a_bench_test(pause: Action, tmp_path: Path) -> None:
    path = bench_path("emulated-nominal")
    options = HilOptions(bench_path=path, bench=load_bench(path), db_url=None, clock="virtual")
    bench = HilBench(options, db_url=f"sqlite:///{tmp_path / 'runs.db'}", temporary_store=True)
    calls: list[DeviceCall] = []

    class Log:
        def device_call(self, call: DeviceCall) -> None:
            calls.append(call)

    try:
        bench.start()
        pump = bench.device("pump", log=Log())

        async def session() -> bool:
            await pump.act("set_rate", rate_ml_h=10.0)
            await pump.act("start")
            await bench.wait("1min")
            await pump.act("pause", note="the same entry as the runner's")
            running: bool = (await pump.read_status()).running
            return running

        assert asyncio.run(session()) is False
        assert [c.kind for c in bench.twin.schedule] == [
            CommandKind.SET_RATE,
            CommandKind.START,
            CommandKind.STOP,
        ]
        assert [c.action for c in calls if c.kind == "command"] == ["set_rate", "start", "pause"]
        # A bench test's action is refused as a scenario step's would be.
        with pytest.raises(ConfigurationError, match=r"pump.act\(\):rate_ml_h: rate 5000"):
            asyncio.run(pump.act("set_rate", rate_ml_h=5000.0))
        with pytest.raises(ConfigurationError, match="needs a bench-io, but 'pump' is a pump"):
            asyncio.run(pump.act("occlude"))
        with pytest.raises(ConfigurationError, match=r"pump.act\(\):action: Input should be"):
            asyncio.run(pump.act("launch"))
        with pytest.raises(ConfigurationError, match="spans time"):
            asyncio.run(pump.act("bolus", volume_ml=1.0, rate_ml_h=60.0))
    finally:
        bench.close()


def test_a_bench_test_sends_every_named_argument_of_an_action(tmp_path: Path) -> None:
    # set_nibp takes two arguments: a bench test's act() sends both, as a scenario step does.
    path = bench_path("emulated-monitor")
    options = HilOptions(bench_path=path, bench=load_bench(path), db_url=None, clock="virtual")
    bench = HilBench(options, db_url=f"sqlite:///{tmp_path / 'runs.db'}", temporary_store=True)
    calls: list[DeviceCall] = []

    class Log:
        def device_call(self, call: DeviceCall) -> None:
            calls.append(call)

    try:
        bench.start()
        prosim = bench.device("prosim", log=Log())

        async def session() -> None:
            await prosim.act("set_nibp", systolic_mmhg=140.0, diastolic_mmhg=90.0)
            await prosim.act("set_heart_rate", heart_rate_bpm=120.0)

        asyncio.run(session())
        assert [c.action for c in calls if c.kind == "command"] == ["set_nibp", "set_heart_rate"]
        settings = bench.rig.physical.simulator.settings()
        assert (settings.nibp_sys_mmhg, settings.nibp_dia_mmhg) == (140.0, 90.0)
        assert settings.heart_rate_bpm == 120.0
    finally:
        bench.close()
