"""The whole monitor: batch == incremental, input contract, parameters, calibration."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from medtwin.device_models.base import ParameterError, list_parameters
from medtwin.device_models.monitor.monitor import (
    CONDITIONS,
    MonitorInput,
    MonitorStream,
    simulate_monitor,
    simulate_monitors,
)
from medtwin.device_models.monitor.params import PRESETS, MonitorParams, monitor_preset
from scipy.optimize import least_squares

ARRAYS = (
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


def _busy_record(seed: int, hours: float = 1.0, dt: float = 0.2) -> MonitorInput:
    """Desaturations, sensor-off spells, weak perfusion, motion and an irregular rhythm."""
    rng = np.random.default_rng(seed)
    t = np.arange(0.0, hours * 3600.0, dt)
    spo2 = 95 + 3 * np.sin(t / 97) - 9 * (np.sin(t / 400) > 0.9) + rng.normal(0, 0.5, t.size)
    pi = np.where((t % 1800) < 40, 0.01, np.where((t % 900) < 60, 0.2, 2.0))
    off = (t % 2400) < 25
    motion = (t % 1000) < 15
    n = int(t[-1] / 0.5)
    rr = np.clip(0.75 + 0.3 * np.sin(np.arange(n) / 50) + rng.normal(0, 0.05, n), 0.3, 2.0)
    r = np.cumsum(rr)
    acks = np.array([0.19, 0.69]) * t[-1]
    return MonitorInput(t, spo2, pi, off, motion, r[r < t[-1]], acks)


def _feed(record: MonitorInput, params: MonitorParams, rng: np.random.Generator) -> Any:
    """Push the record in random chunks, acknowledging and reading alarms on the way."""
    stream = MonitorStream(params)
    acks = list(record.acknowledge_s)
    t, r = record.t_s, record.r_peak_times_s
    i = j = 0
    while i < t.size:
        n = int(rng.integers(1, 60))
        hi = t[min(i + n, t.size) - 1]
        k = int(np.searchsorted(r, hi, side="right"))
        part = stream.push(
            t[i : i + n],
            record.spo2_true_percent[i : i + n],
            record.pi_percent[i : i + n],
            record.sensor_off[i : i + n],
            record.motion[i : i + n],
            r[j:k],
        )
        assert part.alarms == ()
        assert np.all(part.t_s <= hi)
        while acks and acks[0] <= hi:
            stream.acknowledge(acks.pop(0))
        if rng.random() < 0.1:
            stream.alarms()  # reading them on the way must not change the result
        i, j = i + n, k
    return stream.output()


def _key(alarm: Any) -> tuple[str, float]:
    return (alarm.condition, alarm.t2_s)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_incremental_equals_batch(preset: str) -> None:
    # Seed 11 for the record, 12 for the chunk sizes: any busy record will do.
    record = _busy_record(11)
    overrides = {"alarms.spo2_low_strategy": "satseconds"} if preset == "generic" else {}
    params = monitor_preset(preset, overrides)
    batch = simulate_monitor(record, params)
    live = _feed(record, params, np.random.default_rng(12))
    for name in ARRAYS:
        np.testing.assert_array_equal(getattr(live, name), getattr(batch, name), err_msg=name)
    a = sorted(batch.alarms, key=_key)
    b = sorted(live.alarms, key=_key)
    assert [(x.condition, x.priority, x.kind, x.latched) for x in a] == [
        (x.condition, x.priority, x.kind, x.latched) for x in b
    ]
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(
            [x.t1_s, x.t2_s, x.t3_s, x.t_end_s], [y.t1_s, y.t2_s, y.t3_s, y.t_end_s]
        )
    # the record is busy enough to exercise every kind of condition
    seen = {x.condition for x in a}
    assert {"spo2_low", "spo2_sensor_off", "spo2_no_signal", "hr_high"} <= seen
    assert seen <= set(CONDITIONS)


def test_stream_refuses_time_going_back() -> None:
    stream = MonitorStream(monitor_preset("generic"))
    stream.push(np.array([0.0, 1.0]), [97, 97], [2, 2], [False, False], [False, False])
    with pytest.raises(ValueError, match="increasing"):
        stream.push(np.array([1.0]), [97], [2], [False], [False])


def test_updates_follow_the_period_and_phase() -> None:
    t = np.arange(0.0, 10.0, 0.1)
    n = t.size
    record = MonitorInput(
        t,
        np.full(n, 97.0),
        np.full(n, 2.0),
        np.zeros(n, bool),
        np.zeros(n, bool),
        np.arange(0.0, 10.0, 1.0),
    )
    out = simulate_monitor(record, monitor_preset("nonin", {"update_phase_s": 0.25}))
    np.testing.assert_allclose(out.t_s, 0.25 + 1.5 * np.arange(7))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"t_s": np.array([0.0, 0.0])}, "strictly increasing"),
        ({"pi_percent": np.ones(3)}, "pi_percent must have the shape"),
        ({"r_peak_times_s": np.array([1.0, 0.5])}, "r_peak_times_s"),
    ],
)
def test_input_contract(kwargs: dict[str, Any], message: str) -> None:
    base: dict[str, Any] = {
        "t_s": np.arange(2.0),
        "spo2_true_percent": np.full(2, 97.0),
        "pi_percent": np.full(2, 2.0),
        "sensor_off": np.zeros(2, bool),
        "motion": np.zeros(2, bool),
    }
    with pytest.raises(ValueError, match=message):
        MonitorInput(**{**base, **kwargs})


def test_every_parameter_has_a_description_and_floats_a_unit() -> None:
    infos = list_parameters(monitor_preset("philips"))
    assert len(infos) > 30
    for info in infos:
        assert info.doc, info.name
        if isinstance(info.value, float):
            assert info.unit, info.name


def test_a_real_monitor_is_a_preset_plus_overrides() -> None:
    real = monitor_preset(
        "masimo",
        {
            "spo2.bias_percent": 1.5,
            "spo2.averaging_s": 12,
            "hr.offset_bpm": -2,
            "alarms.spo2_delay_s": "15",
        },
    )
    twin = monitor_preset("masimo")
    assert (real.spo2.bias_percent, real.spo2.averaging_s) == (1.5, 12.0)
    assert (real.hr.offset_bpm, real.alarms.spo2_delay_s) == (-2.0, 15.0)
    assert twin.spo2.averaging_s == 8.0
    assert real.name == "masimo"


@pytest.mark.parametrize(
    ("name", "overrides", "message"),
    [
        ("philips", {"spo2.averaging_s": 0.0}, "spo2.averaging_s = 0 s is below"),
        ("philips", {"spo2.bias_percent": 40}, "above its maximum"),
        ("philips", {"alarms.spo2_priority": "urgent"}, "alarms.spo2_priority"),
        ("philips", {"alarms.latching_priorities": "high,loud"}, "latching_priorities"),
        ("philips", {"alarms.spo2_low_strategy": "smart"}, "spo2_low_strategy"),
        ("philips", {"alarms.satseconds_threshold": 5}, "below its minimum"),
        ("philips", {"spo2.method": "median"}, "spo2.method"),
        ("philips", {"spo2.nonexistent": 1}, "unknown parameter"),
        ("philips", {"update_period_s": math.nan}, "finite"),
        ("dräger", {}, "unknown monitor preset"),
    ],
)
def test_bad_parameters_raise(name: str, overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ParameterError, match=message):
        monitor_preset(name, overrides)


def test_direct_construction_is_validated() -> None:
    with pytest.raises(ParameterError, match="update_period_s"):
        MonitorParams(update_period_s=-1.0)


def test_calibration_recovers_bias_and_averaging() -> None:
    """least_squares on a displayed record finds the real monitor's bias and window."""
    rng = np.random.default_rng(5)  # seed 5: desaturation depths and timings
    t = np.arange(0.0, 1800.0, 1.0)
    # A wandering baseline: on a flat one the integer display's rounding error is one
    # constant offset that no fit can tell from the bias.
    true = 95.5 + 1.5 * np.sin(t / 37.0) + rng.normal(0.0, 0.4, t.size)
    for start in rng.uniform(60, 1700, 12):
        depth = rng.uniform(5, 15)
        true -= depth * ((t >= start) & (t < start + rng.uniform(20, 60)))
    n = t.size
    record = MonitorInput(
        t, true, np.full(n, 2.0), np.zeros(n, bool), np.zeros(n, bool), np.arange(0.0, 1800.0, 0.8)
    )
    real = monitor_preset("masimo", {"spo2.bias_percent": 1.5, "spo2.averaging_s": 12.0})
    shown = simulate_monitor(record, real).spo2_percent  # integers, as the device sends
    twin = monitor_preset("masimo", {"round_display": False})

    def residual(x: np.ndarray) -> np.ndarray:
        p = twin.with_overrides({"spo2.bias_percent": x[0], "spo2.averaging_s": x[1]})
        model = simulate_monitor(record, p).spo2_percent
        ok = np.isfinite(model) & np.isfinite(shown)
        return np.asarray(model[ok] - shown[ok])

    fit = least_squares(
        residual, x0=[0.0, 8.0], bounds=([-10.0, 0.5], [10.0, 32.0]), diff_step=[1e-3, 1e-3]
    )
    assert fit.x[0] == pytest.approx(1.5, abs=0.05)
    assert fit.x[1] == pytest.approx(12.0, abs=0.2)
    assert np.sqrt(np.mean(fit.fun**2)) < 0.35  # what is left is the display's rounding


def test_input_from_a_patient_record() -> None:
    from medtwin.device_models.patient.events import events_from_mappings
    from medtwin.device_models.patient.model import simulate_patient

    t = np.arange(0.0, 900.0)
    events = events_from_mappings(
        [
            {"kind": "desaturation", "at_s": 120, "to_percent": 82, "duration_s": 90},
            {"kind": "sensor_off", "at_s": 500, "duration_s": 40},
        ]
    )
    # Seed 2024: the patient page's example; any seed gives the same events.
    rec = simulate_patient(t, rng=np.random.default_rng(2024), events=events)
    out = simulate_monitor(MonitorInput.from_record(rec), monitor_preset("philips"))
    low = [a for a in out.alarms if a.condition == "spo2_low"]
    off = [a for a in out.alarms if a.condition == "spo2_sensor_off"]
    assert low
    assert low[0].t1_s >= 120.0
    assert low[0].t1_s <= low[0].t2_s < low[0].t3_s
    assert [(a.t1_s, a.t2_s) for a in off] == [(500.0, 500.0)]
    assert np.nanmean(out.hr_bpm) == pytest.approx(np.mean(rec.hr_bpm), rel=0.05)


def _random_params(rng: np.random.Generator) -> MonitorParams:
    return monitor_preset(
        str(rng.choice(sorted(PRESETS))),
        {
            "update_period_s": float(rng.choice([0.5, 1.0, 1.5, 2.0])),
            "update_phase_s": float(rng.uniform(0.0, 1.0)),
            "round_display": bool(rng.random() < 0.5),
            "hr.method": str(rng.choice(["mean", "trimmed_mean"])),
            "hr.averaging_intervals": int(rng.integers(1, 16)),
            "hr.processing_delay_s": float(rng.uniform(0.0, 2.0)),
            "hr.timeout_s": float(rng.uniform(2.0, 12.0)),
            "spo2.method": str(rng.choice(["window", "beat_exponential"])),
            "spo2.averaging_s": float(rng.uniform(1.0, 16.0)),
            "spo2.fast_mode": bool(rng.random() < 0.2),
            "spo2.exponential_beats": float(rng.uniform(1.0, 10.0)),
            "spo2.processing_delay_s": float(rng.uniform(0.0, 3.0)),
            "spo2.freeze_s": float(rng.uniform(0.0, 20.0)),
            "spo2.bias_percent": float(rng.uniform(-2.0, 2.0)),
            "spo2.motion_drops_signal": bool(rng.random() < 0.5),
            "alarms.spo2_delay_s": float(rng.uniform(0.0, 20.0)),
            "alarms.hr_delay_s": float(rng.uniform(0.0, 10.0)),
            "alarms.technical_delay_s": float(rng.uniform(0.0, 15.0)),
            "alarms.spo2_low_strategy": str(rng.choice(["delay", "satseconds"])),
            "alarms.satseconds_threshold": float(rng.uniform(10.0, 100.0)),
            "alarms.latching_priorities": str(rng.choice(["", "high", "high,medium"])),
        },
    )


@pytest.mark.parametrize("seed", range(6))
def test_incremental_equals_batch_for_random_parameters(seed: int) -> None:
    # Seeds 0-5: six random monitors on a 20 min busy record, fed in random chunks.
    rng = np.random.default_rng(seed)
    record = _busy_record(100 + seed, hours=1 / 3, dt=float(rng.choice([0.1, 0.25, 1.0])))
    params = _random_params(rng)
    batch = simulate_monitor(record, params)
    live = _feed(record, params, rng)
    for name in ARRAYS:
        np.testing.assert_array_equal(getattr(live, name), getattr(batch, name), err_msg=name)
    a = sorted(batch.alarms, key=_key)
    b = sorted(live.alarms, key=_key)
    assert [(x.condition, x.latched) for x in a] == [(x.condition, x.latched) for x in b]
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(
            [x.t1_s, x.t2_s, x.t3_s, x.t_end_s], [y.t1_s, y.t2_s, y.t3_s, y.t_end_s]
        )


def test_a_batch_of_monitors_equals_one_at_a_time() -> None:
    record = _busy_record(21, hours=0.25)
    params = [
        monitor_preset("masimo", {"spo2.averaging_s": w, "spo2.bias_percent": b})
        for w, b in ((4.0, 0.0), (8.0, 1.0), (12.0, -1.0))
    ] + [monitor_preset("nonin"), monitor_preset("generic", {"spo2.motion_drops_signal": True})]
    for one, many in zip(
        [simulate_monitor(record, p) for p in params],
        simulate_monitors(record, params),
        strict=True,
    ):
        for name in ARRAYS:
            np.testing.assert_array_equal(getattr(one, name), getattr(many, name))
        assert [(a.condition, a.t2_s, a.t3_s) for a in one.alarms] == [
            (a.condition, a.t2_s, a.t3_s) for a in many.alarms
        ]


def test_each_group_validates_itself_with_its_dotted_name() -> None:
    from medtwin.device_models.monitor.params import AlarmParams, HrParams, Spo2Params

    with pytest.raises(ParameterError, match=r"hr\.averaging_intervals"):
        HrParams(averaging_intervals=0)
    with pytest.raises(ParameterError, match=r"spo2\.freeze_s"):
        Spo2Params(freeze_s=-1.0)
    with pytest.raises(ParameterError, match=r"alarms\.hr_delay_s"):
        AlarmParams(hr_delay_s=1e6)
