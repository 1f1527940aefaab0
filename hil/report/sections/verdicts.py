"""Section "Verdicts": the stored verdicts of the real device and of the twin side by side.

Outcomes are those of :mod:`medtwin.hil.outcomes` (PASS, FAIL, MARGINAL, UNSET; ``info``
for a value disclosed without limits, such as an IEC 60601-2-24 Ep(max)/Ep(min) for which
the manufacturer declares nothing); the overall outcome of each side follows the one
severity order.
"""

from __future__ import annotations

from collections.abc import Mapping

from medtwin.hil.outcomes import NO_LIMITS, format_limits, outcome_label
from medtwin.hil.report.markup import _badge, _esc, _na, _outcome_cell, _overall, _table
from medtwin.hil.report.model import _Context
from medtwin.hil.report.values import _SOURCES
from medtwin.hil.store import VerdictRecord


def _section_verdicts(ctx: _Context) -> tuple[bool, str]:
    verdicts = ctx.run.verdicts
    if not verdicts:
        status = ctx.run.info.status
        why = (
            "the scenario declares no measurements (no procedures)"
            if not ctx.procedures
            else f"none were stored (the run is {status}; analyses run when a run completes)"
        )
        return False, _na(f"No verdicts: {why}.")
    rows_by_name: dict[str, dict[str, VerdictRecord]] = {}
    for verdict in verdicts:
        rows_by_name.setdefault(verdict.measurement, {})[str(verdict.source)] = verdict
    rows, attrs = [], []
    for name, pair in rows_by_name.items():
        any_v = next(iter(pair.values()))
        rows.append(
            [
                f"<code>{_esc(name)}</code>",
                _esc(any_v.description or ""),
                _esc(_limits_text(any_v)),
                *(
                    _outcome_cell(
                        str(pair[s].outcome) if s in pair else None,
                        source=s,
                        value=_esc(_value_text(pair[s])) if s in pair else "",
                        badge=outcome_label(str(pair[s].outcome), pair[s].lower, pair[s].upper)
                        if s in pair
                        else None,
                    )
                    for s in _SOURCES
                ),
                _esc(_notes_text(pair)),
            ]
        )
        attrs.append(f'data-measurement="{_esc(name)}"')
    overall = {
        s: _overall(str(v.outcome) for v in verdicts if str(v.source) == s) for s in _SOURCES
    }
    head = (
        '<p class="overall">overall: real device '
        + _badge(overall["real"])
        + ", twin "
        + _badge(overall["twin"])
        + " (FAIL if any measurement fails, then UNSET, then MARGINAL)</p>"
    )
    table = _table(
        ["measurement", "what", "limits", "real device", "twin", "note"],
        rows,
        table_id="verdicts-table",
        numeric_from=99,
        row_attrs=attrs,
    )
    return True, head + table


def _notes_text(pair: Mapping[str, VerdictRecord]) -> str:
    notes = {s: pair[s].note for s in _SOURCES if s in pair and pair[s].note}
    if len(set(notes.values())) == 1 and len(notes) == len(pair):
        return next(iter(notes.values()))  # the same note on both sides: once
    return "; ".join(f"{s}: {note}" for s, note in notes.items())


def _limits_text(verdict: VerdictRecord) -> str:
    # Written as every table and the pytest summary write limits (format_limits).
    if verdict.lower is None and verdict.upper is None:
        return f"{NO_LIMITS} (informational)"
    text = format_limits(verdict.lower, verdict.upper, verdict.units)
    if verdict.marginal_lower is not None or verdict.marginal_upper is not None:
        marginal = format_limits(verdict.marginal_lower, verdict.marginal_upper, verdict.units)
        text += f"; marginal outside {marginal}"
    return text


def _value_text(verdict: VerdictRecord) -> str:
    if verdict.value is None:
        return "—"
    return f"{verdict.value:.4g} {verdict.units}".rstrip()
