"""Section "Bolus accuracy": the boluses of IEC 60601-2-24:1998 clause 50.106 as weighed,
per bolus and summarised, real device and twin.
"""

from __future__ import annotations

from medtwin.hil.report.markup import _esc, _num, _table
from medtwin.hil.report.model import _Context, _Procedure
from medtwin.hil.report.sections._parts import _analysed_sides, _errors_html
from medtwin.hil.report.values import _finite, _list

_BOLUS_NOTE = (
    '<p class="note">Bolus accuracy after IEC 60601-2-24:1998 50.106: each bolus weighed on '
    "the balance (basal delivery subtracted), deviation 100·(W/d − V)/V.</p>"
)


def _bolus_part(ctx: _Context, procedure: _Procedure, index: int, count: int) -> str | None:
    sides = _analysed_sides(procedure)
    if not sides:
        return None
    n_boluses = max(len(_list(procedure.analysis[s].get("measured_mass_g"))) for s in sides)
    expected = _finite(procedure.analysis[sides[0]].get("expected_ml"))
    headers = ["bolus", "set volume (mL)"]
    for source in sides:
        headers += [f"{source} mass (g)", f"{source} deviation (%)"]
    rows = []
    for i in range(n_boluses):
        row = [str(i + 1), _num(expected)]
        for source in sides:
            masses = _list(procedure.analysis[source].get("measured_mass_g"))
            deviations = _list(procedure.analysis[source].get("deviation_percent"))
            row.append(_num(masses[i] if i < len(masses) else None, 5))
            row.append(_num(deviations[i] if i < len(deviations) else None, signed=True))
        rows.append(row)
    for key, label in (
        ("mean_deviation_percent", "mean deviation"),
        ("worst_deviation_percent", "worst deviation"),
    ):
        row = [label, ""]
        for source in sides:
            row += ["", _num(procedure.analysis[source].get(key), signed=True)]
        rows.append(row)
    table = _table(headers, rows, table_id="bolus-table")
    return f"<h3>{_esc(procedure.label)}</h3>{table}{_errors_html(procedure)}"
