"""The shared patient world: simulator settings in, each oximeter's monitor model out."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from medtwin.device_models.monitor.params import monitor_preset
from medtwin.drivers.clock import VirtualClock
from medtwin.drivers.emulators.patient_world import (
    DEFAULT_SETTINGS,
    PatientWorld,
    WorldParams,
)
from medtwin.drivers.emulators.physical_bench import PhysicalBench


class ManualClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def run(world: PatientWorld, clock: ManualClock, until: float, step: float = 0.1) -> None:
    n = round((until - clock.t) / step)
    start = clock.t
    for i in range(1, n + 1):
        clock.t = start + i * step


def hr_trace(
    world: PatientWorld, clock: ManualClock, ox: object, until: float, step: float = 0.5
) -> list[tuple[float, float | None]]:
    out = []
    start = clock.t
    for i in range(1, round((until - start) / step) + 1):
        clock.t = start + i * step
        snap = ox.snapshot()  # type: ignore[attr-defined]
        out.append((clock.t, snap.pulse_rate_bpm))
    return out


def test_defaults_and_settings_reported() -> None:
    clock = ManualClock()
    world = PatientWorld(clock, seed=3)
    s = world.simulator.settings()
    assert (s.heart_rate_bpm, s.spo2_percent, s.resp_rate_min) == (80.0, 97.0, 15.0)
    assert (s.nibp_sys_mmhg, s.nibp_dia_mmhg) == (120.0, 80.0)
    assert s == DEFAULT_SETTINGS
    world.simulator.set_nibp_mmhg(140, 90)
    world.simulator.set_ibp_mmhg(2, 30, 10)
    world.simulator.set_ibp_wave(2, "PA")
    world.simulator.set_remote(True)
    s = world.simulator.settings()
    assert (s.nibp_sys_mmhg, s.nibp_dia_mmhg, s.ibp[2], s.ibp_wave[2], s.remote) == (
        140.0,
        90.0,
        (30.0, 10.0),
        "PA",
        True,
    )


@pytest.mark.parametrize(
    "call",
    [
        lambda sim: sim.set_heart_rate_bpm(5),
        lambda sim: sim.set_heart_rate_bpm(361),
        lambda sim: sim.set_heart_rate_bpm(math.nan),
        lambda sim: sim.set_spo2_percent(101),
        lambda sim: sim.set_resp_rate_min(200),
        lambda sim: sim.set_nibp_mmhg(80, 120),
        lambda sim: sim.set_nibp_mmhg(500, 80),
        lambda sim: sim.set_ibp_mmhg(3, 120, 80),
        lambda sim: sim.set_ibp_mmhg(1, 400, 80),
        lambda sim: sim.set_ibp_wave(1, "XYZ"),
    ],
)
def test_invalid_settings_raise_value_error_and_change_nothing(call: object) -> None:
    clock = ManualClock()
    world = PatientWorld(clock)
    before = world.simulator.settings()
    with pytest.raises(ValueError, match=r"range|above|channel|waveform"):
        call(world.simulator)  # type: ignore[operator]
    assert world.simulator.settings() == before
    with pytest.raises(ValueError, match="spo2_percent"):
        PatientWorld(clock, settings=dataclasses.replace(before, spo2_percent=-1.0))


@pytest.mark.parametrize("preset", ["generic", "nonin", "masimo", "philips"])
def test_heart_rate_change_reaches_the_display_within_the_averaging_time(preset: str) -> None:
    clock = ManualClock()
    world = PatientWorld(clock, seed=11)
    params = monitor_preset(preset)
    ox = world.oximeter(params, model="m", serial="1")
    before = hr_trace(world, clock, ox, 30.0)
    assert all(abs(hr - 80.0) <= 1.0 for t, hr in before if t > 15.0 and hr is not None)
    world.simulator.set_heart_rate_bpm(120)
    t_change = clock.t
    after = hr_trace(world, clock, ox, 60.0)
    # Response: the averaged intervals at the new rate, the monitor's processing lag,
    # one display update, one beat at the old rate and one grid step of the world.
    n = params.hr.averaging_intervals
    bound = (
        n * 60.0 / 120.0
        + params.hr.processing_delay_s
        + params.update_period_s
        + 60.0 / 80.0
        + 1.0 / world.params.grid_hz
    )
    reached = [t for t, hr in after if hr is not None and abs(hr - 120.0) <= 1.0]
    assert reached
    assert reached[0] - t_change <= bound
    # not at once: the display still averages old intervals right after the change
    assert after[0][1] is not None
    assert after[0][1] < 100.0
    assert all(abs(hr - 120.0) <= 1.5 for t, hr in after if t > t_change + bound and hr is not None)


def test_a_change_acts_at_its_instant_with_a_continuous_cardiac_phase() -> None:
    clock = ManualClock()
    world = PatientWorld(clock, seed=5)
    run(world, clock, 20.05)
    world.simulator.set_heart_rate_bpm(150)
    assert abs(world.true_values()["hr_bpm"] - 150.0) < 2.0
    run(world, clock, 40.0)
    r = world.r_peak_times(5.0, 40.0)
    rr = np.diff(r)
    before, after = rr[r[1:] < 20.05], rr[r[:-1] > 20.05]
    assert np.mean(before) == pytest.approx(60.0 / 80.0, rel=0.01)
    assert np.mean(after) == pytest.approx(60.0 / 150.0, rel=0.01)
    # the interval spanning the change lies between the two rates (phase continuous)
    spanning = rr[(r[:-1] <= 20.05) & (r[1:] > 20.05)]
    assert spanning.size == 1
    assert 0.35 < spanning[0] < 0.8
    # the pleth has no jump at the change either
    t = np.arange(19.0, 21.0, 1 / 75.0)
    x = world.pleth(t)
    assert np.max(np.abs(np.diff(x))) < 0.1


def test_two_oximeters_with_different_params_differ_as_configured() -> None:
    clock = ManualClock()
    world = PatientWorld(clock, seed=2)
    twin = world.oximeter(monitor_preset("masimo"), model="twin", serial="1")
    real = world.oximeter(
        monitor_preset("masimo", {"spo2.bias_percent": 2.0, "hr.offset_bpm": -3.0}),
        model="real",
        serial="2",
    )
    run(world, clock, 30.0)
    a, b = twin.snapshot(), real.snapshot()
    assert a.spo2_percent == pytest.approx(97.0, abs=1.0)
    assert b.spo2_percent is not None
    assert a.spo2_percent is not None
    assert b.spo2_percent - a.spo2_percent == pytest.approx(2.0, abs=1.0)
    assert b.pulse_rate_bpm is not None
    assert a.pulse_rate_bpm is not None
    assert a.pulse_rate_bpm - b.pulse_rate_bpm == pytest.approx(3.0, abs=1.0)
    assert (real.model, real.serial) == ("real", "2")
    # averaging: an SpO2 step seen through a 2 s and a 16 s window
    fast = world.oximeter(
        monitor_preset("masimo", {"spo2.averaging_s": 2.0}), model="f", serial="3"
    )
    slow = world.oximeter(
        monitor_preset("masimo", {"spo2.averaging_s": 16.0}), model="s", serial="4"
    )
    run(world, clock, 60.0)
    world.simulator.set_spo2_percent(85)
    run(world, clock, 65.0)
    f, s = fast.snapshot().spo2_percent, slow.snapshot().spo2_percent
    assert f is not None
    assert s is not None
    assert f <= 86.0
    assert s > 90.0


def test_extended_values_use_the_second_params() -> None:
    clock = ManualClock()
    world = PatientWorld(clock, seed=4)
    ox = world.oximeter(
        monitor_preset("nonin"),
        model="3150",
        serial="9",
        extended=monitor_preset(
            "nonin", {"spo2.exponential_beats": 8.0, "hr.averaging_intervals": 8}
        ),
    )
    assert ox.snapshot().extended == {"spo2_extended_percent": None, "hr_extended_bpm": None}
    run(world, clock, 20.0)
    ext = ox.snapshot().extended
    assert ext["hr_extended_bpm"] == pytest.approx(80.0, abs=1.0)
    assert ext["spo2_extended_percent"] == pytest.approx(97.0, abs=1.0)
    plain = world.oximeter(monitor_preset("nonin"), model="x", serial="y")
    assert plain.snapshot().extended == {}


def outputs(seed: int, steps: list[float], change_at: float = 20.0) -> tuple[object, np.ndarray]:
    clock = ManualClock()
    world = PatientWorld(clock, seed=seed)
    ox = world.oximeter(monitor_preset("nonin"), model="m", serial="1")
    changed = False
    for t in steps:
        if not changed and t >= change_at:
            clock.t = change_at
            world.simulator.set_heart_rate_bpm(130)
            world.simulator.set_spo2_percent(90)
            changed = True
        clock.t = t
        ox.snapshot()
    pleth = world.pleth(np.arange(30.0, 40.0, 1 / 75.0))
    return ox.stream.output(), pleth  # type: ignore[attr-defined]


def test_chunk_boundaries_and_polling_are_invisible() -> None:
    live = outputs(7, [k * 0.1 for k in range(1, 401)])
    batch = outputs(7, [40.0])
    irregular = outputs(7, [3.3, 9.99, 10.0, 10.01, 19.7, 25.0, 33.3, 40.0])
    for other in (batch, irregular):
        for name in ("t_s", "hr_bpm", "spo2_percent", "pi_percent", "searching"):
            np.testing.assert_array_equal(getattr(live[0], name), getattr(other[0], name))
        np.testing.assert_array_equal(live[1], other[1])
    assert np.nanmax(live[0].hr_bpm) >= 129.0  # type: ignore[attr-defined]


def test_determinism_under_a_seed() -> None:
    a, b, c = outputs(1, [40.0]), outputs(1, [40.0]), outputs(2, [40.0])
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[0].hr_bpm, b[0].hr_bpm)  # type: ignore[attr-defined]
    assert not np.array_equal(a[1], c[1])


def test_pleth_requests_in_pieces_equal_one_request() -> None:
    clock = ManualClock()
    world = PatientWorld(clock, seed=8)
    clock.t = 25.0
    t = np.arange(5.0, 25.0, 1 / 75.0)
    whole = world.pleth(t)
    pieces = np.concatenate([world.pleth(t[i : i + 37]) for i in range(0, t.size, 37)])
    np.testing.assert_array_equal(whole, pieces)
    assert whole.min() >= 0.0
    assert whole.max() <= 1.0


@pytest.mark.parametrize("hr", [45.0, 80.0, 150.0])
def test_pleth_frequency_is_hr_over_60(hr: float) -> None:
    clock = ManualClock()
    world = PatientWorld(clock, seed=1, params=WorldParams(history_s=120.0))
    world.simulator.set_heart_rate_bpm(hr)
    clock.t = 100.0
    fs = 75.0
    x = world.pleth(np.arange(4.0, 100.0, 1 / fs))
    x = x - x.mean()
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    f = np.fft.rfftfreq(x.size, 1 / fs)
    band = f > 0.5  # above the respiratory modulation
    peak = f[band][np.argmax(spectrum[band])]
    assert peak == pytest.approx(hr / 60.0, abs=0.03)


def test_sensor_off_low_perfusion_and_motion_flags() -> None:
    clock = ManualClock()
    world = PatientWorld(clock, seed=6)
    ox = world.oximeter(monitor_preset("masimo"), model="m", serial="1")
    run(world, clock, 20.0)
    snap = ox.snapshot()
    assert not (snap.sensor_off)
    assert not (snap.low_perfusion)
    assert not (snap.artifact)
    world.set_perfusion(0.1)
    run(world, clock, 25.0)
    assert ox.snapshot().low_perfusion
    world.set_perfusion(2.0)
    world.set_motion(1.0)
    run(world, clock, 30.0)
    assert ox.snapshot().artifact
    # the same patient without the motion: the difference is the artefact (σ = motion_sd)
    still_clock = ManualClock()
    still = PatientWorld(still_clock, seed=6)
    run(still, still_clock, 20.0)
    still.set_perfusion(0.1)
    run(still, still_clock, 25.0)
    still.set_perfusion(2.0)
    run(still, still_clock, 30.0)
    t = np.arange(25.0, 30.0, 1 / 75.0)
    artefact = world.pleth(t) - still.pleth(t)
    assert 0.05 < np.std(artefact) < 0.3
    np.testing.assert_array_equal(world.pleth(t - 5.0), still.pleth(t - 5.0))
    world.set_motion(0.0)
    world.set_sensor_off(True)
    run(world, clock, 60.0)
    snap = ox.snapshot()
    assert snap.sensor_off
    assert snap.spo2_percent is None
    assert "spo2_sensor_off" in snap.alarms
    flat = world.pleth(np.arange(31.0, 60.0, 1 / 75.0))
    assert np.all(flat == world.params.pleth.sensor_off_level)
    with pytest.raises(ValueError, match="perfusion"):
        world.set_perfusion(0.0)
    with pytest.raises(ValueError, match="motion"):
        world.set_motion(-1.0)


def test_desaturation_raises_the_spo2_low_alarm() -> None:
    clock = ManualClock()
    world = PatientWorld(clock, seed=9)
    ox = world.oximeter(monitor_preset("masimo"), model="m", serial="1")
    run(world, clock, 20.0)
    assert ox.snapshot().alarms == frozenset()
    world.simulator.set_spo2_percent(80)
    run(world, clock, 60.0, step=1.0)
    assert "spo2_low" in ox.snapshot().alarms


def test_pleth_refuses_the_future_and_forgotten_history() -> None:
    clock = ManualClock()
    world = PatientWorld(clock, params=WorldParams(history_s=20.0))
    clock.t = 10.0
    with pytest.raises(ValueError, match="future"):
        world.pleth([9.0, 10.5])
    with pytest.raises(ValueError, match="ascending"):
        world.pleth([9.0, 8.0])
    world.pleth([0.0, 9.9])
    run(world, clock, 100.0, step=1.0)
    with pytest.raises(ValueError, match="history"):
        world.pleth([10.0])
    assert len(world.pleth(np.arange(85.0, 100.0, 0.5))) == 30


def test_memory_stays_bounded() -> None:
    clock = ManualClock()
    world = PatientWorld(clock, seed=0, params=WorldParams(history_s=30.0))
    ox = world.oximeter(monitor_preset("nonin"), model="m", serial="1")
    sizes = []
    for minute in range(1, 21):
        run(world, clock, 60.0 * minute, step=1.0)
        ox.snapshot()
        sizes.append((world._vitals.t.size, world._cardiac.t.size, world._noise.size))
    grid = world.params.grid_hz
    assert max(s[0] for s in sizes) <= 2 * (30.0 + 10.0) * grid + 10
    assert max(s[1] for s in sizes) <= 2 * (30.0 + 15.0) * grid + 40
    assert max(s[2] for s in sizes) <= 2 * (30.0 + 10.0) * 75.0 + 10
    assert sizes[-1] == pytest.approx(sizes[len(sizes) // 2], rel=0.6)


def test_physical_bench_has_a_lazy_patient_on_its_clock_and_seed() -> None:
    clock = VirtualClock()
    bench = PhysicalBench.default(clock=clock, seed=4)
    assert bench._patient is None
    assert bench.simulator is bench.patient.simulator
    assert bench.patient.seed == 4
    clock.advance_to(12.5)
    assert bench.patient.now() == pytest.approx(12.5)
    ox = bench.patient.oximeter(monitor_preset("masimo"), model="m", serial="s")
    clock.advance_to(30.0)
    assert ox.snapshot().t_s == pytest.approx(30.0)
    assert ox.snapshot().pulse_rate_bpm == pytest.approx(80.0, abs=1.0)
