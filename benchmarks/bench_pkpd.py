"""Patient PK/PD benchmark (issue 12: pharmacokinetics and pharmacodynamics).

10,000 virtual patients × 2 h on a 10 s grid: propofol (Schnider) and remifentanil
(Minto) on a weight-scaled induction/maintenance schedule with a few rate changes, then
BIS, MAP/HR/RR factors and SpO2 from the ventilation fraction — all in one vectorised
pass. Goal: ≤ 2 s (absolute). Same-run baseline: ``scipy.integrate.solve_ivp`` (DOP853,
rtol 1e-8, restarted at each rate change) on a few patients, extrapolated to 10,000; the
largest relative difference of the effect-site concentrations is reported.
"""

from __future__ import annotations

import time

import numpy as np
from _common import BenchResult, best_time_s, value_goal
from medtwin.device_models.patient.demographics import Demographics
from medtwin.device_models.patient.pd import drug_effects, spo2_from_ventilation
from medtwin.device_models.patient.pk import PKBatch, pk_batch, simulate
from scipy.integrate import solve_ivp

T_END_S = 7200.0
DT_S = 10.0
CHANGES_S = np.array([0.0, 60.0, 600.0, 2400.0, 4800.0, 6600.0])
# propofol mg/kg/min (induction 2 mg/kg over 1 min, then 150 → 100 → 80 µg/kg/min, off);
# remifentanil µg/kg/min (0.2 → 0.15 → 0.1 ..., off)
PROPOFOL_MG_KG_MIN = np.array([2.0, 0.15, 0.10, 0.08, 0.06, 0.0])
REMIFENTANIL_UG_KG_MIN = np.array([0.2, 0.2, 0.15, 0.1, 0.1, 0.0])


def _cohort(n: int) -> list[Demographics]:
    rng = np.random.default_rng(12)  # fixed so the cohort is the same every run
    ages = rng.uniform(25.0, 80.0, n)
    heights = rng.uniform(155.0, 195.0, n)
    bmi = rng.uniform(19.0, 30.0, n)
    weights = np.clip(bmi * (heights / 100.0) ** 2, 45.0, 115.0)
    sexes = rng.integers(0, 2, n)
    return [
        Demographics(float(a), float(w), float(h), "male" if s else "female")
        for a, w, h, s in zip(ages, weights, heights, sexes, strict=True)
    ]


def _pkpd(cohort: list[Demographics], t_s: np.ndarray) -> dict[str, np.ndarray]:
    weights = np.array([p.weight_kg for p in cohort])
    prop = pk_batch("propofol", "schnider", cohort)
    remi = pk_batch("remifentanil", "minto", cohort)
    prop_rates = weights[:, None] * PROPOFOL_MG_KG_MIN[None, :]
    remi_rates = weights[:, None] * REMIFENTANIL_UG_KG_MIN[None, :] / 1000.0
    ce_p = simulate(prop, t_s, CHANGES_S, prop_rates, with_amounts=False).ce
    ce_r = simulate(remi, t_s, CHANGES_S, remi_rates, with_amounts=False).ce
    effects = drug_effects({"propofol": ce_p, "remifentanil": ce_r})
    spo2 = spo2_from_ventilation(t_s, effects.ventilation_fraction, np.full(len(cohort), 97.0))
    return {"ce_p": ce_p, "ce_r": ce_r, "bis": effects.bis, "spo2": spo2}


def _ivp_ce(batch: PKBatch, i: int, rates: np.ndarray, t_s: np.ndarray) -> np.ndarray:
    """One patient's effect-site concentration by solve_ivp, restarted at every change."""
    k10, k12, k13 = batch.k10_per_min[i], batch.k12_per_min[i], batch.k13_per_min[i]
    k21, k31, ke0, v1 = (
        batch.k21_per_min[i],
        batch.k31_per_min[i],
        batch.ke0_per_min[i],
        batch.v1_l[i],
    )
    m = np.array(
        [
            [-(k10 + k12 + k13), k21, k31, 0.0],
            [k12, -k21, 0.0, 0.0],
            [k13, 0.0, -k31, 0.0],
            [ke0 / v1, 0.0, 0.0, -ke0],
        ]
    )
    edges = [*CHANGES_S.tolist(), T_END_S]
    x = np.zeros(4)
    out = np.zeros(t_s.shape[0])
    for k in range(len(edges) - 1):
        a, b = edges[k], edges[k + 1]
        inside = (t_s >= a) & (t_s <= b)
        u = np.array([rates[k], 0.0, 0.0, 0.0])
        sol = solve_ivp(
            lambda _t, y, u=u: m @ y + u,
            (a / 60.0, b / 60.0),
            x,
            method="DOP853",
            rtol=1e-8,
            atol=1e-12,
            t_eval=np.unique(np.concatenate([t_s[inside], [b]])) / 60.0,
        )
        keep = np.isin(sol.t, t_s[inside] / 60.0)
        out[inside] = sol.y[3, keep]
        x = sol.y[:, -1]
    return out * batch.concentration_factor


def bench_cohort(quick: bool) -> list[BenchResult]:
    n = 1000 if quick else 10_000
    cohort = _cohort(n)
    t_s = np.arange(0.0, T_END_S + 1e-9, DT_S)
    wall = best_time_s(lambda: _pkpd(cohort, t_s), repeat=2 if quick else 3)
    ours = _pkpd(cohort, t_s)

    few = 10
    weights = np.array([p.weight_kg for p in cohort[:few]])
    prop = pk_batch("propofol", "schnider", cohort[:few])
    remi = pk_batch("remifentanil", "minto", cohort[:few])
    worst = 0.0
    start = time.perf_counter()
    for i in range(few):
        for batch, rates, key in (
            (prop, weights[i] * PROPOFOL_MG_KG_MIN, "ce_p"),
            (remi, weights[i] * REMIFENTANIL_UG_KG_MIN / 1000.0, "ce_r"),
        ):
            ref = _ivp_ce(batch, i, rates, t_s)
            scale = float(np.max(np.abs(ref)))
            worst = max(worst, float(np.max(np.abs(ours[key][i] - ref))) / scale)
        drug_effects({"propofol": ours["ce_p"][i], "remifentanil": ours["ce_r"][i]})
    baseline = (time.perf_counter() - start) / few * n
    return [
        value_goal(
            f"PK/PD {n} patients × 2 h at 10 s (propofol + remifentanil, BIS/MAP/HR/RR/SpO2)",
            wall,
            "s",
            at_most=2.0,
            baseline=baseline,
            ratio=baseline / wall,
            note=f"baseline = solve_ivp DOP853 rtol 1e-8 per patient ({few} measured, "
            f"extrapolated); max |ΔCe| / max Ce vs it {worst:.1e}",
        )
    ]


def run(quick: bool = False) -> list[BenchResult]:
    return bench_cohort(quick)
