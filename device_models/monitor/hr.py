"""Heart rate from R-R intervals, as an ECG monitor averages and shows it.

At every R-peak ``k`` (from the second on) the monitor averages its most recent R-R
intervals ``RR_j = r_j − r_{j−1}``:

* ``mean``: the mean of the last ``N`` intervals (Philips MP2: N = 12);
* ``trimmed_mean``: the last ``N`` minus their maximum and minimum (Mindray, N = 12);
* the slow-rate rule of IEC 60601-2-27 cl. 201.7.9.2.9.101 b) 3), as both manuals describe
  it: when the last 3 intervals all exceed 1200 ms, the mean of the last 4 instead.

Before ``N`` intervals exist the available ones are averaged. HR = 60 / mean R-R. The
display, refreshed every update period, shows the value of the latest beat at least the
processing delay old; no beat for ``timeout_s`` gives dashes (NaN).

:func:`beat_hr_bpm` is the batch form (all beats at once, vectorised);
:class:`BeatHrAverager` the incremental one, built on the same function.
"""

from __future__ import annotations

import numpy as np
from medtwin.device_models.monitor.params import HrParams
from numpy.typing import NDArray

__all__ = [
    "BeatHrAverager",
    "beat_hr_bpm",
    "hr_at",
    "instantaneous_hr_bpm",
    "step_response_time_s",
]

FloatArray = NDArray[np.float64]


def instantaneous_hr_bpm(r_peak_times_s: FloatArray) -> FloatArray:
    """The beat-to-beat rate ``60 / RR_k`` (bpm) at beats 1..m−1, shape (m−1,): the true
    HR a monitor's averaging acts on (it holds from beat ``k`` to beat ``k+1``)."""
    r = np.asarray(r_peak_times_s, dtype=float)
    return 60.0 / np.diff(r) if r.size > 1 else np.empty(0)


def _window_matrix(rr_s: FloatArray, width: int) -> FloatArray:
    """Row k holds the ``width`` intervals ending at interval k (NaN where none exist)."""
    padded = np.concatenate([np.full(width - 1, np.nan), rr_s])
    view = np.lib.stride_tricks.sliding_window_view(padded, width)
    return np.ascontiguousarray(view)


def beat_hr_bpm(rr_s: FloatArray, params: HrParams, *, skip: int = 0) -> FloatArray:
    """The averaged HR (bpm) the monitor computes at the end of each R-R interval.

    Parameters
    ----------
    rr_s : ndarray, shape (m,)
        Consecutive R-R intervals (s).
    params : HrParams
    skip : int
        Return only the values for intervals ``skip..m−1`` (the leading ones are history,
        used by the incremental form).

    Returns
    -------
    ndarray, shape (m − skip,)
    """
    rr = np.asarray(rr_s, dtype=float)
    if rr.size == 0:
        return np.empty(0)
    n = params.averaging_intervals
    window = _window_matrix(rr, n)[skip:]
    count = np.sum(np.isfinite(window), axis=1)
    total = np.nansum(window, axis=1)
    if params.method == "trimmed_mean":
        trim = count >= 3
        hi = np.nanmax(window, axis=1)
        lo = np.nanmin(window, axis=1)
        mean_rr = np.where(
            trim, (total - hi - lo) / np.maximum(count - 2, 1), total / np.maximum(count, 1)
        )
    else:
        mean_rr = total / count
    if params.slow_rule:
        long_rr = rr > params.slow_rr_threshold_ms / 1000.0
        last3 = _window_matrix(long_rr.astype(float), 3)[skip:]
        slow = np.all(last3 == 1.0, axis=1)
        short = _window_matrix(rr, params.slow_rule_intervals)[skip:]
        short_mean = np.nansum(short, axis=1) / np.sum(np.isfinite(short), axis=1)
        mean_rr = np.where(slow, short_mean, mean_rr)
    return np.asarray(60.0 / mean_rr, dtype=float)


def hr_at(
    tau_s: FloatArray,
    beat_times_s: FloatArray,
    beat_hr: FloatArray,
    params: HrParams,
) -> FloatArray:
    """The averaged HR each display evaluation time ``tau_s`` sees (NaN: dashes).

    Parameters
    ----------
    tau_s : ndarray, shape (u,)
        Update time minus the processing delay (s).
    beat_times_s : ndarray, shape (k,)
        Times of the beats that carry a value (the R-peak closing each interval).
    beat_hr : ndarray, shape (k,)
        Their averaged HR (bpm), without offset.
    """
    idx = np.searchsorted(beat_times_s, tau_s, side="right") - 1
    ok = idx >= 0
    safe = np.where(ok, idx, 0)
    if beat_times_s.size == 0:
        return np.full(np.shape(tau_s), np.nan)
    stale = tau_s - beat_times_s[safe] > params.timeout_s
    return np.where(ok & ~stale, beat_hr[safe], np.nan)


class BeatHrAverager:
    """Incremental per-beat HR: feed R-peaks in time order, read values per beat.

    Keeps the last intervals the averaging needs and calls :func:`beat_hr_bpm` on them, so
    its values are those of the batch form.
    """

    def __init__(self, params: HrParams) -> None:
        self._params = params
        self._keep = max(params.averaging_intervals, params.slow_rule_intervals, 3)
        self._rr: list[float] = []
        self._last_r: float | None = None
        self.beat_times_s: list[float] = []
        self.beat_hr: list[float] = []

    def add_beats(self, r_peak_times_s: FloatArray) -> None:
        """Append R-peaks (s), later than every one already given."""
        r = np.atleast_1d(np.asarray(r_peak_times_s, dtype=float))
        if r.size == 0:
            return
        r_all = np.concatenate([[self._last_r], r]) if self._last_r is not None else r
        if np.any(np.diff(r_all) <= 0):
            raise ValueError("R-peak times must be strictly increasing")
        new_rr = np.diff(r_all)
        self._last_r = float(r_all[-1])
        if new_rr.size == 0:
            return
        history = self._rr[-self._keep :]
        values = beat_hr_bpm(np.concatenate([history, new_rr]), self._params, skip=len(history))
        self._rr = [*history, *new_rr.tolist()]
        self.beat_times_s.extend(r_all[1:].tolist())
        self.beat_hr.extend(values.tolist())

    def forget_before(self, index: int) -> None:
        """Drop the per-beat values before ``index`` (they are no longer displayed)."""
        del self.beat_times_s[:index]
        del self.beat_hr[:index]


def step_response_time_s(
    t_update_s: FloatArray,
    shown: FloatArray,
    *,
    t_step_s: float,
    new_value: float,
    tolerance: float = 0.5,
) -> float:
    """Time from a step to the first update showing the new value within ``tolerance``.

    The criterion medtwin uses for the HR response time of IEC 60601-2-27
    cl. 201.7.9.2.9.101 b) 5) (the standard's own wording was not available): the step
    is the first R-peak at the new rate, the response the first display update whose
    value is within ``tolerance`` of the new rate (0.5 bpm: the integer display equals
    it). Returns NaN if it never does.
    """
    t = np.asarray(t_update_s, dtype=float)
    v = np.asarray(shown, dtype=float)
    hit = (t >= t_step_s) & (np.abs(v - new_value) <= tolerance)
    if not np.any(hit):
        return float("nan")
    return float(t[np.argmax(hit)] - t_step_s)
