"""Three-compartment PK with effect site: exact update against expm, solve_ivp, the
classical tri-exponential closed forms and the published covariate models."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
import scipy.linalg
from hypothesis import given, settings
from hypothesis import strategies as st
from medtwin.device_models.base import ParameterError
from medtwin.device_models.patient.demographics import Demographics
from medtwin.device_models.patient.pk import (
    MODELS,
    PKBatch,
    PKIntegrator,
    PKParams,
    dose_rate_mg_min,
    pk_batch,
    pk_params,
    simulate,
    transition,
)
from scipy.integrate import solve_ivp

# One patient inside every model's covariate range, and a few more for batches.
ADULT = Demographics(age_y=45.0, weight_kg=72.0, height_cm=175.0, sex="male")
PATIENTS = [
    ADULT,
    Demographics(age_y=30.0, weight_kg=58.0, height_cm=162.0, sex="female"),
    Demographics(age_y=78.0, weight_kg=95.0, height_cm=183.0, sex="male"),
    Demographics(age_y=60.0, weight_kg=66.0, height_cm=158.0, sex="female"),
]
MODEL_KEYS = sorted(MODELS)


def _matrix(p: PKParams) -> np.ndarray:
    """The 4×4 system matrix of x = [A1, A2, A3, Ce] (per minute), written out."""
    k10, k12, k13 = p.k10_per_min, p.k12_per_min, p.k13_per_min
    k21, k31, ke0 = p.k21_per_min, p.k31_per_min, p.ke0_per_min
    return np.array(
        [
            [-(k10 + k12 + k13), k21, k31, 0.0],
            [k12, -k21, 0.0, 0.0],
            [k13, 0.0, -k31, 0.0],
            [ke0 / p.v1_l, 0.0, 0.0, -ke0],
        ]
    )


def _ivp(p: PKParams, t_s: np.ndarray, rate_times_s: list[float], rates: list[float]):
    """solve_ivp at tight tolerance, restarted at every rate change (no discontinuity
    inside a step); returns states (n, 4) at t_s."""
    m = _matrix(p)
    edges = [0.0, *rate_times_s, float(t_s[-1])]
    levels = [0.0, *rates]
    x = np.zeros(4)
    out = np.zeros((t_s.shape[0], 4))
    for k in range(len(edges) - 1):
        a, b, u = edges[k], edges[k + 1], levels[k]
        if b <= a:
            continue
        inside = (t_s >= a) & (t_s <= b)
        sol = solve_ivp(
            lambda _t, y, u=u: m @ y + np.array([u, 0.0, 0.0, 0.0]),
            (a / 60.0, b / 60.0),
            x,
            method="DOP853",
            rtol=1e-11,
            atol=1e-15,
            t_eval=t_s[inside] / 60.0,
        )
        assert sol.success
        out[inside] = sol.y.T
        x = solve_ivp(
            lambda _t, y, u=u: m @ y + np.array([u, 0.0, 0.0, 0.0]),
            (a / 60.0, b / 60.0),
            x,
            method="DOP853",
            rtol=1e-11,
            atol=1e-15,
        ).y[:, -1]
    return out


def _tri_exponential(p: PKParams) -> tuple[np.ndarray, np.ndarray]:
    """The classical unit-bolus disposition: Cp(t) = Σ A_i·e^{−α_i t} with the α_i the
    roots of the characteristic cubic and A_i = (k21 − α_i)(k31 − α_i) /
    (V1·Π_{j≠i}(α_j − α_i)) (e.g. Gibaldi & Perrier, Pharmacokinetics, 2nd ed.)."""
    k10, k12, k13 = p.k10_per_min, p.k12_per_min, p.k13_per_min
    k21, k31 = p.k21_per_min, p.k31_per_min
    a2 = k10 + k12 + k13 + k21 + k31
    a1 = k10 * k21 + k10 * k31 + k12 * k31 + k13 * k21 + k21 * k31
    a0 = k10 * k21 * k31
    alpha = np.sort(np.roots([1.0, -a2, a1, -a0]).real)
    coef = np.empty(3)
    for i in range(3):
        others = [alpha[j] for j in range(3) if j != i]
        coef[i] = (
            (k21 - alpha[i])
            * (k31 - alpha[i])
            / ((others[0] - alpha[i]) * (others[1] - alpha[i]) * p.v1_l)
        )
    return alpha, coef


@pytest.mark.parametrize("key", MODEL_KEYS)
def test_transition_equals_matrix_exponential(key: tuple[str, str]) -> None:
    for patient in PATIENTS:
        p = pk_params(*key, patient)
        aug = np.zeros((5, 5))
        aug[:4, :4] = _matrix(p)
        aug[0, 4] = 1.0
        for dt_s in (0.01, 1.0, 10.0, 600.0, 36000.0):
            ref = scipy.linalg.expm(aug * dt_s / 60.0)
            phi, gamma = transition(p, dt_s)
            np.testing.assert_allclose(phi[0], ref[:4, :4], rtol=1e-11, atol=1e-14)
            np.testing.assert_allclose(gamma[0], ref[:4, 4], rtol=1e-9, atol=1e-15)


def test_transition_exact_when_ke0_equals_a_disposition_rate() -> None:
    p = pk_params("propofol", "schnider", ADULT)
    alpha, _ = _tri_exponential(p)
    degenerate = dataclasses.replace(p, ke0_per_min=float(alpha[1]))
    aug = np.zeros((5, 5))
    aug[:4, :4] = _matrix(degenerate)
    aug[0, 4] = 1.0
    ref = scipy.linalg.expm(aug * 10.0 / 60.0)
    phi, gamma = transition(degenerate, 10.0)
    np.testing.assert_allclose(phi[0], ref[:4, :4], rtol=1e-11, atol=1e-15)
    np.testing.assert_allclose(gamma[0], ref[:4, 4], rtol=1e-10, atol=1e-15)


@pytest.mark.parametrize("key", MODEL_KEYS)
def test_simulate_matches_solve_ivp(key: tuple[str, str]) -> None:
    p = pk_params(*key, ADULT)
    t_s = np.arange(0.0, 7200.0 + 1e-9, 15.0)
    rate_times = [30.0, 95.5, 1800.0, 3000.0, 5400.0]
    rates = [12.0, 3.5, 5.0, 0.0, 2.0]
    scale = 1.0 if key[0] == "propofol" else 0.01  # remifentanil doses are ~1000× smaller
    rates = [r * scale for r in rates]
    res = simulate(p, t_s, rate_times, rates)
    ref = _ivp(p, t_s, rate_times, rates)
    factor = 1.0 if key[0] == "propofol" else 1000.0
    for ours, theirs in (
        (res.amounts_mg[0].T, ref[:, :3]),
        (res.cp[0], ref[:, 0] / p.v1_l * factor),
        (res.ce[0], ref[:, 3] * factor),
    ):
        # 1e-6 of each trajectory's own scale, at every sample
        np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-6 * np.max(np.abs(theirs)))


@pytest.mark.parametrize("key", MODEL_KEYS)
def test_bolus_is_the_published_tri_exponential(key: tuple[str, str]) -> None:
    p = pk_params(*key, ADULT)
    alpha, coef = _tri_exponential(p)
    dose_mg = 100.0
    t_s = np.linspace(0.0, 4 * 3600.0, 481)
    res = simulate(p, t_s, initial_state=[dose_mg, 0.0, 0.0, 0.0])
    t_min = t_s / 60.0
    factor = 1.0 if key[0] == "propofol" else 1000.0
    cp = dose_mg * (coef[None, :] * np.exp(-alpha[None, :] * t_min[:, None])).sum(axis=1)
    ke0 = p.ke0_per_min
    ce = dose_mg * (
        coef[None, :]
        * ke0
        / (ke0 - alpha[None, :])
        * (np.exp(-alpha[None, :] * t_min[:, None]) - np.exp(-ke0 * t_min[:, None]))
    ).sum(axis=1)
    np.testing.assert_allclose(res.cp[0], cp * factor, rtol=1e-9)
    np.testing.assert_allclose(res.ce[0], ce * factor, rtol=1e-8, atol=1e-12 * factor)
    assert res.cp[0, 0] == pytest.approx(dose_mg / p.v1_l * factor, rel=1e-12)


@pytest.mark.parametrize("key", MODEL_KEYS)
def test_constant_infusion_closed_form_and_steady_state(key: tuple[str, str]) -> None:
    p = pk_params(*key, ADULT)
    alpha, coef = _tri_exponential(p)
    rate = 2.0
    t_s = np.array([60.0, 600.0, 3600.0, 6 * 3600.0])
    res = simulate(p, t_s, [0.0], [rate])
    t_min = t_s / 60.0
    factor = 1.0 if key[0] == "propofol" else 1000.0
    cp = rate * (coef / alpha * (1.0 - np.exp(-alpha * t_min[:, None]))).sum(axis=1)
    np.testing.assert_allclose(res.cp[0], cp * factor, rtol=1e-9)
    # After many slowest half-lives: Cp = Ce = rate / Cl1, A2 = A1·k12/k21, A3 = A1·k13/k31.
    long = simulate(p, [60.0 * 40.0 / alpha[0]], [0.0], [rate])
    steady = rate / p.cl1_l_min
    assert long.cp[0, 0] == pytest.approx(steady * factor, rel=1e-9)
    assert long.ce[0, 0] == pytest.approx(steady * factor, rel=1e-9)
    a1, a2, a3 = long.amounts_mg[0, :, 0]
    assert a2 == pytest.approx(a1 * p.k12_per_min / p.k21_per_min, rel=1e-9)
    assert a3 == pytest.approx(a1 * p.k13_per_min / p.k31_per_min, rel=1e-9)


@pytest.mark.parametrize("key", MODEL_KEYS)
def test_mass_balance(key: tuple[str, str]) -> None:
    """Infused = in the body + eliminated, eliminated = ∫ k10·A1 dt (Simpson, fine grid)."""
    p = pk_params(*key, ADULT)
    t_s = np.arange(0.0, 3600.0 + 1e-9, 0.5)
    res = simulate(p, t_s, [0.0, 1200.0], [4.0, 1.0])
    infused = 4.0 * 20.0 + 1.0 * 40.0
    a1 = res.amounts_mg[0, 0]
    h = 0.5 / 60.0
    # composite Simpson on each constant-rate piece (A1 is smooth inside each)
    eliminated = 0.0
    for lo, hi in ((0, 2400), (2400, 7200)):
        seg = a1[lo : hi + 1]
        eliminated += h / 3.0 * (seg[0] + seg[-1] + 4 * seg[1:-1:2].sum() + 2 * seg[2:-1:2].sum())
    body = res.amounts_mg[0, :, -1].sum()
    assert body + p.k10_per_min * eliminated == pytest.approx(infused, rel=1e-9)


def test_published_covariate_examples() -> None:
    schnider = MODELS[("propofol", "schnider")].compute
    ref = {
        "age_y": np.array([53.0, 70.0]),
        "weight_kg": np.array([77.0, 77.0]),
        "height_cm": np.array([177.0, 177.0]),
        "lbm_kg": np.array([59.0, 59.0]),
    }
    s = schnider(ref)
    # Schnider 1998 reference patient: V1 4.27, V2 18.9, V3 238 L, Cl1 1.89, Cl2 1.29,
    # Cl3 0.836 L/min.
    assert s["v2_l"][0] == pytest.approx(18.9)
    assert s["k10_per_min"][0] * 4.27 == pytest.approx(1.89)
    assert s["k21_per_min"][0] == pytest.approx(1.29 / 18.9)
    assert s["k31_per_min"][0] == pytest.approx(0.836 / 238.0)
    assert s["ke0_per_min"][0] == 0.456
    # At 70 y, k21 is the whole Cl2 over the whole V2 (the bracketed form), not
    # 1.29 − 0.024·(age − 53)/V2.
    assert s["k21_per_min"][1] == pytest.approx((1.29 - 0.024 * 17) / (18.9 - 0.391 * 17))
    assert s["k21_per_min"][1] != pytest.approx(1.29 - 0.024 * 17 / (18.9 - 0.391 * 17))

    minto = MODELS[("remifentanil", "minto")].compute
    m = minto({"age_y": np.array([40.0, 20.0, 85.0]), "lbm_kg": np.array([55.0] * 3)})
    assert m["v1_l"][0] == pytest.approx(5.1)
    assert m["k10_per_min"][0] * 5.1 == pytest.approx(2.6)
    assert m["k12_per_min"][0] * 5.1 == pytest.approx(2.05)
    assert m["k13_per_min"][0] * 5.1 == pytest.approx(0.076)
    assert m["k21_per_min"][0] == pytest.approx(2.05 / 9.82)
    assert m["k31_per_min"][0] == pytest.approx(0.076 / 5.42)
    assert m["ke0_per_min"][0] == pytest.approx(0.595)
    # Minto 1997 abstract: from 20 to 85 y, V1 and Cl1 fall by about 25 % and 33 %.
    cl1 = m["k10_per_min"] * m["v1_l"]
    assert 1 - m["v1_l"][2] / m["v1_l"][1] == pytest.approx(0.25, abs=0.02)
    assert 1 - cl1[2] / cl1[1] == pytest.approx(0.33, abs=0.04)

    marsh = pk_params("propofol", "marsh", Demographics(age_y=40, weight_kg=70.0))
    assert marsh.v1_l == pytest.approx(15.96)
    assert (marsh.k13_per_min, marsh.k31_per_min, marsh.ke0_per_min) == (0.0419, 0.0033, 0.26)


def test_schnider_time_to_peak_effect() -> None:
    """Schnider 1999: ke0 0.456 /min gave a time to peak effect after a bolus of
    1.6 min (visual; 1.7 min predicted) in its volunteers."""
    p = pk_params("propofol", "schnider", Demographics(53.0, 77.0, 177.0, "male"))
    t_s = np.arange(0.0, 600.0, 0.5)
    res = simulate(p, t_s, initial_state=[100.0, 0.0, 0.0, 0.0])
    t_peak_min = t_s[np.argmax(res.ce[0])] / 60.0
    assert 1.5 <= t_peak_min <= 1.75


def test_units_and_pump_coupling() -> None:
    assert float(dose_rate_mg_min(20.0, 10.0)) == pytest.approx(200.0 / 60.0)
    remi = pk_params("remifentanil", "minto", ADULT)
    assert remi.concentration_unit == "ng/mL"
    res = simulate(remi, [0.0], initial_state=[0.05, 0.0, 0.0, 0.0])
    assert res.cp[0, 0] == pytest.approx(0.05 / remi.v1_l * 1000.0)
    assert pk_params("propofol", "marsh", ADULT).concentration_unit == "ug/mL"
    with pytest.raises(ParameterError, match="concentration_mg_ml"):
        dose_rate_mg_min(1.0, -1.0)


def test_batch_of_one_equals_single_and_batch_rows_equal_singles() -> None:
    t_s = np.arange(0.0, 3600.0, 30.0)
    batch = pk_batch("propofol", "schnider", PATIENTS)
    rates = np.array([[10.0, 2.0], [8.0, 3.0], [6.0, 1.0], [9.0, 0.5]])
    whole = simulate(batch, t_s, [0.0, 600.0], rates)
    assert whole.cp.shape == (4, t_s.shape[0])
    for i, patient in enumerate(PATIENTS):
        one = simulate(pk_params("propofol", "schnider", patient), t_s, [0.0, 600.0], rates[i])
        np.testing.assert_allclose(whole.cp[i], one.cp[0], rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(whole.ce[i], one.ce[0], rtol=1e-13, atol=1e-15)
    seq = PKBatch.of([pk_params("propofol", "schnider", p) for p in PATIENTS])
    np.testing.assert_array_equal(seq.k10_per_min, batch.k10_per_min)


def test_incremental_equals_batch_exactly() -> None:
    batch = pk_batch("remifentanil", "minto", PATIENTS)
    t_s = np.arange(0.0, 1800.0 + 1e-9, 10.0)
    change_s = [0.0, 125.0, 900.0]
    rates = [0.02, 0.005, 0.0]
    res = simulate(batch, t_s, change_s, rates)
    live = PKIntegrator(batch)
    points = np.unique(np.concatenate([t_s, change_s]))
    rate = 0.0
    got = {0.0: live.ce}
    for a, b in itertools.pairwise(points):
        if a in change_s:
            rate = rates[change_s.index(a)]
        live.advance(b - a, rate)
        got[b] = live.ce
    ce = np.stack([got[t] for t in t_s], axis=1)
    np.testing.assert_array_equal(ce, res.ce)
    assert live.t_s == pytest.approx(1800.0)
    np.testing.assert_array_equal(live.amounts_mg, res.amounts_mg[:, :, -1])


def test_integrator_bolus_equals_initial_state() -> None:
    p = pk_params("propofol", "marsh", ADULT)
    live = PKIntegrator(p)
    live.bolus(140.0)
    for _ in range(12):
        live.advance(10.0, 0.0)
    res = simulate(p, np.arange(0.0, 121.0, 10.0), initial_state=[140.0, 0.0, 0.0, 0.0])
    np.testing.assert_array_equal(live.cp, res.cp[:, -1])
    assert live.state.shape == (1, 4)


@pytest.mark.parametrize(
    ("drug", "model", "patient", "field"),
    [
        ("propofol", "schnider", Demographics(age_y=18.0), "age_y"),
        ("propofol", "schnider", Demographics(age_y=40.0, weight_kg=130.0), "weight_kg"),
        ("propofol", "schnider", Demographics(age_y=40.0, height_cm=140.0), "height_cm"),
        ("remifentanil", "minto", Demographics(age_y=90.0), "age_y"),
        ("propofol", "marsh", Demographics(age_y=12.0, weight_kg=40.0), "age_y"),
        ("propofol", "marsh", Demographics(age_y=40.0, weight_kg=160.0), "weight_kg"),
    ],
)
def test_covariate_outside_published_range(
    drug: str, model: str, patient: Demographics, field: str
) -> None:
    with pytest.raises(ParameterError, match=field):
        pk_params(drug, model, patient)
    with pytest.raises(ParameterError, match=field):
        pk_batch(drug, model, [ADULT, patient])


def test_james_lean_body_mass_beyond_its_maximum() -> None:
    heavy = Demographics(age_y=40.0, weight_kg=120.0, height_cm=165.0, sex="female")
    with pytest.raises(ParameterError, match="lean body mass"):
        pk_params("remifentanil", "minto", heavy)


def test_unknown_drug_and_model() -> None:
    with pytest.raises(ParameterError, match="drug"):
        pk_params("ketamine", "domino", ADULT)
    with pytest.raises(ParameterError, match="model = 'eleveld'"):
        pk_params("propofol", "eleveld", ADULT)
    with pytest.raises(ParameterError, match="model"):
        pk_batch("remifentanil", "schnider", [ADULT])
    with pytest.raises(ParameterError, match="drug"):
        PKParams(drug="ketamine")
    with pytest.raises(ParameterError, match="concentration_unit"):
        PKParams(drug="remifentanil", concentration_unit="ug/mL")


def test_bad_schedules() -> None:
    p = pk_params("propofol", "marsh", ADULT)
    with pytest.raises(ParameterError, match="t_s"):
        simulate(p, [10.0, 5.0])
    with pytest.raises(ParameterError, match="rate_times_s"):
        simulate(p, [10.0], [-1.0], [1.0])
    with pytest.raises(ParameterError, match="rates_mg_min"):
        simulate(p, [10.0], [0.0, 5.0], [1.0])
    with pytest.raises(ParameterError, match="rates_mg_min"):
        simulate(p, [10.0], [0.0], [-1.0])
    with pytest.raises(ParameterError, match="initial_state"):
        simulate(p, [10.0], initial_state=[1.0, 2.0])
    with pytest.raises(ParameterError, match="dt_s"):
        PKIntegrator(p).advance(-1.0, 0.0)
    with pytest.raises(ParameterError, match="k10_per_min"):
        PKParams(k10_per_min=0.0)
    with pytest.raises(ParameterError, match="one drug"):
        PKBatch.of([p, pk_params("remifentanil", "minto", ADULT)])


schedule = st.lists(st.tuples(st.floats(0.0, 3600.0), st.floats(0.0, 50.0)), min_size=1, max_size=6)


@settings(max_examples=40, deadline=None)
@given(first=schedule, second=schedule, a=st.floats(0.0, 5.0), b=st.floats(0.0, 5.0))
def test_property_nonnegative_and_linear_in_dose(
    first: list[tuple[float, float]],
    second: list[tuple[float, float]],
    a: float,
    b: float,
) -> None:
    p = pk_params("propofol", "schnider", ADULT)
    t_s = np.linspace(0.0, 4000.0, 81)
    times = sorted({t for t, _ in first} | {t for t, _ in second})

    def rates_on(sched: list[tuple[float, float]]) -> np.ndarray:
        ordered = sorted(sched)
        out = []
        for t in times:
            current = [r for s, r in ordered if s <= t]
            out.append(current[-1] if current else 0.0)
        return np.array(out)

    r1, r2 = rates_on(first), rates_on(second)
    x1 = simulate(p, t_s, times, r1)
    x2 = simulate(p, t_s, times, r2)
    x12 = simulate(p, t_s, times, a * r1 + b * r2)
    assert np.all(x1.amounts_mg >= 0.0)
    assert np.all(x1.ce >= 0.0)
    scale = max(1.0, float(np.max(np.abs(x12.amounts_mg))))
    np.testing.assert_allclose(
        x12.amounts_mg, a * x1.amounts_mg + b * x2.amounts_mg, rtol=1e-9, atol=1e-11 * scale
    )
    np.testing.assert_allclose(x12.ce, a * x1.ce + b * x2.ce, rtol=1e-9, atol=1e-12 * scale)


def test_without_amounts_same_concentrations() -> None:
    batch = pk_batch("propofol", "marsh", PATIENTS)
    t_s = np.arange(0.0, 1200.0, 20.0)
    full = simulate(batch, t_s, [0.0, 300.0], [5.0, 1.0])
    lean = simulate(batch, t_s, [0.0, 300.0], [5.0, 1.0], with_amounts=False)
    assert lean.amounts_mg is None
    np.testing.assert_array_equal(lean.cp, full.cp)
    np.testing.assert_array_equal(lean.ce, full.ce)
