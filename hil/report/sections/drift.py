"""Sections "Drift events" and "Residual statistics".

The drift events the comparator raised (tolerance, CUSUM, EWMA; see
:mod:`medtwin.hil.comparator`), numbered as in the figures, and the residual statistics the
comparator recorded with the run.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from medtwin.hil.report.markup import _clock, _esc, _na, _num, _table
from medtwin.hil.report.model import _Context
from medtwin.hil.report.values import _dict, _finite, _residual
from medtwin.hil.store import RunData


def _section_drift(ctx: _Context) -> tuple[bool, str]:
    if not ctx.drift:
        return True, (
            '<p class="ok" id="no-drift">No drift: the device behaved like its twin on every '
            "compared channel.</p>"
        )
    rows = []
    for number, event in ctx.drift:
        rel = _finite(event.get("magnitude_rel"))
        magnitude = f"{_num(event.get('magnitude'), signed=True)} {_esc(event.get('unit', ''))}"
        if rel is not None:
            magnitude += f" ({100 * rel:+.3g} %)"
        rows.append(
            [
                f"#{number}",
                f"<code>{_esc(event.get('channel'))}</code>",
                "real above twin" if event.get("direction") == "high" else "real below twin",
                _esc(event.get("statistic")),
                _clock(event.get("onset_t_s")),
                _clock(event.get("detected_t_s")),
                magnitude,
                f"{_num(event.get('value'))} / {_num(event.get('threshold'))}",
                _esc(event.get("n_samples", "—")),
            ]
        )
    head = (
        f'<p class="fail" id="drift-found">DRIFT: {len(ctx.drift)} drift event(s); the device '
        "does not behave like its twin.</p>"
    )
    table = _table(
        [
            "#",
            "channel",
            "direction",
            "detector",
            "onset",
            "detected",
            "magnitude (mean residual)",
            "statistic / threshold",
            "samples",
        ],
        rows,
        table_id="drift-table",
        numeric_from=4,
    )
    return True, head + table


def _computed_stats(run: RunData) -> dict[str, dict[str, Any]]:
    """Residual statistics from the channels, for a run whose summary has none."""
    out: dict[str, dict[str, Any]] = {}
    for channel in run.channels:
        if channel.source != "real" or channel.name in out:
            continue
        residual = _residual(run, channel.name)
        if residual is None:
            continue
        values = residual[1]
        ok = values[np.isfinite(values)]
        n = int(ok.size)
        out[channel.name] = {
            "unit": channel.unit,
            "n": n,
            "n_missing": int(values.size - n),
            "mean": float(np.mean(ok)) if n else None,
            "sd": float(np.std(ok, ddof=1)) if n > 1 else None,
            "rms": float(np.sqrt(np.mean(ok**2))) if n else None,
            "max_abs": float(np.max(np.abs(ok))) if n else None,
            "sigma": None,
            "sigma_source": "not recorded",
        }
    return out


def _residual_stats(run: RunData) -> tuple[dict[str, dict[str, Any]], bool]:
    channels = _dict(_dict(run.summary).get("channels"))
    if channels:
        return {str(k): _dict(v) for k, v in channels.items()}, True
    return _computed_stats(run), False


def _section_residuals(ctx: _Context) -> tuple[bool, str]:
    stats, stored = _residual_stats(ctx.run)
    if not stats:
        return False, _na("No channel has both a real and a twin series: no residuals.")
    rows = [
        [
            f"<code>{_esc(name)}</code>",
            _esc(s.get("unit", "")),
            _esc(f"{int(s.get('n') or 0):,}"),
            _esc(f"{int(s.get('n_missing') or 0):,}"),
            _num(s.get("mean"), signed=True),
            _num(s.get("sd")),
            _num(s.get("rms")),
            _num(s.get("max_abs")),
            f"{_num(s.get('sigma'))} ({_esc(s.get('sigma_source', '—'))})",
        ]
        for name, s in stats.items()
    ]
    note = (
        "Residual r = real − twin over the valid samples, as the comparator computed it during "
        "the run; σ is the noise level its CUSUM and EWMA detectors used."
        if stored
        else "The run stored no comparator statistics; these were computed by the report from "
        "the stored channels."
    )
    table = _table(
        ["channel", "unit", "samples", "missing", "mean", "sd", "rms", "max |r|", "σ used"],
        rows,
        table_id="residuals-table",
        numeric_from=2,
    )
    return True, table + f'<p class="note">{_esc(note)}</p>'
