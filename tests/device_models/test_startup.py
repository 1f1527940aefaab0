"""The stopper mechanics of the start-up: loading the syringe assembly to breakaway,
the rim's jump, sliding, re-sticking at a stop and on reversal.

References: ``solve_ivp`` on the same equations (``medtwin.device_models.reference``,
restarted at the breakaway), the hand-derived breakaway step, and the published start-up
times (Neff et al. 2001, Paediatr Anaesth 11(5):561-5; Neff et al. 2007, Eur J
Anaesthesiol 24(7):602-8).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from medtwin.device_models.base import ParameterError
from medtwin.device_models.reference import reference_constants, solve_reference
from medtwin.device_models.schedule import Schedule
from medtwin.device_models.syringes import SyringeLibrary, nominal_stopper_mechanics
from medtwin.device_models.system import ParameterBatch, SystemParams, SystemSimulator, simulate
from medtwin.device_models.system.startup import (
    NEFF_2001_T1_MIN,
    NEFF_2001_T2_MIN,
    startup_times,
)


def _startup(syringe: str, rate: float = 1.0, *, hours: float = 2.0) -> tuple[float, float]:
    params = SystemParams.nominal(syringe=syringe)
    t = np.arange(0.0, hours * 3600.0, 1.0)
    row = simulate(params, Schedule().set_rate(0, rate).start(0), t).row(0)
    times = startup_times(t, row["delivered_ml"], rate)
    return times.first_delivery_s / 60.0, times.steady_s / 60.0


def test_default_50ml_start_up_is_inside_the_published_ranges() -> None:
    t1, t2 = _startup("BD Plastipak 50 mL")
    assert NEFF_2001_T1_MIN[0] <= t1 <= NEFF_2001_T1_MIN[1]
    assert NEFF_2001_T2_MIN[0] <= t2 <= NEFF_2001_T2_MIN[1]
    # the model before the stopper mechanics: first delivery within 6.5 min, steady
    # flow at about 8.5 min, both below the published ranges
    assert t1 > 6.5
    assert t2 > 8.5


def test_small_syringe_starts_much_faster() -> None:
    t1_50, t2_50 = _startup("BD Plastipak 50 mL")
    t1_10, t2_10 = _startup("BD Plastipak 10 mL")
    assert t1_10 < t1_50 / 4.0
    assert t2_10 < t2_50 / 3.0
    # Neff et al. 2007: 3.6 ± 0.9 min to steady flow for a BD 10 mL syringe at 1 mL/h
    assert 2.7 <= t1_10 <= 4.5
    # the 2 min averaging window of the steady-flow criterion puts t2 after the rim's jump
    assert t2_10 <= 6.0


def test_pre_bolus_leaves_only_the_restart_delay() -> None:
    """Neff et al. 2001: after a 2 mL pre-bolus delivered by the pump before the line was
    connected, first delivery at 1 mL/h came after 0.3-1.1 min. Here the pre-bolus breaks
    the stopper away; the restart waits only (F_s − F_d)/k of travel."""
    params = SystemParams.nominal()
    t = np.arange(0.0, 3600.0, 1.0)
    schedule = Schedule().set_rate(0, 120.0).start(0).stop(60.0)
    schedule.set_rate(600.0, 1.0).start(600.0)
    row = simulate(params, schedule, t).row(0)
    i0 = int(np.searchsorted(t, 600.0))
    volume = row["delivered_ml"][i0:] - row["delivered_ml"][i0]
    times = startup_times(t[i0:], volume, 1.0)
    assert row["delivered_ml"][i0] > 1.5  # the pre-bolus went out
    assert 0.3 <= times.first_delivery_s / 60.0 <= 1.1


def test_start_up_delay_grows_with_barrel_size() -> None:
    sizes = ("BD Plastipak 5 mL", "BD Plastipak 10 mL", "BD Plastipak 20 mL")
    firsts = [_startup(name, hours=1.0)[0] for name in sizes]
    assert firsts == sorted(firsts)


@pytest.mark.parametrize("syringe", ["BD Plastipak 50 mL", "BD Plastipak 10 mL"])
def test_continuous_start_up_matches_solve_ivp_across_the_breakaway(syringe: str) -> None:
    params = SystemParams.nominal(syringe=syringe).with_overrides({"pump.quantised_steps": False})
    rates = [(0.0, 2.0), (900.0, 6.0)]
    schedule = Schedule().start(0)
    for t_r, r in rates:
        schedule.set_rate(t_r, r)
    t = np.linspace(0.0, 2400.0, 2401)
    ours = simulate(params, schedule, t).row(0)
    ref = solve_reference(params, rates, t)
    k = reference_constants(params)
    # the breakaway time in closed form: the dead band at 2 mL/h, or its rest at 6 mL/h
    steps_at_900 = 900.0 * 2.0 / 3600.0 / k["dv_cfg"]
    if steps_at_900 >= k["sigma"]:
        t_break = k["sigma"] * k["dv_cfg"] / (2.0 / 3600.0)
    else:
        t_break = 900.0 + (k["sigma"] - steps_at_900) * k["dv_cfg"] / (6.0 / 3600.0)
    before = t < t_break - 1e-6
    assert np.all(ours["delivered_ml"][before] == 0.0)
    assert np.all(ref["delivered_ml"][before] == 0.0)
    after = t > t_break
    for name, ref_name in (
        ("line_pressure_mmhg", "pressure_mmhg"),
        ("delivered_ml", "delivered_ml"),
        ("balance_settled_g", "settled_g"),
    ):
        got, want = ours[name][after], ref[ref_name][after]
        rel = np.max(np.abs(got - want) / np.maximum(np.abs(want), 1e-9))
        assert rel <= 1e-6, (name, rel)
    # the rim's jump is in the pressure right after the breakaway
    i = int(np.searchsorted(t, t_break, side="right"))
    jump_mmhg = k["bolus"] / k["C"]
    assert ours["line_pressure_mmhg"][i] - k["p_eq"] > 0.5 * jump_mmhg


def test_quantised_breakaway_at_the_exact_instant() -> None:
    """The rim jumps when the drive's travel reaches the dead band (backlash + F_s/k),
    between two microsteps; the next step delivers only its part beyond the dead band."""
    params = SystemParams.nominal()
    pump = params.pump
    k = reference_constants(params)
    rate = 5.0
    f = rate / 3600.0 / k["dv_cfg"]
    t_exact = k["sigma"] / f
    k_next = math.ceil(k["sigma"] - 1e-12)
    assert k_next > k["sigma"]  # the nominal dead band ends inside a step
    # (one part in 1e12 after the instant: the kernel computes it as t_a + σ·(1/f))
    t = np.array([t_exact - 1e-6, t_exact * (1 + 1e-12), 0.5 * (t_exact + k_next / f), k_next / f])
    row = simulate(params, Schedule().set_rate(0, rate).start(0), t).row(0)
    jump = pump.syringe.breakaway_bolus_ml  # type: ignore[union-attr]
    assert row["plunger_ml"][0] == 0.0
    assert row["plunger_ml"][1] == pytest.approx(jump, rel=1e-12)
    assert row["plunger_ml"][2] == row["plunger_ml"][1]
    partial = (k_next - k["sigma"]) * k["dv"]
    assert row["plunger_ml"][3] == pytest.approx(jump + partial, rel=1e-12)


def test_split_phases_equal_one_phase_across_the_breakaway() -> None:
    """A command between the breakaway and the next microstep (a phase boundary) changes
    nothing: the rest of the dead band carries over."""
    params = SystemParams.nominal()
    k = reference_constants(params)
    f = 5.0 / 3600.0 / k["dv_cfg"]
    t_mid = 0.5 * (k["sigma"] + math.ceil(k["sigma"])) / f
    t = np.arange(0.0, 1200.0, 0.25)
    one = simulate(params, Schedule().set_rate(0, 5.0).start(0), t).row(0)
    split = simulate(params, Schedule().set_rate(0, 5.0).start(0).set_rate(t_mid, 5.0), t).row(0)
    np.testing.assert_allclose(split["delivered_ml"], one["delivered_ml"], rtol=1e-12, atol=1e-15)


def test_outputs_are_continuous_in_the_stopper_parameters() -> None:
    """Calibration differentiates the outputs: a tiny change of the breakaway force makes a
    tiny change of the delivered volume (no jump of a whole step)."""
    base = SystemParams.nominal()
    nominal = base.pump.syringe.breakaway_force_n  # type: ignore[union-attr]
    forces = nominal + np.linspace(0.0, 0.01, 41)
    batch = ParameterBatch(base, {"pump.syringe.breakaway_force_n": forces})
    k = reference_constants(base)
    t_break = k["sigma"] / (5.0 / 3600.0 / k["dv_cfg"])
    # just after the breakaway at 5 mL/h (the 41 rows break away within 0.26 s)
    t = t_break + np.arange(0.5, 30.0, 0.05)
    out = simulate(batch, Schedule().set_rate(0, 5.0).start(0), t)
    pressure = out["line_pressure_mmhg"]
    assert pressure[:, 0].min() > 3.0  # the rim's jump, A·(F_s − F_d)/k over C
    # 0.25 mN more breakaway force moves the jump by 6 ms: under 1e-3 mmHg (a jump
    # snapped to the next microstep would move by whole steps, about 0.02 mmHg)
    assert np.abs(np.diff(pressure, axis=0)).max() < 0.005


def test_restart_sticks_again_and_loses_no_volume() -> None:
    """After a stop the rim holds the sliding friction; a restart loads the assembly from
    there to breakaway (a delay) and the jump returns that travel (no net volume)."""
    params = SystemParams.nominal()
    syringe = params.pump.syringe  # type: ignore[union-attr]
    rate = 5.0
    t = np.arange(0.0, 7200.0, 0.5)
    plain = simulate(params, Schedule().set_rate(0, rate).start(0), t).row(0)
    paused = simulate(params, Schedule().set_rate(0, rate).start(0).stop(2400).start(3000), t).row(
        0
    )
    # the restart's dead band: (breakaway − sliding) / stiffness of drive travel
    extra_mm = (syringe.breakaway_force_n - syringe.stopper_friction_n) / (
        syringe.assembly_stiffness_n_per_mm
    )
    v_mm_s = rate / 3600.0 * 1000.0 / syringe.area_mm2
    i_restart = int(np.searchsorted(t, 3000.0))
    plunger = paused["plunger_ml"]
    moving = np.flatnonzero(plunger[i_restart:] > plunger[i_restart] + 1e-12)
    delay = t[i_restart + moving[0]] - 3000.0
    assert delay == pytest.approx(extra_mm / v_mm_s, abs=1.0)
    # the pause shifts delivery by exactly 600 s: the stick travel is returned by the jump
    shifted = np.interp(t[-1] - 600.0, t, plain["plunger_ml"])
    assert paused["plunger_ml"][-1] == pytest.approx(shifted, abs=2e-4)


def test_reversal_breaks_away_the_other_way() -> None:
    params = SystemParams.nominal()
    syringe = params.pump.syringe  # type: ignore[union-attr]
    drive = params.pump.drive  # type: ignore[union-attr]
    sim = SystemSimulator(params)
    for command in Schedule().set_rate(0, 20.0).start(0):
        sim.apply(command)
    sim.advance_to(1200.0)
    assert bool(sim.state.sliding[0])
    assert float(sim.state.chain_n[0]) == pytest.approx(syringe.stopper_friction_n)
    for command in Schedule().stop(1200.0):
        sim.apply(command)
    assert not bool(sim.state.sliding[0])
    before = float(sim.state.plunger_ml[0])
    for command in Schedule().set_direction(1200.0, infuse=False).start(1200.0):
        sim.apply(command)
    # reverse dead band: backlash + unloading from +F_d and loading to −F_s
    travel_mm = drive.backlash_mm + (syringe.stopper_friction_n + syringe.breakaway_force_n) / (
        syringe.assembly_stiffness_n_per_mm
    )
    v_mm_s = 20.0 / 3600.0 * 1000.0 / syringe.area_mm2
    t_break = 1200.0 + travel_mm / v_mm_s
    sim.advance_to(t_break - 2.0)
    assert float(sim.state.plunger_ml[0]) == before
    sim.advance_to(t_break + 2.0)
    assert float(sim.state.plunger_ml[0]) < before - 0.5 * syringe.breakaway_bolus_ml
    assert float(sim.state.chain_n[0]) == pytest.approx(-syringe.stopper_friction_n)


def test_incremental_equals_batch_across_the_breakaway() -> None:
    params = SystemParams.nominal()
    schedule = Schedule().set_rate(0, 3.0).start(0).stop(1500).start(1700)
    t = np.arange(0.0, 3000.0, 7.0)
    batch = simulate(params, schedule, t).row(0)
    sim = SystemSimulator(params)
    commands = list(schedule)
    got = []
    ci = 0
    for u in t:
        while ci < len(commands) and commands[ci].t_s <= u:
            sim.apply(commands[ci])
            ci += 1
        sim.advance_to(float(u))
        got.append(float(sim.state.delivered_ml[0]))
    np.testing.assert_allclose(got, batch["delivered_ml"], rtol=1e-10, atol=1e-13)


def test_batch_over_stopper_parameters_equals_single_calls() -> None:
    base = SystemParams.nominal()
    columns = {
        "pump.syringe.breakaway_force_n": np.array([8.0, 8.4, 14.0]),
        "pump.syringe.stopper_friction_n": np.array([8.0, 8.0, 6.0]),
        "pump.syringe.assembly_stiffness_n_per_mm": np.array([10.0, 15.8, 40.0]),
    }
    t = np.arange(0.0, 3600.0, 10.0)
    schedule = Schedule().set_rate(0, 2.0).start(0)
    batch = simulate(ParameterBatch(base, columns), schedule, t)
    for i in range(3):
        one = simulate(ParameterBatch(base, columns).row(i), schedule, t).row(0)
        np.testing.assert_array_equal(batch["delivered_ml"][i], one["delivered_ml"])


def test_sliding_friction_above_breakaway_is_refused() -> None:
    params = SystemParams.nominal().with_overrides({"pump.syringe.stopper_friction_n": 12.0})
    with pytest.raises(ParameterError, match="breakaway"):
        simulate(params, Schedule().set_rate(0, 1.0).start(0), np.array([0.0, 1.0]))


def test_library_entries_carry_the_mechanics_and_files_may_omit_them(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(
        '[[syringe]]\nname = "Lab 12 mL"\ninner_diameter_mm = 15.9\n'
        "barrel_compliance_ul_per_mmhg = 1.4\nnominal_volume_ml = 12.0\n",
        encoding="utf-8",
    )
    library = SyringeLibrary()
    library.load_file(path)
    spec = library.get("Lab 12 mL")
    sliding, breakaway, stiffness = nominal_stopper_mechanics(15.9)
    assert (spec.stopper_friction_n, spec.breakaway_force_n) == (sliding, breakaway)
    assert spec.assembly_stiffness_n_per_mm == stiffness
    assert spec.source_mechanics.startswith("nominal")
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[[syringe]]\nname = "Odd"\ninner_diameter_mm = 15.9\nnominal_volume_ml = 12.0\n'
        "barrel_compliance_ul_per_mmhg = 1.4\nstopper_friction_n = 9.0\nbreakaway_force_n = 5.0\n",
        encoding="utf-8",
    )
    with pytest.raises(ParameterError, match="stopper_friction_n"):
        SyringeLibrary().load_file(bad)


def test_stopper_parameters_are_calibratable() -> None:
    from medtwin.hil.calibration.problem import fittable_parameters

    names = {info.name for info in fittable_parameters(SystemParams.nominal())}
    assert {
        "pump.syringe.stopper_friction_n",
        "pump.syringe.breakaway_force_n",
        "pump.syringe.assembly_stiffness_n_per_mm",
    } <= names
