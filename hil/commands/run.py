"""``medtwin run BENCH SCENARIO``: a scenario on a bench, beside the twin, into the store."""

from __future__ import annotations

import sys

import click
from medtwin.hil.cli import handle_errors
from medtwin.hil.config import load_bench, load_scenario
from medtwin.hil.session import print_result, run_scenario
from medtwin.hil.store import DEFAULT_URL


@click.command("run")
@click.argument("bench_file", metavar="BENCH")
@click.argument("scenario_file", metavar="SCENARIO")
@click.option(
    "--db", "db_url", default=DEFAULT_URL, show_default=True, help="SQLAlchemy URL of the run store"
)
@click.option(
    "--clock",
    type=click.Choice(["wall", "virtual"]),
    default=None,
    help="default: virtual when every device is emulated, else wall",
)
@click.option("--json", "as_json", is_flag=True, help="print one JSON document")
@handle_errors
def run(bench_file: str, scenario_file: str, db_url: str, clock: str | None, as_json: bool) -> None:
    """Run SCENARIO on BENCH beside the twin and flag drift."""
    bench = load_bench(bench_file)
    scenario = load_scenario(scenario_file)
    result = run_scenario(
        bench, scenario, db_url=db_url, clock=clock, progress=None if not as_json else False
    )
    print_result(result, as_json=as_json)
    if result.status == "aborted":
        # Stopped by Ctrl-C / SIGTERM: the conventional status of an interrupted command.
        sys.exit(130)
