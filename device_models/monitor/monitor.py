"""The whole monitor: inputs from the patient, displayed series, flags and alarms.

Input contract (:class:`MonitorInput`): the patient's TRUE values on a time grid
(sample-and-hold: each sample holds until the next) plus the R-peak times.
Output (:class:`MonitorOutput`): the values the monitor shows at its update times
``t0 + update_phase_s + j·update_period_s`` (NaN = dashes), status flags, and
:class:`~medtwin.device_models.monitor.alarms.Alarm` records.

:func:`simulate_monitor` is the batch form (a whole record, vectorised: 24 h at 75 Hz in a
fraction of a second); :class:`MonitorStream` the incremental form for live use, fed chunk
by chunk, which gives the batch form's result for the same input (it keeps a trailing
buffer and calls the same functions).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from medtwin.device_models.monitor.alarms import (
    Alarm,
    ConditionSpec,
    evaluate_condition,
    true_runs,
)
from medtwin.device_models.monitor.hr import BeatHrAverager, beat_hr_bpm, hr_at
from medtwin.device_models.monitor.params import MonitorParams
from medtwin.device_models.monitor.spo2 import (
    beat_exponential,
    cumulative_integrals,
    grid_index,
    loss_start_s,
    signal_valid,
    spo2_at,
)
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "CONDITIONS",
    "MonitorInput",
    "MonitorOutput",
    "MonitorStream",
    "condition_specs",
    "simulate_monitor",
    "simulate_monitors",
]

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

#: The alarm conditions, in the order the alarm list reports them.
CONDITIONS = ("spo2_low", "spo2_high", "hr_low", "hr_high", "spo2_sensor_off", "spo2_no_signal")


def _empty() -> FloatArray:
    return np.empty(0)


@dataclass(frozen=True)
class MonitorInput:
    """The patient as the monitor's sensors see it.

    Attributes
    ----------
    t_s : ndarray, shape (n,)
        Strictly increasing sample times (s), any spacing (1 Hz trend or 75 Hz pleth).
    spo2_true_percent : ndarray, shape (n,)
        True arterial saturation (%).
    pi_percent : ndarray, shape (n,)
        Perfusion index (%).
    sensor_off : ndarray of bool, shape (n,)
        The SpO2 sensor is off the patient.
    motion : ndarray of bool, shape (n,)
        Motion artifact present.
    r_peak_times_s : ndarray, shape (m,)
        Strictly increasing R-peak times (s).
    acknowledge_s : ndarray, shape (k,)
        Times the user acknowledged the alarms (ends latched alarm signals).
    """

    t_s: FloatArray
    spo2_true_percent: FloatArray
    pi_percent: FloatArray
    sensor_off: BoolArray
    motion: BoolArray
    r_peak_times_s: FloatArray = field(default_factory=_empty)
    acknowledge_s: FloatArray = field(default_factory=_empty)

    def __post_init__(self) -> None:
        t = np.asarray(self.t_s, dtype=float)
        if t.ndim != 1 or t.size < 1:
            raise ValueError("t_s must be a non-empty 1-D array")
        if np.any(np.diff(t) <= 0):
            raise ValueError("t_s must be strictly increasing")
        for name in ("spo2_true_percent", "pi_percent", "sensor_off", "motion"):
            if np.shape(getattr(self, name)) != t.shape:
                raise ValueError(f"{name} must have the shape of t_s {t.shape}")
        r = np.asarray(self.r_peak_times_s, dtype=float)
        if r.ndim != 1 or np.any(np.diff(r) <= 0):
            raise ValueError("r_peak_times_s must be a strictly increasing 1-D array")

    @classmethod
    def from_record(cls, record: Any, acknowledge_s: ArrayLike = ()) -> MonitorInput:
        """The input from a patient record (duck-typed: a
        :class:`~medtwin.device_models.patient.model.PatientRecord` or anything with
        ``t_s``, ``spo2_percent``, ``pi_percent``, ``sensor_off``, ``motion`` and an
        ``r_peak_times_s()`` method)."""
        return cls(
            t_s=np.asarray(record.t_s, dtype=float),
            spo2_true_percent=np.asarray(record.spo2_percent, dtype=float),
            pi_percent=np.asarray(record.pi_percent, dtype=float),
            sensor_off=np.asarray(record.sensor_off, dtype=bool),
            motion=np.asarray(record.motion, dtype=bool),
            r_peak_times_s=np.asarray(record.r_peak_times_s(), dtype=float),
            acknowledge_s=np.asarray(acknowledge_s, dtype=float),
        )


@dataclass(frozen=True)
class MonitorOutput:
    """What the monitor shows at each update (arrays of shape (u,)) and its alarms.

    ``hr_bpm``, ``spo2_percent`` and ``pi_percent`` are NaN where the monitor shows dashes.
    ``signal_loss``: no usable SpO2 signal; ``searching``: signal lost but the last value
    still held (freeze); ``low_perfusion``: PI below the low-perfusion threshold;
    ``artifact``: motion present; ``sensor_off``: the sensor is off.
    """

    t_s: FloatArray
    hr_bpm: FloatArray
    spo2_percent: FloatArray
    pi_percent: FloatArray
    signal_loss: BoolArray
    searching: BoolArray
    low_perfusion: BoolArray
    artifact: BoolArray
    sensor_off: BoolArray
    alarms: tuple[Alarm, ...] = ()


def condition_specs(params: MonitorParams) -> dict[str, ConditionSpec]:
    """The alarm conditions with their priority, latching and signal generation delay."""
    a = params.alarms
    latch = a.latching

    def spec(name: str, kind: str, priority: str, delay: float, sat: bool = False) -> ConditionSpec:
        return ConditionSpec(
            name=name,
            kind=kind,
            priority=priority,
            latching=priority in latch,
            delay_s=delay,
            satseconds=sat,
            satseconds_threshold=a.satseconds_threshold,
            override_count=a.satseconds_override_count,
            override_window_s=a.satseconds_override_window_s,
            t1_lookback_s=a.t1_lookback_s,
        )

    sat = a.spo2_low_strategy == "satseconds"
    return {
        "spo2_low": spec("spo2_low", "physiological", a.spo2_priority, a.spo2_delay_s, sat),
        "spo2_high": spec("spo2_high", "physiological", a.spo2_priority, a.spo2_delay_s),
        "hr_low": spec("hr_low", "physiological", a.hr_priority, a.hr_delay_s),
        "hr_high": spec("hr_high", "physiological", a.hr_priority, a.hr_delay_s),
        "spo2_sensor_off": spec(
            "spo2_sensor_off", "technical", a.technical_priority, a.technical_delay_s
        ),
        "spo2_no_signal": spec(
            "spo2_no_signal", "technical", a.technical_priority, a.technical_delay_s
        ),
    }


def _violations(
    params: MonitorParams, out: dict[str, NDArray[Any]]
) -> dict[str, tuple[BoolArray, FloatArray]]:
    """Per condition: violating at each update, and ``limit − value`` (SatSeconds)."""
    a = params.alarms
    spo2, hr = out["spo2_percent"], out["hr_bpm"]
    with np.errstate(invalid="ignore"):
        low = a.spo2_low_percent - spo2
        return {
            "spo2_low": (spo2 < a.spo2_low_percent, low),
            "spo2_high": (spo2 > a.spo2_high_percent, spo2 - a.spo2_high_percent),
            "hr_low": (hr < a.hr_low_bpm, a.hr_low_bpm - hr),
            "hr_high": (hr > a.hr_high_bpm, hr - a.hr_high_bpm),
            "spo2_sensor_off": (out["sensor_off"], np.zeros(spo2.shape)),
            "spo2_no_signal": (out["signal_loss"] & ~out["sensor_off"], np.zeros(spo2.shape)),
        }


def _true_flags(
    params: MonitorParams, spo2_true: FloatArray, sensor_off: BoolArray, valid: BoolArray
) -> dict[str, BoolArray]:
    """Per grid-based condition: the TRUE violation at each grid sample (for ``t1``)."""
    a = params.alarms
    return {
        "spo2_low": spo2_true < a.spo2_low_percent,
        "spo2_high": spo2_true > a.spo2_high_percent,
        "spo2_sensor_off": np.asarray(sensor_off, dtype=bool),
        "spo2_no_signal": ~valid & ~np.asarray(sensor_off, dtype=bool),
    }


def _hr_true_flags(params: MonitorParams, inst_hr: FloatArray) -> dict[str, BoolArray]:
    a = params.alarms
    return {"hr_low": inst_hr < a.hr_low_bpm, "hr_high": inst_hr > a.hr_high_bpm}


def _display(value: FloatArray, offset: float, params: MonitorParams, top: float) -> FloatArray:
    shown = np.clip(value + offset, 0.0, top)
    return np.round(shown) if params.round_display else shown


def _low_range(spo2: FloatArray, params: MonitorParams) -> FloatArray:
    """The averaged SpO2 with the low-range bias added where it is below the threshold."""
    p = params.spo2
    if p.low_range_bias_percent == 0.0:
        return spo2
    with np.errstate(invalid="ignore"):
        low = spo2 < p.low_range_below_percent
    return np.where(low, spo2 + p.low_range_bias_percent, spo2)


def _update_times(t0: float, t_last: float, params: MonitorParams, start: int = 0) -> FloatArray:
    """Update times ``t0 + phase + j·period`` for j ≥ start, up to ``t_last``."""
    first = t0 + params.update_phase_s
    n = int(np.floor((t_last - first) / params.update_period_s + 1e-9)) + 1
    j = np.arange(start, max(n, start))
    return np.asarray(first + j * params.update_period_s, dtype=float)


def _valid_beats(
    r: FloatArray, t: FloatArray, spo2: FloatArray, valid: BoolArray
) -> tuple[FloatArray, FloatArray]:
    """The beats that fall on valid signal and the true SpO2 each one samples."""
    idx = grid_index(t, r)
    ok = idx >= 0
    ok[ok] = valid[idx[ok]]
    return r[ok], spo2[idx[ok]]


def _frame(
    params: MonitorParams,
    u: FloatArray,
    t: FloatArray,
    spo2_true: FloatArray,
    pi: FloatArray,
    sensor_off: BoolArray,
    motion: BoolArray,
    valid: BoolArray,
    c: FloatArray | None,
    v: FloatArray | None,
    ema_t: FloatArray,
    ema_v: FloatArray,
    hr_t: FloatArray,
    hr_v: FloatArray,
    first_run_start_s: float,
) -> dict[str, NDArray[Any]]:
    """The displayed values and flags at update times ``u`` (shared by both forms)."""
    p = params
    tau_s = u - p.spo2.processing_delay_s
    spo2, loss, frozen = spo2_at(
        tau_s,
        t,
        valid,
        p.spo2,
        c=c,
        v=v,
        beat_times_s=ema_t,
        beat_values=ema_v,
        first_run_start_s=first_run_start_s,
    )
    idx = grid_index(t, tau_s)
    safe = np.maximum(idx, 0)
    inside = idx >= 0
    hr = hr_at(u - p.hr.processing_delay_s, hr_t, hr_v, p.hr)
    return {
        "t_s": u,
        "hr_bpm": _display(hr, p.hr.offset_bpm, p, 400.0),
        "spo2_percent": _display(_low_range(spo2, p), p.spo2.bias_percent, p, 100.0),
        "pi_percent": np.where(~loss, pi[safe], np.nan),
        "signal_loss": loss,
        "searching": frozen,
        "low_perfusion": inside & ~sensor_off[safe] & (pi[safe] < p.spo2.low_perfusion_percent),
        "artifact": inside & motion[safe],
        "sensor_off": inside & sensor_off[safe],
    }


def simulate_monitors(inputs: MonitorInput, params: Sequence[MonitorParams]) -> list[MonitorOutput]:
    """Several monitors (a Monte Carlo batch, a calibration's Jacobian) on one record.

    Each result equals :func:`simulate_monitor` for that parameter set; the signal
    validity and the cumulative integrals are computed once per distinct validity rule.
    """
    cache: dict[tuple[float, bool], Any] = {}
    return [_simulate(inputs, p, cache) for p in params]


def simulate_monitor(inputs: MonitorInput, params: MonitorParams) -> MonitorOutput:
    """What the monitor shows over a whole record (batch form).

    Parameters
    ----------
    inputs : MonitorInput
    params : MonitorParams

    Returns
    -------
    MonitorOutput
        Updates from ``t_s[0] + update_phase_s`` to ``t_s[-1]``; alarms ordered by
        condition (:data:`CONDITIONS`) and then by ``t2``.
    """
    return _simulate(inputs, params, {})


def _simulate(
    inputs: MonitorInput, params: MonitorParams, cache: dict[tuple[float, bool], Any]
) -> MonitorOutput:
    p = params
    t = np.asarray(inputs.t_s, dtype=float)
    spo2_true = np.asarray(inputs.spo2_true_percent, dtype=float)
    pi = np.asarray(inputs.pi_percent, dtype=float)
    off = np.asarray(inputs.sensor_off, dtype=bool)
    motion = np.asarray(inputs.motion, dtype=bool)
    r = np.asarray(inputs.r_peak_times_s, dtype=float)
    rule = (p.spo2.pi_min_measurable_percent, p.spo2.motion_drops_signal)
    if rule not in cache:
        cache[rule] = {"valid": signal_valid(off, motion, pi, p.spo2)}
    shared = cache[rule]
    valid = shared["valid"]
    c = v = None
    ema_t = ema_v = np.empty(0)
    if p.spo2.method == "window":
        if "cv" not in shared:
            shared["cv"] = cumulative_integrals(t, spo2_true, valid)
        c, v = shared["cv"]
    else:
        ema_t, samples = _valid_beats(r, t, spo2_true, valid)
        ema_v, _ = beat_exponential(samples, p.spo2)
    hr_v = beat_hr_bpm(np.diff(r), p.hr) if r.size > 1 else np.empty(0)
    u = _update_times(float(t[0]), float(t[-1]), p)
    frame = _frame(
        p, u, t, spo2_true, pi, off, motion, valid, c, v, ema_t, ema_v, r[1:], hr_v, float(t[0])
    )
    true_grid = _true_flags(p, spo2_true, off, valid)
    true_hr = _hr_true_flags(p, 60.0 / np.diff(r) if r.size > 1 else np.empty(0))
    ack = np.sort(np.asarray(inputs.acknowledge_s, dtype=float))
    alarms: list[Alarm] = []
    specs = condition_specs(p)
    for name, (violating, deficit) in _violations(p, frame).items():
        if name in true_grid:
            starts, ends = true_runs(t, true_grid[name])
        else:
            starts, ends = true_runs(r[1:], true_hr[name])
        found = evaluate_condition(
            specs[name],
            u,
            np.asarray(violating, dtype=bool),
            np.asarray(deficit, dtype=float),
            true_starts_s=starts,
            true_ends_s=ends,
            acknowledge_s=ack,
        )
        alarms.extend(a for a, _ in found)
    return MonitorOutput(**frame, alarms=tuple(alarms))


class _Runs:
    """Incremental :func:`~medtwin.device_models.monitor.alarms.true_runs`."""

    def __init__(self) -> None:
        self.starts: list[float] = []
        self.ends: list[float] = []
        self.on = False

    def add(self, times: FloatArray, flag: BoolArray) -> None:
        if times.size == 0:
            return
        f = np.asarray(flag, dtype=bool)
        prev = np.concatenate([[self.on], f[:-1]])
        self.starts.extend(times[f & ~prev].tolist())
        self.ends.extend(times[~f & prev].tolist())
        self.on = bool(f[-1])

    def arrays(self) -> tuple[FloatArray, FloatArray]:
        ends = [*self.ends, np.inf] if self.on else self.ends
        return np.asarray(self.starts, dtype=float), np.asarray(ends, dtype=float)


class MonitorStream:
    """The monitor fed chunk by chunk (live use): same results as :func:`simulate_monitor`.

    Push the grid samples in time order with :meth:`push`, giving each R-peak no later
    than the samples that reach its time (the display at ``τ`` needs every beat up to
    ``τ``). Each push returns the updates it completed. Memory stays bounded: only the
    trailing stretch of signal the averaging, the freeze and the HR timeout can still
    read is kept (the alarm history grows by one entry per update).

    Parameters
    ----------
    params : MonitorParams
    """

    def __init__(self, params: MonitorParams) -> None:
        self.params = params
        p = params
        self._t0: float | None = None
        self._t = np.empty(0)
        self._spo2 = np.empty(0)
        self._pi = np.empty(0)
        self._off = np.empty(0, dtype=bool)
        self._motion = np.empty(0, dtype=bool)
        self._valid = np.empty(0, dtype=bool)
        self._c = np.empty(0)
        self._v = np.empty(0)
        self._first_run_start = 0.0
        self._next_update = 0
        self._hr = BeatHrAverager(p.hr)
        self._last_r: float | None = None
        self._pending: list[float] = []
        self._ema_state: float | None = None
        self._ema_t = np.empty(0)
        self._ema_v = np.empty(0)
        window = p.spo2.window_s if p.spo2.method == "window" else 0.0
        margin = 2.0 * p.update_period_s + 1.0
        self._keep_grid_s = p.spo2.processing_delay_s + p.spo2.freeze_s + window + margin
        self._keep_hr_s = p.hr.processing_delay_s + p.hr.timeout_s + margin
        self._specs = condition_specs(p)
        self._runs = {name: _Runs() for name in CONDITIONS}
        self._u: list[float] = []
        self._viol: dict[str, list[bool]] = {name: [] for name in CONDITIONS}
        self._deficit: dict[str, list[float]] = {name: [] for name in CONDITIONS}
        self._scan = dict.fromkeys(CONDITIONS, 0)
        self._final: dict[str, list[Alarm]] = {name: [] for name in CONDITIONS}
        self._starts: dict[str, list[float]] = {name: [] for name in CONDITIONS}
        self._waiting: dict[str, dict[int, float]] = {name: {} for name in CONDITIONS}
        self._ack: list[float] = []
        self._frames: list[dict[str, NDArray[Any]]] = []

    def acknowledge(self, t_s: float) -> None:
        """The user acknowledged the alarms at ``t_s`` (ends latched alarm signals)."""
        self._ack.append(float(t_s))

    def push(
        self,
        t_s: ArrayLike,
        spo2_true_percent: ArrayLike,
        pi_percent: ArrayLike,
        sensor_off: ArrayLike,
        motion: ArrayLike,
        r_peak_times_s: ArrayLike | None = None,
    ) -> MonitorOutput:
        """Add grid samples (and R-peaks); return the updates now complete.

        Arrays as in :class:`MonitorInput` (scalars are taken as one sample). The returned
        output carries no alarms: :meth:`alarms` evaluates them when asked.
        """
        p = self.params
        t = np.atleast_1d(np.asarray(t_s, dtype=float))
        spo2 = np.atleast_1d(np.asarray(spo2_true_percent, dtype=float))
        pi = np.atleast_1d(np.asarray(pi_percent, dtype=float))
        off = np.atleast_1d(np.asarray(sensor_off, dtype=bool))
        motion_now = np.atleast_1d(np.asarray(motion, dtype=bool))
        if r_peak_times_s is not None:
            self._add_beats(np.atleast_1d(np.asarray(r_peak_times_s, dtype=float)))
        if t.size == 0:
            return self._new_output([])
        if not (spo2.shape == pi.shape == off.shape == motion_now.shape == t.shape):
            raise ValueError("every sample array must have the shape of t_s")
        joined = np.concatenate([self._t[-1:], t])
        if np.any(np.diff(joined) <= 0):
            raise ValueError("t_s must be strictly increasing across pushes")
        if self._t0 is None:
            self._t0 = float(t[0])
            self._first_run_start = float(t[0])
        valid = signal_valid(off, motion_now, pi, p.spo2)
        if self._t.size:
            c, v = cumulative_integrals(
                joined,
                np.concatenate([self._spo2[-1:], spo2]),
                np.concatenate([self._valid[-1:], valid]),
                start=(float(self._c[-1]), float(self._v[-1])),
            )
            c, v = c[1:], v[1:]
        else:
            c, v = cumulative_integrals(t, spo2, valid)
        self._t = np.concatenate([self._t, t])
        self._spo2 = np.concatenate([self._spo2, spo2])
        self._pi = np.concatenate([self._pi, pi])
        self._off = np.concatenate([self._off, off])
        self._motion = np.concatenate([self._motion, motion_now])
        self._valid = np.concatenate([self._valid, valid])
        self._c = np.concatenate([self._c, c])
        self._v = np.concatenate([self._v, v])
        for name, flag in _true_flags(p, spo2, off, valid).items():
            self._runs[name].add(t, flag)
        self._take_pending_beats()
        t_last = float(self._t[-1])
        u = _update_times(self._t0, t_last, p, start=self._next_update)
        self._next_update += u.size
        frames: list[dict[str, NDArray[Any]]] = []
        if u.size:
            frame = _frame(
                p,
                u,
                self._t,
                self._spo2,
                self._pi,
                self._off,
                self._motion,
                self._valid,
                self._c if p.spo2.method == "window" else None,
                self._v if p.spo2.method == "window" else None,
                self._ema_t,
                self._ema_v,
                np.asarray(self._hr.beat_times_s, dtype=float),
                np.asarray(self._hr.beat_hr, dtype=float),
                self._first_run_start,
            )
            frames.append(frame)
            self._frames.append(frame)
            self._u.extend(u.tolist())
            for name, (violating, deficit) in _violations(p, frame).items():
                self._viol[name].extend(np.asarray(violating, dtype=bool).tolist())
                self._deficit[name].extend(np.asarray(deficit, dtype=float).tolist())
        self._trim(t_last)
        return self._new_output(frames)

    def _add_beats(self, r: FloatArray) -> None:
        if r.size == 0:
            return
        joined = r if self._last_r is None else np.concatenate([[self._last_r], r])
        self._hr.add_beats(r)
        inst = 60.0 / np.diff(joined)
        beat_t = joined[1:]
        for name, flag in _hr_true_flags(self.params, inst).items():
            self._runs[name].add(beat_t, flag)
        self._last_r = float(joined[-1])
        self._pending.extend(r.tolist())

    def _take_pending_beats(self) -> None:
        if self.params.spo2.method != "beat_exponential" or not self._pending:
            self._pending.clear()
            return
        r = np.asarray(self._pending, dtype=float)
        ready = r <= self._t[-1]
        beats, samples = _valid_beats(r[ready], self._t, self._spo2, self._valid)
        values, self._ema_state = beat_exponential(samples, self.params.spo2, self._ema_state)
        self._ema_t = np.concatenate([self._ema_t, beats])
        self._ema_v = np.concatenate([self._ema_v, values])
        self._pending = r[~ready].tolist()

    def _trim(self, t_last: float) -> None:
        k0 = int(np.searchsorted(self._t, t_last - self._keep_grid_s, side="right")) - 1
        # Trim only once the buffer is twice what is needed: amortised O(1) per sample.
        if k0 > 0 and k0 > self._t.size // 2:
            if not self._valid[k0]:
                start = loss_start_s(np.array([k0]), self._t, self._valid, self._first_run_start)
                self._first_run_start = float(start[0])
            for name in ("_t", "_spo2", "_pi", "_off", "_motion", "_valid", "_c", "_v"):
                setattr(self, name, getattr(self, name)[k0:])
        k = int(np.searchsorted(self._ema_t, t_last - self._keep_grid_s, side="right")) - 1
        if k > 0 and k > self._ema_t.size // 2:
            self._ema_t, self._ema_v = self._ema_t[k:], self._ema_v[k:]
        beats = self._hr.beat_times_s
        k = int(np.searchsorted(beats, t_last - self._keep_hr_s, side="right")) - 1
        if k > 0 and k > len(beats) // 2:
            self._hr.forget_before(k)

    def alarms(self) -> tuple[Alarm, ...]:
        """Every alarm so far (those still on have ``t_end_s`` NaN)."""
        out: list[Alarm] = []
        ack = np.sort(np.asarray(self._ack, dtype=float))
        for name in CONDITIONS:
            final = self._final[name]
            # A latched alarm whose condition has ended waits only for an acknowledgement.
            waiting = self._waiting[name]
            for k, t_after in list(waiting.items()):
                i = int(np.searchsorted(ack, t_after, side="left"))
                if i < ack.size:
                    final[k] = dataclasses.replace(final[k], t_end_s=float(ack[i]))
                    del waiting[k]
            scan = self._scan[name]
            u_tail = np.asarray(self._u[scan:], dtype=float)
            starts, ends = self._runs[name].arrays()
            found = evaluate_condition(
                self._specs[name],
                u_tail,
                np.asarray(self._viol[name][scan:], dtype=bool),
                np.asarray(self._deficit[name][scan:], dtype=float),
                true_starts_s=starts,
                true_ends_s=ends,
                acknowledge_s=ack,
                prior_starts_s=np.asarray(self._starts[name], dtype=float),
            )
            n = u_tail.size
            settled = 0
            for alarm, j1 in found:
                if j1 >= n:
                    break
                if alarm.latched and np.isnan(alarm.t_end_s):
                    waiting[len(final)] = float(u_tail[j1])
                final.append(alarm)
                self._starts[name].append(alarm.t2_s)
                self._scan[name] = scan + j1
                settled += 1
            out.extend(final)
            out.extend(a for a, _ in found[settled:])
        return tuple(out)

    def _new_output(self, frames: list[dict[str, NDArray[Any]]]) -> MonitorOutput:
        return _concat(frames, ())

    def output(self) -> MonitorOutput:
        """Every update so far and every alarm: what the batch form gives on the same input."""
        return _concat(self._frames, self.alarms())


def _concat(frames: list[dict[str, NDArray[Any]]], alarms: tuple[Alarm, ...]) -> MonitorOutput:
    keys = (
        "t_s",
        "hr_bpm",
        "spo2_percent",
        "pi_percent",
        "signal_loss",
        "searching",
        "low_perfusion",
        "artifact",
        "sensor_off",
    )
    if not frames:
        arrays = {k: np.empty(0, dtype=bool if k in keys[4:] else float) for k in keys}
    else:
        arrays = {k: np.concatenate([f[k] for f in frames]) for k in keys}
    return MonitorOutput(**arrays, alarms=alarms)
