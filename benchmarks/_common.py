"""Shared pieces of the same-run ratio benchmarks.

Every ``benchmarks/bench_*.py`` module exposes ``run(quick: bool = False) ->
list[BenchResult]``. A result compares *ours* with the baseline the issue names, both
measured in the same process run, and states the goal it is judged against.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

__all__ = [
    "BenchResult",
    "alternating_rounds",
    "best_time_s",
    "paired_rates",
    "ratio_goal",
    "value_goal",
]


@dataclass(frozen=True)
class BenchResult:
    """One row of the benchmark table.

    ``value`` is ours in ``unit``; ``baseline`` is the baseline in the same unit (or None
    when the goal is absolute); ``ratio`` is ours relative to the baseline, oriented so that
    bigger is better; ``goal`` says what passes, e.g. ``"ratio >= 20"`` or ``"value <= 2 s"``;
    ``passed`` is whether it did.
    """

    name: str
    value: float
    unit: str
    baseline: float | None
    ratio: float | None
    goal: str
    passed: bool
    note: str = ""

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def best_time_s(fn: Callable[[], object], *, repeat: int = 5, min_time_s: float = 0.0) -> float:
    """Best wall time of ``repeat`` calls (after one warm-up call), with GC paused.

    The best of several runs is the least noisy estimate of the cost on a shared
    2-core machine; a ratio of two best times is what the goals are written against.
    """
    fn()
    best = float("inf")
    spent = 0.0
    runs = 0
    while runs < repeat or spent < min_time_s:
        gc.collect()
        gc.disable()
        try:
            start = time.perf_counter()
            fn()
            elapsed = time.perf_counter() - start
        finally:
            gc.enable()
        best = min(best, elapsed)
        spent += elapsed
        runs += 1
    return best


def alternating_rounds(
    runs: dict[str, Callable[[], object]], *, repeat: int
) -> dict[str, list[float]]:
    """Wall time (s) of each runner in each of ``repeat`` rounds, the runners taking turns
    within a round so that load from other processes on a shared machine falls on all of
    them alike (one warm-up call each first; GC paused while timing)."""
    for run_once in runs.values():
        run_once()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeat):
        for name, run_once in runs.items():
            gc.collect()
            gc.disable()
            try:
                start = time.perf_counter()
                run_once()
                times[name].append(time.perf_counter() - start)
            finally:
                gc.enable()
    return times


def paired_rates(
    n: int, times: dict[str, list[float]], ours: str, baseline: str
) -> tuple[float, float, float]:
    """(ours per s, baseline per s, ratio) from :func:`alternating_rounds` of batches of
    ``n``: the rates are medians over rounds; the ratio is the median of the per-round
    ratios, each comparing two batches run back to back."""
    ratios = [b / o for o, b in zip(times[ours], times[baseline], strict=True)]
    return (
        n / statistics.median(times[ours]),
        n / statistics.median(times[baseline]),
        statistics.median(ratios),
    )


def ratio_goal(
    name: str,
    value: float,
    unit: str,
    *,
    baseline: float,
    ratio: float,
    minimum: float,
    note: str = "",
) -> BenchResult:
    """A result that passes when ``ratio >= minimum``: goal text and test from one number."""
    goal = f"ratio >= {minimum:g}"
    return BenchResult(name, value, unit, baseline, ratio, goal, ratio >= minimum, note)


def value_goal(
    name: str,
    value: float,
    unit: str,
    *,
    at_most: float | None = None,
    at_least: float | None = None,
    baseline: float | None = None,
    ratio: float | None = None,
    note: str = "",
) -> BenchResult:
    """A result judged on its value against an absolute goal in ``unit``: ``value <=
    at_most`` or ``value >= at_least`` (exactly one of them)."""
    if at_most is not None and at_least is None:
        goal, passed = f"value <= {at_most:g} {unit}", value <= at_most
    elif at_least is not None and at_most is None:
        goal, passed = f"value >= {at_least:g} {unit}", value >= at_least
    else:
        raise ValueError("value_goal() takes exactly one of at_most and at_least")
    return BenchResult(name, value, unit, baseline, ratio, goal, passed, note)
