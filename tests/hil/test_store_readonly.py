"""Files and stores (issue 18 §4): a store in a read-only place can be listed, reported and
exported, opened read-only, with a clear message only when a write is needed; a report is
not overwritten without --force, and ``medtwin demo`` run twice keeps both reports.

The tests run as root on CI machines, where a read-only mode bit stops nobody, so a
read-only place is simulated two ways: a URL asking for it (``?mode=ro``), and
``os.access`` answering "not writable" as it does for a user on a read-only directory or
file; the store must then choose the read-only open by itself.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from medtwin.drivers.errors import StorageError
from medtwin.hil.cli import main
from medtwin.hil.store import RunStore
from medtwin.hil.store import engine as store_engine
from medtwin.hil.store.schema import BenchRow, RunRow
from sqlalchemy.pool import NullPool
from sqlmodel import Session


def _a_run(db: str) -> int:
    with RunStore(db) as store:
        writer = store.start_run(
            bench_name="b",
            bench_text="",
            scenario_name="s",
            scenario_text="",
            software_version="0",
            clock="virtual",
            twin_params={},
            devices=[],
        )
        channel = writer.add_channel("rate_ml_h", unit="mL/h", source="real")
        writer.append(channel, np.arange(3.0), np.array([5.0, 5.0, 5.1]))
        writer.finish("completed", summary={})
        return writer.run_id


def _a_dead_run(db: str) -> int:
    """A ``running`` run whose writer on another host stopped beating an hour ago."""
    engine = sa.create_engine(db, poolclass=NullPool)
    now = datetime.now(UTC)
    try:
        with Session(engine) as session:
            bench = BenchRow(name="dead", text="", sha256=hashlib.sha256(b"").hexdigest())
            session.add(bench)
            session.flush()
            run = RunRow(
                status="running",
                started_utc=now - timedelta(hours=2),
                heartbeat_utc=now - timedelta(hours=1),
                bench_id=bench.id or 0,
                scenario_name="s",
                scenario_text="",
                scenario_sha256="",
                software_version="0",
                clock_kind="wall",
                pid=1,
                hostname="another-bench-pc",
                process_marker="",
            )
            session.add(run)
            session.commit()
            return run.id or 0
    finally:
        engine.dispose()


@pytest.fixture
def archived(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, int, int]:
    """A store with a finished run and a dead one, in a working directory of its own."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    path = tmp_path / "archive" / "runs.db"
    path.parent.mkdir()
    db = f"sqlite:///{path}"
    done = _a_run(db)
    dead = _a_dead_run(db)
    return path, done, dead


def _not_writable(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    """``os.access`` says the store's file and directory cannot be written (as for a user
    on a read-only mount or a chmod a-w archive)."""
    real = os.access
    locked = {str(path), str(path.parent)}

    def access(target: object, mode: int, *args: object, **kwargs: object) -> bool:
        if mode & os.W_OK and str(target) in locked:
            return False
        return real(target, mode, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(store_engine.os, "access", access)


def _status(path: Path, run_id: int) -> str:
    import sqlite3

    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        return str(conn.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()[0])


@pytest.mark.parametrize("how", ["url", "uri", "os.access"])
def test_a_read_only_store_is_listed_reported_and_exported(
    archived: tuple[Path, int, int], monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    path, done, dead = archived
    db = f"sqlite:///{path}"
    if how == "url":
        db += "?mode=ro"
    elif how == "uri":  # SQLAlchemy's own spelling of an SQLite URI filename
        db = f"sqlite+pysqlite:///file:{path}?mode=ro&uri=true"
    else:
        _not_writable(monkeypatch, path)
    before = path.read_bytes()
    listed = CliRunner().invoke(main, ["runs", "--db", db, "--json"])
    assert listed.exit_code == 0, listed.output
    assert {run["id"] for run in json.loads(listed.output)} == {done, dead}
    reported = CliRunner().invoke(main, ["report", str(done), "--db", db])
    assert reported.exit_code == 0, reported.output
    assert Path(f"report-{done}.html").is_file()
    exported = CliRunner().invoke(main, ["export", str(done), "--db", db, "--format", "csv"])
    assert exported.exit_code == 0, exported.output
    assert Path(f"run-{done}.csv").read_text().count("\n") == 4
    # Opening it read-only wrote nothing, not even the stale run's "interrupted" mark.
    assert _status(path, dead) == "running"
    assert path.read_bytes() == before


def test_a_writable_store_still_marks_the_dead_run(archived: tuple[Path, int, int]) -> None:
    path, _done, dead = archived
    with RunStore(f"sqlite:///{path}", create=False) as store:
        assert not store.read_only
    assert _status(path, dead) == "interrupted"


def test_a_write_into_a_read_only_store_says_so(
    archived: tuple[Path, int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, _done, _dead = archived
    # Asked for read-only, then written: the write fails with a message saying why.
    with RunStore(f"sqlite:///{path}?mode=ro", create=False) as store:
        assert store.read_only
        with pytest.raises(StorageError, match="open read-only"):
            store.start_run(
                bench_name="b",
                bench_text="",
                scenario_name="s",
                scenario_text="",
                software_version="0",
                clock="virtual",
                twin_params={},
                devices=[],
            )
    # A command that writes (run, calibrate) opens it for writing: refused at once.
    _not_writable(monkeypatch, path)
    with pytest.raises(StorageError, match=r"is read-only .* cannot be stored in it"):
        RunStore(f"sqlite:///{path}")
    with pytest.raises(StorageError, match="is read-only"):
        RunStore(f"sqlite:///{path}", create=False)


def test_an_unwritable_directory_without_a_log_opens_the_file_immutable(
    archived: tuple[Path, int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, done, _dead = archived
    _not_writable(monkeypatch, path)
    with RunStore(f"sqlite:///{path}", create=False, read_only=None) as store:
        assert store.read_only
        assert store.load_run(done).info.id == done
        assert store.url == f"sqlite:///{path}"


def test_report_is_not_overwritten_without_force(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    db = f"sqlite:///{tmp_path / 'runs.db'}"
    run_id = _a_run(db)
    existing = tmp_path / f"report-{run_id}.html"
    existing.write_text("a report filed earlier")
    refused = CliRunner().invoke(main, ["report", str(run_id), "--db", db])
    assert refused.exit_code == 2, refused.output
    assert "exists; pass --force to overwrite it" in refused.output
    assert existing.read_text() == "a report filed earlier"
    forced = CliRunner().invoke(main, ["report", str(run_id), "--db", db, "--force"])
    assert forced.exit_code == 0, forced.output
    assert existing.read_text().startswith("<!DOCTYPE html>")


@pytest.mark.slow
def test_demo_run_twice_keeps_both_reports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for _ in range(2):
        result = CliRunner().invoke(main, ["demo", "--json"])
        assert result.exit_code == 0, result.output
    assert (tmp_path / "report-1.html").is_file()
    assert (tmp_path / "report-2.html").is_file()
    # A fresh store reuses run id 1: the earlier report-1.html is kept.
    (tmp_path / "medtwin.db").unlink()
    before = (tmp_path / "report-1.html").read_bytes()
    result = CliRunner().invoke(main, ["demo", "--json"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "report-1.html").read_bytes() == before
    assert (tmp_path / "report-1-2.html").is_file()


def test_calibrate_into_a_read_only_store_is_refused_before_any_fit(
    archived: tuple[Path, int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, done, _dead = archived
    _not_writable(monkeypatch, path)
    result = CliRunner().invoke(main, ["calibrate", str(done), "--db", f"sqlite:///{path}"])
    assert result.exit_code != 0
    assert "is read-only" in result.output
    assert "cannot be stored in it" in result.output


def test_calibrate_into_a_store_opened_with_mode_ro_is_refused_before_any_fit(
    archived: tuple[Path, int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, done, _dead = archived

    def no_fit(*args: object, **kwargs: object) -> None:
        raise AssertionError("the fit ran although nothing could be stored")

    monkeypatch.setattr("medtwin.hil.calibration.calibrate", no_fit)
    result = CliRunner().invoke(main, ["calibrate", str(done), "--db", f"sqlite:///{path}?mode=ro"])
    assert result.exit_code == 2, result.output
    assert "opened read-only" in result.output
    assert "nothing can be stored in it" in result.output
