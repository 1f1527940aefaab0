"""Trumpet-curve analysis of a 96-hour balance log sampled every 0.5 s (goal < 1 s).

The issue names no baseline, so two are measured in the same run on the same data:

* ``np.convolve`` per window: the obvious numpy way to get every window sum, O(n·p);
* the IEC 60601-2-24 formula written out in pure Python (a loop over j and a ``sum`` over
  the window), run on a shorter log and extrapolated linearly in the number of samples
  by the number of terms it adds (Σ_P m·p).

Ours is :func:`medtwin.hil.analysis.iec60601_2_24.trumpet_curve` end to end (validation, grid
check, flow, A, six windows), once with the log's own 0.5-s interval as S over the whole
96 h (the heavy case: 691,200 flows, windows of up to 3,720 samples) and once the standard
way (S = 0.5 min, resampled from the 0.5-s log, A and the trumpet over the second hour
and B over the last hour).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from _common import BenchResult, best_time_s, value_goal  # noqa: E402
from medtwin.hil.analysis.iec60601_2_24 import (  # noqa: E402
    DEFAULT_WINDOWS_MIN,
    flow_from_mass,
    last_hour_period_min,
    trumpet_curve,
)

RATE_ML_H = 5.0
LOG_INTERVAL_S = 0.5
GOAL_S = 1.0


def balance_log(hours: float) -> tuple[np.ndarray, np.ndarray]:
    """A syringe pump at 5 mL/h with a 1-min drive ripple, read every 0.5 s with noise.

    Seeded so every run benchmarks the same bytes; the values only need to be realistic.
    """
    rng = np.random.default_rng(9624)
    t_s = np.arange(round(hours * 3600 / LOG_INTERVAL_S) + 1) * LOG_INTERVAL_S
    flow_ml_h = RATE_ML_H * (1 + 0.03 * np.sin(2 * np.pi * t_s / 60.0))
    delivered_g = np.cumsum(flow_ml_h * 0.998 * LOG_INTERVAL_S / 3600.0)
    return t_s, delivered_g + rng.normal(0.0, 1e-4, t_s.size)


def _errors_percent(mass_g: np.ndarray, interval_min: float) -> np.ndarray:
    flow = flow_from_mass(mass_g, sample_interval_min=interval_min)
    return (flow - RATE_ML_H) * (100.0 / RATE_ML_H)


def _convolve_extremes(errors: np.ndarray, interval_min: float) -> list[tuple[float, float]]:
    out = []
    for window_min in DEFAULT_WINDOWS_MIN:
        p = round(window_min / interval_min)
        means = np.convolve(errors, np.full(p, 1.0 / p), mode="valid")
        out.append((float(means.max()), float(means.min())))
    return out


def _python_extremes(errors: list[float], interval_min: float) -> list[tuple[float, float]]:
    out = []
    for window_min in DEFAULT_WINDOWS_MIN:
        p = round(window_min / interval_min)
        scale = interval_min / window_min
        values = [scale * sum(errors[j : j + p]) for j in range(len(errors) - p + 1)]
        out.append((max(values), min(values)))
    return out


def _window_terms(n: int, interval_min: float) -> int:
    """Σ_P m·p: how many terms the written-out formula adds for n flows."""
    total = 0
    for window_min in DEFAULT_WINDOWS_MIN:
        p = round(window_min / interval_min)
        total += (n - p + 1) * p
    return total


def run(quick: bool = False) -> list[BenchResult]:
    hours = 12.0 if quick else 96.0
    python_hours = 1.0 if quick else 2.0
    interval_min = LOG_INTERVAL_S / 60.0
    t_s, mass = balance_log(hours)
    period = (0.0, hours * 60.0)

    def ours_full() -> object:
        return trumpet_curve(
            t_s,
            mass,
            rate_ml_h=RATE_ML_H,
            sample_interval_min=interval_min,
            analysis_period_min=period,
        )

    def ours_iec() -> object:
        second_hour = trumpet_curve(t_s, mass, rate_ml_h=RATE_ML_H)
        last_hour = trumpet_curve(
            t_s, mass, rate_ml_h=RATE_ML_H, analysis_period_min=last_hour_period_min(t_s)
        )
        return second_hour, last_hour

    errors = _errors_percent(mass, interval_min)
    ours_s = best_time_s(ours_full, repeat=5)
    convolve_s = best_time_s(lambda: _convolve_extremes(errors, interval_min), repeat=1)
    iec_s = best_time_s(ours_iec, repeat=5)

    # The same answer, or the comparison means nothing.
    curve = trumpet_curve(
        t_s,
        mass,
        rate_ml_h=RATE_ML_H,
        sample_interval_min=interval_min,
        analysis_period_min=period,
    )
    for window, (ep_max, ep_min) in zip(
        curve.windows, _convolve_extremes(errors, interval_min), strict=True
    ):
        if not (
            math.isclose(window.ep_max_percent, ep_max, abs_tol=1e-8)
            and math.isclose(window.ep_min_percent, ep_min, abs_tol=1e-8)
        ):
            raise AssertionError(
                f"trumpet_curve and np.convolve disagree for P={window.window_min:g}"
            )

    short_samples = round(python_hours * 3600 / LOG_INTERVAL_S)
    short_errors = errors[:short_samples].tolist()
    python_short_s = best_time_s(lambda: _python_extremes(short_errors, interval_min), repeat=1)
    python_s = (
        python_short_s
        * _window_terms(errors.size, interval_min)
        / _window_terms(short_samples, interval_min)
    )
    label = f"{hours:g} h @ {LOG_INTERVAL_S:g} s"
    return [
        value_goal(
            f"trumpet {label}, S = 0.5 s over the whole log vs np.convolve per window",
            ours_s,
            "s",
            at_most=GOAL_S,
            baseline=convolve_s,
            ratio=convolve_s / ours_s,
            note=f"{errors.size} flows, windows up to {round(31 / interval_min)} samples",
        ),
        value_goal(
            f"trumpet {label}, S = 0.5 s vs pure-Python formula (extrapolated)",
            ours_s,
            "s",
            at_most=GOAL_S,
            baseline=python_s,
            ratio=python_s / ours_s,
            note=f"Python measured on {python_hours:g} h ({python_short_s:.3g} s), scaled by Σ m·p",
        ),
        value_goal(
            f"IEC pipeline on {label}: resample to S = 0.5 min, A + trumpet, B + trumpet",
            iec_s,
            "s",
            at_most=GOAL_S,
            note="two trumpet_curve calls, each resampling the full 0.5-s log",
        ),
    ]


if __name__ == "__main__":
    for result in run(quick="--quick" in sys.argv):
        print(result)
