"""Sections "Line pressure" and "Occlusion test".

The line pressure with occlusions shaded and alarms marked, and the results of the
occlusion test of IEC 60601-2-24 (2012 edition, occlusion clause under 201.12.4.4; the
sub-clause number is not confirmed) as the run stored them.
"""

from __future__ import annotations

import numpy as np
from matplotlib.transforms import blended_transform_factory
from medtwin.hil.report.figures import (
    _LIMIT_COLOUR,
    _drift_legend,
    _mark_drift,
    _plot_pair,
    _plot_residual,
)
from medtwin.hil.report.markup import _clock, _drift_caption, _esc, _figure_html, _na, _num, _table
from medtwin.hil.report.model import _Context, _Procedure
from medtwin.hil.report.sections._parts import _analysed_sides, _errors_html
from medtwin.hil.report.values import _channel, _dict, _has_data, _list
from medtwin.hil.store import RunData


def _pressure_channels(run: RunData) -> list[str]:
    """Line-pressure channels with data: the bench I/O's transducer first, then the pump's."""
    names = []
    for kind in ("bench-io", "pump"):
        for device in run.devices:
            if device.kind == kind:
                name = f"{device.name}.pressure_mmhg"
                if _has_data(_channel(run, name, "real")) or _has_data(_channel(run, name, "twin")):
                    names.append(name)
    return names


def _occlusions(run: RunData, end_s: float) -> list[tuple[float, float]]:
    spans, start = [], None
    for event in run.events:
        action = _dict(event.data).get("action") if event.kind == "command" else None
        if action == "occlude" and start is None:
            start = event.t_s
        elif action == "release" and start is not None:
            spans.append((start, event.t_s))
            start = None
    if start is not None:
        spans.append((start, end_s))
    return spans


def _alarm_changes(run: RunData) -> list[tuple[float, str, list[str], list[str]]]:
    """(t_s, device, raised, cleared) for each alarm event, from the alarm sets."""
    previous: dict[str, set[str]] = {}
    out = []
    for event in run.events:
        if event.kind != "alarm":
            continue
        device = event.device or ""
        now = {str(a) for a in _list(_dict(event.data).get("alarms"))}
        before = previous.get(device, set())
        out.append((event.t_s, device, sorted(now - before), sorted(before - now)))
        previous[device] = now
    return out


def _section_pressure(ctx: _Context) -> tuple[bool, str]:
    names = _pressure_channels(ctx.run)
    if not names:
        return False, _na("No line pressure recorded in this run.")
    name = names[0]
    figure, (ax, ax_res) = ctx.figures.new(5.6, rows=2)
    _plot_pair(ax, ctx.run, name, ctx.axis)
    end_s = max((float(np.nanmax(ch.t_s)) for ch in ctx.run.channels if len(ch)), default=0.0)
    spans = _occlusions(ctx.run, end_s)
    for i, (start, stop) in enumerate(spans):
        ax.axvspan(
            ctx.axis(start),
            ctx.axis(stop),
            color="#7f7f7f",
            alpha=0.15,
            lw=0,
            label="line occluded" if i == 0 else None,
        )
    changes = _alarm_changes(ctx.run)
    trans = blended_transform_factory(ax.transData, ax.transAxes)
    raised_label = cleared_label = True
    for t_s, device, raised, cleared in changes:
        if raised:
            ax.axvline(
                ctx.axis(t_s),
                color=_LIMIT_COLOUR,
                lw=1.2,
                label="alarm raised" if raised_label else None,
            )
            ax.text(
                ctx.axis(t_s),
                0.02,
                f" {device}: {', '.join(raised)}",
                transform=trans,
                color=_LIMIT_COLOUR,
                rotation=90,
                va="bottom",
                ha="right",
                fontsize=7,
            )
            raised_label = False
        if cleared and not raised:
            ax.axvline(
                ctx.axis(t_s),
                color="#7f7f7f",
                ls=":",
                lw=1.0,
                label="alarm cleared" if cleared_label else None,
            )
            cleared_label = False
    _mark_drift(ax, ctx.drift_on(name), ctx.axis)
    ax.set_ylabel("pressure (mmHg)")
    ax.set_title(f"Line pressure ({name})")
    ax.legend(loc="best")
    if not _plot_residual(ax_res, ctx.run, name, "mmHg", ctx.axis, ctx.drift_on(name)):
        ax_res.text(0.5, 0.5, "no residual", transform=ax_res.transAxes, ha="center")
    _drift_legend(ax_res, ctx.drift_on(name))
    ax_res.set_xlabel(ctx.axis.label)
    item = ctx.figures.add(figure, name="pressure", title="line pressure", section="pressure")
    raised_count = sum(1 for c in changes if c[2])
    caption = (
        f"Line pressure {name}, real device and twin, with the real − twin residual below. "
        + (
            f"{len(spans)} occlusion(s) shaded (occlude → release). "
            if spans
            else "The line was never occluded. "
        )
        + (f"{raised_count} alarm(s) raised (red)." if raised_count else "No alarm was raised.")
        + _drift_caption([n for n, _ in ctx.drift_on(name)])
    )
    return True, _figure_html(item, _esc(caption))


_OCCLUSION_ROWS = (
    ("occlusion_s", "line occluded at", "time"),
    ("release_s", "line reopened at", "time"),
    ("baseline_pressure_mmhg", "baseline pressure (mmHg)", "num"),
    ("alarm_s", "alarm at", "time"),
    ("time_to_alarm_s", "time to alarm (s)", "num"),
    ("pressure_at_alarm_mmhg", "pressure at alarm (mmHg)", "num"),
    ("peak_pressure_mmhg", "peak pressure while occluded (mmHg)", "num"),
    ("bolus_end_s", "bolus collected until", "time"),
    ("bolus_mass_g", "unintended bolus mass (g)", "num"),
    ("bolus_volume_ml", "unintended bolus volume (mL)", "num"),
)


_OCCLUSION_NOTE = (
    '<p class="note">Occlusion test of IEC 60601-2-24 (2012 edition, occlusion clause under '
    "201.12.4.4; the sub-clause number is not confirmed). The bolus ends when the pressure is "
    "back within 5 mmHg of the baseline (our reading of “until the pressure is reduced”). "
    "Verdicts against the declared maxima are in the verdict table.</p>"
)


def _occlusion_part(ctx: _Context, procedure: _Procedure, index: int, count: int) -> str | None:
    sides = _analysed_sides(procedure)
    if not sides:
        return None
    rows = []
    for key, label, kind in _OCCLUSION_ROWS:
        row = [_esc(label)]
        for source in sides:
            value = procedure.analysis[source].get(key)
            if value is None and key in ("alarm_s", "time_to_alarm_s"):
                row.append("no alarm before the release")
            else:
                row.append(_clock(value) if kind == "time" else _num(value, 5))
        rows.append(row)
    table = _table(["", *sides], rows, table_id="occlusion-table")
    return f"<h3>{_esc(procedure.label)}</h3>{table}{_errors_html(procedure)}"
