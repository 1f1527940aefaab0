"""IEC 60601-2-24 analyses against datasets worked out by hand.

Every golden dataset is built from a known flow Q_i (mL/h) per S = 0.5 min interval:
the balance reads ``W_k = Σ_{i≤k} Q_i·S·d/60`` g, which is exactly what the standard's
``Q_i = 60·(W_i − W_{i−1})/(S·d)`` inverts, so the expected Ep values follow from the flow
alone. Percent flow errors are written E_i = 100·(Q_i − r)/r.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from medtwin.drivers.errors import AnalysisError
from medtwin.hil.analysis.iec60601_2_24 import (
    DEFAULT_WINDOWS_MIN,
    WINDOWS_WITH_1MIN,
    bolus_accuracy,
    flow_from_mass,
    last_hour_period_min,
    mean_flow_error,
    occlusion_analysis,
    resample_to_interval,
    startup_curve,
    trumpet_curve,
    trumpet_windows,
    water_density_g_ml,
)

S_MIN = 0.5
D_G_ML = 0.998


def log_from_flow(
    flow_ml_h: np.ndarray, *, s_min: float = S_MIN, d: float = D_G_ML, w0_g: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """(t_s, mass_g) of a balance read every S while the pump delivers ``flow_ml_h``."""
    mass = np.concatenate(([w0_g], w0_g + np.cumsum(flow_ml_h * s_min * d / 60.0)))
    t_s = np.arange(mass.size) * s_min * 60.0
    return t_s, mass


def two_hours(error_percent_second_hour: np.ndarray, *, rate: float) -> np.ndarray:
    """240 flows: the first hour at the set rate, then the given errors (120 samples)."""
    assert error_percent_second_hour.size == 120
    first = np.full(120, rate)
    return np.concatenate((first, rate * (1.0 + error_percent_second_hour / 100.0)))


def naive_ep(error_percent: np.ndarray, window_min: float, s_min: float) -> tuple[float, float]:
    """The standard's formula written out literally: a loop over j and a sum over i."""
    p = round(window_min / s_min)
    m = error_percent.size - p + 1
    values = []
    for j in range(m):
        values.append((s_min / window_min) * sum(error_percent[j : j + p]))
    return max(values), min(values)


# --------------------------------------------------------------------------- density


@pytest.mark.parametrize(
    ("temperature_c", "density_kg_m3"),
    # Tanaka et al. 2001, Table 3 (recommended values, kg/m³).
    [(0.0, 999.8428), (4.0, 999.9750), (20.0, 998.2067), (25.0, 997.0470), (40.0, 992.2152)],
)
def test_water_density_matches_the_tanaka_table(temperature_c: float, density_kg_m3: float) -> None:
    assert water_density_g_ml(temperature_c) == pytest.approx(density_kg_m3 / 1000, abs=6e-8)


@pytest.mark.parametrize("temperature_c", [-1.0, 40.5, math.nan])
def test_water_density_refuses_temperatures_outside_the_formula(temperature_c: float) -> None:
    with pytest.raises(AnalysisError, match="0–40 °C"):
        water_density_g_ml(temperature_c)


# --------------------------------------------------------------------------- flow


def test_flow_from_mass_is_the_standard_formula() -> None:
    # ΔW = 0.04 g in S = 0.5 min at d = 0.998: Q = 60·0.04/(0.5·0.998) = 2.4/0.499 mL/h.
    flow = flow_from_mass([10.0, 10.04, 10.08], sample_interval_min=0.5, density_g_ml=0.998)
    assert flow == pytest.approx([2.4 / 0.499, 2.4 / 0.499], rel=1e-12)


def test_evaporation_is_added_back() -> None:
    # 0.002 g/h lost with the pump stopped: each 0.5-min sample lost 1/60000 g more than
    # the balance shows, i.e. +0.002/0.998 mL/h on every Q_i.
    flow = flow_from_mass([0.0, 0.04], evaporation_loss_g_h=0.002, density_g_ml=D_G_ML)
    assert flow[0] == pytest.approx(2.4 / 0.499 + 0.002 / 0.998, rel=1e-12)


def test_evaporation_corrects_the_mean_error() -> None:
    rate = 1.0
    t_s, mass = log_from_flow(np.full(240, rate))
    evaporation_g_h = 0.01
    leaky = mass - evaporation_g_h * t_s / 3600.0
    raw = mean_flow_error(t_s, leaky, rate_ml_h=rate, density_g_ml=D_G_ML)
    corrected = mean_flow_error(
        t_s, leaky, rate_ml_h=rate, evaporation_loss_g_h=evaporation_g_h, density_g_ml=D_G_ML
    )
    # uncorrected: the pump seems 0.01/0.998 mL/h slow, i.e. −1.002 % at 1 mL/h.
    assert raw.error_percent == pytest.approx(-100 * 0.01 / 0.998, rel=1e-9)
    assert corrected.error_percent == pytest.approx(0.0, abs=1e-9)


def test_negative_evaporation_says_how_to_give_it() -> None:
    with pytest.raises(AnalysisError, match="positive rate"):
        flow_from_mass([0.0, 1.0], evaporation_loss_g_h=-0.002, density_g_ml=D_G_ML)


# --------------------------------------------------------------------------- golden trumpets


def test_constant_flow_every_ep_equals_a() -> None:
    # r = 5 mL/h delivered at 5.1 mL/h: E_i = +2 % for every i, so every window mean is
    # 2 % and A = 100·(5.1 − 5)/5 = 2 %. m = (60 − P)/0.5 + 1.
    t_s, mass = log_from_flow(np.full(240, 5.1))
    curve = trumpet_curve(t_s, mass, rate_ml_h=5.0, density_g_ml=D_G_ML)
    assert curve.mean_error_percent == pytest.approx(2.0, abs=1e-9)
    assert curve.mean_flow_ml_h == pytest.approx(5.1, rel=1e-12)
    assert not curve.resampled
    assert curve.note == ""
    expected_m = {1: 119, 2: 117, 5: 111, 11: 99, 19: 83, 31: 59}
    assert [w.window_min for w in curve.windows] == list(DEFAULT_WINDOWS_MIN)
    for window in curve.windows:
        assert window.ep_max_percent == pytest.approx(2.0, abs=1e-9)
        assert window.ep_min_percent == pytest.approx(2.0, abs=1e-9)
        assert window.window_count == expected_m[int(window.window_min)]
        assert window.samples_per_window == round(window.window_min / S_MIN)


def test_periodic_flow_error_gives_the_hand_computed_trumpet() -> None:
    # Square wave: E = +3 % for 5 samples, −3 % for 5 (period 10 samples = 5 min), A = 0.
    # A window of p samples is q full periods (sum 0) plus p mod 10 consecutive samples, so
    # Ep(max) = 3·(best net count of "+" in p mod 10 consecutive samples)/p:
    #   P=1  (p=2):  2 of 2 "+"           → +3
    #   P=2  (p=4):  4 of 4 "+"           → +3
    #   P=5  (p=10): one full period      →  0
    #   P=11 (p=22): 2 extra, both "+"    → 3·2/22 = 3/11
    #   P=19 (p=38): 8 extra = 5 "+" 3 "−" → 3·2/38 = 3/19
    #   P=31 (p=62): 2 extra, both "+"    → 3·2/62 = 3/31
    # and Ep(min) the mirror image. m ≥ 59 > 10, so every phase is reached.
    wave = np.tile(np.r_[np.full(5, 3.0), np.full(5, -3.0)], 12)
    rate = 10.0
    t_s, mass = log_from_flow(two_hours(wave, rate=rate))
    curve = trumpet_curve(t_s, mass, rate_ml_h=rate, density_g_ml=D_G_ML)
    expected = {1: 3.0, 2: 3.0, 5: 0.0, 11: 3 / 11, 19: 3 / 19, 31: 3 / 31}
    assert curve.mean_error_percent == pytest.approx(0.0, abs=1e-9)
    for window in curve.windows:
        ep = expected[int(window.window_min)]
        assert window.ep_max_percent == pytest.approx(ep, abs=1e-9)
        assert window.ep_min_percent == pytest.approx(-ep, abs=1e-9)


def test_step_change_gives_the_hand_computed_ep_max() -> None:
    # E = 0 for the first 30 min of the analysis period (60 samples), +4 % for the last 30.
    # P ≤ 30 min fits inside the +4 % half → Ep(max) = 4, Ep(min) = 0.
    # P = 31 min (62 samples) always straddles the step: the last window holds 60 samples
    # at +4 % → Ep(max) = 4·60/62; the first holds 2 → Ep(min) = 4·2/62. A = 2 %.
    errors = np.r_[np.zeros(60), np.full(60, 4.0)]
    t_s, mass = log_from_flow(two_hours(errors, rate=1.0))
    curve = trumpet_curve(
        t_s, mass, rate_ml_h=1.0, density_g_ml=D_G_ML, windows_min=WINDOWS_WITH_1MIN
    )
    assert curve.mean_error_percent == pytest.approx(2.0, abs=1e-9)
    for p_min in (1, 2, 5, 11, 19):
        assert curve.window(p_min).ep_max_percent == pytest.approx(4.0, abs=1e-9)
        assert curve.window(p_min).ep_min_percent == pytest.approx(0.0, abs=1e-9)
    last = curve.window(31)
    assert last.ep_max_percent == pytest.approx(4 * 60 / 62, abs=1e-9)
    assert last.ep_min_percent == pytest.approx(4 * 2 / 62, abs=1e-9)
    # The last of the m = 59 windows starts at 60 + 58·0.5 = 89 min, the first at 60.
    assert last.ep_max_start_min == pytest.approx(89.0)
    assert last.ep_min_start_min == pytest.approx(60.0)


def test_a_is_from_the_mass_difference_of_the_period_only() -> None:
    # A wild first hour (start-up) must not leak into A over the second hour.
    flows = np.r_[np.linspace(0.0, 20.0, 120), np.full(120, 9.9)]
    t_s, mass = log_from_flow(flows)
    result = mean_flow_error(t_s, mass, rate_ml_h=10.0, density_g_ml=D_G_ML)
    # Q̄ = 9.9 → A = −1 %; 9.9 mL/h for 60 min delivers 9.9 mL.
    assert result.error_percent == pytest.approx(-1.0, abs=1e-9)
    assert result.delivered_ml == pytest.approx(9.9, rel=1e-12)
    assert result.analysis_period_min == (60.0, 120.0)


def test_b_over_the_last_hour_of_a_long_test() -> None:
    # 4 h at 25 mL/h, the last hour at 24.5 mL/h (−2 %): B = −2 %, A (second hour) = 0.
    flows = np.r_[np.full(360, 25.0), np.full(120, 24.5)]
    t_s, mass = log_from_flow(flows)
    period = last_hour_period_min(t_s)
    assert period == (180.0, 240.0)
    b = mean_flow_error(t_s, mass, rate_ml_h=25.0, analysis_period_min=period, density_g_ml=D_G_ML)
    a = mean_flow_error(t_s, mass, rate_ml_h=25.0, density_g_ml=D_G_ML)
    assert b.error_percent == pytest.approx(-2.0, abs=1e-9)
    assert a.error_percent == pytest.approx(0.0, abs=1e-9)
    curve = trumpet_curve(
        t_s, mass, rate_ml_h=25.0, analysis_period_min=period, density_g_ml=D_G_ML
    )
    assert all(w.ep_max_percent == pytest.approx(-2.0, abs=1e-9) for w in curve.windows)


def test_last_hour_period_ends_on_the_grid_and_needs_an_hour() -> None:
    # 100.7 min of log with S = 0.5 min: the last full grid point is 100.5 min.
    assert last_hour_period_min(np.array([0.0, 100.7 * 60])) == (40.5, 100.5)
    with pytest.raises(AnalysisError, match=r"covers 50 min .* needs 60 min"):
        last_hour_period_min(np.array([0.0, 3000.0]))


def test_custom_sample_interval_windows_and_period() -> None:
    # Drop-counting controllers use S = 1 min; a 50-min analysis period (Smiths CADD T2)
    # with P = 2, 10: the same constant-flow identity holds.
    t_s, mass = log_from_flow(np.full(150, 2.2), s_min=1.0, d=1.0)
    curve = trumpet_curve(
        t_s,
        mass,
        rate_ml_h=2.0,
        sample_interval_min=1.0,
        density_g_ml=1.0,
        analysis_period_min=(100.0, 150.0),
        windows_min=(2.0, 10.0),
    )
    assert curve.mean_error_percent == pytest.approx(10.0, abs=1e-9)
    assert [(w.window_min, w.window_count) for w in curve.windows] == [(2.0, 49), (10.0, 41)]
    assert curve.window(10).ep_min_percent == pytest.approx(10.0, abs=1e-9)


def test_as_dict_has_the_cli_schema() -> None:
    t_s, mass = log_from_flow(np.full(240, 5.1))
    document = trumpet_curve(
        t_s, mass, rate_ml_h=5.0, density_g_ml=D_G_ML, windows_min=WINDOWS_WITH_1MIN
    ).as_dict()
    assert document["rate_ml_h"] == 5.0
    assert document["interval_min"] == 0.5
    assert document["analysis_period_min"] == [60.0, 120.0]
    assert set(document["windows"]) == {"1", "2", "5", "11", "19", "31"}
    assert document["windows"]["31"]["ep_max"] == pytest.approx(2.0, abs=1e-9)


# --------------------------------------------------------------------------- properties


@settings(max_examples=150, deadline=None)
@given(
    st.integers(min_value=1, max_value=12),
    st.integers(min_value=1, max_value=12),
    st.data(),
)
def test_ep_max_ge_a_ge_ep_min_when_p_divides_t(p: int, tiles: int, data: st.DataObject) -> None:
    # With T = tiles·P the disjoint windows tile the period and A is their average, so A
    # lies between the extreme window means.
    n = p * tiles
    errors = data.draw(arrays(np.float64, n, elements=st.floats(-60.0, 60.0)))
    rate = data.draw(st.floats(0.01, 1000.0))
    flows = np.r_[np.full(4, rate), rate * (1 + errors / 100)]
    t_s, mass = log_from_flow(flows)
    curve = trumpet_curve(
        t_s,
        mass,
        rate_ml_h=rate,
        analysis_period_min=(2.0, 2.0 + n * S_MIN),
        windows_min=(p * S_MIN,),
        density_g_ml=D_G_ML,
    )
    a = curve.mean_error_percent
    tolerance = 1e-7 * (1 + np.max(np.abs(errors)))
    assert curve.windows[0].ep_max_percent >= a - tolerance
    assert a >= curve.windows[0].ep_min_percent - tolerance


@settings(max_examples=100, deadline=None)
@given(arrays(np.float64, 120, elements=st.floats(-30.0, 30.0)))
def test_vectorised_ep_equals_the_formula_written_out(errors: np.ndarray) -> None:
    rate = 5.0
    windows = trumpet_windows(rate * (1 + errors / 100), rate_ml_h=rate)
    for window in windows:
        ep_max, ep_min = naive_ep(errors, window.window_min, S_MIN)
        assert window.ep_max_percent == pytest.approx(ep_max, abs=1e-9)
        assert window.ep_min_percent == pytest.approx(ep_min, abs=1e-9)


def test_a_can_leave_the_trumpet_when_p_does_not_divide_t() -> None:
    # The standard's m = (T − P)/S + 1 sliding windows weight the first and last samples
    # less: error only in the first and last sample (E = 62 %) gives A = 124/120 = 1.033 %,
    # but every 31-min window holds at most one of them: Ep(max) = 62/62 = 1 % < A.
    errors = np.zeros(120)
    errors[0] = errors[-1] = 62.0
    curve_windows = trumpet_windows(1.0 + errors / 100, rate_ml_h=1.0, windows_min=(31.0,))
    a = float(np.mean(errors))
    assert a == pytest.approx(124 / 120)
    assert curve_windows[0].ep_max_percent == pytest.approx(1.0, abs=1e-12)
    assert curve_windows[0].ep_max_percent < a


def test_trumpet_narrows_as_the_window_grows_for_stationary_noise() -> None:
    # White flow noise (σ = 5 %): a P-min window averages P/S samples, so the spread of
    # window means, and with it Ep(max) − Ep(min), shrinks roughly like 1/√P. Checked on
    # the average over 200 independent hours so one unlucky hour cannot decide it. The
    # seed only makes the run reproducible: with 200 realisations the mean widths are
    # ≥ 20 standard errors apart for every pair of neighbouring windows, so any seed passes.
    rng = np.random.default_rng(60601224)
    widths = np.empty((200, len(DEFAULT_WINDOWS_MIN)))
    for k in range(widths.shape[0]):
        errors = rng.normal(0.0, 5.0, 120)
        windows = trumpet_windows(10.0 * (1 + errors / 100), rate_ml_h=10.0)
        widths[k] = [w.ep_max_percent - w.ep_min_percent for w in windows]
    mean_width = widths.mean(axis=0)
    standard_error = widths.std(axis=0) / math.sqrt(widths.shape[0])
    assert np.all(np.diff(mean_width) < -5 * (standard_error[:-1] + standard_error[1:]))
    assert mean_width[0] / mean_width[-1] > 8


# --------------------------------------------------------------------------- resampling


def test_on_grid_log_is_not_resampled() -> None:
    t_s, mass = log_from_flow(np.full(10, 3.0))
    series = resample_to_interval(t_s, mass)
    assert not series.resampled
    assert series.note == ""
    np.testing.assert_array_equal(series.mass_g, mass)
    np.testing.assert_allclose(series.t_min, np.arange(11) * 0.5)


def test_fine_log_is_resampled_exactly_onto_the_grid() -> None:
    # Flow constant within each 30-s interval ⇒ mass linear between grid points; a 0.5-s
    # log then interpolates to exactly the grid masses, and the trumpet is unchanged.
    rng = np.random.default_rng(7)  # any seed: the flows only need to differ per interval
    flows = 5.0 * (1 + rng.normal(0, 0.03, 240))
    t_grid, mass_grid = log_from_flow(flows)
    t_fine = np.arange(0.0, 7200.0 + 0.25, 0.5)
    mass_fine = np.interp(t_fine, t_grid, mass_grid)
    series = resample_to_interval(t_fine, mass_fine)
    assert series.resampled
    assert series.source_samples == 14401
    assert "resampled 14401 balance samples" in series.note
    assert "median interval 0.5 s" in series.note
    assert "241 points" in series.note
    np.testing.assert_allclose(series.mass_g, mass_grid, rtol=0, atol=1e-12)
    fine = trumpet_curve(t_fine, mass_fine, rate_ml_h=5.0, density_g_ml=D_G_ML)
    exact = trumpet_curve(t_grid, mass_grid, rate_ml_h=5.0, density_g_ml=D_G_ML)
    assert fine.resampled
    assert fine.note == series.note
    assert fine.mean_error_percent == pytest.approx(exact.mean_error_percent, abs=1e-9)
    for a, b in zip(fine.windows, exact.windows, strict=True):
        assert a.ep_max_percent == pytest.approx(b.ep_max_percent, abs=1e-8)
        assert a.ep_min_percent == pytest.approx(b.ep_min_percent, abs=1e-8)


def test_jittered_log_with_a_gap_is_interpolated_and_the_gap_reported() -> None:
    # Mass linear in time (2 g/h) is recovered exactly by linear interpolation wherever
    # the samples fall; the largest gap (a 300-s dropout) is named in the note.
    rng = np.random.default_rng(11)  # any seed: jitter only has to be irregular
    t_s = np.sort(np.r_[0.0, rng.uniform(0.0, 3600.0, 400), 3600.0])
    t_s = np.unique(t_s[(t_s < 1000.0) | (t_s > 1300.0)])
    mass = 2.0 * t_s / 3600.0
    series = resample_to_interval(t_s, mass)
    assert series.resampled
    np.testing.assert_allclose(series.mass_g, 2.0 * series.t_min / 60.0, atol=1e-12)
    assert series.max_gap_s >= 300.0
    assert f"largest gap {series.max_gap_s:.6g} s" in series.note


def test_time_origin_is_the_first_sample_or_start_s() -> None:
    # A log stamped in Unix seconds analyses the same as one starting at 0.
    t_s, mass = log_from_flow(np.full(240, 5.1))
    epoch = 1.7e9
    shifted = trumpet_curve(t_s + epoch, mass, rate_ml_h=5.0, density_g_ml=D_G_ML)
    assert shifted.mean_error_percent == pytest.approx(2.0, abs=1e-9)
    assert not shifted.resampled
    # start_s later than the first sample: the grid starts there and earlier samples drop.
    later = resample_to_interval(t_s, mass, start_s=60.0)
    assert later.t_min.size == 239
    assert later.mass_g[0] == mass[2]
    with pytest.raises(AnalysisError, match="outside the balance log"):
        resample_to_interval(t_s, mass, start_s=-30.0)


# --------------------------------------------------------------------------- start-up


def test_startup_curve_is_q_against_time_over_t0() -> None:
    # No delivery for 10 min (slack), then the set 1 mL/h.
    flows = np.r_[np.zeros(20), np.full(240, 1.0)]
    t_s, mass = log_from_flow(flows)
    curve = startup_curve(t_s, mass, density_g_ml=D_G_ML)
    assert curve.period_min == 120.0
    np.testing.assert_allclose(curve.t_min, np.arange(1, 241) * 0.5)
    np.testing.assert_allclose(curve.flow_ml_h, flows[:240], atol=1e-9)
    assert not curve.series.resampled
    with pytest.raises(AnalysisError, match=r"covers 60 min .* needs 120 min"):
        startup_curve(t_s[:121], mass[:121], density_g_ml=D_G_ML)


# --------------------------------------------------------------------------- errors


def test_log_shorter_than_the_period_names_both_lengths() -> None:
    t_s, mass = log_from_flow(np.full(90, 5.0))
    with pytest.raises(AnalysisError) as info:
        trumpet_curve(t_s, mass, rate_ml_h=5.0, density_g_ml=D_G_ML)
    assert str(info.value) == (
        "the balance log covers 45 min but the analysis period 60–120 min needs 120 min of data"
    )


def test_non_monotonic_time_names_the_sample() -> None:
    t_s, mass = log_from_flow(np.full(240, 5.0))
    t_s[100] = t_s[99]
    with pytest.raises(AnalysisError, match=r"not strictly increasing: sample 100 is at 2970"):
        trumpet_curve(t_s, mass, rate_ml_h=5.0, density_g_ml=D_G_ML)


@pytest.mark.parametrize("column", ["t_s", "mass_g"])
def test_nan_names_the_array_and_index(column: str) -> None:
    t_s, mass = log_from_flow(np.full(240, 5.0))
    (t_s if column == "t_s" else mass)[17] = np.nan
    with pytest.raises(AnalysisError, match=rf"{column} has a non-finite value .* at index 17"):
        trumpet_curve(t_s, mass, rate_ml_h=5.0, density_g_ml=D_G_ML)


def test_window_longer_than_the_period() -> None:
    t_s, mass = log_from_flow(np.full(240, 5.0))
    with pytest.raises(
        AnalysisError, match=r"P = 31 min is longer than the analysis period T = 30"
    ):
        trumpet_curve(
            t_s, mass, rate_ml_h=5.0, analysis_period_min=(60.0, 90.0), density_g_ml=D_G_ML
        )


def test_window_that_is_not_a_multiple_of_s() -> None:
    t_s, mass = log_from_flow(np.full(240, 5.0))
    with pytest.raises(AnalysisError, match=r"P = 1.25 min .* not a whole number .* S = 0.5"):
        trumpet_curve(t_s, mass, rate_ml_h=5.0, windows_min=(1.25,), density_g_ml=D_G_ML)


def test_period_that_is_not_on_the_grid() -> None:
    t_s, mass = log_from_flow(np.full(240, 5.0))
    with pytest.raises(AnalysisError, match=r"start of the analysis period \(60.2 min\)"):
        mean_flow_error(
            t_s, mass, rate_ml_h=5.0, analysis_period_min=(60.2, 120.0), density_g_ml=D_G_ML
        )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rate_ml_h": 0.0}, "set rate r must be a finite number > 0 mL/h"),
        ({"rate_ml_h": 5.0, "density_g_ml": -1.0}, "density d must be"),
        ({"rate_ml_h": 5.0, "sample_interval_min": 0.0}, "sample interval S must be"),
        ({"rate_ml_h": 5.0, "analysis_period_min": (90.0, 60.0)}, "ends before it starts"),
        ({"rate_ml_h": 5.0, "analysis_period_min": (60.0,)}, r"must be \(start_min, end_min\)"),
        ({"rate_ml_h": 5.0, "windows_min": ()}, "no observation windows"),
    ],
)
def test_invalid_parameters_are_named(kwargs: dict[str, object], message: str) -> None:
    t_s, mass = log_from_flow(np.full(240, 5.0))
    with pytest.raises(AnalysisError, match=message):
        trumpet_curve(t_s, mass, **kwargs)  # type: ignore[arg-type]


def test_mismatched_lengths_and_tiny_logs() -> None:
    with pytest.raises(AnalysisError, match="t_s has 3 samples but mass_g has 2"):
        resample_to_interval([0.0, 30.0, 60.0], [0.0, 1.0])
    with pytest.raises(AnalysisError, match="has 1 samples; at least 2"):
        resample_to_interval([0.0], [0.0])
    with pytest.raises(AnalysisError, match="less than one sample interval"):
        resample_to_interval([0.0, 10.0], [0.0, 1.0])
    with pytest.raises(AnalysisError, match="one-dimensional"):
        resample_to_interval(np.zeros((2, 2)), np.zeros((2, 2)))


# --------------------------------------------------------------------------- occlusion


def occlusion_trace() -> dict[str, np.ndarray]:
    """1-s samples of a hand-built occlusion test.

    5 mL/h into the vessel until the occlusion at 600 s; line pressure 50 mmHg, then
    rising 0.5 mmHg/s (dP/dt = Q/C) to the 500-mmHg threshold at 600 + 450/0.5 = 1500 s,
    where the pump alarms (flag latched) and stops. The vessel is emptied at 1700 s. At
    the release (1800 s) the pressure falls linearly to 50 mmHg over 20 s while 0.6 g of
    bolus runs into the vessel.
    """
    t = np.arange(0.0, 2001.0)
    pressure = np.where(t < 600, 50.0, np.minimum(50.0 + 0.5 * (t - 600), 500.0))
    pressure = np.where(t >= 1800, np.maximum(500.0 - 22.5 * (t - 1800), 50.0), pressure)
    alarm = t >= 1500
    mass = 5.0 * 0.998 * np.minimum(t, 600.0) / 3600.0
    mass = np.where(t >= 1700, 0.0, mass)
    mass = mass + np.clip((t - 1800) / 20.0, 0.0, 1.0) * 0.6
    return {"t": t, "pressure": pressure, "alarm": alarm, "mass": mass}


def test_occlusion_against_a_constructed_trace() -> None:
    trace = occlusion_trace()
    result = occlusion_analysis(
        trace["t"],
        trace["pressure"],
        trace["alarm"],
        trace["mass"],
        occlusion_s=600.0,
        release_s=1800.0,
        density_g_ml=D_G_ML,
    )
    assert result.alarm_raised
    assert result.alarm_s == 1500.0
    assert result.time_to_alarm_s == 900.0
    assert result.pressure_at_alarm_mmhg == 500.0
    assert result.peak_pressure_mmhg == 500.0
    assert result.baseline_pressure_mmhg == 50.0
    # 500 − 22.5·x ≤ 50 + 5 first holds at x = 20 s.
    assert result.bolus_end_s == 1820.0
    assert result.bolus_mass_g == pytest.approx(0.6, abs=1e-12)
    assert result.bolus_volume_ml == pytest.approx(0.6 / 0.998, abs=1e-12)


def test_occlusion_without_alarm_and_with_explicit_bolus_end() -> None:
    trace = occlusion_trace()
    result = occlusion_analysis(
        trace["t"],
        trace["pressure"],
        np.zeros(trace["t"].size, dtype=int),
        trace["mass"],
        occlusion_s=600.0,
        release_s=1800.0,
        bolus_end_s=1810.0,
        density_g_ml=1.0,
    )
    assert not result.alarm_raised
    assert result.time_to_alarm_s is None
    assert result.pressure_at_alarm_mmhg is None
    assert result.bolus_mass_g == pytest.approx(0.3, abs=1e-12)


def test_occlusion_errors() -> None:
    trace = occlusion_trace()
    args = (trace["t"], trace["pressure"], trace["alarm"], trace["mass"])
    with pytest.raises(AnalysisError, match="already raised at the occlusion"):
        occlusion_analysis(*args, occlusion_s=1600.0, release_s=1800.0, density_g_ml=D_G_ML)
    with pytest.raises(AnalysisError, match="must lie after the occlusion"):
        occlusion_analysis(*args, occlusion_s=600.0, release_s=500.0, density_g_ml=D_G_ML)
    with pytest.raises(AnalysisError, match="occlusion time 5000"):
        occlusion_analysis(*args, occlusion_s=5000.0, release_s=6000.0, density_g_ml=D_G_ML)
    stuck = np.where(trace["t"] >= 1800, np.maximum(trace["pressure"], 120.0), trace["pressure"])
    with pytest.raises(AnalysisError, match=r"within 5 mmHg of the pre-occlusion baseline 50"):
        occlusion_analysis(
            trace["t"],
            stuck,
            trace["alarm"],
            trace["mass"],
            occlusion_s=600.0,
            release_s=1800.0,
            density_g_ml=D_G_ML,
        )
    with pytest.raises(AnalysisError, match="bolus_end_s 1700"):
        occlusion_analysis(
            *args, occlusion_s=600.0, release_s=1800.0, bolus_end_s=1700.0, density_g_ml=D_G_ML
        )
    bad_alarm = trace["alarm"].astype(float)
    bad_alarm[3] = 2.0
    with pytest.raises(AnalysisError, match=r"index 3 is 2\.0"):
        occlusion_analysis(
            trace["t"],
            trace["pressure"],
            bad_alarm,
            trace["mass"],
            occlusion_s=600.0,
            release_s=1800.0,
            density_g_ml=D_G_ML,
        )
    with pytest.raises(AnalysisError, match="t_s has 2001 samples but alarm has 2000"):
        occlusion_analysis(
            trace["t"],
            trace["pressure"],
            trace["alarm"][:-1],
            trace["mass"],
            occlusion_s=600.0,
            release_s=1800.0,
            density_g_ml=D_G_ML,
        )


# --------------------------------------------------------------------------- bolus


def test_bolus_accuracy_against_hand_values() -> None:
    # Set 0.5 mL each; at d = 0.998 that is 0.499 g. Deviations 100·(W − 0.499)/0.499:
    # 0, +0.005/0.499, −0.006/0.499, +0.002/0.499 → 0, +1.002004, −1.202405, +0.400802 %.
    result = bolus_accuracy(0.5, [0.499, 0.504, 0.493, 0.501], density_g_ml=D_G_ML)
    expected = np.array([0.0, 0.5, -0.6, 0.2]) / 0.499
    np.testing.assert_allclose(result.deviation_percent, expected, atol=1e-10)
    assert result.mean_deviation_percent == pytest.approx(0.1 / 0.499 / 4, abs=1e-10)
    assert result.max_deviation_percent == pytest.approx(0.5 / 0.499, abs=1e-10)
    assert result.min_deviation_percent == pytest.approx(-0.6 / 0.499, abs=1e-10)
    assert result.worst_deviation_percent == pytest.approx(-0.6 / 0.499, abs=1e-10)
    assert result.worst_index == 2
    np.testing.assert_allclose(
        result.measured_ml, [0.5, 0.504 / 0.998, 0.493 / 0.998, 0.501 / 0.998]
    )


def test_bolus_with_a_volume_per_bolus_and_errors() -> None:
    result = bolus_accuracy([1.0, 2.0], [1.0, 1.9], density_g_ml=1.0)
    np.testing.assert_allclose(result.deviation_percent, [0.0, -5.0])
    with pytest.raises(AnalysisError, match="2 boluses but measured_mass_g has 3"):
        bolus_accuracy([1.0, 2.0], [1.0, 1.9, 2.0], density_g_ml=D_G_ML)
    with pytest.raises(AnalysisError, match=r"bolus 1 is 0\.0 mL"):
        bolus_accuracy([1.0, 0.0], [1.0, 1.0], density_g_ml=D_G_ML)
    with pytest.raises(AnalysisError, match="no boluses"):
        bolus_accuracy(1.0, [], density_g_ml=D_G_ML)
    with pytest.raises(AnalysisError, match="measured_mass_g has a non-finite value"):
        bolus_accuracy(1.0, [1.0, math.nan], density_g_ml=D_G_ML)
