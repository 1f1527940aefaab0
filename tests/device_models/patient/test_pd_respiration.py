"""The closed respiratory loop (device_models/patient/respiration.py): PaCO2 feedback
(Bouillon 2003), FiO2, the airway modes, apnoea and the O2 store."""

from __future__ import annotations

import numpy as np
import pytest
from medtwin.device_models.base import ParameterError, with_overrides
from medtwin.device_models.patient.demographics import Demographics
from medtwin.device_models.patient.events import Apnoea
from medtwin.device_models.patient.model import Infusion, PatientParams, simulate_patient
from medtwin.device_models.patient.pd import SpO2Params, severinghaus_spo2_percent
from medtwin.device_models.patient.pk import pk_params, simulate
from medtwin.device_models.patient.respiration import (
    RespirationIntegrator,
    RespirationParams,
    simulate_respiration,
    ventilatory_drive,
)
from scipy.integrate import solve_ivp

#: The shipped scenario's patient (hil/data/scenarios/remifentanil-infusion.toml).
MAN = Demographics(age_y=40.0, weight_kg=70.0, height_cm=170.0, sex="male")
STILL = with_overrides(
    PatientParams(),
    {
        f"variability.{v}.sd": 0.0
        for v in ("hr", "spo2", "rr", "nibp_sys", "nibp_dia", "temp", "pi")
    },
)


def _scenario_drive(t_s: np.ndarray) -> np.ndarray:
    """The shipped scenario's dosing: 0.5 µg/kg/min for 5 min, 0.25 to 40 min, then off."""
    res = simulate(
        pk_params("remifentanil", "minto", MAN), t_s, [0.0, 300.0, 2400.0], [0.035, 0.0175, 0.0]
    )
    drive: np.ndarray = ventilatory_drive({"remifentanil": res.ce[0]})
    return drive


def test_drive_is_bouillons_hill_model() -> None:
    # half the drive at C50 = 0.92 ng/mL (Bouillon 2003); the drugs multiply
    assert float(ventilatory_drive({"remifentanil": 0.92})) == pytest.approx(0.5)
    assert float(ventilatory_drive({})) == 1.0
    both = ventilatory_drive({"remifentanil": 0.92, "propofol": 1.33})
    assert float(both) == pytest.approx(0.25)
    with pytest.raises(ParameterError, match="ketamine"):
        ventilatory_drive({"ketamine": 1.0})
    with pytest.raises(ParameterError, match="airway"):
        RespirationIntegrator(97.0, params=RespirationParams(airway="cpap"))


def test_steady_state_is_the_analytic_one() -> None:
    # At constant drive D: P = P0/V and V = D·(P/P0)^F, so P = P0·D^(-1/(1+F)), and the
    # alveolar gas equation PAO2 = PIO2 - P/R (A-a offset fixed by the baseline).
    t = np.arange(0.0, 6 * 3600.0, 10.0)
    drive = 0.1
    res = simulate_respiration(t, np.full(t.size, drive), 97.0)
    p_ss = 40.0 * drive ** (-1.0 / (1.0 + 4.30))
    assert res.paco2_mmhg[-1] == pytest.approx(p_ss, rel=1e-6)
    assert res.ventilation_fraction[-1] == pytest.approx(40.0 / p_ss, rel=1e-6)
    assert res.rr_min[-1] == pytest.approx(12.0 * 40.0 / p_ss, rel=1e-6)
    base = RespirationIntegrator(97.0)
    offset = 0.21 * 713.0 - 50.0 - float(base.pao2_mmhg)
    assert res.pao2_mmhg[-1] == pytest.approx(0.21 * 713.0 - p_ss / 0.8 - offset, rel=1e-6)


def test_against_solve_ivp() -> None:
    """The RK4 substeps against scipy's adaptive reference on the same equations."""
    p, s = RespirationParams(), SpO2Params()
    t = np.arange(0.0, 1801.0, 5.0)
    drive = np.where(t < 300.0, 0.2, 0.5)
    got = simulate_respiration(t, drive, 97.0, params=p)
    live = RespirationIntegrator(97.0, params=p)
    c = live._c  # the same constants, so only the integration is compared
    from medtwin.device_models.patient.respiration import _rates

    def rhs(tt: float, y: np.ndarray) -> list[float]:
        d = np.array(0.2 if tt < 300.0 else 0.5)
        r = _rates(c, (np.array(y[0]), np.array(y[1]), np.array(y[2])), d, np.array(True))
        return [float(v) / 60.0 for v in r]

    y0 = [40.0, 40.0, float(live._x[2])]
    first = solve_ivp(rhs, (0.0, 300.0), y0, t_eval=t[t <= 300.0], rtol=1e-10, atol=1e-10)
    second = solve_ivp(
        rhs, (300.0, 1800.0), first.y[:, -1], t_eval=t[t >= 300.0], rtol=1e-10, atol=1e-10
    )
    ref = np.hstack([first.y, second.y[:, 1:]])
    np.testing.assert_allclose(got.paco2_mmhg, ref[0], rtol=1e-6)
    assert np.min(ref[2] - c.offset) > 25.0  # the PO2 floor is not reached: no clamp
    np.testing.assert_allclose(got.pao2_mmhg, ref[2] - c.offset, rtol=1e-6)
    assert got.spo2_percent.min() < 90.0  # a real excursion, not a flat line
    assert s.fio2 == 0.21


def test_live_equals_batch() -> None:
    rng = np.random.default_rng(11)  # seed 11: any irregular grid; fixed to reproduce
    t = np.sort(rng.uniform(0.0, 900.0, 90))
    t[0] = 0.0
    drive = np.vstack([np.where(t < 200.0, 1.0, 0.08), np.full(t.size, 0.5)])
    on = np.vstack([np.ones(t.size, bool), (t < 400.0) | (t > 500.0)])
    batch = simulate_respiration(t, drive, [97.0, 95.0], breathing=on)
    live = RespirationIntegrator([97.0, 95.0])
    for k in range(t.size):
        np.testing.assert_allclose(live.spo2_percent, batch.spo2_percent[:, k], rtol=1e-12)
        np.testing.assert_allclose(live.paco2_mmhg, batch.paco2_mmhg[:, k], rtol=1e-12)
        if k + 1 < t.size:
            live.advance(float(t[k + 1] - t[k]), drive[:, k], on[:, k])


@pytest.mark.parametrize("airway", ["spontaneous", "ventilated"])
def test_one_patients_float_path_equals_the_batch_path(airway: str) -> None:
    # simulate_respiration integrates one patient on Python floats, a batch on arrays:
    # the same steps, so each patient of a batch is what it gets alone.
    rng = np.random.default_rng(5)  # seed 5: any irregular grid; fixed to reproduce
    t = np.sort(rng.uniform(0.0, 1800.0, 120))
    t[0] = 0.0
    drive = np.vstack([np.where(t < 300.0, 1.0, 0.05), np.full(t.size, 0.4)])
    on = np.vstack([np.ones(t.size, bool), (t < 600.0) | (t > 700.0)])
    params = RespirationParams(airway=airway)
    batch = simulate_respiration(t, drive, [97.0, 95.0], breathing=on, params=params)
    for i, base in enumerate((97.0, 95.0)):
        alone = simulate_respiration(t, drive[i], base, breathing=on[i], params=params)
        for name in ("paco2_mmhg", "pao2_mmhg", "spo2_percent", "ventilation_fraction", "rr_min"):
            np.testing.assert_allclose(
                getattr(alone, name), getattr(batch, name)[i], rtol=1e-12, atol=1e-12
            )


def test_remifentanil_scenario_with_co2_feedback_room_air() -> None:
    """The shipped scenario's doses, breathing spontaneously on room air.

    Without feedback the RR factor fell to ~0.2 (2-3 /min) and SpO2 to ~0.2 %. With
    Bouillon 2003's loop the opioid's steady state at 0.25 µg/kg/min (Ce ≈ 6.4 ng/mL) is
    PaCO2 ≈ 65 mmHg — the hypercapnia Bouillon's volunteers were taken to (end-tidal
    CO2 > 65 mmHg) — with RR ≈ 7 /min. The 0.5 µg/kg/min induction outpaces the slow CO2
    store (kel 0.08 /min): ventilation falls to ~15 % for minutes (Bouillon's warning about
    fast opioid loading in spontaneously breathing patients), which on room air empties the
    O2 store: SpO2 reaches the model's floor (PaO2 20 mmHg, ≈ 32 %), never ~0 %.
    """
    t = np.arange(0.0, 3001.0)
    res = simulate_respiration(t, _scenario_drive(t), 97.0)
    maintenance = (t >= 1200.0) & (t < 2400.0)
    assert res.rr_min[maintenance].min() > 5.0
    assert res.rr_min[maintenance].max() < 10.0
    assert res.rr_min.min() > 1.5  # slowed, never stopped, by the loop
    assert 55.0 < res.paco2_mmhg[maintenance].max() < 70.0
    assert res.spo2_percent[maintenance][-1] > 85.0
    floor = float(severinghaus_spo2_percent(20.0))
    assert res.spo2_percent.min() == pytest.approx(floor)
    assert 31.0 < floor < 33.0
    # after the infusion stops the patient recovers: breathing above baseline clears the CO2
    assert res.rr_min[-1] > 12.0
    assert res.spo2_percent[-1] > 96.0


def test_supplemental_oxygen_raises_spo2() -> None:
    t = np.arange(0.0, 3001.0)
    drive = _scenario_drive(t)
    air = simulate_respiration(t, drive, 97.0)
    o2 = simulate_respiration(t, drive, 97.0, spo2_params=SpO2Params(fio2=0.5))
    assert np.all(o2.spo2_percent >= air.spo2_percent)
    assert o2.spo2_percent[0] > 99.0
    assert o2.spo2_percent.min() > 98.0
    np.testing.assert_allclose(o2.paco2_mmhg, air.paco2_mmhg)  # O2 does not touch the CO2


def test_ventilated_airway_holds_baseline_under_propofol() -> None:
    t = np.arange(0.0, 1800.0)
    rate = np.where(t < 60.0, 0.0, np.where(t < 120.0, 600.0, 60.0))  # an anaesthetic dose
    propofol = Infusion("propofol", "schnider", 10.0, rate)
    vent = with_overrides(STILL, {"respiration.airway": "ventilated"})
    rec = simulate_patient(
        t, rng=np.random.default_rng(4), demographics=MAN, params=vent, infusions=[propofol]
    )
    assert rec.ce[-1] > 2.0  # µg/mL: anaesthetised
    np.testing.assert_allclose(rec.spo2_percent, STILL.baseline.spo2_percent, rtol=1e-9)
    np.testing.assert_allclose(rec.paco2_mmhg, 40.0, rtol=1e-9)
    np.testing.assert_array_equal(rec.rr_min, 12.0)  # the set ventilator rate
    assert not rec.apnoea.any()
    # the same dose breathing spontaneously: depressed but not apnoeic, hypercapnic
    spont = simulate_patient(
        t, rng=np.random.default_rng(4), demographics=MAN, params=STILL, infusions=[propofol]
    )
    assert spont.paco2_mmhg[-1] > 45.0
    assert 0.0 < spont.rr_min[-1] < STILL.baseline.rr_min


@pytest.mark.parametrize(("fio2", "lo_s", "hi_s"), [(0.21, 30.0, 120.0), (0.9, 300.0, 600.0)])
def test_apnoea_desaturates_over_minutes_slower_after_preoxygenation(
    fio2: float, lo_s: float, hi_s: float
) -> None:
    """Room air: SpO2 90 % within about a minute; FiO2 0.9 beforehand: after several
    minutes (Benumof 1997 reports ~8 min for a healthy adult preoxygenated to FAO2 0.87;
    not fitted)."""
    t = np.arange(0.0, 1200.0)
    params = with_overrides(STILL, {"spo2.fio2": fio2})
    rec = simulate_patient(
        t,
        rng=np.random.default_rng(0),
        demographics=MAN,
        params=params,
        events=[Apnoea(at_s=60.0, duration_s=900.0)],
    )
    below = t[(t >= 60.0) & (rec.spo2_percent < 90.0)]
    assert lo_s < below[0] - 60.0 < hi_s
    assert np.all(rec.rr_min[(t >= 60.0) & (t < 960.0)] == 0.0)
    assert rec.apnoea[100]
    assert not rec.apnoea[1000]
    # PaCO2 rises ~3 mmHg/min in apnoea (kel·P0)
    rise = (rec.paco2_mmhg[660] - rec.paco2_mmhg[60]) / 10.0
    assert 2.5 < rise < 3.5
    assert rec.spo2_percent[-1] > 95.0  # recovers once breathing resumes
