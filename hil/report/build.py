"""Build a report in memory and write it: the public entry points of :mod:`medtwin.hil.report`.

Files are never half-written: :func:`save_report` writes every file under a temporary name
in its target directory and renames it into place only when all of them are complete.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.style
from medtwin.drivers.errors import ConfigurationError
from medtwin.hil.files import FileBatch
from medtwin.hil.report.figures import _STYLE, _Figures, _time_axis
from medtwin.hil.report.model import (
    SECTIONS,
    Report,
    ReportFiles,
    ReportSection,
    _Context,
    _drift_events,
    _procedures,
)
from medtwin.hil.report.page import _page
from medtwin.hil.report.sections import _BUILDERS
from medtwin.hil.report.summary import _summary
from medtwin.hil.store import CalibrationRecord, RunData

__all__ = ["build_report", "save_report", "write_report"]


def build_report(run: RunData, *, calibration: CalibrationRecord | None = None) -> Report:
    """Build the report of one stored run in memory.

    Parameters
    ----------
    run : RunData
        From :meth:`medtwin.hil.store.RunStore.load_run`.
    calibration : CalibrationRecord, optional
        The calibration the run's twin used
        (:func:`medtwin.hil.calibration.calibration_in_force` finds it); None for a nominal
        twin.

    Returns
    -------
    Report
        Sections, figures (PNG bytes), the summary dict and the HTML document.

    Notes
    -----
    Nothing in a stored run makes this fail: an analysis that cannot be done is reported
    in its section (with the reason) instead of hiding the rest of the report.
    """
    info = run.info
    title = f"medtwin run {info.id}: {info.scenario_name} on {info.bench_name}"
    ctx = _Context(
        run=run,
        calibration=calibration,
        procedures=_procedures(run),
        drift=_drift_events(run),
        figures=_Figures(info.id),
        axis=_time_axis(run),
    )
    sections = []
    with matplotlib.style.context(["default", _STYLE]):
        for key, heading in SECTIONS:
            applies, body = _BUILDERS[key](ctx)
            sections.append(ReportSection(key, heading, applies, body))
    figures = tuple(ctx.figures.items)
    return Report(
        run_id=info.id,
        title=title,
        sections=tuple(sections),
        figures=figures,
        summary=_summary(ctx, sections, figures),
        html=_page(ctx, title, sections),
    )


def _check_target(path: Path) -> None:
    if path.is_dir():
        raise ConfigurationError(f"{path} is a directory; name a file", source=str(path))


def save_report(report: Report, out_html: Path, *, out_dir: Path | None = None) -> ReportFiles:
    """Write a built report: the HTML, and with ``out_dir`` the PNGs and ``summary.json``.

    Parameters
    ----------
    report : Report
        From :func:`build_report`.
    out_html : Path
        The HTML file; its directory must exist unless it is ``out_dir``. An existing
        file is replaced.
    out_dir : Path, optional
        Directory for ``<figure>.png`` and ``summary.json`` (created when missing).

    Raises
    ------
    ConfigurationError
        A path that cannot be written (naming it); nothing is left behind.
    """
    out_html = Path(out_html)
    _check_target(out_html)
    if out_dir is not None and out_dir.exists() and not out_dir.is_dir():
        raise ConfigurationError(f"{out_dir} exists and is not a directory", source=str(out_dir))
    inside = out_dir is not None and out_html.parent.resolve() == out_dir.resolve()
    if not inside and not out_html.parent.is_dir():
        raise ConfigurationError(
            f"the directory {out_html.parent} does not exist", source=str(out_html)
        )
    pngs: list[Path] = []
    summary_json: Path | None = None
    batch = FileBatch()
    try:
        if out_dir is not None:
            batch.mkdir(out_dir)
            for figure in report.figures:
                target = out_dir / figure.filename
                _check_target(target)
                batch.add(target, figure.png)
                pngs.append(target)
            summary_json = out_dir / "summary.json"
            _check_target(summary_json)
            text = json.dumps(report.summary, indent=2, ensure_ascii=False, allow_nan=False)
            batch.add(summary_json, (text + "\n").encode("utf-8"))
        batch.add(out_html, report.html.encode("utf-8"))
        batch.commit()
    except BaseException:
        batch.discard()
        raise
    return ReportFiles(html=out_html, pngs=tuple(pngs), summary_json=summary_json)


def write_report(
    run: RunData,
    out_html: Path,
    *,
    out_dir: Path | None = None,
    calibration: CalibrationRecord | None = None,
) -> Path:
    """Build the report of ``run`` and write it; returns the HTML path.

    ``out_dir`` also receives the PNG figures and ``summary.json`` (see
    :func:`save_report`). ``calibration`` as in :func:`build_report`.
    """
    report = build_report(run, calibration=calibration)
    return save_report(
        report, Path(out_html), out_dir=None if out_dir is None else Path(out_dir)
    ).html
