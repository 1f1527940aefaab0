"""Sections "Run", "Bench and devices" and "Scenario": who and what was on the bench.

Device identities and ports as the run recorded them, the bench and scenario files as
stored, each checked against the SHA-256 the run recorded when it started.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from medtwin.hil.report.markup import _clock, _esc, _facts, _na, _table, _utc
from medtwin.hil.report.model import _Context, _Procedure
from medtwin.hil.report.values import _dict, _list, _sha256, _toml


def _section_run(ctx: _Context) -> tuple[bool, str]:
    run, info = ctx.run, ctx.run.info
    summary = _dict(run.summary)
    lost = [str(x) for x in _list(summary.get("lost_devices"))] or sorted(
        {str(e.device) for e in run.events if e.kind == "lost" and e.device}
    )
    recorded_s = max((float(np.nanmax(ch.t_s)) for ch in run.channels if len(ch)), default=0.0)
    samples = ", ".join(f"{_esc(k)}: {int(v):,}" for k, v in _dict(summary.get("samples")).items())
    clock = {
        "virtual": "virtual (scenario time runs as fast as the emulated devices allow)",
        "wall": "wall (real time)",
    }.get(info.clock_kind, info.clock_kind)
    items = [
        ("run", f"{info.id}"),
        ("status", f'<span class="badge status-{_esc(info.status)}">{_esc(info.status)}</span>'),
        ("started (UTC)", _esc(_utc(info.started_utc))),
        ("ended (UTC)", _esc(_utc(info.ended_utc))),
        ("wall time", _esc(f"{info.duration_s:.1f} s")),
        ("scenario time recorded", _esc(_clock(recorded_s))),
        ("clock", _esc(clock)),
        ("software", _esc(info.software_version)),
        ("host, process", _esc(f"{info.hostname}, pid {info.pid}")),
        ("samples", samples or _esc(f"{info.sample_count:,} in {info.channel_count} channels")),
        (
            "lost devices",
            _esc(", ".join(lost)) if lost else "none (every device answered throughout)",
        ),
    ]
    return True, _facts(items)


def _text_block(what: str, name: str, text: str, stored_sha: str) -> str:
    actual = _sha256(text)
    check = (
        "matches the stored SHA-256"
        if actual == stored_sha
        else f"does NOT match the stored SHA-256 (text hashes to {actual})"
    )
    return (
        f"<details><summary>{_esc(what)} file <code>{_esc(name)}</code> ({_esc(check)})"
        f"</summary><pre>{_esc(text)}</pre></details>"
    )


def _section_devices(ctx: _Context) -> tuple[bool, str]:
    run, info = ctx.run, ctx.run.info
    bench = _toml(run.bench_text)
    rows = [
        [
            _esc(d.name),
            _esc(d.kind),
            _esc(d.protocol),
            f"<code>{_esc(d.port)}</code>",
            _esc(d.identity.get("model") or "—"),
            _esc(d.identity.get("serial") or "—"),
            _esc(d.identity.get("firmware") or "—"),
        ]
        for d in run.devices
    ]
    emulated = [
        str(d.get("name"))
        for d in _list(bench.get("devices"))
        if isinstance(d, dict) and d.get("port") == "emulated"
    ]
    parts = [
        _facts(
            [
                ("bench", _esc(info.bench_name)),
                ("description", _esc(bench.get("description") or "—")),
                ("bench SHA-256", f"<code>{_esc(info.bench_sha256)}</code>"),
                (
                    "emulated devices",
                    _esc(", ".join(emulated)) if emulated else "none (all real hardware)",
                ),
            ]
        ),
        _table(
            ["device", "kind", "protocol", "port", "model", "serial", "firmware"],
            rows,
            table_id="devices-table",
            numeric_from=99,
        )
        if rows
        else _na("The run recorded no devices."),
        _text_block("bench", info.bench_name, run.bench_text, info.bench_sha256),
    ]
    return True, "".join(parts)


def _toml_value(value: Any) -> str:
    """A scenario value written back the way the TOML file spells it (JSON agrees with TOML
    on strings, numbers, booleans and arrays)."""
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):  # dates and times
        return str(value)


def _procedure_brief(procedure: _Procedure) -> str:
    keys = [k for k in procedure.table if k not in ("kind", "label")]
    settings = ", ".join(f"{k} = {_toml_value(procedure.table[k])}" for k in keys)
    return f"{procedure.label}: {procedure.kind}" + (f" ({settings})" if settings else "")


def _section_scenario(ctx: _Context) -> tuple[bool, str]:
    run, info = ctx.run, ctx.run.info
    scenario = _toml(run.scenario_text)
    procedures = (
        "<ul>" + "".join(f"<li>{_esc(_procedure_brief(p))}</li>" for p in ctx.procedures) + "</ul>"
        if ctx.procedures
        else "none (hand-written steps only)"
    )
    steps = len(_list(scenario.get("steps")))
    items = [
        ("scenario", _esc(info.scenario_name)),
        ("description", _esc(scenario.get("description") or "—")),
        ("duration", _esc(scenario.get("duration", "—"))),
        ("scenario SHA-256", f"<code>{_esc(info.scenario_sha256)}</code>"),
        ("procedures", procedures),
        ("steps", _esc(steps)),
    ]
    body = _facts(items) + _text_block(
        "scenario", info.scenario_name, run.scenario_text, info.scenario_sha256
    )
    return True, body
