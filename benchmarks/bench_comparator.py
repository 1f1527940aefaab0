"""Drift comparator throughput against river's Page-Hinkley detector, in this process.

1. **Batch.** :func:`medtwin.hil.comparator.compare` over 10 M samples of one channel at 1 Hz (a
   balance mass with white noise σ = 1 mg and a sustained +1σ shift from sample 600 000 on),
   all three detectors enabled (tolerance band, two-sided CUSUM, EWMA), σ declared, events
   and residual statistics only (``traces=False``: the per-sample trace arrays are a plotting
   convenience and cost 560 MB at this size). Baseline: ``river.drift.PageHinkley`` (defaults,
   ``mode="both"``) fed the same residuals with ``update(x)``, reading ``drift_detected``
   after each sample. river is pure Python per sample, so it is timed on the first 1 M
   samples (which contain the shift) and its per-sample rate is extrapolated to the 10 M.
   Goal: ours ≥ 20 M samples/s; the ratio to Page-Hinkley is reported too.

2. **Live.** :class:`medtwin.hil.comparator.LiveComparator` fed one sample per ``update`` call (what
   the runner does at each sample tick), against the same Page-Hinkley per sample. Ours does
   three detectors, the σ scaling, onset and magnitude bookkeeping per sample, so it is
   expected to be slower than the single Page-Hinkley statistic; the goal is absolute:
   ≥ 20 k samples/s (≤ 50 µs per sample, i.e. 20 channels at 1 kHz within one core).

Both rows also report how many detections each side made and its delay after the shift, as
a sanity check (the thresholds are not matched, so this is not a comparison of quality).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from _common import BenchResult, best_time_s, value_goal  # noqa: E402
from medtwin.hil.comparator import ChannelSpec, LiveComparator, compare  # noqa: E402

SIGMA_G = 1e-3
RATE_G_S = 0.998 * 10.0 / 3600.0  # 10 mL/h of water onto the balance
GOAL_BATCH_SAMPLES_S = 20e6
GOAL_LIVE_SAMPLES_S = 20e3


def _data(n: int, shift_at: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # seeded so that every run times the same samples; any seed gives the same picture
    rng = np.random.default_rng(20240601)
    t = np.arange(n, dtype=np.float64)
    twin = RATE_G_S * t
    real = twin + SIGMA_G * rng.standard_normal(n)
    real[shift_at:] += SIGMA_G
    return t, real, twin


def _page_hinkley(residual: np.ndarray) -> tuple[float, list[int]]:
    from river.drift import PageHinkley

    detector = PageHinkley(mode="both")
    detections: list[int] = []
    values = (residual / SIGMA_G).tolist()  # PH's default threshold assumes O(1) values
    start = time.perf_counter()
    for i, x in enumerate(values):
        detector.update(x)
        if detector.drift_detected:
            detections.append(i)
    return time.perf_counter() - start, detections


def _first_after(detections: list[int] | list[float], at: float) -> str:
    later = [d for d in detections if d >= at]
    return f"first after the shift at +{later[0] - at:.0f}" if later else "shift missed"


def run(quick: bool = False) -> list[BenchResult]:
    n = 1_000_000 if quick else 10_000_000
    prefix = 200_000 if quick else 1_000_000
    shift_at = prefix * 6 // 10  # inside the prefix river is timed on
    t, real, twin = _data(n, shift_at)
    spec = ChannelSpec("mass_g", unit="g", abs_tol=5 * SIGMA_G, noise_sd=SIGMA_G)
    results: list[BenchResult] = []

    # -- batch
    result = compare(spec, t, real, twin, traces=False)
    ours_s = best_time_s(lambda: compare(spec, t, real, twin, traces=False), repeat=3)
    ours_rate = n / ours_s
    residual = real[:prefix] - twin[:prefix]
    ph_s = min(_page_hinkley(residual)[0] for _ in range(2))
    ph_rate = prefix / ph_s
    _, ph_detections = _page_hinkley(residual)
    events = ", ".join(
        f"{e.statistic} {e.direction} at +{e.detected_t_s - shift_at:.0f}" for e in result.events
    )
    results.append(
        value_goal(
            f"comparator batch, {n / 1e6:g} M samples, 3 detectors",
            ours_rate / 1e6,
            "M samples/s",
            at_least=GOAL_BATCH_SAMPLES_S / 1e6,
            baseline=ph_rate / 1e6,
            ratio=ours_rate / ph_rate,
            note=(
                f"ours {ours_s * 1e3:.0f} ms for {n:,} samples ({len(result.events)} events: "
                f"{events}); Page-Hinkley timed on the first {prefix:,} samples "
                f"({ph_s * 1e3:.0f} ms) and extrapolated: {n / ph_rate:.1f} s for {n:,}; "
                f"it flagged {len(ph_detections)} drifts, "
                f"{_first_after(ph_detections, shift_at)}"
            ),
        )
    )

    # -- live, one sample per call
    m = prefix // 10
    lo = shift_at - m // 2
    live_t = t[lo : lo + m].tolist()
    live_real = real[lo : lo + m].tolist()
    live_twin = twin[lo : lo + m].tolist()

    def feed_live() -> LiveComparator:
        live = LiveComparator([spec])
        for ti, ri, wi in zip(live_t, live_real, live_twin, strict=True):
            live.update("mass_g", ti, ri, wi)
        return live

    live_s = best_time_s(feed_live, repeat=2)
    live_rate = m / live_s
    live_events = [e.detected_t_s for e in feed_live().events]
    results.append(
        value_goal(
            "comparator live, 1 sample per update",
            live_rate / 1e3,
            "k samples/s",
            at_least=GOAL_LIVE_SAMPLES_S / 1e3,
            baseline=ph_rate / 1e3,
            ratio=live_rate / ph_rate,
            note=(
                f"{live_s / m * 1e6:.1f} µs per sample over {m:,} samples around the shift "
                f"({len(live_events)} events, {_first_after(live_events, float(shift_at))}); "
                f"Page-Hinkley {1e6 / ph_rate:.2f} µs per sample"
            ),
        )
    )
    return results


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(row)
