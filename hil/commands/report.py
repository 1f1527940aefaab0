"""``medtwin report``: the QA report of one stored run, as one self-contained HTML file.

    medtwin report RUN [--db URL] [--out FILE] [--out-dir DIR] [--force] [--json]

Writes ``report-RUN.html`` in the working directory (or ``--out FILE``): device
identities, scenario, calibration, verdicts, start-up and trumpet curves, flow, pressure and
residual plots with the drift events, occlusion and bolus results and the event log, with
every figure embedded (see :mod:`medtwin.hil.report`). With ``--out-dir DIR`` the figures
(``<figure>.png``) and ``summary.json`` are written to DIR as well, and the HTML goes there
too unless ``--out`` names it. The path of the HTML is printed, or with ``--json`` one
document ``{"run_id", "html", "pngs", "summary_json", "summary"}``.

Bad input exits with status 2 and writes nothing: an unknown RUN, a ``--db`` that cannot
be opened or read, an output path that is a directory or whose directory does not exist.
An existing HTML file is kept unless ``--force`` is given (exit status 2, as
``medtwin export`` does); with ``--force`` it is replaced, and so are the figures, but only by
renaming a completely written temporary file over them, so no reader ever sees half a report.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
from medtwin.drivers.errors import ConfigurationError, RunNotFound, StorageError
from medtwin.hil.cli import handle_errors
from medtwin.hil.commands.runs import db_option, open_store, run_not_found

__all__ = ["report"]


def _output_paths(
    run_id: int, out: str | None, out_dir: str | None, *, force: bool = False
) -> tuple[Path, Path | None]:
    """(HTML path, figure directory) from the options, checked before any work is done."""
    directory = Path(out_dir) if out_dir else None
    if directory is not None and directory.exists() and not directory.is_dir():
        raise ConfigurationError(f"{directory} exists and is not a directory", source="--out-dir")
    html = Path(out) if out else (directory or Path()) / f"report-{run_id}.html"
    if html.is_dir():
        raise ConfigurationError(f"{html} is a directory; name a file", source="--out")
    if html.exists() and not force:
        # As `medtwin export` does: a filed report is not replaced by accident.
        raise ConfigurationError(f"{html} exists; pass --force to overwrite it", source="--out")
    parent = html.parent
    # The HTML's directory must exist, except when it is the --out-dir being created.
    if not parent.is_dir() and (directory is None or parent.resolve() != directory.resolve()):
        raise ConfigurationError(
            f"the directory {parent} does not exist; create it or choose another file",
            source="--out",
        )
    return html, directory


@click.command("report")
@click.argument("run_id", metavar="RUN", type=click.IntRange(min=1))
@db_option
@click.option(
    "--out",
    "out",
    metavar="FILE",
    default=None,
    help="HTML file to write [default: report-RUN.html, in --out-dir if given]",
)
@click.option(
    "--out-dir",
    "out_dir",
    metavar="DIR",
    default=None,
    help="also write the figures as PNG and summary.json into DIR (created if missing)",
)
@click.option("--force", is_flag=True, help="overwrite the HTML file if it exists")
@click.option("--json", "as_json", is_flag=True, help="print one JSON document")
@handle_errors
def report(
    run_id: int, db_url: str, out: str | None, out_dir: str | None, force: bool, as_json: bool
) -> None:
    """Write the QA report of run RUN: one self-contained HTML file."""
    from medtwin.hil.calibration import calibration_in_force
    from medtwin.hil.report import build_report, save_report

    html_path, directory = _output_paths(run_id, out, out_dir, force=force)
    with open_store(db_url) as store:
        try:
            run = store.load_run(run_id)
            calibration = calibration_in_force(store, run)
        except RunNotFound as error:
            raise run_not_found(error) from error
        except StorageError as error:
            # The store opened but cannot be read (a corrupt block, the server went away):
            # still a problem with the --db given, not with medtwin.
            raise ConfigurationError(str(error), source="--db") from error
    built = build_report(run, calibration=calibration)
    files = save_report(built, html_path, out_dir=directory)
    if as_json:
        document = {
            "run_id": run_id,
            "html": str(files.html.resolve()),
            "pngs": [str(p.resolve()) for p in files.pngs],
            "summary_json": None
            if files.summary_json is None
            else str(files.summary_json.resolve()),
            "summary": built.summary,
        }
        click.echo(json.dumps(document, allow_nan=False))
        return
    click.echo(str(files.html.resolve()))
