"""Sections "Start-up curve", "Trumpet curve" and "Flow and residual".

The start-up curve and the trumpet curve of IEC 60601-2-24:1998 clause 50.102 (kept by the
2012 edition in 201.12.1), real device and twin, with the declared accuracy; then the flow
from the balance with the real − twin residuals and the drift events marked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from medtwin.hil.report.figures import (
    _LIMIT_COLOUR,
    _SOURCE_STYLES,
    _drift_legend,
    _mark_drift,
    _plot_pair,
    _plot_residual,
    band_caption,
)
from medtwin.hil.report.markup import _drift_caption, _esc, _figure_html, _na, _num, _table
from medtwin.hil.report.model import _FLOW_KIND, _accuracy_limits, _Context, _Procedure
from medtwin.hil.report.sections._parts import _errors_html, _flow_figure
from medtwin.hil.report.sections.pressure import _pressure_channels
from medtwin.hil.report.values import _SOURCES, _channel, _dict, _finite, _floats, _has_data, _list
from medtwin.hil.store import VerdictRecord


def _startup_part(ctx: _Context, procedure: _Procedure, index: int, count: int) -> str | None:
    curves = {
        s: _dict(procedure.analysis[s].get("startup")) for s in _SOURCES if s in procedure.analysis
    }
    curves = {s: c for s, c in curves.items() if _list(c.get("t_min"))}
    if not curves:
        return None
    any_analysis = next(iter(procedure.analysis.values()))
    rate = _finite(any_analysis.get("rate_ml_h"))
    interval = _finite(any_analysis.get("interval_min"))
    lower, upper = _accuracy_limits(procedure, ctx.run.verdicts)
    figure, (ax,) = ctx.figures.new(4.2)
    for source, (colour, style) in _SOURCE_STYLES.items():
        if source in curves:
            t_min = _floats(curves[source]["t_min"])
            flow = _floats(curves[source]["flow_ml_h"])
            ax.plot(t_min, flow, color=colour, ls=style, lw=1.0, label=f"{source}: Q_i")
    if rate is not None:
        ax.axhline(rate, color="#333333", lw=0.9, label=f"set rate r = {rate:g} mL/h")
        label: str | None = f"declared accuracy [{_num(lower)}, {_num(upper)}] %"
        for limit in (lower, upper):
            if limit is not None:
                ax.axhline(
                    rate * (1 + limit / 100.0), color=_LIMIT_COLOUR, ls=":", lw=1.0, label=label
                )
                label = None
    ax.set_xlabel("time after the start (min)")
    ax.set_ylabel("flow Q_i (mL/h)")
    title = f"Start-up curve, r = {_num(rate)} mL/h, S = {_num(interval)} min"
    ax.set_title(title + f" ({procedure.label})")
    ax.legend(loc="lower right")
    missing = [s for s in _SOURCES if s not in curves]
    return _flow_figure(
        ctx,
        figure,
        procedure,
        section="startup",
        title="start-up curve",
        index=index,
        count=count,
        caption="flow Q_i = 60·ΔW/(S·d) per sample interval S over the start-up period "
        "(IEC 60601-2-24:1998 50.102), real device and twin.",
    ) + _errors_html(procedure, missing)


def _trumpet_windows(analysis: Mapping[str, Any]) -> dict[float, dict[str, Any]]:
    windows = _dict(_dict(analysis.get("trumpet")).get("windows"))
    out: dict[float, dict[str, Any]] = {}
    for key, value in windows.items():
        try:
            out[float(key)] = _dict(value)
        except ValueError:
            continue
    return dict(sorted(out.items()))


def _window_limits(
    verdicts: Sequence[VerdictRecord], window_min: float
) -> tuple[float | None, float | None]:
    names = (f"ep_max_{window_min:g}min", f"ep_min_{window_min:g}min")
    lows = [v.lower for v in verdicts if v.measurement in names and v.lower is not None]
    highs = [v.upper for v in verdicts if v.measurement in names and v.upper is not None]
    return (min(lows) if lows else None, max(highs) if highs else None)


def _trumpet_part(ctx: _Context, procedure: _Procedure, index: int, count: int) -> str | None:
    sides = {
        s: procedure.analysis[s]
        for s in _SOURCES
        if s in procedure.analysis and _trumpet_windows(procedure.analysis[s])
    }
    if not sides:
        return None
    lower, upper = _accuracy_limits(procedure, ctx.run.verdicts)
    figure, (ax,) = ctx.figures.new(4.6)
    all_windows: set[float] = set()
    for source, (colour, style) in _SOURCE_STYLES.items():
        if source not in sides:
            continue
        windows = _trumpet_windows(sides[source])
        p = np.array(list(windows))
        all_windows.update(windows)
        ep_max = _floats([w.get("ep_max") for w in windows.values()])
        ep_min = _floats([w.get("ep_min") for w in windows.values()])
        ax.plot(p, ep_max, color=colour, ls=style, marker="^", lw=1.1, label=f"{source}: Ep(max)")
        ax.plot(p, ep_min, color=colour, ls=style, marker="v", lw=1.1, label=f"{source}: Ep(min)")
        mean = _finite(_dict(sides[source].get("trumpet")).get("mean_error_percent"))
        if mean is not None:
            ax.axhline(mean, color=colour, ls=":", lw=1.0, label=f"{source}: A = {mean:+.3g} %")
    if lower is not None or upper is not None:
        for limit in (lower, upper):
            if limit is not None:
                ax.axhline(limit, color=_LIMIT_COLOUR, ls="--", lw=1.2)
        ax.plot(
            [],
            [],
            color=_LIMIT_COLOUR,
            ls="--",
            label=f"declared accuracy [{_num(lower)}, {_num(upper)}] %",
        )
    windows_sorted = sorted(all_windows)
    declared_p, declared_limit = [], []
    for window in windows_sorted:
        for limit in _window_limits(ctx.run.verdicts, window):
            if limit is not None:
                declared_p.append(window)
                declared_limit.append(limit)
    if declared_p:
        ax.plot(
            declared_p,
            declared_limit,
            ls="none",
            marker="_",
            markersize=14,
            color=_LIMIT_COLOUR,
            label="declared window limits",
        )
    ax.axhline(0.0, color="#555555", lw=0.6)
    ax.set_xticks(windows_sorted)
    ax.set_xlabel("observation window P (min)")
    ax.set_ylabel("flow error (%)")
    any_trumpet = _dict(next(iter(sides.values())).get("trumpet"))
    period = _list(any_trumpet.get("analysis_period_min"))
    period_text = f"{_num(period[0])}–{_num(period[1])} min" if len(period) == 2 else "?"
    ax.set_title(
        f"Trumpet curve, r = {_num(any_trumpet.get('rate_ml_h'))} mL/h, analysis period "
        f"{period_text} ({procedure.label})"
    )
    ax.legend(loc="best", ncols=2)
    figure_html = _flow_figure(
        ctx,
        figure,
        procedure,
        section="trumpet",
        title="trumpet curve",
        index=index,
        count=count,
        caption="the largest and smallest mean flow error over any window of P minutes in the "
        "analysis period (IEC 60601-2-24:1998 50.102, 2012 201.12.1), real device and twin, "
        "with the declared accuracy.",
    )
    return figure_html + _trumpet_table(sides, windows_sorted) + _errors_html(procedure)


def _trumpet_table(sides: Mapping[str, Mapping[str, Any]], windows: Sequence[float]) -> str:
    per_side = {s: _trumpet_windows(a) for s, a in sides.items()}
    headers = ["P (min)"]
    for source in sides:
        headers += [f"{source} Ep(max) %", f"{source} Ep(min) %"]
    rows = []
    for window in windows:
        row = [f"{window:g}"]
        for source in sides:
            entry = per_side[source].get(window, {})
            row += [_num(entry.get("ep_max"), signed=True), _num(entry.get("ep_min"), signed=True)]
        rows.append(row)
    mean_row = ["A (mean error)"]
    flow_row = ["mean flow (mL/h)"]
    for source in sides:
        trumpet = _dict(sides[source].get("trumpet"))
        mean_row += [_num(trumpet.get("mean_error_percent"), signed=True), ""]
        flow_row += [_num(trumpet.get("mean_flow_ml_h"), 6), ""]
    notes = {str(_dict(a.get("trumpet")).get("resampling_note") or "") for a in sides.values()} - {
        ""
    }
    table = _table(headers, [*rows, mean_row, flow_row], table_id="trumpet-table")
    return table + "".join(f'<p class="note">{_esc(n)}</p>' for n in sorted(notes))


def _section_flow(ctx: _Context) -> tuple[bool, str]:
    balance = ctx.device_of_kind("balance")
    flow_name, mass_name = f"{balance}.flow_ml_h", f"{balance}.mass_g"
    if balance is None or not _has_data(_channel(ctx.run, flow_name, "real")):
        return False, _na("No balance flow recorded in this run: no flow or residual plot.")
    plotted = {flow_name, mass_name}
    pressure_names = set(_pressure_channels(ctx.run))
    # Drift on any other channel (a pump counter, say) gets a residual panel here too, so
    # every drift event is marked on some figure.
    others = sorted(
        {
            str(e.get("channel"))
            for _, e in ctx.drift
            if e.get("channel") not in plotted | pressure_names
        }
    )
    panels = [flow_name, mass_name, *others]
    units = {ch.name: ch.unit for ch in ctx.run.channels}
    figure, axes = ctx.figures.new(2.2 + 2.0 * len(panels), rows=1 + len(panels))
    top = axes[0]
    _plot_pair(top, ctx.run, flow_name, ctx.axis)
    for procedure in ctx.of_kind(_FLOW_KIND):
        start = _finite(getattr(procedure.parsed, "at", None)) or 0.0
        period = getattr(procedure.parsed, "analysis_period", None)
        if period is not None:
            top.axvspan(
                ctx.axis(start + period[0]),
                ctx.axis(start + period[1]),
                color="#2ca02c",
                alpha=0.08,
                lw=0,
                label=f"analysis period ({procedure.label})",
            )
    top.set_ylabel("flow (mL/h)")
    top.set_title(f"Flow from the balance ({balance}) and real − twin residuals")
    top.legend(loc="lower right")
    _mark_drift(top, ctx.drift_on(flow_name), ctx.axis)
    for ax, name in zip(axes[1:], panels, strict=True):
        if not _plot_residual(ax, ctx.run, name, units.get(name, ""), ctx.axis, ctx.drift_on(name)):
            ax.text(0.5, 0.5, f"{name}: no residual", transform=ax.transAxes, ha="center")
    _drift_legend(axes[-1], [e for name in panels for e in ctx.drift_on(name)])
    axes[-1].set_xlabel(ctx.axis.label)
    item = ctx.figures.add(figure, name="flow", title="flow and residuals", section="flow")
    marked = [n for n, e in ctx.drift if e.get("channel") in panels]
    caption = (
        "Flow from consecutive balance readings, real device and twin; below, the residual "
        "real − twin of the flow and of the balance mass"
        + (f" and of {', '.join(others)}" if others else "")
        + "."
        + band_caption(ctx.run, [flow_name, *panels])
        + _drift_caption(marked)
    )
    return True, _figure_html(item, _esc(caption))
