"""Measurements declared before they are measured, and the verdicts they produce.

The data model follows OpenHTF's measurements (the model only, none of its code or
threads): a :class:`Measurement` has a name, units, a description, limits and marginal
limits, all declared up front; measuring a value against it gives a :class:`Verdict`
whose outcome is PASS, FAIL, MARGINAL, INFO or UNSET (:class:`medtwin.hil.outcomes.Outcome`,
the one outcome vocabulary). Verdicts go to plain consumers: JSON-able dicts
(:meth:`Verdict.as_dict`, the shape the run store saves), :func:`overall_outcome`, and the
terminal table of the command line (``medtwin.hil.commands._render.verdict_table``): this
module is the data model only and draws nothing.

How an outcome is decided
-------------------------
* no value (``None``) → UNSET;
* outside the limits ``[lower, upper]`` → FAIL (the limits are inclusive: a ±2 % claim
  passes a −2.000 % error);
* inside the limits but outside the marginal limits ``(marginal_lower, marginal_upper)``
  → MARGINAL, i.e. close enough to a limit that the next unit or run might fail. A value
  exactly on a marginal limit is MARGINAL;
* otherwise PASS. A measurement without limits is INFO whenever it has a value: it is
  disclosed, not judged, like a trumpet window for which the manufacturer declares
  nothing (IEC 60601-2-24 asks for Ep(max)/Ep(min) to be disclosed). INFO never makes a
  set of verdicts pass or fail (:func:`overall_outcome` ignores it).

Where the limits came from
--------------------------
A measurement (and its verdict) carries ``limits_source``: ``"scenario"`` when the limits
were declared, ``"default"`` when a default claim was used (±2 % for a syringe pump, ±5 %
for a volumetric one; :data:`medtwin.hil.procedures.DEFAULT_ACCURACY_PERCENT`), None when
it has no limits.

Marginal limits are either given (:meth:`Measurement.with_marginal`) or derived as a
fraction of the tolerance (:meth:`Measurement.with_marginal_fraction`): with
``fraction = f``, a two-sided range ``[lo, hi]`` has a marginal band ``f·(hi − lo)/2``
wide inside each limit (±2 % with f = 0.1 → MARGINAL for 1.8 ≤ |e| ≤ 2); a one-sided limit
L has a band ``f·|L|`` wide (time to alarm ≤ 600 s with f = 0.1 → MARGINAL from 540 s).

IEC 60601-2-24 helpers
----------------------
The standard prescribes how to measure and that the manufacturer discloses the results;
the limits are the manufacturer's own claims (typically ±2 % for a syringe pump and ±5 %
for a volumetric pump in their instructions for use; see docs/analysis.md).
:func:`flow_accuracy_measurements`, :func:`occlusion_measurements` and
:func:`bolus_measurements` declare the standard measurands for a declared claim, and the
``evaluate_*`` functions turn the results of :mod:`medtwin.hil.analysis.iec60601_2_24` into
verdicts.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from medtwin.drivers.errors import ConfigurationError
from medtwin.hil.analysis.iec60601_2_24 import (
    DEFAULT_WINDOWS_MIN,
    BolusAccuracy,
    MeanFlowError,
    OcclusionResult,
    TrumpetCurve,
)
from medtwin.hil.outcomes import Outcome, outcome_label
from medtwin.hil.outcomes import overall_outcome as _most_severe

__all__ = [
    "DEFAULT_MARGINAL_FRACTION",
    "LimitsSource",
    "Measurement",
    "Outcome",
    "Source",
    "Verdict",
    "bolus_measurements",
    "evaluate_bolus",
    "evaluate_mean_error",
    "evaluate_occlusion",
    "evaluate_trumpet",
    "flow_accuracy_measurements",
    "occlusion_measurements",
    "outcome_label",
    "overall_outcome",
    "verdicts_as_dicts",
    "window_measurement_names",
]

Source = Literal["real", "twin"]
#: Whether a measurement's limits were declared ("scenario") or a default claim ("default").
LimitsSource = Literal["default", "scenario"]
_SOURCES: tuple[str, ...] = ("real", "twin")

#: Default width of the marginal band, as a fraction of the tolerance (see module docs).
DEFAULT_MARGINAL_FRACTION = 0.1


def _limit(value: float | None, what: str, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise ConfigurationError(f"{what} must be a number, got {value!r}", field=name)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{what} must be a number, got {value!r}", field=name) from None
    if math.isnan(number):
        raise ConfigurationError(f"{what} must be a number, got NaN", field=name)
    return number


@dataclass(frozen=True)
class Measurement:
    """A declared measurement: name, units, description and limits.

    Build it fluently; every method returns a new (frozen) declaration::

        Measurement("mean_flow_error_a", "%", "A over the second hour")
            .in_range(-2, 2)
            .with_marginal(-1.8, 1.8)

    Parameters
    ----------
    name : str
        Unique name (a verdict, a store row and a report column carry it).
    units : str
        Units of the value ("%", "s", "mmHg", "mL").
    description : str
        What is measured, for reports.
    lower, upper : float, optional
        Inclusive limits; None for an open side.
    marginal_lower, marginal_upper : float, optional
        Inner limits beyond which a passing value is MARGINAL.

    Raises
    ------
    ConfigurationError
        If the name is empty, a limit is not a number, ``lower > upper``, or a marginal
        limit lies outside the limits.
    """

    name: str
    units: str
    description: str = ""
    lower: float | None = None
    upper: float | None = None
    marginal_lower: float | None = None
    marginal_upper: float | None = None
    limits_source: LimitsSource | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigurationError(f"a measurement needs a name, got {self.name!r}")
        where = f"measurement {self.name!r}"
        lower = _limit(self.lower, "lower limit", self.name)
        upper = _limit(self.upper, "upper limit", self.name)
        m_lower = _limit(self.marginal_lower, "marginal lower limit", self.name)
        m_upper = _limit(self.marginal_upper, "marginal upper limit", self.name)
        if lower is not None and upper is not None and lower > upper:
            raise ConfigurationError(
                f"{where}: lower limit {lower:g} is above the upper limit {upper:g}"
            )
        if m_lower is not None and m_upper is not None and m_lower > m_upper:
            raise ConfigurationError(
                f"{where}: marginal lower limit {m_lower:g} is above the marginal upper "
                f"limit {m_upper:g}"
            )
        for marginal, label in ((m_lower, "marginal lower"), (m_upper, "marginal upper")):
            if marginal is None:
                continue
            if (lower is not None and marginal < lower) or (upper is not None and marginal > upper):
                raise ConfigurationError(
                    f"{where}: {label} limit {marginal:g} lies outside the limits "
                    f"[{_fmt_limit(lower)}, {_fmt_limit(upper)}]; marginal limits sit inside"
                )
        for attr, number in (
            ("lower", lower),
            ("upper", upper),
            ("marginal_lower", m_lower),
            ("marginal_upper", m_upper),
        ):
            object.__setattr__(self, attr, number)

    def in_range(self, lower: float | None = None, upper: float | None = None) -> Measurement:
        """The same measurement with inclusive limits (None leaves a side open)."""
        return dataclasses.replace(self, lower=lower, upper=upper)

    def with_marginal(self, lower: float | None = None, upper: float | None = None) -> Measurement:
        """The same measurement with marginal limits (inside the limits)."""
        return dataclasses.replace(self, marginal_lower=lower, marginal_upper=upper)

    def with_marginal_fraction(self, fraction: float = DEFAULT_MARGINAL_FRACTION) -> Measurement:
        """Marginal limits a ``fraction`` of the tolerance inside each limit.

        Two-sided ``[lo, hi]``: a band ``fraction·(hi − lo)/2`` wide inside each limit.
        One-sided limit L: a band ``fraction·|L|`` wide. ``fraction = 0`` removes the
        marginal band.

        Raises
        ------
        ConfigurationError
            If the fraction is not within [0, 1] or the measurement has no limits.
        """
        f = _limit(fraction, "marginal fraction", self.name)
        if f is None or not 0.0 <= f <= 1.0:
            raise ConfigurationError(
                f"marginal fraction must be within 0–1, got {fraction!r}", field=self.name
            )
        if self.lower is None and self.upper is None:
            raise ConfigurationError(
                f"measurement {self.name!r} has no limits to take a marginal band from"
            )
        if f == 0.0:
            return self.with_marginal(None, None)
        if self.lower is not None and self.upper is not None:
            band = f * (self.upper - self.lower) / 2.0
            return self.with_marginal(self.lower + band, self.upper - band)
        if self.upper is not None:
            return self.with_marginal(None, self.upper - f * abs(self.upper))
        assert self.lower is not None  # one side is set, checked above
        return self.with_marginal(self.lower + f * abs(self.lower), None)

    def outcome(self, value: float | None) -> Outcome:
        """PASS / FAIL / MARGINAL / INFO / UNSET for ``value`` (see the module docstring)."""
        if value is None:
            return Outcome.UNSET
        number = float(value)
        if math.isnan(number):
            return Outcome.FAIL
        if self.lower is None and self.upper is None:
            return Outcome.INFO
        if (self.lower is not None and number < self.lower) or (
            self.upper is not None and number > self.upper
        ):
            return Outcome.FAIL
        if (self.marginal_lower is not None and number <= self.marginal_lower) or (
            self.marginal_upper is not None and number >= self.marginal_upper
        ):
            return Outcome.MARGINAL
        return Outcome.PASS

    def measure(self, value: float | None, *, source: Source = "real", note: str = "") -> Verdict:
        """Check ``value`` and record the verdict.

        Parameters
        ----------
        value : float or None
            The measured value in :attr:`units`; None records an UNSET verdict.
        source : {"real", "twin"}
            Whether the value came from the real device or from the twin.
        note : str
            Free text carried to the report (e.g. "resampled onto the 30 s grid").
        """
        return self._verdict(value, self.outcome(value), source=source, note=note)

    def fail(self, *, source: Source = "real", note: str) -> Verdict:
        """A FAIL verdict without a value, for a measurand the device never produced.

        E.g. no occlusion alarm at all: there is no time to alarm, and that is a failure,
        not a missing measurement.
        """
        return self._verdict(None, Outcome.FAIL, source=source, note=note)

    def _verdict(
        self, value: float | None, outcome: Outcome, *, source: Source, note: str
    ) -> Verdict:
        if source not in _SOURCES:
            raise ConfigurationError(
                f"source must be 'real' or 'twin', got {source!r}", field=self.name
            )
        return Verdict(
            name=self.name,
            value=None if value is None else float(value),
            units=self.units,
            outcome=outcome,
            source=source,
            lower=self.lower,
            upper=self.upper,
            marginal_lower=self.marginal_lower,
            marginal_upper=self.marginal_upper,
            description=self.description,
            note=note,
            limits_source=self.limits_source
            if self.lower is not None or self.upper is not None
            else None,
        )


@dataclass(frozen=True)
class Verdict:
    """One measured value checked against its declaration.

    Attributes
    ----------
    name, units, description : str
        From the :class:`Measurement`.
    value : float or None
        The measured value in ``units`` (None: not measured / not produced).
    outcome : Outcome
        PASS, FAIL, MARGINAL, INFO (a value without limits) or UNSET.
    source : {"real", "twin"}
        The real device or the twin.
    lower, upper, marginal_lower, marginal_upper : float or None
        The limits it was checked against.
    note : str
        Free text (e.g. why there is no value, the density d a volume rests on).
    limits_source : {"default", "scenario"} or None
        Whether the limits were declared or a default claim was used; None without limits.
    """

    name: str
    value: float | None
    units: str
    outcome: Outcome
    source: Source
    lower: float | None = None
    upper: float | None = None
    marginal_lower: float | None = None
    marginal_upper: float | None = None
    description: str = ""
    note: str = ""
    limits_source: LimitsSource | None = None

    @property
    def informational(self) -> bool:
        """No limit was declared: the value is disclosed, not judged (its outcome is INFO
        whenever it has one; verdicts stored before INFO existed say PASS, and
        :func:`outcome_label` shows both as ``info``)."""
        return self.lower is None and self.upper is None

    def outcome_label(self) -> str:
        """The outcome as tables show it (:func:`outcome_label`)."""
        return outcome_label(self.outcome.value, self.lower, self.upper)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able dict: every attribute, the outcome as its name.

        Non-finite values (an infinite reading) become None, since JSON has no infinity;
        the outcome still records what was decided.
        """
        return {
            "name": self.name,
            "value": _json_number(self.value),
            "units": self.units,
            "outcome": self.outcome.value,
            "source": self.source,
            "lower": self.lower,
            "upper": self.upper,
            "marginal_lower": self.marginal_lower,
            "marginal_upper": self.marginal_upper,
            "description": self.description,
            "note": self.note,
            "limits_source": self.limits_source,
        }


def _json_number(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return value


def _fmt_limit(value: float | None) -> str:
    return "—" if value is None else f"{value:g}"


def verdicts_as_dicts(verdicts: Iterable[Verdict]) -> list[dict[str, Any]]:
    """``[v.as_dict() for v in verdicts]``: what ``json.dumps`` and the run store take."""
    return [verdict.as_dict() for verdict in verdicts]


def overall_outcome(verdicts: Iterable[Verdict]) -> Outcome:
    """FAIL if any verdict failed, else UNSET if any is unset, else MARGINAL if any is
    marginal, else PASS (the order of :data:`medtwin.hil.outcomes.SEVERITY`). INFO verdicts
    are ignored: a disclosed value judges nothing. No judged verdict at all is UNSET
    (nothing was shown to pass)."""
    judged = (v.outcome for v in verdicts if v.outcome is not Outcome.INFO)
    return _most_severe(judged) or Outcome.UNSET


# --------------------------------------------------------------------------- IEC 60601-2-24


def window_measurement_names(window_min: float) -> tuple[str, str]:
    """Names of the Ep(max) and Ep(min) measurements of window P: ``ep_max_2min`` …"""
    return f"ep_max_{window_min:g}min", f"ep_min_{window_min:g}min"


def _symmetric(limit_percent: float | tuple[float, float], what: str) -> tuple[float, float]:
    if isinstance(limit_percent, tuple):
        lower, upper = limit_percent
        return float(lower), float(upper)
    value = _limit(limit_percent, what, what)
    if value is None or not value > 0 or math.isinf(value):
        raise ConfigurationError(f"{what} must be a finite number > 0 %, got {limit_percent!r}")
    return -value, value


def flow_accuracy_measurements(
    *,
    accuracy_percent: float,
    windows_min: Sequence[float] = DEFAULT_WINDOWS_MIN,
    window_limits_percent: Mapping[float, float | tuple[float, float]] | None = None,
    marginal_fraction: float = DEFAULT_MARGINAL_FRACTION,
    include_b: bool = False,
    limits_source: LimitsSource = "scenario",
) -> list[Measurement]:
    """Declare the flow-accuracy measurements of IEC 60601-2-24 for a declared claim.

    * ``mean_flow_error_a`` (and ``mean_flow_error_b`` if ``include_b``) within
      ±``accuracy_percent``;
    * for each window P, ``ep_max_<P>min`` and ``ep_min_<P>min``: within the limits the
      manufacturer declares for that window in ``window_limits_percent`` (±x, or (lo, hi)),
      otherwise informational (no limits; the standard asks for disclosure, not a limit).

    Parameters
    ----------
    accuracy_percent : float
        The declared flow accuracy, e.g. 2 for a syringe pump (±2 %), 5 for a volumetric.
    windows_min : sequence of float
        Observation windows P, min.
    window_limits_percent : mapping, optional
        P in min → ±limit in % (or a (lower, upper) pair) for the windows that have one.
    marginal_fraction : float
        Width of the marginal band (see :meth:`Measurement.with_marginal_fraction`).
    include_b : bool
        Also declare B, the mean error over the last hour of a long test.
    limits_source : {"scenario", "default"}
        Whether ``accuracy_percent`` was declared or is the default claim for the pump's
        kind (window limits are always declared).

    Raises
    ------
    ConfigurationError
        If the accuracy is not > 0, a window limit is invalid, or a window limit names a
        window that is not in ``windows_min``.
    """
    lower, upper = _symmetric(accuracy_percent, "accuracy_percent")
    measurements = [
        Measurement(
            "mean_flow_error_a",
            "%",
            "mean flow error A over the analysis period (IEC 60601-2-24 50.102)",
            limits_source=limits_source,
        )
        .in_range(lower, upper)
        .with_marginal_fraction(marginal_fraction)
    ]
    if include_b:
        measurements.append(
            Measurement(
                "mean_flow_error_b",
                "%",
                "mean flow error B over the last hour of the test (IEC 60601-2-24 50.102)",
                limits_source=limits_source,
            )
            .in_range(lower, upper)
            .with_marginal_fraction(marginal_fraction)
        )
    limits = dict(window_limits_percent or {})
    known = {float(w) for w in windows_min}
    unknown = [w for w in limits if float(w) not in known]
    if unknown:
        raise ConfigurationError(
            f"window limits given for P = {', '.join(f'{w:g}' for w in unknown)} min, which "
            f"are not among the windows {', '.join(f'{w:g}' for w in windows_min)} min"
        )
    by_window = {float(w): value for w, value in limits.items()}
    for window in windows_min:
        max_name, min_name = window_measurement_names(float(window))
        declared = by_window.get(float(window))
        for name, which in ((max_name, "largest"), (min_name, "smallest")):
            measurement = Measurement(
                name,
                "%",
                f"{which} mean flow error over any {window:g}-min window",
                limits_source="scenario",
            )
            if declared is not None:
                w_lower, w_upper = _symmetric(declared, f"window limit for P = {window:g} min")
                measurement = measurement.in_range(w_lower, w_upper).with_marginal_fraction(
                    marginal_fraction
                )
            measurements.append(measurement)
    return measurements


def occlusion_measurements(
    *,
    max_time_to_alarm_s: float,
    max_pressure_at_alarm_mmhg: float | None = None,
    max_bolus_ml: float | None = None,
    marginal_fraction: float = DEFAULT_MARGINAL_FRACTION,
) -> list[Measurement]:
    """Declare the occlusion measurements: time to alarm within a declared maximum.

    Also the pressure at alarm and the unintended bolus, with a maximum when one is
    declared (ECRI, for instance, asks for a post-occlusion bolus ≤ 0.5 mL; see docs/analysis.md).
    """
    time_limit = _limit(max_time_to_alarm_s, "max_time_to_alarm_s", "occlusion_time_to_alarm")
    if time_limit is None or not time_limit > 0:
        raise ConfigurationError(
            f"max_time_to_alarm_s must be > 0 s, got {max_time_to_alarm_s!r}",
            field="occlusion_time_to_alarm",
        )
    measurements = [
        Measurement(
            "occlusion_time_to_alarm",
            "s",
            "time from occlusion to the occlusion alarm",
            limits_source="scenario",
        )
        # One-sided: a quick alarm is never marginal, only one close to the maximum.
        .in_range(None, time_limit)
        .with_marginal_fraction(marginal_fraction)
    ]
    pressure = Measurement(
        "occlusion_pressure_at_alarm",
        "mmHg",
        "line pressure at the alarm",
        limits_source="scenario",
    )
    if max_pressure_at_alarm_mmhg is not None:
        pressure = pressure.in_range(None, max_pressure_at_alarm_mmhg).with_marginal_fraction(
            marginal_fraction
        )
    bolus = Measurement(
        "occlusion_bolus_volume",
        "mL",
        "unintended bolus released after the occlusion",
        limits_source="scenario",
    )
    if max_bolus_ml is not None:
        bolus = bolus.in_range(None, max_bolus_ml).with_marginal_fraction(marginal_fraction)
    measurements.extend([pressure, bolus])
    return measurements


def bolus_measurements(
    *,
    accuracy_percent: float,
    marginal_fraction: float = DEFAULT_MARGINAL_FRACTION,
    limits_source: LimitsSource = "scenario",
) -> list[Measurement]:
    """Declare bolus accuracy: the mean and the worst single deviation within ±claim."""
    lower, upper = _symmetric(accuracy_percent, "accuracy_percent")
    return [
        Measurement(
            "bolus_mean_deviation",
            "%",
            "mean deviation of the boluses from their set",
            limits_source=limits_source,
        )
        .in_range(lower, upper)
        .with_marginal_fraction(marginal_fraction),
        Measurement(
            "bolus_worst_deviation",
            "%",
            "largest single bolus deviation, signed",
            limits_source=limits_source,
        )
        .in_range(lower, upper)
        .with_marginal_fraction(marginal_fraction),
    ]


def _by_name(measurements: Iterable[Measurement]) -> dict[str, Measurement]:
    return {m.name: m for m in measurements}


def _declared(table: Mapping[str, Measurement], name: str) -> Measurement:
    try:
        return table[name]
    except KeyError:
        raise ConfigurationError(
            f"no measurement named {name!r} is declared (declared: {', '.join(sorted(table))})"
        ) from None


def evaluate_trumpet(
    curve: TrumpetCurve,
    measurements: Iterable[Measurement],
    *,
    source: Source = "real",
    mean_error_name: str = "mean_flow_error_a",
    note: str = "",
) -> list[Verdict]:
    """Verdicts for A (as ``mean_error_name``) and every window of a trumpet curve.

    Every declared ``ep_*`` measurement must have a window in the curve and vice versa, so
    a window silently left out of the report cannot happen. ``note`` (e.g. the density d
    the volumes rest on) goes on every verdict, before the curve's resampling note.

    Raises
    ------
    ConfigurationError
        If the declarations and the curve's windows do not match.
    """
    table = _by_name(measurements)
    verdicts = [
        _declared(table, mean_error_name).measure(
            curve.mean_error_percent, source=source, note=_join(note, curve.note)
        )
    ]
    computed: set[str] = set()
    for window in curve.windows:
        max_name, min_name = window_measurement_names(window.window_min)
        computed.update((max_name, min_name))
        for name, value in ((max_name, window.ep_max_percent), (min_name, window.ep_min_percent)):
            verdicts.append(_declared(table, name).measure(value, source=source, note=note))
    missing = [
        name for name in table if name.startswith(("ep_max_", "ep_min_")) and name not in computed
    ]
    if missing:
        raise ConfigurationError(
            f"declared trumpet measurements {', '.join(missing)} have no window in the curve"
        )
    return verdicts


def evaluate_mean_error(
    result: MeanFlowError,
    measurement: Measurement,
    *,
    source: Source = "real",
) -> Verdict:
    """Verdict for one mean flow error (A or B)."""
    return measurement.measure(result.error_percent, source=source, note=result.note)


def evaluate_occlusion(
    result: OcclusionResult,
    measurements: Iterable[Measurement],
    *,
    source: Source = "real",
    bolus_note: str = "",
) -> list[Verdict]:
    """Verdicts for an occlusion test. No alarm before the release is a FAIL of the time to
    alarm and leaves the pressure at alarm UNSET. ``bolus_note`` (the density d the bolus
    volume rests on) goes on the bolus verdict."""
    table = _by_name(measurements)
    time_m = _declared(table, "occlusion_time_to_alarm")
    pressure_m = _declared(table, "occlusion_pressure_at_alarm")
    if result.time_to_alarm_s is None:
        message = (
            f"no occlusion alarm between the occlusion at {result.occlusion_s:g} s and the "
            f"release at {result.release_s:g} s"
        )
        time_v = time_m.fail(source=source, note=message)
        pressure_v = pressure_m.measure(None, source=source, note=message)
    else:
        time_v = time_m.measure(result.time_to_alarm_s, source=source)
        pressure_v = pressure_m.measure(result.pressure_at_alarm_mmhg, source=source)
    bolus_v = _declared(table, "occlusion_bolus_volume").measure(
        result.bolus_volume_ml, source=source, note=bolus_note
    )
    return [time_v, pressure_v, bolus_v]


def evaluate_bolus(
    result: BolusAccuracy,
    measurements: Iterable[Measurement],
    *,
    source: Source = "real",
    note: str = "",
) -> list[Verdict]:
    """Verdicts for bolus accuracy: mean and worst deviation (``note``, e.g. the density d,
    on both)."""
    table = _by_name(measurements)
    worst_note = (
        f"bolus {result.worst_index + 1} of {result.deviation_percent.size}"
        if result.deviation_percent.size > 1
        else ""
    )
    return [
        _declared(table, "bolus_mean_deviation").measure(
            result.mean_deviation_percent, source=source, note=note
        ),
        _declared(table, "bolus_worst_deviation").measure(
            result.worst_deviation_percent, source=source, note=_join(note, worst_note)
        ),
    ]


def _join(*notes: str) -> str:
    return "; ".join(note for note in notes if note)
