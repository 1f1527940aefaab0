"""Terminal rendering of verdicts for the command line (rich tables).

Presentation lives here, beside the commands that print, so that the data model
(:mod:`medtwin.hil.measurements`) stays free of any console library. Outcomes are shown
with :func:`medtwin.hil.outcomes.outcome_label` (``info`` for a value disclosed without
limits) and coloured by :func:`outcome_style`.
"""

from __future__ import annotations

from collections.abc import Iterable

from medtwin.hil.measurements import Verdict
from medtwin.hil.outcomes import INFO_LABEL, Outcome
from rich.table import Table

__all__ = ["OUTCOME_STYLES", "outcome_style", "verdict_table"]

#: rich style of each outcome word; a disclosed value (``info``) is dim like UNSET, so that
#: it does not read as a pass against a claim.
OUTCOME_STYLES: dict[str, str] = {
    Outcome.PASS.value: "green",
    Outcome.FAIL.value: "bold red",
    Outcome.MARGINAL.value: "yellow",
    Outcome.INFO.value: "dim",
    Outcome.UNSET.value: "dim",
    INFO_LABEL: "dim",
}


def outcome_style(label: str) -> str:
    """The rich style of an outcome label (as :func:`medtwin.hil.outcomes.outcome_label`
    gives it); no style for a word that is not an outcome."""
    return OUTCOME_STYLES.get(label, "")


def _fmt_limit(value: float | None) -> str:
    return "—" if value is None else f"{value:g}"


def _fmt_value(value: float | None) -> str:
    return "—" if value is None else f"{value:.6g}"


def verdict_table(verdicts: Iterable[Verdict], *, title: str | None = "Verdicts") -> Table:
    """A rich table of verdicts: measurement, source, value, units, limits, outcome.

    Limits are shown as ``lo … hi`` with ``—`` for an open side, marginal limits the same
    way; the outcome is coloured (``info`` for a value without limits).
    """
    table = Table(title=title)
    table.add_column("measurement")
    table.add_column("source")
    table.add_column("value", justify="right")
    table.add_column("units")
    table.add_column("limits")
    table.add_column("marginal")
    table.add_column("outcome")
    table.add_column("note")
    for verdict in verdicts:
        has_limits = verdict.lower is not None or verdict.upper is not None
        has_marginal = verdict.marginal_lower is not None or verdict.marginal_upper is not None
        label = verdict.outcome_label()
        table.add_row(
            verdict.name,
            verdict.source,
            _fmt_value(verdict.value),
            verdict.units,
            f"{_fmt_limit(verdict.lower)} … {_fmt_limit(verdict.upper)}" if has_limits else "—",
            f"{_fmt_limit(verdict.marginal_lower)} … {_fmt_limit(verdict.marginal_upper)}"
            if has_marginal
            else "—",
            f"[{outcome_style(label)}]{label}[/]",
            verdict.note,
        )
    return table
