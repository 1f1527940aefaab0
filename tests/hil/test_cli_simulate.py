"""``medtwin simulate`` as a user runs it."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from medtwin.hil.cli import main

REQUIRED = [
    "t_s",
    "rate_set_ml_h",
    "delivered_ml",
    "flow_ml_h",
    "line_pressure_mmhg",
    "occlusion_alarm",
    "balance_g",
    "balance_stable",
]


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_simulate_writes_the_documented_csv(tmp_path: Path) -> None:
    out = tmp_path / "run.csv"
    result = CliRunner().invoke(
        main,
        [
            "simulate",
            "--pump",
            "syringe",
            "--syringe",
            "BD Plastipak 50 mL",
            "--rate",
            "5",
            "--duration",
            "2h",
            "--interval",
            "30s",
            "--occlude-at",
            "1h30m",
            "--release-at",
            "1h50m",
            "--seed",
            "3",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    rows = _read(out)
    assert list(rows[0])[: len(REQUIRED)] == REQUIRED
    assert len(rows) == 241
    assert float(rows[-1]["t_s"]) == 7200.0
    # steady flow in the second hour before the occlusion
    flows = [float(r["flow_ml_h"]) for r in rows if 3600 < float(r["t_s"]) <= 5400]
    assert sum(flows) / len(flows) == pytest.approx(5.0, rel=1e-3)
    alarm = [r for r in rows if r["occlusion_alarm"] == "1"]
    assert alarm
    assert 5400 < float(alarm[0]["t_s"]) < 6600
    assert {r["balance_stable"] for r in rows} <= {"0", "1"}
    # after release the stored bolus reaches the balance
    assert float(rows[-1]["delivered_ml"]) > float(rows[220]["delivered_ml"])


def test_volumetric_and_json_summary(tmp_path: Path) -> None:
    out = tmp_path / "v.csv"
    result = CliRunner().invoke(
        main,
        [
            "simulate",
            "--pump",
            "volumetric",
            "--rate",
            "25",
            "--duration",
            "30min",
            "--out",
            str(out),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["rows"] == 61
    assert doc["out"] == str(out)
    assert doc["pump_infused_ml"] == pytest.approx(12.5, rel=1e-3)


def test_set_overrides_a_parameter(tmp_path: Path) -> None:
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    runner = CliRunner()
    base = ["simulate", "--rate", "5", "--duration", "1h", "--interval", "10min"]
    assert runner.invoke(main, [*base, "--out", str(a)]).exit_code == 0
    # a syringe narrower than the one programmed in the pump (26.59 mm) under-delivers
    mis_sized = [
        "--set",
        "pump.syringe.inner_diameter_mm=26.0",
        "--set",
        "pump.configured_inner_diameter_mm=26.59",
    ]
    assert runner.invoke(main, [*base, *mis_sized, "--out", str(b)]).exit_code == 0
    delivered_a = float(_read(a)[-1]["delivered_ml"])
    delivered_b = float(_read(b)[-1]["delivered_ml"])
    assert delivered_b / delivered_a == pytest.approx((26.0 / 26.59) ** 2, rel=5e-3)


def test_list_params_json() -> None:
    result = CliRunner().invoke(main, ["simulate", "--list-params", "--json"])
    assert result.exit_code == 0
    names = {p["name"]: p for p in json.loads(result.output)}
    assert names["pump.drive.lead_mm"]["unit"] == "mm"
    assert names["line.resistance_mmhg_per_ml_h"]["default"] == 2.0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--syringe", "BD Foo 50 mL"], "unknown syringe 'BD Foo 50 mL'"),
        (["--set", "pump.drive.nope=3"], "unknown parameter 'pump.drive.nope'"),
        (["--set", "pump.drive.lead_mm"], "expected NAME=VALUE"),
        (["--duration", "2 fortnights"], "malformed duration '2 fortnights'"),
        (["--interval", "soon"], "malformed duration 'soon'"),
        (["--rate", "100000"], "exceeds this pump's maximum"),
    ],
)
def test_bad_input_exits_2_names_it_and_writes_nothing(
    tmp_path: Path, args: list[str], message: str
) -> None:
    out = tmp_path / "never.csv"
    base = {"--rate": "5", "--duration": "1h"}
    for i in range(0, len(args), 2):
        base.pop(args[i], None)
    flat = [x for kv in base.items() for x in kv]
    result = CliRunner().invoke(main, ["simulate", *flat, *args, "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []
