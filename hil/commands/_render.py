"""Terminal rendering for the command line (rich tables): verdicts, and tables that fit.

Presentation lives here, beside the commands that print, so that the data model
(:mod:`medtwin.hil.measurements`) stays free of any console library. Outcomes are shown
with :func:`medtwin.hil.outcomes.outcome_label` (``info`` for a value disclosed without
limits) and coloured by :func:`outcome_style`; limits are written by
:func:`medtwin.hil.outcomes.format_limits`, as the report and the pytest summary write them.

Nothing a user has to type or read is cut. A channel, measurement or parameter name is
the very word ``--set``, ``--fix`` or a scenario's ``tolerances`` expect, so a column
holding names is never wrapped or shortened with an ellipsis; when the terminal is too
narrow for the whole table, :func:`fitted_table` drops the columns of least value (a
note, the marginal limits, ...) instead, in the order each command declares.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from medtwin.hil.measurements import Verdict
from medtwin.hil.outcomes import INFO_LABEL, Outcome, format_limits
from rich.console import Console
from rich.table import Table

__all__ = [
    "OUTCOME_STYLES",
    "VERDICT_COLUMNS",
    "Column",
    "fitted_table",
    "outcome_style",
    "verdict_table",
]

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


@dataclass(frozen=True)
class Column:
    """One column of a :func:`fitted_table`.

    ``name`` marks a column holding names a user types (channels, measurements,
    parameters): it is never wrapped nor cut. ``drop`` ranks the columns that may go when
    the terminal is too narrow, lowest first; None keeps the column whatever the width.
    ``wrap`` marks free text (a note, a description) that is expected to fold over several
    lines: such a column does not count towards the width the table needs.
    """

    header: str
    justify: Literal["left", "right", "center"] = "left"
    name: bool = False
    drop: int | None = None
    wrap: bool = False


def _needed_width(table: Table, columns: Sequence[Column]) -> int:
    """Width at which every cell but free text fits on one line (words unbroken)."""
    wide = Console(width=100_000)
    measured = table.__rich_measure__(wide, wide.options)
    if not any(c.wrap for c in columns):
        return measured.maximum
    # Free text folds: count it at the width of its header only.
    return measured.maximum - sum(
        max(0, _column_max(table, i, wide) - len(c.header)) for i, c in enumerate(columns) if c.wrap
    )


def _column_max(table: Table, index: int, console: Console) -> int:
    column = table.columns[index]
    cells = [column.header, *column.cells]
    return max(console.measure(cell).maximum for cell in cells)


def fitted_table(
    columns: Sequence[Column],
    rows: Iterable[Sequence[str]],
    *,
    width: int | None,
    **table_options: Any,
) -> Table:
    """A rich table of ``rows`` that fits ``width`` columns without cutting a name.

    Name columns are not wrapped (rich would break ``ep_max_2min`` mid-word). While the
    table, with every cell but free text on one line, is wider than ``width``, the
    droppable column of lowest ``drop`` rank is left out; what still does not fit folds
    over more lines (never an ellipsis).
    With ``width`` None every column is kept. ``table_options`` go to :class:`rich.table.Table`.
    """
    rows = [tuple(row) for row in rows]
    active = list(range(len(columns)))
    droppable = sorted(
        (i for i, c in enumerate(columns) if c.drop is not None),
        key=lambda i: (columns[i].drop, -i),
    )
    while True:
        table = Table(**table_options)
        for i in active:
            column = columns[i]
            # Only a name column refuses to wrap: when even the narrowest table is too
            # wide, rich shrinks the other columns, which fold their text over more lines
            # instead of cutting it with an ellipsis.
            table.add_column(
                column.header, justify=column.justify, no_wrap=column.name, overflow="fold"
            )
        for row in rows:
            table.add_row(*(row[i] for i in active))
        if (
            width is None
            or not droppable
            or _needed_width(table, [columns[i] for i in active]) <= width
        ):
            return table
        active.remove(droppable.pop(0))


def _fmt_value(value: float | None) -> str:
    return "—" if value is None else f"{value:.6g}"


#: Columns of :func:`verdict_table`; at a narrow width the note goes first, then the
#: marginal limits, the units (the limits carry them too) and the source.
VERDICT_COLUMNS: tuple[Column, ...] = (
    Column("measurement", name=True),
    Column("source", drop=4),
    Column("value", justify="right"),
    Column("units", drop=3),
    Column("limits"),
    Column("marginal", drop=2),
    Column("outcome"),
    Column("note", drop=1, wrap=True),
)


def verdict_table(
    verdicts: Iterable[Verdict], *, title: str | None = "Verdicts", width: int | None = None
) -> Table:
    """A rich table of verdicts: measurement, source, value, units, limits, outcome.

    Limits and marginal limits are written by :func:`medtwin.hil.outcomes.format_limits`
    (``−2 … 2 %``, ``≤ 1500 s``; ``—`` when none are declared); the outcome is coloured
    (``info`` for a value without limits). With ``width`` (the console's), columns of
    least value are dropped so that the measurement names are shown whole.
    """
    rows = []
    for verdict in verdicts:
        has_limits = verdict.lower is not None or verdict.upper is not None
        has_marginal = verdict.marginal_lower is not None or verdict.marginal_upper is not None
        label = verdict.outcome_label()
        rows.append(
            (
                verdict.name,
                verdict.source,
                _fmt_value(verdict.value),
                verdict.units,
                format_limits(verdict.lower, verdict.upper, verdict.units) if has_limits else "—",
                format_limits(verdict.marginal_lower, verdict.marginal_upper, verdict.units)
                if has_marginal
                else "—",
                f"[{outcome_style(label)}]{label}[/]",
                verdict.note,
            )
        )
    return fitted_table(VERDICT_COLUMNS, rows, width=width, title=title)
