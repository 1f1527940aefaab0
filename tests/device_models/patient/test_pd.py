"""Pharmacodynamics: Hill models, the BIS response surface, vital-sign factors and the
ventilation → PaCO2 → PAO2 → SpO2 chain."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from medtwin.device_models.base import ParameterError, with_overrides
from medtwin.device_models.patient.demographics import Demographics
from medtwin.device_models.patient.pd import (
    BISParams,
    HillPair,
    OxygenationIntegrator,
    PDParams,
    SpO2Params,
    alveolar_po2_mmhg,
    bis_response_surface,
    drug_effects,
    hill,
    pao2_target_mmhg,
    severinghaus_pao2_mmhg,
    severinghaus_spo2_percent,
    spo2_from_ventilation,
    spo2_target_percent,
)
from medtwin.device_models.patient.pk import pk_params, simulate


def test_hill_half_effect_at_c50_zero_at_zero_and_saturating() -> None:
    assert float(hill(3.0, 3.0, 2.5, 0.8)) == pytest.approx(0.4)
    assert float(hill(0.0, 3.0, 2.5)) == 0.0
    assert float(hill(1e9, 3.0, 2.5)) == pytest.approx(1.0)
    c = np.linspace(0.0, 20.0, 401)
    assert np.all(np.diff(hill(c, 3.0, 1.7)) > 0.0)


def test_bis_response_surface_published_points() -> None:
    p = BISParams()
    assert float(bis_response_surface(0.0, 0.0, p)) == pytest.approx(97.4)
    half = 97.4 - 97.4 / 2
    assert float(bis_response_surface(4.47, 0.0, p)) == pytest.approx(half)
    assert float(bis_response_surface(0.0, 19.3, p)) == pytest.approx(half)
    # β = 0: the two drugs add in units of their C50s
    assert float(bis_response_surface(4.47 / 2, 19.3 / 2, p)) == pytest.approx(half)
    # with β > 0 the same mixture is more potent than additive (U50 < 1 at θ = 1/2)
    synergy = BISParams(beta=1.0)
    assert float(bis_response_surface(4.47 / 2, 19.3 / 2, synergy)) < half


@settings(max_examples=60, deadline=None)
@given(
    cp=st.floats(0.0, 15.0),
    cr=st.floats(0.0, 40.0),
    dp=st.floats(0.01, 5.0),
    dr=st.floats(0.01, 10.0),
)
def test_effects_monotone_in_each_drug(cp: float, cr: float, dp: float, dr: float) -> None:
    low = drug_effects({"propofol": cp, "remifentanil": cr})
    more_p = drug_effects({"propofol": cp + dp, "remifentanil": cr})
    more_r = drug_effects({"propofol": cp, "remifentanil": cr + dr})
    for higher in (more_p, more_r):
        assert higher.bis <= low.bis
        assert higher.map_factor <= low.map_factor
        assert higher.hr_factor <= low.hr_factor
        assert higher.rr_factor <= low.rr_factor
    for e in (low, more_p, more_r):
        for arr in (e.map_factor, e.hr_factor, e.rr_factor):
            assert 0.0 <= float(arr) <= 1.0
        assert 0.0 <= float(e.bis) <= 97.4


def test_drug_effects_shapes_defaults_and_apnoea() -> None:
    ce_p = np.zeros((3, 5))
    e = drug_effects({"propofol": ce_p})
    assert e.bis.shape == (3, 5)
    np.testing.assert_array_equal(e.map_factor, 1.0)
    np.testing.assert_array_equal(e.rr_factor, e.ventilation_fraction)
    params = PDParams()
    rr = params.rr_effect
    at_c50 = drug_effects({"remifentanil": rr.remifentanil_c50_ng_ml}, params)
    assert float(at_c50.rr_factor) == pytest.approx(1.0 - rr.remifentanil_emax / 2)
    apnoea = drug_effects({"remifentanil": 200.0})
    assert float(apnoea.rr_factor) < 0.01
    assert float(drug_effects({"remifentanil": 200.0}).hr_factor) > 0.5
    custom = HillPair(0.5, 2.0, 1.0, 0.0, 1.0, 1.0)
    assert float(custom.factor(2.0, 50.0)) == pytest.approx(0.75)


def test_drug_effects_bad_input() -> None:
    with pytest.raises(ParameterError, match="ketamine"):
        drug_effects({"ketamine": 1.0})
    with pytest.raises(ParameterError, match="propofol"):
        drug_effects({"propofol": -1.0})
    with pytest.raises(ParameterError, match="propofol"):
        drug_effects({"propofol": float("nan")})
    with pytest.raises(ParameterError, match=r"rr_effect\.remifentanil_c50_ng_ml"):
        with_overrides(PDParams(), {"rr_effect.remifentanil_c50_ng_ml": -1.0})
    changed = with_overrides(PDParams(), {"bis.gamma": 2.0})
    assert changed.bis.gamma == 2.0


def test_severinghaus_sanity_points() -> None:
    # P50 of adult haemoglobin 26.8 mmHg → 50 %; PaO2 ~100 mmHg → 97-98 %.
    assert float(severinghaus_spo2_percent(26.8)) == pytest.approx(50.0, abs=0.3)
    assert 97.0 <= float(severinghaus_spo2_percent(100.0)) <= 98.0
    assert float(severinghaus_spo2_percent(0.0)) == 0.0
    assert float(severinghaus_spo2_percent(-5.0)) == 0.0
    p = np.linspace(1.0, 600.0, 600)
    s = severinghaus_spo2_percent(p)
    assert np.all(np.diff(s) > 0.0)
    np.testing.assert_allclose(severinghaus_pao2_mmhg(s), p, rtol=1e-9)
    with pytest.raises(ParameterError, match="spo2_percent"):
        severinghaus_pao2_mmhg(100.0)


def test_alveolar_gas_equation() -> None:
    # Room air at sea level, PaCO2 40 mmHg, R 0.8: 0.21·713 − 50 = 99.73 mmHg.
    assert float(alveolar_po2_mmhg(40.0)) == pytest.approx(0.21 * 713.0 - 50.0)
    oxygen = SpO2Params(fio2=1.0)
    assert float(alveolar_po2_mmhg(40.0, oxygen)) == pytest.approx(713.0 - 50.0)


def test_target_reproduces_baseline_and_falls_with_ventilation() -> None:
    for baseline in (92.0, 96.0, 97.5, 99.0):
        assert float(spo2_target_percent(1.0, baseline)) == pytest.approx(baseline, rel=1e-12)
    f = np.linspace(1.0, 0.0, 51)
    target = spo2_target_percent(f, 97.0)
    assert np.all(np.diff(target) <= 0.0)
    assert target[-1] == 0.0
    # PaCO2 ∝ 1/f: halving ventilation doubles PaCO2, lowering PAO2 by PaCO2_0/R = 50 mmHg.
    drop = pao2_target_mmhg(1.0, 97.0) - pao2_target_mmhg(0.5, 97.0)
    assert float(drop) == pytest.approx(40.0 / 0.8)


def test_spo2_lag_is_the_exact_first_order_solution() -> None:
    params = SpO2Params(tau_s=90.0)
    t_s = np.arange(0.0, 900.0, 5.0)
    vent = np.where(t_s < 100.0, 1.0, 0.5)
    got = spo2_from_ventilation(t_s, vent, 97.0, params=params)
    pao2_0 = float(severinghaus_pao2_mmhg(97.0))
    target = float(pao2_target_mmhg(0.5, 97.0, params))
    # the hold starts at the first sample at or after 100 s (zero-order hold)
    tau = np.clip(t_s - 100.0, 0.0, None)
    expected = severinghaus_spo2_percent(target + (pao2_0 - target) * np.exp(-tau / 90.0))
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    assert got[0] == pytest.approx(97.0)
    assert got[-1] == pytest.approx(float(spo2_target_percent(0.5, 97.0, params)), rel=1e-3)


def test_apnoea_desaturates_over_minutes_not_at_once() -> None:
    t_s = np.arange(0.0, 601.0, 1.0)
    got = spo2_from_ventilation(t_s, np.zeros_like(t_s), 97.0)
    assert got[30] > 90.0  # the lungs' oxygen store holds SpO2 for a while
    assert got[300] < 60.0
    assert np.all(np.diff(got) <= 0.0)


def test_nonuniform_batch_and_live_forms_agree() -> None:
    rng = np.random.default_rng(7)  # seed 7: any irregular grid does; fixed to reproduce
    t_s = np.sort(rng.uniform(0.0, 600.0, 120))
    vent = np.vstack([np.where(t_s < 200.0, 1.0, 0.3), np.full_like(t_s, 0.8)])
    baseline = np.array([97.0, 95.0])
    got = spo2_from_ventilation(t_s, vent, baseline)
    assert got.shape == (2, 120)
    live = OxygenationIntegrator(baseline)
    np.testing.assert_allclose(live.spo2_percent, got[:, 0], rtol=1e-12)
    for k in range(119):
        live.advance(float(t_s[k + 1] - t_s[k]), vent[:, k])
        np.testing.assert_allclose(live.spo2_percent, got[:, k + 1], rtol=1e-10)
    with pytest.raises(ParameterError, match="t_s"):
        spo2_from_ventilation(t_s[::-1], vent, baseline)
    with pytest.raises(ParameterError, match="ventilation_fraction"):
        spo2_from_ventilation(t_s[:10], vent, baseline)


def test_remifentanil_infusion_lowers_rr_and_then_spo2() -> None:
    """The coupling the patient model uses: PK effect site → RR factor → SpO2."""
    p = pk_params("remifentanil", "minto", Demographics(age_y=50.0, weight_kg=70.0))
    t_s = np.arange(0.0, 1800.0 + 1e-9, 10.0)
    # 0.5 µg/kg/min for 70 kg = 0.035 mg/min, from 60 s on
    res = simulate(p, t_s, [60.0], [0.035])
    effects = drug_effects({"remifentanil": res.ce})
    spo2 = spo2_from_ventilation(t_s, effects.ventilation_fraction, 97.0)
    assert effects.rr_factor[0, 0] == 1.0
    assert effects.rr_factor[0, -1] < 0.5
    assert spo2[0, 0] == pytest.approx(97.0)
    assert spo2[0, -1] < 90.0
    assert math.isfinite(float(effects.bis[0, -1]))
