"""Device-model benchmarks (issue: Foundation).

1. 24 h of pump + line + balance at 10 Hz output (864,001 points, a rate change every
   10 min): the closed-form model vs ``solve_ivp`` RK45 restarted at each rate change,
   with RK45's tolerance tight enough that both agree to ≤ 1e-6 relative error (checked
   and reported). Goal: ratio ≥ 20×. Continuous plunger motion on both sides (an ODE
   solver cannot integrate a microstep staircase); the quantised model's time is noted.
2. Monte Carlo: 10,000 parameter sets × 2 h at 30 s in one call: wall time and peak
   traced memory. Goal ≤ 2 s. Same-run baseline: one call per parameter set (measured on
   200 sets, extrapolated).
"""

from __future__ import annotations

import time
import tracemalloc

import numpy as np
from _common import BenchResult, best_time_s, value_goal
from medtwin.device_models.reference import solve_reference
from medtwin.device_models.schedule import Schedule
from medtwin.device_models.system import ParameterBatch, SystemParams, simulate

# mean 1.625 mL/h: 24 h deliver 39 mL, within the 50 mL syringe
RATES_ML_H = (1.0, 2.0, 0.5, 3.0)


def _schedule(hours: float) -> tuple[Schedule, list[tuple[float, float]]]:
    rates = [(k * 600.0, RATES_ML_H[k % 4]) for k in range(int(hours * 6))]
    schedule = Schedule().start(0.0)
    for t, r in rates:
        schedule.set_rate(t, r)
    return schedule, rates


def _max_rel_error(ours: dict[str, np.ndarray], ref: dict[str, np.ndarray]) -> float:
    """Largest relative difference over the channels, where the reference is non-zero
    (after the backlash dead band)."""
    worst = 0.0
    for name, key in (
        ("delivered_ml", "delivered_ml"),
        ("line_pressure_mmhg", "pressure_mmhg"),
        ("balance_settled_g", "settled_g"),
    ):
        live = np.abs(ref[key]) > 1e-6 * np.max(np.abs(ref[key]))
        rel = np.abs(ours[name][live] - ref[key][live]) / np.abs(ref[key][live])
        worst = max(worst, float(np.max(rel)))
    return worst


def bench_24h(quick: bool) -> list[BenchResult]:
    hours = 2.0 if quick else 24.0
    params = SystemParams.nominal().with_overrides({"pump.quantised_steps": False})
    schedule, rates = _schedule(hours)
    t = np.arange(0.0, hours * 3600.0 + 1e-9, 0.1)
    ours_s = best_time_s(lambda: simulate(params, schedule, t), repeat=3)
    ours = simulate(params, schedule, t).row(0)
    # The baseline is RK45 at the loosest tolerance that still agrees to <= 1e-6.
    for rtol in (1e-6, 1e-7, 1e-8, 1e-9):
        start = time.perf_counter()
        ref = solve_reference(params, rates, t, rtol=rtol, atol=1e-12)
        ref_s = time.perf_counter() - start
        if _max_rel_error(ours, ref) <= 1e-6:
            break
    errors = {}
    for name, key in (
        ("delivered_ml", "delivered_ml"),
        ("line_pressure_mmhg", "pressure_mmhg"),
        ("balance_settled_g", "settled_g"),
    ):
        # relative error where the reference is non-zero (after the backlash dead band)
        live = np.abs(ref[key]) > 1e-6 * np.max(np.abs(ref[key]))
        errors[name] = float(
            np.max(np.abs(ours[name][live] - ref[key][live]) / np.abs(ref[key][live]))
        )
    worst = max(errors.values())
    quantised = SystemParams.nominal()
    quant_s = best_time_s(lambda: simulate(quantised, schedule, t), repeat=3)
    ratio = ref_s / ours_s
    return [
        BenchResult(
            name=f"{hours:g} h pump+line+balance at 10 Hz vs RK45 (restarted)",
            value=ours_s,
            unit="s",
            baseline=ref_s,
            ratio=ratio,
            goal="ratio >= 20 at <= 1e-6 rel. error",
            passed=ratio >= 20.0 and worst <= 1e-6,
            note=f"max rel. error {worst:.2e} (RK45 rtol {rtol:g}); quantised-step model "
            f"{quant_s:.3f} s; "
            f"{hours * 3600 / ours_s:.3g}× real time",
        )
    ]


def bench_monte_carlo(quick: bool) -> list[BenchResult]:
    n = 1000 if quick else 10_000
    rng = np.random.default_rng(2024)  # fixed so the parameter cloud is the same every run
    base = SystemParams.nominal()
    columns = {
        "pump.syringe.inner_diameter_mm": rng.normal(26.59, 0.05, n),
        "pump.syringe.barrel_compliance_ul_per_mmhg": rng.uniform(1.2, 2.8, n),
        "line.resistance_mmhg_per_ml_h": rng.uniform(1.0, 3.0, n),
        "pump.drive.backlash_mm": rng.uniform(0.05, 0.4, n),
        "balance.noise_sd_g": np.full(n, 1e-4),
    }
    batch = ParameterBatch(base, columns)
    schedule = Schedule().set_rate(0.0, 5.0).start(0.0)
    t = np.arange(0.0, 7200.0 + 1e-9, 30.0)
    tracemalloc.start()
    start = time.perf_counter()
    simulate(batch, schedule, t, rng=np.random.default_rng(7))
    wall = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    wall = min(
        wall,
        best_time_s(lambda: simulate(batch, schedule, t, rng=np.random.default_rng(7)), repeat=2),
    )
    few = 200
    start = time.perf_counter()
    for i in range(few):
        simulate(batch.row(i), schedule, t)
    per_set = (time.perf_counter() - start) / few
    baseline = per_set * n
    return [
        value_goal(
            f"Monte Carlo {n} sets × 2 h at 30 s",
            wall,
            "s",
            at_most=2.0,
            baseline=baseline,
            ratio=baseline / wall,
            note=f"peak traced memory {peak / 1e6:.0f} MB; "
            "baseline = one call per set (200 measured)",
        )
    ]


def run(quick: bool = False) -> list[BenchResult]:
    return [*bench_24h(quick), *bench_monte_carlo(quick)]
