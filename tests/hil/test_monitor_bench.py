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
