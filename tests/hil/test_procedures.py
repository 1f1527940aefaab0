"""IEC 60601-2-24 procedures in scenarios: expansion, analyses on real and twin, verdicts."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from medtwin.drivers.errors import ConfigurationError
from medtwin.hil.config import load_bench, load_scenario
from medtwin.hil.packaged import bench_path
from medtwin.hil.procedures import parse_procedures
from medtwin.hil.runner import RunResult, plan_steps
from medtwin.hil.store import RunStore


def _verdicts(result) -> dict[tuple[str, str], object]:  # type: ignore[no-untyped-def]
    return {(v.source, v.name): v for v in result.verdicts}


@pytest.mark.slow
def test_flow_procedure_fails_the_drifting_pump_and_passes_the_twin(
    tmp_path: Path, make_run: Callable[..., RunResult]
) -> None:
    result = make_run(f"sqlite:///{tmp_path / 'runs.db'}", "emulated-drift", "iec-flow-5mlh")
    verdicts = _verdicts(result)
    real = verdicts[("real", "mean_flow_error_a")]
    twin = verdicts[("twin", "mean_flow_error_a")]
    # 1 % narrower syringe (−2 %) and wear from 30 min at 1 %/h (about −1 % in hour 2)
    assert real.value == pytest.approx(-3.0, abs=0.3)  # type: ignore[attr-defined]
    assert real.outcome.value == "FAIL"  # type: ignore[attr-defined]
    assert abs(twin.value) < 0.01  # type: ignore[attr-defined]
    assert twin.outcome.value == "PASS"  # type: ignore[attr-defined]
    with RunStore(f"sqlite:///{tmp_path / 'runs.db'}") as store:
        run = store.load_run(result.run_id)
    stored = {(v.source, v.measurement): v.outcome for v in run.verdicts}
    assert stored[("real", "mean_flow_error_a")].value == "FAIL"
    assert run.summary["procedures"][0]["kind"] == "iec60601-2-24.flow"


@pytest.mark.slow
def test_occlusion_procedure_measures_alarm_and_bolus(
    tmp_path: Path, make_run: Callable[..., RunResult]
) -> None:
    result = make_run(f"sqlite:///{tmp_path / 'runs.db'}", "emulated-nominal", "occlusion")
    procedure = result.procedures[0]
    assert procedure.errors == {}
    for side in ("real", "twin"):
        analysis = procedure.analysis[side]
        # C = 2.72 µL/mmHg from ~10 to the 500 mmHg threshold at 5 mL/h, + 2 s latency
        assert analysis["time_to_alarm_s"] == pytest.approx(2.72e-3 * 490 / (5 / 3600) + 2, abs=5)
        assert analysis["pressure_at_alarm_mmhg"] == pytest.approx(501.0, abs=2.0)
        # what C stored, down to where the pressure is "reduced" (baseline + 5 mmHg)
        stored_ml = 2.72e-3 * (501.0 - analysis["baseline_pressure_mmhg"] - 5.0)
        assert analysis["bolus_volume_ml"] == pytest.approx(stored_ml, rel=0.01)
    # judged ones pass; the pressure and bolus without a declared maximum are disclosed
    assert {v.outcome.value for v in result.verdicts if not v.informational} == {"PASS"}
    assert {v.outcome.value for v in result.verdicts if v.informational} == {"INFO"}


@pytest.mark.slow
def test_bolus_procedure_weighs_each_bolus(
    tmp_path: Path, make_run: Callable[..., RunResult]
) -> None:
    result = make_run(f"sqlite:///{tmp_path / 'runs.db'}", "emulated-nominal", "bolus")
    analysis = result.procedures[0].analysis["real"]
    assert len(analysis["deviation_percent"]) == 5
    assert max(abs(d) for d in analysis["deviation_percent"]) < 1.0
    assert {v.outcome.value for v in result.verdicts} == {"PASS"}


def test_procedure_errors_name_the_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"s.toml:procedures\[0\].kind: unknown procedure"):
        parse_procedures([{"kind": "iec60601-2-24.foo"}], source="s.toml")
    with pytest.raises(ConfigurationError, match=r"procedures\[0\].rate_ml_h"):
        parse_procedures([{"kind": "iec60601-2-24.flow", "rate_ml_h": -1}], source="s.toml")
    scenario = tmp_path / "short.toml"
    scenario.write_text(
        'name = "s"\nduration = "1h"\n[sampling]\nbalance = "5s"\n'
        '[[procedures]]\nkind = "iec60601-2-24.flow"\nrate_ml_h = 5.0\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigurationError, match="ends at 7200 s, after the scenario"):
        plan_steps(load_bench(bench_path("emulated-nominal")), load_scenario(scenario))


@pytest.mark.slow
def test_sigkill_mid_run_leaves_an_interrupted_run_with_its_data(
    tmp_path: Path,
    wait_for_channel: Callable[[str, str, int], int],
    write_scenario: Callable[..., Path],
    run_process: Callable[..., subprocess.Popen[bytes]],
) -> None:
    db = f"sqlite:///{tmp_path / 'runs.db'}"
    scenario = write_scenario(
        tmp_path,
        name="long",
        duration="300h",
        sampling={"balance": "10s", "pump": "5min"},
        rate_ml_h=0.1,
        syringe=None,
        tare=False,
    )
    proc = run_process(bench_path("emulated-nominal"), scenario, db, output=subprocess.DEVNULL)
    durable = wait_for_channel(db, "balance.mass_g", 200)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    with RunStore(db) as store:
        run = store.load_run(store.list_runs()[0].id)
    assert run.info.status == "interrupted"
    mass = run.channel("balance.mass_g")
    assert len(mass) >= durable  # everything that was durable before the kill is still there
    assert json.dumps(run.info.as_json())
