"""Monitors and simulators on the bench: the simulator actions and their named arguments,
the oximeter and simulator kinds in bench files, the channels' MDC terms, and the monitor
twin, whose residual against a monitor that differs from the declared one is drift."""

from __future__ import annotations

import asyncio
import math
from typing import Any
from unittest import mock

import numpy as np
import pytest
from medtwin.device_models.monitor.params import monitor_preset
from medtwin.device_models.syringes import default_library
from medtwin.drivers.errors import ConfigurationError
from medtwin.drivers.nomenclature import metric, unit
from medtwin.drivers.vital_signs import PatientSimulator
from medtwin.hil.actions import ACTIONS, PlanContext, PlannedStep
from medtwin.hil.comparator import ChannelSpec, LiveComparator
from medtwin.hil.config import (
    DeviceConfig,
    LimitsConfig,
    bench_from_text,
    scenario_from_text,
)
from medtwin.hil.monitor_twin import (
    MONITOR_CHANNEL_KINDS,
    channel_defs,
    channel_tags,
    declared_params,
    default_preset,
    truth_params,
)

SIMULATOR_ACTIONS = ("set_heart_rate", "set_spo2", "set_resp_rate", "set_nibp")
SCENARIO = 'name = "s"\nduration = "10min"\n[sampling]\nsim = "1s"\n'


def _step(text: str) -> Any:
    return scenario_from_text(SCENARIO + '[[steps]]\nat = "0s"\n' + text, source="s.toml").steps[0]


def _simulator(**limits: Any) -> DeviceConfig:
    # Built without the protocol registry's check: the plan only reads name, kind and limits.
    return DeviceConfig.model_construct(
        name="sim",
        kind="simulator",
        protocol="prosim8",
        port="emulated",
        limits=LimitsConfig(**limits),
    )


def _plan(text: str, device: DeviceConfig) -> list[PlannedStep]:
    step = _step(text)
    context = PlanContext(step, "steps[0]", device, default_library(), "s.toml")
    return ACTIONS[step.action].plan(context)


# --------------------------------------------------------------------------- the table


def test_the_registry_has_one_entry_per_action_each_declaring_its_arguments() -> None:
    assert len(ACTIONS) == len({id(a) for a in ACTIONS.values()})
    for name in SIMULATOR_ACTIONS:
        entry = ACTIONS[name]
        assert entry.kind == "simulator"
        assert entry.arguments
        assert all(a.unit for a in entry.arguments)
        # every argument sets a simulator setting the monitor twin's patient follows
        assert set(entry.settings) == {a.name for a in entry.arguments}


@pytest.mark.parametrize(
    ("text", "arguments"),
    [
        ('action = "set_heart_rate"\nheart_rate_bpm = 120\n', {"heart_rate_bpm": 120.0}),
        ('action = "set_spo2"\nspo2_percent = 85.0\n', {"spo2_percent": 85.0}),
        ('action = "set_resp_rate"\nresp_rate_min = 20\n', {"resp_rate_min": 20.0}),
        (
            'action = "set_nibp"\nsystolic_mmhg = 140\ndiastolic_mmhg = 90\n',
            {"systolic_mmhg": 140.0, "diastolic_mmhg": 90.0},
        ),
    ],
)
def test_structured_arguments_are_planned_by_name(text: str, arguments: dict[str, float]) -> None:
    (planned,) = _plan(text, _simulator())
    assert dict(planned.arguments) == arguments
    assert planned.value == next(iter(arguments.values()))  # the main argument


def test_set_nibp_sends_both_pressures() -> None:
    (planned,) = _plan(
        'action = "set_nibp"\nsystolic_mmhg = 140\ndiastolic_mmhg = 90\n', _simulator()
    )
    sim = mock.create_autospec(PatientSimulator, instance=True)
    asyncio.run(ACTIONS["set_nibp"].send(sim, planned))
    sim.set_nibp.assert_awaited_once_with(140.0, 90.0)
    assert "systolic_mmhg=140 diastolic_mmhg=90" in planned.describe()


@pytest.mark.parametrize(
    ("text", "field", "message"),
    [
        ('action = "set_nibp"\nsystolic_mmhg = 120\n', "steps[0]", "needs diastolic_mmhg"),
        ('action = "set_spo2"\nspo2_percent = 101\n', "steps[0].spo2_percent", "<= 100"),
        ('action = "set_spo2"\nspo2_percent = "high"\n', "steps[0].spo2_percent", "a number"),
        ('action = "set_heart_rate"\nheart_rate = 60\n', "steps[0].heart_rate", "did you mean"),
        ('action = "set_heart_rate"\nheart_rate_bpm = 60\nspo2_percent = 90\n',
         "steps[0].spo2_percent", "unknown field"),
    ],
)  # fmt: skip
def test_arguments_are_validated_by_the_declaration(text: str, field: str, message: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        _step(text)
    assert info.value.field == field
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('action = "set_heart_rate"\nheart_rate_bpm = 250\n', "steps[0].heart_rate_bpm"),
        ('action = "set_spo2"\nspo2_percent = 60\n', "steps[0].spo2_percent"),
        (
            'action = "set_nibp"\nsystolic_mmhg = 80\ndiastolic_mmhg = 90\n',
            "steps[0].diastolic_mmhg",
        ),
    ],
)
def test_a_setting_outside_the_declared_limits_is_refused_before_the_run(
    text: str, field: str
) -> None:
    sim = _simulator(heart_rate_bpm=(30.0, 200.0), spo2_percent=(70.0, 100.0))
    with pytest.raises(ConfigurationError) as info:
        _plan(text, sim)
    assert info.value.field == field
    assert "the run was not started" in str(info.value)


def test_declared_simulator_limits_are_checked_and_passed_to_the_driver() -> None:
    limits = LimitsConfig(heart_rate_bpm=(30.0, 200.0))
    assert limits.simulator_limits().heart_rate_bpm == (30.0, 200.0)
    assert limits.simulator_limits().spo2_percent == (0.0, 100.0)  # the simulator's own
    with pytest.raises(ValueError, match="low 200 must not exceed high 30"):
        LimitsConfig(heart_rate_bpm=(200.0, 30.0))
    with pytest.raises(ValueError, match="wider than the simulator's range"):
        LimitsConfig(spo2_percent=(0.0, 120.0))


# --------------------------------------------------------------------------- bench files

BENCH = """name = "b"
[[devices]]
name = "masimo"
kind = "oximeter"
protocol = "masimo"
port = "emulated"
"""


def _needs_oximeter_protocols() -> None:
    from medtwin.drivers.registry import protocols

    if "masimo" not in protocols():
        pytest.skip("the masimo protocol is not registered in this checkout")


def _oximeter_params(text: str) -> None:
    bench = bench_from_text(text, source="b.toml")
    declared_params(bench, bench.devices[0])
    truth_params(bench, bench.devices[0])


@pytest.mark.parametrize(
    ("extra", "field", "message"),
    [
        ('kind = "monitor"\n', "devices[0].kind", "Input should be"),
        ('protocol = "masimo9"\n', "devices[0].protocol", "unknown protocol"),
        ('monitor = { preset = "acme" }\n', "devices.masimo.monitor", "unknown monitor preset"),
        ('truth = { "spo2.bias_percent" = 40.0 }\n', "devices.masimo.truth", "spo2.bias_percent"),
    ],
)
def test_oximeter_devices_are_validated(extra: str, field: str, message: str) -> None:
    _needs_oximeter_protocols()
    text = BENCH
    for key in ("kind", "protocol"):
        if extra.startswith(key):
            text = "\n".join(
                extra.strip() if line.startswith(key + " ") else line for line in text.splitlines()
            )
            extra = ""
    with pytest.raises(ConfigurationError) as info:
        _oximeter_params(text + extra)
    assert (info.value.field or "").startswith(field)
    assert message in str(info.value)


def test_monitor_and_truth_tables_belong_to_oximeters() -> None:
    text = BENCH.replace('kind = "oximeter"', 'kind = "oximeter"\nmonitor = { preset = "masimo" }')
    _needs_oximeter_protocols()
    bench = bench_from_text(text)
    assert declared_params(bench, bench.devices[0]) == monitor_preset("masimo")
    assert default_preset("nonin7") == "nonin"


# --------------------------------------------------------------------------- channels


def test_every_monitor_channel_carries_its_mdc_terms() -> None:
    spo2 = channel_tags("oximeter", "spo2_percent")
    assert spo2["metric"] == "MDC_PULS_OXIM_SAT_O2"
    assert spo2["metric_code"] == metric("MDC_PULS_OXIM_SAT_O2").code == 150456
    assert spo2["unit_code"] == unit("MDC_DIM_PERCENT").code
    assert channel_tags("oximeter", "pulse_rate_bpm")["metric"] == "MDC_PULS_OXIM_PULS_RATE"
    assert channel_tags("simulator", "nibp_sys_mmhg")["metric"] == "MDC_PRESS_BLD_NONINV_SYS"
    assert channel_tags("pump", "rate_ml_h")["metric"] == "MDC_FLOW_FLUID_PUMP"
    for kind in MONITOR_CHANNEL_KINDS:
        names = {c.quantity for c in channel_defs(kind)}
        assert names, kind
    assert {c.quantity for c in channel_defs("oximeter")} >= {
        "spo2_percent",
        "pulse_rate_bpm",
        "pi_percent",
        "link_errors",
    }


# --------------------------------------------------------------------------- the twin


def _residual_drift(truth_overrides: dict[str, Any]) -> dict[str, list[str]]:
    """A Masimo with ``truth_overrides`` watched beside its twin through an SpO2 staircase
    and HR steps; the drift events per channel."""
    pytest.importorskip("medtwin.drivers.emulators.patient_world")
    from medtwin.drivers.emulators.patient_world import PatientWorld
    from medtwin.hil.monitor_twin import MonitorTwin

    _needs_oximeter_protocols()
    monitor = "".join(f'"{k}" = {v!r}\n' for k, v in truth_overrides.items())
    bench = bench_from_text(BENCH + ("[devices.truth]\n" + monitor if monitor else ""))
    cfg = bench.devices[0]
    clock = [0.0]
    world = PatientWorld(lambda: clock[0], seed=bench.emulation.seed)
    real = world.oximeter(truth_params(bench, cfg), model="Rad-8", serial="masimo")
    twin = MonitorTwin(bench, t0_s=0.0)
    specs = {
        f"masimo.{c.quantity}": ChannelSpec.from_mapping(
            f"masimo.{c.quantity}", {"unit": c.unit, **c.defaults}
        )
        for c in channel_defs("oximeter")
    }
    comparator = LiveComparator(specs)
    # 80 -> 120 -> 40 -> 80 bpm every 60 s; SpO2 100 -> 70 in 5 % steps every 30 s, and back
    changes: dict[float, dict[str, float]] = {0.0: {"heart_rate_bpm": 80.0, "spo2_percent": 100.0}}
    for k, hr in enumerate((120.0, 40.0, 80.0)):
        changes.setdefault(60.0 * (k + 1), {})["heart_rate_bpm"] = hr
    levels = [95.0, 90.0, 85.0, 80.0, 75.0, 70.0, 80.0, 90.0, 100.0]
    for k, spo2 in enumerate(levels):
        changes.setdefault(240.0 + 30.0 * k, {})["spo2_percent"] = spo2
    events: dict[str, list[str]] = {}
    for step in range(540):
        t = float(step)
        clock[0] = t
        for name, value in changes.get(t, {}).items():
            getattr(world.simulator, f"set_{name}")(value)
            twin.command(t, {name: value})
        shown = real.snapshot()
        (predicted,) = twin.predict([("masimo", t)])
        for q, value in (
            ("spo2_percent", shown.spo2_percent),
            ("pulse_rate_bpm", shown.pulse_rate_bpm),
        ):
            r = math.nan if value is None else value
            w = predicted[q]
            if not (math.isfinite(r) and math.isfinite(w)):
                continue
            for e in comparator.update(f"masimo.{q}", np.array([t]), np.array([r]), np.array([w])):
                events.setdefault(e.channel, []).append(e.direction)
    return events


def test_the_nominal_monitor_matches_its_twin() -> None:
    assert _residual_drift({}) == {}


def test_a_low_range_spo2_bias_and_slower_hr_averaging_are_drift() -> None:
    events = _residual_drift({"spo2.low_range_bias_percent": 2.0, "hr.averaging_intervals": 24})
    assert events.get("masimo.spo2_percent")
    assert set(events["masimo.spo2_percent"]) == {"high"}  # the monitor reads high
    assert events.get("masimo.pulse_rate_bpm")


# --------------------------------------------------------------------------- runs

#: HR steps and an SpO2 drop below 90 %, short enough for two runs (not shipped).
SHORT = """name = "monitor-short"
duration = "150s"
[sampling]
prosim = "10s"
masimo = "2s"
nonin = "10s"
[[steps]]
at = "0s"
action = "set_spo2"
spo2_percent = 97.0
[[steps]]
at = "0s"
action = "set_heart_rate"
heart_rate_bpm = 80.0
[[steps]]
at = "30s"
action = "set_heart_rate"
heart_rate_bpm = 120.0
[[steps]]
at = "60s"
action = "set_heart_rate"
heart_rate_bpm = 40.0
[[steps]]
at = "90s"
action = "set_spo2"
spo2_percent = 80.0
"""


async def _run(bench_name: str, scenario_text: str, tmp_path: Any) -> tuple[Any, Any]:
    from medtwin.drivers.clock import VirtualClock
    from medtwin.hil.config import load_bench
    from medtwin.hil.packaged import bench_path
    from medtwin.hil.runner import Runner
    from medtwin.hil.store import RunStore

    _needs_oximeter_protocols()
    bench = load_bench(bench_path(bench_name))
    scenario = scenario_from_text(scenario_text, source="s.toml")
    with RunStore(f"sqlite:///{tmp_path / 'runs.db'}") as store:
        runner = Runner(bench, scenario, store=store, clock=VirtualClock())
        async with asyncio.timeout(300):
            result = await runner.run()
        return result, store.load_run(result.run_id)


@pytest.mark.slow
async def test_a_monitor_run_stores_real_and_twin_channels_with_their_mdc_terms(
    tmp_path: Any,
) -> None:
    from medtwin.hil.packaged import scenario_path

    text = scenario_path("monitor-hr-steps").read_text(encoding="utf-8")
    result, run = await _run("emulated-monitor", text, tmp_path)
    assert result.status == "completed"
    assert result.drift_events == []  # truth = twin
    for name in ("masimo.spo2_percent", "masimo.pulse_rate_bpm", "nonin.pulse_rate_bpm"):
        real = run.channel(name, source="real")
        twin = run.channel(name, source="twin")
        assert real.t_s.size > 20
        np.testing.assert_array_equal(real.t_s, twin.t_s)
    # the simulator's channels are the settings it acknowledged: 120 bpm from 1 min to 2 min
    hr = run.channel("prosim.heart_rate_bpm", source="real")
    assert set(hr.values[(hr.t_s > 60) & (hr.t_s < 120)]) == {120.0}
    masimo_hr = run.channel("masimo.pulse_rate_bpm", source="real")
    assert masimo_hr.values[(masimo_hr.t_s > 100) & (masimo_hr.t_s < 120)].mean() == pytest.approx(
        120.0, abs=3.0
    )
    devices = {d.name: d for d in run.devices}
    tags = devices["masimo"].identity["mdc"]
    assert tags["masimo.spo2_percent"]["metric_code"] == 150456
    assert tags["masimo.pulse_rate_bpm"]["metric"] == "MDC_PULS_OXIM_PULS_RATE"
    assert devices["prosim"].identity["mdc"]["prosim.heart_rate_bpm"]["unit"] == (
        "MDC_DIM_BEAT_PER_MIN"
    )


@pytest.mark.slow
async def test_the_drift_bench_shows_drift_on_the_masimo_and_the_nominal_one_does_not(
    tmp_path: Any,
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    nominal, _ = await _run("emulated-monitor", SHORT, tmp_path / "a")
    assert nominal.drift_events == []
    drift, _ = await _run("emulated-monitor-drift", SHORT, tmp_path / "b")
    channels = {e.channel for e in drift.drift_events}
    assert channels == {"masimo.spo2_percent", "masimo.pulse_rate_bpm"}
    spo2 = [e for e in drift.drift_events if e.channel == "masimo.spo2_percent"]
    assert all(e.direction == "high" and e.onset_t_s > 90 for e in spo2)


def test_a_simulator_step_outside_its_declared_limits_exits_2_and_writes_nothing(
    tmp_path: Any,
) -> None:
    from click.testing import CliRunner
    from medtwin.hil.cli import main
    from medtwin.hil.packaged import bench_path

    _needs_oximeter_protocols()
    scenario = tmp_path / "s.toml"
    scenario.write_text(SHORT.replace("heart_rate_bpm = 120.0", "heart_rate_bpm = 300.0"))
    db = tmp_path / "runs.db"
    out = CliRunner().invoke(
        main, ["run", str(bench_path("emulated-monitor")), str(scenario), "--db", f"sqlite:///{db}"]
    )
    assert out.exit_code == 2, out.output
    assert "steps[2].heart_rate_bpm" in out.output
    assert not db.exists()
