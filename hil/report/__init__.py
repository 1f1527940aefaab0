"""QA reports of stored runs: one self-contained HTML file, PNG figures and a JSON summary.

A report is what a QA engineer files for one run of :mod:`medtwin.hil.runner`: who and what was on
the bench (device identities, ports, the bench and scenario files with their SHA-256), the
twin's calibration, the IEC 60601-2-24 results (start-up curve and trumpet curve of
IEC 60601-2-24:1998 clause 50.102, kept by the 2012 edition in 201.12.1; the occlusion test
of the 2012 edition under 201.12.4.4; bolus accuracy of 1998 clause 50.106; clause numbers
as in :mod:`medtwin.hil.analysis.iec60601_2_24`, where the unconfirmed ones are marked), the
verdicts of the real device and of the twin side by side, the real − twin residuals and
the drift events, and the event log.

    >>> from medtwin.hil.calibration import calibration_in_force
    >>> with RunStore("sqlite:///medtwin.db", create=False) as store:  # doctest: +SKIP
    ...     run = store.load_run(7)
    ...     calibration = calibration_in_force(store, run)
    >>> write_report(run, Path("report-7.html"), calibration=calibration)  # doctest: +SKIP

What it guarantees
------------------
* **Self-contained.** CSS is inline, figures are PNG ``data:`` URIs, there is no script
  and no reference to anything outside the file, so the HTML can be mailed, archived or
  printed as is.
* **Deterministic.** The report is a function of the stored run (and the calibration
  handed in): no generation time is written anywhere, PNGs carry no ``Software`` or time
  stamp chunk, and matplotlib runs with its built-in default style whatever the user's
  ``matplotlibrc`` says. Rendering a run twice with the same installation gives the same
  bytes.
* **Nothing disappears silently.** Every section is always present; one that does not
  apply to the run (no occlusion procedure, no line pressure recorded) says so in one line.
* **Numbers come from the run.** The report re-analyses nothing of its own: trumpet and
  start-up curves, occlusion and bolus results are the analyses stored with the run, and
  verdicts are the stored verdicts. When a run has a flow procedure but no stored analysis
  (an aborted or interrupted run), the curves are those of the procedure's own analysis
  (:meth:`medtwin.hil.procedures.FlowProcedure.analyse_curves`) of the stored balance
  channels, and the report says so. Time series are plotted from the stored channels.
* **Files are never half-written.** :func:`save_report` writes every file under a
  temporary name in its target directory and renames it into place only when all of them
  are complete.

The package is laid out by job: :mod:`~medtwin.hil.report.model` (the report and what it
gathers from the run), :mod:`~medtwin.hil.report.sections` (one module per section),
:mod:`~medtwin.hil.report.figures` (matplotlib, PNG), :mod:`~medtwin.hil.report.markup` and
:mod:`~medtwin.hil.report.page` (HTML), :mod:`~medtwin.hil.report.summary` (JSON) and
:mod:`~medtwin.hil.report.build` (:func:`build_report`, :func:`save_report`,
:func:`write_report`). The calibration in force is found by
:func:`medtwin.hil.calibration.calibration_in_force`.
"""

from __future__ import annotations

from medtwin.hil.report.build import build_report, save_report, write_report
from medtwin.hil.report.figures import ReportFigure
from medtwin.hil.report.model import (
    REPORT_FORMAT,
    REPORT_FORMAT_VERSION,
    SECTIONS,
    Report,
    ReportFiles,
    ReportSection,
)

__all__ = [
    "REPORT_FORMAT",
    "REPORT_FORMAT_VERSION",
    "SECTIONS",
    "Report",
    "ReportFigure",
    "ReportFiles",
    "ReportSection",
    "build_report",
    "save_report",
    "write_report",
]
