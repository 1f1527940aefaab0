"""``medtwin runs``: list the runs of a run store.

    medtwin runs [--db URL] [--json]

One line per run: id, status, UTC start, duration, bench, scenario, channel and sample
counts. Opening the store marks runs whose writer died ``interrupted`` first (see
:class:`medtwin.hil.store.RunStore`), so the list shows what really happened. ``--json`` prints one
JSON list of :meth:`medtwin.hil.store.RunInfo.as_json` objects.

A ``--db`` that cannot be opened (invalid URL, missing file, not a medtwin database,
unreachable server) is bad input: exit status 2, and nothing is created or changed.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click
from medtwin.drivers.errors import ConfigurationError, RunNotFound, StorageError
from medtwin.hil.cli import handle_errors
from medtwin.hil.commands._render import Column, fitted_table
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


def open_store(db_url: str) -> RunStore:
    """Open an existing store for a command; any failure is a bad ``--db`` (status 2)."""
    try:
        return RunStore(db_url, create=False)
    except StorageError as error:
        raise ConfigurationError(str(error), source="--db") from error


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


#: Columns of the run list. At a narrow width the counts go first, then the start time and
#: the bench; the id (what ``medtwin report RUN`` takes), the status and the scenario's name
#: stay, and names are never cut (:func:`medtwin.hil.commands._render.fitted_table`).
RUN_COLUMNS: tuple[Column, ...] = (
    Column("id", justify="right", name=True),
    Column("status", name=True),
    Column("start (UTC)", drop=3),
    Column("duration", justify="right"),
    Column("bench", name=True, drop=5),
    Column("scenario", name=True),
    Column("channels", justify="right", drop=1),
    Column("samples", justify="right", drop=2),
)


def _run_row(info: RunInfo) -> tuple[str, ...]:
    return (
        str(info.id),
        str(info.status),
        info.started_utc.strftime("%Y-%m-%d %H:%M:%S"),
        format_duration(info.duration_s),
        info.bench_name,
        info.scenario_name,
        str(info.channel_count),
        f"{info.sample_count:,}",
    )


def _print_table(infos: list[RunInfo], url: str, console: Console | None = None) -> None:
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
        (_run_row(info) for info in infos),
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
    """List the runs in the store (id, status, start, duration, bench, scenario, samples)."""
    with open_store(db_url) as store:
        infos = store.list_runs()
        url = store.url
    if as_json:
        click.echo(json.dumps([info.as_json() for info in infos], indent=2))
    else:
        _print_table(infos, url)
