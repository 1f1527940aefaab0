"""HTML building blocks of the report: escaping, number and time formats, tables, badges.

The HTML is assembled by hand with :func:`html.escape` because the report is a fixed layout
of tables and figures: a template engine would be a new dependency for no gain. Outcome
badges take their words from :mod:`medtwin.hil.outcomes` (``info`` for a value disclosed
without limits, the overall outcome in its one severity order).
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from medtwin.hil.outcomes import overall_outcome
from medtwin.hil.report.figures import ReportFigure
from medtwin.hil.report.values import _finite


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _num(value: Any, digits: int = 4, *, signed: bool = False) -> str:
    number = _finite(value)
    if number is None:
        return "—"
    return f"{number:+.{digits}g}" if signed else f"{number:.{digits}g}"


def _clock(t_s: Any) -> str:
    """Scenario time as ``h:mm:ss`` (with tenths when not a whole second)."""
    number = _finite(t_s)
    if number is None:
        return "—"
    sign = "-" if number < 0 else ""
    number = abs(number)
    tenths = round(number * 10)
    whole, frac = divmod(tenths, 10)
    hours, rest = divmod(whole, 3600)
    minutes, seconds = divmod(rest, 60)
    text = f"{sign}{hours}:{minutes:02d}:{seconds:02d}"
    return f"{text}.{frac}" if frac else text


def _utc(moment: datetime | None) -> str:
    if moment is None:
        return "—"
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _table(
    headers: Sequence[str],
    rows: Iterable[Sequence[str]],
    *,
    table_id: str | None = None,
    numeric_from: int = 1,
    row_attrs: Sequence[str] | None = None,
) -> str:
    """An HTML table; cells are already-escaped HTML (``<td>`` or ``<th>`` included or not).

    A cell that starts with ``<td`` is used as is (for classes and data attributes);
    others are wrapped, right-aligned from column ``numeric_from`` on.
    """
    out = [f'<table id="{_esc(table_id)}">' if table_id else "<table>", "<thead><tr>"]
    out += [f"<th>{_esc(h)}</th>" for h in headers]
    out.append("</tr></thead><tbody>")
    for i, row in enumerate(rows):
        attrs = f" {row_attrs[i]}" if row_attrs and row_attrs[i] else ""
        out.append(f"<tr{attrs}>")
        for j, cell in enumerate(row):
            if cell.startswith("<td"):
                out.append(cell)
            else:
                cls = ' class="num"' if j >= numeric_from else ""
                out.append(f"<td{cls}>{cell}</td>")
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _facts(items: Iterable[tuple[str, str]]) -> str:
    """A two-column key/value table (values are already-escaped HTML)."""
    rows = "".join(f"<tr><th>{_esc(k)}</th><td>{v}</td></tr>" for k, v in items)
    return f'<table class="facts"><tbody>{rows}</tbody></table>'


def _na(text: str) -> str:
    return f'<p class="na">{_esc(text)}</p>'


def _outcome_cell(
    outcome: str | None, *, source: str, value: str = "", badge: str | None = None
) -> str:
    """A verdict cell; ``badge`` overrides the text of the outcome badge (``info``)."""
    if outcome is None:
        return f'<td class="outcome none" data-source="{source}">—</td>'
    label = f"{value} " if value else ""
    shown = outcome if badge is None else badge
    return (
        f'<td class="outcome {_esc(shown)}" data-source="{source}" '
        f'data-outcome="{_esc(outcome)}">{label}<span class="badge">{_esc(shown)}</span></td>'
    )


def _badge(outcome: str | None) -> str:
    if outcome is None:
        return '<span class="badge">no verdicts</span>'
    return f'<span class="badge outcome {_esc(outcome)}">{_esc(outcome)}</span>'


def _overall(outcomes: Iterable[str]) -> str | None:
    """The most severe outcome word of a set of verdicts (:data:`medtwin.hil.outcomes.SEVERITY`),
    None when there are none."""
    outcome = overall_outcome(outcomes)
    return None if outcome is None else outcome.value


def _figure_html(figure: ReportFigure, caption: str) -> str:
    return (
        f'<figure id="fig-{_esc(figure.name)}"><img src="{figure.data_uri()}" '
        f'alt="{_esc(figure.title)}" width="{figure.width_px}" height="{figure.height_px}">'
        f"<figcaption>{caption}</figcaption></figure>"
    )


def _drift_caption(numbers: Sequence[int]) -> str:
    if not numbers:
        return " No drift event on these channels."
    return (
        f" Drift events {', '.join(f'#{n}' for n in numbers)} are marked: shaded from the "
        "estimated onset (dashed) to the detection (solid)."
    )
