"""``medtwin analyze trumpet`` through the real command table, with click's CliRunner.

The golden log is the square-wave one of test_iec60601_2_24 (hand calculation there):
r = 10 mL/h, the second hour alternates +3 % and −3 % every 5 samples, so A = 0 and
Ep(max) = +3, +3, 0, 3/11, 3/19, 3/31 % for P = 1, 2, 5, 11, 19, 31 min.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result
from hypothesis import given, settings
from hypothesis import strategies as st
from medtwin.device_models.balance import BalanceParams
from medtwin.drivers.errors import ConfigurationError
from medtwin.hil.analysis.gravimetry import GravimetricPolicy
from medtwin.hil.cli import main
from medtwin.hil.commands.analyze import read_balance_csv
from medtwin.hil.runner import RunResult
from medtwin.hil.store import RunStore

RATE = 10.0
EXPECTED_EP = {"1": 3.0, "2": 3.0, "5": 0.0, "11": 3 / 11, "19": 3 / 19, "31": 3 / 31}


def square_wave_log() -> tuple[np.ndarray, np.ndarray]:
    errors = np.r_[np.zeros(120), np.tile(np.r_[np.full(5, 3.0), np.full(5, -3.0)], 12)]
    flows = RATE * (1 + errors / 100)
    mass = np.concatenate(([0.0], np.cumsum(flows * 0.5 * 0.998 / 60.0)))
    return np.arange(mass.size) * 30.0, mass


def write_csv(path: Path, rows: list[str], *, bom: bool = False) -> Path:
    path.write_text(("\ufeff" if bom else "") + "\n".join(rows) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def golden_csv(tmp_path: Path) -> Path:
    t_s, mass = square_wave_log()
    rows = ["t_s,balance_g"] + [
        f"{float(t)!r},{float(m)!r}" for t, m in zip(t_s, mass, strict=True)
    ]
    return write_csv(tmp_path / "golden.csv", rows)


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, ["analyze", "trumpet", *args])


#: The golden log is written at d = 0.998 g/mL and its hand values include P = 1 min, so
#: the tests of its numbers name both (the defaults are the gravimetric policy's d and
#: P = 2, 5, 11, 19, 31 min: see test_defaults_are_the_policy_and_the_standard_windows).
GOLDEN_OPTIONS = ("--density", "0.998", "--windows", "1,2,5,11,19,31")


def invoke_golden(*args: str) -> Result:
    return invoke(*args, *GOLDEN_OPTIONS)


def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def test_table_output(golden_csv: Path) -> None:
    result = invoke_golden("--csv", str(golden_csv), "--rate", "10")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "mean flow error A = +0.000 %" in out
    assert "analysis period 60–120 min" in out
    assert "note:" not in out  # already on the 30-s grid
    rows = {line.split()[1]: line for line in out.splitlines() if line.startswith("│")}
    assert set(rows) == set(EXPECTED_EP)
    assert "+3.000" in rows["1"]
    assert "-3.000" in rows["1"]
    assert "│ 119 │" in rows["1"]
    assert "+0.273" in rows["11"]
    assert "-0.273" in rows["11"]
    assert "+0.097" in rows["31"]
    assert "│  59 │" in rows["31"]


def test_json_document(golden_csv: Path) -> None:
    result = invoke_golden("--csv", str(golden_csv), "--rate", "10", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)  # exactly one JSON document, nothing else
    assert document["rate_ml_h"] == 10.0
    assert document["interval_min"] == 0.5
    assert document["analysis_period_min"] == [60.0, 120.0]
    assert document["mean_error_percent"] == pytest.approx(0.0, abs=1e-9)
    assert document["resampled"] is False
    assert document["samples"] == 241
    assert list(document["windows"]) == list(EXPECTED_EP)
    for key, ep in EXPECTED_EP.items():
        window = document["windows"][key]
        assert window["ep_max"] == pytest.approx(ep, abs=1e-9)
        assert window["ep_min"] == pytest.approx(-ep, abs=1e-9)


def test_bom_semicolons_decimal_commas_and_extra_columns(tmp_path: Path) -> None:
    t_s, mass = square_wave_log()
    rows = ["# exported by BalanceLink 2.1", "", "n;time;temp_c;weight;stable"]
    rows += [
        f"{i};{t:.1f};20,5;{m:.9f};S".replace(".", ",")
        for i, (t, m) in enumerate(zip(t_s, mass, strict=True))
    ]
    path = write_csv(tmp_path / "export.csv", rows, bom=True)
    result = invoke_golden(
        "--csv",
        str(path),
        "--rate",
        "10",
        "--time-column",
        "time",
        "--mass-column",
        "weight",
        "--json",
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["windows"]["1"]["ep_max"] == pytest.approx(3.0, abs=1e-5)
    assert document["windows"]["19"]["ep_min"] == pytest.approx(-3 / 19, abs=1e-5)


def test_tab_separated_log(tmp_path: Path) -> None:
    t_s, mass = square_wave_log()
    rows = ["t_s\tbalance_g"] + [
        f"{float(t)}\t{float(m)!r}" for t, m in zip(t_s, mass, strict=True)
    ]
    path = write_csv(tmp_path / "log.tsv", rows)
    result = invoke_golden("--csv", str(path), "--rate", "10", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["windows"]["5"]["ep_max"] == pytest.approx(0.0, abs=1e-9)


def test_a_fine_log_is_resampled_and_says_so(tmp_path: Path) -> None:
    # 1-s samples of the golden mass (linear between grid points): same result, plus a note.
    t_s, mass = square_wave_log()
    t_fine = np.arange(0.0, 7201.0)
    mass_fine = np.interp(t_fine, t_s, mass)
    rows = ["t_s,balance_g"] + [
        f"{float(t)!r},{float(m)!r}" for t, m in zip(t_fine, mass_fine, strict=True)
    ]
    path = write_csv(tmp_path / "fine.csv", rows)
    table = invoke_golden("--csv", str(path), "--rate", "10")
    assert table.exit_code == 0, table.output
    assert "note: resampled 7201 balance samples" in " ".join(table.stdout.split())
    result = invoke_golden("--csv", str(path), "--rate", "10", "--json")
    document = json.loads(result.stdout)
    assert document["resampled"] is True
    assert "7201 balance samples" in document["resampling_note"]
    assert document["windows"]["11"]["ep_max"] == pytest.approx(3 / 11, abs=1e-9)


def test_options_change_the_analysis(golden_csv: Path) -> None:
    # S = 1 min, the first hour (constant r) at d = 1.0: A = 100·(0.998 − 1) = −0.2 %.
    result = invoke(
        "--csv",
        str(golden_csv),
        "--rate",
        "10",
        "--interval",
        "1min",
        "--density",
        "1.0",
        "--analysis-period",
        "0min-1h",
        "--windows",
        "1,2,5,11,19,31",
        "--json",
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["interval_min"] == 1.0
    assert document["analysis_period_min"] == [0.0, 60.0]
    assert document["mean_error_percent"] == pytest.approx(-0.2, abs=1e-9)
    assert document["windows"]["1"]["window_count"] == 60


def _bad(tmp_path: Path, *args: str) -> Result:
    before = snapshot(tmp_path)
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("medtwin: error: ")
    assert snapshot(tmp_path) == before  # nothing written
    return result


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.csv"
    result = _bad(tmp_path, "--csv", str(missing), "--rate", "5")
    assert f"{missing}: no such file" in result.stderr


def test_directory_instead_of_file(tmp_path: Path) -> None:
    result = _bad(tmp_path, "--csv", str(tmp_path), "--rate", "5")
    assert "is a directory" in result.stderr


def test_missing_column_lists_what_was_found(golden_csv: Path, tmp_path: Path) -> None:
    result = _bad(tmp_path, "--csv", str(golden_csv), "--rate", "10", "--mass-column", "mass")
    assert "line 1: no column 'mass' in the header; found 't_s', 'balance_g'" in result.stderr
    assert "--mass-column" in result.stderr


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--interval", "5 parsecs", "--interval: malformed duration '5 parsecs'"),
        ("--interval", "0s", "--interval: '0s' must be longer than 0 s"),
        ("--analysis-period", "60min", "--analysis-period: malformed analysis period '60min'"),
        ("--analysis-period", "2h-1h", "ends (60 min) before it starts (120 min)"),
        ("--analysis-period", "1h-2x", "--analysis-period: malformed duration '2x'"),
        ("--rate", "fast", "--rate: 'fast' is not a number; expected a value in mL/h"),
        ("--rate", "0", "--rate: '0' must be a finite number > 0 mL/h"),
        ("--density", "nan", "--density: 'nan' must be a finite number > 0 g/mL"),
        ("--evaporation", "-0.1", "--evaporation: '-0.1' must be a finite number >= 0 g/h"),
    ],
)
def test_malformed_options(
    golden_csv: Path, tmp_path: Path, option: str, value: str, message: str
) -> None:
    args = {"--csv": str(golden_csv), "--rate": "10", option: value}
    flat = [item for pair in args.items() for item in pair]
    result = _bad(tmp_path, *flat)
    assert message in result.stderr


def test_log_shorter_than_the_analysis_period(tmp_path: Path) -> None:
    t_s, mass = square_wave_log()
    rows = ["t_s,balance_g"] + [
        f"{float(t)!r},{float(m)!r}" for t, m in zip(t_s[:91], mass[:91], strict=True)
    ]
    path = write_csv(tmp_path / "short.csv", rows)
    result = _bad(tmp_path, "--csv", str(path), "--rate", "10")
    assert (
        f"{path}: the balance log covers 45 min but the analysis period 60–120 min needs "
        "120 min of data"
    ) in result.stderr


def test_non_numeric_cell_names_the_line(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "bad.csv", ["t_s,balance_g", "0,0.0", "30,0.08", "60,--", "90,0.24"]
    )
    result = _bad(tmp_path, "--csv", str(path), "--rate", "10")
    assert (
        f"{path}: line 4: column 'balance_g' is '--', expected a finite number in g"
        in result.stderr
    )


def test_short_row_and_empty_logs(tmp_path: Path) -> None:
    short = write_csv(tmp_path / "short_row.csv", ["t_s,balance_g", "0,0.0", "30"])
    assert "line 3: has 1 fields" in _bad(tmp_path, "--csv", str(short), "--rate", "1").stderr
    header_only = write_csv(tmp_path / "header.csv", ["t_s,balance_g"])
    assert "no data rows after the header on line 1" in (
        _bad(tmp_path, "--csv", str(header_only), "--rate", "1").stderr
    )
    empty = write_csv(tmp_path / "empty.csv", [""])
    assert "the file is empty" in _bad(tmp_path, "--csv", str(empty), "--rate", "1").stderr


def test_non_monotonic_time_is_bad_input(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "back.csv", ["t_s,balance_g", "0,0.0", "30,0.08", "20,0.16", "90,0.24"]
    )
    result = _bad(tmp_path, "--csv", str(path), "--rate", "10")
    assert "not strictly increasing: sample 2 is at 20.0 s" in result.stderr


def _golden_lines() -> list[str]:
    t_s, mass = square_wave_log()
    return ["t_s,balance_g"] + [
        f"{float(t)!r},{float(m)!r}" for t, m in zip(t_s, mass, strict=True)
    ]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=241),
            st.text(alphabet=',;\t"#.-+e0123456789nafi \r', max_size=12),
        ),
        max_size=4,
    ),
    st.integers(min_value=0, max_value=242),
)
def test_mutated_logs_give_a_result_or_one_clean_error(
    edits: list[tuple[int, str]], keep_lines: int
) -> None:
    # Whatever a damaged export looks like, the command either analyses it or exits 2
    # with one line naming the problem: never a traceback, never status 1.
    lines = _golden_lines()[:keep_lines]
    for index, text in edits:
        if index < len(lines):
            lines[index] = text
    with tempfile.TemporaryDirectory() as directory:
        path = write_csv(Path(directory) / "mutated.csv", lines)
        result = invoke_golden("--csv", str(path), "--rate", "10", "--json")
    assert result.exception is None or isinstance(result.exception, SystemExit)
    if result.exit_code == 0:
        assert set(json.loads(result.stdout)["windows"]) == set(EXPECTED_EP)
    else:
        assert result.exit_code == 2, result.output
        assert result.stdout == ""
        assert len(result.stderr.strip().splitlines()) == 1


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_escape_as_anything_but_configuration_error(raw: bytes) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "random.csv"
        path.write_bytes(b"t_s,balance_g\n" + raw)
        error: str | None = None
        try:
            t_s, mass = read_balance_csv(path)
        except ConfigurationError as exc:
            error = str(exc)
    if error is not None:
        assert error.startswith(f"{path}: ")
    else:
        assert t_s.shape == mass.shape
        assert np.isfinite(t_s).all()
        assert np.isfinite(mass).all()


def test_unbalanced_quote_is_a_clean_error(tmp_path: Path) -> None:
    rows = ["t_s,balance_g", '0,"0.0'] + ["30,0.1"] * 20000
    path = write_csv(tmp_path / "quote.csv", rows)
    result = _bad(tmp_path, "--csv", str(path), "--rate", "10")
    # The quote swallows the rest of the file into one cell, beyond csv's field limit.
    assert "line " in result.stderr
    assert "not a valid CSV row (field larger than field limit" in result.stderr


# --------------------------------------------------------------------------- gravimetry


def test_defaults_are_the_policy_and_the_standard_windows(golden_csv: Path) -> None:
    # The golden log is written at d = 0.998; read with the default policy (20 °C water,
    # air buoyancy: d = 0.997156 g/mL) its volumes are 0.998/0.997156 larger.
    result = invoke("--csv", str(golden_csv), "--rate", "10", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    policy = GravimetricPolicy()
    assert document["density_g_ml"] == policy.density_g_ml
    assert document["gravimetry"] == json.loads(json.dumps(policy.as_dict()))
    assert document["mean_error_percent"] == pytest.approx(
        100 * (0.998 / policy.density_g_ml - 1), abs=1e-9
    )
    assert list(document["windows"]) == ["2", "5", "11", "19", "31"]
    table = invoke("--csv", str(golden_csv), "--rate", "10")
    text = " ".join(table.stdout.split())  # rich wraps long lines at the terminal width
    assert "d = 0.997156 g/mL" in text
    assert "air buoyancy" in text


def test_water_temperature_and_no_buoyancy(golden_csv: Path) -> None:
    result = invoke(
        "--csv",
        str(golden_csv),
        "--rate",
        "10",
        "--water-temperature",
        "25",
        "--no-buoyancy",
        "--windows",
        "2,31",
        "--json",
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["density_g_ml"] == pytest.approx(0.9970470, abs=1e-7)  # Tanaka, 25 °C
    assert document["gravimetry"]["air_buoyancy"] is False
    assert list(document["windows"]) == ["2", "31"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--windows", "2,,5"), "--windows: malformed window list"),
        (("--windows", "2,2"), "--windows: window 2 min is listed twice"),
        (("--windows", "0"), "--windows: '0' must be a finite number > 0 min"),
        (("--water-temperature", "60"), "0–40 °C"),
    ],
)
def test_bad_gravimetry_and_window_options(
    golden_csv: Path, tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    result = _bad(tmp_path, "--csv", str(golden_csv), "--rate", "10", *args)
    assert message in result.stderr


def test_the_shipped_trace_reads_as_the_run_reads_it() -> None:
    # The shipped 5 mL/h trace: the CLI's default d is the one a run's analysis uses (the
    # twin's balance: 20 °C, air buoyancy), so A is −1.051 %, not the −1.134 % that
    # d = 0.998 without buoyancy gave.
    trace = Path(__file__).parents[2] / "hil" / "data" / "traces" / "syringe-5mlh-2h.csv"
    result = invoke("--csv", str(trace), "--rate", "5", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["density_g_ml"] == BalanceParams().grams_per_ml
    assert document["mean_error_percent"] == pytest.approx(-1.0506, abs=1e-4)
    legacy = invoke("--csv", str(trace), "--rate", "5", "--density", "0.998", "--json")
    assert json.loads(legacy.stdout)["mean_error_percent"] == pytest.approx(-1.1343, abs=1e-4)


@pytest.mark.slow
def test_analyze_of_a_runs_exported_balance_channel_gives_the_runs_a_and_ep(
    tmp_path: Path, make_run: Callable[..., RunResult]
) -> None:
    db = f"sqlite:///{tmp_path / 'runs.db'}"
    result = make_run(db, "emulated-nominal", "iec-flow-5mlh")
    export = tmp_path / "run.csv"
    exported = CliRunner().invoke(
        main, ["export", str(result.run_id), "--db", db, "--format", "csv", "--out", str(export)]
    )
    assert exported.exit_code == 0, exported.output
    run_verdicts = {(v.source, v.name): v for v in result.verdicts}
    for source in ("real", "twin"):
        analysed = invoke(
            "--csv",
            str(export),
            "--channel",
            "balance.mass_g",
            "--source",
            source,
            "--rate",
            "5",
            "--json",
        )
        assert analysed.exit_code == 0, analysed.output
        document = json.loads(analysed.stdout)
        run_a = run_verdicts[(source, "mean_flow_error_a")]
        assert document["mean_error_percent"] == pytest.approx(run_a.value, rel=1e-12, abs=1e-12)
        assert set(document["windows"]) == {"2", "5", "11", "19", "31"}
        for key, window in document["windows"].items():
            for which in ("max", "min"):
                verdict = run_verdicts[(source, f"ep_{which}_{key}min")]
                assert window[f"ep_{which}"] == pytest.approx(verdict.value, rel=1e-12, abs=1e-12)
        # The d both used is printed and stored beside the verdicts.
        assert f"d = {document['density_g_ml']:.6f} g/mL" in run_a.note
    with RunStore(db) as store:
        stored = store.load_run(result.run_id)
    records = {(str(v.source), v.measurement): v for v in stored.verdicts}
    ep = records[("real", "ep_max_2min")]
    assert str(ep.outcome) == "INFO"  # stored as disclosed, not as a pass
    assert "d = 0.997156 g/mL (20 °C, air buoyancy)" in ep.note
    analysis = stored.summary["procedures"][0]["analysis"]["real"]
    assert analysis["gravimetry"]["density_g_ml"] == analysis["density_g_ml"]
