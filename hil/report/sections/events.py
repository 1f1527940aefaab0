"""Section "Event log": every event the run recorded, in order, with counts per kind."""

from __future__ import annotations

from medtwin.hil.report.markup import _clock, _esc, _na, _table
from medtwin.hil.report.model import _Context


def _section_events(ctx: _Context) -> tuple[bool, str]:
    events = ctx.run.events
    if not events:
        return True, _na("The run recorded no events.")
    counts: dict[str, int] = {}
    for event in events:
        counts[event.kind] = counts.get(event.kind, 0) + 1
    head = (
        "<p>"
        + ", ".join(f"{n} {_esc(kind)}" for kind, n in sorted(counts.items()))
        + f" event(s); {counts.get('fault', 0)} fault(s), {counts.get('lost', 0)} lost "
        "device(s).</p>"
    )
    rows = [
        [
            _clock(e.t_s),
            f'<td><span class="kind kind-{_esc(e.kind)}">{_esc(e.kind)}</span></td>',
            _esc(e.device or e.channel or ""),
            _esc(e.message),
        ]
        for e in events
    ]
    table = _table(
        ["scenario time", "kind", "device / channel", "message"],
        rows,
        table_id="events-table",
        numeric_from=99,
    )
    return True, head + table
