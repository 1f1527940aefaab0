"""Files and stores (issue 18 §4): a report is not overwritten without --force, and
``medtwin demo`` run twice keeps both reports."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from medtwin.hil.cli import main
from medtwin.hil.store import RunStore


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
        writer.finish("completed", summary={})
        return writer.run_id


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
