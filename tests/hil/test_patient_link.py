"""The pump drives the patient: a scenario's [patient] table, checked before anything is
written, and the patient's channels stored for the real delivery and the twin's.

Runs go through real protocol bytes on ptys (NE-1000, MT-SICS, Modbus RTU) on the virtual
clock; the PK reference is the PK module's exact piecewise-constant solution, applied to the
flows the run stored.
"""

from __future__ import annotations

import csv
import dataclasses
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from medtwin.device_models.patient.pd import SpO2Params, drug_effects
from medtwin.device_models.patient.pk import DRUGS, MODELS, simulate
from medtwin.device_models.patient.respiration import (
    RespirationParams,
    simulate_respiration,
    ventilatory_drive,
)
from medtwin.device_models.patient.vitals import baseline_for
from medtwin.device_models.schedule import CommandKind
from medtwin.drivers.errors import ConfigurationError
from medtwin.hil.cli import main
from medtwin.hil.config import load_bench, load_scenario, scenario_from_text
from medtwin.hil.packaged import bench_path, scenario_path
from medtwin.hil.patient_link import PatientLink, plan_patient
from medtwin.hil.plan import RunPlan
from medtwin.hil.runner import RunResult
from medtwin.hil.store import RunStore

SCENARIO = "remifentanil-infusion"
QUANTITIES = ("dose_mg_min", "cp", "ce", "bis", "map_mmhg", "hr_bpm", "rr_min")
PATIENT = """
[patient]
drug = "remifentanil"
model = "minto"
concentration_mg_ml = 0.05
age_y = 40
weight_kg = 70
height_cm = 170
sex = "male"
"""


def _scenario_text(replace: tuple[str, str] | None = None, extra: str = "") -> str:
    text = scenario_path(SCENARIO).read_text(encoding="utf-8")
    if replace is not None:
        assert replace[0] in text, replace
        text = text.replace(*replace)
    return text + extra


# --------------------------------------------------------------------------- the table


def test_shipped_scenario_loads_and_plans_on_both_shipped_benches() -> None:
    scenario = load_scenario(scenario_path(SCENARIO))
    assert scenario.patient is not None
    assert scenario.patient.drug == "remifentanil"
    for bench in ("emulated-nominal", "emulated-drift"):
        plan = RunPlan.of(load_bench(bench_path(bench)), scenario)
        assert plan.patient is not None
        assert (plan.patient.pump, plan.patient.source) == ("pump", "balance")
        assert {f"patient.{q}" for q in QUANTITIES} <= set(plan.specs)


def test_a_scenario_without_patient_plans_no_patient_channels() -> None:
    plan = RunPlan.of(
        load_bench(bench_path("emulated-nominal")), load_scenario(scenario_path("iec-flow-5mlh"))
    )
    assert plan.patient is None
    assert not [name for name in plan.specs if name.startswith("patient.")]


@pytest.mark.parametrize(
    ("replace", "field", "message"),
    [
        (
            ('drug = "remifentanil"', 'drug = "ketamine"'),
            "patient.drug",
            "'propofol' or 'remifentanil'",
        ),
        (
            ("concentration_mg_ml = 0.05", "concentration_mg_ml = 0"),
            "patient.concentration_mg_ml",
            "greater than 0",
        ),
        (("age_y = 40", "age_y = 140"), "patient.age_y", "age_y = 140.0 is outside [0.0, 120.0]"),
        (("weight_kg = 70", "weight_kg = 0.1"), "patient.weight_kg", "outside [0.5, 300.0]"),
        (('sex = "male"', 'sex = "m"'), "patient.sex", "'male' or 'female'"),
        (("age_y = 40", "agee = 40"), "patient.agee", "did you mean 'age_y'?"),
        (('model = "minto"\n', ""), "patient.model", "required field is missing"),
        (
            ('delivery = "auto"', 'delivery = "scale"'),
            "patient.delivery",
            "'auto', 'balance' or 'pump'",
        ),
    ],
    ids=["drug", "concentration", "age", "weight", "sex", "misspelt", "missing-model", "delivery"],
)
def test_table_errors_name_file_and_field_when_loaded(
    replace: tuple[str, str], field: str, message: str
) -> None:
    with pytest.raises(ConfigurationError) as info:
        scenario_from_text(_scenario_text(replace), source="s.toml")
    assert f"s.toml:{field}:" in str(info.value)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("replace", "field", "message"),
    [
        (
            ('pump = "pump"', 'pump = "syringe-driver"'),
            "patient.pump",
            "no device 'syringe-driver'",
        ),
        (
            ('pump = "pump"', 'pump = "balance"'),
            "patient.pump",
            "'balance' is a balance, not a pump",
        ),
        (
            ('model = "minto"', 'model = "mintoo"'),
            "patient.model",
            "model = 'mintoo': remifentanil models are ['minto']",
        ),
        (
            ("age_y = 40", "age_y = 90"),
            "patient.age_y",
            "outside the remifentanil minto model's range [20, 85]",
        ),
        (('drug = "remifentanil"', 'drug = "propofol"'), "patient.model", "propofol models"),
        (
            ('balance = "5s"\n', ""),
            "patient.delivery",
            "'balance', which [sampling] does not sample",
        ),
        (
            ("[sampling]", '[tolerances."patient.cpp"]\nabs_tol = 1\n[sampling]'),
            "tolerances.patient.cpp",
            "no channel 'patient.cpp'",
        ),
    ],
    ids=[
        "unknown-device",
        "not-a-pump",
        "unknown-model",
        "outside-model-range",
        "model-of-another-drug",
        "source-not-sampled",
        "unknown-channel",
    ],
)
def test_plan_errors_exit_2_name_file_and_field_and_create_no_database(
    tmp_path: Path,
    write_toml: Callable[[Path, str, str], Path],
    replace: tuple[str, str],
    field: str,
    message: str,
) -> None:
    scenario = write_toml(tmp_path, "scenario.toml", _scenario_text(replace))
    db = tmp_path / "runs.db"
    result = CliRunner().invoke(
        main, ["run", str(bench_path("emulated-nominal")), str(scenario), "--db", f"sqlite:///{db}"]
    )
    assert result.exit_code == 2, result.output
    assert f"{scenario}:{field}" in result.output
    assert message in result.output
    assert not db.exists()


def test_load_error_exits_2_and_creates_no_database(
    tmp_path: Path, write_toml: Callable[[Path, str, str], Path]
) -> None:
    scenario = write_toml(tmp_path, "scenario.toml", _scenario_text(("age_y = 40", "age_y = -1")))
    db = tmp_path / "runs.db"
    result = CliRunner().invoke(
        main, ["run", str(bench_path("emulated-nominal")), str(scenario), "--db", f"sqlite:///{db}"]
    )
    assert result.exit_code == 2, result.output
    assert f"{scenario}:patient.age_y" in result.output
    assert not db.exists()


def test_balance_delivery_on_a_bench_without_a_balance_is_refused(
    tmp_path: Path, write_toml: Callable[[Path, str, str], Path]
) -> None:
    text = bench_path("emulated-nominal").read_text(encoding="utf-8")
    balance = (
        '[[devices]]\nname = "balance"\nkind = "balance"\nprotocol = "mt-sics"\n'
        'port = "emulated"\nline = { baudrate = 9600 }\n'
    )
    assert balance in text
    bench = load_bench(write_toml(tmp_path, "bench.toml", text.replace(balance, "")))
    scenario = scenario_from_text(
        _scenario_text(('delivery = "auto"', 'delivery = "balance"')), source="s.toml"
    )
    with pytest.raises(ConfigurationError, match="has no balance") as info:
        plan_patient(bench, scenario)
    assert info.value.field == "patient.delivery"
    # auto falls back to the pump's counter
    auto = scenario_from_text(_scenario_text(), source="s.toml")
    plan = plan_patient(bench, auto)
    assert plan is not None
    assert (plan.source, plan.quantity) == ("pump", "infused_ml")


@pytest.mark.parametrize(("drug", "model"), sorted(MODELS))
def test_every_pk_model_plans_with_its_drugs_unit(drug: str, model: str) -> None:
    text = _scenario_text(('drug = "remifentanil"', f'drug = "{drug}"'))
    text = text.replace('model = "minto"', f'model = "{model}"')
    plan = plan_patient(load_bench(bench_path("emulated-nominal")), scenario_from_text(text))
    assert plan is not None
    assert (plan.pk.drug, plan.pk.model) == (drug, model)
    units = {ch.quantity: ch.unit for ch in plan.channels}
    assert units["cp"] == units["ce"] == DRUGS[drug][0]


def test_tolerances_of_patient_channels_override_the_defaults() -> None:
    scenario = scenario_from_text(
        _scenario_text(extra='\n[tolerances."patient.cp"]\nrel_tol = 0.01\n'), source="s.toml"
    )
    plan = RunPlan.of(load_bench(bench_path("emulated-nominal")), scenario)
    assert plan.specs["patient.cp"].rel_tol == 0.01
    assert plan.specs["patient.ce"].rel_tol == 0.05
    assert plan.specs["patient.cp"].detectors == ("tolerance",)


# --------------------------------------------------------------------------- runs


@pytest.fixture(scope="module")
def nominal(
    tmp_path_factory: pytest.TempPathFactory, make_run: Callable[..., RunResult]
) -> tuple[str, RunResult]:
    """The shipped scenario on the nominal bench (50 min of scenario time, about a second)."""
    db = f"sqlite:///{tmp_path_factory.mktemp('nominal') / 'runs.db'}"
    return db, make_run(db, "emulated-nominal", SCENARIO)


def _load(db: str, run_id: int):  # type: ignore[no-untyped-def]
    with RunStore(db) as store:
        return store.load_run(run_id)


def test_run_stores_every_patient_channel_for_real_and_twin(nominal: tuple[str, RunResult]) -> None:
    db, result = nominal
    run = _load(db, result.run_id)
    units = {
        "dose_mg_min": "mg/min",
        "cp": "ng/mL",
        "ce": "ng/mL",
        "bis": "",
        "map_mmhg": "mmHg",
        "hr_bpm": "1/min",
        "rr_min": "1/min",
    }
    balance = run.channel("balance.mass_g")
    for quantity, unit in units.items():
        for source in ("real", "twin"):
            ch = run.channel(f"patient.{quantity}", source=source)
            assert ch.unit == unit
            assert ch.device is None
            np.testing.assert_array_equal(ch.t_s, balance.t_s)  # one value per weighing
            assert np.all(np.isfinite(ch.values))
    # the comparator judged them like any other channel
    assert {f"patient.{q}" for q in QUANTITIES} <= set(result.channels)
    assert result.channels["patient.cp"]["n"] == len(balance)


def _doses(t: np.ndarray, flow_ml_h: np.ndarray, concentration_mg_ml: float) -> np.ndarray:
    """The dose (mg/min) of each interval ending at ``t``: the increments of the running
    maximum of the weighed volume (the flows times the intervals, summed)."""
    dt = np.diff(t, prepend=np.nan)
    added = np.where(np.isfinite(flow_ml_h * dt), flow_ml_h * dt / 3600.0, 0.0)
    delivered = np.maximum.accumulate(np.maximum(np.cumsum(added), 0.0))
    given = np.diff(delivered, prepend=0.0)
    return np.where(dt > 0, given * concentration_mg_ml / (dt / 60.0), 0.0)


def test_twin_dose_is_the_twins_weighed_flow_times_the_concentration(
    nominal: tuple[str, RunResult],
) -> None:
    db, result = nominal
    run = _load(db, result.run_id)
    flow = run.channel("balance.flow_ml_h", source="twin")
    dose = run.channel("patient.dose_mg_min", source="twin")
    np.testing.assert_allclose(
        dose.values, _doses(flow.t_s, flow.values, 0.05), rtol=1e-12, atol=1e-15
    )
    # 42 mL/h at 50 µg/mL is 0.035 mg/min; 21 mL/h 0.0175 mg/min; stopped after 40 min
    t = dose.t_s
    assert np.median(dose.values[(t > 120) & (t < 300)]) == pytest.approx(0.035, rel=1e-3)
    assert np.median(dose.values[(t > 600) & (t < 2400)]) == pytest.approx(0.0175, rel=1e-3)
    # after the stop the syringe and the line give back what they still held, decaying
    after = dose.values[t > 2400]
    assert np.all(after < 0.0175)
    assert after[-1] < 0.05 * 0.0175
    assert np.all(run.channel("patient.dose_mg_min", source="real").values >= 0.0)


@pytest.mark.parametrize("source", ["twin", "real"])
def test_patient_is_the_pk_model_applied_to_the_delivered_flow(
    nominal: tuple[str, RunResult], source: str
) -> None:
    db, result = nominal
    run = _load(db, result.run_id)
    scenario = load_scenario(scenario_path(SCENARIO))
    plan = RunPlan.of(load_bench(bench_path("emulated-nominal")), scenario)
    assert plan.patient is not None
    flow = run.channel("balance.flow_ml_h", source=source)
    dose = _doses(flow.t_s, flow.values, 0.05)
    t = flow.t_s - flow.t_s[0]  # the patient starts drug-free at the first weighing
    # the dose of the interval ending at t[k] holds from t[k - 1] on
    reference = simulate(plan.patient.pk, t, t[:-1], dose[1:])
    for quantity in ("cp", "ce"):
        stored = run.channel(f"patient.{quantity}", source=source).values
        expected = getattr(reference, quantity)[0]
        np.testing.assert_allclose(stored, expected, rtol=1e-9, atol=1e-12 * expected.max())
    # remifentanil at 0.25 µg/kg/min: a steady state of a few ng/mL (Minto, 70 kg, 40 y)
    assert 4.0 < reference.cp[0][t < 2400].max() < 12.0
    # BIS is the PD model's response to the stored effect-site concentration
    ce = run.channel("patient.ce", source=source).values
    bis = run.channel("patient.bis", source=source).values
    effects = drug_effects({"remifentanil": ce})
    np.testing.assert_array_equal(bis, effects.bis)
    # and the vital signs the patient's resting means (40-year-old man) times its factors
    baseline = baseline_for(plan.patient.demographics)
    assert plan.patient.baseline["hr_bpm"] == baseline.hr_bpm
    for quantity, factor in (
        ("map_mmhg", effects.map_factor),
        ("hr_bpm", effects.hr_factor),
    ):
        stored = run.channel(f"patient.{quantity}", source=source).values
        np.testing.assert_array_equal(stored, plan.patient.baseline[quantity] * factor)
        assert stored[0] == plan.patient.baseline[quantity]  # drug-free at the start
    # breathing is the respiration loop (PaCO2 feedback, the scenario's airway and FiO2)
    # driven by the effect site at the start of each interval
    config = plan.patient.config
    breath = RespirationParams(airway=config.airway)
    resp = simulate_respiration(
        t,
        ventilatory_drive({"remifentanil": ce}, breath),
        plan.patient.baseline["spo2_percent"],
        baseline_rr_min=plan.patient.baseline["rr_min"],
        params=breath,
        spo2_params=SpO2Params(fio2=config.fio2),
    )
    for quantity in ("rr_min", "spo2_percent"):
        stored = run.channel(f"patient.{quantity}", source=source).values
        np.testing.assert_allclose(stored, getattr(resp, quantity), rtol=1e-9)
    # the shipped scenario ventilates at FiO2 0.5: the ventilator's rate, SpO2 above baseline
    assert config.airway == "ventilated"
    spo2 = run.channel("patient.spo2_percent", source=source).values
    assert spo2.min() >= plan.patient.baseline["spo2_percent"] - 1e-9
    assert bis[0] == pytest.approx(97.4)
    assert 60.0 < bis.min() < 95.0


def test_nominal_bench_real_patient_follows_the_twin(nominal: tuple[str, RunResult]) -> None:
    db, result = nominal
    run = _load(db, result.run_id)
    real = run.channel("patient.cp", source="real").values
    twin = run.channel("patient.cp", source="twin").values
    big = twin > 0.1 * twin.max()
    # the balance's noise (0.1 mg) averages out in the patient: well under 1 %
    assert np.max(np.abs(real[big] / twin[big] - 1.0)) < 0.01
    assert not [e for e in result.drift_events if e.channel.startswith("patient.")]


def test_export_includes_the_patient_channels(
    nominal: tuple[str, RunResult], tmp_path: Path
) -> None:
    db, result = nominal
    out = tmp_path / "run.csv"
    exported = CliRunner().invoke(
        main, ["export", str(result.run_id), "--db", db, "--format", "csv", "--out", str(out)]
    )
    assert exported.exit_code == 0, exported.output
    with out.open(encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["channel"] == "patient.cp"]
    run = _load(db, result.run_id)
    for source in ("real", "twin"):
        values = [float(r["value"]) for r in rows if r["source"] == source]
        assert values == run.channel("patient.cp", source=source).values.tolist()
    assert {r["unit"] for r in rows} == {"ng/mL"}


def _ratio(run, quantity: str, t0: float, t1: float) -> np.ndarray:  # type: ignore[no-untyped-def]
    real = run.channel(f"patient.{quantity}", source="real")
    twin = run.channel(f"patient.{quantity}", source="twin")
    keep = (real.t_s >= t0) & (real.t_s <= t1)
    return real.values[keep] / twin.values[keep]


@pytest.mark.slow
def test_drift_bench_real_patient_gets_less_than_the_twin(
    tmp_path: Path, make_run: Callable[..., RunResult]
) -> None:
    # The drift bench's syringe is 1 % narrower than the one the pump and the twin assume:
    # 2 % less volume per mm of travel, which the balance weighs and the patient receives.
    db = f"sqlite:///{tmp_path / 'runs.db'}"
    result = make_run(db, "emulated-drift", SCENARIO)
    run = _load(db, result.run_id)
    ratio = _ratio(run, "cp", 1200.0, 2400.0)
    assert np.all((ratio > 0.97) & (ratio < 0.99)), (ratio.min(), ratio.max())
    assert np.all(_ratio(run, "ce", 1200.0, 2400.0) < 0.99)


@pytest.mark.slow
def test_pump_counter_delivery_does_not_see_the_narrow_syringe(
    tmp_path: Path,
    write_toml: Callable[[Path, str, str], Path],
    make_run: Callable[..., RunResult],
) -> None:
    # delivery = "pump": the real side is the pump's own infused-volume count, which uses
    # the programmed diameter like the twin, so the drift bench's patients agree.
    scenario = write_toml(
        tmp_path, "s.toml", _scenario_text(('delivery = "auto"', 'delivery = "pump"'))
    )
    db = f"sqlite:///{tmp_path / 'runs.db'}"
    result = make_run(db, "emulated-drift", scenario)
    run = _load(db, result.run_id)
    counter = run.channel("pump.infused_ml")  # real
    dose = run.channel("patient.dose_mg_min")
    np.testing.assert_array_equal(dose.t_s, counter.t_s)  # one value per pump reading
    # each interval's dose is the counter's increase × concentration / interval
    dt_min = np.diff(counter.t_s) / 60.0
    expected = np.maximum(np.diff(counter.values), 0.0) * 0.05 / dt_min
    np.testing.assert_allclose(dose.values[1:], expected, rtol=1e-12, atol=1e-15)
    # the counter's 0.001 mL steps make each dose jitter by ~2 %, which the patient smooths
    ratio = _ratio(run, "cp", 1200.0, 2400.0)
    assert abs(np.mean(ratio) - 1.0) < 0.002, np.mean(ratio)
    assert np.all(np.abs(ratio - 1.0) < 0.015), (ratio.min(), ratio.max())


@pytest.mark.slow
def test_a_cleared_counter_during_the_infusion_is_not_a_negative_dose(
    tmp_path: Path,
    write_toml: Callable[[Path, str, str], Path],
    make_run: Callable[..., RunResult],
) -> None:
    text = _scenario_text(('delivery = "auto"', 'delivery = "pump"'))
    extra = '[[steps]]\nat = "20min"\naction = "clear_volume"\n\n[patient]'
    scenario = write_toml(tmp_path, "s.toml", text.replace("[patient]", extra))
    db = f"sqlite:///{tmp_path / 'runs.db'}"
    result = make_run(db, "emulated-nominal", scenario)
    run = _load(db, result.run_id)
    counter = run.channel("pump.infused_ml")
    cleared = np.flatnonzero(counter.t_s >= 1200.0)[0]  # the first reading after it
    assert counter.values[cleared] < 0.01 < counter.values[cleared - 1]
    for source in ("real", "twin"):
        dose = run.channel("patient.dose_mg_min", source=source).values
        assert dose[cleared] == 0.0  # the interval that spans the reset carries no dose
        # and the dose goes on at once (without the reset the running maximum of the
        # counted volume would wait for the counter to climb back to 8.7 mL)
        np.testing.assert_allclose(dose[cleared + 1 : cleared + 30], 0.0175, rtol=0.03)


class _Recorder:
    """Stands in for the run's writer: keeps what the link appends, by (name, source)."""

    def __init__(self) -> None:
        self.names: list[tuple[str, str, str]] = []
        self.values: dict[tuple[str, str], list[float]] = {}

    def add_channel(self, name: str, *, unit: str, source: str, device: str | None = None) -> int:
        self.names.append((name, source, unit))
        self.values[name, source] = []
        return len(self.names) - 1

    def append(self, channel_id: int, t_s: np.ndarray, values: np.ndarray) -> None:
        name, source, _ = self.names[channel_id]
        self.values[name, source] += [float(v) for v in values]


def _link(**patient: object) -> tuple[PatientLink, _Recorder]:
    bench = load_bench(bench_path("emulated-nominal"))
    plan = RunPlan.of(bench, load_scenario(scenario_path(SCENARIO)))
    assert plan.patient is not None
    if patient:  # the scenario's [patient] table with these fields changed
        config = plan.patient.config.model_copy(update=patient)
        plan = dataclasses.replace(plan, patient=dataclasses.replace(plan.patient, config=config))
    assert plan.patient is not None
    link = PatientLink(plan.patient)
    recorder = _Recorder()
    link.open(recorder, None)  # type: ignore[arg-type]
    return link, recorder


def _feed(link: PatientLink, device: str, t: list[float], flow: list[float]) -> list[object]:
    values = np.array(flow)
    return list(
        link.update(device, np.array(t), {"flow_ml_h": values}, {"balance.flow_ml_h": values})
    )


#: 36 mL/h for 5 s is 0.05 mL: at 0.05 mg/mL, over 5 s, this dose (mg/min).
DOSE_36 = 0.05 * 0.05 / (5.0 / 60.0)


def test_a_dip_of_the_weighed_volume_is_made_up_before_any_new_dose() -> None:
    link, recorder = _link()
    # The dip of -0.05 mL is the balance's noise, not a withdrawal: the next 0.05 mL only
    # makes it up, and the one after is new drug.
    _feed(link, "balance", [0.0, 5.0, 10.0, 15.0, 20.0], [math.nan, 36.0, -36.0, 36.0, 36.0])
    dose = recorder.values["patient.dose_mg_min", "real"]
    np.testing.assert_allclose(dose, [0.0, DOSE_36, 0.0, 0.0, DOSE_36], rtol=1e-12)
    assert recorder.values["patient.dose_mg_min", "twin"] == dose
    assert {unit for name, _, unit in recorder.names if name == "patient.cp"} == {"ng/mL"}


def test_a_tare_makes_the_interval_that_spans_it_carry_no_dose() -> None:
    link, recorder = _link()
    _feed(link, "balance", [0.0, 5.0], [math.nan, 36.0])
    link.command("pump", CommandKind.TARE)  # not the source: ignored
    link.command("balance", CommandKind.START)  # not a reset: ignored
    _feed(link, "balance", [10.0], [36.0])
    link.command("balance", CommandKind.TARE)
    # the net mass fell from 0.1 g to 0: a flow of -72 mL/h over the interval
    _feed(link, "balance", [15.0, 20.0], [-72.0, 36.0])
    assert _feed(link, "pump", [25.0], [36.0]) == []  # not the source's readings
    dose = recorder.values["patient.dose_mg_min", "real"]
    np.testing.assert_allclose(dose, [0.0, DOSE_36, DOSE_36, 0.0, DOSE_36], rtol=1e-12)


def test_a_breathing_patient_slows_down_and_desaturates_on_room_air() -> None:
    # Spontaneous breathing on room air: remifentanil at 8.4 mL/h × 50 µg/mL (0.1 µg/kg/min
    # for 70 kg, a sedation dose) depresses ventilation; PaCO2 feedback holds it up, so RR
    # falls but does not stop, and SpO2 falls below the resting value, far from the floor.
    link, recorder = _link(airway="spontaneous", fio2=0.21)
    t = [float(k) * 10.0 for k in range(121)]
    _feed(link, "balance", t, [math.nan] + [8.4] * 120)
    rr = np.array(recorder.values["patient.rr_min", "real"])
    spo2 = np.array(recorder.values["patient.spo2_percent", "real"])
    ce = np.array(recorder.values["patient.ce", "real"])
    assert rr[0] == pytest.approx(rr.max())
    assert spo2[0] == pytest.approx(spo2.max())
    assert 0.0 < rr[-1] < 0.8 * rr[0]
    assert 80.0 < spo2.min() < spo2[0] - 2.0
    reference = simulate_respiration(
        np.array(t),
        ventilatory_drive({"remifentanil": ce}, RespirationParams()),
        spo2[0],
        baseline_rr_min=rr[0],
    )
    np.testing.assert_allclose(spo2, reference.spo2_percent, rtol=1e-9)
    np.testing.assert_allclose(rr, reference.rr_min, rtol=1e-9)
