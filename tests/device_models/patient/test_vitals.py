"""Baseline vital signs and their bounded random walks (device_models/patient/vitals.py).

Seeds are arbitrary: the statistical tolerances are several standard errors wide.
"""

from __future__ import annotations

import numpy as np
import pytest
from medtwin.device_models.base import ParameterError, list_parameters, with_overrides
from medtwin.device_models.patient.demographics import Demographics
from medtwin.device_models.patient.vitals import (
    VITALS,
    VariabilityParams,
    VitalBaseline,
    WalkParams,
    add_variability,
    baseline_for,
    baseline_trajectories,
    mean_arterial_pressure,
    ou_deviations,
    reflect,
    respiratory_phase_rad,
)


def test_fleming_medians_at_the_ages_of_the_abstract() -> None:
    # Fleming 2011's abstract: HR 127 at birth, 145 at one month, 113 at two years; RR 44
    # at birth and 26 at two years.
    for age, hr, rr in ((0.0, 127.0, 44.0), (1 / 12, 145.0, None), (2.0, 113.0, 26.0)):
        base = baseline_for(Demographics(age_y=age, weight_kg=5.0, height_cm=60.0))
        assert base.hr_bpm == pytest.approx(hr, abs=0.1)
        if rr is not None:
            assert base.rr_min == pytest.approx(rr, abs=0.1)


def test_baseline_trends_with_age_and_sex() -> None:
    young = baseline_for(Demographics(age_y=30.0))
    old = baseline_for(Demographics(age_y=75.0))
    child = baseline_for(Demographics(age_y=5.0, weight_kg=18.0, height_cm=110.0))
    assert old.nibp_sys_mmhg > young.nibp_sys_mmhg > child.nibp_sys_mmhg
    assert child.hr_bpm > young.hr_bpm
    assert child.rr_min > young.rr_min
    woman = baseline_for(Demographics(age_y=30.0, sex="female"))
    assert woman.nibp_sys_mmhg < young.nibp_sys_mmhg
    assert woman.hr_bpm > young.hr_bpm
    for base in (young, old, child, woman):
        assert base.nibp_dia_mmhg < base.nibp_sys_mmhg


def test_baseline_is_configurable_and_validated() -> None:
    names = {p.name for p in list_parameters(VitalBaseline())}
    assert set(VITALS) == names
    assert with_overrides(VitalBaseline(), {"hr_bpm": 88}).hr_bpm == 88.0
    with pytest.raises(ParameterError, match="hr_bpm"):
        with_overrides(VitalBaseline(), {"hr_bpm": 500})
    with pytest.raises(ParameterError, match="nibp_dia_mmhg"):
        VitalBaseline(nibp_sys_mmhg=80.0, nibp_dia_mmhg=90.0)
    dotted = {p.name for p in list_parameters(VariabilityParams())}
    assert {"hr.sd", "hr.tau_s", "spo2.upper", "bp_correlation"} <= dotted
    with pytest.raises(ParameterError, match="lower"):
        WalkParams(lower=5.0, upper=1.0)


@pytest.mark.parametrize("uniform", [True, False])
def test_ou_has_the_documented_stationary_statistics(uniform: bool) -> None:
    # Seed 11: any seed works; 200 000 samples at Δt = τ/20 (10 000 correlation times)
    # give the mean to ±3·σ/√(n_eff) ≈ ±0.06·σ and σ to a few per cent.
    rng = np.random.default_rng(11)
    sd, tau = 2.5, 20.0
    t = np.arange(200000) * 1.0 if uniform else np.cumsum(rng.uniform(0.2, 1.8, 200000))
    d = ou_deviations(t, sd, tau, rng)
    n_eff = (t[-1] - t[0]) / (2.0 * tau)
    assert abs(d.mean()) < 4.0 * sd / np.sqrt(n_eff)
    assert d.std() == pytest.approx(sd, rel=0.05)
    # Lag-1 autocorrelation is exp(−Δt/τ) for the exact discretisation.
    lag = np.mean(np.diff(t))
    r1 = np.corrcoef(d[:-1], d[1:])[0, 1]
    assert r1 == pytest.approx(np.exp(-lag / tau), abs=0.01)


def test_ou_uniform_path_is_the_exact_recursion() -> None:
    # The lfilter path against the recursion written out, same normals.
    t = np.arange(50) * 0.5
    d = ou_deviations(t, 1.5, 3.0, np.random.default_rng(5), d0=0.7)
    w = np.random.default_rng(5).standard_normal(50)
    a = np.exp(-0.5 / 3.0)
    ref = [0.7]
    for k in range(1, 50):
        ref.append(a * ref[-1] + 1.5 * np.sqrt(1 - a * a) * w[k])
    np.testing.assert_allclose(d, ref, rtol=1e-12, atol=1e-12)


def test_ou_non_uniform_path_is_the_exact_recursion() -> None:
    rng = np.random.default_rng(8)
    t = np.cumsum(rng.uniform(0.1, 30.0, 400))  # spans many 10·τ blocks
    d = ou_deviations(t, 1.0, 4.0, np.random.default_rng(9), d0=0.0)
    w = np.random.default_rng(9).standard_normal(t.size)
    ref = [0.0]
    for k in range(1, t.size):
        a = np.exp(-(t[k] - t[k - 1]) / 4.0)
        ref.append(a * ref[-1] + np.sqrt(1 - a * a) * w[k])
    np.testing.assert_allclose(d, ref, rtol=1e-7, atol=1e-7)


def test_reflect_folds_into_the_bounds() -> None:
    x = np.array([0.5, 1.2, -0.3, 2.5, 3.1, -1.7])
    np.testing.assert_allclose(reflect(x, 0.0, 1.0), [0.5, 0.8, 0.3, 0.5, 0.9, 0.3])


def test_walk_stays_in_tight_bounds_and_is_seeded() -> None:
    t = np.arange(0.0, 20_000.0)
    var = with_overrides(VariabilityParams(), {"spo2.sd": 3.0, "hr.lower": 68.0, "hr.upper": 72.0})
    means = baseline_trajectories(t, VitalBaseline())
    a = add_variability(t, means, var, np.random.default_rng(3))
    b = add_variability(t, means, var, np.random.default_rng(3))
    c = add_variability(t, means, var, np.random.default_rng(4))
    np.testing.assert_array_equal(a.hr_bpm, b.hr_bpm)
    assert not np.array_equal(a.hr_bpm, c.hr_bpm)
    assert a.hr_bpm.min() >= 68.0
    assert a.hr_bpm.max() <= 72.0
    assert a.spo2_percent.max() <= 100.0
    assert np.all(a.nibp_dia_mmhg < a.nibp_sys_mmhg)
    np.testing.assert_allclose(
        a.nibp_mean_mmhg, a.nibp_dia_mmhg + (a.nibp_sys_mmhg - a.nibp_dia_mmhg) / 3
    )


def test_walks_have_the_documented_means_and_sds() -> None:
    # 2 days at 1 s: > 500 correlation times for every vital but temperature.
    t = np.arange(0.0, 2 * 86_400.0)
    var = VariabilityParams()
    v = add_variability(
        t, baseline_trajectories(t, VitalBaseline()), var, np.random.default_rng(21)
    )
    base = VitalBaseline()
    assert v.hr_bpm.mean() == pytest.approx(base.hr_bpm, abs=0.5)
    assert v.hr_bpm.std() == pytest.approx(var.hr.sd, rel=0.1)
    assert v.rr_min.std() == pytest.approx(var.rr.sd, rel=0.1)
    assert v.nibp_sys_mmhg.std() == pytest.approx(var.nibp_sys.sd, rel=0.15)
    assert v.nibp_dia_mmhg.std() == pytest.approx(var.nibp_dia.sd, rel=0.15)
    rho = np.corrcoef(v.nibp_sys_mmhg, v.nibp_dia_mmhg)[0, 1]
    assert rho == pytest.approx(var.bp_correlation, abs=0.1)
    # PI is log-normal around its mean.
    assert np.log(v.pi_percent / base.pi_percent).std() == pytest.approx(var.pi.sd, rel=0.1)


def test_apnoea_holds_rr_at_zero() -> None:
    t = np.arange(0.0, 100.0)
    hold = (t >= 20) & (t < 50)
    v = add_variability(
        t,
        baseline_trajectories(t, VitalBaseline()),
        VariabilityParams(),
        np.random.default_rng(0),
        rr_hold_zero=hold,
    )
    assert np.all(v.rr_min[hold] == 0.0)
    assert np.all(v.rr_min[~hold] > 0.0)


def test_respiratory_phase_integrates_rr() -> None:
    t = np.linspace(0.0, 60.0, 601)
    rr = np.where(t < 30.0, 12.0, 0.0)
    phase = respiratory_phase_rad(t, rr)
    assert phase[299] == pytest.approx(2 * np.pi * 0.2 * 29.9)  # 0.2 breaths per s
    assert phase[-1] == pytest.approx(phase[300])  # apnoea: the phase stands still


def test_map_rule_and_grid_checks() -> None:
    assert float(mean_arterial_pressure(120.0, 80.0)) == pytest.approx(93.333, abs=1e-3)
    with pytest.raises(ParameterError, match="increasing"):
        baseline_trajectories([0.0, 2.0, 1.0], VitalBaseline())
    with pytest.raises(ParameterError, match="means lacks"):
        add_variability([0.0, 1.0], {}, VariabilityParams(), np.random.default_rng(0))


def test_a_mean_outside_the_bounds_is_clipped_not_folded() -> None:
    # A drug can take the SpO2 mean near 0 and an event could push HR past its bound:
    # the values stay next to the bound they crossed.
    t = np.arange(0.0, 2000.0)
    means = baseline_trajectories(t, VitalBaseline())
    means["spo2_percent"][:] = -3.0
    means["hr_bpm"][:] = 300.0
    v = add_variability(t, means, VariabilityParams(), np.random.default_rng(2))
    assert v.spo2_percent.max() < 2.0
    assert v.hr_bpm.min() > 240.0
