"""Running a scenario from the command line: clock choice, signals, progress, output.

Shared by ``medtwin run`` and ``medtwin demo`` (and usable from Python): pick the clock,
install SIGINT/SIGTERM handlers that stop the run cleanly (pumps first, run closed as
``aborted``), show a rich progress bar on a terminal, and print either the human summary
or one JSON document.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import Iterator
from typing import Any

import click
from medtwin.drivers.clock import Clock, VirtualClock, WallClock
from medtwin.drivers.errors import ConfigurationError
from medtwin.drivers.units import format_duration
from medtwin.hil.config import BenchConfig, ScenarioConfig
from medtwin.hil.runner import Runner, RunPlan, RunResult
from medtwin.hil.store import RunStore

__all__ = ["choose_clock", "print_result", "run_scenario"]


def choose_clock(bench: BenchConfig, requested: str | None) -> Clock:
    """``virtual`` by default when every device is emulated, ``wall`` otherwise."""
    if requested is None:
        requested = "virtual" if bench.all_emulated else "wall"
    if requested == "virtual" and not bench.all_emulated:
        real = [d.name for d in bench.devices if not d.emulated]
        raise ConfigurationError(
            f"a virtual clock needs every device emulated, but {', '.join(real)} is real; "
            "use --clock wall",
            source="--clock",
        )
    return VirtualClock() if requested == "virtual" else WallClock()


@contextlib.contextmanager
def _progress(enabled: bool, total_s: float) -> Iterator[Any]:
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[scenario_time]}"),
        TextColumn("{task.fields[samples]} samples"),
        TextColumn("{task.fields[drift]}"),
        TimeElapsedColumn(),
        transient=True,
    )
    with progress:
        task = progress.add_task(
            "running", total=total_s, scenario_time="0s", samples=0, drift="no drift"
        )

        def update(t: float, samples: dict[str, int], drift_events: int) -> None:
            progress.update(
                task,
                completed=t,
                scenario_time=f"{format_duration(round(t))} / {format_duration(total_s)}",
                samples=sum(samples.values()),
                drift=f"[red]{drift_events} drift event(s)" if drift_events else "no drift",
            )

        yield update


async def _run(runner: Runner) -> RunResult:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    hits = 0

    def on_signal() -> None:
        nonlocal hits
        hits += 1
        if hits == 1:
            stop.set()  # finish the tick, stop the pumps, close the run as aborted
        elif main is not None:
            main.cancel()  # a second Ctrl-C: stop waiting (pumps are still stopped)

    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, on_signal)
            installed.append(sig)
    try:
        return await runner.run(stop)
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def run_scenario(
    bench: BenchConfig,
    scenario: ScenarioConfig,
    *,
    db_url: str,
    clock: str | None,
    progress: bool | None = None,
) -> RunResult:
    """Run ``scenario`` on ``bench`` and store it in ``db_url``."""
    plan = RunPlan.of(bench, scenario)  # refuse a scenario this bench cannot run before any I/O
    chosen = choose_clock(bench, clock)
    show = sys.stdout.isatty() if progress is None else progress
    with RunStore(db_url) as store, _progress(show, scenario.duration) as hook:
        runner = Runner(bench, scenario, store=store, clock=chosen, progress=hook, plan=plan)
        return asyncio.run(_run(runner))


def _fmt_t(t: float) -> str:
    h, rest = divmod(round(t), 3600)
    m, s = divmod(rest, 60)
    return f"{h:d}:{m:02d}:{s:02d}"


def _verdict_pairs(result: RunResult) -> Any:
    """Verdicts of the real device and the twin side by side, one row per measurement."""
    from medtwin.hil.commands._render import outcome_style
    from rich.table import Table

    rows: dict[str, dict[str, Any]] = {}
    for v in result.verdicts:
        rows.setdefault(v.name, {})[v.source] = v
    table = Table(title="verdicts: real device vs twin")
    for column in ("measurement", "limits", "real", "twin"):
        table.add_column(column, justify="left" if column == "measurement" else "right")

    def cell(v: Any) -> str:
        if v is None:
            return "-"
        label = v.outcome_label()
        style = outcome_style(label)
        value = "—" if v.value is None else f"{v.value:+.3g} {v.units}".strip()
        return f"{value} [{style}]{label}[/]"

    for name, pair in rows.items():
        any_v = next(iter(pair.values()))
        if any_v.informational:
            limits = "none declared"
        else:
            lo = "" if any_v.lower is None else f"{any_v.lower:g}"
            hi = "" if any_v.upper is None else f"{any_v.upper:g}"
            limits = f"[{lo}, {hi}] {any_v.units}"
        table.add_row(name, limits, cell(pair.get("real")), cell(pair.get("twin")))
    return table


def print_result(result: RunResult, *, as_json: bool, report_path: str | None = None) -> None:
    """The human summary (tables) or one JSON document."""
    if as_json:
        doc = result.as_json()
        if report_path:
            doc["report"] = report_path
        click.echo(json.dumps(doc))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    speed = result.duration_s / result.wall_s if result.wall_s > 0 else float("inf")
    colour = {"completed": "green", "degraded": "yellow"}.get(result.status, "red")
    console.print(
        f"run [bold]{result.run_id}[/] [{colour}]{result.status}[/]: scenario "
        f"[bold]{result.scenario}[/] on bench [bold]{result.bench}[/], "
        f"{format_duration(result.duration_s)} of scenario time in {result.wall_s:.1f} s "
        f"({speed:,.0f}× real time, {result.clock} clock)"
    )
    devices = ", ".join(
        f"{name}: {i['model']}" + (f" #{i['serial']}" if i["serial"] else "")
        for name, i in result.identities.items()
    )
    console.print(f"devices: {devices}")
    if result.lost:
        console.print(f"[yellow]lost during the run: {', '.join(result.lost)}[/]")

    table = Table(title="real − twin residuals")
    for column in ("channel", "unit", "samples", "mean", "sd", "max |r|", "σ used"):
        table.add_column(column, justify="right" if column not in ("channel", "unit") else "left")
    for name, stats in result.channels.items():
        cells = [
            "-" if stats.get(key) is None else f"{stats[key]:.4g}"
            for key in ("mean", "sd", "max_abs", "sigma")
        ]
        table.add_row(
            name,
            stats.get("unit", ""),
            str(stats.get("n", 0)),
            *cells,
        )
    console.print(table)

    if result.verdicts:
        console.print(_verdict_pairs(result))

    if result.drift_events:
        events = Table(title=f"drift events ({len(result.drift_events)})")
        for column in ("channel", "real vs twin", "detector", "onset", "detected", "magnitude"):
            events.add_column(column)
        for e in result.drift_events:
            rel = f" ({100 * e.magnitude_rel:+.2f} %)" if e.magnitude_rel is not None else ""
            events.add_row(
                e.channel,
                "above" if e.direction == "high" else "below",
                e.statistic,
                _fmt_t(e.onset_t_s),
                _fmt_t(e.detected_t_s),
                f"{e.magnitude:+.4g} {e.unit}{rel}",
            )
        console.print(events)
        console.print("[bold red]DRIFT[/]: the device does not behave like its twin.")
    else:
        console.print("[bold green]no drift[/]: the device behaved like its twin.")
    if report_path:
        console.print(f"report: {report_path}")
    console.print(
        f"see more: medtwin report {result.run_id} · medtwin export {result.run_id} --format csv · "
        "medtwin runs"
        + ("" if result.db.startswith("sqlite:///medtwin.db") else f"   (add --db {result.db})")
    )
