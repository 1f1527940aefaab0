"""``medtwin run BENCH SCENARIO``: a scenario on a bench, beside the twin, into the store.

The exit status is what a CI pipeline gates on (:class:`medtwin.hil.cli.ExitCode`, the
table in docs/cli.md): 0 when no verdict of the real device failed, 1 when one did (with
``--fail-on drift`` also when drift was flagged; ``--fail-on never`` for exploration),
2 for bad input, 3 for a runtime failure (a port, the store, a device lost during the run),
130 when interrupted.
"""

from __future__ import annotations

import click
from medtwin.hil.cli import ExitCode, exit_with, handle_errors
from medtwin.hil.config import load_bench, load_scenario
from medtwin.hil.runner import RunResult
from medtwin.hil.session import FAIL_ON, outcome_exit_code, print_result, run_scenario
from medtwin.hil.store import DEFAULT_URL


def print_interruptible(
    result: RunResult, *, as_json: bool, report_path: str | None = None
) -> None:
    """:func:`print_result`; a Ctrl-C while it prints (the run is already stored) still
    says where the run is, then exits with status 130."""
    try:
        print_result(result, as_json=as_json, report_path=report_path)
    except KeyboardInterrupt:
        click.echo(
            f"medtwin: interrupted after the run finished: run {result.run_id} is stored "
            f"({result.status}) in {result.db}",
            err=True,
        )
        exit_with(ExitCode.INTERRUPTED)


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
@click.option(
    "--fail-on",
    type=click.Choice(FAIL_ON),
    default="verdict",
    show_default=True,
    help="exit with status 1 when a verdict of the real device failed (verdict), also when "
    "drift was flagged (drift), or never (never: exploration)",
)
@click.option("--json", "as_json", is_flag=True, help="print one JSON document")
@handle_errors
def run(
    bench_file: str,
    scenario_file: str,
    db_url: str,
    clock: str | None,
    fail_on: str,
    as_json: bool,
) -> None:
    """Run SCENARIO on BENCH beside the twin and flag drift."""
    bench = load_bench(bench_file)
    scenario = load_scenario(scenario_file)
    result = run_scenario(
        bench, scenario, db_url=db_url, clock=clock, progress=None if not as_json else False
    )
    print_interruptible(result, as_json=as_json)
    code = outcome_exit_code(result, fail_on)
    if code != ExitCode.OK:
        exit_with(ExitCode(code))
