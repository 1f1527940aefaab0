"""The closed-form system model against independent references.

* ``solve_ivp`` (RK45, tight tolerances, restarted at every discontinuity) on the same
  equations written as an ODE, for continuous plunger motion (quantised steps are a
  staircase input no ODE solver should step across);
* hand-derived closed forms for start-up, occlusion and the released bolus.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from medtwin.device_models.reference import reference_constants, solve_reference
from medtwin.device_models.schedule import Schedule
from medtwin.device_models.syringe_pump import PA_PER_MMHG, SyringePumpParams
from medtwin.device_models.system import SystemParams, simulate


def _constants(p: SystemParams) -> dict[str, float]:
    return reference_constants(p)


def _reference(
    p: SystemParams, rates: list[tuple[float, float]], t_out: np.ndarray
) -> dict[str, np.ndarray]:
    ref = solve_reference(p, rates, t_out)
    return {
        "pressure": ref["pressure_mmhg"],
        "delivered": ref["delivered_ml"],
        "settled": ref["settled_g"],
    }


@pytest.fixture
def continuous() -> SystemParams:
    return SystemParams.nominal().with_overrides({"pump.quantised_steps": False})


def test_startup_matches_solve_ivp(continuous: SystemParams) -> None:
    t = np.linspace(0.0, 1800.0, 901)
    ours = simulate(continuous, Schedule().set_rate(0, 5.0).start(0), t).row(0)
    ref = _reference(continuous, [(0.0, 5.0)], t)
    # continuous part: after the backlash is taken up (before it everything is exactly 0)
    k = _constants(continuous)
    t_engage = k["sigma"] / (5.0 / 3600.0 / k["dv"])
    late = t > t_engage + 1.0
    for name, ref_name in (
        ("line_pressure_mmhg", "pressure"),
        ("delivered_ml", "delivered"),
        ("balance_settled_g", "settled"),
    ):
        got, want = ours[name][late], ref[ref_name][late]
        rel = np.max(np.abs(got - want) / np.maximum(np.abs(want), 1e-9))
        assert rel <= 1e-6, (name, rel)
    assert np.all(ours["delivered_ml"][t < t_engage] == 0.0)


def test_rate_changes_and_wear_match_solve_ivp(continuous: SystemParams) -> None:
    params = continuous.with_overrides(
        {
            "pump.drive.wear_percent_per_h": 3.0,
            "pump.drive.wear_onset_s": 1000.0,
            "balance.evaporation_g_per_h": 0.01,
        }
    )
    rates = [(0.0, 5.0), (700.0, 20.0), (1500.0, 2.0), (2600.0, 10.0)]
    schedule = Schedule().start(0)
    for t_r, r in rates:
        schedule.set_rate(t_r, r)
    t = np.linspace(0.0, 3600.0, 1801)
    ours = simulate(params, schedule, t).row(0)
    ref = _reference(params, rates, t)
    late = t > 200.0
    for name, ref_name in (
        ("line_pressure_mmhg", "pressure"),
        ("delivered_ml", "delivered"),
        ("balance_settled_g", "settled"),
    ):
        got, want = ours[name][late], ref[ref_name][late]
        rel = np.max(np.abs(got - want) / np.maximum(np.abs(want), 1e-9))
        assert rel <= 1e-6, (name, rel)


def test_startup_closed_form(continuous: SystemParams) -> None:
    """Backlash, then the rim creeping below breakaway (a first-order lag T = η/k of the
    drive) into the line (a first-order lag τ = RC): with x = t − t_e,
    q_rim = q(1 − e^{−x/T}), P = P_eq + qR[1 − (T e^{−x/T} − τ e^{−x/τ})/(T − τ)],
    V_out = q[x − T − τ + (T² e^{−x/T} − τ² e^{−x/τ})/(T − τ)]."""
    k = _constants(continuous)
    rate = 2.0  # the steady creep force η·v (7.1 N) stays below the breakaway (8.4 N)
    q = rate / 3600.0
    t_e = k["sigma"] * k["dv"] / q
    tau = 1.0 / k["lam"]
    creep = 1.0 / k["kappa"]
    t = np.linspace(0.0, 7200.0, 3601)
    ours = simulate(continuous, Schedule().set_rate(0, rate).start(0), t).row(0)
    x = np.maximum(t - t_e, 0.0)
    e_c, e_l = np.exp(-x / creep), np.exp(-x / tau)
    r_line = tau / k["C"]
    pressure = k["p_eq"] + q * r_line * (1.0 - (creep * e_c - tau * e_l) / (creep - tau))
    delivered = q * (x - creep - tau + (creep**2 * e_c - tau**2 * e_l) / (creep - tau))
    np.testing.assert_allclose(ours["line_pressure_mmhg"], pressure, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(ours["delivered_ml"], delivered, rtol=1e-8, atol=1e-12)
    # BD 50 mL at 2 mL/h: 0.2 mm of backlash at 3.6 mm/h, 200 s of no delivery
    assert 190.0 < t_e < 210.0


@pytest.mark.parametrize("quantised", [True, False])
@pytest.mark.parametrize("rate", [1.0, 5.0, 25.0])
def test_occlusion_time_to_alarm_and_bolus(quantised: bool, rate: float) -> None:
    """t_alarm = C·(P* − P_0)/q + latency; bolus released = C·(P_alarm − P_eq)."""
    params = SystemParams.nominal().with_overrides({"pump.quantised_steps": quantised})
    k = _constants(params)
    q = rate / 3600.0
    t_occ = 3600.0
    horizon = t_occ + 3.0 * k["C"] * 600.0 / q
    schedule = Schedule().set_rate(0, rate).start(0).occlude(t_occ).release(horizon)
    t = np.arange(0.0, horizon + 600.0, 0.5)
    row = simulate(params, schedule, t).row(0)
    pump = params.pump
    assert isinstance(pump, SyringePumpParams)
    area_cfg = area_true = pump.syringe.area_mm2
    offset = (pump.syringe.stopper_friction_n - pump.drive.friction_compensation_n) / (
        PA_PER_MMHG * area_cfg * 1e-6
    )
    p_star = (pump.occlusion_threshold_mmhg - offset) * area_cfg / area_true
    p0 = k["p_eq"] + q / (k["lam"] * k["C"])  # steady pressure before the occlusion
    expected_alarm = t_occ + k["C"] * (p_star - p0) / q + pump.occlusion_latency_s
    t_alarm = t[np.argmax(row["occlusion_alarm"])]
    assert t_alarm == pytest.approx(expected_alarm, rel=0.01)
    assert abs(t_alarm - expected_alarm) <= 0.5 + 1.0 / (q / k["dv"])  # grid + one step
    i_alarm = int(np.argmax(row["occlusion_alarm"]))
    p_alarm = row["line_pressure_mmhg"][i_alarm]
    expected_p_alarm = p_star + q * pump.occlusion_latency_s / k["C"]
    assert p_alarm == pytest.approx(expected_p_alarm, rel=0.01)
    # the pump stopped at the alarm: the bolus released after opening is what was stored
    before = row["delivered_ml"][np.searchsorted(t, horizon) - 1]
    bolus = row["delivered_ml"][-1] - before
    assert bolus == pytest.approx(k["C"] * (p_alarm - k["p_eq"]), rel=0.01)
    assert not row["running"][-1]


def test_backoff_reduces_the_bolus() -> None:
    base = SystemParams.nominal()
    schedule = Schedule().set_rate(0, 10.0).start(0).occlude(600).release(3000)
    t = np.arange(0.0, 4000.0, 1.0)
    plain = simulate(base, schedule, t).row(0)
    backed = simulate(base.with_overrides({"pump.backoff_ml": 0.5}), schedule, t).row(0)
    bolus_plain = plain["delivered_ml"][-1] - plain["delivered_ml"][2999]
    bolus_backed = backed["delivered_ml"][-1] - backed["delivered_ml"][2999]
    assert bolus_plain - bolus_backed == pytest.approx(0.5, rel=1e-6)
    assert math.isclose(
        backed["line_pressure_mmhg"][2999],
        plain["line_pressure_mmhg"][2999] - 0.5 / _constants(base)["C"],
        rel_tol=1e-9,
    )
