"""Named test procedures in scenarios: IEC 60601-2-24 flow, occlusion and bolus.

A scenario may list procedures instead of (or beside) hand-written steps::

    [[procedures]]
    kind = "iec60601-2-24.flow"
    rate_ml_h = 5.0
    accuracy_percent = 2.0          # the manufacturer's claim, ±

Each procedure *expands* to timeline steps before the run (so the usual limit checks
apply) and *analyses* the recorded run afterwards, on the real devices and on the twin
alike (:mod:`medtwin.hil.analysis.iec60601_2_24`), turning the results into PASS / FAIL / MARGINAL
verdicts against the declared claims (:mod:`medtwin.hil.measurements`). The verdicts are stored
with the run and shown in its report.

Fields per kind (durations accept ``90s``, ``30min``, ``2h``); every kind also takes
``marginal_fraction`` (0.1: the MARGINAL band as a fraction of each tolerance, see
:mod:`medtwin.hil.measurements`):

``iec60601-2-24.flow``
    ``at`` (0), ``rate_ml_h``, ``duration`` (2h), ``interval`` (S, 30s),
    ``analysis_period`` ("60min-120min", relative to ``at``), ``accuracy_percent``
    (default by pump kind, :data:`DEFAULT_ACCURACY_PERCENT`: ±2 % for a syringe pump, ±5 %
    for a volumetric one, the claims of the B. Braun Perfusor and Infusomat IFUs),
    ``windows_min`` ([2, 5, 11, 19, 31]; add 1 for GB 9706.27's window),
    ``evaporation_g_h`` (0: loss measured with the pump stopped, added back),
    ``syringe`` or ``diameter_mm`` (optional).
``iec60601-2-24.occlusion``
    ``at``, ``rate_ml_h``, ``settle`` (10min: until the flow is constant),
    ``max_time_to_alarm`` (the declared maximum), ``release_after_factor`` (1.1: the line
    is reopened after this many times the declared maximum), ``collect`` (5min after
    release), ``bolus_end_margin_mmhg`` (5: the bolus ends when the pressure is back within
    this of the pre-occlusion baseline, our reading of "until the pressure is reduced"),
    ``max_pressure_at_alarm_mmhg``, ``max_bolus_ml`` (optional claims).
``iec60601-2-24.bolus``
    ``at``, ``count`` (3), ``volume_ml``, ``rate_ml_h`` (bolus rate), ``spacing`` (5min),
    ``basal_rate_ml_h`` (0), ``accuracy_percent`` (5), ``prime_ml`` (0.3: a first,
    unweighed bolus that takes up the drive's free play, as the set is primed before the
    test), ``settle`` (5min after priming, before the first bolus), ``weigh_before`` (1s:
    the tare reading is taken this long before each bolus starts), ``weigh_after_fraction``
    (0.75: each bolus is weighed this fraction of the pause after it, so the balance has
    settled and the next bolus has not begun).

Mass becomes volume through the run's gravimetric policy
(:class:`medtwin.hil.analysis.gravimetry.GravimetricPolicy`, carried by :class:`RunSeries`);
each analysis stores it (``"gravimetry"``) with d, and every parameter with whether the
scenario set it or its default was used (``"parameters"``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
from medtwin.device_models.schedule import Alarm
from medtwin.drivers.errors import AnalysisError
from medtwin.drivers.units import parse_duration_s
from medtwin.hil.analysis import iec60601_2_24 as iec
from medtwin.hil.analysis.gravimetry import GravimetricPolicy
from medtwin.hil.config import Step
from medtwin.hil.measurements import (
    DEFAULT_MARGINAL_FRACTION,
    LimitsSource,
    Verdict,
    bolus_measurements,
    evaluate_bolus,
    evaluate_occlusion,
    evaluate_trumpet,
    flow_accuracy_measurements,
    occlusion_measurements,
)
from numpy.typing import NDArray
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

__all__ = [
    "DEFAULT_ACCURACY_PERCENT",
    "PROCEDURES",
    "Procedure",
    "ProcedureResult",
    "RunSeries",
    "parse_procedures",
]

FloatArray = NDArray[np.float64]

#: Flow accuracy claimed when the scenario declares none, by pump kind: "normally ±2 %" for
#: a syringe pump (B. Braun Perfusor Compact Plus IFU) and "±5 % typical" for a volumetric
#: one (B. Braun Infusomat Space IFU). The standard sets no limit; these are typical claims.
DEFAULT_ACCURACY_PERCENT: dict[str, float] = {"syringe": 2.0, "volumetric": 5.0}


def _duration(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError("expected a duration such as 90s, 30min, 2h or 1h30m")
    return parse_duration_s(value)


Duration = Annotated[float, BeforeValidator(_duration)]


def _period(value: Any) -> tuple[float, float]:
    if isinstance(value, list | tuple) and len(value) == 2:
        start, end = (_duration(v) for v in value)
    elif isinstance(value, str) and "-" in value:
        left, _, right = value.partition("-")
        start, end = _duration(left), _duration(right)
    else:
        raise ValueError('expected an analysis period such as "60min-120min"')
    if end <= start:
        raise ValueError("the analysis period must end after it starts")
    return start, end


@dataclass
class RunSeries:
    """What a procedure analyses: the recorded channels of one side (real or twin), the
    gravimetric policy that turns its mass into volume, and the kind of pump (for the
    default accuracy claim). A bare number for ``gravimetry`` is taken as an explicit d."""

    source: Literal["real", "twin"]
    mass_t_s: FloatArray
    mass_g: FloatArray
    pressure_t_s: FloatArray
    pressure_mmhg: FloatArray
    alarm_t_s: FloatArray
    alarm: NDArray[np.bool_]
    gravimetry: GravimetricPolicy | float
    pump_kind: str = "syringe"

    def __post_init__(self) -> None:
        if not isinstance(self.gravimetry, GravimetricPolicy):
            self.gravimetry = GravimetricPolicy(density_override_g_ml=float(self.gravimetry))

    @property
    def policy(self) -> GravimetricPolicy:
        """The gravimetric policy (a bare d was turned into one on construction)."""
        assert isinstance(self.gravimetry, GravimetricPolicy)  # __post_init__
        return self.gravimetry

    @property
    def density_g_ml(self) -> float:
        """d of the policy, g/mL."""
        return self.policy.density_g_ml


@dataclass
class ProcedureResult:
    """One procedure's analysis (JSON-able per source) and its verdicts."""

    kind: str
    label: str
    analysis: dict[str, Any] = field(default_factory=dict)
    verdicts: list[Verdict] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "label": self.label,
            "analysis": self.analysis,
            "verdicts": [v.as_dict() for v in self.verdicts],
            "errors": self.errors,
        }


class Procedure(BaseModel):
    """A standard procedure of a scenario (``[[procedures]]``): the kinds below expand it
    into timeline steps and analyse the recorded series at the end."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str
    at: Duration = 0.0
    label: str = ""
    marginal_fraction: float = Field(DEFAULT_MARGINAL_FRACTION, ge=0.0, le=1.0)

    #: Fields that are bookkeeping, not analysis choices (left out of :meth:`parameters`).
    _NOT_PARAMETERS: ClassVar[frozenset[str]] = frozenset({"kind", "label"})

    def parameters(self) -> dict[str, dict[str, Any]]:
        """Every analysis choice with its value and ``"source"``: ``"scenario"`` when the
        scenario set it, ``"default"`` when the default was used (the report shows which)."""
        return {
            name: {
                "value": _json(getattr(self, name)),
                "source": "scenario" if name in self.model_fields_set else "default",
            }
            for name in type(self).model_fields
            if name not in self._NOT_PARAMETERS
        }

    def steps(self) -> list[Step]:
        raise NotImplementedError  # pragma: no cover - every kind overrides it

    @property
    def end_s(self) -> float:
        raise NotImplementedError  # pragma: no cover

    def analyse(self, side: RunSeries) -> tuple[dict[str, Any], list[Verdict]]:
        raise NotImplementedError  # pragma: no cover


def _step(at: float, action: str, **kwargs: Any) -> Step:
    return Step.model_validate({"at": at, "action": action, **kwargs})


class FlowProcedure(Procedure):
    """IEC 60601-2-24 flow accuracy: A and the trumpet curve (1998 50.102, 2012 201.12.1)."""

    kind: Literal["iec60601-2-24.flow"] = "iec60601-2-24.flow"
    rate_ml_h: float = Field(gt=0)
    duration: Duration = 7200.0
    interval: Duration = 30.0
    analysis_period: Annotated[tuple[float, float], BeforeValidator(_period)] = (3600.0, 7200.0)
    #: None: the default claim for the pump's kind (:data:`DEFAULT_ACCURACY_PERCENT`).
    accuracy_percent: float | None = Field(None, gt=0)
    windows_min: tuple[Annotated[float, Field(gt=0)], ...] = Field(
        iec.DEFAULT_WINDOWS_MIN, min_length=1
    )
    evaporation_g_h: float = Field(0.0, ge=0)
    syringe: str | None = None
    diameter_mm: float | None = Field(None, gt=0)

    def accuracy(self, pump_kind: str) -> tuple[float, LimitsSource]:
        """The accuracy claim in ± % and where it comes from ("scenario" or "default")."""
        if self.accuracy_percent is not None:
            return self.accuracy_percent, "scenario"
        return DEFAULT_ACCURACY_PERCENT.get(pump_kind, DEFAULT_ACCURACY_PERCENT["syringe"]), (
            "default"
        )

    def steps(self) -> list[Step]:
        out = []
        if self.syringe or self.diameter_mm:
            out.append(
                _step(self.at, "set_diameter", syringe=self.syringe, diameter_mm=self.diameter_mm)
            )
        out += [
            _step(self.at, "set_rate", rate_ml_h=self.rate_ml_h),
            _step(self.at, "tare"),
            _step(self.at, "start"),
            _step(self.at + self.duration, "stop"),
        ]
        return out

    @property
    def end_s(self) -> float:
        return self.at + self.duration

    def _policy(self, side: RunSeries) -> GravimetricPolicy:
        return replace(side.policy, evaporation_g_h=self.evaporation_g_h)

    def analyse(self, side: RunSeries) -> tuple[dict[str, Any], list[Verdict]]:
        curve = self._trumpet(side)
        startup = self._startup(side, min(120.0, self.duration / 60.0))
        accuracy, limits_source = self.accuracy(side.pump_kind)
        measurements = flow_accuracy_measurements(
            accuracy_percent=accuracy,
            windows_min=self.windows_min,
            marginal_fraction=self.marginal_fraction,
            limits_source=limits_source,
        )
        verdicts = evaluate_trumpet(
            curve, measurements, source=side.source, note=_density_note(self._policy(side))
        )
        analysis = {**self._settings(side), "trumpet": curve.as_dict(), "startup": startup}
        return analysis, verdicts

    def analyse_curves(self, side: RunSeries) -> tuple[dict[str, Any], str]:
        """The curves alone, for a run that stored no analysis (aborted or interrupted,
        perhaps cut short): the same analysis as :meth:`analyse`, without verdicts.

        A start-up period longer than the data is shortened to the data (an aborted run
        still shows how delivery started); a trumpet curve whose analysis period is not
        covered is left out and the reason returned ("" when it was computed).

        Raises
        ------
        AnalysisError
            Not even a start-up curve can be computed.
        """
        if side.mass_t_s.size < 2:
            raise AnalysisError(f"the {side.source} balance mass has fewer than two samples")
        interval_min = self.interval / 60.0
        covered_min = (float(side.mass_t_s[-1]) - self.at) / 60.0
        period_min = min(120.0, self.duration / 60.0)
        period_min = min(period_min, math.floor(covered_min / interval_min + 1e-9) * interval_min)
        if period_min < interval_min:
            raise AnalysisError(
                f"the {side.source} balance log covers {covered_min:.3g} min after the start, "
                f"less than one sample interval S = {interval_min:g} min"
            )
        analysis = {**self._settings(side), "startup": self._startup(side, period_min)}
        try:
            analysis["trumpet"] = self._trumpet(side).as_dict()
        except AnalysisError as exc:
            return analysis, str(exc)
        return analysis, ""

    def _settings(self, side: RunSeries) -> dict[str, Any]:
        policy = self._policy(side)
        parameters = self.parameters()
        # The claim actually applied (the pump kind's default when the scenario has none).
        accuracy, limits_source = self.accuracy(side.pump_kind)
        parameters["accuracy_percent"] = {"value": accuracy, "source": limits_source}
        return {
            "rate_ml_h": self.rate_ml_h,
            "interval_min": self.interval / 60.0,
            "analysis_period_min": [p / 60.0 for p in self.analysis_period],
            "density_g_ml": policy.density_g_ml,
            "gravimetry": policy.as_dict(),
            "parameters": parameters,
        }

    def _trumpet(self, side: RunSeries) -> iec.TrumpetCurve:
        policy = self._policy(side)
        return iec.trumpet_curve(
            side.mass_t_s,
            side.mass_g,
            rate_ml_h=self.rate_ml_h,
            sample_interval_min=self.interval / 60.0,
            density_g_ml=policy.density_g_ml,
            evaporation_loss_g_h=policy.evaporation_g_h,
            analysis_period_min=[p / 60.0 for p in self.analysis_period],
            windows_min=self.windows_min,
            start_s=self.at,
        )

    def _startup(self, side: RunSeries, period_min: float) -> dict[str, Any]:
        policy = self._policy(side)
        startup = iec.startup_curve(
            side.mass_t_s,
            side.mass_g,
            sample_interval_min=self.interval / 60.0,
            density_g_ml=policy.density_g_ml,
            evaporation_loss_g_h=policy.evaporation_g_h,
            period_min=period_min,
            start_s=self.at,
        )
        return {
            "t_min": np.asarray(startup.t_min).tolist(),
            "flow_ml_h": np.asarray(startup.flow_ml_h).tolist(),
        }


class OcclusionProcedure(Procedure):
    """Occlusion: time to alarm, pressure at alarm, unintended bolus (2012 201.12.4.4.x)."""

    kind: Literal["iec60601-2-24.occlusion"] = "iec60601-2-24.occlusion"
    rate_ml_h: float = Field(gt=0)
    settle: Duration = 600.0
    max_time_to_alarm: Duration
    release_after_factor: float = Field(1.1, ge=1.0)
    collect: Duration = 300.0
    bolus_end_margin_mmhg: float = Field(5.0, gt=0)
    max_pressure_at_alarm_mmhg: float | None = Field(None, gt=0)
    max_bolus_ml: float | None = Field(None, gt=0)

    @property
    def occlude_s(self) -> float:
        return self.at + self.settle

    @property
    def release_s(self) -> float:
        # Wait the declared maximum (plus 10 % by default) before reopening the line, so a
        # pump that alarms just inside its claim is still seen to alarm.
        return self.occlude_s + self.release_after_factor * self.max_time_to_alarm

    @property
    def end_s(self) -> float:
        return self.release_s + self.collect

    def steps(self) -> list[Step]:
        return [
            _step(self.at, "set_rate", rate_ml_h=self.rate_ml_h),
            _step(self.at, "tare"),
            _step(self.at, "start"),
            _step(self.occlude_s, "occlude", note="occlusion test: stopcock closed"),
            _step(self.release_s, "stop"),
            _step(self.release_s, "release", note="occlusion test: line reopened"),
            _step(self.end_s, "clear_alarms"),
        ]

    def analyse(self, side: RunSeries) -> tuple[dict[str, Any], list[Verdict]]:
        t = side.mass_t_s
        pressure = (
            np.interp(t, side.pressure_t_s, side.pressure_mmhg)
            if side.pressure_t_s.size
            else np.full(t.size, np.nan)
        )
        alarm = _step_values(side.alarm_t_s, side.alarm, t)
        result = iec.occlusion_analysis(
            t,
            pressure,
            alarm,
            side.mass_g,
            occlusion_s=self.occlude_s,
            release_s=self.release_s,
            density_g_ml=side.density_g_ml,
            settled_margin_mmhg=self.bolus_end_margin_mmhg,
        )
        measurements = occlusion_measurements(
            max_time_to_alarm_s=self.max_time_to_alarm,
            max_pressure_at_alarm_mmhg=self.max_pressure_at_alarm_mmhg,
            max_bolus_ml=self.max_bolus_ml,
            marginal_fraction=self.marginal_fraction,
        )
        verdicts = evaluate_occlusion(
            result, measurements, source=side.source, bolus_note=_density_note(side.policy)
        )
        analysis = {
            key: _json(value)
            for key, value in vars(result).items()
            if not isinstance(value, np.ndarray)
        }
        analysis["density_g_ml"] = side.density_g_ml
        analysis["gravimetry"] = side.policy.as_dict()
        analysis["parameters"] = self.parameters()
        return analysis, verdicts


class BolusProcedure(Procedure):
    """Bolus accuracy: n boluses, each deviation, mean and worst (1998 50.106)."""

    kind: Literal["iec60601-2-24.bolus"] = "iec60601-2-24.bolus"
    count: int = Field(3, ge=1, le=100)
    volume_ml: float = Field(gt=0)
    rate_ml_h: float = Field(gt=0)
    spacing: Duration = 300.0
    basal_rate_ml_h: float = Field(0.0, ge=0)
    accuracy_percent: float = Field(5.0, gt=0)
    prime_ml: float = Field(0.3, ge=0)
    settle: Duration = 300.0
    weigh_before: Duration = 1.0
    weigh_after_fraction: float = Field(0.75, gt=0.0, le=1.0)

    @property
    def bolus_s(self) -> float:
        return self.volume_ml / self.rate_ml_h * 3600.0

    @property
    def prime_s(self) -> float:
        return self.prime_ml / self.rate_ml_h * 3600.0 + 1.0 if self.prime_ml > 0 else 0.0

    def starts(self) -> list[float]:
        first = self.at + self.prime_s + self.settle
        return [first + i * self.spacing for i in range(self.count)]

    @property
    def end_s(self) -> float:
        return self.starts()[-1] + self.spacing

    def steps(self) -> list[Step]:
        out = []
        if self.prime_ml > 0:
            out.append(_step(self.at, "bolus", volume_ml=self.prime_ml, rate_ml_h=self.rate_ml_h))
        resume = self.at + self.prime_s
        out.append(_step(resume, "tare"))
        if self.basal_rate_ml_h > 0:
            out += [
                _step(resume, "set_rate", rate_ml_h=self.basal_rate_ml_h),
                _step(resume, "start"),
            ]
        for start in self.starts():
            out.append(_step(start, "bolus", volume_ml=self.volume_ml, rate_ml_h=self.rate_ml_h))
        if self.basal_rate_ml_h > 0:
            out.append(_step(self.end_s, "stop"))
        return out

    def analyse(self, side: RunSeries) -> tuple[dict[str, Any], list[Verdict]]:
        if self.spacing < self.bolus_s + 60.0:
            raise AnalysisError("spacing must leave at least 60 s after each bolus to weigh it")
        measured = []
        for start in self.starts():
            before = start - self.weigh_before
            after = start + self.bolus_s + self.weigh_after_fraction * (self.spacing - self.bolus_s)
            m0, m1 = np.interp([before, after], side.mass_t_s, side.mass_g)
            # the basal rate runs in the window except while the bolus replaces it
            basal_s = after - before - self.bolus_s
            basal_g = self.basal_rate_ml_h * basal_s / 3600.0 * side.density_g_ml
            measured.append(m1 - m0 - basal_g)
        result = iec.bolus_accuracy(
            self.volume_ml, np.array(measured), density_g_ml=side.density_g_ml
        )
        limits_source: LimitsSource = (
            "scenario" if "accuracy_percent" in self.model_fields_set else "default"
        )
        measurements = bolus_measurements(
            accuracy_percent=self.accuracy_percent,
            marginal_fraction=self.marginal_fraction,
            limits_source=limits_source,
        )
        verdicts = evaluate_bolus(
            result, measurements, source=side.source, note=_density_note(side.policy)
        )
        analysis = {
            "expected_ml": self.volume_ml,
            "measured_mass_g": [float(m) for m in measured],
            "deviation_percent": np.asarray(result.deviation_percent).tolist(),
            "mean_deviation_percent": result.mean_deviation_percent,
            "worst_deviation_percent": result.worst_deviation_percent,
            "density_g_ml": side.density_g_ml,
            "gravimetry": side.policy.as_dict(),
            "parameters": self.parameters(),
        }
        return analysis, verdicts


PROCEDURES: dict[str, type[Procedure]] = {
    "iec60601-2-24.flow": FlowProcedure,
    "iec60601-2-24.occlusion": OcclusionProcedure,
    "iec60601-2-24.bolus": BolusProcedure,
}


def procedure_errors(tables: Sequence[Any]) -> list[tuple[str, str]]:
    """Every error of a scenario's ``[[procedures]]`` tables as ``(field, message)``, with a
    "did you mean" for a misspelt key (:func:`medtwin.hil.config.validation_errors`)."""
    from medtwin.hil.config import validation_errors

    out: list[tuple[str, str]] = []
    for index, table in enumerate(tables):
        where = f"procedures[{index}]"
        if not isinstance(table, dict):
            out.append((where, "expected a table ([[procedures]])"))
            continue
        kind = table.get("kind")
        cls = PROCEDURES.get(str(kind))
        if cls is None:
            out.append(
                (
                    f"{where}.kind",
                    f"unknown procedure {kind!r}; expected one of {', '.join(PROCEDURES)}",
                )
            )
            continue
        try:
            cls.model_validate({"label": where, **table})
        except ValidationError as exc:
            out += validation_errors(exc, cls, prefix=where)
    return out


def parse_procedures(tables: Sequence[dict[str, Any]], *, source: str) -> list[Procedure]:
    """Validate a scenario's ``[[procedures]]`` tables.

    Raises
    ------
    ConfigurationError
        Naming ``procedures[i].field`` and what was expected, for every error at once.
    """
    errors = procedure_errors(tables)
    if errors:
        from medtwin.hil.config import raise_validation_errors

        raise_validation_errors(errors, source=source)
    return [
        PROCEDURES[str(table.get("kind"))].model_validate(
            {"label": f"procedures[{index}]", **table}
        )
        for index, table in enumerate(tables)
    ]


def analyse(procedures: Sequence[Procedure], sides: Sequence[RunSeries]) -> list[ProcedureResult]:
    """Run every procedure's analysis on every side; an analysis that cannot be done is
    recorded as an error (and UNSET verdicts) instead of hiding the others."""
    results = []
    for procedure in procedures:
        result = ProcedureResult(kind=procedure.kind, label=procedure.label)
        for side in sides:
            try:
                analysis, verdicts = procedure.analyse(side)
            except AnalysisError as exc:
                result.errors[side.source] = str(exc)
                continue
            result.analysis[side.source] = analysis
            result.verdicts += verdicts
        results.append(result)
    return results


def pressure_alarm_bits() -> int:
    """Alarm bits that mean "the pump stopped on pressure" (occlusion; NE-1000: stall)."""
    return int(Alarm.OCCLUSION | Alarm.MOTOR_STALL)


def _step_values(
    t_events: FloatArray, values: NDArray[np.bool_], t: FloatArray
) -> NDArray[np.bool_]:
    """A piecewise-constant flag (set at each event time) sampled at ``t``."""
    if t_events.size == 0:
        return np.zeros(t.size, dtype=bool)
    index = np.searchsorted(t_events, t, side="right") - 1
    return np.where(index >= 0, values[np.maximum(index, 0)], False)


def _density_note(policy: GravimetricPolicy) -> str:
    """The d a mass-derived verdict rests on, in its note (stored and shown beside it)."""
    return policy.label()


def _json(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_json(v) for v in value]
    if isinstance(value, float | np.floating):
        return None if not math.isfinite(float(value)) else float(value)
    if isinstance(value, np.integer | np.bool_):
        return value.item()
    return value
