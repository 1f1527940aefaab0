"""``medtwin demo``: the main job on the embedded default, for a newcomer.

The drift bench (a 1 % under-sized syringe and a wearing lead screw, all devices emulated
on real ptys) runs the 2-hour IEC 60601-2-24 flow scenario on the virtual clock, beside the
nominal twin; the drift events, verdicts and a summary are printed, the run is stored in
``./medtwin.db`` and its HTML report written to ``./report-<run>.html`` (``report-<run>-2.html``
... when that name is taken, say by a report of another store's run with the same id: a demo
never overwrites a report, as ``medtwin report`` does not without ``--force``).

Its job is to show a pump failing, so it exits 0 when it ran as intended, whatever the
verdicts; 130 when interrupted, and the usual statuses for bad input (2) or a runtime
failure (3) (:class:`medtwin.hil.cli.ExitCode`).
"""

from __future__ import annotations

from pathlib import Path

import click
from medtwin.hil.calibration import calibration_in_force
from medtwin.hil.cli import ExitCode, exit_with, handle_errors
from medtwin.hil.commands.run import print_interruptible
from medtwin.hil.config import load_bench, load_scenario
from medtwin.hil.packaged import bench_path, scenario_path
from medtwin.hil.report import write_report
from medtwin.hil.session import run_scenario
from medtwin.hil.store import DEFAULT_URL, RunStore


def _fresh_report_path(run_id: int) -> Path:
    """``report-RUN.html`` in the working directory, or the first free ``report-RUN-N.html``."""
    path = Path(f"report-{run_id}.html")
    n = 2
    while path.exists():
        path = Path(f"report-{run_id}-{n}.html")
        n += 1
    return path


@click.command("demo")
@click.option(
    "--db", "db_url", default=DEFAULT_URL, show_default=True, help="SQLAlchemy URL of the run store"
)
@click.option("--json", "as_json", is_flag=True, help="print one JSON document")
@handle_errors
def demo(db_url: str, as_json: bool) -> None:
    """A pump drifting away from its twin: emulated drift bench, IEC flow test, 2 h in seconds."""
    bench = load_bench(bench_path("emulated-drift"))
    scenario = load_scenario(scenario_path("iec-flow-5mlh"))
    if not as_json:
        click.echo(
            "medtwin demo: an NE-1000 syringe pump, an MT-SICS balance and a Modbus bench I/O "
            "module, emulated on ptys;\nthe syringe is 1 % narrower than programmed and the lead "
            "screw wears from 30 min on. 2 h at 5 mL/h on the virtual clock ..."
        )
    result = run_scenario(
        bench, scenario, db_url=db_url, clock="virtual", progress=None if not as_json else False
    )
    report_path: str | None = None
    if result.status != "aborted":
        try:
            with RunStore(db_url, create=False) as store:
                run = store.load_run(result.run_id)
                calibration = calibration_in_force(store, run)
            written = write_report(run, _fresh_report_path(result.run_id), calibration=calibration)
        except KeyboardInterrupt:
            click.echo(
                f"medtwin: interrupted after the run finished: run {result.run_id} is stored "
                f"({result.status}) in {result.db}; no report was written",
                err=True,
            )
            exit_with(ExitCode.INTERRUPTED)
        report_path = str(written.resolve())
    print_interruptible(result, as_json=as_json, report_path=report_path)
    if result.status == "aborted":
        # Stopped by Ctrl-C / SIGTERM: the conventional status of an interrupted command.
        exit_with(ExitCode.INTERRUPTED)
