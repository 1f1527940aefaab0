"""Bench and scenario files: the examples load, and every mistake names file:field."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from medtwin.drivers.errors import ConfigurationError
from medtwin.hil.config import bench_from_text, load_bench, load_scenario
from medtwin.hil.packaged import bench_path, scenario_path
from medtwin.hil.rig import check_bench
from medtwin.hil.runner import plan_steps

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize("name", ["emulated-nominal", "emulated-drift"])
def test_shipped_benches_load(name: str) -> None:
    bench = load_bench(bench_path(name))
    assert bench.all_emulated
    assert {d.kind for d in bench.devices} == {"pump", "balance", "bench-io"}
    assert bench.text
    assert len(bench.sha256) == 64
    # examples/ links to the same files
    assert (EXAMPLES / "benches" / f"{name}.toml").read_text() == bench.text


@pytest.mark.parametrize("name", ["iec-flow-5mlh", "occlusion"])
def test_shipped_scenarios_plan_on_the_nominal_bench(name: str) -> None:
    scenario = load_scenario(scenario_path(name))
    steps = plan_steps(load_bench(bench_path("emulated-nominal")), scenario)
    assert steps[0].t_s == 0.0
    assert all(s.t_s <= scenario.duration for s in steps)


BENCH = """
name = "b"
[[devices]]
name = "pump"
kind = "pump"
protocol = "ne1000"
port = "emulated"
limits = { max_rate_ml_h = 100.0, max_diameter_mm = 30.0, max_volume_ml = 50.0 }
[[devices]]
name = "balance"
kind = "balance"
protocol = "mt-sics"
port = "emulated"
"""


@pytest.mark.parametrize(
    ("text", "field", "message"),
    [
        (
            BENCH.replace('protocol = "ne1000"', 'protocol = "ne9999"'),
            "devices[0].protocol",
            "unknown protocol 'ne9999'",
        ),
        (
            BENCH.replace('kind = "balance"', 'kind = "pump"'),
            "devices[1]",
            "drives a balance, not a pump",
        ),
        (BENCH.replace('name = "balance"', 'name = "pump"'), "", "device names must be unique"),
        (
            BENCH + '\n[emulation]\npump = "peristaltic"\n',
            "emulation.pump",
            "Input should be 'syringe' or 'volumetric'",
        ),
        (
            BENCH.replace('port = "emulated"\nlimits', 'port = "emulated"\nbogus = 1\nlimits'),
            "devices[0].bogus",
            "unknown field",
        ),
        (
            BENCH.replace("max_rate_ml_h = 100.0", "max_rate_ml_h = -1"),
            "devices[0].limits.max_rate_ml_h",
            "greater than 0",
        ),
        ("name = ", "", "not valid TOML"),
    ],
)
def test_bench_errors_name_file_and_field(
    tmp_path: Path,
    text: str,
    field: str,
    message: str,
    write_toml: Callable[[Path, str, str], Path],
) -> None:
    path = write_toml(tmp_path, "bench.toml", text)
    with pytest.raises(ConfigurationError) as info:
        load_bench(path)
    assert str(path) in str(info.value)
    assert field in str(info.value)
    assert message in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="bench file not found"):
        load_bench(tmp_path / "nope.toml")


# -- line settings: one line table per device, checked against the protocol's descriptor ----


def test_line_table_and_the_older_baudrate_spelling_give_the_same_settings() -> None:
    table = bench_from_text(BENCH.replace('"mt-sics"', '"mt-sics"\nline = { baudrate = 9600 }'))
    alias = bench_from_text(BENCH.replace('"mt-sics"', '"mt-sics"\nbaudrate = 9600'))
    assert table.device("balance").line_settings() == {"baudrate": 9600}
    assert alias.device("balance").line_settings() == {"baudrate": 9600}
    check_bench(table)
    check_bench(alias)


@pytest.mark.parametrize(
    ("extra", "field", "message"),
    [
        ('line = { parit = "E" }', "devices[1].line.parit", "unknown field"),
        ("line = { baudrate = -1 }", "devices[1].line.baudrate", "greater than 0"),
        (
            "baudrate = 9600\nline = { baudrate = 9600 }",
            "devices[1]",
            "baudrate is given twice",
        ),
        ("pace = true", "devices[1]", "pace = true needs a baudrate"),
    ],
    ids=["unknown-setting", "bad-type", "twice", "pace"],
)
def test_line_errors_found_when_the_file_is_read(extra: str, field: str, message: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        bench_from_text(BENCH.replace('"mt-sics"', f'"mt-sics"\n{extra}'), source="b.toml")
    assert f"b.toml:{field}:" in str(info.value)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("device", "extra", "field", "message"),
    [
        (
            "balance",
            'line = { baudrate = 9600, parity = "X" }',
            "devices.balance.line.parity",
            "parity='X' is not valid; expected N, E, O, M or S",
        ),
        ("balance", "baudrate = 0", "devices[1].baudrate", "greater than 0"),
        (
            "pump",
            'line = { parity = "E" }',
            "devices.pump.line.parity",
            "protocol 'ne1000' fixes parity",
        ),
        (
            "balance",
            'options = { handshake = "xonxoff" }',
            "devices.balance.options",
            "handshake is a line setting: put it in the device's line table",
        ),
        (
            "pump",
            "options = { address = 100 }",
            "devices.pump.options.address",
            "less than or equal to 99 (got 100)",
        ),
        (
            "balance",
            "emulator_options = { stream_interval_s = 0 }",
            "devices.balance.emulator_options.stream_interval_s",
            "greater than 0",
        ),
        (
            "balance",
            "emulator_options = { address = 1 }",
            "devices.balance.emulator_options",
            "the 'mt-sics' emulator does not take option(s) address",
        ),
    ],
    ids=["parity", "alias", "fixed-by-protocol", "line-key-in-options", "option", "emu", "emu-x"],
)
def test_device_errors_name_the_device_before_any_port_opens(
    device: str, extra: str, field: str, message: str
) -> None:
    marker = '"ne1000"' if device == "pump" else '"mt-sics"'
    with pytest.raises(ConfigurationError) as info:
        check_bench(bench_from_text(BENCH.replace(marker, f"{marker}\n{extra}"), source="b.toml"))
    assert f"b.toml:{field}:" in str(info.value)
    assert message in str(info.value)


def test_device_kind_lives_with_the_descriptor_and_is_re_exported() -> None:
    from medtwin.drivers import protocol
    from medtwin.hil import config

    assert config.DeviceKind is protocol.DeviceKind


SCENARIO = """
name = "s"
duration = "1h"
[sampling]
balance = "5s"
[[steps]]
at = "0s"
action = "set_rate"
rate_ml_h = 5.0
[[steps]]
at = "0s"
action = "start"
"""


@pytest.mark.parametrize(
    ("text", "field", "message"),
    [
        (
            SCENARIO.replace('duration = "1h"', 'duration = "1 fortnight"'),
            "duration",
            "malformed duration",
        ),
        (
            SCENARIO.replace('action = "start"', 'action = "launch"'),
            "steps[1].action",
            "Input should be",
        ),
        (SCENARIO.replace("rate_ml_h = 5.0", ""), "steps[0]", "needs rate_ml_h"),
        (
            SCENARIO.replace('at = "0s"\naction = "start"', 'at = "2h"\naction = "start"'),
            "",
            "after the end",
        ),
    ],
)
def test_scenario_errors_name_file_and_field(
    tmp_path: Path,
    text: str,
    field: str,
    message: str,
    write_toml: Callable[[Path, str, str], Path],
) -> None:
    path = write_toml(tmp_path, "scenario.toml", text)
    with pytest.raises(ConfigurationError) as info:
        load_scenario(path)
    assert str(path) in str(info.value)
    assert field in str(info.value)
    assert message in str(info.value)


def test_a_step_outside_the_pump_limits_is_refused_before_the_run(
    tmp_path: Path, write_toml: Callable[[Path, str, str], Path]
) -> None:
    bench = load_bench(write_toml(tmp_path, "bench.toml", BENCH))
    scenario = load_scenario(
        write_toml(tmp_path, "s.toml", SCENARIO.replace("rate_ml_h = 5.0", "rate_ml_h = 250.0"))
    )
    with pytest.raises(ConfigurationError) as info:
        plan_steps(bench, scenario)
    text = str(info.value)
    assert "s.toml:steps[0].rate_ml_h" in text
    assert "250 mL/h is outside pump's declared limits [0, 100]" in text
    assert "the run was not started" in text


def test_bolus_expands_to_target_rate_and_back(
    tmp_path: Path, write_toml: Callable[[Path, str, str], Path]
) -> None:
    bench = load_bench(write_toml(tmp_path, "bench.toml", BENCH))
    text = (
        SCENARIO
        + '\n[[steps]]\nat = "10min"\naction = "bolus"\nvolume_ml = 1.0\nrate_ml_h = 60.0\n'
    )
    steps = plan_steps(bench, load_scenario(write_toml(tmp_path, "s.toml", text)))
    bolus = [(s.t_s, s.action, s.value) for s in steps if "bolus" in s.label]
    assert bolus[:4] == [
        (600.0, "stop", pytest.approx(float("nan"), nan_ok=True)),
        (600.0, "set_target", 1.0),
        (600.0, "set_rate", 60.0),
        (600.0, "start", pytest.approx(float("nan"), nan_ok=True)),
    ]
    end = 600.0 + 60.0 + 1.0
    assert [(s.t_s, s.action) for s in steps if "bolus" in s.label][4:] == [
        (end, "set_target"),
        (end, "set_rate"),
        (end, "start"),
    ]
    assert [s.value for s in steps if s.t_s == end and s.action == "set_rate"] == [5.0]


def test_step_for_a_device_the_bench_lacks(
    tmp_path: Path, write_toml: Callable[[Path, str, str], Path]
) -> None:
    bench = load_bench(write_toml(tmp_path, "bench.toml", BENCH))
    text = SCENARIO + '\n[[steps]]\nat = "1min"\naction = "occlude"\n'
    with pytest.raises(ConfigurationError, match="needs a bench-io, and bench 'b' has none"):
        plan_steps(bench, load_scenario(write_toml(tmp_path, "s.toml", text)))
