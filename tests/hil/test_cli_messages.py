"""What ``medtwin run``, ``demo``, ``runs`` and ``calibrate`` say happened.

An interrupted run says how far it got, its id, that it is stored as aborted and that no
report was written; a Ctrl-C after the run finished still says where it is stored; the
twin's calibration is named; ``runs`` shows scenario time reached, outcomes and drift;
``calibrate`` refuses part of a run and warns when the model cannot fit; progress without
a terminal is a plain line naming the run.

Ctrl-C is delivered for real (SIGINT to this process) by a progress hook once the
scenario reaches 45 min, so the interruption happens at a known scenario time without
waiting on the wall clock; the runner's own signal handler turns it into a clean abort.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from medtwin.hil import session
from medtwin.hil.cli import ExitCode, main
from medtwin.hil.packaged import bench_path, scenario_path
from medtwin.hil.store import RunStore

DRIFT = str(bench_path("emulated-drift"))
IEC = str(scenario_path("iec-flow-5mlh"))
INTERRUPT_AT_S = 2700.0  # 45 min into the 2 h IEC flow test


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def _interrupting_lines(
    run: Any, total_s: float, stream: Any, interval_s: float
) -> Callable[[float, dict[str, int], int], None]:
    sent = False

    def hook(t: float, samples: dict[str, int], drift_events: int) -> None:
        nonlocal sent
        if t >= INTERRUPT_AT_S and not sent:
            sent = True
            os.kill(os.getpid(), signal.SIGINT)

    return hook


@pytest.fixture
def interrupted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Result]:
    """``medtwin run`` of the drift bench interrupted by Ctrl-C at 45 min."""
    db = f"sqlite:///{tmp_path / 'runs.db'}"
    monkeypatch.setattr(session, "_plain_lines", _interrupting_lines)
    result = invoke("run", DRIFT, IEC, "--db", db)
    return db, result


def test_ctrl_c_mid_run_says_how_far_it_got(interrupted: tuple[str, Result]) -> None:
    db, result = interrupted
    assert result.exit_code == ExitCode.INTERRUPTED, result.output
    first = result.stdout.splitlines()[0]
    assert first.startswith("interrupted at 0:45:"), first
    assert "of 2:00:00 (scenario time): run 1 is stored as aborted in" in first
    assert "no report was written" in result.stdout
    # not the full 2 h as if it had run
    assert "2h of scenario time" not in result.stdout
    with RunStore(db) as store:
        info = store.run_info(1)
    assert str(info.status) == "aborted"


def test_calibrate_refuses_an_aborted_run_unless_allow_partial(
    interrupted: tuple[str, Result],
) -> None:
    db, _ = interrupted
    refused = invoke("calibrate", "1", "--db", db)
    assert refused.exit_code == ExitCode.BAD_INPUT
    assert "RUN: run 1 is aborted at 0:45:" in refused.stderr
    assert "of 2:00:00 (scenario time)" in refused.stderr
    assert "--allow-partial" in refused.stderr
    with RunStore(db) as store:
        assert store.latest_calibration("NE-1000/emulated-drift:pump") is None
    allowed = invoke("calibrate", "1", "--db", db, "--allow-partial", "--json")
    assert allowed.exit_code == ExitCode.OK, allowed.output
    assert json.loads(allowed.stdout)["calibration"]["version"] == 1


def test_runs_shows_scenario_time_outcomes_and_drift(
    interrupted: tuple[str, Result], tmp_path: Path
) -> None:
    db, _ = interrupted
    done = invoke("run", DRIFT, IEC, "--db", db, "--json")
    assert done.exit_code == ExitCode.FAILED
    listed = invoke("runs", "--db", db, "--json")
    assert listed.exit_code == 0, listed.output
    aborted, failed = json.loads(listed.stdout)
    # the existing keys are kept
    assert {"id", "status", "duration_s", "sample_count"} <= set(aborted)
    assert aborted["status"] == "aborted"
    assert INTERRUPT_AT_S <= aborted["scenario_time_s"] < INTERRUPT_AT_S + 60
    assert aborted["scenario_duration_s"] == 7200.0
    assert aborted["real_outcome"] is None  # no verdict: the analysis never ran
    assert failed["scenario_time_s"] == 7200.0
    assert failed["real_outcome"] == "FAIL"
    assert failed["twin_outcome"] == "PASS"
    assert failed["drift_events"] == 5
    table = invoke("runs", "--db", db)
    assert table.exit_code == 0
    lines = table.stdout.splitlines()
    header = next(line for line in lines if "status" in line)
    for column in ("scenario time", "real", "twin", "drift"):
        assert column in header, header
    row = next(line for line in lines if line.strip().startswith("2 "))
    assert "2:00:00 / 2:00:00" in row
    assert "FAIL" in row
    assert "PASS" in row
    aborted_row = next(line for line in lines if line.strip().startswith("1 "))
    assert "0:45:" in aborted_row
    assert "/ 2:00:00" in aborted_row


def test_ctrl_c_after_the_run_finished_still_says_where_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from medtwin.hil.commands import run as run_module

    def interrupted_print(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(run_module, "print_result", interrupted_print)
    db = f"sqlite:///{tmp_path / 'runs.db'}"
    result = invoke(
        "run", str(bench_path("emulated-nominal")), str(scenario_path("bolus")), "--db", db
    )
    assert result.exit_code == ExitCode.INTERRUPTED
    assert (
        "medtwin: interrupted after the run finished: run 1 is stored (completed) in "
        in result.stderr
    )
    assert "runs.db" in result.stderr


def test_demo_interrupted_while_writing_its_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from medtwin.hil.commands import demo as demo_module

    def interrupted_report(*args: Any, **kwargs: Any) -> Path:
        raise KeyboardInterrupt

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(demo_module, "write_report", interrupted_report)
    result = invoke("demo", "--db", f"sqlite:///{tmp_path / 'demo.db'}")
    assert result.exit_code == ExitCode.INTERRUPTED
    assert "run 1 is stored (completed) in" in result.stderr
    assert "no report was written" in result.stderr
    assert not list(tmp_path.glob("report-*.html"))


def test_run_names_the_calibration_the_twin_used(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'runs.db'}"
    first = invoke("run", DRIFT, IEC, "--db", db)
    assert "twin: nominal parameters of the bench file (no calibration)" in first.stdout
    fitted = invoke("calibrate", "1", "--db", db, "--fix", "pump.drive.wear_onset_s=1800")
    assert fitted.exit_code == 0, fitted.output
    latest = tmp_path / "latest.toml"
    latest.write_text(
        Path(DRIFT)
        .read_text(encoding="utf-8")
        .replace('calibration = "none"', 'calibration = "latest"'),
        encoding="utf-8",
    )
    second = invoke("run", str(latest), IEC, "--db", db, "--fail-on", "never")
    assert second.exit_code == 0, second.output
    assert "twin: calibration version 1 of NE-1000/emulated-drift:pump" in second.stdout
    doc = json.loads(invoke("run", str(latest), IEC, "--db", db, "--json").stdout)
    assert doc["calibration"]["version"] == 1
    assert doc["calibration"]["device_key"] == "NE-1000/emulated-drift:pump"


def test_calibrate_warns_when_the_model_cannot_fit_and_gives_units(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'runs.db'}"
    assert invoke("run", DRIFT, IEC, "--db", db, "--json").exit_code == ExitCode.FAILED
    # The wear starts at 30 min on the device; the nominal twin holds the onset at 0 s.
    result = invoke("calibrate", "1", "--db", db)
    assert result.exit_code == 0, result.output
    out = " ".join(result.stdout.split())  # rich folds long lines
    assert "fit warning: the fit leaves balance.mass_g at RMS" in out
    assert "its noise σ =" in out
    assert "pump.drive.wear_onset_s (held at the twin's 0 s)" in out
    assert "--fix pump.drive.wear_onset_s=SECONDS" in out
    assert " mm (" in out
    assert " %/h" in out
    doc = json.loads(invoke("calibrate", "1", "--db", db, "--json").stdout)
    assert len(doc["warnings"]) == 1
    assert "the model cannot fit this run" in doc["warnings"][0]


def test_plain_progress_lines_name_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(session, "PROGRESS_INTERVAL_S", 0.0)  # a line at every tick
    db = f"sqlite:///{tmp_path / 'runs.db'}"
    bench, scenario = str(bench_path("emulated-nominal")), str(scenario_path("bolus"))
    result = invoke("run", bench, scenario, "--db", db, "--fail-on", "never")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("medtwin: run 1:")]
    assert lines, result.stderr
    assert "/ 40m of scenario time" in lines[-1]
    assert "× real time" in lines[-1]


def test_the_progress_bar_names_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    import rich.progress

    seen: list[str] = []
    update = rich.progress.Progress.update

    def spy(self: Any, task: Any, **fields: Any) -> None:
        if "description" in fields:
            seen.append(fields["description"])
        update(self, task, **fields)

    monkeypatch.setattr(rich.progress.Progress, "update", spy)

    class Writer:
        run_id = 7

    class Runner:
        writer = Writer()

    name = session._RunName()
    with session._progress("bar", 60.0, name) as hook:
        hook(1.0, {"balance": 1}, 0)
        name.runner = Runner()  # type: ignore[assignment]
        hook(2.0, {"balance": 2}, 0)
    assert seen == ["run", "run 7"]


def test_the_quickstart_calibration_recovers_the_demo_truth(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # docs/quickstart.md: the demo's syringe is 26.3241 mm (1 % under 26.59 mm), its lead
    # screw wears 1 %/h from 1800 s on; both invocations shown there find them.
    monkeypatch.chdir(tmp_path)
    db = f"sqlite:///{tmp_path / 'medtwin.db'}"
    assert invoke("demo", "--db", db, "--json").exit_code == 0
    fixed = invoke("calibrate", "1", "--db", db, "--fix", "pump.drive.wear_onset_s=1800", "--json")
    assert fixed.exit_code == 0, fixed.output
    fitted = invoke(
        "calibrate",
        "1",
        "--db",
        db,
        "--params",
        "pump.syringe.inner_diameter_mm,pump.drive.wear_percent_per_h,pump.drive.wear_onset_s",
        "--start",
        "pump.drive.wear_percent_per_h=0.5",
        "--start",
        "pump.drive.wear_onset_s=600",
        "--json",
    )
    assert fitted.exit_code == 0, fitted.output
    for result in (fixed, fitted):
        doc = json.loads(result.stdout)
        params = doc["params"]
        assert params["pump.syringe.inner_diameter_mm"]["value"] == pytest.approx(26.3241, abs=2e-3)
        assert params["pump.drive.wear_percent_per_h"]["value"] == pytest.approx(1.0, abs=0.01)
        mass = doc["channels"]["balance.mass_g"]
        assert mass["rms_after"] < 2 * mass["sigma"]  # down to the balance's noise
        assert doc["warnings"] == []
    onset = json.loads(fitted.stdout)["params"]["pump.drive.wear_onset_s"]["value"]
    assert onset == pytest.approx(1800.0, abs=15.0)


def test_ctrl_c_while_the_bench_stands_up_records_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from medtwin.hil.rig import BenchRig

    start = BenchRig.start

    async def interrupted_start(self: BenchRig) -> None:
        os.kill(os.getpid(), signal.SIGINT)  # the runner's handler takes it
        await start(self)

    monkeypatch.setattr(BenchRig, "start", interrupted_start)
    db = tmp_path / "runs.db"
    result = invoke("run", DRIFT, IEC, "--db", f"sqlite:///{db}")
    assert result.exit_code == ExitCode.INTERRUPTED, result.output
    assert result.stderr == "medtwin: interrupted\n"
    assert not db.exists()
