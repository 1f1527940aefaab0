"""Section "Verdicts": the stored verdicts of the real device and of the twin side by side.

Outcomes are those of :mod:`medtwin.hil.outcomes` (PASS, FAIL, MARGINAL, UNSET; ``info``
for a value disclosed without limits, such as an IEC 60601-2-24 Ep(max)/Ep(min) for which
the manufacturer declares nothing); the overall outcome of each side follows the one
severity order.

Beside the verdicts: where each limit came from (``(default)`` when a default claim was
used: ±2 % for a syringe pump, ±5 % for a volumetric one), and per procedure the density d
its volumes rest on with the gravimetric policy that produced it
(:mod:`medtwin.hil.analysis.gravimetry`) and every analysis parameter, marked ``default``
when the scenario did not set it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from medtwin.drivers.errors import AnalysisError
from medtwin.hil.analysis.gravimetry import GravimetricPolicy
from medtwin.hil.outcomes import NO_LIMITS, format_limits, outcome_label
from medtwin.hil.procedures import Procedure
from medtwin.hil.report.markup import _badge, _esc, _na, _outcome_cell, _overall, _table
from medtwin.hil.report.model import _Context, _Procedure
from medtwin.hil.report.values import _SOURCES, _dict, _list
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
    sources = _limits_sources(ctx.procedures)
    rows, attrs = [], []
    for name, pair in rows_by_name.items():
        any_v = next(iter(pair.values()))
        origin = next((sources[(s, name)] for s in pair if (s, name) in sources), None)
        rows.append(
            [
                f"<code>{_esc(name)}</code>",
                _esc(any_v.description or ""),
                _esc(_limits_text(any_v) + (" (default)" if origin == "default" else "")),
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
        + " (FAIL if any measurement fails, then UNSET, then MARGINAL; an info value is "
        "disclosed, not judged)</p>"
    )
    table = _table(
        ["measurement", "what", "limits", "real device", "twin", "note"],
        rows,
        table_id="verdicts-table",
        numeric_from=99,
        row_attrs=attrs,
    )
    return True, head + table + _settings_html(ctx.procedures)


def _limits_sources(procedures: list[_Procedure]) -> dict[tuple[str, str], str]:
    """(source, measurement) → "default" | "scenario", as the run stored it with each
    procedure's verdicts (runs from before this was stored: the parsed scenario's flow and
    bolus claims)."""
    out: dict[tuple[str, str], str] = {}
    for procedure in procedures:
        for verdict in _list(_dict(procedure.stored).get("verdicts")):
            verdict = _dict(verdict)
            if verdict.get("limits_source") in ("default", "scenario"):
                out[(str(verdict.get("source")), str(verdict.get("name")))] = str(
                    verdict["limits_source"]
                )
        parsed = procedure.parsed
        if not isinstance(parsed, Procedure) or "accuracy_percent" not in type(parsed).model_fields:
            continue
        origin = "scenario" if "accuracy_percent" in parsed.model_fields_set else "default"
        for name in ("mean_flow_error_a", "bolus_mean_deviation", "bolus_worst_deviation"):
            for source in _SOURCES:
                out.setdefault((source, name), origin)
    return out


def _density_text(analysis: dict[str, Any]) -> str | None:
    stored = _dict(analysis.get("gravimetry"))
    if stored:
        try:
            return GravimetricPolicy.from_dict(stored).describe()
        except (AnalysisError, TypeError):
            pass
    density = analysis.get("density_g_ml")
    if isinstance(density, int | float):
        return f"d = {density:.6f} g/mL (stored before the gravimetric policy was recorded)"
    return None


def _settings_html(procedures: list[_Procedure]) -> str:
    """Per procedure: d with its policy, then every analysis parameter with its origin."""
    parts = []
    for procedure in procedures:
        densities = {
            s: text
            for s in _SOURCES
            if s in procedure.analysis
            and (text := _density_text(procedure.analysis[s])) is not None
        }
        parameters = next(
            (
                _dict(procedure.analysis[s].get("parameters"))
                for s in _SOURCES
                if s in procedure.analysis and procedure.analysis[s].get("parameters")
            ),
            {},
        )
        if not parameters and isinstance(procedure.parsed, Procedure):
            parameters = procedure.parsed.parameters()
        if not densities and not parameters:
            continue
        html = f"<h3>Analysis settings ({_esc(procedure.label)}, {_esc(procedure.kind)})</h3>"
        if len(set(densities.values())) == 1:
            html += f"<p>mass to volume: {_esc(next(iter(densities.values())))}</p>"
        else:
            html += "".join(
                f"<p>mass to volume ({s}): {_esc(text)}</p>" for s, text in densities.items()
            )
        rows = [
            [
                f"<code>{_esc(name)}</code>",
                _esc(_parameter_value(_dict(entry).get("value"))),
                _esc(str(_dict(entry).get("source", ""))),
            ]
            for name, entry in parameters.items()
        ]
        if rows:
            html += _table(["parameter", "value", "set by"], rows, numeric_from=1)
        parts.append(html)
    return "".join(parts)


def _parameter_value(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, list):
        return ", ".join(_parameter_value(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


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
