"""R-peak times, plethysmogram and respiration signal (device_models/patient/signals.py).

Seeds are arbitrary: the spectral assertions were checked to hold for 20 seeds each.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from medtwin.device_models.base import ParameterError, with_overrides
from medtwin.device_models.patient.signals import (
    CardiacProcess,
    HrvParams,
    PlethParams,
    RespParams,
    cardiac_process,
    lf_component,
    pleth,
    pulse_shape,
    quantise,
    respiration,
    sample_times,
)
from scipy.signal import welch

#: A clean pulse for timing and amplitude checks: no HRV, no modulation, no noise.
CLEAN = PlethParams(resp_amplitude_mod=0.0, resp_baseline_mod=0.0, noise_sd=0.0)


def _process(
    duration_s: float,
    hr: float | np.ndarray,
    rr: float | np.ndarray = 15.0,
    *,
    seed: int = 0,
    hrv: HrvParams | None = None,
) -> tuple[np.ndarray, CardiacProcess]:
    t = np.arange(0.0, duration_s + 0.5, 1.0)
    hr_a = np.broadcast_to(hr, t.shape).astype(float)
    rr_a = np.broadcast_to(rr, t.shape).astype(float)
    return t, cardiac_process(t, hr_a, rr_a, hrv or HrvParams(), np.random.default_rng(seed))


def _peak_hz(x: np.ndarray, fs: float, lo: float, hi: float, nperseg: int) -> float:
    f, p = welch(x - x.mean(), fs=fs, nperseg=nperseg)
    band = (f >= lo) & (f <= hi)
    return float(f[band][np.argmax(p[band])])


def test_seeded_reproducibility() -> None:
    # Seeds 1 and 2: any two different seeds.
    _, a = _process(120.0, 70.0, seed=1)
    _, b = _process(120.0, 70.0, seed=1)
    _, c = _process(120.0, 70.0, seed=2)
    np.testing.assert_array_equal(a.r_peak_times_s(), b.r_peak_times_s())
    assert not np.array_equal(a.r_peak_times_s(), c.r_peak_times_s())
    t = np.arange(0.0, 120.5)
    pi = np.full(t.size, 2.0)
    xa = pleth(a, t, pi, params=PlethParams(), rng=np.random.default_rng(3))[1]
    xb = pleth(b, t, pi, params=PlethParams(), rng=np.random.default_rng(3))[1]
    np.testing.assert_array_equal(xa, xb)


@pytest.mark.parametrize("hr", [40.0, 70.0, 120.0, 180.0])
def test_mean_rr_is_60_over_hr(hr: float) -> None:
    _, proc = _process(1800.0, hr, hrv=HrvParams(hr_sd_bpm=3.0))
    r = proc.r_peak_times_s()
    assert np.all((r >= 0.0) & (r <= 1800.0))
    assert np.diff(r).mean() == pytest.approx(60.0 / hr, rel=0.003)
    # ∫ f dt = 1800·HR/60 beats, ± the random initial phase.
    assert r.size == pytest.approx(1800.0 * hr / 60.0, abs=1.5)


def test_mean_rr_follows_a_step_in_hr() -> None:
    t = np.arange(0.0, 1201.0)
    hr = np.where(t < 600.0, 60.0, 120.0)
    proc = cardiac_process(t, hr, np.full(t.size, 15.0), HrvParams(), np.random.default_rng(4))
    r = proc.r_peak_times_s()
    rr = np.diff(r)
    before, after = rr[r[1:] < 595.0], rr[r[:-1] > 605.0]
    assert before.mean() == pytest.approx(1.0, rel=0.005)
    assert after.mean() == pytest.approx(0.5, rel=0.005)


def test_lf_component_has_unit_variance_and_its_peak_at_lf() -> None:
    params = HrvParams()
    x = lf_component(8 * 3600, 4.0, params, np.random.default_rng(6))
    assert x.mean() == pytest.approx(0.0, abs=1e-12)
    assert x.std() == pytest.approx(1.0, rel=1e-12)
    assert _peak_hz(x, 4.0, 0.01, 1.0, 4096) == pytest.approx(0.1, abs=0.005)


@pytest.mark.parametrize("rr_min", [15.0, 12.0])
def test_tachogram_has_peaks_at_mayer_and_respiratory_frequencies(rr_min: float) -> None:
    # One hour, hrstd 3 bpm (ECGSYN's default is 1; larger for a clear spectrum).
    _, proc = _process(3600.0, 70.0, rr_min, seed=7, hrv=HrvParams(hr_sd_bpm=3.0))
    r = proc.r_peak_times_s()
    rr = np.diff(r)
    # The tachogram resampled evenly at 4 Hz (the usual HRV practice).
    t4 = np.arange(r[1], r[-1], 0.25)
    x = np.interp(t4, r[1:], rr)
    f_resp = rr_min / 60.0
    assert _peak_hz(x, 4.0, 0.04, 0.15, 1024) == pytest.approx(0.1, abs=0.01)
    assert _peak_hz(x, 4.0, 0.15, 0.45, 1024) == pytest.approx(f_resp, abs=0.01)
    # The generating spectrum (the instantaneous R-R on the process grid) has ECGSYN's
    # LF/HF power ratio; the beat tachogram's ratio is higher because each R-R interval
    # averages the rate over one beat, which damps the HF peak more than the LF one.
    f, p = welch(proc.rr_interval_s - proc.rr_interval_s.mean(), fs=4.0, nperseg=1024)
    lf = p[(f > 0.05) & (f < 0.15)].sum()
    hf = p[(f > f_resp - 0.04) & (f < f_resp + 0.04)].sum()
    assert lf / hf == pytest.approx(0.5, rel=0.1)
    # hrstd → relative R-R standard deviation hrstd/HR (ECGSYN's rrstd = 60·hrstd/HR²).
    assert rr.std() / rr.mean() == pytest.approx(3.0 / 70.0, rel=0.15)


def test_apnoea_removes_the_respiratory_peak() -> None:
    _, proc = _process(3600.0, 70.0, 0.0, seed=7, hrv=HrvParams(hr_sd_bpm=3.0))
    assert np.all(proc.resp_phase_rad == 0.0)
    r = proc.r_peak_times_s()
    t4 = np.arange(r[1], r[-1], 0.25)
    x = np.interp(t4, r[1:], np.diff(r))
    f, p = welch(x - x.mean(), fs=4.0, nperseg=1024)
    assert p[(f > 0.2) & (f < 0.3)].sum() < 0.01 * p[(f > 0.05) & (f < 0.15)].sum()


def test_pulse_shape_is_normalised_and_periodic() -> None:
    y = pulse_shape(PlethParams(), 512)
    assert y.min() == 0.0
    assert y.max() == 1.0
    assert y[0] == pytest.approx(y[-1])
    assert np.argmax(y) / 512 == pytest.approx(PlethParams().systolic_phase, abs=0.01)


@pytest.mark.parametrize("hr", [72.0, 150.0])
def test_pleth_fundamental_is_hr_over_60(hr: float) -> None:
    t, proc = _process(600.0, hr, seed=9)
    _, x = pleth(
        proc,
        t,
        np.full(t.size, 2.0),
        fs_hz=75.0,
        params=PlethParams(),
        rng=np.random.default_rng(9),
    )
    assert _peak_hz(x, 75.0, 0.5, 10.0, 4096) == pytest.approx(hr / 60.0, abs=0.04)


def test_pleth_pulse_follows_each_r_peak_by_the_transit_time() -> None:
    fs = 75.0
    t, proc = _process(60.0, 60.0, 0.0, seed=10, hrv=HrvParams(hr_sd_bpm=0.0))
    tp, x = pleth(
        proc, t, np.full(t.size, 2.0), fs_hz=fs, params=CLEAN, rng=np.random.default_rng(0)
    )
    r = proc.r_peak_times_s()
    expected = r + CLEAN.ptt_s + CLEAN.systolic_phase * 1.0  # RR = 1 s
    for peak in expected[(expected > 1.0) & (expected < 59.0)]:
        window = (tp > peak - 0.4) & (tp < peak + 0.4)
        assert tp[window][np.argmax(x[window])] == pytest.approx(peak, abs=1.0 / fs)


def test_pleth_amplitude_is_proportional_to_pi() -> None:
    t, proc = _process(30.0, 80.0, seed=11)
    amplitude = {}
    for pi in (1.0, 2.0, 10.0):
        _, x = pleth(proc, t, np.full(t.size, pi), params=CLEAN, rng=np.random.default_rng(0))
        amplitude[pi] = np.ptp(x)
    assert amplitude[2.0] / amplitude[1.0] == pytest.approx(2.0, rel=0.01)
    assert amplitude[1.0] == pytest.approx(CLEAN.max_amplitude / 5.0, rel=0.01)
    assert amplitude[10.0] == pytest.approx(CLEAN.max_amplitude, rel=0.01)  # full scale


def test_respiratory_modulation_of_the_pleth() -> None:
    t, proc = _process(600.0, 75.0, 12.0, seed=12)
    params = dataclasses.replace(CLEAN, resp_baseline_mod=0.05)
    _, x = pleth(proc, t, np.full(t.size, 2.0), params=params, rng=np.random.default_rng(0))
    # Baseline modulation shows up at the respiratory frequency.
    assert _peak_hz(x, 75.0, 0.1, 0.5, 8192) == pytest.approx(0.2, abs=0.02)


def test_sensor_off_is_flat_and_motion_adds_an_artefact() -> None:
    t, proc = _process(120.0, 70.0, seed=13)
    off = (t >= 30.0) & (t < 40.0)
    motion = np.where((t >= 60.0) & (t < 90.0), 1.0, 0.0)
    tp, x = pleth(
        proc,
        t,
        np.full(t.size, 2.0),
        fs_hz=75.0,
        params=PlethParams(),
        rng=np.random.default_rng(13),
        sensor_off=off,
        motion_amplitude=motion,
    )
    assert np.all(x[(tp >= 30.0) & (tp < 40.0)] == 0.0)
    assert np.all(x[(tp >= 40.0) & (tp < 41.0)] > 0.0)
    _, clean = pleth(
        proc,
        t,
        np.full(t.size, 2.0),
        fs_hz=75.0,
        params=PlethParams(),
        rng=np.random.default_rng(13),
    )
    diff = x - clean
    moving = (tp >= 60.0) & (tp < 90.0)
    assert diff[moving].std() > 0.1
    assert np.all(diff[(tp >= 91.0) | ((tp < 59.0) & (tp >= 41.0))] == 0.0)


def test_quantise_8_and_16_bit() -> None:
    x = np.array([-0.2, 0.0, 0.5, 1.0, 1.3])
    q8, q16 = quantise(x, 8), quantise(x, 16)
    assert q8.dtype == np.uint8
    assert q16.dtype == np.uint16
    assert q8.tolist() == [0, 0, 128, 255, 255]
    assert q16.tolist() == [0, 0, 32768, 65535, 65535]
    t, proc = _process(60.0, 70.0)
    _, xp = pleth(proc, t, np.full(t.size, 3.0), params=PlethParams(), rng=np.random.default_rng(1))
    for bits, top in ((8, 255), (16, 65535)):
        q = quantise(xp, bits)
        assert 0 <= int(q.min()) < int(q.max()) <= top
        np.testing.assert_allclose(q / top, xp, atol=0.5 / top + 1e-12)
    with pytest.raises(ParameterError, match="bits"):
        quantise(x, 12)


@pytest.mark.parametrize("rr_min", [12.0, 20.0])
def test_respiration_dominant_frequency_is_rr_over_60(rr_min: float) -> None:
    _, proc = _process(600.0, 70.0, rr_min, seed=14)
    tr, y = respiration(proc, fs_hz=25.0, params=RespParams(), rng=np.random.default_rng(14))
    assert tr[1] - tr[0] == pytest.approx(0.04)
    assert _peak_hz(y, 25.0, 0.05, 5.0, 4096) == pytest.approx(rr_min / 60.0, abs=0.01)
    # Inspiration takes 40 % of the breath: the rise is faster than the fall.
    quiet = dataclasses.replace(RespParams(), noise_sd=0.0)
    dy = np.diff(respiration(proc, fs_hz=25.0, params=quiet, rng=np.random.default_rng(0))[1])
    assert (dy > 0).mean() == pytest.approx(0.4, abs=0.05)


def test_respiration_is_flat_in_apnoea() -> None:
    t = np.arange(0.0, 121.0)
    rr = np.where((t >= 40.0) & (t < 80.0), 0.0, 15.0)
    proc = cardiac_process(t, np.full(t.size, 70.0), rr, HrvParams(), np.random.default_rng(0))
    quiet = with_overrides(RespParams(), {"noise_sd": 0.0})
    tr, y = respiration(proc, params=quiet, rng=np.random.default_rng(0))
    assert np.ptp(y[(tr >= 41.0) & (tr < 79.0)]) == 0.0
    assert np.ptp(y[tr < 39.0]) > 0.9


def test_sample_times_and_errors() -> None:
    tp = sample_times(10.0, 10.0 + 86_400.0, 75.0)
    assert tp.size == 86_400 * 75 + 1
    assert tp[-1] == pytest.approx(86_410.0)
    with pytest.raises(ParameterError, match="fs_hz"):
        sample_times(0.0, 1.0, 0.0)
    t = np.arange(10.0)
    with pytest.raises(ParameterError, match="hr_bpm"):
        cardiac_process(t, np.zeros(10), np.full(10, 12.0), HrvParams(), np.random.default_rng(0))
    with pytest.raises(ParameterError, match="shape"):
        cardiac_process(t, np.ones(3), np.full(10, 12.0), HrvParams(), np.random.default_rng(0))
