"""The HIL loop end to end: emulated benches on real ptys, the virtual clock, the store.

Every run here moves real protocol bytes (NE-1000, MT-SICS, Modbus RTU) between our
drivers and our emulators on ptys; only the clock is virtual.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from medtwin.drivers.clock import VirtualClock
from medtwin.hil.cli import main
from medtwin.hil.config import BenchConfig, ScenarioConfig, load_bench, load_scenario
from medtwin.hil.packaged import bench_path, scenario_path
from medtwin.hil.runner import Runner
from medtwin.hil.store import RunStore
from medtwin.hil.twin import schedule_from_events, twin_params, twin_series


def _bench(
    write_toml: Callable[[Path, str, str], Path],
    tmp_path: Path,
    base: str,
    replace: tuple[str, str],
) -> BenchConfig:
    """The shipped bench ``base`` with one piece of text replaced."""
    text = bench_path(base).read_text(encoding="utf-8")
    assert replace[0] in text
    return load_bench(write_toml(tmp_path, "bench.toml", text.replace(*replace)))


def _flow(
    write_scenario: Callable[..., Path],
    tmp_path: Path,
    *,
    duration: str = "24h",
    rate_ml_h: float = 1.5,
) -> Path:
    """A constant-rate flow on the 50 mL syringe: 24 h at 1.5 mL/h (36 mL) by default."""
    return write_scenario(
        tmp_path,
        name="flow",
        duration=duration,
        sampling={"balance": "10s", "pump": "5min", "bench-io": "5min"},
        rate_ml_h=rate_ml_h,
    )


async def _run(
    bench: BenchConfig, scenario: ScenarioConfig, db: str, stop: asyncio.Event | None = None
):
    with RunStore(db) as store:
        runner = Runner(bench, scenario, store=store, clock=VirtualClock())
        async with asyncio.timeout(300):
            return await runner.run(stop)


@pytest.mark.slow
async def test_nominal_bench_has_no_false_drift_over_24_hours(
    tmp_path: Path, write_scenario: Callable[..., Path]
) -> None:
    # 24 h at 1.5 mL/h = 36 mL: the 50 mL syringe never runs empty
    db = f"sqlite:///{tmp_path / 'runs.db'}"
    result = await _run(
        load_bench(bench_path("emulated-nominal")),
        load_scenario(_flow(write_scenario, tmp_path)),
        db,
    )
    assert result.status == "completed"
    assert result.drift_events == []
    assert result.samples["balance"] == 8641
    with RunStore(db) as store:
        run = store.load_run(result.run_id)
    mass = run.channel("balance.mass_g")
    # 36 mL counted, less the drive travel that never reached the fluid (the backlash,
    # 0.2 mm, and the lag of the stopper's rim, which at 1.5 mL/h creeps below its
    # breakaway force: v·η/k = 0.750 µm/s × 7110/15.8 s = 0.338 mm; 0.538 mm × 555.3 mm²
    # = 0.299 mL) and what the line holds at 3 mmHg (C·P = 0.008 mL), at 0.99715 g/mL
    assert mass.values[-1] == pytest.approx((36.0 - 0.299 - 0.008) * 0.99715, abs=0.002)
    assert run.info.status == "completed"


@pytest.mark.slow
async def test_drift_bench_is_flagged_soon_after_onset(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'runs.db'}"
    result = await _run(
        load_bench(bench_path("emulated-drift")), load_scenario(scenario_path("iec-flow-5mlh")), db
    )
    assert result.status == "completed"
    flow = [e for e in result.drift_events if e.channel == "balance.flow_ml_h"]
    assert flow, result.drift_events
    first = min(flow, key=lambda e: e.detected_t_s)
    assert first.direction == "low"
    # The under-sized syringe is there from the start; delivery begins once the backlash
    # is taken up and the stopper breaks away (0.2 mm + 8.4 N / 15.8 N/mm = 0.732 mm at
    # 9.0 mm/h: ~293 s at 5 mL/h; the bound below was set when the backlash alone took
    # ~70 s, and it still holds). Bound: flagged within 10 minutes of that.
    assert first.detected_t_s <= 70.0 + 600.0
    assert first.magnitude_rel is not None
    assert -0.06 < first.magnitude_rel < -0.01
    mass = [e for e in result.drift_events if e.channel == "balance.mass_g"]
    assert mass
    assert mass[0].direction == "low"
    with RunStore(db) as store:
        run = store.load_run(result.run_id)
    stored = [e for e in run.events if e.kind == "drift"]
    assert len(stored) == len(result.drift_events)


@pytest.mark.slow
async def test_nominal_iec_run_stores_both_sides_and_replays(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'runs.db'}"
    bench = load_bench(bench_path("emulated-nominal"))
    result = await _run(bench, load_scenario(scenario_path("iec-flow-5mlh")), db)
    assert result.status == "completed"
    assert result.drift_events == []
    with RunStore(db) as store:
        run = store.load_run(result.run_id)
    real = run.channel("balance.mass_g", source="real")
    twin = run.channel("balance.mass_g", source="twin")
    np.testing.assert_array_equal(real.t_s, twin.t_s)
    assert real.t_s.size == 1441
    # second hour at 5 mL/h: about 5 g of water
    second_hour = np.interp(7200.0, real.t_s, real.values) - np.interp(
        3600.0, real.t_s, real.values
    )
    assert second_hour == pytest.approx(5.0 * 0.99715, rel=2e-3)
    # the stored commands replay into the same twin trajectory
    series = twin_series(twin_params(bench), schedule_from_events(run.events), twin.t_s)
    np.testing.assert_allclose(series["balance.mass_g"][0], twin.values, rtol=0, atol=1e-9)


@pytest.mark.slow
async def test_occlusion_scenario_raises_the_alarm_and_releases_a_bolus(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'runs.db'}"
    result = await _run(
        load_bench(bench_path("emulated-nominal")), load_scenario(scenario_path("occlusion")), db
    )
    assert result.status == "completed"
    assert result.drift_events == []
    with RunStore(db) as store:
        run = store.load_run(result.run_id)
    # The NE-1000 protocol has a single pressure alarm, the motor stall (A?S), which is how
    # the emulated pump reports its occlusion alarm.
    alarms = [e for e in run.events if e.kind == "alarm" and "raised" in e.message]
    assert alarms
    # The NE-1000 has no pressure sensor: the motor stalls at the force limit,
    # (150 N − 8 N stopper friction)/555.3 mm² = 1918 mmHg; C = 2.72 µL/mmHg at 5 mL/h:
    # ~62 min after the 10 min occlusion (a 500 mmHg threshold gave ~16 min).
    assert 600.0 + 3600.0 < alarms[0].t_s < 600.0 + 3900.0
    pressure = run.channel("bench-io.pressure_mmhg")
    assert np.nanmax(pressure.values) == pytest.approx(1918.0, abs=5.0)


@pytest.mark.slow
async def test_device_faults_end_degraded_never_hang(
    tmp_path: Path,
    write_toml: Callable[[Path, str, str], Path],
    write_scenario: Callable[..., Path],
) -> None:
    db = f"sqlite:///{tmp_path / 'runs.db'}"
    # The bench I/O module's port vanishes at 10 min of scenario time and comes back after
    # 0.5 s of wall time (a replugged USB adapter); meanwhile the run goes on, and the
    # device is retried with a backoff in scenario time until it answers again.
    bench = _bench(
        write_toml,
        tmp_path,
        "emulated-nominal",
        replace=(
            "options = { device_id = 2 }",
            'options = { device_id = 2 }\nfaults = ["disconnect:at=10min,for=0.5s"]\n'
            "retry = { timeout_s = 0.3, retries = 0, reconnects = 0 }",
        ),
    )
    scenario = load_scenario(
        write_scenario(
            tmp_path,
            name="short",
            duration="3h",
            sampling={"balance": "5s", "pump": "10s", "bench-io": "10s"},
            rate_ml_h=5.0,
            syringe=None,
        )
    )
    started = time.monotonic()
    result = await _run(bench, scenario, db)
    assert time.monotonic() - started < 120.0
    assert result.status == "degraded"
    assert result.lost == ["bench-io"]
    with RunStore(db) as store:
        run = store.load_run(result.run_id)
    kinds = [e.kind for e in run.events if e.device == "bench-io"]
    assert "lost" in kinds
    pressure = run.channel("bench-io.pressure_mmhg")
    assert np.isnan(pressure.values).any()  # the gap
    assert np.isfinite(pressure.values[-1])  # and it came back
    assert result.samples["balance"] == 2161  # the others carried on


def test_cli_run_json_document(tmp_path: Path, write_scenario: Callable[..., Path]) -> None:
    db = f"sqlite:///{tmp_path / 'runs.db'}"
    scenario = _flow(write_scenario, tmp_path, duration="20min")
    result = CliRunner().invoke(
        main, ["run", str(bench_path("emulated-nominal")), str(scenario), "--db", db, "--json"]
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["status"] == "completed"
    assert isinstance(doc["run_id"], int)
    assert doc["drift_events"] == []
    assert {"balance.mass_g", "balance.flow_ml_h", "bench-io.pressure_mmhg"} <= set(doc["channels"])
    assert doc["channels"]["balance.mass_g"]["n"] == 121


def test_cli_invalid_bench_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    bench = tmp_path / "bad.toml"
    bench.write_text(
        'name = "x"\n[[devices]]\nname = "p"\nkind = "pump"\nprotocol = "ne1000"\n',
        encoding="utf-8",
    )
    db = tmp_path / "runs.db"
    result = CliRunner().invoke(
        main, ["run", str(bench), str(scenario_path("iec-flow-5mlh")), "--db", f"sqlite:///{db}"]
    )
    assert result.exit_code == 2
    assert f"{bench}:devices[0].port: required field is missing" in result.output
    assert not db.exists()


@pytest.mark.parametrize(
    ("sampling", "rate_ml_h", "field", "message"),
    [
        ({"balance": "10s", "scale": "1s"}, 5.0, "sampling.scale", "no device 'scale'"),
        ({"balance": "10s"}, 5000.0, "steps[1].rate_ml_h", "outside pump's declared limits"),
    ],
    ids=["unknown-device", "rate-beyond-limits"],
)
def test_cli_scenario_the_bench_cannot_run_exits_2_and_creates_no_database(
    tmp_path: Path,
    write_scenario: Callable[..., Path],
    sampling: dict[str, str],
    rate_ml_h: float,
    field: str,
    message: str,
) -> None:
    scenario = write_scenario(
        tmp_path, name="bad", duration="1h", sampling=sampling, rate_ml_h=rate_ml_h
    )
    db = tmp_path / "runs.db"
    result = CliRunner().invoke(
        main, ["run", str(bench_path("emulated-nominal")), str(scenario), "--db", f"sqlite:///{db}"]
    )
    assert result.exit_code == 2, result.output
    assert f"{scenario}:{field}" in result.output
    assert message in result.output
    assert not db.exists()


@pytest.mark.parametrize(
    ("replace", "field", "message"),
    [
        (
            (
                '"pump.pressure_sensor" = false',
                '"pump.pressure_sensor" = false\n"pump.drive.nope" = 1',
            ),
            "twin.params",
            "unknown parameter 'pump.drive.nope'",
        ),
        (
            ('"BD Plastipak 50 mL"\nseed = 1', '"BD Plastipak 51 mL"\nseed = 1'),
            "emulation.truth",
            "unknown syringe 'BD Plastipak 51 mL'",
        ),
        (
            ("options = { address = 0 }", 'options = { address = 0 }\nfaults = ["explode:p=1"]'),
            "devices.pump.faults",
            "unknown fault kind 'explode'",
        ),
        (
            ("options = { device_id = 2 }", "options = { device_id = 2, parity_bits = 3 }"),
            "devices.bench-io.options",
            "does not take option(s) parity_bits",
        ),
        (
            (
                'port = "emulated"\nline = { baudrate = 9600 }',
                'port = "emulated"\nline = { baudrate = 9600, handshake = "dtr" }',
            ),
            "devices.balance.line.handshake",
            "handshake='dtr' is not valid; expected none, xonxoff, rtscts",
        ),
    ],
    ids=["twin-param", "truth-syringe", "device-fault", "driver-option", "handshake"],
)
def test_cli_bench_errors_found_at_start_exit_2_before_the_database_is_created(
    tmp_path: Path,
    write_toml: Callable[[Path, str, str], Path],
    replace: tuple[str, str],
    field: str,
    message: str,
) -> None:
    text = bench_path("emulated-nominal").read_text(encoding="utf-8")
    assert replace[0] in text
    bench = write_toml(tmp_path, "bench.toml", text.replace(*replace))
    db = tmp_path / "runs.db"
    result = CliRunner().invoke(
        main, ["run", str(bench), str(scenario_path("occlusion")), "--db", f"sqlite:///{db}"]
    )
    assert result.exit_code == 2, result.output
    assert f"{bench}:{field}" in result.output
    assert message in result.output
    assert not db.exists()


def test_cli_unreachable_port_names_device_and_port(
    tmp_path: Path, write_toml: Callable[[Path, str, str], Path]
) -> None:
    bench = _bench(
        write_toml,
        tmp_path,
        "emulated-nominal",
        replace=(
            'port = "emulated"\nline = { baudrate = 9600 }',
            'port = "/dev/ttyMEDTWIN404"\nline = { baudrate = 9600 }',
        ),
    )
    result = CliRunner().invoke(
        main,
        [
            "run",
            bench.source,
            str(scenario_path("iec-flow-5mlh")),
            "--db",
            f"sqlite:///{tmp_path / 'r.db'}",
        ],
    )
    assert result.exit_code == 3  # a runtime failure (ExitCode.RUNTIME), not a failed verdict
    assert "balance" in result.output
    assert "/dev/ttyMEDTWIN404" in result.output


@pytest.mark.slow
def test_sigint_stops_the_pump_and_closes_the_run_aborted(
    tmp_path: Path,
    wait_for_channel: Callable[[str, str, int], int],
    write_scenario: Callable[..., Path],
    run_process: Callable[..., subprocess.Popen[bytes]],
) -> None:
    db = f"sqlite:///{tmp_path / 'runs.db'}"
    scenario = _flow(write_scenario, tmp_path, duration="400h", rate_ml_h=0.1)
    proc = run_process(bench_path("emulated-nominal"), scenario, db)
    wait_for_channel(db, "balance.mass_g", 50)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err.decode()
    doc = json.loads(out)
    assert doc["status"] == "aborted"
    with RunStore(db) as store:
        run = store.load_run(doc["run_id"])
    assert run.info.status == "aborted"
    # the pump was stopped on the way out, before the run was closed
    assert any(e.message == "end of run (aborted): pump stopped" for e in run.events)
    assert len(run.channel("balance.mass_g").t_s) >= 50
