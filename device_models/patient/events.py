"""Scripted patient events: data that shape the vital-sign means and raise signal flags.

An event is a frozen dataclass; :func:`event_from_mapping` builds one from a TOML table or
a dict (``{"kind": "desaturation", "at_s": 60, "to_percent": 85, "duration_s": 120}``)
and raises :class:`~medtwin.device_models.base.ParameterError` naming the field for a bad
spec. :func:`apply_events` applies a list of them to the mean trajectories of
:func:`medtwin.device_models.patient.vitals.baseline_trajectories`, before variability is
added.

Kinds and their time courses (``t`` from the event's ``at_s``):

``step``
    One vital jumps to ``to`` (or by ``by``) and stays there for ``duration_s``
    (default: to the end).
``ramp``
    One vital goes linearly from its value to ``to`` (or by ``by``) over
    ``duration_s``, then stays.
``bradycardia``
    HR falls linearly to ``to_bpm`` over ``onset_s``, holds, and comes back to the
    trajectory it left over ``onset_s`` after ``duration_s``.
``desaturation``
    The arterial PO2 approaches the PO2 of ``to_percent`` exponentially (``fall_tau_s``),
    holds for ``duration_s`` and recovers exponentially (``recovery_tau_s``); SpO2 is the
    Severinghaus oxygen dissociation curve of that PO2 (J Appl Physiol 1979;46:599,
    doi:10.1152/jappl.1979.46.3.599; as implemented in :mod:`.pd`), seen at the finger
    ``circulation_delay_s`` later.
    The shape is sigmoid in SpO2, as observed desaturations are: slow while the PO2 is on
    the flat top of the curve, fast once it is on the steep part.
``apnoea``
    RR is exactly 0 for ``duration_s``; the alveolar PO2 falls exponentially towards the
    mixed-venous PO2 (``venous_po2_mmhg``, time constant ``po2_tau_s``), then recovers
    with ``recovery_tau_s`` once breathing resumes; SpO2 from the same curve and delay.
    The default time constant makes a room-air adult reach SpO2 ≈ 90 % about one
    minute into the apnoea: a model choice, of the order of magnitude of Farmery & Roe
    1996 (Br J Anaesth 76:284, doi:10.1093/bja/76.2.284), not fitted to it.
``sensor_off``
    The oximeter probe is off for ``duration_s``: the ``sensor_off`` flag (the vitals
    go on; the monitor model decides what it shows).
``motion``
    A motion artefact of relative ``amplitude`` for ``duration_s``: the ``motion`` flag
    and the artefact amplitude the plethysmogram adds.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from medtwin.device_models.base import ParameterError
from medtwin.device_models.patient.pd import severinghaus_pao2_mmhg, severinghaus_spo2_percent
from medtwin.device_models.patient.vitals import VITALS, time_grid
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "EVENT_KINDS",
    "Apnoea",
    "Bradycardia",
    "Desaturation",
    "Event",
    "EventEffects",
    "Motion",
    "Ramp",
    "SensorOff",
    "Step",
    "apply_events",
    "event_from_mapping",
    "events_from_mappings",
]

FloatArray = NDArray[np.float64]
_INF = math.inf


def _po2_from_spo2(spo2_percent: ArrayLike) -> FloatArray:
    # The curve reaches 100 % only at infinite PO2: cap at 99.95 %.
    return severinghaus_pao2_mmhg(np.clip(np.asarray(spo2_percent, dtype=float), 0.01, 99.95))


@dataclass(frozen=True)
class _Event:
    kind: ClassVar[str] = ""
    at_s: float

    def end_s(self) -> float:
        return self.at_s + float(getattr(self, "duration_s", _INF))

    def _check(self) -> None:
        _number(self, "at_s", minimum=0.0)


def _number(
    event: object,
    name: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    positive: bool = False,
    allow_inf: bool = False,
) -> None:
    value = getattr(event, name)
    kind = getattr(event, "kind", "")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ParameterError(f"{kind} event: {name} = {value!r} must be a number")
    if math.isnan(value) or (math.isinf(value) and not allow_inf):
        raise ParameterError(f"{kind} event: {name} = {value!r} must be finite")
    if positive and not value > 0.0:
        raise ParameterError(f"{kind} event: {name} = {value:g} must be > 0")
    if minimum is not None and value < minimum:
        raise ParameterError(f"{kind} event: {name} = {value:g} is below its minimum {minimum:g}")
    if maximum is not None and value > maximum:
        raise ParameterError(f"{kind} event: {name} = {value:g} is above its maximum {maximum:g}")


def _target(event: Step | Ramp) -> None:
    if event.vital not in VITALS:
        raise ParameterError(
            f"{event.kind} event: vital = {event.vital!r}: expected one of {', '.join(VITALS)}"
        )
    if (event.to is None) == (event.by is None):
        raise ParameterError(f"{event.kind} event: to: give exactly one of to and by")
    name = "to" if event.to is not None else "by"
    _number(event, name)


@dataclass(frozen=True)
class Step(_Event):
    """``vital`` jumps to ``to`` (absolute) or by ``by`` at ``at_s`` for ``duration_s``."""

    kind: ClassVar[str] = "step"
    vital: str = "hr_bpm"
    to: float | None = None
    by: float | None = None
    duration_s: float = _INF

    def __post_init__(self) -> None:
        self._check()
        _target(self)
        _number(self, "duration_s", positive=True, allow_inf=True)


@dataclass(frozen=True)
class Ramp(_Event):
    """``vital`` goes linearly to ``to`` (or by ``by``) over ``duration_s``, then stays."""

    kind: ClassVar[str] = "ramp"
    vital: str = "hr_bpm"
    to: float | None = None
    by: float | None = None
    duration_s: float = 60.0

    def __post_init__(self) -> None:
        self._check()
        _target(self)
        _number(self, "duration_s", positive=True)

    def end_s(self) -> float:
        return _INF


@dataclass(frozen=True)
class Bradycardia(_Event):
    """HR to ``to_bpm`` (linear over ``onset_s``) for ``duration_s``, then back."""

    kind: ClassVar[str] = "bradycardia"
    duration_s: float = 60.0
    to_bpm: float = 40.0
    onset_s: float = 5.0

    def __post_init__(self) -> None:
        self._check()
        _number(self, "duration_s", positive=True)
        _number(self, "to_bpm", minimum=20.0, maximum=60.0)
        _number(self, "onset_s", minimum=0.0)


@dataclass(frozen=True)
class Desaturation(_Event):
    """SpO2 towards ``to_percent`` through the PO2 (see the module docstring)."""

    kind: ClassVar[str] = "desaturation"
    to_percent: float = 85.0
    duration_s: float = 60.0
    fall_tau_s: float = 15.0
    recovery_tau_s: float = 10.0
    circulation_delay_s: float = 10.0

    def __post_init__(self) -> None:
        self._check()
        _number(self, "to_percent", minimum=50.0, maximum=100.0)
        _number(self, "duration_s", positive=True)
        _number(self, "fall_tau_s", positive=True)
        _number(self, "recovery_tau_s", positive=True)
        _number(self, "circulation_delay_s", minimum=0.0)


@dataclass(frozen=True)
class Apnoea(_Event):
    """No breathing for ``duration_s``: RR = 0 and SpO2 falling (see the module docstring)."""

    kind: ClassVar[str] = "apnoea"
    duration_s: float = 30.0
    po2_tau_s: float = 50.0
    venous_po2_mmhg: float = 40.0
    recovery_tau_s: float = 10.0
    circulation_delay_s: float = 10.0

    def __post_init__(self) -> None:
        self._check()
        _number(self, "duration_s", positive=True)
        _number(self, "po2_tau_s", positive=True)
        _number(self, "venous_po2_mmhg", minimum=15.0, maximum=60.0)
        _number(self, "recovery_tau_s", positive=True)
        _number(self, "circulation_delay_s", minimum=0.0)


@dataclass(frozen=True)
class SensorOff(_Event):
    """The oximeter probe is off for ``duration_s``."""

    kind: ClassVar[str] = "sensor_off"
    duration_s: float = 10.0

    def __post_init__(self) -> None:
        self._check()
        _number(self, "duration_s", positive=True, allow_inf=True)


@dataclass(frozen=True)
class Motion(_Event):
    """A motion artefact of relative ``amplitude`` (1 = the default size) for ``duration_s``."""

    kind: ClassVar[str] = "motion"
    duration_s: float = 10.0
    amplitude: float = 1.0

    def __post_init__(self) -> None:
        self._check()
        _number(self, "duration_s", positive=True, allow_inf=True)
        _number(self, "amplitude", minimum=0.0, maximum=10.0)


Event = Step | Ramp | Bradycardia | Desaturation | Apnoea | SensorOff | Motion

#: Event classes by their ``kind`` (``apnea`` is accepted as a spelling of ``apnoea``).
EVENT_KINDS: dict[str, type[Event]] = {
    cls.kind: cls for cls in (Step, Ramp, Bradycardia, Desaturation, Apnoea, SensorOff, Motion)
}
_ALIASES = {"apnea": "apnoea", "motion_artefact": "motion", "motion_artifact": "motion"}


def event_from_mapping(spec: Mapping[str, Any], *, where: str = "event") -> Event:
    """One event from a dict or TOML table with a ``kind`` key.

    Parameters
    ----------
    spec : Mapping
        ``kind`` (see :data:`EVENT_KINDS`) and the fields of that event class.
    where : str
        How the error names the spec, e.g. ``events[2]``.

    Raises
    ------
    ParameterError
        Naming ``<where>.<field>``: unknown kind, unknown or missing field, wrong type,
        value out of range.
    """
    if not isinstance(spec, Mapping):
        raise ParameterError(f"{where}: expected a table, got {type(spec).__name__}")
    raw = spec.get("kind")
    kind = _ALIASES.get(raw, raw) if isinstance(raw, str) else ""
    cls = EVENT_KINDS.get(kind)
    if cls is None:
        raise ParameterError(f"{where}.kind = {raw!r}: expected one of {', '.join(EVENT_KINDS)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(str(key) for key in set(spec) - set(fields) - {"kind"})
    if unknown:
        raise ParameterError(
            f"{where}.{unknown[0]}: unknown field of a {kind} event (fields: {', '.join(fields)})"
        )
    if "at_s" not in spec:
        raise ParameterError(f"{where}.at_s: missing (the event's start time, s)")
    values: dict[str, Any] = {}
    for name, value in spec.items():
        if name == "kind":
            continue
        if name == "vital":
            if not isinstance(value, str):
                raise ParameterError(f"{where}.vital = {value!r}: expected a name")
            values[name] = value
        elif isinstance(value, bool) or not isinstance(value, int | float):
            raise ParameterError(f"{where}.{name} = {value!r}: expected a number")
        else:
            try:
                values[name] = float(value)
            except OverflowError:
                raise ParameterError(f"{where}.{name} = {value!r}: out of range") from None
    try:
        return cls(**values)
    except ParameterError as exc:
        # "<kind> event: <field> = ..." → "<where>.<field> = ..."
        message = str(exc).removeprefix(f"{kind} event: ")
        sep = "." if message.split(" ", 1)[0].rstrip(":") in fields else ": "
        raise ParameterError(f"{where}{sep}{message}") from None


def events_from_mappings(
    specs: Iterable[Mapping[str, Any]], *, where: str = "events"
) -> list[Event]:
    """A list of events from a list of tables; errors name ``<where>[i].<field>``."""
    return [event_from_mapping(spec, where=f"{where}[{i}]") for i, spec in enumerate(specs)]


@dataclass(frozen=True)
class EventEffects:
    """What the events did, on the time grid (every array of shape ``(n,)``).

    Attributes
    ----------
    means : dict
        The shaped mean trajectories, by vital name.
    apnoea : ndarray of bool
        Not breathing (RR is held at exactly 0 there).
    sensor_off, motion : ndarray of bool
        Signal flags.
    motion_amplitude : ndarray
        Relative motion-artefact amplitude (0 outside motion).
    """

    means: dict[str, FloatArray]
    apnoea: NDArray[np.bool_]
    sensor_off: NDArray[np.bool_]
    motion: NDArray[np.bool_]
    motion_amplitude: FloatArray


def _window(t: FloatArray, start: float, end: float) -> NDArray[np.bool_]:
    return np.asarray((t >= start) & (t < end))


def _po2_course(
    t: FloatArray,
    p0: FloatArray,
    target: float,
    at: float,
    end: float,
    fall_tau: float,
    recovery_tau: float,
) -> FloatArray:
    """Exponential approach to ``target`` in [at, end), exponential recovery to p0 after."""
    p0_at = float(np.interp(at, t, p0))
    gap = target - p0_at
    s = np.clip(t - at, 0.0, end - at)
    during = p0_at + gap * (1.0 - np.exp(-s / fall_tau))
    p_end = p0_at + gap * (1.0 - math.exp(-(end - at) / fall_tau))
    after = p0 + (p_end - p0) * np.exp(-np.maximum(t - end, 0.0) / recovery_tau)
    return np.where(t < at, p0, np.where(t < end, during, after))


def apply_events(
    t_s: ArrayLike, means: Mapping[str, ArrayLike], events: Sequence[Event]
) -> EventEffects:
    """Apply events, in order of their start time, to the mean trajectories.

    Steps, ramps and bradycardias blend the current trajectory ``m`` with their target:
    ``m·(1 − e) + target·e`` with an envelope ``e(t)`` in [0, 1] (rectangle, linear rise,
    trapezoid), so a later event starts from where earlier ones left the vital.
    Desaturations and apnoeas act on the PO2 of the SpO2 trajectory (the lowest PO2 of
    all of them wins) and are seen after their circulation delay.

    Parameters
    ----------
    t_s : array_like, shape (n,)
    means : Mapping
        One array ``(n,)`` per name of :data:`~medtwin.device_models.patient.vitals.VITALS`.
    events : sequence of Event

    Returns
    -------
    EventEffects
    """
    t = time_grid(t_s)
    missing = [name for name in VITALS if name not in means]
    if missing:
        raise ParameterError(f"means lacks {', '.join(missing)}")
    out: dict[str, FloatArray] = {}
    for name in VITALS:
        value = np.asarray(means[name], dtype=float)
        if value.shape not in ((), t.shape):
            raise ParameterError(f"means[{name!r}] has shape {value.shape}, expected {t.shape}")
        out[name] = np.array(np.broadcast_to(value, t.shape))
    apnoea = np.zeros(t.size, dtype=bool)
    sensor_off = np.zeros(t.size, dtype=bool)
    motion_amplitude = np.zeros(t.size)
    ordered = sorted(events, key=lambda e: e.at_s)
    # Vital-level events first, so that a desaturation starts from a stepped SpO2.
    for event in ordered:
        if isinstance(event, Step | Ramp):
            m = out[event.vital]
            if isinstance(event, Step):
                env = _window(t, event.at_s, event.end_s()).astype(np.float64)
            else:
                env = np.clip((t - event.at_s) / event.duration_s, 0.0, 1.0)
            goal = m + event.by if event.by is not None else np.full(t.size, event.to)
            out[event.vital] = m * (1.0 - env) + goal * env
        elif isinstance(event, Bradycardia):
            m = out["hr_bpm"]
            edge = max(event.onset_s, 1e-9)
            rise = np.clip((t - event.at_s) / edge, 0.0, 1.0)
            fall = np.clip((event.end_s() + edge - t) / edge, 0.0, 1.0)
            env = np.minimum(rise, fall)
            out["hr_bpm"] = m * (1.0 - env) + np.minimum(m, event.to_bpm) * env
    po2_base = _po2_from_spo2(out["spo2_percent"])
    po2 = po2_base.copy()
    for event in ordered:
        if isinstance(event, Desaturation | Apnoea):
            if isinstance(event, Desaturation):
                po2_goal = float(_po2_from_spo2(event.to_percent))
                fall_tau = event.fall_tau_s
            else:
                po2_goal, fall_tau = event.venous_po2_mmhg, event.po2_tau_s
                apnoea |= _window(t, event.at_s, event.end_s())
            # The course is computed at the lungs and seen at the finger a delay later.
            lung_t = t - event.circulation_delay_s
            course = _po2_course(
                t, po2_base, po2_goal, event.at_s, event.end_s(), fall_tau, event.recovery_tau_s
            )
            seen = np.interp(lung_t, t, course, left=float(course[0]))
            po2 = np.minimum(po2, np.where(lung_t < event.at_s, po2_base, seen))
        elif isinstance(event, SensorOff):
            sensor_off |= _window(t, event.at_s, event.end_s())
        elif isinstance(event, Motion):
            in_window = _window(t, event.at_s, event.end_s())
            motion_amplitude = np.where(
                in_window, np.maximum(motion_amplitude, event.amplitude), motion_amplitude
            )
    changed = po2 < po2_base
    out["spo2_percent"] = np.where(
        changed,
        np.minimum(severinghaus_spo2_percent(po2), out["spo2_percent"]),
        out["spo2_percent"],
    )
    out["rr_min"] = np.where(apnoea, 0.0, out["rr_min"])
    return EventEffects(
        means=out,
        apnoea=apnoea,
        sensor_off=sensor_off,
        motion=motion_amplitude > 0.0,
        motion_amplitude=motion_amplitude,
    )
