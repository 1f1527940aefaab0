"""HIL loop benchmark (issue: the HIL loop).

The 2-hour IEC 60601-2-24 flow scenario on the emulated nominal bench (NE-1000 pump,
MT-SICS balance and Modbus bench I/O on real ptys, the twin, the live comparator and the
SQLite store), on the virtual clock: scenario seconds per wall second. Goal: ≥ 1,000× real
time. The baseline is real time itself (1 scenario second per wall second), so the ratio is
the speed-up. Best of three runs, each into a fresh database.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from _common import BenchResult
from medtwin.hil.config import load_bench, load_scenario
from medtwin.hil.packaged import bench_path, scenario_path
from medtwin.hil.session import run_scenario


def run(quick: bool = False) -> list[BenchResult]:
    bench = load_bench(bench_path("emulated-nominal"))
    scenario = load_scenario(scenario_path("iec-flow-5mlh"))
    best = float("inf")
    exchanges = 0
    for attempt in range(1 if quick else 3):
        with tempfile.TemporaryDirectory() as tmp:
            db = f"sqlite:///{Path(tmp) / 'bench.db'}"
            start = time.perf_counter()
            result = run_scenario(bench, scenario, db_url=db, clock="virtual", progress=False)
            wall = time.perf_counter() - start
        if result.status != "completed":  # pragma: no cover - would be a bug
            raise RuntimeError(f"benchmark run ended {result.status}")
        exchanges = sum(result.samples.values())
        best = min(best, wall)
        del attempt
    speedup = scenario.duration / best
    return [
        BenchResult(
            name="2 h IEC flow scenario, emulated bench, virtual clock",
            value=speedup,
            unit="× real time",
            baseline=1.0,
            ratio=speedup,
            goal="value >= 1000",
            passed=speedup >= 1000.0,
            note=f"{best:.2f} s wall incl. bench start-up, store and analysis; "
            f"{exchanges} device readings ({exchanges / best:,.0f}/s)",
        )
    ]
