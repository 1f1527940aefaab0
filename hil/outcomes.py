"""The one outcome vocabulary of verdicts: measurements, the run store, reports and the CLI.

A measured value checked against its declared limits ends in one of OpenHTF's outcomes
(PASS, FAIL, MARGINAL, UNSET), plus INFO for a value that is disclosed rather than judged:
IEC 60601-2-24 (1998 clause 50.102, 2012 201.12.1) asks the manufacturer to *disclose* the
trumpet curve's Ep(max) and Ep(min), and sets no limit for them.

Every layer uses this enum: :mod:`medtwin.hil.measurements` decides outcomes,
:mod:`medtwin.hil.store` stores their values (the strings ``"PASS"`` … are what the
``verdicts`` table and every JSON document hold), the report and the terminal show them
through :func:`outcome_label`, and :func:`overall_outcome` combines them in the one order
of :data:`SEVERITY`.

INFO versus a PASS without limits
---------------------------------
A measurement declared without limits records INFO when it has a value
(:meth:`medtwin.hil.measurements.Measurement.outcome`); runs stored before INFO existed hold
PASS for such values. :func:`outcome_label` shows both as ``info``, so those stored runs
read back and render unchanged. INFO judges nothing: it ranks below PASS, so it decides an
overall outcome only when nothing else was measured.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

__all__ = [
    "INFO_LABEL",
    "NO_LIMITS",
    "SEVERITY",
    "Outcome",
    "format_limit_value",
    "format_limits",
    "outcome_label",
    "overall_outcome",
]


class Outcome(StrEnum):
    """Result of checking one measured value against its declaration.

    The value of each member is the word stored in the run store and written in JSON.
    """

    PASS = "PASS"
    FAIL = "FAIL"
    MARGINAL = "MARGINAL"
    INFO = "INFO"
    UNSET = "UNSET"


#: Most severe first: the outcome of a set of verdicts is the first of these that occurs.
#: A FAIL anywhere fails the set; an UNSET (nothing measured) outranks MARGINAL because an
#: unmeasured claim cannot be shown to hold; a disclosed value (INFO) judges nothing, so
#: it ranks below PASS.
SEVERITY: tuple[Outcome, ...] = (
    Outcome.FAIL,
    Outcome.UNSET,
    Outcome.MARGINAL,
    Outcome.PASS,
    Outcome.INFO,
)

#: How tables show a value disclosed without limits.
INFO_LABEL = "info"


def overall_outcome(outcomes: Iterable[Outcome | str]) -> Outcome | None:
    """The most severe of ``outcomes`` (in :data:`SEVERITY` order), None when empty.

    Words that are not outcomes (a hand-edited store) are ignored.
    """
    seen = {str(outcome) for outcome in outcomes}
    for outcome in SEVERITY:
        if outcome.value in seen:
            return outcome
    return None


def outcome_label(outcome: Outcome | str, lower: float | None, upper: float | None) -> str:
    """An outcome as tables show it: ``info`` for INFO and for a PASS without limits (a value
    disclosed, not judged), else the outcome's word. For verdicts and stored verdict records
    alike."""
    word = str(outcome)
    if word == Outcome.INFO.value or (
        lower is None and upper is None and word == Outcome.PASS.value
    ):
        return INFO_LABEL
    return word


#: How every table, the report and the pytest summary write a measurement without limits.
NO_LIMITS = "no limits"


def format_limit_value(value: float) -> str:
    """One limit as text: ``%g`` digits with a true minus sign (U+2212), so that ``−2`` does
    not read as a dash next to ``…`` and negative limits line up in every table alike."""
    return f"{value:g}".replace("-", "\u2212")


def format_limits(lower: float | None, upper: float | None, units: str = "") -> str:
    """Limits as every table, the report and the pytest summary write them.

    ``−2 … 2 %`` for a range, ``≤ 1500 s`` for an upper limit only, ``≥ 0.5 mL`` for a lower
    limit only, :data:`NO_LIMITS` when neither is declared (a disclosed value). Marginal
    limits use the same function.
    """
    suffix = f" {units}" if units else ""
    if lower is not None and upper is not None:
        return f"{format_limit_value(lower)} … {format_limit_value(upper)}{suffix}"
    if upper is not None:
        return f"≤ {format_limit_value(upper)}{suffix}"
    if lower is not None:
        return f"≥ {format_limit_value(lower)}{suffix}"
    return NO_LIMITS
