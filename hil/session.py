"""Running a scenario from the command line: clock choice, signals, progress, output.

Shared by ``medtwin run`` and ``medtwin demo`` (and usable from Python): pick the clock,
check the plan, open the ports, and only then open (or create) the run store, so a bench
that cannot stand up leaves no empty store behind; install SIGINT/SIGTERM handlers that stop
the run cleanly (pumps first, run closed as ``aborted``); show progress (a rich bar naming
the run on a terminal, a plain line every :data:`PROGRESS_INTERVAL_S` of wall time in a CI
log); print either the human summary, which says how far an interrupted run got and which
calibration the twin used, or one JSON document; and give the exit status a CI pipeline
gates on (:func:`outcome_exit_code`, :class:`medtwin.hil.cli.ExitCode`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shlex
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, TextIO

import click
from medtwin.drivers.clock import Clock, VirtualClock, WallClock
from medtwin.drivers.errors import ConfigurationError, StorageError
from medtwin.drivers.units import format_duration
from medtwin.hil.analysis.gravimetry import GravimetricPolicy
from medtwin.hil.config import BenchConfig, ScenarioConfig
from medtwin.hil.outcomes import Outcome, format_limits
from medtwin.hil.rig import BenchRig
from medtwin.hil.runner import ProgressHook, Runner, RunPlan, RunResult
from medtwin.hil.store import DEFAULT_URL, RunStore

__all__ = [
    "FAIL_ON",
    "PROGRESS_INTERVAL_S",
    "choose_clock",
    "failed_verdicts",
    "outcome_exit_code",
    "print_result",
    "run_scenario",
]

#: Wall-clock seconds between two plain progress lines when no terminal shows a bar (a CI
#: log): often enough that a job watchdog sees the run alive, rare enough to stay readable.
PROGRESS_INTERVAL_S = 10.0

#: ``--fail-on`` choices of ``medtwin run``: what makes it exit with status 1.
FAIL_ON = ("verdict", "drift", "never")

#: Outcomes of the real device that fail a run: a limit broken, or a claim nothing measured.
#: MARGINAL and INFO (a value disclosed without limits) do not.
_FAILING = frozenset({Outcome.FAIL.value, Outcome.UNSET.value})


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


class _RunName:
    """The run id for the progress display: known once the runner recorded the run."""

    def __init__(self) -> None:
        self.runner: Runner | None = None

    def __str__(self) -> str:
        writer = None if self.runner is None else self.runner.writer
        return "run" if writer is None else f"run {writer.run_id}"


def _plain_lines(run: _RunName, total_s: float, stream: TextIO, interval_s: float) -> ProgressHook:
    """A progress hook printing one plain line every ``interval_s`` of wall time."""
    start = time.monotonic()
    last = start

    def update(t: float, samples: dict[str, int], drift_events: int) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last < interval_s:
            return
        last = now
        speed = t / (now - start) if now > start else 0.0
        drift = f"{drift_events} drift event(s)" if drift_events else "no drift"
        print(
            f"medtwin: {run}: {format_duration(round(t))} / {format_duration(total_s)} "
            f"of scenario time, {speed:,.0f}× real time, {sum(samples.values())} samples, "
            f"{drift}",
            file=stream,
            flush=True,
        )

    return update


@contextlib.contextmanager
def _progress(
    mode: Literal["bar", "lines"] | None, total_s: float, run: _RunName
) -> Iterator[ProgressHook | None]:
    if mode is None:
        yield None
        return
    if mode == "lines":
        yield _plain_lines(run, total_s, sys.stderr, PROGRESS_INTERVAL_S)
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
            "starting", total=total_s, scenario_time="0s", samples=0, drift="no drift"
        )

        def update(t: float, samples: dict[str, int], drift_events: int) -> None:
            progress.update(
                task,
                description=str(run),
                completed=t,
                scenario_time=f"{format_duration(round(t))} / {format_duration(total_s)}",
                samples=sum(samples.values()),
                drift=f"[red]{drift_events} drift event(s)" if drift_events else "no drift",
            )

        yield update


def _open_store(db_url: str) -> RunStore:
    """The run store named by ``--db``; one that cannot be opened or created is a bad
    ``--db`` (status 2), as in every command that reads a store."""
    try:
        return RunStore(db_url)
    except StorageError as error:
        raise ConfigurationError(str(error), source="--db") from error


async def _run(
    bench: BenchConfig,
    scenario: ScenarioConfig,
    *,
    plan: RunPlan,
    clock: Clock,
    db_url: str,
    hook: ProgressHook | None,
    run: _RunName,
) -> RunResult:
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
    rig = BenchRig(bench, clock=clock)
    try:
        # The ports first: a bench that cannot stand up (a missing port, a device that
        # does not answer) fails here, before a store is created or a run recorded.
        await rig.start()
        if stop.is_set():
            # Ctrl-C while the bench stood up: nothing ran, so nothing is recorded.
            raise KeyboardInterrupt
        with _open_store(db_url) as store:
            runner = Runner(
                bench, scenario, store=store, clock=clock, progress=hook, rig=rig, plan=plan
            )
            run.runner = runner
            return await runner.run(stop)
    finally:
        try:
            await rig.stop()
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
    """Run ``scenario`` on ``bench`` and store it in ``db_url``.

    The plan is checked and the ports opened before the store is opened (or created).
    ``progress``: None shows a bar on a terminal and a plain line every
    :data:`PROGRESS_INTERVAL_S` seconds on stderr otherwise; True always the bar; False
    nothing.
    """
    plan = RunPlan.of(bench, scenario)  # refuse a scenario this bench cannot run before any I/O
    chosen = choose_clock(bench, clock)
    mode: Literal["bar", "lines"] | None
    if progress is None:
        mode = "bar" if sys.stdout.isatty() else "lines"
    else:
        mode = "bar" if progress else None
    run = _RunName()
    with _progress(mode, scenario.duration, run) as hook:
        try:
            return asyncio.run(
                _run(bench, scenario, plan=plan, clock=chosen, db_url=db_url, hook=hook, run=run)
            )
        except asyncio.CancelledError:
            # A second Ctrl-C stopped the wait for the first one's clean stop (the pumps
            # were stopped, the run closed as aborted): an interruption all the same.
            raise KeyboardInterrupt from None


def failed_verdicts(result: RunResult) -> list[Any]:
    """The real device's verdicts that fail the run (FAIL, or UNSET: nothing measured).

    The twin's verdicts say what a nominal device would score; they judge the model, not
    the device under test, so they never fail a run.
    """
    return [v for v in result.verdicts if v.source == "real" and str(v.outcome) in _FAILING]


def outcome_exit_code(result: RunResult, fail_on: str = "verdict") -> int:
    """The exit status of a run (:class:`medtwin.hil.cli.ExitCode`).

    130 for a run stopped by Ctrl-C/SIGTERM, 3 for one that lost a device on the way
    (its verdicts rest on a gap), else 1 when ``fail_on`` is ``"verdict"`` or ``"drift"``
    and a verdict of the real device failed, or ``"drift"`` and drift was flagged, else 0.
    """
    from medtwin.hil.cli import ExitCode

    if fail_on not in FAIL_ON:
        raise ConfigurationError(
            f"{fail_on!r}: expected one of {', '.join(FAIL_ON)}", source="--fail-on"
        )
    if result.status == "aborted":
        return ExitCode.INTERRUPTED
    if result.lost:
        return ExitCode.RUNTIME
    if fail_on == "never":
        return ExitCode.OK
    if failed_verdicts(result) or (fail_on == "drift" and result.drift_events):
        return ExitCode.FAILED
    return ExitCode.OK


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
        # A measurement name is never wrapped or cut (it is what a scenario's tolerances name).
        table.add_column(
            column,
            justify="left" if column == "measurement" else "right",
            no_wrap=column == "measurement",
            overflow="fold",  # a narrow terminal folds a cell, never cuts it with "…"
        )

    def cell(v: Any) -> str:
        if v is None:
            return "-"
        label = v.outcome_label()
        style = outcome_style(label)
        value = "—" if v.value is None else f"{v.value:+.3g} {v.units}".strip()
        return f"{value} [{style}]{label}[/]"

    for name, pair in rows.items():
        any_v = next(iter(pair.values()))
        limits = format_limits(any_v.lower, any_v.upper, any_v.units)
        if getattr(any_v, "limits_source", None) == "default":
            limits += " (default)"  # a default claim by pump kind, not the scenario's
        table.add_row(name, limits, cell(pair.get("real")), cell(pair.get("twin")))
    # The density d the volumes rest on, with its gravimetric policy (stored with the run).
    densities = sorted(
        {
            GravimetricPolicy.from_dict(analysis["gravimetry"]).label()
            for procedure in result.procedures
            for analysis in procedure.analysis.values()
            if isinstance(analysis, dict) and isinstance(analysis.get("gravimetry"), dict)
        }
    )
    if densities:
        table.caption = "mass to volume: " + "; ".join(densities)
    return table


def _calibration_words(used: dict[str, Any] | None) -> str:
    if not used:
        return "nominal parameters of the bench file (no calibration)"
    return f"calibration version {used['version']} of {used['device_key']}"


def see_more_hint(run_id: int, db: str) -> str:
    """The "see more" line after a run: commands to copy, one line.

    The ``--db`` URL is shell-quoted (a path with a space, a PostgreSQL URL with
    ``?options=...``) and left out for the default store in the working directory; the
    caller prints it with ``soft_wrap`` so that rich does not break it at the terminal's
    width.
    """
    default = (DEFAULT_URL, f"sqlite:///{Path(DEFAULT_URL.partition(':///')[2]).resolve()}")
    flag = "" if db in default else f" --db {shlex.quote(db)}"
    return (
        f"see more: medtwin report {run_id}{flag} · "
        f"medtwin export {run_id}{flag} --format csv · medtwin runs{flag}"
    )


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
    reached = result.duration_s if result.status != "aborted" else result.scenario_time_s
    speed = reached / result.wall_s if result.wall_s > 0 else float("inf")
    colour = {"completed": "green", "degraded": "yellow"}.get(result.status, "red")
    if result.status == "aborted":
        console.print(
            f"[bold red]interrupted[/] at {_fmt_t(reached)} of {_fmt_t(result.duration_s)} "
            f"(scenario time): run [bold]{result.run_id}[/] "
            f"is stored as aborted in {result.db}; no report was written.",
            highlight=False,
        )
    console.print(
        f"run [bold]{result.run_id}[/] [{colour}]{result.status}[/]: scenario "
        f"[bold]{result.scenario}[/] on bench [bold]{result.bench}[/], "
        f"{format_duration(round(reached))} of scenario time in {result.wall_s:.1f} s "
        f"({speed:,.0f}× real time, {result.clock} clock)"
    )
    devices = ", ".join(
        f"{name}: {i['model']}" + (f" #{i['serial']}" if i["serial"] else "")
        for name, i in result.identities.items()
    )
    console.print(f"devices: {devices}")
    console.print(f"twin: {_calibration_words(result.calibration)}", highlight=False)
    if result.lost:
        console.print(f"[yellow]lost during the run: {', '.join(result.lost)}[/]")

    table = Table(title="real − twin residuals")
    for column in ("channel", "unit", "samples", "mean", "sd", "max |r|", "σ used"):
        table.add_column(
            column,
            justify="right" if column not in ("channel", "unit") else "left",
            no_wrap=column == "channel",  # a channel name is never cut
            overflow="fold",
        )
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
            events.add_column(column, no_wrap=column == "channel", overflow="fold")
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
    failed = failed_verdicts(result)
    if failed:
        names = ", ".join(sorted({v.name for v in failed}))
        console.print(f"[bold red]FAIL[/]: the device failed {names}.", highlight=False)
    if report_path:
        console.print(f"report: {report_path}")
    console.print(
        see_more_hint(result.run_id, result.db), markup=False, highlight=False, soft_wrap=True
    )
