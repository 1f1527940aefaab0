"""Calibration from recorded runs: ``medtwin.hil.calibration`` and ``medtwin calibrate``.

The runs are real HIL runs of the emulated drift bench (NE-1000, MT-SICS and Modbus on
ptys, virtual clock) through the 2-hour IEC 60601-2-24 flow scenario. The emulated pump's
truth differs from the nominal twin by a known amount (hil/data/benches/emulated-drift.toml):
inner diameter 26.3241 mm instead of 26.59 mm, lead-screw wear 1 %/h from 1800 s on. The
fit must find those numbers within its own standard errors.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result
from medtwin.device_models.schedule import Command, CommandKind, Schedule
from medtwin.device_models.system import SystemParams
from medtwin.drivers.errors import AnalysisError, ConfigurationError
from medtwin.hil.calibration import (
    DEFAULT_PARAMETERS,
    calibrate,
    calibration_key,
    covariance,
    identifiability,
    run_device_key,
    save_calibration,
    validate,
)
from medtwin.hil.cli import main
from medtwin.hil.packaged import bench_path
from medtwin.hil.runner import RunResult
from medtwin.hil.store import RunData, RunStore
from medtwin.hil.twin import Twin, TwinUncertainty, twin_prediction_sd
from numpy.typing import NDArray

# The fits read the module's ``runs`` (end-to-end runs on the virtual clock, drifting and
# nominal), and two tests run again with the calibration: left out of ``-m "not slow"``.
pytestmark = pytest.mark.slow

TRUE_DIAMETER_MM = 26.3241
TRUE_WEAR_PERCENT_PER_H = 1.0
WEAR_ONSET_S = 1800.0
NOMINAL_DIAMETER_MM = 26.59
ONSET = {"pump.drive.wear_onset_s": WEAR_ONSET_S}
DRIFT_KEY = "NE-1000/emulated-drift:pump"  # the NE-1000 reports no serial number


@dataclass(frozen=True)
class Runs:
    db_file: Path
    drift: int  # the drift bench, emulation seed 1
    drift_seed2: int  # the same emulated device, another noise realisation
    nominal: int  # the nominal bench (truth = twin)
    no_balance: int  # a bench without a balance


def _drift_text(*, seed: int = 1, calibration: str = "none") -> str:
    text = bench_path("emulated-drift").read_text(encoding="utf-8")
    assert "seed = 1" in text
    assert 'calibration = "none"' in text
    return text.replace("seed = 1", f"seed = {seed}").replace(
        'calibration = "none"', f'calibration = "{calibration}"'
    )


@pytest.fixture(scope="module")
def runs(
    tmp_path_factory: pytest.TempPathFactory,
    write_toml: Callable[[Path, str, str], Path],
    write_scenario: Callable[..., Path],
    make_run: Callable[..., RunResult],
) -> Runs:
    """Four recorded runs in one SQLite store (tests copy it before writing to it)."""
    directory = tmp_path_factory.mktemp("calibration-runs")
    db_file = directory / "runs.db"
    db_url = f"sqlite:///{db_file}"
    flow = "iec-flow-5mlh"
    drift = make_run(db_url, "emulated-drift", flow).run_id
    # A different emulation seed: another balance-noise realisation of the same device.
    drift2 = write_toml(directory, "drift2.toml", _drift_text(seed=2))
    drift_seed2 = make_run(db_url, drift2, flow).run_id
    nominal = make_run(db_url, "emulated-nominal", flow).run_id
    no_balance_text = bench_path("emulated-drift").read_text(encoding="utf-8")
    balance_block = (
        '[[devices]]\nname = "balance"\nkind = "balance"\nprotocol = "mt-sics"\n'
        'port = "emulated"\nline = { baudrate = 9600 }\n'
    )
    assert balance_block in no_balance_text
    no_balance = make_run(
        db_url,
        write_toml(directory, "nobalance.toml", no_balance_text.replace(balance_block, "")),
        write_scenario(
            directory,
            name="pump-only",
            duration="10min",
            sampling={"pump": "10s", "bench-io": "10s"},
            rate_ml_h=5.0,
            tare=False,
        ),
    ).run_id
    return Runs(db_file, drift, drift_seed2, nominal, no_balance)


def _load(runs: Runs, run_id: int) -> RunData:
    with RunStore(f"sqlite:///{runs.db_file}") as store:
        return store.load_run(run_id)


def _private_db(runs: Runs, tmp_path: Path) -> str:
    """A copy of the shared store, so that what a test stores stays its own."""
    copy = tmp_path / "runs.db"
    shutil.copyfile(runs.db_file, copy)
    return f"sqlite:///{copy}"


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, ["calibrate", *args])


def _calibrations(db_url: str, key: str = DRIFT_KEY) -> int:
    with RunStore(db_url) as store:
        return len(store.calibrations(key))


# --------------------------------------------------------------------------- the fit


def test_fit_recovers_the_injected_truth_within_three_standard_errors(runs: Runs) -> None:
    cal = calibrate(_load(runs, runs.drift), fixed=ONSET)
    assert cal.names == list(DEFAULT_PARAMETERS["syringe"])
    diameter = cal.estimates["pump.syringe.inner_diameter_mm"]
    wear = cal.estimates["pump.drive.wear_percent_per_h"]
    assert diameter.before == NOMINAL_DIAMETER_MM
    assert wear.before == 0.0
    assert abs(diameter.value - TRUE_DIAMETER_MM) <= 3 * diameter.stderr
    assert abs(wear.value - TRUE_WEAR_PERCENT_PER_H) <= 3 * wear.stderr
    # Plausibly small: 1441 readings at σ = 0.1 mg on ~10 g pin the bore to well under a
    # micrometre and the wear to well under 0.01 %/h; and not implausibly small either.
    assert 1e-6 < diameter.stderr < 1e-3
    assert 1e-5 < wear.stderr < 1e-2
    assert not diameter.at_bound
    assert not wear.at_bound
    # The two both lower the delivered volume: strongly, but not perfectly, correlated.
    corr = cal.correlation
    assert corr.shape == (2, 2)
    np.testing.assert_allclose(np.diag(corr), 1.0)
    assert corr[0, 1] == pytest.approx(corr[1, 0])
    assert 0.5 < corr[0, 1] < 0.99
    # The fit explains the drift down to the balance noise.
    assert cal.residual_channel == "balance.mass_g"
    assert cal.residual_unit == "g"
    assert cal.residual_rms_before > 0.1  # ~3 % of 10 g by the end of the run
    sigma = cal.channels["balance.mass_g"].sigma
    assert 5e-5 < sigma < 2e-4  # the emulated balance: 0.1 mg noise, 0.1 mg readability
    assert cal.residual_rms_after < 1.3 * sigma
    assert 0.7 < cal.residual_variance < 1.3
    # The pump is programmed with the library diameter; only the bore was fitted.
    assert cal.fixed == {
        "pump.drive.wear_onset_s": WEAR_ONSET_S,
        "pump.configured_inner_diameter_mm": NOMINAL_DIAMETER_MM,
    }
    assert cal.overrides()["pump.syringe.inner_diameter_mm"] == diameter.value
    assert cal.device_key == DRIFT_KEY
    assert cal.status > 0


def test_batched_jacobian_matches_scipy_2_point_with_fewer_model_calls(runs: Runs) -> None:
    run = _load(runs, runs.drift)
    ours = calibrate(run, fixed=ONSET, jacobian="batched")
    theirs = calibrate(run, fixed=ONSET, jacobian="2-point")
    for name, e in ours.estimates.items():
        other = theirs.estimates[name]
        assert abs(e.value - other.value) < 0.01 * e.stderr
        assert e.stderr == pytest.approx(other.stderr, rel=1e-3)
    assert ours.model_calls < theirs.model_calls


def test_nominal_bench_calibrates_to_the_nominal_twin(runs: Runs) -> None:
    # truth = twin: the fit must not invent a drift (and wear 0 sits on its bound, where
    # the batch model meets rows with and without the wear-onset event)
    cal = calibrate(_load(runs, runs.nominal))
    diameter = cal.estimates["pump.syringe.inner_diameter_mm"]
    wear = cal.estimates["pump.drive.wear_percent_per_h"]
    assert abs(diameter.value - NOMINAL_DIAMETER_MM) <= 3 * diameter.stderr
    assert wear.value <= 3 * wear.stderr
    assert cal.residual_rms_after == pytest.approx(cal.residual_rms_before, rel=0.05)


def test_line_parameters_add_the_pressure_channel(runs: Runs) -> None:
    names = [
        "pump.syringe.inner_diameter_mm",
        "pump.drive.wear_percent_per_h",
        "pump.syringe.barrel_compliance_ul_per_mmhg",
        "pump.drive.backlash_mm",
        "line.resistance_mmhg_per_ml_h",
    ]
    cal = calibrate(_load(runs, runs.drift), parameters=names, fixed=ONSET)
    assert set(cal.channels) == {"balance.mass_g", "bench-io.pressure_mmhg"}
    pressure = cal.channels["bench-io.pressure_mmhg"]
    assert pressure.unit == "mmHg"
    assert pressure.rms_after < pressure.rms_before
    # The emulated line, barrel and drive are nominal except for the bore and the wear.
    truth = {
        "pump.syringe.inner_diameter_mm": TRUE_DIAMETER_MM,
        "pump.drive.wear_percent_per_h": TRUE_WEAR_PERCENT_PER_H,
        "pump.syringe.barrel_compliance_ul_per_mmhg": 2.42,
        "pump.drive.backlash_mm": 0.2,
        "line.resistance_mmhg_per_ml_h": 2.0,
    }
    for name, value in truth.items():
        e = cal.estimates[name]
        assert abs(e.value - value) <= 3 * e.stderr, (name, e)
    # The barrel's compliance and the backlash both delay the start: strongly tied.
    corr = cal.correlation
    i, j = (
        names.index("pump.syringe.barrel_compliance_ul_per_mmhg"),
        names.index("pump.drive.backlash_mm"),
    )
    assert corr[i, j] < -0.8


def test_calibration_predicts_another_run_of_the_same_device(runs: Runs) -> None:
    cal = calibrate(_load(runs, runs.drift), fixed=ONSET)
    check = validate(_load(runs, runs.drift_seed2), cal.overrides())
    assert check.device_key == cal.device_key
    assert check.channel == "balance.mass_g"
    assert check.improved
    assert check.rms_nominal > 0.1
    # the calibrated twin predicts the other run down to its balance noise
    assert check.rms_calibrated < 2e-4
    assert check.rms_calibrated < check.rms_nominal / 100


def test_the_wear_onset_can_be_fitted_from_a_starting_point(runs: Runs) -> None:
    run = _load(runs, runs.drift)
    names = [*DEFAULT_PARAMETERS["syringe"], "pump.drive.wear_onset_s"]
    start = {"pump.drive.wear_percent_per_h": 0.5, "pump.drive.wear_onset_s": 1000.0}
    cal = calibrate(run, parameters=names, start=start)
    truth = dict(zip(names, (TRUE_DIAMETER_MM, TRUE_WEAR_PERCENT_PER_H, WEAR_ONSET_S), strict=True))
    for name, value in truth.items():
        e = cal.estimates[name]
        assert abs(e.value - value) <= 3 * e.stderr, (name, e)
    assert cal.estimates["pump.drive.wear_onset_s"].stderr < 60.0
    # from the nominal twin (no wear) the onset has no effect: refused, not guessed
    with pytest.raises(ConfigurationError, match=r"--start:.*starts at 0"):
        calibrate(run, parameters=names)
    with pytest.raises(ConfigurationError, match=r"--start:.*not among the fitted"):
        calibrate(run, start={"line.resistance_mmhg_per_ml_h": 2.0})
    with pytest.raises(ConfigurationError, match=r"--start:.*outside its range"):
        calibrate(run, start={"pump.drive.wear_percent_per_h": -1.0})


def test_parameters_the_run_cannot_determine_are_refused(runs: Runs) -> None:
    run = _load(runs, runs.drift)
    # the twin's net mass does not depend on the balance's capacity at all
    with pytest.raises(ConfigurationError, match=r"no information about balance\.capacity_g"):
        calibrate(run, parameters=["pump.syringe.inner_diameter_mm", "balance.capacity_g"])
    # water density (temperature) and the bore both scale the delivered mass
    with pytest.raises(ConfigurationError, match="cannot tell"):
        calibrate(run, parameters=["pump.syringe.inner_diameter_mm", "balance.temperature_c"])


def test_bad_parameter_names_and_fixed_values_are_refused(runs: Runs) -> None:
    run = _load(runs, runs.drift)
    with pytest.raises(ConfigurationError) as info:
        calibrate(run, parameters=["pump.syringe.inner_diameter", "pump.drive.wear_percent_per_h"])
    message = str(info.value)
    assert message.startswith("--params:")
    assert "'pump.syringe.inner_diameter'" in message
    assert "pump.syringe.inner_diameter_mm" in message  # the list of fittable parameters
    assert "line.resistance_mmhg_per_ml_h" in message
    with pytest.raises(ConfigurationError, match="not a real number"):
        calibrate(run, parameters=["pump.drive.microsteps"])
    with pytest.raises(ConfigurationError, match="named twice"):
        calibrate(run, parameters=["line.resistance_mmhg_per_ml_h"] * 2)
    with pytest.raises(ConfigurationError, match="both fitted and fixed"):
        calibrate(run, fixed={"pump.drive.wear_percent_per_h": 1.0})
    with pytest.raises(ConfigurationError, match=r"--fix:.*wear_onset_s"):
        calibrate(run, fixed={"pump.drive.wear_onset_s": -5.0})


def test_a_run_without_balance_data_is_refused(runs: Runs) -> None:
    with pytest.raises(ConfigurationError, match="no balance data") as info:
        calibrate(_load(runs, runs.no_balance))
    assert str(info.value).startswith("RUN:")


def test_a_fit_that_does_not_converge_says_so(runs: Runs) -> None:
    with pytest.raises(AnalysisError, match="did not converge"):
        calibrate(_load(runs, runs.drift), fixed=ONSET, max_evaluations=1)


def test_calibration_key_uses_the_serial_or_the_place_on_the_bench(runs: Runs) -> None:
    assert calibration_key("NE-1000", "A12", bench="b", device="pump") == "NE-1000/A12"
    assert calibration_key("NE-1000", " ", bench="b", device="pump") == "NE-1000/b:pump"
    with pytest.raises(ConfigurationError, match="no model"):
        calibration_key("", "A12", bench="b", device="pump")
    assert run_device_key(_load(runs, runs.drift)) == DRIFT_KEY


# --------------------------------------------------------------------------- storage


def test_saved_calibrations_are_versioned_per_device(runs: Runs, tmp_path: Path) -> None:
    db_url = _private_db(runs, tmp_path)
    cal = calibrate(_load(runs, runs.drift), fixed=ONSET)
    with RunStore(db_url) as store:
        first = save_calibration(store, cal, note="first")
        second = save_calibration(store, cal)
        latest = store.latest_calibration(DRIFT_KEY)
    assert (first.version, second.version) == (1, 2)
    assert latest is not None
    assert latest.version == 2
    assert latest.run_id == runs.drift
    assert first.note == "first"
    params = latest.params
    assert (
        params["pump.syringe.inner_diameter_mm"]["value"]
        == cal.estimates["pump.syringe.inner_diameter_mm"].value
    )
    assert (
        params["pump.syringe.inner_diameter_mm"]["stderr"]
        == cal.estimates["pump.syringe.inner_diameter_mm"].stderr
    )
    # held parameters travel with the fit (the twin needs them), without a standard error
    assert params["pump.drive.wear_onset_s"] == {"value": WEAR_ONSET_S, "stderr": None}
    assert latest.correlation["names"] == cal.names
    assert latest.residual_rms_after == pytest.approx(cal.residual_rms_after)


def test_latest_calibration_takes_the_drift_out_of_the_next_run(
    runs: Runs,
    tmp_path: Path,
    write_toml: Callable[[Path, str, str], Path],
    make_run: Callable[..., RunResult],
) -> None:
    db_url = _private_db(runs, tmp_path)
    result = invoke(
        str(runs.drift), "--db", db_url, "--fix", "pump.drive.wear_onset_s=1800", "--json"
    )
    assert result.exit_code == 0, result.output
    bench = write_toml(tmp_path, "latest.toml", _drift_text(seed=2, calibration="latest"))
    outcome = make_run(db_url, bench, "iec-flow-5mlh")
    # the nominal twin flags this bench within minutes (see test_runner); the calibrated
    # one sees the same device as itself
    assert outcome.drift_events == []
    mass = outcome.channels["balance.mass_g"]
    assert mass["max_abs"] < 1e-3
    with RunStore(db_url) as store:
        run = store.load_run(outcome.run_id)
    assert run.twin_params["pump"]["syringe"]["inner_diameter_mm"] == pytest.approx(
        TRUE_DIAMETER_MM, abs=2e-4
    )
    # The calibrated twin predicts with its covariance: the stored SD of the mass grows
    # with the delivered volume above the model's noise (the bore's and the wear's
    # uncertainty: a bore known to ~3e-5 mm is ~2e-5 g on 10 g), and the real mass stays
    # inside ±3 SD of the twin.
    sd = run.channel("balance.mass_g.sd", source="twin").values
    noise = sd[0]
    assert np.all(sd >= noise * (1 - 1e-9))
    assert 5e-6 < math.sqrt(sd[-1] ** 2 - noise**2) < 1e-3
    real = run.channel("balance.mass_g", source="real").values
    twin = run.channel("balance.mass_g", source="twin").values
    ok = np.isfinite(real)
    inside = np.abs(real[ok] - twin[ok]) <= 3 * sd[ok] + 2e-4  # + a tare offset, ~1σ
    assert inside.mean() > 0.99
    # every channel of a calibrated twin carries its SD
    assert np.isfinite(run.channel("pump.infused_ml.sd", source="twin").values).all()


VOLUMETRIC_BENCH = """
name = "volumetric-drift"
[[devices]]
name = "pump"
kind = "pump"
protocol = "modbus-pump"
port = "emulated"
baudrate = 19200
options = { device_id = 1 }

[[devices]]
name = "balance"
kind = "balance"
protocol = "mt-sics"
port = "emulated"
baudrate = 9600

[emulation]
pump = "volumetric"
seed = 3

[emulation.truth]
"pump.efficiency" = 0.97
"pump.wear_percent_per_h" = 0.5

[twin]
pump = "volumetric"
calibration = "%s"
"""


def test_latest_calibration_of_a_pump_with_a_serial_is_used_by_the_next_run(
    tmp_path: Path,
    write_toml: Callable[[Path, str, str], Path],
    write_scenario: Callable[..., Path],
    make_run: Callable[..., RunResult],
) -> None:
    # The Modbus pump reports model and serial, so its calibrations are filed under
    # model/serial, the key the runner looks up for calibration = "latest".
    db_url = f"sqlite:///{tmp_path / 'runs.db'}"
    scenario = write_scenario(
        tmp_path,
        name="volumetric-flow",
        duration="1h",
        sampling={"balance": "5s", "pump": "10s"},
        rate_ml_h=25.0,
        syringe=None,
    )
    nominal = write_toml(tmp_path, "nominal.toml", VOLUMETRIC_BENCH % "none")
    first = make_run(db_url, nominal, scenario).run_id
    result = invoke(str(first), "--db", db_url, "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert set(doc["params"]) == set(DEFAULT_PARAMETERS["volumetric"])
    for name, truth in (("pump.efficiency", 0.97), ("pump.wear_percent_per_h", 0.5)):
        entry = doc["params"][name]
        assert abs(entry["value"] - truth) <= 3 * entry["stderr"], (name, entry)
    key = doc["calibration"]["device_key"]
    assert key.startswith("MTV-100/")  # model/serial as the emulated pump reports it
    latest = write_toml(tmp_path, "latest.toml", VOLUMETRIC_BENCH % "latest")
    outcome = make_run(db_url, latest, scenario)
    assert outcome.drift_events == []
    mass = outcome.channels["balance.mass_g"]
    assert mass["rms"] < 2e-4  # the balance noise; the nominal twin is off by ~0.45 g
    with RunStore(db_url) as store:
        run = store.load_run(outcome.run_id)
    assert run.twin_params["pump"]["efficiency"] == doc["params"]["pump.efficiency"]["value"]


# --------------------------------------------------------------------------- the CLI


def test_cli_json_is_one_document_with_the_documented_schema(runs: Runs, tmp_path: Path) -> None:
    db_url = _private_db(runs, tmp_path)
    result = invoke(
        str(runs.drift),
        "--db",
        db_url,
        "--params",
        "pump.syringe.inner_diameter_mm, pump.drive.wear_percent_per_h",
        "--fix",
        "pump.drive.wear_onset_s=1800",
        "--validate",
        str(runs.drift_seed2),
        "--note",
        "bench 3, syringe lot 42",
        "--json",
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)  # exactly one document, nothing else on stdout
    assert set(doc["params"]) == {"pump.syringe.inner_diameter_mm", "pump.drive.wear_percent_per_h"}
    for entry in doc["params"].values():
        assert {"value", "stderr", "before"} <= set(entry)
        assert all(math.isfinite(entry[k]) for k in ("value", "stderr", "before"))
    diameter = doc["params"]["pump.syringe.inner_diameter_mm"]
    assert abs(diameter["value"] - TRUE_DIAMETER_MM) <= 3 * diameter["stderr"]
    assert diameter["before"] == NOMINAL_DIAMETER_MM
    assert doc["residual_rms_before"] > 100 * doc["residual_rms_after"] > 0
    assert doc["correlation"]["names"] == list(doc["params"])
    assert len(doc["correlation"]["matrix"]) == 2
    assert doc["calibration"]["device_key"] == DRIFT_KEY
    assert doc["calibration"]["version"] == 1
    assert doc["calibration"]["note"] == "bench 3, syringe lot 42"
    validation = doc["validation"]
    assert validation["run_id"] == runs.drift_seed2
    assert validation["residual_rms_calibrated"] < validation["residual_rms_nominal"]
    assert validation["improved"] is True
    assert doc["fit"]["nfev"] >= 1
    with RunStore(db_url) as store:
        record = store.latest_calibration(DRIFT_KEY)
    assert record is not None
    assert record.params["pump.syringe.inner_diameter_mm"]["value"] == diameter["value"]
    assert record.residual_rms_before == pytest.approx(doc["residual_rms_before"])


def test_cli_human_output_names_estimates_and_validation(runs: Runs, tmp_path: Path) -> None:
    db_url = _private_db(runs, tmp_path)
    result = invoke(
        str(runs.drift),
        "--db",
        db_url,
        "--fix",
        "pump.drive.wear_onset_s=1800",
        "--validate",
        str(runs.drift_seed2),
    )
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "pump.syringe.inner_diameter_mm" in out
    assert "26.324" in out  # the estimate (truth 26.3241 mm)
    assert "correlation" in out
    assert f"validation on run {runs.drift_seed2}" in out
    assert "stored as calibration version 1" in out
    assert '[twin] calibration = "latest"' in out


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (["99"], 2, "RUN: no run 99"),
        (["{drift}", "--params", "pump.nope"], 2, "--params: unknown parameter 'pump.nope'"),
        (["{drift}", "--params", ","], 2, "--params: expected comma-separated"),
        (["{drift}", "--fix", "pump.drive.wear_onset_s"], 2, "--fix: expected NAME=VALUE"),
        (["{drift}", "--fix", "pump.drive.wear_onset_s=soon"], 2, "--fix: pump.drive"),
        (["{drift}", "--validate", "98"], 2, "--validate: no run 98"),
        (["{drift}", "--validate", "{no_balance}"], 2, "--validate: run 4 has no balance data"),
        (["{drift}", "--start", "pump.drive.wear_onset_s=5"], 2, "--start: 'pump.drive.wear_o"),
        (["{no_balance}"], 2, "has no balance data"),
        (["{drift}", "--max-evaluations", "1"], 3, "did not converge"),  # ExitCode.RUNTIME
    ],
)
def test_cli_errors_exit_with_a_clear_message_and_store_nothing(
    runs: Runs, tmp_path: Path, args: list[str], status: int, message: str
) -> None:
    db_url = _private_db(runs, tmp_path)
    ids = {"drift": runs.drift, "no_balance": runs.no_balance}
    result = invoke(*(a.format(**ids) for a in args), "--db", db_url)
    assert result.exit_code == status, result.output
    assert message in result.stderr
    assert result.stderr.startswith("medtwin: error: ")
    assert result.stdout == ""
    assert _calibrations(db_url) == 0


def test_cli_refuses_a_missing_store_without_creating_it(tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    result = invoke("1", "--db", f"sqlite:///{missing}")
    assert result.exit_code == 2
    assert "--db:" in result.stderr
    assert not missing.exists()


# --------------------------------------------------------------------------- uncertainty


def _ar1(rng: np.random.Generator, phi: float, n: int) -> NDArray[np.float64]:
    """Stationary AR(1) noise of unit variance."""
    w = rng.standard_normal(n) * math.sqrt(1.0 - phi * phi)
    e = np.empty(n)
    e[0] = rng.standard_normal()
    for i in range(1, n):
        e[i] = phi * e[i - 1] + w[i]
    return e


@pytest.mark.parametrize("phi", [0.5, 0.8])
def test_newey_west_standard_errors_cover_at_the_nominal_rate_under_ar1_noise(
    phi: float,
) -> None:
    # A small linear problem, y = a + b·x with x a ramp (like a wear rate) and AR(1)
    # noise of known φ, fitted 200 times: the Newey–West interval ±1.96·SE must cover the
    # true slope about 95 % of the time; the white-noise s²·(JᵀJ)⁻¹ interval under-covers
    # (its variance is too small by about (1 + φ)/(1 − φ)).
    rng = np.random.default_rng(20261204)  # fixed: the coverage count is then exact
    n, reps = 500, 200
    x = np.linspace(0.0, 1.0, n)
    X = np.column_stack([np.ones(n), x])
    hac = iid = 0
    for _ in range(reps):
        y = 1.0 + 2.0 * x + _ar1(rng, phi, n)
        beta, *_ = np.linalg.lstsq(X, y, rcond=None)
        estimate = covariance(X, y - X @ beta)
        assert estimate.method == "newey-west"
        assert estimate.bandwidth > 0
        hac += abs(beta[1] - 2.0) <= 1.96 * estimate.stderr[1]
        iid += abs(beta[1] - 2.0) <= 1.96 * estimate.stderr_iid[1]
    assert 0.9 <= hac / reps <= 0.99
    assert iid / reps < 0.85
    # white noise: both agree with each other
    y = 1.0 + 2.0 * x + rng.standard_normal(n)
    beta, *_ = np.linalg.lstsq(X, y, rcond=None)
    white = covariance(X, y - X @ beta)
    assert white.stderr[1] == pytest.approx(white.stderr_iid[1], rel=0.25)
    iid_only = covariance(X, y - X @ beta, method="iid")
    np.testing.assert_array_equal(iid_only.stderr, white.stderr_iid)


def test_identifiability_warns_at_realistic_correlations_naming_the_experiment() -> None:
    names = [
        "pump.syringe.inner_diameter_mm",
        "pump.drive.lead_mm",
        "line.resistance_mmhg_per_ml_h",
    ]
    corr = np.array([[1.0, -0.97, 0.2], [-0.97, 1.0, 0.1], [0.2, 0.1, 1.0]])
    (warning,) = identifiability(names, corr)
    assert (warning.first, warning.second) == tuple(names[:2])
    assert warning.rho == -0.97
    assert "another diameter" in warning.experiment or "bore" in warning.experiment
    assert "cannot tell them apart" in warning.message
    assert identifiability(names, corr, threshold=0.98) == ()
    # far below the old rule (σ_min/σ_max < 1e-6, i.e. |ρ| > 1 − 1e-12)
    rate_onset = ["pump.drive.wear_percent_per_h", "pump.drive.wear_onset_s"]
    (w,) = identifiability(rate_onset, np.array([[1.0, 0.96], [0.96, 1.0]]))
    assert "longer run" in w.experiment
    with pytest.raises(ConfigurationError, match="threshold"):
        identifiability(names, corr, threshold=1.5)


def test_a_calibrated_twin_predicts_with_a_band_from_its_covariance() -> None:
    # The pump programmed with the library diameter, as a calibration stores it.
    params = SystemParams.nominal("syringe").with_overrides(
        {"pump.configured_inner_diameter_mm": 26.59}
    )
    bore = ("pump.syringe.inner_diameter_mm",)
    both = (*bore, "pump.drive.wear_percent_per_h")
    commands = [
        (0.0, CommandKind.TARE, math.nan),
        (0.0, CommandKind.SET_RATE, 5.0),
        (0.0, CommandKind.START, math.nan),
    ]
    twins = {
        "plain": Twin(params),
        "bore": Twin(params, TwinUncertainty(bore, np.array([[1e-4]]))),
        "both": Twin(params, TwinUncertainty(both, np.diag([1e-4, 1e-2]))),
    }
    for twin in twins.values():
        for t, kind, value in commands:
            twin.command(t, kind, value)
    times = np.linspace(10.0, 3600.0, 60)
    predicted = {name: twin.predict(times) for name, twin in twins.items()}
    values, plain_sd = predicted["plain"]
    for _, (other, _) in predicted.items():
        np.testing.assert_array_equal(other["balance.mass_g"], values["balance.mass_g"])
    # Without a calibration: the model's noise only (reading and tare, each with its
    # rounding), as before.
    noise = math.sqrt(2 * (params.balance.noise_sd_g**2 + params.balance.readability_g**2 / 12))
    np.testing.assert_allclose(plain_sd["balance.mass_g"], noise)
    np.testing.assert_array_equal(plain_sd["pump.infused_ml"], 0.0)
    # With one: the delta method. A bore known to ±0.01 mm moves the delivered mass by
    # 2·0.01/26.59 of itself (volume ∝ d²), so the band grows with the delivered mass.
    sd = predicted["bore"][1]["balance.mass_g"]
    mass = values["balance.mass_g"]
    expected = np.sqrt(noise**2 + (2 * 0.01 / 26.59 * mass) ** 2)
    assert 4.0 < mass[-1] < 6.0
    np.testing.assert_allclose(sd[5:], expected[5:], rtol=0.02)
    assert np.all(np.diff(sd[5:]) > 0)
    # A second uncertain parameter can only widen the band.
    assert np.all(predicted["both"][1]["balance.mass_g"] >= sd * (1 - 1e-9))
    # The batch counterpart (reports) gives the same band for the same schedule.
    schedule = Schedule()
    for t, kind, value in commands:
        schedule.add(Command(t, kind, value))
    uncertainty = twins["both"].uncertainty
    batch = twin_prediction_sd(params, uncertainty, schedule, times)
    np.testing.assert_allclose(
        batch["balance.mass_g"], predicted["both"][1]["balance.mass_g"], rtol=1e-3
    )


def test_twin_uncertainty_from_a_stored_calibration() -> None:
    params = {
        "pump.syringe.inner_diameter_mm": {"value": 26.3, "stderr": 0.002},
        "pump.drive.wear_percent_per_h": {"value": 1.0, "stderr": 0.01},
        "pump.drive.wear_onset_s": {"value": 1800.0, "stderr": None},
    }
    names = ["pump.syringe.inner_diameter_mm", "pump.drive.wear_percent_per_h"]
    # a calibration stored before the covariance was: rebuilt from stderr and ρ
    old = TwinUncertainty.from_calibration(
        params, {"names": names, "matrix": [[1.0, 0.9], [0.9, 1.0]]}
    )
    assert old is not None
    assert old.names == tuple(names)
    np.testing.assert_allclose(old.covariance, [[4e-6, 1.8e-5], [1.8e-5, 1e-4]])
    # the stored covariance wins when there is one
    cov = [[5e-6, 1e-5], [1e-5, 2e-4]]
    new = TwinUncertainty.from_calibration(
        params, {"names": names, "matrix": [[1.0, 0.3], [0.3, 1.0]], "covariance": cov}
    )
    assert new is not None
    np.testing.assert_allclose(new.covariance, cov)
    assert TwinUncertainty.from_calibration({"a": {"value": 1.0, "stderr": None}}, None) is None


def test_identifiability_warnings_reach_the_cli_and_the_stored_calibration(
    runs: Runs, tmp_path: Path
) -> None:
    # On the drift run the bore and the wear rate are correlated (0.5 < ρ < 0.99, above):
    # below the default threshold no warning; at --max-correlation 0.5 the pair is named
    # with the experiment that separates them, printed, in the JSON and stored.
    db_url = _private_db(runs, tmp_path)
    quiet = invoke(str(runs.drift), "--db", db_url, "--fix", "pump.drive.wear_onset_s=1800")
    assert quiet.exit_code == 0, quiet.output
    assert "identifiability warning" not in quiet.stdout
    assert "Newey-West" in quiet.stdout
    args = [str(runs.drift), "--db", db_url, "--fix", "pump.drive.wear_onset_s=1800"]
    loud = invoke(*args, "--max-correlation", "0.5")
    assert loud.exit_code == 0, loud.output
    out = " ".join(loud.stdout.split())  # rich wraps long lines
    assert "identifiability warning: pump.syringe.inner_diameter_mm and" in out
    assert "pump.drive.wear_percent_per_h are correlated at ρ = +0." in out
    assert "a longer run" in out
    doc = json.loads(invoke(*args, "--max-correlation", "0.5", "--json").stdout)
    (warning,) = doc["identifiability"]
    assert warning["parameters"] == list(DEFAULT_PARAMETERS["syringe"])
    assert 0.5 < warning["rho"] < 0.99
    assert doc["fit"]["covariance_method"] == "newey-west"
    assert set(doc["fit"]["stderr_iid"]) == set(doc["params"])
    with RunStore(db_url) as store:
        latest = store.calibrations(DRIFT_KEY)[-1]
    assert latest.correlation["warnings"] == doc["identifiability"]
    assert latest.correlation["method"] == "newey-west"
    assert len(latest.correlation["covariance"]) == 2
    assert invoke(*args, "--max-correlation", "1.5").exit_code == 2
