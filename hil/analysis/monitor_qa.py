"""Patient-monitor QA against a patient simulator: accuracy, response time, alarm delay.

Pure functions over numpy arrays (no I/O). The inputs are two channels of one run: the
simulator's *set values* (``<sim>.spo2_percent``, ``<sim>.heart_rate_bpm``: piecewise
constant, each value holding until the next different one) and the monitor's *readings*
(``<oximeter>.spo2_percent``: NaN or None where the monitor shows dashes). The same
functions run on the real monitor's channel and on the twin's, and
:func:`side_by_side` puts the two next to each other.

Definitions (docs/analysis.md, "Monitor QA", carries them with their sources)
------------------------------------------------------------------------------
* Difference of one reading: ``d_i = reading_i − setting in force at the reading``.
* Bias ``= mean(d)``; precision ``= SD(d)`` with n − 1 in the denominator (sample SD);
  ``Arms = sqrt(Σ d_i² / n)``, the accuracy root-mean-square of pulse-oximeter labelling
  (the formula as printed in manufacturers' manuals citing ISO 80601-2-61 / ISO 9919; the
  standard's own text was not available). Hence ``Arms² = bias² + SD²·(n − 1)/n``.
* Readings within ``settle_s`` after a change of the setting are left out (the monitor is
  still averaging), as are readings before the first setting and plateaus whose setting is
  outside ``set_range`` (e.g. SpO2 Arms is stated over 70–100 %). Dashes (NaN) after the
  settling time are counted, never compared.
* Response time to a step of the setting: from the set change to the first reading that
  meets the criterion — ``"band"`` (default): within ± ``tolerance`` of the new value;
  ``"fraction"``: past ``fraction`` (0.9) of the step — and, with ``hold=True`` (default),
  that stays so (no later non-dash reading of the plateau misses it). The standards'
  criterion (IEC 60601-2-27 cl. 201.7.9.2.9.101 b) 5) for HR; none found for SpO2) was not
  available, so it is a parameter and the result says which was used.
* Alarm delay per IEC 60601-1-8: ``t1`` the alarm condition began (the simulator crossed
  the limit), ``t2`` the monitor detected it, ``t3`` the alarm signal began; measured
  ``t3 − t1`` (alarm condition delay + alarm signal generation delay) against the delay
  the manufacturer declares for that condition.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from medtwin.drivers.errors import AnalysisError

__all__ = [
    "AccuracyResult",
    "AlarmDelay",
    "AlarmTimes",
    "Plateau",
    "StepResponse",
    "accuracy",
    "alarm_delays",
    "condition_onsets",
    "pair_alarm_times",
    "rising_edges",
    "step_response_times",
]

FloatArray = npt.NDArray[np.float64]
Criterion = Literal["band", "fraction"]
Target = Literal["set", "settled"]


# --------------------------------------------------------------------------- inputs


def _times(values: npt.ArrayLike, name: str) -> FloatArray:
    try:
        t = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise AnalysisError(f"{name} must be numeric times in s: {exc}") from None
    if t.ndim != 1:
        raise AnalysisError(f"{name} must be one-dimensional, got shape {t.shape}")
    if t.size == 0:
        raise AnalysisError(f"{name} is empty: there is nothing to analyse")
    bad = ~np.isfinite(t)
    if bad.any():
        index = int(np.flatnonzero(bad)[0])
        raise AnalysisError(f"{name} has a non-finite time ({float(t[index])!r}) at index {index}")
    steps = np.diff(t)
    if (steps <= 0).any():
        index = int(np.flatnonzero(steps <= 0)[0]) + 1
        raise AnalysisError(
            f"{name} is not strictly increasing: sample {index} is at {float(t[index])!r} s, "
            f"sample {index - 1} at {float(t[index - 1])!r} s"
        )
    return t


def _values(values: Any, name: str, size: int, time_name: str, *, dashes: bool) -> FloatArray:
    if not isinstance(values, np.ndarray):
        # None (a dash in a stored channel) becomes NaN.
        try:
            values = [math.nan if v is None else v for v in values]
        except TypeError:
            raise AnalysisError(f"{name} must be a sequence of numbers, got {values!r}") from None
    try:
        v = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise AnalysisError(f"{name} must be numeric: {exc}") from None
    if v.ndim != 1:
        raise AnalysisError(f"{name} must be one-dimensional, got shape {v.shape}")
    if v.size != size:
        raise AnalysisError(f"{time_name} has {size} samples but {name} has {v.size}")
    bad = np.isinf(v) if dashes else ~np.isfinite(v)
    if bad.any():
        index = int(np.flatnonzero(bad)[0])
        allowed = " (NaN or None is a dash; infinity is not)" if dashes else ""
        raise AnalysisError(
            f"{name} has a non-finite value ({float(v[index])!r}) at index {index}{allowed}"
        )
    return v


def _settings(set_t_s: npt.ArrayLike, set_values: Any) -> tuple[FloatArray, FloatArray]:
    """The changes of a set-value channel: times and values where the value differs from
    the one before (a channel that logs the same setting every second has one change)."""
    t = _times(set_t_s, "set_t_s")
    v = _values(set_values, "set_values", t.size, "set_t_s", dashes=False)
    keep = np.ones(t.size, dtype=bool)
    keep[1:] = v[1:] != v[:-1]
    return t[keep], v[keep]


def _readings(read_t_s: npt.ArrayLike, read_values: Any) -> tuple[FloatArray, FloatArray]:
    t = _times(read_t_s, "read_t_s")
    return t, _values(read_values, "read_values", t.size, "read_t_s", dashes=True)


def _non_negative(value: float, name: str) -> float:
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise AnalysisError(f"{name} must be a finite number >= 0, got {value!r}")
    return number


# --------------------------------------------------------------------------- accuracy


@dataclass(frozen=True)
class Plateau:
    """One setting held between two changes, and the readings compared against it.

    Attributes
    ----------
    set_value : float
        The setting (% SpO2, bpm).
    start_s, end_s : float
        The change that began the plateau and the next change (or the last reading), s.
    n : int
        Readings compared (after the settling time, not dashes).
    dashes : int
        Dashes after the settling time.
    settling : int
        Readings left out because they fall within ``settle_s`` of ``start_s``.
    in_range : bool
        Whether the setting lies in ``set_range`` (a plateau outside is reported, not used).
    bias, sd, arms, worst : float
        Mean, sample SD (NaN when n < 2), RMS and the largest-magnitude signed difference
        of the plateau's readings; NaN when n = 0.
    """

    set_value: float
    start_s: float
    end_s: float
    n: int
    dashes: int
    settling: int
    in_range: bool
    bias: float
    sd: float
    arms: float
    worst: float

    def as_dict(self) -> dict[str, Any]:
        """JSON-able dict (NaN becomes None)."""
        return {key: _json(value) for key, value in vars(self).items()}


@dataclass(frozen=True, eq=False)
class AccuracyResult:
    """Bias, precision and Arms of readings against the settings in force.

    Attributes
    ----------
    bias : float
        ``mean(d)``.
    sd : float
        Precision, ``SD(d)`` with n − 1 (NaN when n < 2).
    arms : float
        ``sqrt(mean(d²))``.
    n : int
        Readings compared.
    dashes : int
        Dashes after the settling time of in-range plateaus (not compared).
    settling : int
        Readings left out within ``settle_s`` of a change.
    before_first_setting : int
        Readings earlier than the first setting.
    out_of_range : int
        Readings on plateaus whose setting is outside ``set_range``.
    settle_s : float
        The settling time used, s.
    set_range : tuple of float or None
        Settings that count, inclusive (None: all).
    plateaus : tuple of Plateau
        One per change of the setting, in time order.
    t_s, differences : ndarray, shape (n,)
        Time and difference of each compared reading.
    """

    bias: float
    sd: float
    arms: float
    n: int
    dashes: int
    settling: int
    before_first_setting: int
    out_of_range: int
    settle_s: float
    set_range: tuple[float, float] | None
    plateaus: tuple[Plateau, ...]
    t_s: FloatArray
    differences: FloatArray

    def as_dict(self) -> dict[str, Any]:
        """JSON-able dict (without the per-reading arrays)."""
        return {
            "bias": _json(self.bias),
            "sd": _json(self.sd),
            "arms": _json(self.arms),
            "n": self.n,
            "dashes": self.dashes,
            "settling": self.settling,
            "before_first_setting": self.before_first_setting,
            "out_of_range": self.out_of_range,
            "settle_s": self.settle_s,
            "set_range": None if self.set_range is None else list(self.set_range),
            "plateaus": [p.as_dict() for p in self.plateaus],
        }


def _stats(d: FloatArray) -> tuple[float, float, float, float]:
    """bias, sample SD, RMS, worst signed difference of ``d`` (NaN where undefined)."""
    if d.size == 0:
        return math.nan, math.nan, math.nan, math.nan
    bias = float(d.mean())
    sd = float(d.std(ddof=1)) if d.size > 1 else math.nan
    arms = float(math.sqrt(float(np.mean(d * d))))
    worst = float(d[int(np.argmax(np.abs(d)))])
    return bias, sd, arms, worst


def accuracy(
    set_t_s: npt.ArrayLike,
    set_values: Any,
    read_t_s: npt.ArrayLike,
    read_values: Any,
    *,
    settle_s: float,
    set_range: tuple[float, float] | None = None,
) -> AccuracyResult:
    """Bias, precision (SD) and Arms of monitor readings against the simulator's settings.

    Parameters
    ----------
    set_t_s, set_values : array_like, shape (k,)
        The setting channel: strictly increasing times (s) and finite values; each value
        holds until the next different one (repeats of the same value are not changes).
    read_t_s, read_values : array_like, shape (n,)
        The monitor's readings: strictly increasing times (s) and values, NaN or None for
        a dash.
    settle_s : float
        Readings less than this long after a change are left out, s (≥ 0).
    set_range : (low, high), optional
        Only plateaus whose setting lies within, inclusive, are compared (SpO2: 70–100 %).

    Returns
    -------
    AccuracyResult

    Raises
    ------
    AnalysisError
        Empty or mismatched arrays, non-increasing or non-finite times, an infinite
        reading, a non-finite setting, a bad ``settle_s`` or ``set_range``, or no reading
        left to compare (the message counts dashes and left-out readings).
    """
    change_t, change_v = _settings(set_t_s, set_values)
    t, v = _readings(read_t_s, read_values)
    settle = _non_negative(settle_s, "settle_s")
    if set_range is not None:
        low, high = (float(x) for x in set_range)
        if not (math.isfinite(low) and math.isfinite(high)) or low > high:
            raise AnalysisError(
                f"set_range must be (low, high) with low <= high, got {set_range!r}"
            )
        set_range = (low, high)
    index = np.searchsorted(change_t, t, side="right") - 1
    before = index < 0
    safe = np.maximum(index, 0)
    settling = ~before & (t - change_t[safe] < settle)
    in_range_value = (
        np.ones(change_v.size, dtype=bool)
        if set_range is None
        else (change_v >= set_range[0]) & (change_v <= set_range[1])
    )
    considered = ~before & ~settling & in_range_value[safe]
    dash = considered & np.isnan(v)
    used = considered & ~dash
    d = v - change_v[safe]
    plateaus = []
    last_t = float(t[-1])
    for k in range(change_t.size):
        on = index == k
        end = float(change_t[k + 1]) if k + 1 < change_t.size else max(last_t, float(change_t[k]))
        stats = _stats(d[on & used])
        plateaus.append(
            Plateau(
                set_value=float(change_v[k]),
                start_s=float(change_t[k]),
                end_s=end,
                n=int((on & used).sum()),
                dashes=int((on & dash).sum()),
                settling=int((on & settling).sum()),
                in_range=bool(in_range_value[k]),
                bias=stats[0],
                sd=stats[1],
                arms=stats[2],
                worst=stats[3],
            )
        )
    out_of_range = int((~before & ~settling & ~in_range_value[safe]).sum())
    n = int(used.sum())
    if n == 0:
        raise AnalysisError(
            f"no reading to compare: of {t.size} readings, {int(dash.sum())} are dashes, "
            f"{int(settling.sum())} fall within settle_s = {settle:g} s of a change, "
            f"{int(before.sum())} precede the first setting and {out_of_range} are on "
            "settings outside set_range"
        )
    bias, sd, arms, _ = _stats(d[used])
    return AccuracyResult(
        bias=bias,
        sd=sd,
        arms=arms,
        n=n,
        dashes=int(dash.sum()),
        settling=int(settling.sum()),
        before_first_setting=int(before.sum()),
        out_of_range=out_of_range,
        settle_s=settle,
        set_range=set_range,
        plateaus=tuple(plateaus),
        t_s=t[used],
        differences=d[used],
    )


# --------------------------------------------------------------------------- response


@dataclass(frozen=True)
class StepResponse:
    """The response to one change of the setting.

    Attributes
    ----------
    t_step_s : float
        When the setting changed, s.
    from_value, to_value : float
        The setting before and after.
    target : float
        The value the criterion aims at: ``to_value``, or the monitor's settled reading
        (``target="settled"``).
    response_s : float
        Time from the change to the reading that met the criterion, s; NaN if none did
        before the next change (or the end of the readings).
    criterion : str
        How it was measured, in words (stored with the result and shown in reports).
    """

    t_step_s: float
    from_value: float
    to_value: float
    target: float
    response_s: float
    criterion: str

    @property
    def reached(self) -> bool:
        """Whether the criterion was met before the next change."""
        return not math.isnan(self.response_s)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able dict (NaN becomes None)."""
        return {**{key: _json(value) for key, value in vars(self).items()}, "reached": self.reached}


def step_response_times(
    set_t_s: npt.ArrayLike,
    set_values: Any,
    read_t_s: npt.ArrayLike,
    read_values: Any,
    *,
    criterion: Criterion = "band",
    tolerance: float = 0.5,
    fraction: float = 0.9,
    hold: bool = True,
    target: Target = "set",
    settled_window_s: float = 10.0,
) -> tuple[StepResponse, ...]:
    """Response time of the readings to every change of the setting.

    Parameters
    ----------
    set_t_s, set_values, read_t_s, read_values : array_like
        As for :func:`accuracy` (dashes never meet a criterion, and never break one).
    criterion : {"band", "fraction"}
        ``"band"``: the first reading within ± ``tolerance`` of the target;
        ``"fraction"``: the first reading past ``fraction`` of the step from the previous
        setting towards the target.
    tolerance : float
        Half-width of the band, in the readings' units (0.5: an integer display equals the
        target).
    fraction : float
        Fraction of the step, in (0, 1].
    hold : bool
        The reading must also be the start of the plateau's last run meeting the criterion
        (no later non-dash reading of the plateau misses it).
    target : {"set", "settled"}
        Aim at the new setting, or at the monitor's own settled reading: the median of its
        readings over the last ``settled_window_s`` of the plateau (so a biased monitor's
        response time is not confused with its bias). With ``"settled"`` the fraction
        criterion also starts from the settled reading of the previous plateau.
    settled_window_s : float
        Length of that final stretch, s.

    Returns
    -------
    tuple of StepResponse
        One per change after the first setting, in time order.

    Raises
    ------
    AnalysisError
        Bad inputs (as :func:`accuracy`), a bad criterion or parameter, or, with
        ``target="settled"``, a plateau without any reading in its final stretch.
    """
    change_t, change_v = _settings(set_t_s, set_values)
    t, v = _readings(read_t_s, read_values)
    if criterion not in ("band", "fraction"):
        raise AnalysisError(f"criterion must be 'band' or 'fraction', got {criterion!r}")
    if target not in ("set", "settled"):
        raise AnalysisError(f"target must be 'set' or 'settled', got {target!r}")
    tol = _non_negative(tolerance, "tolerance")
    frac = float(fraction)
    if not 0.0 < frac <= 1.0:
        raise AnalysisError(f"fraction must be within (0, 1], got {fraction!r}")
    window = _non_negative(settled_window_s, "settled_window_s")
    ends = np.append(change_t[1:], np.inf)

    def settled(k: int) -> float:
        end = float(ends[k]) if math.isfinite(ends[k]) else float(t[-1]) + 1e-9
        mask = (t >= max(float(change_t[k]), end - window)) & (t < end) & ~np.isnan(v)
        if not mask.any():
            raise AnalysisError(
                f"no reading in the last {window:g} s of the plateau at {change_v[k]:g} "
                f"(from {change_t[k]:g} s) to take the settled value from"
            )
        return float(np.median(v[mask]))

    words = (
        f"first reading within ±{tol:g} of the "
        if criterion == "band"
        else f"first reading past {frac:g} of the step towards the "
    )
    words += "new setting" if target == "set" else "settled reading"
    words += ", staying there until the next change" if hold else ""
    words += "; timed from the set change"
    out = []
    for k in range(1, change_t.size):
        goal = float(change_v[k]) if target == "set" else settled(k)
        start = float(change_v[k - 1]) if target == "set" else settled(k - 1)
        on = (t >= change_t[k]) & (t < ends[k])
        tk, vk = t[on], v[on]
        valid = ~np.isnan(vk)
        with np.errstate(invalid="ignore"):
            if criterion == "band":
                meets = valid & (np.abs(vk - goal) <= tol)
            else:
                span = goal - start
                progress = (vk - start) / span if span != 0 else np.ones(vk.size)
                meets = valid & (progress >= frac - 1e-12)
        misses = valid & ~meets
        candidates = meets.copy()
        if hold and misses.any():
            candidates[: int(np.flatnonzero(misses)[-1]) + 1] = False
        response = (
            float(tk[int(np.argmax(candidates))] - change_t[k]) if candidates.any() else math.nan
        )
        out.append(
            StepResponse(
                t_step_s=float(change_t[k]),
                from_value=float(change_v[k - 1]),
                to_value=float(change_v[k]),
                target=goal,
                response_s=response,
                criterion=words,
            )
        )
    return tuple(out)


# --------------------------------------------------------------------------- alarms


@dataclass(frozen=True)
class AlarmTimes:
    """One alarm episode in IEC 60601-1-8 terms (times in s, NaN where unknown).

    ``t1``: the condition began (the simulator crossed the limit); ``t2``: the monitor
    detected it (often unknown on a real monitor); ``t3``: the alarm signal began.
    """

    condition: str
    t1_s: float
    t3_s: float
    t2_s: float = math.nan


@dataclass(frozen=True)
class AlarmDelay:
    """Measured alarm delays of one condition against the declared one.

    Attributes
    ----------
    condition : str
    declared_s : float or None
        The declared alarm delay (condition + signal generation), s; None if none.
    total_s : tuple of float
        ``t3 − t1`` of every episode with both times, s.
    condition_delay_s, generation_delay_s : tuple of float
        ``t2 − t1`` and ``t3 − t2`` where ``t2`` is known, s.
    worst_s : float
        The largest total delay (NaN without any).
    episodes : int
        Episodes of the condition.
    false_alarms : int
        Signalled without a known onset (``t1`` NaN: the condition never began).
    not_signalled : int
        Began but no alarm signal (``t3`` NaN).
    """

    condition: str
    declared_s: float | None
    total_s: tuple[float, ...]
    condition_delay_s: tuple[float, ...]
    generation_delay_s: tuple[float, ...]
    worst_s: float
    episodes: int
    false_alarms: int
    not_signalled: int

    def as_dict(self) -> dict[str, Any]:
        """JSON-able dict (NaN becomes None)."""
        return {key: _json(value) for key, value in vars(self).items()}


def _field(alarm: Any, name: str) -> Any:
    if isinstance(alarm, Mapping):
        return alarm.get(name, math.nan)
    return getattr(alarm, name, math.nan)


def alarm_delays(
    alarms: Iterable[Any], declared_delays_s: Mapping[str, float | None]
) -> tuple[AlarmDelay, ...]:
    """Alarm delay ``t1 → t3`` per condition against the declared delays.

    Parameters
    ----------
    alarms : iterable
        Episodes: :class:`AlarmTimes`, the twin's
        :class:`~medtwin.device_models.monitor.alarms.Alarm`, or mappings, each with
        ``condition``, ``t1_s``, ``t3_s`` and optionally ``t2_s`` (NaN where unknown).
    declared_delays_s : mapping
        Condition → declared delay in s (None: disclosed only). Every condition named
        gets a result, also one with no episode (its ``worst_s`` is NaN).

    Returns
    -------
    tuple of AlarmDelay
        The declared conditions first (in the mapping's order), then any other condition
        seen, in order of first appearance.

    Raises
    ------
    AnalysisError
        An episode without a condition name, a non-numeric or infinite time, or a
        declared delay that is not a finite number >= 0.
    """
    by_condition: dict[str, list[tuple[float, float, float]]] = {}
    for index, alarm in enumerate(alarms):
        condition = _field(alarm, "condition")
        if not isinstance(condition, str) or not condition:
            raise AnalysisError(f"alarm {index} has no condition name (got {condition!r})")
        times = []
        for name in ("t1_s", "t2_s", "t3_s"):
            raw = _field(alarm, name)
            try:
                value = math.nan if raw is None else float(raw)
            except (TypeError, ValueError):
                raise AnalysisError(
                    f"alarm {index} ({condition}): {name} = {raw!r} is not a time"
                ) from None
            if math.isinf(value):
                raise AnalysisError(f"alarm {index} ({condition}): {name} is infinite")
            times.append(value)
        by_condition.setdefault(condition, []).append((times[0], times[1], times[2]))
    declared = {}
    for condition, delay in declared_delays_s.items():
        declared[condition] = (
            None if delay is None else _non_negative(delay, f"declared delay of {condition}")
        )
    order = list(declared) + [c for c in by_condition if c not in declared]
    out = []
    for condition in order:
        episodes = by_condition.get(condition, [])
        total = tuple(t3 - t1 for t1, _, t3 in episodes if not math.isnan(t1 + t3))
        out.append(
            AlarmDelay(
                condition=condition,
                declared_s=declared.get(condition),
                total_s=total,
                condition_delay_s=tuple(
                    t2 - t1 for t1, t2, _ in episodes if not math.isnan(t1 + t2)
                ),
                generation_delay_s=tuple(
                    t3 - t2 for _, t2, t3 in episodes if not math.isnan(t2 + t3)
                ),
                worst_s=max(total) if total else math.nan,
                episodes=len(episodes),
                false_alarms=sum(
                    1 for t1, _, t3 in episodes if math.isnan(t1) and not math.isnan(t3)
                ),
                not_signalled=sum(
                    1 for t1, _, t3 in episodes if not math.isnan(t1) and math.isnan(t3)
                ),
            )
        )
    return tuple(out)


def condition_onsets(
    set_t_s: npt.ArrayLike,
    set_values: Any,
    *,
    below: float | None = None,
    above: float | None = None,
) -> FloatArray:
    """Times ``t1`` at which the setting begins to violate an alarm limit, s.

    A violation is ``value < below`` or ``value > above`` (strict, as the monitor model's
    limits); an onset is a change from not violating to violating (a first setting that
    already violates counts). Exactly one of ``below`` and ``above`` must be given.
    """
    if (below is None) == (above is None):
        raise AnalysisError("give exactly one of below= and above=")
    change_t, change_v = _settings(set_t_s, set_values)
    violating = change_v < below if below is not None else change_v > float(above or 0.0)
    begins = violating & ~np.concatenate(([False], violating[:-1]))
    return np.asarray(change_t[begins], dtype=np.float64)


def rising_edges(t_s: npt.ArrayLike, flag: npt.ArrayLike) -> FloatArray:
    """Times a sampled alarm flag turns on (``t3`` of a logged alarm channel), s; a flag
    already on at the first sample counts."""
    t = _times(t_s, "t_s")
    f = np.asarray(flag, dtype=bool)
    if f.shape != t.shape:
        raise AnalysisError(f"t_s has {t.size} samples but flag has {f.size}")
    return np.asarray(t[f & ~np.concatenate(([False], f[:-1]))], dtype=np.float64)


def pair_alarm_times(
    condition: str, onsets_s: npt.ArrayLike, signals_s: npt.ArrayLike
) -> tuple[AlarmTimes, ...]:
    """Episodes from onsets ``t1`` and alarm-signal starts ``t3`` (both sorted, s).

    Each onset takes the first signal at or after it and before the next onset (NaN if
    none: not signalled); a signal no onset claims is a false alarm (``t1`` NaN).
    """
    t1 = np.sort(np.asarray(onsets_s, dtype=np.float64))
    t3 = np.sort(np.asarray(signals_s, dtype=np.float64))
    out = []
    claimed = np.zeros(t3.size, dtype=bool)
    for k, onset in enumerate(t1):
        limit = t1[k + 1] if k + 1 < t1.size else math.inf
        j = int(np.searchsorted(t3, onset, side="left"))
        if j < t3.size and t3[j] < limit:
            claimed[j] = True
            out.append(AlarmTimes(condition, float(onset), float(t3[j])))
        else:
            out.append(AlarmTimes(condition, float(onset), math.nan))
    out += [AlarmTimes(condition, math.nan, float(s)) for s in t3[~claimed]]
    return tuple(sorted(out, key=lambda a: a.t1_s if not math.isnan(a.t1_s) else a.t3_s))


def _json(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_json(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(float(value)) else None
    if isinstance(value, np.integer | np.bool_):
        return value.item()
    return value
