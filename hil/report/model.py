"""The report model: what a report is made of, and what it gathers from the stored run.

:class:`Report`, :class:`ReportSection` and :class:`ReportFiles` are the public results
(:class:`~medtwin.hil.report.figures.ReportFigure` lives with the figures). The rest gathers,
once per report, what the sections show: the scenario's procedures with the analyses the
run stored (IEC 60601-2-24 flow, occlusion and bolus; see :mod:`medtwin.hil.procedures`),
the numbered drift events, and the context every section builder receives.

The report re-analyses nothing of its own: an analysis is the one the run stored. Only a
flow procedure of a run that stored none (aborted or interrupted) gets its curves, from the
stored balance mass, by the procedure's own
:meth:`~medtwin.hil.procedures.FlowProcedure.analyse_curves`, and the report says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from medtwin.drivers.errors import AnalysisError, ConfigurationError
from medtwin.hil.analysis.gravimetry import GravimetricPolicy, policy_from_balance_params
from medtwin.hil.procedures import FlowProcedure, RunSeries, parse_procedures
from medtwin.hil.report.figures import ReportFigure, _Figures, _TimeAxis
from medtwin.hil.report.values import _SOURCES, _channel, _dict, _finite, _list, _toml
from medtwin.hil.store import CalibrationRecord, RunData, VerdictRecord

__all__ = [
    "REPORT_FORMAT",
    "REPORT_FORMAT_VERSION",
    "SECTIONS",
    "Report",
    "ReportFiles",
    "ReportSection",
]

REPORT_FORMAT = "medtwin-report"

REPORT_FORMAT_VERSION = 1


#: Every report has these sections, in this order: (key, heading).
SECTIONS: tuple[tuple[str, str], ...] = (
    ("run", "Run"),
    ("devices", "Bench and devices"),
    ("scenario", "Scenario"),
    ("calibration", "Twin calibration"),
    ("verdicts", "Verdicts"),
    ("startup", "Start-up curve"),
    ("trumpet", "Trumpet curve"),
    ("flow", "Flow and residual"),
    ("pressure", "Line pressure"),
    ("occlusion", "Occlusion test"),
    ("bolus", "Bolus accuracy"),
    ("drift", "Drift events"),
    ("residuals", "Residual statistics"),
    ("events", "Event log"),
)


_FLOW_KIND = "iec60601-2-24.flow"

_OCCLUSION_KIND = "iec60601-2-24.occlusion"

_BOLUS_KIND = "iec60601-2-24.bolus"


@dataclass(frozen=True)
class ReportSection:
    """One section: its key and heading, whether it applies to the run, its HTML body."""

    key: str
    title: str
    applies: bool
    body_html: str


@dataclass(frozen=True, eq=False)
class Report:
    """A report held in memory (see :func:`build_report`).

    Attributes
    ----------
    run_id : int
        The run reported on.
    title : str
        The document title.
    sections : tuple of ReportSection
        In the order of :data:`SECTIONS`.
    figures : tuple of ReportFigure
        In the order they appear.
    summary : dict
        JSON-able: run metadata, verdicts, drift events, analyses, residuals (strict JSON:
        non-finite numbers are ``None``). Written as ``summary.json`` by
        :func:`save_report`.
    html : str
        The complete, self-contained HTML document.
    """

    run_id: int
    title: str
    sections: tuple[ReportSection, ...]
    figures: tuple[ReportFigure, ...]
    summary: dict[str, Any]
    html: str

    def section(self, key: str) -> ReportSection:
        """The section with ``key`` (KeyError naming the keys if there is none)."""
        for section in self.sections:
            if section.key == key:
                return section
        raise KeyError(f"no section {key!r}; sections are {', '.join(k for k, _ in SECTIONS)}")

    def figure(self, name: str) -> ReportFigure:
        """The figure called ``name`` (KeyError naming the figures if there is none)."""
        for figure in self.figures:
            if figure.name == name:
                return figure
        names = ", ".join(f.name for f in self.figures) or "none"
        raise KeyError(f"no figure {name!r}; figures are {names}")


@dataclass(frozen=True)
class ReportFiles:
    """What :func:`save_report` wrote: the HTML, the PNGs and ``summary.json`` (or None)."""

    html: Path
    pngs: tuple[Path, ...] = ()
    summary_json: Path | None = None


@dataclass
class _Procedure:
    """A procedure of the run's scenario with what the run stored about it."""

    kind: str
    label: str
    table: dict[str, Any]
    parsed: Any | None
    stored: dict[str, Any] | None
    analysis: dict[str, dict[str, Any]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    origin: str = "none"  # "stored" | "recomputed" | "none"


def _procedures(run: RunData) -> list[_Procedure]:
    summary = _dict(run.summary)
    stored = {
        str(p.get("label")): p for p in _list(summary.get("procedures")) if isinstance(p, dict)
    }
    tables = [t for t in _list(_toml(run.scenario_text).get("procedures")) if isinstance(t, dict)]
    out: list[_Procedure] = []
    for index, table in enumerate(tables):
        label = f"procedures[{index}]"
        parsed: Any | None
        try:
            parsed = parse_procedures(
                [{**table, "label": label}], source=f"run {run.info.id} scenario"
            )[0]
        except ConfigurationError:
            parsed = None  # shown from what the run stored, if anything
        entry = stored.pop(label, None)
        out.append(
            _Procedure(
                kind=str(table.get("kind", "")),
                label=label,
                table=table,
                parsed=parsed,
                stored=entry,
            )
        )
    # Procedures the summary has but the scenario text does not (a run stored by other
    # tools): still reported.
    for label, entry in stored.items():
        out.append(_Procedure(str(entry.get("kind", "")), label, {}, None, entry))
    for procedure in out:
        _resolve_analysis(run, procedure)
    return out


def _gravimetry(run: RunData) -> GravimetricPolicy:
    """The gravimetric policy the runner's analyses used
    (:func:`medtwin.hil.analysis.gravimetry.policy_from_balance_params` of the twin's balance:
    water temperature and air buoyancy; the defaults where the run stored none)."""
    balance = _dict(_dict(run.twin_params).get("balance"))
    try:
        return policy_from_balance_params(balance)
    except AnalysisError:  # a stored temperature outside the density table's range
        return GravimetricPolicy()


def _pump_kind(run: RunData) -> str:
    """ "syringe" or "volumetric", from the stored twin parameters (a syringe pump's carry
    its syringe)."""
    pump = _dict(_dict(run.twin_params).get("pump"))
    return "volumetric" if pump and "syringe" not in pump else "syringe"


def _flow_series(run: RunData, source: str) -> RunSeries:
    """The stored balance mass of one side, as the flow procedure analyses it.

    Raises
    ------
    AnalysisError
        The run has no balance mass channel for ``source``.
    """
    balance = next((d.name for d in run.devices if d.kind == "balance"), None)
    channel = _channel(run, f"{balance}.mass_g", source) if balance else None
    if channel is None:
        raise AnalysisError(f"the run has no {source} balance mass channel")
    keep = np.isfinite(channel.values) & np.isfinite(channel.t_s)
    empty = np.empty(0)
    # The flow analysis reads the mass only: no pressure, no alarms.
    return RunSeries(
        "real" if source == "real" else "twin",
        channel.t_s[keep],
        channel.values[keep],
        empty,
        empty,
        empty,
        np.empty(0, dtype=bool),
        _gravimetry(run),
        _pump_kind(run),
    )


def _resolve_analysis(run: RunData, procedure: _Procedure) -> None:
    """The procedure's analysis as the run stored it; for a flow procedure of a run that
    stored none (aborted, interrupted), the procedure's own curves of the stored balance
    mass (:meth:`medtwin.hil.procedures.FlowProcedure.analyse_curves`)."""
    stored = procedure.stored or {}
    analysis = _dict(stored.get("analysis"))
    procedure.errors.update({str(k): str(v) for k, v in _dict(stored.get("errors")).items()})
    for source in _SOURCES:
        if isinstance(analysis.get(source), dict):
            procedure.analysis[source] = analysis[source]
    if procedure.analysis:
        procedure.origin = "stored"
        return
    if not isinstance(procedure.parsed, FlowProcedure) or procedure.errors:
        return
    procedure.origin = "recomputed"
    for source in _SOURCES:
        try:
            curves, trumpet_error = procedure.parsed.analyse_curves(_flow_series(run, source))
        except AnalysisError as exc:
            procedure.errors[source] = str(exc)
            continue
        procedure.analysis[source] = curves
        if trumpet_error:
            procedure.errors[source] = f"trumpet curve: {trumpet_error}"


def _accuracy_limits(
    procedure: _Procedure, verdicts: Sequence[VerdictRecord]
) -> tuple[float | None, float | None]:
    """The declared flow accuracy (lower, upper) in %: the procedure's claim, else the claim
    its analysis applied (the pump kind's default), else the limits stored with the
    mean-error verdict."""
    accuracy = _finite(getattr(procedure.parsed, "accuracy_percent", None))
    for analysis in procedure.analysis.values():
        if accuracy is None:
            applied = _dict(_dict(analysis.get("parameters")).get("accuracy_percent"))
            accuracy = _finite(applied.get("value"))
    if accuracy is not None:
        return -accuracy, accuracy
    for verdict in verdicts:
        if verdict.measurement == "mean_flow_error_a":
            return verdict.lower, verdict.upper
    return None, None


@dataclass
class _Context:
    run: RunData
    calibration: CalibrationRecord | None
    procedures: list[_Procedure]
    drift: list[tuple[int, dict[str, Any]]]
    figures: _Figures
    axis: _TimeAxis
    summary_procedures: list[dict[str, Any]] = field(default_factory=list)

    def of_kind(self, kind: str) -> list[_Procedure]:
        return [p for p in self.procedures if p.kind == kind]

    def drift_on(self, channel: str) -> list[tuple[int, dict[str, Any]]]:
        return [(n, e) for n, e in self.drift if e.get("channel") == channel]

    def device_of_kind(self, kind: str) -> str | None:
        return next((d.name for d in self.run.devices if d.kind == kind), None)


def _drift_events(run: RunData) -> list[tuple[int, dict[str, Any]]]:
    """Drift events numbered 1… in order of detection: the run summary's, else (a run
    that never finished) the ``drift`` events of the event log, which carry the same."""
    summary = _dict(run.summary)
    if "drift_events" in summary:
        events = [e for e in _list(summary["drift_events"]) if isinstance(e, dict)]
    else:
        events = [e.data for e in run.events if e.kind == "drift" and isinstance(e.data, dict)]
    events.sort(key=lambda e: _finite(e.get("detected_t_s")) or 0.0)
    return list(enumerate(events, start=1))
