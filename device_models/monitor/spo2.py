"""SpO2 as a pulse oximeter averages and shows it, with its signal-loss behaviour.

The true saturation, perfusion index and the sensor-off / motion flags arrive on a time
grid ``t_i`` and hold until the next sample (sample-and-hold). A sample is *valid* when
the sensor is on, the perfusion index reaches ``pi_min_measurable_percent`` and (if
``motion_drops_signal``) there is no motion.

Two averagings:

* ``window`` (time average, Masimo-style 2–16 s, FastSat = a shorter window): the mean of
  the valid signal over ``[τ − T, τ]``, computed exactly from the cumulative integrals
  ``C(t) = ∫ x·valid`` and ``V(t) = ∫ valid`` (piecewise linear, so the average is
  continuous in ``T`` — what calibration needs);
* ``beat_exponential`` (Nonin): at every valid beat ``S_k = S_{k−1} + w (x_k − S_{k−1})``
  with ``w = 2/(N+1)`` for an N-beat average, the weighting whose centre of mass equals
  that of an N-beat mean (the manual's "4-beat exponential average"; the weight is our
  reading).

On signal loss the last value is held ``freeze_s`` (Nonin: 10 s), then dashes (NaN).
The functions here work on whole arrays (the batch form); the incremental form keeps a
trailing buffer and calls the same functions.
"""

from __future__ import annotations

import numpy as np
from medtwin.device_models.monitor.params import Spo2Params
from numpy.typing import ArrayLike, NDArray
from scipy.signal import lfilter

__all__ = [
    "beat_exponential",
    "cumulative_integrals",
    "grid_index",
    "loss_start_s",
    "signal_valid",
    "spo2_at",
    "window_average",
]

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]


def signal_valid(
    sensor_off: BoolArray, motion: BoolArray, pi_percent: FloatArray, params: Spo2Params
) -> BoolArray:
    """Whether each grid sample carries a measurable SpO2 signal."""
    valid = ~np.asarray(sensor_off, dtype=bool) & (
        np.asarray(pi_percent, dtype=float) >= params.pi_min_measurable_percent
    )
    if params.motion_drops_signal:
        valid &= ~np.asarray(motion, dtype=bool)
    return np.asarray(valid)


def cumulative_integrals(
    t_s: FloatArray,
    spo2_percent: FloatArray,
    valid: BoolArray,
    *,
    start: tuple[float, float] = (0.0, 0.0),
) -> tuple[FloatArray, FloatArray]:
    """``C_i = ∫_{t_0}^{t_i} x·valid dt`` (%·s) and ``V_i = ∫ valid dt`` (s) at the grid.

    ``start`` is (C, V) at ``t_0`` (the incremental form continues a previous chunk; the
    sums are sequential, so chunks give the batch's numbers bit for bit).
    """
    n = np.size(t_s)
    dt = np.diff(t_s)
    keep = np.asarray(valid[:-1], dtype=bool)
    c = np.empty(n)
    v = np.empty(n)
    c[0], v[0] = start
    # Written into the output and summed in place (cumsum is sequential): the same
    # numbers as cumsum([C0, inc_0, inc_1, ...]), without the temporaries.
    np.multiply(spo2_percent[:-1], dt, out=c[1:])
    np.multiply(keep, dt, out=v[1:])
    if not keep.all():
        c[1:][~keep] = 0.0
    if n > 1:
        c[1] += start[0]
        v[1] += start[1]
        np.cumsum(c[1:], out=c[1:])
        np.cumsum(v[1:], out=v[1:])
    return c, v


def grid_index(t_s: FloatArray, x: ArrayLike) -> NDArray[np.intp]:
    """``searchsorted(t_s, x, side="right") − 1``: the last sample at or before each ``x``.

    A grid is nearly always (close to) uniform: the index is guessed from the mean
    spacing, checked against the bracketing samples and searched only where the guess
    is wrong, so the result is exactly ``searchsorted``'s (a binary search per query in
    a 6.5-million-sample day costs more than the rest of the model).
    """
    xq = np.asarray(x, dtype=float)
    n = t_s.size
    if n < 2 or xq.size < 64:
        return np.asarray(np.searchsorted(t_s, xq, side="right") - 1)
    t0, t1 = float(t_s[0]), float(t_s[-1])
    guess = np.floor((xq - t0) * ((n - 1) / (t1 - t0)))
    i: NDArray[np.intp] = np.clip(np.nan_to_num(guess, nan=0.0), -1, n - 1).astype(np.intp)
    lo_ok = (i < 0) | (t_s[np.maximum(i, 0)] <= xq)
    hi_ok = (i >= n - 1) | (xq < t_s[np.minimum(i + 1, n - 1)])
    lo_ok &= (i >= 0) | (xq < t0)
    wrong = ~(lo_ok & hi_ok)
    if wrong.any():
        i[wrong] = np.searchsorted(t_s, xq[wrong], side="right") - 1
    return i


def _interp_pair(
    x: FloatArray, t_s: FloatArray, c: FloatArray, v: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Linear interpolation of ``c`` and ``v`` at ``x`` with one search (held at the ends)."""
    if t_s.size == 1:
        return np.full(x.shape, c[0]), np.full(x.shape, v[0])
    i = np.clip(grid_index(t_s, x), 0, t_s.size - 2)
    t_lo = t_s[i]
    frac = np.clip((x - t_lo) / (t_s[i + 1] - t_lo), 0.0, 1.0)
    c_lo, v_lo = c[i], v[i]
    return c_lo + frac * (c[i + 1] - c_lo), v_lo + frac * (v[i + 1] - v_lo)


def window_average(
    tau_s: FloatArray, t_s: FloatArray, c: FloatArray, v: FloatArray, window_s: float
) -> FloatArray:
    """Mean of the valid signal over ``[τ − window_s, τ]`` (NaN where it has none)."""
    tau = np.asarray(tau_s, dtype=float)
    c_hi, v_hi = _interp_pair(tau, t_s, c, v)
    c_lo, v_lo = _interp_pair(tau - window_s, t_s, c, v)
    weight = v_hi - v_lo
    # A window with under a microsecond of valid signal has nothing to average.
    ok = weight > 1e-6
    return np.where(ok, (c_hi - c_lo) / np.where(ok, weight, 1.0), np.nan)


def beat_exponential(
    samples: FloatArray, params: Spo2Params, state: float | None = None
) -> tuple[FloatArray, float | None]:
    """The N-beat exponential average over the SpO2 at successive valid beats.

    Parameters
    ----------
    samples : ndarray, shape (k,)
        True SpO2 (%) at the valid beats, in order.
    state : float, optional
        The average after the previous beat (None: start from the first sample).

    Returns
    -------
    values : ndarray, shape (k,)
    state : float or None
        The average after the last beat, to continue with.
    """
    x = np.asarray(samples, dtype=float)
    if x.size == 0:
        return x, state
    w = 2.0 / (params.exponential_beats + 1.0)
    previous = float(x[0]) if state is None else state
    zi = np.array([(1.0 - w) * previous])
    y, _ = lfilter([w], [1.0, -(1.0 - w)], x, zi=zi)
    values = np.asarray(y, dtype=float)
    return values, float(values[-1])


def loss_start_s(
    idx: NDArray[np.intp], t_s: FloatArray, valid: BoolArray, first_run_start_s: float
) -> FloatArray:
    """Start time of the invalid run holding each grid index (only read where invalid).

    ``first_run_start_s`` is the start of a run that holds index 0 (the record start, or
    an earlier time when ``t_s`` is a trailing buffer).
    """
    begins = np.flatnonzero(~valid & np.concatenate([[True], valid[:-1]]))
    if begins.size == 0:
        return np.full(np.shape(idx), -np.inf)
    k = np.searchsorted(begins, idx, side="right") - 1
    b = begins[np.maximum(k, 0)]
    start = np.where(b == 0, first_run_start_s, t_s[b])
    return np.where(k >= 0, start, -np.inf)


def spo2_at(
    tau_s: FloatArray,
    t_s: FloatArray,
    valid: BoolArray,
    params: Spo2Params,
    *,
    c: FloatArray | None = None,
    v: FloatArray | None = None,
    beat_times_s: FloatArray | None = None,
    beat_values: FloatArray | None = None,
    first_run_start_s: float | None = None,
) -> tuple[FloatArray, BoolArray, BoolArray]:
    """The averaged SpO2 (%) behind the display at each evaluation time ``τ``.

    Parameters
    ----------
    tau_s : ndarray, shape (u,)
        Update times minus the processing delay (s), within ``t_s[0] .. t_s[-1]``.
    t_s, valid : ndarray, shape (n,)
        The grid and its validity.
    c, v : ndarray, shape (n,)
        The cumulative integrals (``window`` method).
    beat_times_s, beat_values : ndarray, shape (k,)
        The valid beats and their exponential average (``beat_exponential`` method).
    first_run_start_s : float, optional
        See :func:`loss_start_s` (default ``t_s[0]``).

    Returns
    -------
    value : ndarray, shape (u,)
        Averaged SpO2 without bias, NaN for dashes.
    signal_loss : ndarray of bool, shape (u,)
        No valid signal at ``τ``.
    frozen : ndarray of bool, shape (u,)
        Signal lost, the last value still held (the monitor is searching).
    """
    tau = np.asarray(tau_s, dtype=float)
    idx = grid_index(t_s, tau)
    inside = idx >= 0
    safe = np.maximum(idx, 0)
    ok = inside & valid[safe]
    first = float(t_s[0]) if first_run_start_s is None else first_run_start_s
    lost_at = loss_start_s(safe, t_s, valid, first)
    frozen = inside & ~ok & (tau - lost_at < params.freeze_s)
    if params.method == "window":
        assert c is not None
        assert v is not None
        value = np.full(tau.shape, np.nan)
        value[ok] = window_average(tau[ok], t_s, c, v, params.window_s)
        value[frozen] = window_average(lost_at[frozen], t_s, c, v, params.window_s)
    else:
        assert beat_times_s is not None
        assert beat_values is not None
        # No valid beat falls inside an invalid run, so the latest valid beat before τ is
        # also the one before the loss: the frozen value needs no separate lookup.
        if beat_values.size == 0:
            latest = np.full(tau.shape, np.nan)
        else:
            k = np.searchsorted(beat_times_s, tau, side="right") - 1
            latest = np.where(k >= 0, beat_values[np.maximum(k, 0)], np.nan)
        value = np.where(ok | frozen, latest, np.nan)
    return value, ~ok, frozen
