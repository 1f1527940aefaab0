"""Scripted patient events (device_models/patient/events.py)."""

from __future__ import annotations

import math
import tomllib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from medtwin.device_models.base import ParameterError
from medtwin.device_models.patient.events import (
    EVENT_KINDS,
    Apnoea,
    Bradycardia,
    Desaturation,
    Motion,
    Ramp,
    SensorOff,
    Step,
    apply_events,
    event_from_mapping,
    events_from_mappings,
)
from medtwin.device_models.patient.pd import severinghaus_pao2_mmhg as po2_from_spo2
from medtwin.device_models.patient.pd import severinghaus_spo2_percent as spo2_from_po2
from medtwin.device_models.patient.vitals import VitalBaseline, baseline_trajectories

T = np.arange(0.0, 900.0, 0.5)


def _means() -> dict[str, np.ndarray]:
    return baseline_trajectories(T, VitalBaseline())


def _at(x: np.ndarray, t: float) -> float:
    return float(np.interp(t, T, x))


def test_from_mapping_and_toml() -> None:
    e = event_from_mapping(
        {"kind": "desaturation", "at_s": 60, "to_percent": 85, "duration_s": 120}
    )
    assert e == Desaturation(at_s=60.0, to_percent=85.0, duration_s=120.0)
    doc = tomllib.loads(
        """
        [[events]]
        kind = "step"
        vital = "hr_bpm"
        at_s = 10
        to = 120
        [[events]]
        kind = "apnea"
        at_s = 30
        duration_s = 20
        """
    )
    events = events_from_mappings(doc["events"])
    assert events == [Step(at_s=10.0, vital="hr_bpm", to=120.0), Apnoea(at_s=30.0, duration_s=20.0)]
    assert set(EVENT_KINDS) == {
        "step",
        "ramp",
        "bradycardia",
        "desaturation",
        "apnoea",
        "sensor_off",
        "motion",
    }


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"kind": "desaturation", "at_s": 60, "to_percent": 120}, r"events\[0\]\.to_percent"),
        ({"kind": "teleport", "at_s": 1}, r"events\[0\]\.kind"),
        ({"kind": "step", "at_s": 1, "vital": "hr_bpm"}, r"events\[0\]\.to"),
        ({"kind": "step", "at_s": 1, "vital": "hr_bpm", "to": 1, "by": 2}, r"events\[0\]\.to"),
        ({"kind": "ramp", "at_s": 1, "vital": "pulse", "to": 1}, r"events\[0\]\.vital"),
        ({"kind": "motion", "at_s": 1, "amp": 2}, r"events\[0\]\.amp"),
        ({"kind": "motion"}, r"events\[0\]\.at_s"),
        ({"kind": "motion", "at_s": "soon"}, r"events\[0\]\.at_s"),
        ({"kind": "motion", "at_s": True}, r"events\[0\]\.at_s"),
        ({"kind": "sensor_off", "at_s": -5}, r"events\[0\]\.at_s"),
        ({"kind": "apnoea", "at_s": 0, "duration_s": 0}, r"events\[0\]\.duration_s"),
        ({"kind": "bradycardia", "at_s": 0, "to_bpm": 90}, r"events\[0\]\.to_bpm"),
        ({"kind": "ramp", "at_s": 0, "vital": "hr_bpm", "to": math.nan}, r"events\[0\]\.to"),
    ],
)
def test_bad_specs_name_the_field(spec: dict[str, object], field: str) -> None:
    with pytest.raises(ParameterError, match=field):
        events_from_mappings([spec])


def test_not_a_table() -> None:
    with pytest.raises(ParameterError, match="expected a table"):
        event_from_mapping(["kind", "step"])  # type: ignore[arg-type]


def test_step_and_ramp() -> None:
    out = apply_events(
        T,
        _means(),
        [
            Step(at_s=100.0, vital="hr_bpm", to=120.0, duration_s=100.0),
            Ramp(at_s=300.0, vital="nibp_sys_mmhg", by=-30.0, duration_s=60.0),
        ],
    ).means
    assert _at(out["hr_bpm"], 99.5) == 70.0
    assert _at(out["hr_bpm"], 100.0) == 120.0
    assert _at(out["hr_bpm"], 199.5) == 120.0
    assert _at(out["hr_bpm"], 200.0) == 70.0
    assert _at(out["nibp_sys_mmhg"], 330.0) == pytest.approx(105.0)
    assert _at(out["nibp_sys_mmhg"], 360.0) == pytest.approx(90.0)
    assert _at(out["nibp_sys_mmhg"], 899.0) == pytest.approx(90.0)


def test_later_events_start_from_where_earlier_ones_left() -> None:
    out = apply_events(
        T,
        _means(),
        [
            Ramp(at_s=200.0, vital="hr_bpm", to=100.0, duration_s=100.0),
            Step(at_s=0.0, vital="hr_bpm", to=90.0),  # applied first: sorted by at_s
        ],
    ).means
    assert _at(out["hr_bpm"], 100.0) == 90.0
    assert _at(out["hr_bpm"], 250.0) == pytest.approx(95.0)


def test_bradycardia_trapezoid() -> None:
    out = apply_events(
        T, _means(), [Bradycardia(at_s=100.0, duration_s=60.0, to_bpm=40.0, onset_s=10.0)]
    ).means["hr_bpm"]
    assert _at(out, 100.0) == 70.0
    assert _at(out, 105.0) == pytest.approx(55.0)
    assert _at(out, 110.0) == pytest.approx(40.0)
    assert _at(out, 160.0) == pytest.approx(40.0)
    assert _at(out, 165.0) == pytest.approx(55.0)
    assert _at(out, 170.0) == pytest.approx(70.0)


def test_desaturation_time_course() -> None:
    ev = Desaturation(at_s=60.0, to_percent=85.0, duration_s=120.0)
    out = apply_events(T, _means(), [ev]).means["spo2_percent"]
    delay = ev.circulation_delay_s
    assert _at(out, 60.0 + delay) == pytest.approx(97.5)
    # PO2 course: p0 + (p* − p0)(1 − e^(−s/τ)); SpO2 is the curve of it.
    p0, p1 = float(po2_from_spo2(97.5)), float(po2_from_spo2(85.0))
    for s in (5.0, 15.0, 40.0):
        p = p0 + (p1 - p0) * (1 - np.exp(-s / ev.fall_tau_s))
        assert _at(out, 60.0 + delay + s) == pytest.approx(float(spo2_from_po2(p)), abs=1e-6)
    nadir = out.min()
    assert nadir == pytest.approx(85.0, abs=0.05)
    end = 60.0 + 120.0 + delay
    assert _at(out, end + 5 * ev.recovery_tau_s) == pytest.approx(97.5, abs=0.1)
    # Sigmoid in SpO2: the first 5 s fall less than the next 5 s.
    first = 97.5 - _at(out, 60.0 + delay + 5.0)
    second = _at(out, 60.0 + delay + 5.0) - _at(out, 60.0 + delay + 10.0)
    assert second > first


def test_apnoea_rr_zero_and_spo2_falls() -> None:
    fx = apply_events(T, _means(), [Apnoea(at_s=100.0, duration_s=90.0)])
    rr, spo2 = fx.means["rr_min"], fx.means["spo2_percent"]
    assert np.all(rr[(T >= 100) & (T < 190)] == 0.0)
    assert _at(rr, 99.5) == 14.0
    assert _at(rr, 190.0) == 14.0
    assert fx.apnoea.sum() == 180  # 90 s at 0.5 s
    # Room-air adult: about 90 % one minute into the apnoea, still falling at its end.
    assert _at(spo2, 160.0) == pytest.approx(90.0, abs=2.0)
    assert _at(spo2, 199.0) < _at(spo2, 180.0)
    assert _at(spo2, 260.0) == pytest.approx(97.5, abs=0.2)
    assert np.all(spo2 <= 97.5 + 1e-12)


def test_overlapping_desaturations_take_the_lower_po2() -> None:
    a = Desaturation(at_s=100.0, to_percent=90.0, duration_s=200.0)
    b = Desaturation(at_s=150.0, to_percent=80.0, duration_s=50.0)
    both = apply_events(T, _means(), [a, b]).means["spo2_percent"]
    only_a = apply_events(T, _means(), [a]).means["spo2_percent"]
    only_b = apply_events(T, _means(), [b]).means["spo2_percent"]
    np.testing.assert_allclose(both, np.minimum(only_a, only_b), atol=1e-9)


def test_flags() -> None:
    fx = apply_events(
        T,
        _means(),
        [
            SensorOff(at_s=10.0, duration_s=5.0),
            Motion(at_s=20.0, duration_s=10.0, amplitude=2.0),
            Motion(at_s=25.0, duration_s=10.0, amplitude=0.5),
        ],
    )
    assert fx.sensor_off.sum() == 10
    assert fx.sensor_off[20]
    assert not fx.sensor_off[30]
    assert fx.motion.sum() == 30
    assert _at(fx.motion_amplitude, 27.0) == 2.0
    assert _at(fx.motion_amplitude, 32.0) == 0.5
    assert not fx.apnoea.any()
    np.testing.assert_array_equal(fx.means["hr_bpm"], 70.0)


_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.lists(st.integers(), max_size=2),
)
_KEYS = st.sampled_from(
    [
        "kind",
        "at_s",
        "duration_s",
        "to",
        "by",
        "vital",
        "to_percent",
        "to_bpm",
        "onset_s",
        "amplitude",
        "po2_tau_s",
        "venous_po2_mmhg",
        "fall_tau_s",
        "recovery_tau_s",
        "circulation_delay_s",
        "colour",
    ]
)


@given(
    kind=st.one_of(st.sampled_from([*EVENT_KINDS, "apnea", "nonesuch"]), _VALUES),
    rest=st.dictionaries(_KEYS, _VALUES, max_size=6),
    vital=st.sampled_from(["hr_bpm", "spo2_percent", "pulse"]),
)
@settings(max_examples=300, deadline=None)
def test_any_mapping_gives_an_event_or_a_parameter_error(
    kind: object, rest: dict[str, object], vital: str
) -> None:
    spec = {**rest, "kind": kind}
    if kind in ("step", "ramp"):
        spec.setdefault("vital", vital)
    try:
        event = event_from_mapping(spec, where="events[3]")
    except ParameterError as exc:
        message = str(exc)
    else:
        message = ""
    if message:
        assert message.startswith("events[3]")
        return
    fx = apply_events(
        np.arange(0.0, 20.0), baseline_trajectories(np.arange(0.0, 20.0), VitalBaseline()), [event]
    )
    assert all(np.all(np.isfinite(v)) for v in fx.means.values())


def test_apply_events_checks_its_means() -> None:
    with pytest.raises(ParameterError, match="means lacks"):
        apply_events(T, {"hr_bpm": np.zeros(T.size)}, [])
    means = _means()
    means["hr_bpm"] = np.zeros(3)
    with pytest.raises(ParameterError, match="hr_bpm"):
        apply_events(T, means, [])
