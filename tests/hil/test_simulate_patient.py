"""``medtwin simulate patient`` as a user runs it, and ``simulate``'s two forms."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from medtwin.device_models.patient import pk
from medtwin.device_models.patient.demographics import Demographics
from medtwin.hil.cli import main
from medtwin.hil.commands.simulate_schedule import schedule_from_scenario

LEADING = [
    "t_s",
    "rate_ml_h",
    "dose_mg_min",
    "cp",
    "ce",
    "bis",
    "hr_bpm",
    "map_mmhg",
    "rr_min",
    "spo2_percent",
]
PROPOFOL = [
    "--drug",
    "propofol",
    "--model",
    "schnider",
    "--age",
    "53",
    "--weight",
    "77",
    "--height",
    "177",
    "--sex",
    "male",
    "--concentration",
    "10",
]

HERE = Path(__file__).resolve().parents[2]


def _read(path: Path) -> tuple[list[str], dict[str, np.ndarray]]:
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    header = rows[0]
    columns = {}
    for i, name in enumerate(header):
        try:
            columns[name] = np.array([float(r[i]) for r in rows[1:]])
        except ValueError:
            columns[name] = np.array([r[i] for r in rows[1:]])
    return header, columns


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["simulate", "patient", *args])
    return result.exit_code, result.output


# --------------------------------------------------------------------------- simulate pump


def test_simulate_without_a_subcommand_is_simulate_pump(tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["--rate", "5", "--duration", "30min", "--interval", "1min", "--seed", "4"]
    old, new = tmp_path / "old.csv", tmp_path / "new.csv"
    first = runner.invoke(main, ["simulate", *args, "--out", str(old)])
    second = runner.invoke(main, ["simulate", "pump", *args, "--out", str(new)])
    assert first.exit_code == 0, first.output
    assert second.exit_code == 0, second.output
    assert old.read_bytes() == new.read_bytes()
    assert old.read_text().splitlines()[0].startswith("t_s,rate_set_ml_h,delivered_ml")


def test_simulate_help_lists_both_subcommands() -> None:
    result = CliRunner().invoke(main, ["simulate", "--help"])
    assert result.exit_code == 0
    assert "pump" in result.output
    assert "patient" in result.output


# --------------------------------------------------------------------------- scenario


def test_rate_schedule_of_the_rate_steps_example() -> None:
    # 2 mL/h, 10 mL/h at 20 min, a 1 mL bolus at 60 mL/h at 40 min (1 min, the pump
    # stopped by its target, then 1 s later back to 10 mL/h), 5 mL/h at 50 min, stop at
    # 85 min; the tare and the occlusion do not move the rate.
    schedule = schedule_from_scenario(HERE / "examples" / "scenarios" / "rate-steps.toml")
    assert schedule.start_s.tolist() == [0.0, 1200.0, 2400.0, 2460.0, 2461.0, 3000.0, 5100.0]
    assert schedule.rate_ml_h.tolist() == [2.0, 10.0, 60.0, 0.0, 10.0, 5.0, 0.0]
    assert schedule.duration_s == 5400.0
    expected = 2 * 1200 / 3600 + 10 * 1200 / 3600 + 1.0 + 10 * 539 / 3600 + 5 * 2100 / 3600
    assert schedule.volume_ml() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("name", ["rate-steps", "bolus", "remifentanil-infusion"])
def test_the_ideal_pump_delivers_what_the_pump_twin_counts(name: str) -> None:
    # The same planned commands drive the pump twin (stepper, volume target, bolus
    # return): its own infused-volume counter agrees with the ideal pump's volume at every
    # 10 s to within 2 µL, so the schedule's starts, stops and targets are the twin's.
    from medtwin.device_models.schedule import Command, Schedule
    from medtwin.device_models.system import SystemParams, simulate
    from medtwin.hil.actions import ACTIONS
    from medtwin.hil.commands.simulate_schedule import pump_commands
    from medtwin.hil.config import load_scenario

    scenario = load_scenario(HERE / "examples" / "scenarios" / f"{name}.toml")
    commands = Schedule()
    for step in pump_commands(scenario):
        twin_input = ACTIONS[step.action].twin_input(step.value)
        if twin_input is not None:
            commands.add(Command(step.t_s, *twin_input))
    t = np.arange(0.0, scenario.duration + 1.0, 10.0)
    counted = simulate(SystemParams.nominal("syringe"), commands, t).row(0)["pump_infused_ml"]
    ideal = schedule_from_scenario(scenario)
    ends = np.append(ideal.start_s[1:], np.inf)
    span = np.clip(np.minimum(ends[None, :], t[:, None]) - ideal.start_s[None, :], 0.0, None)
    volume = span @ ideal.rate_ml_h / 3600.0
    assert np.max(np.abs(counted - volume)) < 2e-3
    assert volume[-1] == pytest.approx(ideal.volume_ml(), rel=1e-12)


SCENARIO = """
name = "propofol-steps"
duration = "30min"

[sampling]
pump = "10s"

[[steps]]
at = "0s"
action = "set_rate"
rate_ml_h = 60.0

[[steps]]
at = "0s"
action = "start"

[[steps]]
at = "5min"
action = "set_rate"
rate_ml_h = 20.0

[[steps]]
at = "20min"
action = "stop"
"""


def test_a_stopped_pump_restarts_its_target_count(tmp_path: Path) -> None:
    # A 2 mL target at 12 mL/h stops the pump at 10 min; started again at 15 min, it counts
    # its target from zero and stops at 25 min.
    path = tmp_path / "s.toml"
    path.write_text(
        SCENARIO.replace('"30min"', '"40min"')
        .replace("rate_ml_h = 60.0", "rate_ml_h = 12.0")
        .replace(
            '[[steps]]\nat = "5min"\naction = "set_rate"\nrate_ml_h = 20.0',
            '[[steps]]\nat = "0s"\naction = "set_target"\nvolume_ml = 2.0\n\n'
            '[[steps]]\nat = "15min"\naction = "start"',
        )
        .replace('at = "20min"\naction = "stop"', 'at = "30min"\naction = "stop"')
    )
    schedule = schedule_from_scenario(path)
    assert schedule.start_s.tolist() == [0.0, 600.0, 900.0, 1500.0]
    assert schedule.rate_ml_h.tolist() == [12.0, 0.0, 12.0, 0.0]


# --------------------------------------------------------------------------- the CSV


def _simulate(
    tmp_path: Path, *args: str, name: str = "out.csv"
) -> tuple[list[str], dict[str, np.ndarray], dict[str, Any]]:
    out = tmp_path / name
    code, output = _run(*args, "--out", str(out), "--json")
    assert code == 0, output
    header, columns = _read(out)
    return header, columns, json.loads(output)


def _pk_direct(
    drug: str,
    model: str,
    who: Demographics,
    t: np.ndarray,
    starts: list[float],
    rates: list[float],
    conc: float,
) -> pk.PKResult:
    params = pk.pk_params(drug, model, who)
    return pk.simulate(params, t, starts, pk.dose_rate_mg_min(rates, conc))


def test_propofol_schnider_columns_units_and_concentrations(tmp_path: Path) -> None:
    header, col, doc = _simulate(
        tmp_path, *PROPOFOL, "--rate", "20", "--duration", "60min", "--interval", "10s"
    )
    assert header[: len(LEADING)] == LEADING
    assert list(doc["columns"]) == header
    assert doc["columns"]["cp"] == doc["columns"]["ce"] == "µg/mL"
    assert doc["columns"]["rate_ml_h"] == "mL/h"
    assert doc["columns"]["dose_mg_min"] == "mg/min"
    assert doc["rows"] == 361
    np.testing.assert_array_equal(col["t_s"], np.arange(361) * 10.0)
    np.testing.assert_array_equal(col["rate_ml_h"], 20.0)
    np.testing.assert_allclose(col["dose_mg_min"], 20.0 * 10.0 / 60.0, rtol=1e-15)
    who = Demographics(age_y=53, weight_kg=77, height_cm=177, sex="male")
    direct = _pk_direct("propofol", "schnider", who, col["t_s"], [0.0], [20.0], 10.0)
    # The CSV holds the PK module's own exact solution (the patient model steps a finer
    # grid, so the floating-point rounding differs, nothing else).
    np.testing.assert_allclose(col["cp"], direct.cp[0], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(col["ce"], direct.ce[0], rtol=1e-9, atol=1e-12)
    assert 1.0 < col["cp"][-1] < 2.0  # 43 µg/kg/min for an hour: ~1.3 µg/mL
    # the drug moves BIS down from the awake 97.4, monotonically with ce
    assert col["bis"][0] == pytest.approx(97.4)
    assert np.all(np.diff(col["bis"]) <= 1e-12)
    assert doc["max_cp"] == pytest.approx(float(np.max(direct.cp)), rel=1e-9)
    assert doc["infused_ml"] == pytest.approx(20.0)


def test_remifentanil_minto_in_ng_per_ml(tmp_path: Path) -> None:
    args = ["--drug", "remifentanil", "--model", "minto", "--age", "40", "--weight", "70"]
    args += ["--height", "170", "--sex", "female", "--concentration", "0.05", "--rate", "21"]
    header, col, doc = _simulate(tmp_path, *args, "--duration", "20min", "--interval", "30s")
    assert header[: len(LEADING)] == LEADING
    assert doc["columns"]["cp"] == doc["columns"]["ce"] == "ng/mL"
    who = Demographics(age_y=40, weight_kg=70, height_cm=170, sex="female")
    direct = _pk_direct("remifentanil", "minto", who, col["t_s"], [0.0], [21.0], 0.05)
    np.testing.assert_allclose(col["cp"], direct.cp[0], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(col["ce"], direct.ce[0], rtol=1e-9, atol=1e-12)
    # 17.5 µg/min into a clearance of ~2.5 L/min approaches ~7 ng/mL: ng/mL, not mg/L
    assert 3.0 < col["cp"][-1] < 12.0


def test_no_drug_gives_the_vital_signs_only(tmp_path: Path) -> None:
    header, col, doc = _simulate(tmp_path, "--duration", "5min", "--age", "30", "--sex", "female")
    assert header[:6] == ["t_s", "bis", "hr_bpm", "map_mmhg", "rr_min", "spo2_percent"]
    assert not {"rate_ml_h", "dose_mg_min", "cp", "ce"} & set(header)
    assert doc["drug"] is None
    np.testing.assert_allclose(col["bis"], 97.4)  # awake
    assert 40 < np.mean(col["hr_bpm"]) < 120
    assert 90 < np.mean(col["spo2_percent"]) <= 100
    assert np.all(col["apnoea"] == 0)


def test_the_seed_draws_the_vitals_not_the_drug(tmp_path: Path) -> None:
    base = [*PROPOFOL, "--rate", "20", "--duration", "10min"]
    _, a, _ = _simulate(tmp_path, *base, "--seed", "1", name="a.csv")
    _simulate(tmp_path, *base, "--seed", "1", name="b.csv")
    _, c, _ = _simulate(tmp_path, *base, "--seed", "2", name="c.csv")
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    np.testing.assert_array_equal(a["cp"], c["cp"])
    assert not np.array_equal(a["hr_bpm"], c["hr_bpm"])


@pytest.mark.parametrize("monitor", ["masimo", "nonin", "generic"])
def test_monitor_adds_its_view_beside_the_patients_true_values(
    tmp_path: Path, monitor: str
) -> None:
    base = [*PROPOFOL, "--rate", "20", "--duration", "10min", "--interval", "5s"]
    plain_header, plain, _ = _simulate(tmp_path, *base, name="plain.csv")
    header, col, doc = _simulate(tmp_path, *base, "--monitor", monitor, name="seen.csv")
    assert header[: len(plain_header)] == plain_header
    assert header[len(plain_header) :] == [
        "hr_displayed",
        "spo2_displayed",
        "pi_displayed",
        "alarms",
    ]
    for name in plain_header:  # the patient is the same patient with a monitor attached
        np.testing.assert_array_equal(col[name], plain[name])
    settled = col["t_s"] >= 60.0
    shown_hr = col["hr_displayed"][settled]
    assert np.all(np.isfinite(shown_hr))
    assert np.all(shown_hr == np.round(shown_hr))  # monitors show integers
    assert np.max(np.abs(shown_hr - col["hr_bpm"][settled])) < 10.0
    assert np.max(np.abs(col["spo2_displayed"][settled] - col["spo2_percent"][settled])) < 3.0
    assert doc["monitor"] == monitor
    assert doc["alarms"] == []
    assert set(col["alarms"].tolist()) == {""}


SCENARIO_PATIENT = """
[patient]
drug = "remifentanil"
model = "minto"
concentration_mg_ml = 0.05
age_y = 40
weight_kg = 70
height_cm = 170
sex = "male"
"""


def test_scenario_rate_schedule_and_patient_table(tmp_path: Path) -> None:
    scenario = tmp_path / "s.toml"
    scenario.write_text(SCENARIO.replace("60.0", "42.0").replace("20.0", "21.0") + SCENARIO_PATIENT)
    header, col, doc = _simulate(tmp_path, "--scenario", str(scenario), "--interval", "20s")
    assert header[: len(LEADING)] == LEADING
    assert doc["duration_s"] == 1800.0  # the scenario's
    assert doc["drug"] == "remifentanil"
    expected_rate = np.where(col["t_s"] < 300, 42.0, np.where(col["t_s"] < 1200, 21.0, 0.0))
    np.testing.assert_array_equal(col["rate_ml_h"], expected_rate)
    who = Demographics(age_y=40, weight_kg=70, height_cm=170, sex="male")
    starts, rates = [0.0, 300.0, 1200.0], [42.0, 21.0, 0.0]
    direct = _pk_direct("remifentanil", "minto", who, col["t_s"], starts, rates, 0.05)
    np.testing.assert_allclose(col["cp"], direct.cp[0], rtol=1e-9, atol=1e-12)
    assert doc["infused_ml"] == pytest.approx(42 * 300 / 3600 + 21 * 900 / 3600)
    # an option given on the command line wins over the scenario's [patient] table
    _, older, _ = _simulate(tmp_path, "--scenario", str(scenario), "--age", "80", name="o.csv")
    older_direct = _pk_direct(
        "remifentanil",
        "minto",
        Demographics(80, 70, 170, "male"),
        older["t_s"],
        starts,
        rates,
        0.05,
    )
    np.testing.assert_allclose(older["cp"], older_direct.cp[0], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ("age_y = 40", "patient.age_y", "outside the remifentanil minto model's range"),
        ('model = "minto"', "patient.model", "unknown remifentanil model 'eleveld'"),
    ],
)
def test_a_bad_patient_table_is_named_by_its_file_and_field(
    tmp_path: Path, change: str, field: str, message: str
) -> None:
    bad = {"age_y = 40": "age_y = 90", 'model = "minto"': 'model = "eleveld"'}[change]
    scenario = tmp_path / "s.toml"
    scenario.write_text(SCENARIO + SCENARIO_PATIENT.replace(change, bad))
    out = tmp_path / "never.csv"
    code, output = _run("--scenario", str(scenario), "--out", str(out))
    assert code == 2, output
    assert output.startswith(f"medtwin: error: {scenario}:{field}: ")
    assert message in output
    assert not out.exists()
    # the option that replaces the table's value takes the blame, and can fix it
    option = {"patient.age_y": ["--age", "50"], "patient.model": ["--model", "minto"]}[field]
    code, output = _run("--scenario", str(scenario), *option, "--out", str(out))
    assert code == 0, output


def test_scenario_without_patient_table_takes_the_drug_from_the_options(tmp_path: Path) -> None:
    scenario = tmp_path / "s.toml"
    scenario.write_text(SCENARIO)
    _, col, doc = _simulate(tmp_path, *PROPOFOL, "--scenario", str(scenario), "--duration", "10min")
    assert doc["duration_s"] == 600.0  # --duration cuts the scenario short
    np.testing.assert_array_equal(col["rate_ml_h"], np.where(col["t_s"] < 300, 60.0, 20.0))


def test_alarms_column_holds_the_alarm_signals_the_summary_times(tmp_path: Path) -> None:
    # Remifentanil at 42 mL/h of 50 µg/mL slows breathing enough for SpO2 to fall below the
    # generic monitor's low limit: an SpO2 alarm with its t1 <= t2 <= t3.
    scenario = tmp_path / "s.toml"
    scenario.write_text(SCENARIO.replace("60.0", "42.0").replace("20.0", "21.0") + SCENARIO_PATIENT)
    _, col, doc = _simulate(tmp_path, "--scenario", str(scenario), "--monitor", "generic")
    signalled = [a for a in doc["alarms"] if a["t3_s"] is not None]
    assert any(a["condition"] == "spo2_low" for a in signalled)
    for alarm in signalled:
        assert alarm["t1_s"] <= alarm["t2_s"] <= alarm["t3_s"]
        end = np.inf if alarm["t_end_s"] is None else alarm["t_end_s"]
        on = (col["t_s"] >= alarm["t3_s"]) & (col["t_s"] < end)
        listed = np.array([alarm["condition"] in cell.split(";") for cell in col["alarms"]])
        assert on.any()
        assert np.all(listed[on])
    sounding = np.array([bool(cell) for cell in col["alarms"]])
    assert not sounding[col["t_s"] < min(a["t3_s"] for a in signalled)].any()


EVENTS = """
[[events]]
kind = "desaturation"
at_s = 120
to_percent = 82
duration_s = 120

[[events]]
kind = "sensor_off"
at_s = 400
duration_s = 60
"""


def test_events_file_shapes_the_patient_and_the_monitor_alarms(tmp_path: Path) -> None:
    events = tmp_path / "events.toml"
    events.write_text(EVENTS)
    args = ["--duration", "10min", "--interval", "5s", "--monitor", "masimo"]
    _, col, doc = _simulate(tmp_path, *args, "--events", str(events))
    _, calm, _ = _simulate(tmp_path, *args, name="calm.csv")
    t = col["t_s"]
    assert np.min(col["spo2_percent"][(t > 180) & (t < 240)]) < 86.0
    assert np.min(calm["spo2_percent"]) > 90.0
    np.testing.assert_array_equal(col["sensor_off"], ((t >= 400) & (t < 460)).astype(float))
    assert np.all(np.isnan(col["spo2_displayed"][(t >= 410) & (t < 460)]))  # dashes
    by_condition = {a["condition"]: a for a in doc["alarms"]}
    assert set(by_condition) == {"spo2_low", "spo2_sensor_off"}
    low = by_condition["spo2_low"]
    assert 120.0 <= low["t1_s"] <= low["t2_s"] <= low["t3_s"] < 240.0
    assert by_condition["spo2_sensor_off"]["t1_s"] == 400.0
    assert "spo2_sensor_off" in col["alarms"][t == 420.0][0].split(";")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[events]]\nkind = "seizure"\nat_s = 1', "events[0].kind = 'seizure'"),
        ('[[events]]\nkind = "desaturation"\nat_s = 1\nto_percent = 200', "events[0].to_percent"),
        ("[[event]]\nat_s = 1", "unknown key 'event'"),
        ("[[events]\n", "cannot read the events file"),
    ],
)
def test_a_bad_events_file_exits_2_naming_it(tmp_path: Path, text: str, message: str) -> None:
    events = tmp_path / "events.toml"
    events.write_text(text)
    out = tmp_path / "never.csv"
    code, output = _run("--duration", "1min", "--events", str(events), "--out", str(out))
    assert code == 2, output
    assert output.startswith(f"medtwin: error: {events}: ")
    assert message in output
    assert not out.exists()


def test_help_states_the_units() -> None:
    result = CliRunner().invoke(main, ["simulate", "patient", "--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "µg/mL for propofol" in text
    assert "ng/mL for remifentanil" in text
    assert "mL/h" in text


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("change", "option", "message"),
    [
        ({"--drug": "ketamine"}, "--drug", "unknown drug 'ketamine'"),
        ({"--model": "eleveld"}, "--model", "unknown propofol model 'eleveld'"),
        ({"--age": "90"}, "--age", "outside the propofol schnider model's range [25, 81]"),
        ({"--age": "-3"}, "--age", "age_y = -3"),
        ({"--weight": "20"}, "--weight", "weight_kg = 20"),
        ({"--height": "120"}, "--height", "height_cm = 120"),
        ({"--sex": "other"}, "--sex", "expected male or female"),
        ({"--rate": "-5"}, "--rate", "must be >= 0"),
        ({"--concentration": "0"}, "--concentration", "must be > 0"),
        ({"--duration": "soon"}, "--duration", "malformed duration 'soon'"),
        ({"--interval": "0s"}, "--interval", "must be > 0"),
        ({"--model": None}, "--model", "marsh, schnider"),
        ({"--sex": None}, "--sex", "give --sex"),
    ],
)
def test_bad_input_exits_2_naming_the_option_and_writes_nothing(
    tmp_path: Path, change: dict[str, str | None], option: str, message: str
) -> None:
    given: dict[str, str | None] = dict(zip(PROPOFOL[::2], PROPOFOL[1::2], strict=True))
    given.update({"--rate": "20", "--duration": "10min"})
    given.update(change)
    args = [x for k, v in given.items() if v is not None for x in (k, v)]
    out = tmp_path / "never.csv"
    code, output = _run(*args, "--out", str(out))
    assert code == 2, output
    assert output.startswith(f"medtwin: error: {option}: ")
    assert message in output
    assert len(output.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--rate", "5"], "--rate"),
        (["--concentration", "10"], "--concentration"),
        (["--model", "minto"], "--model"),
    ],
)
def test_drug_options_need_a_drug(tmp_path: Path, args: list[str], option: str) -> None:
    out = tmp_path / "never.csv"
    code, output = _run(*args, "--duration", "1min", "--out", str(out))
    assert code == 2, output
    assert output.startswith(f"medtwin: error: {option}: needs --drug")
    assert not out.exists()


def test_rate_and_scenario_together_are_refused(tmp_path: Path) -> None:
    scenario = tmp_path / "s.toml"
    scenario.write_text(SCENARIO)
    out = tmp_path / "never.csv"
    code, output = _run(*PROPOFOL, "--rate", "5", "--scenario", str(scenario), "--out", str(out))
    assert code == 2, output
    assert "--rate" in output
    assert "not both" in output
    assert not out.exists()


def test_a_malformed_scenario_names_its_field(tmp_path: Path) -> None:
    scenario = tmp_path / "s.toml"
    scenario.write_text(SCENARIO.replace("rate_ml_h = 20.0", "rate_ml_h = -20.0"))
    out = tmp_path / "never.csv"
    code, output = _run(*PROPOFOL, "--scenario", str(scenario), "--out", str(out))
    assert code == 2, output
    assert f"{scenario}:steps[2].rate_ml_h" in output
    assert not out.exists()


def test_missing_out_and_missing_directory(tmp_path: Path) -> None:
    code, output = _run(*PROPOFOL, "--rate", "20", "--duration", "1min")
    assert code == 2
    assert "--out" in output
    code, output = _run(
        *PROPOFOL, "--rate", "20", "--duration", "1min", "--out", str(tmp_path / "no" / "x.csv")
    )
    assert code == 2
    assert "--out: directory" in output
    assert "does not exist" in output
    assert list(tmp_path.iterdir()) == []
