"""Verdicts of the patient-monitor QA analyses (:mod:`medtwin.hil.analysis.monitor_qa`).

Turns accuracy, response-time and alarm-delay results into the project's
:class:`~medtwin.hil.measurements.Verdict` objects with configurable limits: a value outside
its limits is FAIL, inside but within the MARGINAL band (``marginal_fraction`` of the
tolerance, as for the pump verdicts) MARGINAL, a value without a declared limit INFO, no
value UNSET. :func:`side_by_side` puts the same verdicts of the real monitor and of the
twin next to each other.

Default limits, and how sure we are of them (docs/analysis.md, "Monitor QA")
-----------------------------------------------------------------------------
* SpO2 Arms ≤ 4 % over 70–100 %: ISO 80601-2-61 (clause not checked; **unverified**).
  The FDA 2013 premarket guidance for pulse oximeters recommends ≤ 3 % for transmittance
  sensors (**unverified** here): :data:`FDA_SPO2_ARMS_PERCENT`, pass it as ``arms_limit``.
  Both are limits for clinical studies against a co-oximeter; against a simulator the
  monitor's own labelling (often ±2 % Arms) is the sharper claim.
* HR meter: each reading within ±10 % of the input or ±5 bpm, whichever is greater
  (IEC 60601-2-27 / ANSI/AAMI EC13 as commonly quoted; **unverified**). Commercial
  specifications are tighter (±1 % or ±1 bpm, Mindray BeneHeart).
* Response time and alarm delay: no default limit (the manufacturer declares them); INFO
  unless a limit is given.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from medtwin.drivers.errors import AnalysisError
from medtwin.hil.analysis.monitor_qa import AccuracyResult, AlarmDelay, StepResponse
from medtwin.hil.measurements import (
    DEFAULT_MARGINAL_FRACTION,
    LimitsSource,
    Measurement,
    Source,
    Verdict,
)
from medtwin.hil.outcomes import Outcome

__all__ = [
    "FDA_SPO2_ARMS_PERCENT",
    "HR_TOLERANCE_BPM",
    "HR_TOLERANCE_PERCENT",
    "SPO2_ARMS_PERCENT",
    "SPO2_RANGE_PERCENT",
    "ComparisonRow",
    "accuracy_verdicts",
    "alarm_delay_verdicts",
    "response_verdicts",
    "side_by_side",
]

#: SpO2 Arms limit of ISO 80601-2-61, % (**unverified**: the standard's text was not seen).
SPO2_ARMS_PERCENT = 4.0
#: SpO2 Arms limit recommended by the FDA 2013 guidance for transmittance sensors, %
#: (**unverified** here).
FDA_SPO2_ARMS_PERCENT = 3.0
#: The SpO2 range Arms is stated over, %.
SPO2_RANGE_PERCENT = (70.0, 100.0)
#: HR meter tolerance: ±5 bpm or ±10 % of the input, whichever is greater (IEC 60601-2-27 /
#: ANSI/AAMI EC13 as commonly quoted; **unverified**).
HR_TOLERANCE_BPM = 5.0
HR_TOLERANCE_PERCENT = 10.0


def _value(number: float) -> float | None:
    return None if math.isnan(number) else number


def _declare(
    name: str,
    units: str,
    description: str,
    limits: tuple[float | None, float | None] | None,
    marginal_fraction: float,
    limits_source: LimitsSource,
) -> Measurement:
    measurement = Measurement(name, units, description, limits_source=limits_source)
    if limits is None or limits == (None, None):
        return measurement
    return measurement.in_range(*limits).with_marginal_fraction(marginal_fraction)


def _positive(value: float | None, what: str) -> float | None:
    if value is None:
        return None
    number = float(value)
    if not math.isfinite(number) or number <= 0:
        raise AnalysisError(f"{what} must be a finite number > 0, got {value!r}")
    return number


def accuracy_verdicts(
    result: AccuracyResult,
    *,
    prefix: str,
    units: str,
    bias_limit: float | None = None,
    sd_limit: float | None = None,
    arms_limit: float | None = None,
    reading_tolerance: tuple[float, float] | None = None,
    marginal_fraction: float = DEFAULT_MARGINAL_FRACTION,
    limits_source: LimitsSource = "scenario",
    source: Source = "real",
) -> list[Verdict]:
    """Verdicts of an accuracy result.

    * ``<prefix>_bias`` within ±``bias_limit``, ``<prefix>_sd`` ≤ ``sd_limit``,
      ``<prefix>_arms`` ≤ ``arms_limit`` (INFO where the limit is None; the SD is UNSET
      with fewer than two readings);
    * with ``reading_tolerance = (abs, percent)``: for each setting, ``<prefix>_error_at_<set>``
      = the plateau's largest-magnitude signed error, within ±max(abs, percent·set/100)
      (the HR meter rule); a plateau of dashes only is UNSET. Plateaus outside the result's
      ``set_range`` get none.

    The Arms verdict's note gives n, the dashes and the readings left out.

    Raises
    ------
    AnalysisError
        A limit that is not a finite number > 0.
    """
    bias = _positive(bias_limit, "bias_limit")
    sd = _positive(sd_limit, "sd_limit")
    arms = _positive(arms_limit, "arms_limit")
    counts = (
        f"n = {result.n}, {result.dashes} dashes, {result.settling} readings within "
        f"{result.settle_s:g} s of a change left out"
    )
    if result.set_range is not None:
        counts += f"; settings {result.set_range[0]:g}–{result.set_range[1]:g} {units}"
    verdicts = [
        _declare(
            f"{prefix}_bias",
            units,
            "mean difference of the readings from the settings",
            None if bias is None else (-bias, bias),
            marginal_fraction,
            limits_source,
        ).measure(result.bias, source=source),
        _declare(
            f"{prefix}_sd",
            units,
            "precision: SD of the differences (n − 1)",
            None if sd is None else (None, sd),
            marginal_fraction,
            limits_source,
        ).measure(
            _value(result.sd),
            source=source,
            note="" if result.n > 1 else "fewer than two readings",
        ),
        _declare(
            f"{prefix}_arms",
            units,
            "Arms: root-mean-square of the differences",
            None if arms is None else (None, arms),
            marginal_fraction,
            limits_source,
        ).measure(result.arms, source=source, note=counts),
    ]
    if reading_tolerance is None:
        return verdicts
    tol_abs = _positive(reading_tolerance[0], "reading_tolerance[0]") or 0.0
    tol_pct = _positive(reading_tolerance[1], "reading_tolerance[1]") or 0.0
    worst: dict[float, tuple[float, int, int]] = {}
    for plateau in result.plateaus:
        if not plateau.in_range:
            continue
        value, n, dashes = worst.get(plateau.set_value, (math.nan, 0, 0))
        if plateau.n and (math.isnan(value) or abs(plateau.worst) > abs(value)):
            value = plateau.worst
        worst[plateau.set_value] = (value, n + plateau.n, dashes + plateau.dashes)
    for setting, (value, n, dashes) in worst.items():
        limit = max(tol_abs, tol_pct * abs(setting) / 100.0)
        measurement = _declare(
            f"{prefix}_error_at_{setting:g}",
            units,
            f"largest reading error at the setting {setting:g} {units}",
            (-limit, limit),
            marginal_fraction,
            limits_source,
        )
        note = f"n = {n}, {dashes} dashes; ±max({tol_abs:g} {units}, {tol_pct:g} %)"
        verdicts.append(measurement.measure(_value(value), source=source, note=note))
    return verdicts


def response_verdicts(
    steps: Sequence[StepResponse],
    *,
    prefix: str,
    units: str,
    max_response_s: float | None = None,
    marginal_fraction: float = DEFAULT_MARGINAL_FRACTION,
    limits_source: LimitsSource = "scenario",
    source: Source = "real",
) -> list[Verdict]:
    """One verdict per step: ``<prefix>_response_<from>_to_<to>`` (``_2``, ``_3`` … for a
    repeated step) ≤ ``max_response_s`` (INFO without it). A step whose criterion was never
    met is FAIL when a maximum is declared, UNSET otherwise. The note says the criterion."""
    limit = _positive(max_response_s, "max_response_s")
    seen: dict[str, int] = {}
    verdicts = []
    for step in steps:
        base = f"{prefix}_response_{step.from_value:g}_to_{step.to_value:g}"
        seen[base] = seen.get(base, 0) + 1
        name = base if seen[base] == 1 else f"{base}_{seen[base]}"
        measurement = _declare(
            name,
            "s",
            f"response time to the step {step.from_value:g} → {step.to_value:g} {units} "
            f"at {step.t_step_s:g} s",
            None if limit is None else (None, limit),
            marginal_fraction,
            limits_source,
        )
        if step.reached:
            verdicts.append(
                measurement.measure(step.response_s, source=source, note=step.criterion)
            )
            continue
        note = f"criterion never met before the next change ({step.criterion})"
        verdicts.append(
            measurement.fail(source=source, note=note)
            if limit is not None
            else measurement.measure(None, source=source, note=note)
        )
    return verdicts


def alarm_delay_verdicts(
    delays: Iterable[AlarmDelay],
    *,
    marginal_fraction: float = DEFAULT_MARGINAL_FRACTION,
    limits_source: LimitsSource = "scenario",
    source: Source = "real",
) -> list[Verdict]:
    """One verdict per condition: ``alarm_delay_<condition>`` = the worst measured
    ``t3 − t1`` ≤ the declared delay (INFO without one).

    A declared condition that began but was never signalled is FAIL; one that never began
    is UNSET. False alarms and unsignalled episodes are counted in the note.
    """
    verdicts = []
    for delay in delays:
        measurement = _declare(
            f"alarm_delay_{delay.condition}",
            "s",
            f"alarm delay t1 → t3 of {delay.condition} (worst of {len(delay.total_s)})",
            None if delay.declared_s is None else (None, delay.declared_s),
            marginal_fraction,
            limits_source,
        )
        parts = [f"{delay.episodes} episodes"]
        if delay.not_signalled:
            parts.append(f"{delay.not_signalled} not signalled")
        if delay.false_alarms:
            parts.append(f"{delay.false_alarms} false alarms (no onset)")
        note = ", ".join(parts)
        if not math.isnan(delay.worst_s):
            verdict = measurement.measure(delay.worst_s, source=source, note=note)
        elif delay.not_signalled and delay.declared_s is not None:
            verdict = measurement.fail(source=source, note=f"{note}: the condition was not alarmed")
        else:
            verdict = measurement.measure(None, source=source, note=note)
        verdicts.append(verdict)
    return verdicts


@dataclass(frozen=True)
class ComparisonRow:
    """One measurement on the real monitor and on the twin (None where a side has none).

    ``difference`` is twin − real (None unless both have a value)."""

    name: str
    units: str
    real: float | None
    twin: float | None
    real_outcome: Outcome | None
    twin_outcome: Outcome | None

    @property
    def difference(self) -> float | None:
        """``twin − real``, or None."""
        if self.real is None or self.twin is None:
            return None
        return self.twin - self.real

    def as_dict(self) -> dict[str, Any]:
        """JSON-able dict, outcomes as their words."""

        def number(value: float | None) -> float | None:
            return value if value is not None and math.isfinite(value) else None

        return {
            "name": self.name,
            "units": self.units,
            "real": number(self.real),
            "twin": number(self.twin),
            "difference": number(self.difference),
            "real_outcome": None if self.real_outcome is None else self.real_outcome.value,
            "twin_outcome": None if self.twin_outcome is None else self.twin_outcome.value,
        }


def side_by_side(verdicts: Iterable[Verdict]) -> tuple[ComparisonRow, ...]:
    """The real and twin verdicts of the same measurement as rows, in order of first
    appearance (a measurement one side lacks has None on that side).

    Raises
    ------
    AnalysisError
        Two verdicts of the same name and source (the table would hide one).
    """
    rows: dict[str, dict[str, Verdict]] = {}
    for verdict in verdicts:
        sides = rows.setdefault(verdict.name, {})
        if verdict.source in sides:
            raise AnalysisError(f"two {verdict.source} verdicts are named {verdict.name!r}")
        sides[verdict.source] = verdict
    out = []
    for name, sides in rows.items():
        real, twin = sides.get("real"), sides.get("twin")
        units = next(iter(sides.values())).units
        out.append(
            ComparisonRow(
                name=name,
                units=units,
                real=None if real is None else real.value,
                twin=None if twin is None else twin.value,
                real_outcome=None if real is None else real.outcome,
                twin_outcome=None if twin is None else twin.outcome,
            )
        )
    return tuple(out)
