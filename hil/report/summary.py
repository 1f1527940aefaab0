"""The JSON summary of a report (``summary.json``): run metadata, verdicts, drift events,
analyses and residuals, strict JSON (non-finite numbers become ``null``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from medtwin.hil.calibration.stored import (
    calibration_matches,
)
from medtwin.hil.report.figures import ReportFigure
from medtwin.hil.report.markup import _overall
from medtwin.hil.report.model import REPORT_FORMAT, REPORT_FORMAT_VERSION, ReportSection, _Context
from medtwin.hil.report.sections.drift import _residual_stats
from medtwin.hil.report.values import _SOURCES, _dict, _generator, _list, _plain


def _summary(
    ctx: _Context, sections: Sequence[ReportSection], figures: Sequence[ReportFigure]
) -> dict[str, Any]:
    run, info = ctx.run, ctx.run.info
    stats, stored = _residual_stats(run)
    counts: dict[str, int] = {}
    for event in run.events:
        counts[event.kind] = counts.get(event.kind, 0) + 1
    record = ctx.calibration
    calibration = None
    if record is not None:
        calibration = {
            "device_key": record.device_key,
            "version": record.version,
            "created_utc": record.created_utc.isoformat(),
            "run_id": record.run_id,
            "params": record.params,
            "residual_rms_before": record.residual_rms_before,
            "residual_rms_after": record.residual_rms_after,
            "note": record.note,
            "matches_run_twin": calibration_matches(record, run.twin_params),
        }
    document = {
        "format": REPORT_FORMAT,
        "format_version": REPORT_FORMAT_VERSION,
        "generator": _generator(),
        "run": info.as_json(),
        "bench": {"name": info.bench_name, "sha256": info.bench_sha256},
        "scenario": {"name": info.scenario_name, "sha256": info.scenario_sha256},
        "devices": [d.as_json() for d in run.devices],
        "calibration": calibration,
        "twin_params": run.twin_params,
        "outcome": {
            s: _overall(str(v.outcome) for v in run.verdicts if str(v.source) == s)
            for s in _SOURCES
        },
        "verdicts": [v.as_json() for v in run.verdicts],
        "drift": bool(ctx.drift),
        "drift_events": [e for _, e in ctx.drift],
        "residuals": {"source": "run" if stored else "report", "channels": stats},
        "analysis": [
            {
                "kind": p.kind,
                "label": p.label,
                "origin": p.origin,
                "analysis": p.analysis,
                "errors": p.errors,
            }
            for p in ctx.procedures
        ],
        "events": counts,
        "lost_devices": _list(_dict(run.summary).get("lost_devices")),
        "sections": [{"key": s.key, "title": s.title, "applies": s.applies} for s in sections],
        "figures": [
            {"name": f.name, "file": f.filename, "title": f.title, "section": f.section}
            for f in figures
        ],
    }
    plain: dict[str, Any] = _plain(document)
    return plain
