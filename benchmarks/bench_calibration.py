"""Calibration of a 2-hour run: batched finite-difference Jacobian vs scipy's 2-point.

The workload is a real recorded run: the emulated drift bench (NE-1000, MT-SICS and Modbus
emulators on ptys, virtual clock) through the 2-hour IEC 60601-2-24 flow scenario at
5 mL/h, 1441 balance readings and 721 line-pressure readings, stored in a temporary SQLite
file. Recording the run and loading it are not timed. The value is the fit itself (the
``scipy.optimize.least_squares`` call inside :func:`medtwin.hil.calibration.calibrate`, best of
several runs); the note also gives the whole ``calibrate`` call on the loaded run (bench
validation, channel selection, noise estimates, the identifiability check, the fit, the
covariance and the residuals after).

* **ours**: ``jacobian="batched"``, the forward differences of all parameters in one
  vectorised model call (:class:`medtwin.device_models.system.ParameterBatch`).
* **baseline**: ``jacobian="2-point"``, scipy's default finite differences, one model call
  per parameter, everything else identical, in this same process.

Two fits: the default parameter set (inner diameter and wear rate, balance mass only), and
five parameters (plus barrel compliance, backlash and line resistance, which also fits the
line pressure). Goal (absolute): a calibration of a 2-hour run in under 10 s. The ratio
baseline/ours is reported; the number of model evaluations (residual evaluations, model
calls and parameter sets simulated) is in the note, and both fits must agree.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from _common import BenchResult, best_time_s  # noqa: E402
from medtwin.hil.calibration import Calibration, calibrate  # noqa: E402
from medtwin.hil.config import load_bench, load_scenario  # noqa: E402
from medtwin.hil.packaged import bench_path, scenario_path  # noqa: E402
from medtwin.hil.session import run_scenario  # noqa: E402
from medtwin.hil.store import RunData, RunStore  # noqa: E402

GOAL_S = 10.0
ONSET = {"pump.drive.wear_onset_s": 1800.0}
FITS: dict[str, list[str] | None] = {
    "2 params (diameter, wear)": None,
    "5 params (+ compliance, backlash, resistance)": [
        "pump.syringe.inner_diameter_mm",
        "pump.drive.wear_percent_per_h",
        "pump.syringe.barrel_compliance_ul_per_mmhg",
        "pump.drive.backlash_mm",
        "line.resistance_mmhg_per_ml_h",
    ],
}


def _recorded_run(directory: Path) -> RunData:
    db_url = f"sqlite:///{directory / 'runs.db'}"
    result = run_scenario(
        load_bench(bench_path("emulated-drift")),
        load_scenario(scenario_path("iec-flow-5mlh")),
        db_url=db_url,
        clock="virtual",
        progress=False,
    )
    with RunStore(db_url) as store:
        return store.load_run(result.run_id)


def _evaluations(cal: Calibration) -> str:
    return f"{cal.nfev} nfev, {cal.model_calls} model calls, {cal.model_rows} parameter sets"


def _best(fn: Callable[[], Calibration], repeat: int) -> tuple[float, float, Calibration]:
    """(best fit time, best whole-call time, last result) over ``repeat`` calls."""
    fit_s = whole_s = float("inf")
    cal = fn()  # warm-up
    for _ in range(repeat):
        whole_s = min(whole_s, best_time_s(fn, repeat=1))
        cal = fn()
        fit_s = min(fit_s, cal.fit_wall_s)
    return fit_s, whole_s, cal


def run(quick: bool = False) -> list[BenchResult]:
    with tempfile.TemporaryDirectory(prefix="medtwin-bench-cal-") as tmp:
        recorded = _recorded_run(Path(tmp))
    repeat = 2 if quick else 5
    results: list[BenchResult] = []
    for label, names in FITS.items():

        def ours(names: list[str] | None = names) -> Calibration:
            return calibrate(recorded, parameters=names, fixed=ONSET, jacobian="batched")

        def baseline(names: list[str] | None = names) -> Calibration:
            return calibrate(recorded, parameters=names, fixed=ONSET, jacobian="2-point")

        ours_fit_s, ours_s, a = _best(ours, repeat)
        base_fit_s, base_s, b = _best(baseline, repeat)
        worst = max(
            abs(e.value - b.estimates[name].value) / e.stderr for name, e in a.estimates.items()
        )
        agree = worst < 0.01
        results.append(
            BenchResult(
                name=f"calibrate 2 h run, {label}: the fit",
                value=ours_fit_s,
                unit="s",
                baseline=base_fit_s,
                ratio=base_fit_s / ours_fit_s,
                goal=f"value < {GOAL_S:g} s",
                passed=ours_fit_s < GOAL_S and agree,
                note=(
                    f"ours: {_evaluations(a)}; scipy 2-point: {_evaluations(b)}; "
                    f"whole calibrate() {ours_s * 1e3:.0f} ms vs {base_s * 1e3:.0f} ms; "
                    f"estimates agree to {worst:.1e} stderr"
                ),
            )
        )
    return results


if __name__ == "__main__":
    for result in run(quick="--quick" in sys.argv):
        print(result)
