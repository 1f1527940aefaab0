"""Shared parts of the per-procedure sections: one part per procedure of a kind, in run
order, with its analysis errors, or one line saying why there is no analysis.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from matplotlib.figure import Figure
from medtwin.hil.report.markup import _esc, _figure_html, _na
from medtwin.hil.report.model import _Context, _Procedure
from medtwin.hil.report.values import _SOURCES
from medtwin.hil.store import RunData


def _flow_note(procedure: _Procedure) -> str:
    if procedure.origin == "recomputed":
        return (
            " The run stored no analysis for this procedure; the curves were computed by the "
            "report from the stored balance channels (medtwin.hil.analysis.iec60601_2_24)."
        )
    return ""


def _errors_html(procedure: _Procedure, sources: Iterable[str] | None = None) -> str:
    """The analysis errors of the procedure (of ``sources`` only, when given)."""
    wanted = set(_SOURCES if sources is None else sources)
    return "".join(
        f'<p class="warn">{_esc(procedure.label)}, {_esc(source)}: could not be analysed: '
        f"{_esc(message)}</p>"
        for source, message in sorted(procedure.errors.items())
        if source in wanted
    )


def _name(base: str, index: int, count: int) -> str:
    return base if count == 1 else f"{base}-{index + 1}"


def _not_analysed(procedure: _Procedure, run: RunData) -> str:
    if procedure.errors:
        return _errors_html(procedure)
    return _na(
        f"No analysis of {procedure.label} ({procedure.kind}): the run is {run.info.status}, "
        "and analyses run when a run completes."
    )


def _per_procedure(
    kind: str,
    part: Callable[[_Context, _Procedure, int, int], str | None],
    *,
    absent: str,
    note: str = "",
) -> Callable[[_Context], tuple[bool, str]]:
    """The builder of a section with one part per procedure of ``kind`` (in run order),
    then ``note``.

    ``part(ctx, procedure, index, count)`` renders one procedure, or gives None when the
    procedure has no analysis to show (its part then says why). A run without such a
    procedure has no section; ``absent`` says so.
    """

    def build(ctx: _Context) -> tuple[bool, str]:
        procedures = ctx.of_kind(kind)
        if not procedures:
            return False, _na(absent)
        parts = []
        for index, procedure in enumerate(procedures):
            html_part = part(ctx, procedure, index, len(procedures))
            parts.append(_not_analysed(procedure, ctx.run) if html_part is None else html_part)
        return True, "".join(parts) + note

    return build


def _analysed_sides(procedure: _Procedure) -> list[str]:
    return [s for s in _SOURCES if s in procedure.analysis]


def _flow_figure(
    ctx: _Context,
    figure: Figure,
    procedure: _Procedure,
    *,
    section: str,
    title: str,
    index: int,
    count: int,
    caption: str,
) -> str:
    """Add the ``section`` figure of one flow procedure; its HTML, captioned with the
    procedure's label, ``caption`` (HTML) and the note on how its flow was analysed."""
    item = ctx.figures.add(
        figure,
        name=_name(section, index, count),
        title=f"{title} {procedure.label}",
        section=section,
    )
    text = f"{_esc(procedure.label)}: {caption}" + _esc(_flow_note(procedure))
    return _figure_html(item, text)
