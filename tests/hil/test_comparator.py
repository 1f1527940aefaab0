"""Tests of medtwin.hil.comparator: tolerance band, CUSUM, EWMA, σ estimate, live == batch.

Expected values come from hand calculations (small cases), from an independent per-sample
reference loop written here, and from the average run lengths of the charts computed here with
the classic numerical methods (Brook & Evans 1972 integral equation for the CUSUM, Lucas &
Saccucci 1990 Markov chain for the EWMA).
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from medtwin.drivers.errors import AnalysisError, ConfigurationError
from medtwin.hil.comparator import (
    MIN_NOISE_PAIRS,
    ChannelComparison,
    ChannelSpec,
    DriftEvent,
    LiveComparator,
    compare,
    robust_noise_sd,
)
from numpy.typing import NDArray
from scipy.special import roots_legendre
from scipy.stats import norm

FloatArray = NDArray[np.float64]


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def run(spec: ChannelSpec, z: Any, twin: Any = None, t: Any = None) -> ChannelComparison:
    z = np.asarray(z, dtype=float)
    t = np.arange(z.shape[0], dtype=float) if t is None else np.asarray(t, dtype=float)
    twin = np.zeros_like(z) if twin is None else np.asarray(twin, dtype=float)
    return compare(spec, t, twin + z, twin)


def only(events: tuple[DriftEvent, ...] | list[DriftEvent], statistic: str) -> list[DriftEvent]:
    return [e for e in events if e.statistic == statistic]


def reference_cusum(
    z: list[float], *, k: float, h: float, min_samples: int, rearm: str
) -> tuple[dict[str, list[tuple[int, int, float]]], dict[str, list[float]]]:
    """Per-sample two-sided CUSUM with the documented alarm rules.

    Returns, per direction, the alarms as (index, onset index, S) and the trace of S.
    """
    alarms: dict[str, list[tuple[int, int, float]]] = {}
    traces: dict[str, list[float]] = {}
    for direction, sign in (("high", 1.0), ("low", -1.0)):
        s, latched, last_zero = 0.0, False, -1
        found: list[tuple[int, int, float]] = []
        trace: list[float] = []
        for i, zi in enumerate(z):
            x = sign * zi - k
            if latched:
                s = min(h, s + x)
                if s <= 0.0:
                    s, latched, last_zero = 0.0, False, i
                trace.append(s)
                continue
            s = max(0.0, s + x)
            trace.append(s)
            if s == 0.0:
                last_zero = i
            if s > h and i + 1 >= min_samples:
                found.append((i, last_zero + 1, s))
                last_zero = i
                if rearm == "latch":
                    latched, s = True, h
                else:
                    s = 0.0
        alarms[direction], traces[direction] = found, trace
    return alarms, traces


def cusum_arl(k: float, h: float, delta: float, nodes: int = 200) -> float:
    """Zero-state ARL of a one-sided CUSUM on N(δ, 1) data (Nyström, Gauss-Legendre)."""
    x, w = roots_legendre(nodes)
    y, w = h / 2 * (x + 1), w * h / 2
    a = np.zeros((nodes + 1, nodes + 1))
    a[:nodes, :nodes] = np.eye(nodes) - norm.pdf(y[None, :] + k - y[:, None] - delta) * w[None, :]
    a[:nodes, nodes] = -norm.cdf(k - y - delta)
    a[nodes, :nodes] = -norm.pdf(y + k - delta) * w
    a[nodes, nodes] = 1 - norm.cdf(k - delta)
    return float(np.linalg.solve(a, np.ones(nodes + 1))[nodes])


def ewma_arl(lam: float, big_l: float, delta: float, states: int = 301) -> float:
    """ARL of a two-sided EWMA with asymptotic limits, started at 0 (Markov chain)."""
    lim = big_l * math.sqrt(lam / (2 - lam))
    edges = np.linspace(-lim, lim, states + 1)
    mid = (edges[:-1] + edges[1:]) / 2
    lo = (edges[None, :-1] - (1 - lam) * mid[:, None]) / lam
    hi = (edges[None, 1:] - (1 - lam) * mid[:, None]) / lam
    p = norm.cdf(hi - delta) - norm.cdf(lo - delta)
    arl = np.linalg.solve(np.eye(states) - p, np.ones(states))
    return float(np.interp(0.0, mid, arl))


def step_bound(delta: float, k: float, h: float) -> int:
    """Run length by which a CUSUM alarms on a step of δσ with probability ≥ 1 − Φ(−5).

    S after N shifted samples is at least their sum of (z − k) = (δ − k)·N + N(0, N): once
    (δ − k)·N − 5√N > h the alarm has happened unless the noise sum fell below −5√N.
    """
    n = 1
    while (delta - k) * n - 5 * math.sqrt(n) <= h:
        n += 1
    return n


def ramp_bound(slope: float, k: float, h: float) -> int:
    """Same for a ramp ``slope·i`` σ (i = 1, 2, … after onset): the best window m..N."""
    for n in range(1, 1_000_000):
        i = np.arange(1, n + 1)
        sums = np.concatenate([[0.0], np.cumsum(slope * i - k)])
        m = np.arange(1, n + 1)
        if (sums[n] - sums[m - 1] - 5 * np.sqrt(n - m + 1)).max() > h:
            return n
    raise AssertionError("no bound")


# --------------------------------------------------------------------------------------------
# ChannelSpec
# --------------------------------------------------------------------------------------------


def test_spec_defaults_are_the_documented_ones() -> None:
    spec = ChannelSpec("mass_g")
    assert (spec.cusum_k, spec.cusum_h, spec.ewma_lambda, spec.ewma_l) == (0.5, 18.0, 0.01, 6.3)
    assert spec.detectors == ("tolerance", "cusum", "ewma")
    assert spec.noise_sd is None
    assert spec.noise_window_s == 600.0
    assert math.isinf(spec.abs_tol)
    assert spec.rel_tol == 0.0
    assert spec.cusum_rearm == "latch"
    assert spec.band_k == 3.0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("abs_tol", -1.0),
        ("abs_tol", math.nan),
        ("rel_tol", math.inf),
        ("persistence_s", -0.5),
        ("noise_sd", 0.0),
        ("noise_window_s", 0.0),
        ("cusum_k", -0.1),
        ("cusum_h", 0.0),
        ("ewma_lambda", 0.0),
        ("ewma_lambda", 1.5),
        ("ewma_l", -2.0),
        ("min_samples", -1),
        ("min_samples", 2.5),
        ("cusum_rearm", "sometimes"),
        ("detectors", ("cusum", "shewhart")),
        ("detectors", ("cusum", "cusum")),
        ("detectors", "cusum"),
        ("abs_tol", "5"),
        ("abs_tol", True),
    ],
)
def test_spec_rejects_bad_values_naming_the_field(field: str, value: Any) -> None:
    with pytest.raises(ConfigurationError) as info:
        ChannelSpec("pressure_mmhg", **{field: value})
    assert info.value.field == f"tolerances.pressure_mmhg.{field}"
    assert f"tolerances.pressure_mmhg.{field}" in str(info.value)


def test_spec_from_scenario_table() -> None:
    spec = ChannelSpec.from_mapping(
        "mass_g",
        {
            "unit": "g",
            "abs_tol": 0.005,
            "rel_tol": 0.02,
            "persistence_s": "30s",
            "noise_window_s": "10min",
            "detectors": ["tolerance", "cusum"],
            "min_samples": 10,
        },
        source="scenario.toml",
    )
    assert spec.persistence_s == 30.0
    assert spec.noise_window_s == 600.0
    assert spec.detectors == ("tolerance", "cusum")
    assert spec.noise_sd is None
    assert spec.as_json()["abs_tol"] == 0.005
    assert ChannelSpec("x").as_json()["abs_tol"] is None  # inf: no absolute band


@pytest.mark.parametrize(
    ("table", "field", "words"),
    [
        ({"abs_toll": 1.0}, "abs_toll", "unknown field"),
        ({"persistence_s": "ten seconds"}, "persistence_s", "malformed duration"),
        ({"cusum_h": -1}, "cusum_h", "> 0"),
        ({"name": "other"}, "name", "other"),
    ],
)
def test_spec_from_table_errors_name_file_and_field(
    table: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(ConfigurationError) as info:
        ChannelSpec.from_mapping("mass_g", table, source="scenario.toml")
    assert info.value.source == "scenario.toml"
    assert info.value.field == f"tolerances.mass_g.{field}"
    assert str(info.value).startswith(f"scenario.toml:tolerances.mass_g.{field}: ")
    assert words in str(info.value)


# --------------------------------------------------------------------------------------------
# tolerance band
# --------------------------------------------------------------------------------------------


def test_tolerance_band_hand_checked() -> None:
    # band = 1 + 0.1·|twin| = 2 with twin = 10; persistence 2 s at 1 Hz means three samples
    spec = ChannelSpec(
        "flow_ml_h",
        abs_tol=1.0,
        rel_tol=0.1,
        persistence_s=2.0,
        min_samples=0,
        detectors=("tolerance",),
    )
    r = [0, 3, 3, 0, 2.5, 3, 4, 5, 0, 3, 3, 3, 0, 0, 0, 3, 3, 3, -3, -3, -3]
    #    0  1  2  3  4    5  6  7  8  9 10 11 12 13 14 15 16 17  18  19  20
    res = run(spec, r, twin=np.full(len(r), 10.0))
    assert [(e.direction, e.onset_t_s, e.detected_t_s) for e in res.events] == [
        # out at 1-2 lasts 1 s: nothing; out from 4: t = 6 is 2 s later
        ("high", 4.0, 6.0),
        # back in at 8 for one sample only: not re-armed, so 9-11 does not fire;
        # in for 12-14 (2 s) re-arms; out from 15 fires at 17
        ("high", 15.0, 17.0),
        # the low direction has its own latch
        ("low", 18.0, 20.0),
    ]
    first = res.events[0]
    assert first.value == 4.0
    assert first.threshold == 2.0
    assert first.n_samples == 3
    assert first.magnitude == pytest.approx((2.5 + 3 + 4) / 3)
    assert first.magnitude_rel == pytest.approx(first.magnitude / 10.0)
    assert res.tolerance_band is not None
    np.testing.assert_array_equal(res.tolerance_band, 2.0)


def test_tolerance_with_zero_persistence_fires_on_the_first_sample_out() -> None:
    spec = ChannelSpec("x", abs_tol=1.0, persistence_s=0.0, min_samples=0, detectors=("tolerance",))
    res = run(spec, [0.0, 0.5, 1.5, 1.7, 0.0, -2.0])
    assert [(e.direction, e.detected_t_s, e.onset_t_s) for e in res.events] == [
        ("high", 2.0, 2.0),
        ("low", 5.0, 5.0),
    ]


def test_persistence_clock_pauses_during_a_gap() -> None:
    spec = ChannelSpec("x", abs_tol=1.0, persistence_s=5.0, min_samples=0, detectors=("tolerance",))
    t = np.concatenate([np.arange(0.0, 3.0), np.arange(3.0, 101.0), np.arange(101.0, 110.0)])
    real = np.full(t.shape, 2.0)
    real[3:101] = np.nan  # the device was lost from t = 3 to 100
    res = compare(spec, t, real, np.zeros_like(t))
    # observed out-of-band time: 0→2 (2 s), paused 2→101, then 101→104 makes 5 s
    assert [(e.onset_t_s, e.detected_t_s, e.n_samples) for e in res.events] == [(0.0, 104.0, 7)]
    assert res.stats.n_missing == 98
    assert res.stats.n == 12


# --------------------------------------------------------------------------------------------
# CUSUM
# --------------------------------------------------------------------------------------------


def test_cusum_hand_checked_with_latch() -> None:
    spec = ChannelSpec(
        "x", noise_sd=1.0, cusum_k=0.5, cusum_h=2.0, min_samples=0, detectors=("cusum",)
    )
    z = [0.0, 1.0, 1.0, 1.0, 0.5, 2.0, -3.0, 0.0, 3.0, 3.0]
    res = run(spec, z)
    # S: 0, .5, 1, 1.5, 1.5, 3 (> 2: alarm, latch at 2), 2 − 3.5 < 0 (re-armed), 0, 2.5 (> 2)
    assert res.cusum_pos is not None
    np.testing.assert_array_equal(res.cusum_pos, [0, 0.5, 1, 1.5, 1.5, 3, 0, 0, 2.5, 2])
    first, second = (e for e in res.events if e.direction == "high")
    assert (first.direction, first.onset_t_s, first.detected_t_s) == ("high", 1.0, 5.0)
    assert first.value == 3.0
    assert first.threshold == 2.0
    assert first.n_samples == 5
    assert first.magnitude == pytest.approx((1 + 1 + 1 + 0.5 + 2) / 5)
    # after the re-arm at 6, S was 0 at 7: the change is dated at 8
    assert (second.onset_t_s, second.detected_t_s, second.value) == (8.0, 8.0, 2.5)
    # the low side: −z − k accumulates only at 6 (3 − 0.5 = 2.5 > 2), latches at 2, loses 0.5
    # at 7 and is re-armed at 8
    assert res.cusum_neg is not None
    np.testing.assert_array_equal(res.cusum_neg, [0, 0, 0, 0, 0, 0, 2.5, 1.5, 0, 0])
    (low,) = (e for e in res.events if e.direction == "low")
    assert (low.onset_t_s, low.detected_t_s, low.value, low.magnitude) == (6.0, 6.0, 2.5, -3.0)


def test_cusum_restart_fires_again_on_a_persistent_shift_and_latch_once() -> None:
    z = np.full(200, 1.5)  # δ − k = 1 per sample: S crosses h = 10 every 11 samples
    restart = ChannelSpec(
        "x", noise_sd=1.0, cusum_h=10.0, cusum_rearm="restart", detectors=("cusum",)
    )
    latch = ChannelSpec("x", noise_sd=1.0, cusum_h=10.0, detectors=("cusum",))
    fired = [e.detected_t_s for e in run(restart, z).events]
    assert fired == [float(i) for i in range(29, 200, 11)]  # the first one waits for min_samples
    assert [e.detected_t_s for e in run(latch, z).events] == [29.0]


dyadic = st.integers(min_value=-64, max_value=64).map(lambda i: i / 8)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    z=st.lists(dyadic, min_size=1, max_size=700),
    k_8=st.integers(0, 8),
    h_8=st.integers(1, 60),
    min_samples=st.integers(0, 40),
    rearm=st.sampled_from(["latch", "restart"]),
)
def test_vectorised_cusum_equals_the_per_sample_loop(
    z: list[float], k_8: int, h_8: int, min_samples: int, rearm: str
) -> None:
    # multiples of 1/8 keep every sum exact, so the closed form and the loop must agree
    # bit for bit (segments longer than 256 samples exercise the doubling search)
    k, h = k_8 / 8, h_8 / 8
    spec = ChannelSpec(
        "x",
        noise_sd=1.0,
        cusum_k=k,
        cusum_h=h,
        cusum_rearm=rearm,  # type: ignore[arg-type]
        min_samples=min_samples,
        detectors=("cusum",),
    )
    res = run(spec, z)
    alarms, traces = reference_cusum(z, k=k, h=h, min_samples=min_samples, rearm=rearm)
    for direction, trace in (("high", res.cusum_pos), ("low", res.cusum_neg)):
        got = [
            (int(e.detected_t_s), int(e.onset_t_s), e.value)
            for e in res.events
            if e.direction == direction
        ]
        assert got == alarms[direction]
        assert trace is not None
        np.testing.assert_array_equal(trace, traces[direction])


def test_cusum_on_noise_matches_the_loop_to_rounding() -> None:
    rng = np.random.default_rng(7)  # any seed: a check of arithmetic, not of statistics
    z = rng.standard_normal(30_000) + np.where(np.arange(30_000) % 5000 < 300, 1.2, 0.0)
    spec = ChannelSpec("x", noise_sd=1.0, cusum_h=8.0, detectors=("cusum",))
    res = run(spec, z)
    alarms, traces = reference_cusum(z.tolist(), k=0.5, h=8.0, min_samples=30, rearm="latch")
    assert res.cusum_pos is not None
    np.testing.assert_allclose(res.cusum_pos, traces["high"], rtol=0, atol=1e-9)
    assert [int(e.detected_t_s) for e in res.events if e.direction == "high"] == [
        a[0] for a in alarms["high"]
    ]
    assert len(alarms["high"]) >= 5


# --------------------------------------------------------------------------------------------
# EWMA
# --------------------------------------------------------------------------------------------


def test_ewma_hand_checked() -> None:
    spec = ChannelSpec(
        "x", noise_sd=1.0, ewma_lambda=0.5, ewma_l=1.0, min_samples=0, detectors=("ewma",)
    )
    res = run(spec, [0.0, 2.0, 0.0, -2.0])
    # E = 0, 1, 0.5, −0.75; limits sqrt(1/3·(1 − 0.25^n)) = 0.5, 0.5590, 0.5728, 0.5762
    assert res.ewma is not None
    assert res.ewma_limit is not None
    np.testing.assert_allclose(res.ewma, [0.0, 1.0, 0.5, -0.75])
    np.testing.assert_allclose(
        res.ewma_limit, [math.sqrt((1 - 0.25**n) / 3) for n in (1, 2, 3, 4)], rtol=1e-15
    )
    high, low = res.events
    assert (high.direction, high.onset_t_s, high.detected_t_s) == ("high", 1.0, 1.0)
    assert high.value == 1.0
    assert high.magnitude == 2.0
    # E was last ≥ 0 at t = 2, so the low drift is dated at 3
    assert (low.direction, low.onset_t_s, low.detected_t_s, low.value) == ("low", 3.0, 3.0, -0.75)


def test_ewma_latches_until_back_on_target() -> None:
    spec = ChannelSpec(
        "x", noise_sd=1.0, ewma_lambda=0.5, ewma_l=1.0, min_samples=0, detectors=("ewma",)
    )
    # E: .5, 1.25 (alarm), .625, .8125 (still above target: no new event), −.09, 1 (re-armed)
    res = run(spec, [1.0, 2.0, 0.0, 1.0, -1.0, 2.09375])
    assert [e.detected_t_s for e in res.events] == [1.0, 5.0]


def test_ewma_trace_equals_the_recursion_and_exact_limits() -> None:
    rng = np.random.default_rng(11)  # any seed: a check of arithmetic
    z = rng.standard_normal(5000)
    spec = ChannelSpec("x", noise_sd=2.0, ewma_lambda=0.05, ewma_l=3.0, detectors=("ewma",))
    res = run(spec, 2.0 * z)
    e, ref = 0.0, []
    for zi in z:
        e = (1 - 0.05) * e + 0.05 * zi
        ref.append(e)
    assert res.ewma is not None
    assert res.ewma_limit is not None
    assert res.z is not None
    np.testing.assert_allclose(res.z, z, rtol=1e-15)
    np.testing.assert_allclose(res.ewma, ref, rtol=0, atol=1e-12)
    n = np.arange(1, 5001)
    exact = 3.0 * np.sqrt(0.05 / 1.95 * (1 - 0.95 ** (2 * n)))
    np.testing.assert_allclose(res.ewma_limit, exact, rtol=1e-12)
    assert res.ewma_limit[-1] == 3.0 * math.sqrt(0.05 / 1.95)  # asymptotic, exactly


# --------------------------------------------------------------------------------------------
# onsets, minimum samples
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("delta", "within_3"), [(1.0, 0.65), (2.0, 0.75)])
def test_cusum_onset_on_a_step(delta: float, within_3: float) -> None:
    spec = ChannelSpec("x", noise_sd=1.0, detectors=("cusum",))
    n0, n = 2000, 2400
    errors = []
    for seed in range(300):  # seeds 0..299: the first ones, not chosen
        z = np.random.default_rng(seed).standard_normal(n)
        z[n0:] += delta
        (event,) = run(spec, z).events
        errors.append(event.onset_t_s - n0)
    errors_arr = np.array(errors)
    # the last-zero estimate is unbiased here (median 0 in 400 offline runs) and within ±3
    # samples in 72 % (1σ) / 83 % (2σ) of the runs; the bounds leave > 3 standard errors
    assert abs(float(np.median(errors_arr))) <= 1
    assert np.mean(np.abs(errors_arr) <= 3) >= within_3


def test_min_samples_holds_every_detector_back() -> None:
    spec = ChannelSpec("x", noise_sd=1.0, abs_tol=5.0, persistence_s=0.0, min_samples=50)
    res = run(spec, np.full(100, 30.0))
    assert {e.statistic: e.detected_t_s for e in res.events} == {
        "tolerance": 49.0,
        "cusum": 49.0,
        "ewma": 49.0,
    }
    assert all(e.onset_t_s == 0.0 and e.n_samples == 50 for e in res.events)


# --------------------------------------------------------------------------------------------
# gaps
# --------------------------------------------------------------------------------------------


def test_a_gap_neither_fires_nor_resets_the_statistics() -> None:
    rng = np.random.default_rng(3)  # any seed: the property holds for all data
    z = rng.standard_normal(6000)
    z[2000:2600] += 1.0
    z[4000:] -= 0.6
    spec = ChannelSpec("x", noise_sd=1.0, detectors=("cusum", "ewma"))
    plain = run(spec, z)
    # the same samples with a 500-sample gap inserted before sample 2010, mid-drift
    real = np.concatenate([z[:2010], np.full(500, np.nan), z[2010:]])
    gapped = run(spec, real)
    assert gapped.stats.n_missing == 500
    assert len(plain.events) >= 3

    def shifted(x: float) -> float:
        return x + 500 if x >= 2010 else x

    assert [
        (e.statistic, e.direction, shifted(e.onset_t_s), shifted(e.detected_t_s))
        for e in plain.events
    ] == [(e.statistic, e.direction, e.onset_t_s, e.detected_t_s) for e in gapped.events]
    assert [e.value for e in plain.events] == [e.value for e in gapped.events]
    assert gapped.cusum_pos is not None
    assert np.isnan(gapped.cusum_pos[2010:2510]).all()


def test_only_nan_never_fires() -> None:
    spec = ChannelSpec("x", noise_sd=1.0, abs_tol=0.0, persistence_s=0.0)
    res = run(spec, np.full(1000, np.nan))
    assert res.events == ()
    assert res.stats.n == 0
    assert res.stats.n_missing == 1000
    assert math.isnan(res.stats.mean)


# --------------------------------------------------------------------------------------------
# σ estimate
# --------------------------------------------------------------------------------------------


def test_noise_estimate_ignores_drift_steps_and_spikes() -> None:
    rng = np.random.default_rng(5)  # any seed; 600 samples give σ̂ within ±4 % (1 sd)
    r = 0.2 * rng.standard_normal(600) + np.linspace(0, 6, 600)  # a drift of 50σ
    r[300:] += 2.0  # a step of 10σ
    r[[50, 51, 400]] += 4.0  # spikes
    assert robust_noise_sd(r) == pytest.approx(0.2, rel=0.12)
    assert np.std(r) > 10 * 0.2
    assert np.std(np.diff(r)) / math.sqrt(2) > 0.25


def test_noise_estimate_never_differences_across_a_gap() -> None:
    rng = np.random.default_rng(9)  # any seed
    # pairs of samples at wildly different levels, separated by lost readings: half of all
    # differences would be huge if they spanned the gaps
    levels = rng.uniform(-1e3, 1e3, 60)
    r = np.concatenate(
        [[lvl + rng.normal(0, 0.5), lvl + rng.normal(0, 0.5), np.nan] for lvl in levels]
    )
    assert robust_noise_sd(r) == pytest.approx(0.5, rel=0.3)
    assert robust_noise_sd(r[: -(3 * 60 - 3 * (MIN_NOISE_PAIRS - 1))]) is None  # too few pairs


def test_quantised_residual_falls_back_to_the_plain_sd() -> None:
    r = np.zeros(200)
    r[::10] = 0.001  # a 1 mg balance flickering one digit
    assert robust_noise_sd(r) == pytest.approx(np.std(np.diff(r), ddof=1) / math.sqrt(2))


def test_a_noiseless_residual_has_no_sigma_but_a_rounded_counter_has_one() -> None:
    t = np.arange(1000.0)
    twin = 0.0013 * t  # a pump's infused volume, mL
    # a smooth residual differs only by floating-point rounding: that is not noise
    assert robust_noise_sd(twin + 1e-3 - twin * 0.999) is None
    # a display that rounds to 1 µL: the sawtooth behaves like quantisation noise, q/√12
    assert robust_noise_sd(np.round(twin, 3) - twin) == pytest.approx(1e-3 / math.sqrt(12), rel=0.2)


def test_sigma_comes_from_the_first_window() -> None:
    rng = np.random.default_rng(2)  # any seed
    z = rng.standard_normal(3000)
    spec = ChannelSpec("x", noise_window_s=100.0)
    res = run(spec, z)
    assert res.stats.sigma_source == "estimated"
    assert res.stats.sigma == robust_noise_sd(z[:100])
    # with the first 80 readings lost the window stretches until 30 pairs exist
    lost = z.copy()
    lost[:80] = np.nan
    assert run(spec, lost).stats.sigma == robust_noise_sd(lost[: 80 + MIN_NOISE_PAIRS + 1])


def test_sigma_unavailable_disables_cusum_and_ewma(caplog: pytest.LogCaptureFixture) -> None:
    spec = ChannelSpec("x", noise_window_s=50.0, abs_tol=1.0, persistence_s=0.0)
    z = np.zeros(500)
    z[400] = 5.0
    with caplog.at_level(logging.WARNING, logger="medtwin.hil.comparator"):
        res = run(spec, z)
    assert res.stats.sigma is None
    assert res.stats.sigma_source == "unavailable"
    assert [e.statistic for e in res.events] == ["tolerance"]
    assert res.cusum_pos is not None
    assert np.isnan(res.cusum_pos).all()
    assert "declare noise_sd" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="medtwin.hil.comparator"):
        quiet = run(ChannelSpec("x", noise_window_s=50.0, detectors=("tolerance",)), z)
    assert quiet.stats.sigma_source == "unavailable"
    assert caplog.text == ""  # nothing needed σ, so nothing to warn about


# --------------------------------------------------------------------------------------------
# live == batch
# --------------------------------------------------------------------------------------------


def feed_live(
    spec: ChannelSpec,
    t: FloatArray,
    real: FloatArray,
    twin: FloatArray,
    sizes: list[int],
    sd: FloatArray | None = None,
) -> LiveComparator:
    live = LiveComparator([spec])
    i, j = 0, 0
    while i < t.shape[0]:
        size = sizes[j % len(sizes)]
        j += 1
        if size == 0:  # a plain Python scalar sample
            sd_i = None if sd is None else float(sd[i])
            live.update(spec.name, float(t[i]), float(real[i]), float(twin[i]), sd_i)
            i += 1
        else:
            sd_b = None if sd is None else sd[i : i + size]
            live.update(spec.name, t[i : i + size], real[i : i + size], twin[i : i + size], sd_b)
            i += size
    live.finish()
    return live


def sort_key(e: DriftEvent) -> tuple[float, int, str]:
    return (e.detected_t_s, ("tolerance", "cusum", "ewma").index(e.statistic), e.direction)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(50, 2500),
    gap_fraction=st.sampled_from([0.0, 0.02, 0.2]),
    sizes=st.lists(st.integers(0, 80), min_size=1, max_size=8),
    declared=st.booleans(),
    rearm=st.sampled_from(["latch", "restart"]),
    min_samples=st.integers(0, 60),
    rel_tol=st.sampled_from([0.0, 0.01]),
    with_sd=st.booleans(),
)
def test_live_equals_batch(
    seed: int,
    n: int,
    gap_fraction: float,
    sizes: list[int],
    declared: bool,
    rearm: str,
    min_samples: int,
    rel_tol: float,
    with_sd: bool,
) -> None:
    rng = np.random.default_rng(seed)
    t = np.cumsum(rng.uniform(0.5, 1.5, n))
    twin = 50.0 + 0.1 * t
    drift = np.zeros(n)
    for _ in range(3):  # a few steps and ramps so that every detector has work
        a = int(rng.integers(0, n))
        drift[a:] += rng.normal(0, 2.0) + rng.normal(0, 0.02) * (t[a:] - t[a])
    real = twin + drift + rng.standard_normal(n)
    real[rng.random(n) < gap_fraction] = np.nan
    spec = ChannelSpec(
        "ch",
        abs_tol=2.5,
        rel_tol=rel_tol,
        persistence_s=float(rng.integers(0, 5)),
        noise_sd=1.0 if declared else None,
        noise_window_s=float(rng.integers(20, 300)),
        cusum_h=6.0,
        ewma_lambda=0.1,
        ewma_l=3.0,
        cusum_rearm=rearm,  # type: ignore[arg-type]
        min_samples=min_samples,
    )
    # a per-sample prediction band that is sometimes wider, sometimes narrower than the
    # declared one, so both branches of max(declared, k·sd) are taken
    sd = np.abs(rng.normal(0.8, 0.4, n)) if with_sd else None
    batch = compare(spec, t, real, twin, twin_sd=sd)
    live = feed_live(spec, t, real, twin, [s if s != 1 else 0 for s in sizes], sd)
    assert sorted(live.events, key=sort_key) == list(batch.events)
    stats = live.stats()["ch"]
    assert stats.sigma == batch.stats.sigma
    assert stats.n == batch.stats.n
    assert stats.n_missing == batch.stats.n_missing
    if stats.n > 1:
        assert stats.mean == pytest.approx(batch.stats.mean, rel=1e-9, abs=1e-9)
        assert stats.sd == pytest.approx(batch.stats.sd, rel=1e-9)
        assert stats.max_abs == batch.stats.max_abs


def test_live_equals_batch_across_batch_blocks() -> None:
    # longer than one batch block (65 536 samples): drifts straddle block boundaries
    rng = np.random.default_rng(1)  # any seed
    n = 150_000
    t = np.arange(n, dtype=float)
    twin = np.zeros(n)
    real = rng.standard_normal(n)
    for start in (65_500, 131_050, 100_000):
        real[start : start + 400] += 1.5
    real[65_530:65_545] = np.nan
    spec = ChannelSpec("ch", abs_tol=3.0, persistence_s=3.0, noise_window_s=300.0)
    batch = compare(spec, t, real, twin)
    assert len(batch.events) >= 6
    for sizes in ([1000, 3, 0, 7000], [0]):
        assert sorted(feed_live(spec, t, real, twin, sizes).events, key=sort_key) == list(
            batch.events
        )


def test_live_equals_batch_with_a_per_sample_band_across_batch_blocks() -> None:
    rng = np.random.default_rng(2)  # any seed
    n = 140_000
    t = np.arange(n, dtype=float)
    twin = np.zeros(n)
    real = rng.standard_normal(n)
    sd = 0.8 + 0.5 * np.sin(t / 5000.0) ** 2  # the band breathes around the declared 3.0
    for start in (65_500, 131_050, 100_000):
        real[start : start + 400] += 4.0
    real[65_530:65_545] = np.nan
    spec = ChannelSpec("ch", abs_tol=3.0, persistence_s=3.0, noise_window_s=300.0)
    batch = compare(spec, t, real, twin, twin_sd=sd)
    assert batch.tolerance_band is not None
    np.testing.assert_array_equal(
        batch.tolerance_band[np.isfinite(real)], np.maximum(3.0, 3.0 * sd)[np.isfinite(real)]
    )
    for sizes in ([1000, 3, 0, 7000], [0]):
        assert sorted(feed_live(spec, t, real, twin, sizes, sd).events, key=sort_key) == list(
            batch.events
        )


def test_the_twins_prediction_band_widens_the_declared_tolerance() -> None:
    # A residual of 0.5 held for 100 s against a declared band of 0.2: a drift from a
    # point. When the twin predicts with an SD of 0.3 (band 3·0.3 = 0.9) the same
    # residual lies inside what the twin predicts and is not flagged; at an SD of 0.1 the
    # declared band governs (max), so it is flagged as before.
    t = np.arange(300.0)
    twin = np.full(300, 10.0)
    real = twin.copy()
    real[100:200] += 0.5
    spec = ChannelSpec(
        "ch", abs_tol=0.2, persistence_s=10.0, detectors=("tolerance",), min_samples=0
    )
    assert spec.band_k == 3.0
    assert len(compare(spec, t, real, twin).events) == 1
    assert len(compare(spec, t, real, twin, twin_sd=np.full(300, 0.1)).events) == 1
    wide = compare(spec, t, real, twin, twin_sd=np.full(300, 0.3))
    assert wide.events == ()
    assert wide.tolerance_band is not None
    np.testing.assert_allclose(wide.tolerance_band, 0.9)
    # the coverage factor is the scenario's to set
    narrow = ChannelSpec.from_mapping(
        "ch",
        {"abs_tol": 0.2, "persistence_s": 10.0, "detectors": ["tolerance"], "band_k": 1.0},
    )
    assert len(compare(narrow, t, real, twin, twin_sd=np.full(300, 0.3)).events) == 1
    # a prediction SD must be finite and ≥ 0, live as in batch
    bad = np.full(300, 0.3)
    bad[7] = np.nan
    with pytest.raises(AnalysisError, match=r"twin_sd\[7\]"):
        compare(spec, t, real, twin, twin_sd=bad)
    live = LiveComparator([spec])
    with pytest.raises(AnalysisError, match=r"twin_sd\[0\]"):
        live.update("ch", 0.0, 10.0, 10.0, -1.0)
    with pytest.raises(AnalysisError, match="shape"):
        compare(spec, t, real, twin, twin_sd=np.ones(5))


def test_live_buffers_until_sigma_then_catches_up() -> None:
    rng = np.random.default_rng(4)  # any seed
    z = rng.standard_normal(1000)
    z[200:] += 3.0
    spec = ChannelSpec("x", noise_window_s=400.0, detectors=("cusum",))
    live = LiveComparator([spec])
    reported_at = {}
    for i, zi in enumerate(z):
        for event in live.update("x", float(i), float(zi), 0.0):
            reported_at[event.detected_t_s] = i
    (event,) = live.events
    assert live.sigma("x") is not None
    assert 200 <= event.detected_t_s < 230
    assert reported_at[event.detected_t_s] == 400
    assert list(run(spec, z).events) == [event]


def test_a_run_shorter_than_the_sigma_window_is_settled_by_finish() -> None:
    rng = np.random.default_rng(12)  # any seed
    z = rng.standard_normal(300)
    z[150:] += 4.0
    spec = ChannelSpec("x", noise_window_s=600.0, abs_tol=10.0)
    batch = run(spec, z)
    assert batch.stats.sigma_source == "estimated"
    assert batch.stats.sigma == robust_noise_sd(z)
    live = LiveComparator([spec])
    for i, zi in enumerate(z):
        assert live.update("x", float(i), float(zi), 0.0) == []
    assert live.stats()["x"].sigma_source == "pending"
    caught_up = live.finish()
    assert caught_up == list(batch.events)
    assert [e.statistic for e in caught_up] == ["cusum", "ewma"]
    assert live.finish() == []  # idempotent
    assert live.stats()["x"].sigma == batch.stats.sigma


def test_live_rejects_bad_input_and_loses_nothing() -> None:
    spec = ChannelSpec("x", noise_sd=1.0, abs_tol=2.0, persistence_s=0.0)
    rng = np.random.default_rng(6)  # any seed
    z = rng.standard_normal(300)
    z[150:] += 4.0
    live = LiveComparator([spec])
    for i in range(100):
        live.update("x", float(i), float(z[i]), 0.0)
    with pytest.raises(AnalysisError, match=r"channel 'x': t_s\[100\] = 99.0 s does not come"):
        live.update("x", 99.0, 0.0, 0.0)
    with pytest.raises(AnalysisError, match=r"twin\[101\] = nan"):
        live.update("x", [100.0, 101.0], [0.0, 0.0], [0.0, np.nan])
    with pytest.raises(AnalysisError, match=r"real\[100\] = inf"):
        live.update("x", np.array([100.0]), np.array([np.inf]), np.array([0.0]))
    for i in range(100, 300):
        live.update("x", float(i), float(z[i]), 0.0)
    assert sorted(live.events, key=sort_key) == list(run(spec, z).events)
    assert live.stats()["x"].n == 300


def test_live_unknown_channel_and_duplicate_specs() -> None:
    live = LiveComparator({"a": ChannelSpec("a")})
    assert live.channels == ("a",)
    with pytest.raises(ConfigurationError, match="no tolerances declared for channel 'b'"):
        live.update("b", 0.0, 1.0, 1.0)
    with pytest.raises(ConfigurationError, match=r"tolerances\.a: channel declared twice"):
        LiveComparator([ChannelSpec("a"), ChannelSpec("a")])


# --------------------------------------------------------------------------------------------
# input errors
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("t", "real", "twin", "message"),
    [
        ([0, 1, 2], [0, 0], [0, 0, 0], "1-D arrays of one length"),
        ([0, 1, 1], [0, 0, 0], [0, 0, 0], r"t_s\[2\] = 1.0 s does not come after t_s\[1\]"),
        ([0, np.nan, 2], [0, 0, 0], [0, 0, 0], r"t_s\[1\] = nan is not a finite time"),
        ([0, 1, 2], [0, np.inf, 0], [0, 0, 0], r"real\[1\] = inf at t = 1.0 s is infinite"),
        ([0, 1, 2], [0, 0, 0], [0, 0, np.nan], r"twin\[2\] = nan at t = 2.0 s is not finite"),
        ([0, 1, 2], ["a", "b", "c"], [0, 0, 0], "real must be numbers"),
    ],
)
def test_bad_arrays_raise_analysis_error_naming_channel_and_sample(
    t: list[Any], real: list[Any], twin: list[Any], message: str
) -> None:
    with pytest.raises(AnalysisError, match=message) as info:
        compare(ChannelSpec("mass_g"), t, real, twin)
    assert "channel 'mass_g'" in str(info.value)


# --------------------------------------------------------------------------------------------
# defaults: false alarms and detection delays
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("declared", [True, False], ids=["sigma-declared", "sigma-estimated"])
def test_nominal_bench_24h_at_1hz_has_no_false_events(declared: bool) -> None:
    # A balance logging an infusion at 10 mL/h: residual = white noise of σ = 1 mg plus a
    # model error of at most 0.05σ (bias and a slow wobble). With the defaults the chance of
    # any false event in such a day is ~0.1 % per detector (ARL 7×10⁷ CUSUM, 4×10⁸ EWMA at a
    # constant 0.05σ bias), so ten days pass with ~98 % probability for *any* seeds: these
    # are simply the first ten (300 seeds were run offline without a single event).
    n = 86_400
    t = np.arange(n, dtype=float)
    sigma = 1e-3
    twin = 0.998 * 10.0 / 3600.0 * t
    model_error = sigma * (0.025 + 0.025 * np.sin(2 * np.pi * t / 3600.0))
    spec = ChannelSpec("mass_g", unit="g", abs_tol=5e-3, noise_sd=sigma if declared else None)
    for seed in range(10):
        real = twin + model_error + sigma * np.random.default_rng(seed).standard_normal(n)
        res = compare(spec, t, real, twin, traces=False)
        assert res.events == (), (seed, res.events)
        assert res.stats.sigma == pytest.approx(sigma, rel=0.15)


@pytest.mark.parametrize("delta", [1.0, 2.0])
def test_step_detection_delay(delta: float) -> None:
    spec = ChannelSpec("x", noise_sd=1.0, detectors=("cusum", "ewma"))
    n0, n = 2000, 2400
    cusum_delays, ewma_delays = [], []
    for seed in range(300):  # the first 300 seeds; the checks below hold for almost all
        z = np.random.default_rng(seed).standard_normal(n)
        z[n0:] += delta
        res = run(spec, z)
        assert all(e.detected_t_s >= n0 for e in res.events)  # no false alarm before
        cusum_delays.append(only(res.events, "cusum")[0].detected_t_s - n0 + 1)
        ewma_delays.append(only(res.events, "ewma")[0].detected_t_s - n0 + 1)
    # guaranteed: every run alarms within the bound (failure odds < 3×10⁻⁷ per run)
    assert max(cusum_delays) <= step_bound(delta, 0.5, 18.0)
    # on average: the textbook ARL. 300 runs give a standard error of ~3 % of the mean;
    # ±10 % also covers the difference between the zero-state ARL computed here and the
    # steady state the charts are in at the step (about one sample)
    assert np.mean(cusum_delays) == pytest.approx(cusum_arl(0.5, 18.0, delta), rel=0.1)
    assert np.mean(ewma_delays) == pytest.approx(ewma_arl(0.01, 6.3, delta), rel=0.1)


@pytest.mark.parametrize("drift", [0.02, 0.03])
def test_balance_delivery_drift_is_flagged_within_the_bound(drift: float) -> None:
    # 10 mL/h onto a 1 mg balance (σ = 1 mg) at 1 Hz; after one nominal hour the pump
    # delivers `drift` less: the mass residual becomes a ramp of slope b σ per sample.
    rho_g_ml, rate_ml_h, sigma = 0.998, 10.0, 1e-3
    slope = drift * rho_g_ml * rate_ml_h / 3600.0 / sigma
    bound = ramp_bound(slope, 0.5, 18.0)  # 51 samples at 2 %, 39 at 3 %
    # ~k/b + sqrt(2h/b) on average: the drift must first exceed kσ, then accumulate h
    typical = 0.5 / slope + math.sqrt(2 * 18.0 / slope)
    assert typical < bound < 2 * typical
    n0, n = 3600, 3600 + 2 * bound
    t = np.arange(n, dtype=float)
    twin = rho_g_ml * rate_ml_h / 3600.0 * t
    spec = ChannelSpec("mass_g", unit="g", noise_sd=sigma)
    delays, onsets = [], []
    for seed in range(100):  # the first 100 seeds: each fails the bound with odds < 3×10⁻⁷
        real = twin.copy()
        real[n0:] -= drift * (twin[n0:] - twin[n0 - 1])
        real += sigma * np.random.default_rng(seed).standard_normal(n)
        res = compare(spec, t, real, twin, traces=False)
        first = only(res.events, "cusum")[0]
        assert first.direction == "low"
        assert first.detected_t_s >= n0
        delays.append(first.detected_t_s - n0 + 1)
        onsets.append(first.onset_t_s - n0)
    assert max(delays) <= bound
    # the last-zero onset lands where the ramp reaches kσ, 0.5/b samples after it starts
    assert 0 <= np.median(onsets) <= 1.5 * 0.5 / slope


def test_proportional_drift_has_the_right_relative_magnitude() -> None:
    rng = np.random.default_rng(8)  # any seed
    t = np.arange(4000, dtype=float)
    twin = 0.5 * t + 100.0
    real = 0.97 * twin + 0.05 * rng.standard_normal(t.shape[0])  # 3 % low from the start
    res = compare(ChannelSpec("volume_ml", noise_sd=0.05, detectors=("cusum",)), t, real, twin)
    event = res.events[0]
    assert event.direction == "low"
    assert event.magnitude_rel == pytest.approx(-0.03, rel=0.05)


# --------------------------------------------------------------------------------------------
# output
# --------------------------------------------------------------------------------------------


def test_summary_json_and_traces_off() -> None:
    rng = np.random.default_rng(10)  # any seed
    z = rng.standard_normal(2000)
    z[1000:] += 2.0
    spec = ChannelSpec("pressure_mmhg", unit="mmHg", noise_sd=1.0)
    res = run(spec, z)
    doc = json.loads(json.dumps(res.as_json()))
    assert doc["channel"] == "pressure_mmhg"
    assert doc["spec"]["abs_tol"] is None
    assert doc["stats"]["n"] == 2000
    assert doc["stats"]["sigma_source"] == "declared"
    assert [e["statistic"] for e in doc["events"]] == [e.statistic for e in res.events]
    assert doc["events"][0]["unit"] == "mmHg"
    lean = compare(spec, np.arange(2000.0), z, np.zeros(2000), traces=False)
    assert lean.events == res.events
    assert lean.cusum_pos is None
    assert lean.residual is None
    assert res.residual is not None
    np.testing.assert_array_equal(res.residual, z)
