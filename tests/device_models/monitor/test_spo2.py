"""SpO2 averaging, freeze-then-dashes and the signal-quality flags, against closed forms."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
from medtwin.device_models.monitor.monitor import simulate_monitor
from medtwin.device_models.monitor.params import Spo2Params, monitor_preset
from medtwin.device_models.monitor.spo2 import (
    beat_exponential,
    cumulative_integrals,
    grid_index,
)

T_STEP = 60.0


def _step_record(make_input: Any, dt: float = 0.1, end: float = 120.0) -> Any:
    t = np.arange(0.0, end, dt)
    return make_input(t, np.where(t >= T_STEP - 1e-9, 85.0, 97.0))


def _exact(params: Any) -> Any:
    return params.with_overrides({"round_display": False})


@pytest.mark.parametrize("window_s", [2.0, 4.0, 8.0, 12.0, 16.0])
def test_window_average_is_the_exact_ramp(window_s: float, make_input: Any) -> None:
    # A step through a boxcar of T seconds is a ramp of T seconds, delayed by the lag.
    lag = 0.7
    params = _exact(
        monitor_preset("masimo", {"spo2.averaging_s": window_s, "spo2.processing_delay_s": lag})
    )
    out = simulate_monitor(_step_record(make_input), params)
    elapsed = np.clip((out.t_s - lag - T_STEP) / window_s, 0.0, 1.0)
    expected = 97.0 - 12.0 * elapsed
    seen = out.t_s >= window_s + lag  # the first window is full
    np.testing.assert_allclose(out.spo2_percent[seen], expected[seen], atol=1e-9)


def _response_90(window_s: float, make_input: Any, fast: bool = False) -> float:
    params = _exact(
        monitor_preset("masimo", {"spo2.averaging_s": window_s, "spo2.fast_mode": fast})
    )
    out = simulate_monitor(_step_record(make_input), params)
    reached = out.spo2_percent <= 97.0 - 0.9 * 12.0 + 1e-9
    return float(out.t_s[np.argmax(reached)] - T_STEP)


def test_step_response_grows_with_the_window_and_meets_the_typical_spec(
    make_input: Any,
) -> None:
    windows = [2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 14.0, 16.0]
    times = [_response_90(w, make_input) for w in windows]
    # 90 % of the step after 0.9 T, seen at the next whole-second update.
    assert times == pytest.approx([np.ceil(0.9 * w - 1e-9) for w in windows])
    assert all(b > a for a, b in itertools.pairwise(times))
    # Mindray BeneHeart D20 manual p. 90 gives <= 20-30 s for a 70->100 % step.
    assert max(times) <= 20.0


def test_fast_mode_uses_the_fast_window(make_input: Any) -> None:
    assert _response_90(16.0, make_input, fast=True) == _response_90(2.0, make_input)


def test_nonin_four_beat_exponential_average(make_input: Any) -> None:
    t = np.arange(0.0, 40.0, 0.5)
    beats = np.arange(0.25, 40.0, 1.0)
    true = np.where(t >= 10.0, 85.0, 97.0)
    params = _exact(monitor_preset("nonin", {"update_period_s": 1.0, "update_phase_s": 0.5}))
    out = simulate_monitor(make_input(t, true, r_peaks=beats), params)
    # S_k = S_{k-1} + w (x_k - S_{k-1}), w = 2 / (4 + 1): written out by hand.
    w, s, expected = 0.4, 97.0, []
    for b in beats:
        s = s + w * ((85.0 if b >= 10.0 else 97.0) - s)
        expected.append(s)
    # Update j at t = 0.5 + j sees the beat at 0.25 + j.
    np.testing.assert_allclose(out.spo2_percent, expected[: out.t_s.size], rtol=1e-12)
    # Four beats after the step the average has covered 1 - 0.6^4 = 87 % of it.
    after4 = out.spo2_percent[out.t_s == 13.5][0]
    assert (97.0 - after4) / 12.0 == pytest.approx(1 - 0.6**4)


def test_beat_exponential_continues_across_chunks() -> None:
    x = np.array([97.0, 96.0, 90.0, 88.0, 85.0, 85.0])
    params = Spo2Params(method="beat_exponential")
    whole, _ = beat_exponential(x, params)
    first, state = beat_exponential(x[:2], params)
    rest, _ = beat_exponential(x[2:], params, state)
    np.testing.assert_array_equal(whole, np.concatenate([first, rest]))


@pytest.mark.parametrize("preset", ["masimo", "nonin"])
def test_freeze_for_10_s_then_dashes(preset: str, make_input: Any) -> None:
    t = np.arange(0.0, 200.0, 0.1)
    off = (t >= 100.0 - 1e-9) & (t < 140.0 - 1e-9)
    true = np.where(off, 0.0, 93.0)  # what the sensor reads off the finger is ignored
    record = make_input(t, true, sensor_off=off, r_peaks=np.arange(0.3, 200.0, 0.8))
    params = monitor_preset(preset, {"update_period_s": 1.0})
    out = simulate_monitor(record, params)
    held = (out.t_s >= 100.0) & (out.t_s < 110.0)
    dashed = (out.t_s >= 110.0) & (out.t_s < 140.0)
    assert np.all(out.spo2_percent[held] == 93.0)
    assert np.all(out.searching[held])
    assert np.all(out.signal_loss[held])
    assert np.all(np.isnan(out.spo2_percent[dashed]))
    assert not np.any(out.searching[dashed])
    assert np.all(out.sensor_off[held | dashed])
    assert out.spo2_percent[out.t_s == 99.0][0] == 93.0
    back = out.t_s >= 142.0
    assert np.all(out.spo2_percent[back] == 93.0)  # the 0 % read while off never shows


def test_freeze_length_is_configurable(make_input: Any) -> None:
    t = np.arange(0.0, 100.0, 0.5)
    off = t >= 50.0
    params = monitor_preset("generic", {"spo2.freeze_s": 3.0})
    out = simulate_monitor(make_input(t, 95.0, sensor_off=off), params)
    shown = np.isfinite(out.spo2_percent)
    assert out.t_s[shown].max() == 52.0


def test_perfusion_and_motion_flags(make_input: Any) -> None:
    t = np.arange(0.0, 60.0, 0.5)
    pi = np.where(t < 20.0, 2.0, np.where(t < 40.0, 0.1, 0.01))
    motion = (t >= 10.0) & (t < 15.0)
    record = make_input(t, 95.0, pi=pi, motion=motion)
    out = simulate_monitor(record, monitor_preset("generic"))
    at = {float(u): i for i, u in enumerate(out.t_s)}
    assert out.artifact[at[12.0]]
    assert not out.signal_loss[at[12.0]]
    assert out.low_perfusion[at[30.0]]
    assert not out.signal_loss[at[30.0]]
    assert out.pi_percent[at[30.0]] == pytest.approx(0.1)
    assert out.signal_loss[at[45.0]]
    assert np.isnan(out.pi_percent[at[45.0]])
    dropping = monitor_preset("generic", {"spo2.motion_drops_signal": True})
    out2 = simulate_monitor(record, dropping)
    assert out2.signal_loss[at[12.0]]
    assert out2.searching[at[12.0]]


def test_bias_rounding_and_clipping(make_input: Any) -> None:
    t = np.arange(0.0, 30.0, 1.0)
    out = simulate_monitor(
        make_input(t, 95.3), monitor_preset("generic", {"spo2.bias_percent": 1.5})
    )
    assert np.all(out.spo2_percent[out.t_s > 0] == 97.0)  # round(96.8)
    high = simulate_monitor(
        make_input(t, 99.0), monitor_preset("generic", {"spo2.bias_percent": 3.0})
    )
    assert np.nanmax(high.spo2_percent) == 100.0


def test_cumulative_integrals_are_exact_for_sample_and_hold() -> None:
    t = np.array([0.0, 1.0, 3.0, 3.5])
    x = np.array([90.0, 80.0, 70.0, 60.0])
    valid = np.array([True, False, True, True])
    c, v = cumulative_integrals(t, x, valid)
    np.testing.assert_array_equal(c, [0.0, 90.0, 90.0, 125.0])
    np.testing.assert_array_equal(v, [0.0, 1.0, 1.0, 1.5])


@pytest.mark.parametrize("kind", ["uniform", "jittered", "irregular"])
def test_grid_index_is_searchsorted(kind: str) -> None:
    rng = np.random.default_rng(3)  # seed 3: any grid and queries will do
    n = 5000
    if kind == "uniform":
        t = np.arange(n) / 75.0 + 12.5
    elif kind == "jittered":
        t = np.arange(n) * 0.2 + rng.uniform(0.0, 0.05, n)
    else:
        t = np.cumsum(rng.exponential(0.3, n))
    x = np.concatenate(
        [rng.uniform(t[0] - 5, t[-1] + 5, 3000), t, np.nextafter(t, -np.inf), [np.nan]]
    )
    np.testing.assert_array_equal(grid_index(t, x), np.searchsorted(t, x, side="right") - 1)
