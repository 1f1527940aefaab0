"""Parameters of the monitor model and the vendor presets.

Every field carries its unit in its name and is declared with
:func:`~medtwin.device_models.base.param`, so ``list_parameters`` / ``with_overrides``
address it by dotted name (``spo2.averaging_s``, ``alarms.spo2_delay_s``) and calibration
can fit it like a pump parameter. A "real" monitor in emulation is a preset plus overrides
(``spo2.bias_percent``, ``hr.offset_bpm``, ``spo2.averaging_s``, ``alarms.spo2_delay_s``).

Sources of the preset values (docs/monitor-model.md carries them with their pages):

* Philips MP2 instructions for use, HR specification (manualslib 1292295, p. 300): mean of
  the 12 most recent R-R intervals, mean of the last 4 when 3 consecutive R-R exceed
  1200 ms; step response 80→120 bpm 6.4–7.2 s, 80→40 bpm 5.6–6.4 s. SpO2 alarm delay
  configurable 0–30 s (p. 177).
* Mindray BeneHeart D60 operator's manual (p. A-17): 12 R-R minus the maximum and the
  minimum, same slow-rate rule, display updated every second, response < 11 s. uMEC15
  (p. 84): SpO2 technical alarm delay Off/5/10/15 s.
* Masimo (as quoted by the Mindray BeneVision TM80 manual, p. 123): SpO2 averaging 2–4,
  4–6, 8, 10, 12, 14, 16 s, FastSat, 8 s default; 1 Hz serial output.
* Nonin 3150 manual (p. 48): 4-beat exponential average, 1.5 s display update, last values
  frozen 10 s on inadequate signal, then dashes.

Values not found in those texts are marked *unverified* in their ``doc`` and stay
configurable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from medtwin.device_models.base import (
    ParameterError,
    list_parameters,
    param,
    validate,
    with_overrides,
)

__all__ = [
    "PRESETS",
    "AlarmParams",
    "HrParams",
    "MonitorParams",
    "Spo2Params",
    "monitor_preset",
]

HR_METHODS = ("mean", "trimmed_mean")
SPO2_METHODS = ("window", "beat_exponential")
SPO2_LOW_STRATEGIES = ("delay", "satseconds")
PRIORITIES = ("high", "medium", "low")


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ParameterError(f"parameter {name} = {value!r}: expected one of {', '.join(choices)}")


@dataclass(frozen=True)
class HrParams:
    """Heart rate from R-R intervals (ECG) as the monitor averages and shows it."""

    method: str = param(
        "mean",
        unit="",
        doc="R-R averaging: 'mean' (Philips) or 'trimmed_mean' (Mindray: drop max and min)",
    )
    averaging_intervals: int = param(
        12, unit="R-R", doc="R-R intervals averaged", minimum=1, maximum=64
    )
    slow_rule: bool = param(
        True,
        unit="",
        doc="use the short average when the last 3 R-R are all long (IEC 60601-2-27 "
        "201.7.9.2.9.101 b) 3) as the manuals describe it)",
    )
    slow_rr_threshold_ms: float = param(
        1200.0,
        unit="ms",
        doc="an R-R above this is 'long' for the slow rule",
        minimum=100.0,
        maximum=5000.0,
    )
    slow_rule_intervals: int = param(
        4, unit="R-R", doc="R-R intervals averaged under the slow rule", minimum=1, maximum=64
    )
    processing_delay_s: float = param(
        0.0,
        unit="s",
        doc="QRS detection and processing lag before a beat reaches the display",
        minimum=0.0,
        maximum=10.0,
    )
    offset_bpm: float = param(
        0.0,
        unit="bpm",
        doc="constant error added to the shown HR (a 'real' monitor's bias)",
        minimum=-50.0,
        maximum=50.0,
    )
    timeout_s: float = param(
        10.0,
        unit="s",
        doc="no R-peak for this long: HR invalid (dashes); unverified",
        minimum=0.5,
        maximum=120.0,
    )

    def __post_init__(self) -> None:
        _check_choice("hr.method", self.method, HR_METHODS)
        validate(self, prefix="hr.")


@dataclass(frozen=True)
class Spo2Params:
    """SpO2 averaging, signal-loss behaviour and perfusion flags."""

    method: str = param(
        "window", unit="", doc="'window' (time average, Masimo-style) or 'beat_exponential' (Nonin)"
    )
    averaging_s: float = param(
        8.0,
        unit="s",
        doc="averaging window (Masimo 2-16 s, 8 s default)",
        minimum=0.5,
        maximum=32.0,
    )
    fast_mode: bool = param(False, unit="", doc="fast mode (FastSat): use fast_averaging_s")
    fast_averaging_s: float = param(
        2.0,
        unit="s",
        doc="window in fast mode; unverified (FastSat is adaptive)",
        minimum=0.5,
        maximum=32.0,
    )
    exponential_beats: float = param(
        4.0,
        unit="beats",
        doc="N of the N-beat exponential average, weight 2/(N+1) (weighting unverified)",
        minimum=1.0,
        maximum=64.0,
    )
    processing_delay_s: float = param(
        0.0,
        unit="s",
        doc="signal processing lag before the average reaches the display",
        minimum=0.0,
        maximum=30.0,
    )
    bias_percent: float = param(
        0.0,
        unit="%",
        doc="constant error added to the shown SpO2 (a 'real' monitor's bias)",
        minimum=-20.0,
        maximum=20.0,
    )
    low_range_bias_percent: float = param(
        0.0,
        unit="%",
        doc="further error added where the SpO2 is below low_range_below_percent (a monitor "
        "less accurate in the low range, where ISO 80601-2-61 evaluates Arms separately)",
        minimum=-20.0,
        maximum=20.0,
    )
    low_range_below_percent: float = param(
        90.0,
        unit="%",
        doc="SpO2 (averaged, before any bias) below which low_range_bias_percent applies",
        minimum=0.0,
        maximum=100.0,
    )
    freeze_s: float = param(
        10.0,
        unit="s",
        doc="on signal loss the last value is held this long, then dashes (Nonin 10 s)",
        minimum=0.0,
        maximum=120.0,
    )
    pi_min_measurable_percent: float = param(
        0.02,
        unit="%",
        doc="perfusion index below which no SpO2 is measured (signal loss); unverified",
        minimum=0.0,
        maximum=20.0,
    )
    low_perfusion_percent: float = param(
        0.3,
        unit="%",
        doc="perfusion index below which the low-perfusion flag is set; unverified",
        minimum=0.0,
        maximum=20.0,
    )
    motion_drops_signal: bool = param(
        False, unit="", doc="motion artifact makes the signal invalid (else only flagged)"
    )

    def __post_init__(self) -> None:
        _check_choice("spo2.method", self.method, SPO2_METHODS)
        validate(self, prefix="spo2.")

    @property
    def window_s(self) -> float:
        """The averaging window in use (s)."""
        return self.fast_averaging_s if self.fast_mode else self.averaging_s


def _delay(default: float, doc: str) -> Any:
    return param(default, unit="s", doc=doc, minimum=0.0, maximum=300.0)


def _choice(default: str, doc: str) -> Any:
    return param(default, unit="", doc=doc)


def _limit(default: float, unit: str, doc: str, hi: float) -> Any:
    return param(default, unit=unit, doc=doc, minimum=0.0, maximum=hi)


@dataclass(frozen=True)
class AlarmParams:
    """Limits, priorities, latching and delays in IEC 60601-1-8 terms.

    A limit at its range end (SpO2 high 100 %, HR low 0 bpm) never alarms. The *alarm signal
    generation delay* of each condition is its ``*_delay_s``; the *alarm condition delay*
    is not a parameter: it follows from averaging, processing lag and the update period.
    """

    spo2_low_percent: float = _limit(90.0, "%", "SpO2 low alarm limit", 100.0)
    spo2_high_percent: float = _limit(100.0, "%", "SpO2 high alarm limit (100: off)", 100.0)
    hr_low_bpm: float = _limit(50.0, "bpm", "HR low alarm limit", 350.0)
    hr_high_bpm: float = _limit(120.0, "bpm", "HR high alarm limit", 350.0)
    spo2_delay_s: float = _delay(0.0, "SpO2 alarm signal generation delay")
    hr_delay_s: float = _delay(0.0, "HR alarm signal generation delay")
    technical_delay_s: float = _delay(0.0, "technical alarm (sensor off, no signal) delay")
    spo2_low_strategy: str = _choice("delay", "'delay' or 'satseconds' for SpO2 low")
    satseconds_threshold: float = param(
        50.0,
        unit="%·s",
        doc="SatSeconds: alarm when the integral of (limit - SpO2) reaches this",
        minimum=10.0,
        maximum=100.0,
    )
    satseconds_override_count: int = param(
        3, unit="", doc="SatSeconds safety net: this many violations ...", minimum=2, maximum=10
    )
    satseconds_override_window_s: float = param(
        60.0, unit="s", doc="... within this time alarm at once", minimum=1.0, maximum=600.0
    )
    spo2_priority: str = _choice("high", "priority of SpO2 low/high")
    hr_priority: str = _choice("medium", "priority of HR low/high")
    technical_priority: str = _choice("low", "priority of sensor off / no signal")
    latching_priorities: str = _choice(
        "high", "comma-separated priorities whose alarm signals latch until acknowledged"
    )
    t1_lookback_s: float = param(
        60.0,
        unit="s",
        doc="a true violation that ended longer than this before t2 did not cause "
        "the alarm (false alarm: t1 undefined)",
        minimum=0.0,
        maximum=3600.0,
    )

    def __post_init__(self) -> None:
        _check_choice("alarms.spo2_low_strategy", self.spo2_low_strategy, SPO2_LOW_STRATEGIES)
        for name in ("spo2_priority", "hr_priority", "technical_priority"):
            _check_choice(f"alarms.{name}", getattr(self, name), PRIORITIES)
        for item in self.latching:
            _check_choice("alarms.latching_priorities", item, PRIORITIES)
        validate(self, prefix="alarms.")

    @property
    def latching(self) -> frozenset[str]:
        """The priorities whose alarm signals latch."""
        return frozenset(s.strip() for s in self.latching_priorities.split(",") if s.strip())


@dataclass(frozen=True)
class MonitorParams:
    """One monitor: HR, SpO2, alarms and its display update."""

    name: str = _choice("generic", "preset this set was built from")
    update_period_s: float = param(
        1.0,
        unit="s",
        doc="display (and alarm evaluation) update period",
        minimum=0.05,
        maximum=60.0,
    )
    update_phase_s: float = param(
        0.0,
        unit="s",
        doc="first update this long after the record start",
        minimum=0.0,
        maximum=60.0,
    )
    round_display: bool = param(True, unit="", doc="show integers (HR bpm, SpO2 %) as monitors do")
    hr: HrParams = field(default_factory=HrParams)
    spo2: Spo2Params = field(default_factory=Spo2Params)
    alarms: AlarmParams = field(default_factory=AlarmParams)

    def __post_init__(self) -> None:
        validate(self)

    def with_overrides(self, overrides: Mapping[str, Any]) -> MonitorParams:
        """A copy with dotted-name overrides (``{"spo2.bias_percent": 1.5}``), validated."""
        return with_overrides(self, overrides)

    def parameters(self) -> list[Any]:
        """Every leaf parameter (:class:`~medtwin.device_models.base.ParameterInfo`)."""
        return list_parameters(self)


# The HR processing lag of the Philips and Mindray presets is not published: 0.9 s is fitted
# so that the mean response over step phases falls inside both of Philips' published ranges
# with the criterion of docs/monitor-model.md (the manuals give only the response times).
PRESETS: dict[str, dict[str, Any]] = {
    "generic": {},
    "philips": {
        "hr.method": "mean",
        "hr.processing_delay_s": 0.9,
        # SpO2 alarm delay: configurable 0-30 s (MP2 p. 177); 10 s is our default (unverified)
        "alarms.spo2_delay_s": 10.0,
    },
    "mindray": {
        "hr.method": "trimmed_mean",
        "hr.processing_delay_s": 0.9,  # unverified, as Philips
        "alarms.hr_delay_s": 0.0,  # the global alarm delay is not applied to HR (uMEC p. 84)
        "alarms.spo2_delay_s": 10.0,  # unverified
        "alarms.technical_delay_s": 10.0,  # selectable Off/5/10/15 s; 10 s unverified
    },
    "masimo": {
        "spo2.method": "window",
        "spo2.averaging_s": 8.0,
        "spo2.fast_averaging_s": 2.0,  # unverified
        "update_period_s": 1.0,  # the 1 Hz serial output
    },
    "nonin": {
        "spo2.method": "beat_exponential",
        "spo2.exponential_beats": 4.0,
        "spo2.freeze_s": 10.0,
        "update_period_s": 1.5,
        # Nonin's HR is a 4-beat average (#2 data format); the slow rule is an ECG rule
        "hr.averaging_intervals": 4,
        "hr.slow_rule": False,
    },
}


def monitor_preset(name: str, overrides: Mapping[str, Any] | None = None) -> MonitorParams:
    """The parameters of a vendor preset, optionally with overrides (a 'real' monitor).

    Parameters
    ----------
    name : {"generic", "masimo", "nonin", "philips", "mindray"}
    overrides : mapping, optional
        Dotted names to values, applied after the preset.

    Raises
    ------
    ParameterError
        For an unknown preset or a bad override.
    """
    if name not in PRESETS:
        raise ParameterError(
            f"unknown monitor preset {name!r}: expected one of {', '.join(PRESETS)}"
        )
    params = with_overrides(MonitorParams(name=name), PRESETS[name])
    if overrides:
        params = with_overrides(params, overrides)
    return params
