"""Run every same-run ratio benchmark and print a table (or JSON with ``--json``).

    python benchmarks/run_all.py [--json] [--quick] [--only SUBSTRING]

Each ``bench_*.py`` module beside this file measures ours against the baseline its issue
names, in this one process. ``--quick`` shrinks the workloads (for a smoke run; the
figures are then not the ones the goals are written for).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from _common import BenchResult  # noqa: E402


def discover() -> list[str]:
    return sorted(path.stem for path in HERE.glob("bench_*.py"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON list")
    parser.add_argument("--quick", action="store_true", help="small workloads (smoke run)")
    parser.add_argument("--only", default="", help="run modules whose name contains this")
    args = parser.parse_args(argv)

    results: list[BenchResult] = []
    for name in discover():
        if args.only and args.only not in name:
            continue
        module = importlib.import_module(name)
        if not args.json:
            print(f"running {name} ...", file=sys.stderr, flush=True)
        results.extend(module.run(quick=args.quick))

    if args.json:
        print(json.dumps([r.as_json() for r in results], indent=2))
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title="medtwin benchmarks (same-run ratios)")
        for column in ("benchmark", "ours", "baseline", "ratio", "goal", "pass"):
            table.add_column(column)
        for r in results:
            table.add_row(
                r.name,
                f"{r.value:.4g} {r.unit}",
                "-" if r.baseline is None else f"{r.baseline:.4g} {r.unit}",
                "-" if r.ratio is None else f"{r.ratio:.3g}×",
                r.goal,
                "yes" if r.passed else "NO",
            )
        Console().print(table)
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
