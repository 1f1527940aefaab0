"""One exit-status table for every ``medtwin`` command (:class:`medtwin.hil.cli.ExitCode`).

0 success (``run``: no verdict of the real device failed), 1 a verdict failed (``--fail-on``
chooses what fails a run), 2 bad input, 3 a runtime failure, 130 interrupted; ``demo``
exits 0 when it ran as intended. Each test runs the real command through click's CliRunner.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from medtwin.drivers.errors import (
    AnalysisError,
    CommandRefused,
    ConfigurationError,
    DeviceAlarm,
    DeviceTimeout,
    MedtwinError,
    PortError,
    ProtocolError,
    RunNotFound,
    StorageError,
)
from medtwin.hil.cli import ExitCode, exit_code_for, main
from medtwin.hil.packaged import bench_path, scenario_path


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def test_the_table() -> None:
    assert [int(code) for code in ExitCode] == [0, 1, 2, 3, 130]
    bad_input = [ConfigurationError("x"), RunNotFound("x")]
    runtime = [
        AnalysisError("x"),
        StorageError("x"),
        PortError("x"),
        DeviceTimeout("x"),
        DeviceAlarm("x"),
        CommandRefused("x"),
        ProtocolError("x"),
        MedtwinError("x"),
    ]
    assert {exit_code_for(e) for e in bad_input} == {ExitCode.BAD_INPUT}
    assert {exit_code_for(e) for e in runtime} == {ExitCode.RUNTIME}
    assert exit_code_for(KeyboardInterrupt()) == ExitCode.INTERRUPTED


def test_a_failed_verdict_fails_the_run_unless_fail_on_never(tmp_path: Path) -> None:
    # The drift bench's pump delivers 3 % less than set: the IEC 60601-2-24 mean flow
    # error verdict fails (the demo's run).
    db = f"sqlite:///{tmp_path / 'runs.db'}"
    args = ("run", str(bench_path("emulated-drift")), str(scenario_path("iec-flow-5mlh")))
    failed = invoke(*args, "--db", db)
    assert failed.exit_code == ExitCode.FAILED, failed.output
    assert "FAIL: the device failed mean_flow_error_a." in failed.stdout
    explored = invoke(*args, "--db", db, "--json", "--fail-on", "never")
    assert explored.exit_code == ExitCode.OK, explored.output


def test_drift_fails_the_run_only_with_fail_on_drift(
    tmp_path: Path, write_scenario: Callable[..., Path]
) -> None:
    # 30 min at 5 mL/h on the drift bench, no procedure: no verdict, but the flow drifts
    # away from the twin within minutes.
    scenario = write_scenario(
        tmp_path, name="flow", duration="30min", sampling={"balance": "5s"}, rate_ml_h=5.0
    )
    db = f"sqlite:///{tmp_path / 'runs.db'}"
    args = ("run", str(bench_path("emulated-drift")), str(scenario), "--db", db, "--json")
    passed = invoke(*args)
    assert passed.exit_code == ExitCode.OK, passed.output
    doc = json.loads(passed.stdout)
    assert doc["verdicts"] == []
    assert doc["drift_events"]
    drifted = invoke(*args, "--fail-on", "drift")
    assert drifted.exit_code == ExitCode.FAILED, drifted.output


def test_a_passing_run_exits_0(tmp_path: Path) -> None:
    # the nominal bench passes the IEC 60601-2-24 flow test
    db = f"sqlite:///{tmp_path / 'runs.db'}"
    result = invoke(
        "run", str(bench_path("emulated-nominal")), str(scenario_path("iec-flow-5mlh")), "--db", db
    )
    assert result.exit_code == ExitCode.OK, result.output
    assert "FAIL" not in result.stdout


def test_demo_exits_0_although_its_pump_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke("demo", "--db", f"sqlite:///{tmp_path / 'demo.db'}")
    assert result.exit_code == ExitCode.OK, result.output
    assert "FAIL: the device failed mean_flow_error_a." in result.stdout


def test_a_missing_port_is_a_runtime_failure_and_creates_no_store(tmp_path: Path) -> None:
    text = bench_path("emulated-nominal").read_text(encoding="utf-8")
    old = 'port = "emulated"\nline = { baudrate = 9600 }'
    assert old in text
    bench = tmp_path / "bench.toml"
    bench.write_text(text.replace(old, 'port = "/dev/ttyMEDTWIN404"\nline = { baudrate = 9600 }'))
    db = tmp_path / "runs.db"
    result = invoke("run", str(bench), str(scenario_path("occlusion")), "--db", f"sqlite:///{db}")
    assert result.exit_code == ExitCode.RUNTIME
    assert "balance" in result.stderr
    assert "/dev/ttyMEDTWIN404" in result.stderr
    assert not db.exists()


def test_a_store_that_is_not_one_is_bad_input_in_every_command(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.db"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    db = f"sqlite:///{foreign}"
    commands = [
        ("run", str(bench_path("emulated-nominal")), str(scenario_path("occlusion"))),
        ("runs",),
        ("report", "1"),
        ("export", "1", "--format", "csv", "--out", "-"),
        ("calibrate", "1"),
    ]
    for command in commands:
        result = invoke(*command, "--db", db)
        assert result.exit_code == ExitCode.BAD_INPUT, (command, result.output)
        assert "not a medtwin database" in result.stderr, (command, result.output)


def test_ctrl_c_outside_a_run_exits_130_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from medtwin.hil.commands import run as run_module

    def interrupted(path: str) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(run_module, "load_bench", interrupted)
    result = invoke("run", "bench.toml", "scenario.toml")
    assert result.exit_code == ExitCode.INTERRUPTED
    assert result.stderr == "medtwin: interrupted\n"


def test_click_usage_errors_are_bad_input() -> None:
    result = invoke("run", "--fail-on", "sometimes", "a.toml", "b.toml")
    assert result.exit_code == ExitCode.BAD_INPUT
    assert "'sometimes' is not one of 'verdict', 'drift', 'never'" in result.output


def test_ctrl_c_while_a_command_is_imported_exits_130(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    real_import = importlib.import_module

    def interrupted(name: str, package: str | None = None) -> object:
        if name == "medtwin.hil.commands.runs":
            raise KeyboardInterrupt
        return real_import(name, package)

    monkeypatch.setattr(importlib, "import_module", interrupted)
    result = invoke("runs")
    assert result.exit_code == ExitCode.INTERRUPTED
    assert result.stderr == "medtwin: interrupted\n"


def _result(status: str, *, lost: list[str], outcomes: list[tuple[str, str]], drift: int) -> Any:
    from types import SimpleNamespace

    from medtwin.hil.runner import RunResult

    verdicts = [SimpleNamespace(name="m", source=s, outcome=o) for s, o in outcomes]
    return RunResult(
        run_id=1,
        status=status,
        bench="b",
        scenario="s",
        clock="virtual",
        duration_s=60.0,
        wall_s=1.0,
        samples={},
        channels={},
        drift_events=[object()] * drift,  # type: ignore[list-item]
        events={},
        identities={},
        db="sqlite:///x.db",
        lost=lost,
        procedures=[SimpleNamespace(verdicts=verdicts)],  # type: ignore[list-item]
    )


@pytest.mark.parametrize(
    ("status", "lost", "outcomes", "drift", "fail_on", "code"),
    [
        (
            "completed",
            [],
            [("real", "PASS"), ("real", "MARGINAL"), ("real", "INFO")],
            0,
            "verdict",
            0,
        ),
        ("completed", [], [("real", "FAIL")], 0, "verdict", 1),
        ("completed", [], [("real", "UNSET")], 0, "verdict", 1),
        ("completed", [], [("real", "PASS"), ("twin", "FAIL")], 0, "verdict", 0),
        ("completed", [], [("real", "PASS")], 2, "verdict", 0),
        ("completed", [], [("real", "PASS")], 2, "drift", 1),
        ("completed", [], [("real", "FAIL")], 2, "never", 0),
        ("degraded", ["bench-io"], [("real", "PASS")], 0, "verdict", 3),
        ("aborted", [], [], 0, "never", 130),
    ],
    ids=[
        "pass-marginal-info",
        "fail",
        "unset",
        "twin-fail-only",
        "drift-default",
        "drift-fail-on-drift",
        "never",
        "device-lost",
        "interrupted",
    ],
)
def test_the_exit_status_of_a_run(
    status: str,
    lost: list[str],
    outcomes: list[tuple[str, str]],
    drift: int,
    fail_on: str,
    code: int,
) -> None:
    from medtwin.hil.session import outcome_exit_code

    result = _result(status, lost=lost, outcomes=outcomes, drift=drift)
    assert outcome_exit_code(result, fail_on) == code
