"""Shared pieces of the same-run ratio benchmarks.

Every ``benchmarks/bench_*.py`` module exposes ``run(quick: bool = False) ->
list[BenchResult]``. A result compares *ours* with the baseline the issue names, both
measured in the same process run, and states the goal it is judged against.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["BenchResult", "best_time_s"]


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
