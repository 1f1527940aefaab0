"""The alarm engine, in the terms of IEC 60601-1-8 (alarm systems).

For every *alarm condition* the monitor evaluates, at each display update, whether its
processed value violates the limit (SpO2 below the low limit, HR above the high limit, the
sensor off, no usable signal). A run of violating updates is one *episode*:

* ``t1`` — the condition began in the patient: the start of the TRUE signal's violation
  (true SpO2 below the limit, beat-to-beat HR above it, the sensor taken off) that led to
  the episode; undefined (NaN) when the true signal did not violate within
  ``t1_lookback_s`` before ``t2`` (a false alarm, e.g. from a biased monitor);
* ``t2`` — the monitor detected the condition: the first violating update. ``t2 − t1`` is
  the *alarm condition delay* (averaging, processing lag, update period);
* ``t3`` — the alarm signal was generated: ``t2`` plus the *alarm signal generation delay*,
  either a fixed delay during which the condition must persist, or for SpO2 low the
  SatSeconds strategy (the integral of ``limit − SpO2`` over time reaches a threshold,
  or at once on the ``count``-th violation within ``window`` seconds). NaN when the episode
  ended before (the condition was never signalled);
* ``t_end`` — the alarm signal stopped: when the condition ended or, for a latching
  priority, at the first acknowledgement after that (NaN: still on at the record end).

:func:`resolve_episode` decides one episode; the batch form finds episodes with numpy and
the incremental form (:class:`~medtwin.device_models.monitor.monitor.MonitorStream`)
calls the same function.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "Alarm",
    "ConditionSpec",
    "episodes",
    "evaluate_condition",
    "resolve_episode",
    "t1_for",
    "true_runs",
]

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]


@dataclass(frozen=True)
class Alarm:
    """One alarm condition episode and, if it got that far, its alarm signal.

    Times are in seconds on the record's clock; NaN where undefined (see the module).
    """

    condition: str
    priority: str
    kind: str
    t1_s: float
    t2_s: float
    t3_s: float
    t_end_s: float
    latched: bool

    @property
    def generated(self) -> bool:
        """Whether an alarm signal was generated (``t3`` exists)."""
        return not math.isnan(self.t3_s)

    @property
    def condition_delay_s(self) -> float:
        """Alarm condition delay ``t2 − t1`` (s)."""
        return self.t2_s - self.t1_s

    @property
    def signal_generation_delay_s(self) -> float:
        """Alarm signal generation delay ``t3 − t2`` (s)."""
        return self.t3_s - self.t2_s

    @property
    def total_delay_s(self) -> float:
        """``t3 − t1`` (s)."""
        return self.t3_s - self.t1_s


@dataclass(frozen=True)
class ConditionSpec:
    """How one alarm condition is signalled."""

    name: str
    kind: str
    priority: str
    latching: bool
    delay_s: float
    satseconds: bool = False
    satseconds_threshold: float = 50.0
    override_count: int = 3
    override_window_s: float = 60.0
    t1_lookback_s: float = 60.0


def true_runs(times_s: FloatArray, flag: BoolArray) -> tuple[FloatArray, FloatArray]:
    """Start and end times of the runs where a sample-and-hold flag is true.

    ``flag[i]`` holds from ``times_s[i]`` to ``times_s[i+1]``; a run still on at the last
    sample ends at ``+inf``.
    """
    f = np.asarray(flag, dtype=bool)
    if f.size == 0:
        return np.empty(0), np.empty(0)
    prev = np.concatenate([[False], f[:-1]])
    starts = times_s[f & ~prev]
    ends = times_s[~f & prev]
    if f[-1]:
        ends = np.concatenate([ends, [np.inf]])
    return np.asarray(starts, dtype=float), np.asarray(ends, dtype=float)


def t1_for(t2_s: float, starts: FloatArray, ends: FloatArray, lookback_s: float) -> float:
    """The start of the true violation behind a detection at ``t2_s`` (NaN: none)."""
    k = int(np.searchsorted(starts, t2_s, side="right")) - 1
    if k < 0 or ends[k] < t2_s - lookback_s:
        return float("nan")
    return float(starts[k])


def episodes(violating: BoolArray) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """First index and end index (exclusive; ``n`` if still on) of each run of updates."""
    v = np.asarray(violating, dtype=bool)
    prev = np.concatenate([[False], v[:-1]])
    nxt = np.concatenate([v[1:], [False]])
    return np.flatnonzero(v & ~prev), np.flatnonzero(v & ~nxt) + 1


def resolve_episode(
    spec: ConditionSpec,
    t_updates_s: FloatArray,
    deficit: FloatArray,
    t_after_s: float,
    *,
    previous_starts_s: FloatArray,
    true_starts_s: FloatArray,
    true_ends_s: FloatArray,
    acknowledge_s: FloatArray,
) -> Alarm:
    """The alarm record of one episode.

    Parameters
    ----------
    spec : ConditionSpec
    t_updates_s : ndarray, shape (k,)
        The episode's violating update times (s), k ≥ 1.
    deficit : ndarray, shape (k,)
        ``limit − value`` at those updates (SatSeconds; ignored otherwise).
    t_after_s : float
        The first non-violating update (the condition ended), NaN if still on.
    previous_starts_s : ndarray
        ``t2`` of the condition's earlier episodes (the SatSeconds safety net).
    true_starts_s, true_ends_s : ndarray
        The true signal's violation runs (:func:`true_runs`).
    acknowledge_s : ndarray
        Sorted times the user acknowledged alarms.
    """
    t2 = float(t_updates_s[0])
    ended = not math.isnan(t_after_s)
    last = float(t_updates_s[-1])
    t3 = float("nan")
    if spec.satseconds:
        recent = previous_starts_s.size - int(
            np.searchsorted(previous_starts_s, t2 - spec.override_window_s, side="left")
        )
        if recent >= spec.override_count - 1:
            t3 = t2
        else:
            # The display holds each value until the next update: the integral grows
            # linearly between updates and reaches the threshold at an exact time.
            nxt = np.concatenate([t_updates_s[1:], [t_after_s]])
            known = nxt if ended else nxt[:-1]
            rate = np.asarray(deficit[: known.size], dtype=float)
            grow = rate * (known - t_updates_s[: known.size])
            total = np.cumsum(grow)
            hit = np.flatnonzero(total >= spec.satseconds_threshold)
            if hit.size:
                j = int(hit[0])
                before = float(total[j - 1]) if j else 0.0
                t3 = float(t_updates_s[j]) + (spec.satseconds_threshold - before) / float(rate[j])
    else:
        candidate = t2 + spec.delay_s
        if (ended and candidate < t_after_s) or (not ended and candidate <= last):
            t3 = candidate
    t_end = t_after_s
    latched = spec.latching and not math.isnan(t3)
    if latched:
        k = int(np.searchsorted(acknowledge_s, t_after_s, side="left")) if ended else 0
        t_end = float(acknowledge_s[k]) if ended and k < acknowledge_s.size else float("nan")
    return Alarm(
        condition=spec.name,
        priority=spec.priority,
        kind=spec.kind,
        t1_s=t1_for(t2, true_starts_s, true_ends_s, spec.t1_lookback_s),
        t2_s=t2,
        t3_s=t3,
        t_end_s=t_end,
        latched=latched,
    )


def evaluate_condition(
    spec: ConditionSpec,
    t_update_s: FloatArray,
    violating: BoolArray,
    deficit: FloatArray,
    *,
    true_starts_s: FloatArray,
    true_ends_s: FloatArray,
    acknowledge_s: FloatArray,
    prior_starts_s: FloatArray | None = None,
) -> list[tuple[Alarm, int]]:
    """Every episode of one condition over a stretch of updates, with its end index.

    ``prior_starts_s`` are the ``t2`` of episodes before the stretch (the batch form has
    none; the incremental form re-evaluates only the updates after its final records).
    The end index is that of the first non-violating update (``n``: still on).
    """
    first, stop = episodes(violating)
    prior = np.empty(0) if prior_starts_s is None else np.asarray(prior_starts_s, dtype=float)
    starts = np.concatenate([prior, t_update_s[first]])
    out: list[tuple[Alarm, int]] = []
    n = t_update_s.size
    for e, (j0, j1) in enumerate(zip(first.tolist(), stop.tolist(), strict=True)):
        alarm = resolve_episode(
            spec,
            t_update_s[j0:j1],
            deficit[j0:j1],
            float(t_update_s[j1]) if j1 < n else float("nan"),
            previous_starts_s=starts[: prior.size + e],
            true_starts_s=true_starts_s,
            true_ends_s=true_ends_s,
            acknowledge_s=acknowledge_s,
        )
        out.append((alarm, j1))
    return out
