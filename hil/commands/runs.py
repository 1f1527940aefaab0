"""``medtwin runs``: list the runs of a run store.

    medtwin runs [--db URL] [--json]

One line per run: id, status, UTC start, scenario time reached of the scenario's duration,
wall time, bench, scenario, the real device's and the twin's outcome (the most severe of
their verdicts, :func:`medtwin.hil.outcomes.overall_outcome`), the number of drift events,
channel and sample counts. Opening the store marks runs whose writer died ``interrupted``
first (see :class:`medtwin.hil.store.RunStore`), so the list shows what really happened.
``--json`` prints one JSON list of :meth:`medtwin.hil.store.RunInfo.as_json` objects
(``duration_s`` is wall time), each with ``scenario_time_s``, ``scenario_duration_s``,
``real_outcome``, ``twin_outcome`` and ``drift_events`` added (None where the run recorded
none: a run whose process died has no summary, its scenario time is that of its last
sample).

A ``--db`` that cannot be opened (invalid URL, missing file, not a medtwin database,
unreachable server) is bad input: exit status 2, and nothing is created or changed.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click
from medtwin.drivers.errors import ConfigurationError, RunNotFound, StorageError
from medtwin.hil.cli import handle_errors
from medtwin.hil.commands._render import Column, fitted_table
from medtwin.hil.outcomes import overall_outcome
from medtwin.hil.store import DEFAULT_URL, RunInfo, RunStore
from rich.markup import escape

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["db_option", "format_duration", "open_store", "run_not_found", "runs"]

db_option = click.option(
    "--db",
    "db_url",
    default=DEFAULT_URL,
    show_default=True,
    metavar="URL",
    help="run store: sqlite:///FILE or postgresql+psycopg://USER@HOST/DB",
)


def open_store(db_url: str, *, write: bool = False) -> RunStore:
    """Open an existing store for a command; any failure is a bad ``--db`` (status 2).

    For a command that only reads it (``runs``, ``report``, ``export``), a store that
    cannot be written (a read-only directory or file, or a URL with ``?mode=ro``) is opened
    read-only, so that an archived store can still be listed, reported and exported. A
    command that stores something in it (``calibrate``) passes ``write=True``: a store it
    cannot write is then refused at once, naming the file, before any work is done.
    """
    try:
        store = RunStore(db_url, create=False, read_only=False if write else None)
    except StorageError as error:
        raise ConfigurationError(str(error), source="--db") from error
    if write and store.read_only:
        # The URL itself asked for read-only (``?mode=ro``): refuse before any work.
        store.close()
        raise ConfigurationError(
            f"the run store {db_url} is opened read-only (the URL asks for mode=ro): it can "
            "be listed, reported and exported, but nothing can be stored in it; use a --db "
            "you can write",
            source="--db",
        )
    return store


def run_not_found(error: RunNotFound) -> ConfigurationError:
    """An unknown RUN argument is bad input (status 2)."""
    return ConfigurationError(str(error), source="RUN")


def format_duration(duration_s: float) -> str:
    """``h:mm:ss`` (``s.s s`` under a minute)."""
    if duration_s < 60:
        return f"{duration_s:.1f} s"
    whole = round(duration_s)
    hours, rest = divmod(whole, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}"


#: Columns of the run list. At a narrow width the counts go first, then the start time,
#: the wall time and the bench; the id (what ``medtwin report RUN`` takes), the status, the
#: scenario reached, the scenario's name, the outcomes and the drift count stay, and names
#: are never cut (:func:`medtwin.hil.commands._render.fitted_table`).
RUN_COLUMNS: tuple[Column, ...] = (
    Column("id", justify="right", name=True),
    Column("status", name=True),
    Column("start (UTC)", drop=3),
    Column("scenario time", justify="right"),
    Column("wall time", justify="right", drop=4),
    Column("bench", name=True, drop=5),
    Column("scenario", name=True),
    Column("real"),
    Column("twin"),
    Column("drift", justify="right"),
    Column("channels", justify="right", drop=1),
    Column("samples", justify="right", drop=2),
)


def run_digest(summary: Any, last_t_s: float | None) -> dict[str, Any]:
    """What a run's stored summary says happened: scenario time reached (of the scenario's
    duration), the real device's and the twin's outcome, the number of drift events."""
    summary = summary if isinstance(summary, dict) else {}
    verdicts = [v for p in summary.get("procedures") or () for v in p.get("verdicts") or ()]

    def outcome(source: str) -> str | None:
        found = overall_outcome(v.get("outcome", "") for v in verdicts if v.get("source") == source)
        return None if found is None else found.value

    drift = summary.get("drift_events")
    reached = summary.get("scenario_time_s", last_t_s)
    return {
        "scenario_time_s": reached,
        "scenario_duration_s": summary.get("duration_s"),
        "real_outcome": outcome("real"),
        "twin_outcome": outcome("twin"),
        "drift_events": None if drift is None else len(drift),
    }


def _hms(t_s: float | None) -> str:
    if t_s is None:
        return "-"
    hours, rest = divmod(round(t_s), 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}"


def _run_row(info: RunInfo, digest: dict[str, Any]) -> tuple[str, ...]:
    reached = _hms(digest["scenario_time_s"])
    if digest["scenario_duration_s"] is not None:
        reached += f" / {_hms(digest['scenario_duration_s'])}"
    return (
        str(info.id),
        str(info.status),
        info.started_utc.strftime("%Y-%m-%d %H:%M:%S"),
        reached,
        format_duration(info.duration_s),
        info.bench_name,
        info.scenario_name,
        digest["real_outcome"] or "-",
        digest["twin_outcome"] or "-",
        "-" if digest["drift_events"] is None else str(digest["drift_events"]),
        str(info.channel_count),
        f"{info.sample_count:,}",
    )


def _print_table(
    infos: list[RunInfo],
    url: str,
    console: Console | None = None,
    digests: dict[int, dict[str, Any]] | None = None,
) -> None:
    from rich import box
    from rich.console import Console

    if console is None:
        console = Console()
        if not console.is_terminal:
            # Piped or captured: rich would assume 80 columns and fold the timestamps.
            console = Console(width=160)
    if not infos:
        console.print(f"no runs in {url}", markup=False, highlight=False)
        return
    table = fitted_table(
        RUN_COLUMNS,
        (_run_row(info, (digests or {}).get(info.id) or run_digest(None, None)) for info in infos),
        width=console.width,
        title=f"runs in {escape(url)}",
        title_justify="left",
        box=box.SIMPLE_HEAD,
    )
    console.print(table)


@click.command()
@db_option
@click.option("--json", "as_json", is_flag=True, help="print one JSON document")
@handle_errors
def runs(db_url: str, as_json: bool) -> None:
    """List the runs in the store (id, status, scenario time, outcomes, drift, samples)."""
    with open_store(db_url) as store:
        infos = store.list_runs()
        summaries = store.run_summaries()
        url = store.url
    digests = {run_id: run_digest(*pair) for run_id, pair in summaries.items()}
    if as_json:
        documents = [info.as_json() | digests.get(info.id, {}) for info in infos]
        click.echo(json.dumps(documents, indent=2))
    else:
        _print_table(infos, url, digests=digests)
