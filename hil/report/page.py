"""The HTML page around the sections: inline CSS, the headline, navigation and footer.

Self-contained: CSS inline, figures as ``data:`` URIs, no script and no reference to
anything outside the file, so the HTML can be mailed, archived or printed as is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from medtwin.hil.report.markup import _badge, _esc, _overall, _utc
from medtwin.hil.report.model import ReportSection, _Context
from medtwin.hil.report.values import _SOURCES, _generator

_CSS = """
:root { --pass:#1a7f37; --pass-bg:#dafbe1; --fail:#cf222e; --fail-bg:#ffebe9;
  --marginal:#9a6700; --marginal-bg:#fff8c5; --unset:#57606a; --unset-bg:#eaeef2; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
  color:#1f2328; margin: 0 auto; max-width: 1000px; padding: 1.5em; }
h1 { font-size: 1.6em; margin-bottom: .2em; }
h2 { font-size: 1.25em; border-bottom: 1px solid #d0d7de; padding-bottom: .2em;
  margin-top: 2em; }
h3 { font-size: 1.05em; }
table { border-collapse: collapse; margin: .6em 0; font-size: .92em; }
th, td { border: 1px solid #d0d7de; padding: .25em .55em; text-align: left;
  vertical-align: top; }
thead th { background: #f6f8fa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.facts th { background: #f6f8fa; width: 14em; font-weight: 600; }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
  font-size: .9em; }
pre { background: #f6f8fa; padding: .8em; overflow-x: auto; white-space: pre-wrap; }
details { margin: .6em 0; } summary { cursor: pointer; }
figure { margin: .8em 0; } figure img { max-width: 100%; height: auto; }
figcaption { font-size: .9em; color: #57606a; }
.badge { display: inline-block; padding: 0 .45em; border-radius: .3em; font-weight: 600;
  font-size: .85em; background: var(--unset-bg); color: var(--unset); }
.PASS .badge, .badge.PASS, .status-completed { background: var(--pass-bg); color: var(--pass); }
.FAIL .badge, .badge.FAIL, .status-aborted, .status-interrupted {
  background: var(--fail-bg); color: var(--fail); }
.MARGINAL .badge, .badge.MARGINAL, .status-degraded {
  background: var(--marginal-bg); color: var(--marginal); }
td.outcome.PASS { background: #f3fcf5; } td.outcome.FAIL { background: #fff5f4; }
td.outcome.MARGINAL { background: #fffcea; }
p.na { color: #57606a; font-style: italic; }
p.ok { color: var(--pass); font-weight: 600; }
p.fail { color: var(--fail); font-weight: 600; }
p.warn { color: var(--marginal); font-weight: 600; }
p.note { font-size: .9em; color: #57606a; }
.kind { font-family: ui-monospace, monospace; font-size: .85em; }
.kind-alarm, .kind-fault, .kind-lost, .kind-drift { color: var(--fail); font-weight: 600; }
nav ol { columns: 2; font-size: .92em; }
footer { margin-top: 3em; font-size: .85em; color: #57606a; }
@media print { body { max-width: none; } nav { display: none; } details { display: block; }
  h2 { break-after: avoid; } figure, table { break-inside: avoid; } }
"""


def _headline(ctx: _Context, verdict_outcomes: Mapping[str, str | None]) -> str:
    info = ctx.run.info
    drift = (
        f'<span class="badge FAIL">DRIFT ({len(ctx.drift)})</span>'
        if ctx.drift
        else '<span class="badge PASS">no drift</span>'
    )
    return (
        '<p class="headline">'
        f'status <span class="badge status-{_esc(info.status)}">{_esc(info.status)}</span> · '
        f"real device {_badge(verdict_outcomes['real'])} · "
        f"twin {_badge(verdict_outcomes['twin'])} · {drift}</p>"
    )


def _page(ctx: _Context, title: str, sections: Sequence[ReportSection]) -> str:
    info = ctx.run.info
    outcomes = {
        s: _overall(str(v.outcome) for v in ctx.run.verdicts if str(v.source) == s)
        for s in _SOURCES
    }
    nav = "".join(
        f'<li><a href="#{s.key}">{_esc(s.title)}</a>{"" if s.applies else " (n/a)"}</li>'
        for s in sections
    )
    body = "".join(
        f'<section id="{s.key}" data-applies="{str(s.applies).lower()}">'
        f"<h2>{_esc(s.title)}</h2>{s.body_html}</section>"
        for s in sections
    )
    generator = info.software_version if info.software_version else "medtwin"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="generator" content="{_esc(_generator())}">'
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>{_esc(title)}</h1>"
        f"<p>bench <strong>{_esc(info.bench_name)}</strong>, scenario "
        f"<strong>{_esc(info.scenario_name)}</strong>, started {_esc(_utc(info.started_utc))}, "
        f"recorded by {_esc(generator)}</p>"
        f"{_headline(ctx, outcomes)}<nav><ol>{nav}</ol></nav></header>"
        f"<main>{body}</main>"
        f"<footer>Report of run {info.id} by {_esc(_generator())}. Every number is "
        "taken from the run store; the figures are embedded, the file needs nothing else."
        "</footer></body></html>\n"
    )
