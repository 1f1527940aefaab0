"""``medtwin runs`` and ``medtwin export`` through click's CliRunner, on SQLite and PostgreSQL.

PostgreSQL settings as in test_store.py (``MEDTWIN_TEST_POSTGRES_URL``; skipped when the
default server does not answer, see tests/conftest.py).
"""

from __future__ import annotations

import csv
import io
import json
import math
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner, Result
from medtwin.drivers.errors import StorageError
from medtwin.hil.cli import main
from medtwin.hil.store import RunStore, RunWriter


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.chdir(out)
    return out


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def start(store: RunStore, scenario: str) -> RunWriter:
    return store.start_run(
        bench_name="bench-a",
        bench_text="[devices.pump1]\n",
        scenario_name=scenario,
        scenario_text=f"name = '{scenario}'\n",
        software_version="0.1.0",
        clock="virtual",
        twin_params={"inner_diameter_mm": 26.6},
        devices=[
            {
                "name": "pump1",
                "kind": "syringe_pump",
                "protocol": "nesp",
                "port": "x",
                "model": "NE-1000",
                "serial": "A1",
            }
        ],
    )


NAN_PAYLOAD = float(np.array([0x7FF8_0000_0000_0ABC], dtype=np.uint64).view(np.float64)[0])
SPECIALS = [0.1, -0.0, math.inf, -math.inf, NAN_PAYLOAD, 5e-324, 1 / 3, 1e300]


def populate(db_url: str) -> tuple[int, int]:
    """A completed run (three channels, an event, a verdict) and an interrupted one."""
    with RunStore(db_url) as store:
        done = start(store, "trumpet")
        rate = done.add_channel("rate_ml_h", unit="mL/h", source="real", device="pump1")
        twin = done.add_channel("rate_ml_h", unit="mL/h", source="twin", device="pump1")
        free = done.add_channel("room_temp_c", unit="°C", source="real")
        done.append(rate, np.arange(len(SPECIALS), dtype=np.float64), np.array(SPECIALS))
        done.append(twin, np.arange(1000.0) * 0.5, np.linspace(0.0, 5.0, 1000))
        done.append(free, 2.5, 21.5)
        done.add_event(1.0, "command", device="pump1", message="RAT 5 MH", data={"x": math.nan})
        done.finish("completed", summary={"ok": True})
        store.save_verdicts(
            done.run_id,
            [
                {
                    "measurement": "ep_max_2min",
                    "source": "real",
                    "value": 1.5,
                    "units": "%",
                    "lower": -5.0,
                    "upper": 5.0,
                    "outcome": "PASS",
                }
            ],
        )
        running = start(store, "occlusion")
        channel = running.add_channel("pressure_mmhg", unit="mmHg", source="real")
        running.append(channel, 0.0, 120.0)
        running.finish("interrupted")
    return done.run_id, running.run_id


def test_runs_table_and_json(db_url: str, workdir: Path) -> None:
    done, other = populate(db_url)
    result = invoke("runs", "--db", db_url)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    row = next(line for line in lines if line.split()[:2] == [str(done), "completed"])
    assert "bench-a" in row
    assert "trumpet" in row
    assert row.split()[-2:] == ["3", "1,009"]
    assert any(line.split()[:2] == [str(other), "interrupted"] for line in lines)

    result = invoke("runs", "--db", db_url, "--json")
    assert result.exit_code == 0, result.output
    runs = json.loads(result.stdout)
    assert [r["id"] for r in runs] == [done, other]
    assert runs[0]["status"] == "completed"
    assert runs[0]["sample_count"] == 1009
    assert runs[0]["channel_count"] == 3
    assert runs[0]["clock_kind"] == "virtual"
    assert runs[0]["scenario_name"] == "trumpet"
    assert runs[0]["duration_s"] >= 0
    assert runs[1]["sample_count"] == 1
    assert list(workdir.iterdir()) == []


def test_runs_on_an_empty_store(db_url: str) -> None:
    RunStore(db_url).close()
    result = invoke("runs", "--db", db_url)
    assert result.exit_code == 0
    assert "no runs in" in result.stdout
    result = invoke("runs", "--db", db_url, "--json")
    assert json.loads(result.stdout) == []


def test_runs_with_a_bad_db_exits_2_and_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "typo.db"
    result = invoke("runs", "--db", f"sqlite:///{missing}")
    assert result.exit_code == 2
    assert "--db: no run store at" in result.stderr
    assert not missing.exists()

    result = invoke("runs", "--db", "medtwin.db")
    assert result.exit_code == 2
    assert "invalid database URL 'medtwin.db'" in result.stderr

    foreign = tmp_path / "foreign.db"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    before = foreign.read_bytes()
    result = invoke("runs", "--db", f"sqlite:///{foreign}")
    assert result.exit_code == 2
    assert "not a medtwin database" in result.stderr
    assert foreign.read_bytes() == before

    result = invoke("runs", "--db", "postgresql+psycopg://u:topsecret@127.0.0.1:1/db")
    assert result.exit_code == 2
    assert "topsecret" not in result.stderr
    assert "u:***@127.0.0.1:1" in result.stderr


def _bits(x: float) -> int:
    return int(np.array([x], dtype=np.float64).view(np.uint64)[0])


def test_export_csv_is_lossless(db_url: str, workdir: Path) -> None:
    run_id, _ = populate(db_url)
    result = invoke("export", str(run_id), "--db", db_url, "--format", "csv", "--out", "r.csv")
    assert result.exit_code == 0, result.output
    assert "3 channel(s), 1,009 sample(s) -> r.csv" in result.stdout
    with (workdir / "r.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["run_id", "channel", "source", "device", "unit", "t_s", "value"]
    body = rows[1:]
    assert len(body) == 1009
    assert {tuple(r[:5]) for r in body} == {
        (str(run_id), "rate_ml_h", "real", "pump1", "mL/h"),
        (str(run_id), "rate_ml_h", "twin", "pump1", "mL/h"),
        (str(run_id), "room_temp_c", "real", "", "°C"),
    }
    real = [r for r in body if r[2] == "real" and r[1] == "rate_ml_h"]
    for row, expected in zip(real, SPECIALS, strict=True):
        value = float(row[6])
        if math.isnan(expected):
            assert math.isnan(value)  # the payload of a NaN is not kept in text
        else:
            assert _bits(value) == _bits(expected)
    twin = [r for r in body if r[2] == "twin"]
    assert [float(r[5]) for r in twin] == (np.arange(1000.0) * 0.5).tolist()
    assert [float(r[6]) for r in twin] == np.linspace(0.0, 5.0, 1000).tolist()
    assert body[-1][5:] == ["2.5", "21.5"]


def test_export_npz_keeps_every_bit_and_the_metadata(db_url: str, workdir: Path) -> None:
    run_id, _ = populate(db_url)
    result = invoke("export", str(run_id), "--db", db_url, "--format", "npz")
    assert result.exit_code == 0, result.output
    path = workdir / f"run-{run_id}.npz"
    with np.load(path, allow_pickle=False) as archive:
        meta = json.loads(str(archive["metadata"]))
        arrays = {key: archive[key] for key in archive.files if key != "metadata"}
    assert meta["format"] == "medtwin-run"
    assert meta["format_version"] == 1
    assert meta["run"]["id"] == run_id
    assert meta["run"]["status"] == "completed"
    assert meta["bench"]["text"] == "[devices.pump1]\n"
    assert meta["scenario"]["name"] == "trumpet"
    assert meta["twin_params"] == {"inner_diameter_mm": 26.6}
    assert meta["summary"] == {"ok": True}
    assert meta["devices"][0]["identity"] == {"model": "NE-1000", "serial": "A1"}
    assert [
        (c["key"], c["name"], c["source"], c["device"], c["samples"]) for c in meta["channels"]
    ] == [
        ("ch0", "rate_ml_h", "real", "pump1", 8),
        ("ch1", "rate_ml_h", "twin", "pump1", 1000),
        ("ch2", "room_temp_c", "real", None, 1),
    ]
    assert meta["events"][0]["data"] == {"x": "NaN"}  # strict JSON inside the archive
    assert meta["verdicts"][0]["outcome"] == "PASS"
    assert sorted(arrays) == sorted(f"ch{i}_{part}" for i in range(3) for part in ("t_s", "values"))
    expected_bits = np.array(SPECIALS, dtype=np.float64).view(np.uint64)
    assert np.array_equal(arrays["ch0_values"].view(np.uint64), expected_bits)
    assert np.array_equal(arrays["ch1_t_s"], np.arange(1000.0) * 0.5)
    assert arrays["ch2_values"].tolist() == [21.5]


def test_export_refuses_to_overwrite_without_force(db_url: str, workdir: Path) -> None:
    run_id, _ = populate(db_url)
    target = workdir / f"run-{run_id}.csv"
    target.write_text("precious\n")
    result = invoke("export", str(run_id), "--db", db_url, "--format", "csv")
    assert result.exit_code == 2
    assert f"--out: {target.name} exists; pass --force" in result.stderr
    assert target.read_text() == "precious\n"
    result = invoke("export", str(run_id), "--db", db_url, "--format", "csv", "--force")
    assert result.exit_code == 0, result.output
    assert target.read_text().startswith("run_id,channel,")
    assert sorted(p.name for p in workdir.iterdir()) == [target.name]


def test_export_errors_write_nothing(db_url: str, workdir: Path) -> None:
    run_id, _ = populate(db_url)
    result = invoke("export", "999", "--db", db_url, "--format", "csv")
    assert result.exit_code == 2
    assert "RUN: no run 999 in" in result.stderr
    result = invoke("export", str(run_id), "--db", db_url, "--format", "npz", "--out", "-")
    assert result.exit_code == 2
    assert "--out: only --format csv" in result.stderr
    result = invoke("export", str(run_id), "--db", db_url, "--format", "xls")
    assert result.exit_code == 2  # click's own usage error
    result = invoke(
        "export",
        str(run_id),
        "--db",
        db_url,
        "--format",
        "csv",
        "--out",
        str(workdir / "no" / "such" / "dir.csv"),
    )
    assert result.exit_code == 2
    assert "--out: cannot write in" in result.stderr
    result = invoke("export", "0", "--db", db_url, "--format", "csv")
    assert result.exit_code == 2
    assert list(workdir.iterdir()) == []


def test_export_csv_to_stdout(db_url: str, workdir: Path) -> None:
    run_id, _ = populate(db_url)
    result = invoke("export", str(run_id), "--db", db_url, "--format", "csv", "--out", "-")
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0][0] == "run_id"
    assert len(rows) == 1010
    assert list(workdir.iterdir()) == []


def test_failed_export_leaves_no_partial_file(
    tmp_path: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db_url = f"sqlite:///{tmp_path / 'store.db'}"
    run_id, _ = populate(db_url)
    from medtwin.hil.commands import export as export_module

    def failing_write_csv(run: Any, stream: io.TextIOBase) -> int:
        stream.write("run_id,channel\n1,half")
        raise StorageError("disk full (simulated)")

    monkeypatch.setattr(export_module, "write_csv", failing_write_csv)
    result = invoke("export", str(run_id), "--db", db_url, "--format", "csv", "--out", "r.csv")
    assert result.exit_code == 3  # the store failed while in use: ExitCode.RUNTIME
    assert "disk full (simulated)" in result.stderr
    assert list(workdir.iterdir()) == []
