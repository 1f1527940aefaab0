"""The composed patient model (device_models/patient/model.py).

Seeds are arbitrary: no assertion depends on a particular draw.
"""

from __future__ import annotations

import numpy as np
import pytest
from medtwin.device_models.base import ParameterError, list_parameters, with_overrides
from medtwin.device_models.patient import pd, pk
from medtwin.device_models.patient.demographics import Demographics
from medtwin.device_models.patient.events import Desaturation, Motion, SensorOff
from medtwin.device_models.patient.model import (
    Infusion,
    PatientModel,
    PatientParams,
    simulate_patient,
)
from medtwin.device_models.patient.respiration import simulate_respiration, ventilatory_drive
from medtwin.device_models.patient.vitals import baseline_for
from scipy.signal import welch

ADULT = Demographics(age_y=45.0, weight_kg=80.0, height_cm=178.0, sex="male")
#: No variability: the vitals are their means, so drug effects can be checked exactly.
STILL = with_overrides(
    PatientParams(),
    {
        f"variability.{v}.sd": 0.0
        for v in ("hr", "spo2", "rr", "nibp_sys", "nibp_dia", "temp", "pi")
    },
)


def _remifentanil(t: np.ndarray) -> Infusion:
    # 0.05 mg/mL at 12 mL/h for 10 min, then 3 mL/h: about 0.1 then 0.03 µg/kg/min.
    rate = np.where(t < 60.0, 0.0, np.where(t < 660.0, 12.0, 3.0))
    return Infusion("remifentanil", "minto", 0.05, rate)


def test_seeded_and_signals_independent_of_call_order() -> None:
    # Seed 5 and 6: any two seeds.
    t = np.arange(0.0, 300.0)
    a = simulate_patient(t, rng=np.random.default_rng(5))
    b = simulate_patient(t, rng=np.random.default_rng(5))
    c = simulate_patient(t, rng=np.random.default_rng(6))
    np.testing.assert_array_equal(a.hr_bpm, b.hr_bpm)
    assert not np.array_equal(a.hr_bpm, c.hr_bpm)
    pleth_first = a.pleth(75.0, 16)[1]
    r_then = b.r_peak_times_s()
    np.testing.assert_array_equal(pleth_first, b.pleth(75.0, 16)[1])
    np.testing.assert_array_equal(r_then, a.r_peak_times_s())
    np.testing.assert_array_equal(a.resp()[1], b.resp()[1])
    np.testing.assert_array_equal(a.pleth()[1], a.pleth()[1])  # a second call, same samples


def test_baseline_from_demographics_and_no_drug() -> None:
    child = Demographics(age_y=2.0, weight_kg=12.0, height_cm=86.0)
    t = np.arange(0.0, 600.0)
    rec = simulate_patient(t, rng=np.random.default_rng(0), demographics=child, params=None)
    assert rec.params.baseline == baseline_for(child)
    assert rec.hr_bpm.mean() == pytest.approx(113.0, abs=5.0)
    np.testing.assert_array_equal(rec.bis, pd.BISParams().e0)
    np.testing.assert_array_equal(rec.ce, 0.0)
    np.testing.assert_array_equal(rec.cp, 0.0)
    assert rec.cp_by_drug == {}
    assert not (rec.sensor_off.any())
    assert not (rec.motion.any())
    assert not (rec.apnoea.any())


def test_drug_effects_are_applied_to_the_baseline() -> None:
    t = np.arange(0.0, 1800.0)
    inf = _remifentanil(t)
    rec = simulate_patient(
        t, rng=np.random.default_rng(1), demographics=ADULT, params=STILL, infusions=[inf]
    )
    ref = pk.simulate(
        pk.pk_params("remifentanil", "minto", ADULT),
        t,
        t,
        pk.dose_rate_mg_min(np.asarray(inf.rate_ml_h), 0.05),
    )
    np.testing.assert_allclose(rec.ce, ref.ce[0])
    np.testing.assert_allclose(rec.cp_by_drug["remifentanil"], ref.cp[0])
    fx = pd.drug_effects({"remifentanil": ref.ce[0]})
    base = STILL.baseline
    np.testing.assert_allclose(rec.bis, fx.bis)
    np.testing.assert_allclose(rec.hr_bpm, base.hr_bpm * fx.hr_factor)
    np.testing.assert_allclose(rec.nibp_sys_mmhg, base.nibp_sys_mmhg * fx.map_factor)
    map0 = base.nibp_dia_mmhg + (base.nibp_sys_mmhg - base.nibp_dia_mmhg) / 3.0
    np.testing.assert_allclose(rec.nibp_mean_mmhg, map0 * fx.map_factor)
    # RR and SpO2 come from the closed respiratory loop driven by the same Ce
    resp = simulate_respiration(
        t,
        ventilatory_drive({"remifentanil": ref.ce[0]}),
        base.spo2_percent,
        baseline_rr_min=base.rr_min,
    )
    np.testing.assert_allclose(rec.rr_min, np.where(resp.rr_min < 1.0, 0.0, resp.rr_min))
    np.testing.assert_allclose(rec.spo2_percent, resp.spo2_percent)
    np.testing.assert_allclose(rec.paco2_mmhg, resp.paco2_mmhg)
    assert rec.paco2_mmhg.max() > 45.0  # the opioid lets CO2 build up, which drives breathing
    assert rec.hr_bpm.min() < base.hr_bpm
    assert rec.bis.min() < pd.BISParams().e0 - 1.0


def test_two_drugs() -> None:
    t = np.arange(0.0, 900.0)
    propofol = Infusion("propofol", "schnider", 10.0, np.array([60.0, 15.0]), [0.0, 120.0])
    rec = simulate_patient(
        t,
        rng=np.random.default_rng(2),
        demographics=ADULT,
        infusions=[propofol, _remifentanil(t)],
    )
    assert set(rec.ce_by_drug) == {"propofol", "remifentanil"}
    assert rec.ce_by_drug["propofol"][-1] > 0.5  # µg/mL
    with pytest.raises(ParameterError, match="several drugs"):
        _ = rec.ce
    alone = simulate_patient(
        t, rng=np.random.default_rng(2), demographics=ADULT, infusions=[propofol]
    )
    assert rec.bis[-1] < alone.bis[-1]  # the surface adds the opioid's effect


def test_drug_apnoea_holds_rr_at_zero() -> None:
    t = np.arange(0.0, 900.0)
    rate = np.where(t < 60.0, 0.0, 120.0)  # a massive remifentanil overdose
    rec = simulate_patient(
        t,
        rng=np.random.default_rng(3),
        demographics=ADULT,
        infusions=[Infusion("remifentanil", "minto", 0.05, rate)],
    )
    assert rec.apnoea[-1]
    assert rec.rr_min[-1] == 0.0
    assert rec.spo2_percent[-1] < 90.0
    assert np.all((rec.spo2_percent >= 0.0) & (rec.spo2_percent <= 100.0))


def test_events_and_flags_reach_the_signals() -> None:
    t = np.arange(0.0, 240.0)
    model = PatientModel(
        demographics=ADULT,
        params=STILL,
        events=(
            Desaturation(at_s=30.0, to_percent=85.0, duration_s=90.0),
            SensorOff(at_s=150.0, duration_s=20.0),
            Motion(at_s=200.0, duration_s=20.0),
        ),
    )
    rec = model.simulate(t, np.random.default_rng(4))
    assert rec.spo2_percent.min() == pytest.approx(85.0, abs=0.1)
    assert rec.sensor_off[150:170].all()
    assert not rec.sensor_off[170:].any()
    assert rec.motion[200:220].all()
    tp, x = rec.pleth(75.0, 8)
    assert np.all(x[(tp >= 150.0) & (tp < 170.0)] == 0)
    assert int(np.ptp(x[(tp >= 130.0) & (tp < 150.0)])) > 10
    # The same model simulates the same way.
    again = model.simulate(t, np.random.default_rng(4))
    np.testing.assert_array_equal(rec.spo2_percent, again.spo2_percent)


def test_signals_follow_the_record() -> None:
    t = np.arange(0.0, 900.0)
    params = with_overrides(PatientParams(), {"baseline.hr_bpm": 84, "baseline.rr_min": 18})
    rec = simulate_patient(t, rng=np.random.default_rng(7), params=params)
    r = rec.r_peak_times_s()
    assert np.diff(r).mean() == pytest.approx(60.0 / rec.hr_bpm.mean(), rel=0.01)
    _tp, x = rec.pleth(75.0)
    assert x.dtype == np.float64
    f, p = welch(x - x.mean(), fs=75.0, nperseg=4096)
    band = (f > 0.5) & (f < 5.0)
    assert f[band][np.argmax(p[band])] == pytest.approx(84.0 / 60.0, abs=0.06)
    _tr, y = rec.resp(25.0)
    f, p = welch(y - y.mean(), fs=25.0, nperseg=4096)
    band = (f > 0.05) & (f < 2.0)
    assert f[band][np.argmax(p[band])] == pytest.approx(18.0 / 60.0, abs=0.02)


def test_a_day_at_75_hz() -> None:
    t = np.arange(0.0, 86_400.0 + 1.0)
    rec = simulate_patient(t, rng=np.random.default_rng(8))
    tp, q8 = rec.pleth(75.0, 8)
    assert q8.dtype == np.uint8
    assert q8.size == 86_400 * 75 + 1
    assert tp[-1] == pytest.approx(86_400.0)
    assert rec.r_peak_times_s().size == pytest.approx(86_400 * rec.hr_bpm.mean() / 60.0, rel=0.01)
    # The same record at 16 bits: the same signal, finer steps (first minute only).
    short = simulate_patient(t[:61], rng=np.random.default_rng(8))
    _, s8 = short.pleth(75.0, 8)
    _, s16 = short.pleth(75.0, 16)
    assert s16.dtype == np.uint16
    np.testing.assert_allclose(s16 / 65535.0, s8 / 255.0, atol=0.5 / 255 + 1e-4)


def test_parameters_are_addressable() -> None:
    names = {p.name for p in list_parameters(PatientParams())}
    assert {
        "baseline.hr_bpm",
        "variability.spo2.tau_s",
        "signals.hrv.lf_hz",
        "signals.pleth.ptt_s",
        "pd.rr_effect.remifentanil_c50_ng_ml",
        "spo2.tau_s",
        "apnoea_threshold_rr_min",
    } <= names
    with pytest.raises(ParameterError, match="hr_bpm"):
        with_overrides(PatientParams(), {"baseline.hr_bpm": 1000})


@pytest.mark.parametrize(
    ("infusions", "match"),
    [
        ([Infusion("ketamine", "x", 1.0, np.zeros(10))], r"infusions\[0\]\.drug"),
        (
            [
                Infusion("propofol", "marsh", 10.0, np.zeros(10)),
                Infusion("propofol", "schnider", 10.0, np.zeros(10)),
            ],
            r"infusions\[1\]\.drug",
        ),
        ([Infusion("propofol", "marsh", 10.0, np.zeros(3))], r"infusions\[0\]\.rate_ml_h"),
        ([Infusion("propofol", "nonesuch", 10.0, np.zeros(10))], "nonesuch"),
    ],
)
def test_bad_infusions(infusions: list[Infusion], match: str) -> None:
    with pytest.raises(ParameterError, match=match):
        simulate_patient(np.arange(10.0), rng=np.random.default_rng(0), infusions=infusions)
