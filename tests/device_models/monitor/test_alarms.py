"""The alarm engine: t1/t2/t3 per IEC 60601-1-8, delays, SatSeconds, latching, technical alarms.

Every expected time is derived by hand from the inputs (the boxcar's exact ramp, the
12-interval mean's closed form, a fine-grid integral), not from the engine.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from medtwin.device_models.monitor.monitor import simulate_monitor
from medtwin.device_models.monitor.params import monitor_preset


def _only(alarms: Any, condition: str) -> list[Any]:
    return [a for a in alarms if a.condition == condition]


def _first_update_after(x: float, period: float = 1.0) -> float:
    """The first update time strictly after ``x`` on a grid of ``period`` from 0."""
    return (math.floor(x / period + 1e-12) + 1) * period


@pytest.mark.parametrize(
    ("window_s", "lag_s", "delay_s"), [(4.0, 0.0, 0.0), (8.0, 0.7, 10.0), (12.0, 1.3, 15.0)]
)
def test_spo2_low_t1_to_t3_is_averaging_plus_lag_plus_delay(
    window_s: float, lag_s: float, delay_s: float, make_input: Any
) -> None:
    t = np.arange(0.0, 150.0, 0.1)
    true = np.where(t >= 60.0 - 1e-9, 85.0, 97.0)
    params = monitor_preset(
        "masimo",
        {
            "spo2.averaging_s": window_s,
            "spo2.processing_delay_s": lag_s,
            "alarms.spo2_delay_s": delay_s,
        },
    )
    (alarm,) = _only(simulate_monitor(make_input(t, true), params).alarms, "spo2_low")
    # The integer display drops below 90 once the ramp 97 - 12 (tau - 60)/T is below 89.5.
    crossing = 60.0 + lag_s + window_s * 7.5 / 12.0
    assert alarm.t1_s == pytest.approx(60.0)
    assert alarm.t2_s == pytest.approx(_first_update_after(crossing))
    assert alarm.t3_s == pytest.approx(alarm.t2_s + delay_s)
    assert alarm.total_delay_s == pytest.approx(alarm.t2_s - 60.0 + delay_s)
    assert alarm.signal_generation_delay_s == pytest.approx(delay_s)
    assert (alarm.kind, alarm.priority) == ("physiological", "high")
    assert alarm.generated
    assert math.isnan(alarm.t_end_s)


def test_condition_shorter_than_the_delay_signals_nothing(make_input: Any) -> None:
    t = np.arange(0.0, 150.0, 0.5)
    dip = (t >= 60.0) & (t < 80.0)
    record = make_input(t, np.where(dip, 85.0, 97.0))
    lag = {"spo2.processing_delay_s": 0.25}  # keeps the updates off the exact 89.5 ties
    # The 8 s ramp is below 89.5 for tau in (65, 83): updates 66 .. 83 (lag 0.25 s).
    short = monitor_preset("masimo", {**lag, "alarms.spo2_delay_s": 18.0})
    (alarm,) = _only(simulate_monitor(record, short).alarms, "spo2_low")
    assert (alarm.t1_s, alarm.t2_s, alarm.t_end_s) == (60.0, 66.0, 84.0)
    assert not alarm.generated
    assert math.isnan(alarm.signal_generation_delay_s)
    assert not alarm.latched
    long_enough = monitor_preset("masimo", {**lag, "alarms.spo2_delay_s": 17.5})
    (alarm,) = _only(simulate_monitor(record, long_enough).alarms, "spo2_low")
    assert alarm.t3_s == 83.5
    assert alarm.latched


def test_hr_high_t1_to_t3(make_input: Any, beats_with_step: Any) -> None:
    r, t_step = beats_with_step(80.0, 130.0, t_change_s=30.0, end_s=80.0)
    record = make_input(np.arange(0.0, 80.0, 0.5), r_peaks=r)
    params = monitor_preset("philips", {"alarms.hr_delay_s": 5.0})
    (alarm,) = _only(simulate_monitor(record, params).alarms, "hr_high")
    # k intervals of 60/130 s in the 12-interval mean: shown > 120 once round(HR) >= 121.
    k = next(k for k in range(13) if 60.0 / ((k * 60 / 130 + (12 - k) * 0.75) / 12) >= 120.5)
    beat_k = t_step + (k - 1) * 60.0 / 130.0
    assert alarm.t1_s == pytest.approx(t_step)
    assert alarm.t2_s == pytest.approx(math.ceil(beat_k + 0.9 - 1e-12))
    assert alarm.t3_s == pytest.approx(alarm.t2_s + 5.0)
    assert (alarm.priority, alarm.latched) == ("medium", False)


def _satseconds_params(**more: Any) -> Any:
    return monitor_preset(
        "masimo",
        {
            "spo2.averaging_s": 2.0,
            "round_display": False,
            "alarms.spo2_low_strategy": "satseconds",
            "alarms.satseconds_threshold": 50.0,
            **more,
        },
    )


def test_satseconds_integral_reaches_the_threshold(make_input: Any) -> None:
    t = np.arange(0.0, 120.0, 0.1)
    true = np.where(t >= 60.0 - 1e-9, 84.0, 97.0)
    out = simulate_monitor(make_input(t, true), _satseconds_params())
    (alarm,) = _only(out.alarms, "spo2_low")
    # Reference: integrate (90 - display) on a 1 ms grid, the display held between updates.
    fine = np.arange(alarm.t2_s, 120.0, 1e-3)
    held = out.spo2_percent[np.searchsorted(out.t_s, fine, side="right") - 1]
    integral = np.cumsum(np.clip(90.0 - held, 0.0, None)) * 1e-3
    expected = fine[np.argmax(integral >= 50.0)]
    assert alarm.t3_s == pytest.approx(expected, abs=2e-3)
    assert 8.0 < alarm.t3_s - alarm.t2_s < 10.0  # 50 %·s at about 6 % below the limit


def _dips(make_input: Any, starts: list[float]) -> Any:
    t = np.arange(0.0, 300.0, 0.1)
    low = np.zeros(t.size, dtype=bool)
    for s in starts:
        low |= (t >= s - 1e-9) & (t < s + 3.0 - 1e-9)
    return make_input(t, np.where(low, 86.0, 97.0))


def test_satseconds_three_violations_in_60_s_alarm_at_once(make_input: Any) -> None:
    # Each 3 s dip to 86 % stays well below 100 %·s; the third within 60 s alarms at once.
    params = _satseconds_params(**{"alarms.satseconds_threshold": 100.0})
    alarms = _only(
        simulate_monitor(_dips(make_input, [50.0, 70.0, 90.0]), params).alarms, "spo2_low"
    )
    assert len(alarms) == 3
    assert [a.generated for a in alarms] == [False, False, True]
    assert alarms[2].t3_s == alarms[2].t2_s
    spread = _dips(make_input, [50.0, 90.0, 130.0])  # never three within 60 s
    alarms = _only(simulate_monitor(spread, params).alarms, "spo2_low")
    assert len(alarms) == 3
    assert not any(a.generated for a in alarms)


def test_latching_ends_at_the_first_acknowledgement_after_the_condition(
    make_input: Any,
) -> None:
    t = np.arange(0.0, 200.0, 0.5)
    dip = (t >= 50.0) & (t < 70.0)
    record = make_input(t, np.where(dip, 85.0, 97.0), acknowledge=[60.0, 120.0, 150.0])
    (alarm,) = _only(simulate_monitor(record, monitor_preset("masimo")).alarms, "spo2_low")
    assert alarm.latched
    assert alarm.t_end_s == 120.0
    no_ack = make_input(t, np.where(dip, 85.0, 97.0))
    (alarm,) = _only(simulate_monitor(no_ack, monitor_preset("masimo")).alarms, "spo2_low")
    assert alarm.latched
    assert math.isnan(alarm.t_end_s)
    unlatched = monitor_preset("masimo", {"alarms.latching_priorities": ""})
    (alarm,) = _only(simulate_monitor(record, unlatched).alarms, "spo2_low")
    assert not alarm.latched
    assert alarm.t_end_s == 73.0


def test_priorities_follow_the_parameters(make_input: Any) -> None:
    t = np.arange(0.0, 100.0, 0.5)
    off = (t >= 50.0) & (t < 70.0)
    params = monitor_preset(
        "generic", {"alarms.technical_priority": "medium", "alarms.latching_priorities": "medium"}
    )
    (alarm,) = _only(
        simulate_monitor(make_input(t, sensor_off=off), params).alarms, "spo2_sensor_off"
    )
    assert (alarm.priority, alarm.kind, alarm.latched) == ("medium", "technical", True)


@pytest.mark.parametrize(("off_s", "generated"), [(30.0, True), (8.0, False)])
def test_technical_alarms_have_their_own_delay(
    off_s: float, generated: bool, make_input: Any
) -> None:
    t = np.arange(0.0, 200.0, 0.25)
    off = (t >= 100.0) & (t < 100.0 + off_s)
    weak = (t >= 150.0) & (t < 180.0)
    record = make_input(t, 95.0, sensor_off=off, pi=np.where(weak, 0.01, 2.0))
    # Mindray: SpO2 technical alarm delay 10 s, its SpO2 alarm delay is another 10 s.
    out = simulate_monitor(record, monitor_preset("mindray"))
    (alarm,) = _only(out.alarms, "spo2_sensor_off")
    assert (alarm.t1_s, alarm.t2_s) == (100.0, 100.0)
    assert alarm.generated is generated
    if generated:
        assert alarm.t3_s == 110.0
        assert alarm.t_end_s == 100.0 + off_s
    (lost,) = _only(out.alarms, "spo2_no_signal")
    assert (lost.t1_s, lost.t2_s, lost.t3_s, lost.t_end_s) == (150.0, 150.0, 160.0, 180.0)
    assert not _only(out.alarms, "spo2_low")  # the frozen, then dashed, value never alarms


def test_biased_monitor_raises_a_false_alarm_without_t1(make_input: Any) -> None:
    t = np.arange(0.0, 60.0, 0.5)
    params = monitor_preset("generic", {"spo2.bias_percent": -3.0})
    (alarm,) = _only(simulate_monitor(make_input(t, 91.0), params).alarms, "spo2_low")
    assert math.isnan(alarm.t1_s)
    assert alarm.generated


def test_a_true_violation_long_past_is_not_the_cause(make_input: Any) -> None:
    t = np.arange(0.0, 300.0, 0.5)
    # A true dip at 20-25 s, then at 200 s a drift to 90.6 % that only the biased
    # monitor (-1.2 %) shows below 90.
    true = np.where((t >= 20.0) & (t < 25.0), 85.0, np.where(t >= 200.0, 90.6, 91.0))
    record = make_input(t, true)
    params = monitor_preset("generic", {"spo2.bias_percent": -1.2, "alarms.t1_lookback_s": 30.0})
    real, false = _only(simulate_monitor(record, params).alarms, "spo2_low")
    assert real.t1_s == 20.0
    assert false.t2_s > 200.0
    assert math.isnan(false.t1_s)
    forgiving = params.with_overrides({"alarms.t1_lookback_s": 3600.0})
    _, blamed = _only(simulate_monitor(record, forgiving).alarms, "spo2_low")
    assert blamed.t1_s == 20.0
