"""Monitor QA analyses: accuracy (bias, SD, Arms), response time, alarm delay, verdicts."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from medtwin.device_models.monitor.alarms import Alarm
from medtwin.device_models.monitor.monitor import MonitorInput, MonitorOutput, simulate_monitor
from medtwin.device_models.monitor.params import monitor_preset
from medtwin.device_models.patient.demographics import Demographics
from medtwin.device_models.patient.events import events_from_mappings
from medtwin.device_models.patient.model import PatientParams, PatientRecord, simulate_patient
from medtwin.device_models.patient.vitals import WalkParams
from medtwin.drivers.errors import AnalysisError
from medtwin.hil.analysis.monitor_qa import (
    AlarmTimes,
    accuracy,
    alarm_delays,
    condition_onsets,
    pair_alarm_times,
    rising_edges,
    step_response_times,
)
from medtwin.hil.analysis.monitor_qa_verdicts import (
    HR_TOLERANCE_BPM,
    HR_TOLERANCE_PERCENT,
    SPO2_ARMS_PERCENT,
    SPO2_RANGE_PERCENT,
    accuracy_verdicts,
    alarm_delay_verdicts,
    response_verdicts,
    side_by_side,
)
from medtwin.hil.measurements import Source, overall_outcome
from medtwin.hil.outcomes import Outcome

# ----------------------------------------------------------------------------- accuracy

# Two plateaus, 90 % from 0 s and 80 % from 100 s, a reading every 10 s, settle 20 s:
# readings at 0, 10, 100 and 110 s are left out. Differences by hand:
#   plateau 90: 1 2 0 1 2 0 1 1        -> sum 8,  sum of squares 12 (n 8)
#   plateau 80: -1 0 dash 0 -1 1 0 0    -> sum -1, sum of squares 3  (n 7, 1 dash)
# overall n = 15: bias = 7/15, Arms = sqrt(15/15) = 1, SD = sqrt((15 - 49/15)/14).
GOLDEN_SET_T = [0.0, 100.0]
GOLDEN_SET_V = [90.0, 80.0]
GOLDEN_READ_T = np.arange(0.0, 200.0, 10.0)
GOLDEN_READ_V = [
    # plateau 90: two settling readings (any values), then the eight differences
    50.0, 50.0, 91, 92, 90, 91, 92, 90, 91, 91,
    # plateau 80: two settling readings, then the eight (one a dash)
    0.0, 0.0, 79, 80, None, 80, 79, 81, 80, 80,
]  # fmt: skip


def test_golden_bias_sd_arms() -> None:
    r = accuracy(GOLDEN_SET_T, GOLDEN_SET_V, GOLDEN_READ_T, GOLDEN_READ_V, settle_s=20.0)
    assert (r.n, r.dashes, r.settling, r.before_first_setting, r.out_of_range) == (15, 1, 4, 0, 0)
    assert r.bias == pytest.approx(7 / 15, abs=1e-12)
    assert r.arms == pytest.approx(1.0, abs=1e-12)
    assert r.sd == pytest.approx(math.sqrt(176 / 210), abs=1e-12)
    first, second = r.plateaus
    assert (first.n, first.settling, first.dashes) == (8, 2, 0)
    assert first.bias == pytest.approx(1.0)
    assert first.arms == pytest.approx(math.sqrt(1.5))
    assert first.worst == 2.0
    assert (second.n, second.dashes, second.end_s) == (7, 1, 190.0)
    assert second.bias == pytest.approx(-1 / 7)
    assert second.worst == -1.0
    assert r.as_dict()["plateaus"][1]["set_value"] == 80.0


def test_arms_identity_on_a_staircase_with_known_bias() -> None:
    # Seed arbitrary: the identity holds for any data, the bias within 4 standard errors.
    rng = np.random.default_rng(11)
    steps = [97.0, 94.0, 90.0, 85.0, 80.0, 75.0, 70.0]
    set_t = np.arange(len(steps)) * 60.0
    read_t = np.arange(0.0, 420.0, 1.0)
    setting = np.repeat(steps, 60)
    readings = setting + 1.5 + rng.normal(0.0, 0.8, read_t.size)
    r = accuracy(set_t, steps, read_t, readings, settle_s=10.0)
    assert r.n == 7 * 50
    assert r.bias == pytest.approx(1.5, abs=4 * 0.8 / math.sqrt(r.n))
    assert r.arms**2 == pytest.approx(r.bias**2 + r.sd**2 * (r.n - 1) / r.n, rel=1e-12)
    d = r.differences
    assert r.sd == pytest.approx(float(np.std(d, ddof=1)), rel=1e-12)


def test_repeated_settings_are_not_changes_and_readings_before_the_first_are_counted() -> None:
    # The set channel logged every 10 s with the same value: one plateau, one settle window.
    set_t = np.arange(0.0, 100.0, 10.0)
    r = accuracy(
        set_t, np.full(set_t.size, 95.0), [-5.0, 2.0, 5.0, 50.0], [1, 2, 3, 96], settle_s=3
    )
    assert len(r.plateaus) == 1
    assert (r.before_first_setting, r.settling, r.n) == (1, 1, 2)
    assert r.bias == pytest.approx((-92 + 1) / 2)


def test_set_range_leaves_out_plateaus_outside() -> None:
    r = accuracy(
        [0, 10, 20], [99, 65, 80], [5, 15, 25], [99, 50, 81], settle_s=0, set_range=(70, 100)
    )
    assert (r.n, r.out_of_range, r.bias) == (2, 1, 0.5)
    assert [p.in_range for p in r.plateaus] == [True, False, True]


def test_nan_dashes_from_an_array() -> None:
    r = accuracy([0.0], [90.0], [1, 2, 3, 4], np.array([np.nan, 91, np.nan, 89]), settle_s=0)
    assert (r.n, r.dashes, r.bias, r.arms) == (2, 2, 0.0, 1.0)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (([0, 1], [90], [0], [90]), "set_t_s has 2 samples but set_values has 1"),
        (([0], [90], [0, 1], [90]), "read_t_s has 2 samples but read_values has 1"),
        (([], [], [0], [90]), "set_t_s is empty"),
        (([0], [90], [], []), "read_t_s is empty"),
        (([0], [90], [0, 0], [1, 2]), "read_t_s is not strictly increasing"),
        (([0], [float("nan")], [0], [90]), "set_values has a non-finite value"),
        (([0], [90], [0], [float("inf")]), "infinity is not"),
        (([0], [90], [[0]], [[90]]), "one-dimensional"),
        (([0], [90], [0], ["x"]), "read_values must be numeric"),
        (([0], [90], [0, 1], [None, None]), "no reading to compare: of 2 readings, 2 are dashes"),
    ],
)
def test_bad_input_names_what_is_wrong(args: tuple[object, ...], message: str) -> None:
    with pytest.raises(AnalysisError, match=message):
        accuracy(*args, settle_s=0.0)  # type: ignore[arg-type]


def test_bad_settle_and_range() -> None:
    with pytest.raises(AnalysisError, match="settle_s must be a finite number >= 0"):
        accuracy([0], [90], [1], [90], settle_s=-1)
    with pytest.raises(AnalysisError, match="set_range"):
        accuracy([0], [90], [1], [90], settle_s=0, set_range=(100, 70))
    with pytest.raises(AnalysisError, match="1 fall within settle_s = 5 s"):
        accuracy([0], [90], [1], [90], settle_s=5)


# ----------------------------------------------------------------------------- response


def _step_readings() -> tuple[np.ndarray, np.ndarray]:
    """80 → 120 at 10 s; the display: 80 until 14 s, 100 at 15 s, touches 120 at 16 s,
    dips to 118 at 17 s, dash at 19 s, 120 from 18 s on."""
    t = np.arange(0.0, 40.0, 1.0)
    v = np.where(t < 15, 80.0, 120.0)
    v[15], v[17], v[19] = 100.0, 118.0, np.nan
    return t, v


def test_band_criterion_with_and_without_hold() -> None:
    t, v = _step_readings()
    (held,) = step_response_times([0, 10], [80, 120], t, v, tolerance=0.5)
    assert held.response_s == 8.0  # 18 s: the dash at 19 s does not break the hold
    assert (held.from_value, held.to_value, held.target) == (80.0, 120.0, 120.0)
    assert "staying there" in held.criterion
    (first,) = step_response_times([0, 10], [80, 120], t, v, tolerance=0.5, hold=False)
    assert first.response_s == 6.0
    (wide,) = step_response_times([0, 10], [80, 120], t, v, tolerance=2.0)
    assert wide.response_s == 6.0  # 118 is within ±2


def test_fraction_criterion() -> None:
    t, v = _step_readings()
    # 90 % of 80 → 120 is 116: first at 16 s (100 at 15 s is 50 %), 118 stays above.
    (step,) = step_response_times([0, 10], [80, 120], t, v, criterion="fraction")
    assert step.response_s == 6.0
    assert "0.9 of the step" in step.criterion
    (half,) = step_response_times([0, 10], [80, 120], t, v, criterion="fraction", fraction=0.5)
    assert half.response_s == 5.0
    # Downward steps: the fraction is of the signed step.
    (down,) = step_response_times([0, 10], [120, 80], t, 200.0 - v, criterion="fraction")
    assert down.response_s == 6.0


def test_never_reached_and_settled_target() -> None:
    t = np.arange(0.0, 60.0, 1.0)
    biased = np.where(t < 23, 82.0, 122.0)  # a monitor reading 2 above, 13 s late
    never = step_response_times([0, 10, 50], [80, 120, 120], t, biased, tolerance=0.5)
    assert len(never) == 1
    assert not never[0].reached
    assert math.isnan(never[0].response_s)
    (settled,) = step_response_times([0, 10], [80, 120], t, biased, target="settled")
    assert (settled.target, settled.response_s, settled.reached) == (122.0, 13.0, True)
    (frac,) = step_response_times(
        [0, 10], [80, 120], t, biased, criterion="fraction", target="settled"
    )
    assert frac.response_s == 13.0
    assert frac.as_dict()["reached"] is True
    assert never[0].as_dict()["response_s"] is None


def test_response_bad_parameters() -> None:
    t, v = _step_readings()
    with pytest.raises(AnalysisError, match="criterion must be"):
        step_response_times([0, 10], [80, 120], t, v, criterion="tau")  # type: ignore[arg-type]
    with pytest.raises(AnalysisError, match="fraction must be within"):
        step_response_times([0, 10], [80, 120], t, v, criterion="fraction", fraction=0)
    with pytest.raises(AnalysisError, match="no reading in the last 10 s"):
        step_response_times([0, 10], [80, 120], [1.0, 2.0], [80, 80], target="settled")


# ----------------------------------------------------------------------------- alarms


def test_alarm_delays_per_condition_against_declared() -> None:
    alarms = [
        AlarmTimes("spo2_low", 100.0, 112.0, t2_s=108.0),
        {"condition": "spo2_low", "t1_s": 300.0, "t2_s": 305.0, "t3_s": 309.0},
        Alarm("hr_high", "medium", "physiological", 50.0, 57.0, 60.0, math.nan, False),
        AlarmTimes("hr_high", math.nan, 200.0),  # false alarm
        AlarmTimes("hr_low", 400.0, math.nan),  # never signalled
        AlarmTimes("spo2_high", 10.0, 11.0),
    ]
    declared = {"spo2_low": 15.0, "hr_high": 10.5, "hr_low": 10.0, "spo2_sensor_off": 10.0}
    delays = {d.condition: d for d in alarm_delays(alarms, declared)}
    assert list(delays) == ["spo2_low", "hr_high", "hr_low", "spo2_sensor_off", "spo2_high"]
    low = delays["spo2_low"]
    assert low.total_s == (12.0, 9.0)
    assert low.worst_s == 12.0
    assert low.condition_delay_s == (8.0, 5.0)
    assert low.generation_delay_s == (4.0, 4.0)
    assert delays["hr_high"].false_alarms == 1
    assert delays["hr_high"].worst_s == 10.0
    assert delays["hr_low"].not_signalled == 1
    assert math.isnan(delays["hr_low"].worst_s)
    assert delays["spo2_sensor_off"].episodes == 0
    assert delays["spo2_high"].declared_s is None

    verdicts = {v.name: v for v in alarm_delay_verdicts(delays.values())}
    assert verdicts["alarm_delay_spo2_low"].outcome is Outcome.PASS  # 12 < 13.5
    assert verdicts["alarm_delay_hr_high"].outcome is Outcome.MARGINAL  # 10 ≥ 10.5 − 1.05
    assert "1 false alarms" in verdicts["alarm_delay_hr_high"].note
    assert verdicts["alarm_delay_hr_low"].outcome is Outcome.FAIL
    assert verdicts["alarm_delay_spo2_sensor_off"].outcome is Outcome.UNSET
    assert verdicts["alarm_delay_spo2_high"].outcome is Outcome.INFO
    late = alarm_delays([AlarmTimes("spo2_low", 0.0, 16.0)], {"spo2_low": 15.0})
    assert alarm_delay_verdicts(late)[0].outcome is Outcome.FAIL


def test_alarm_delay_bad_input() -> None:
    with pytest.raises(AnalysisError, match="alarm 0 has no condition name"):
        alarm_delays([{"t1_s": 0.0, "t3_s": 1.0}], {})
    with pytest.raises(AnalysisError, match="t3_s = 'soon' is not a time"):
        alarm_delays([{"condition": "x", "t1_s": 0.0, "t3_s": "soon"}], {})
    with pytest.raises(AnalysisError, match="declared delay of x"):
        alarm_delays([], {"x": -1.0})


def test_onsets_edges_and_pairing() -> None:
    # SpO2 set 97, 88 (below 90), 85, 95, 80: onsets at 60 and 240 s.
    onsets = condition_onsets([0, 60, 120, 180, 240], [97, 88, 85, 95, 80], below=90)
    assert onsets.tolist() == [60.0, 240.0]
    assert condition_onsets([0, 10], [130, 90], above=120).tolist() == [0.0]
    with pytest.raises(AnalysisError, match="exactly one"):
        condition_onsets([0], [90])
    edges = rising_edges([0, 1, 2, 3, 4, 5], [1, 1, 0, 0, 1, 0])
    assert edges.tolist() == [0.0, 4.0]
    pairs = pair_alarm_times("spo2_low", [60.0, 240.0, 400.0], [5.0, 70.0, 75.0, 250.0])
    # In time order: a false alarm at 5 s, 60 → 70, the unclaimed 75 s (a second false
    # alarm: 70 s already answered the onset at 60 s), 240 → 250, 400 never signalled.
    got = [(p.t1_s, p.t3_s) for p in pairs]
    nan = math.nan
    expected = [(nan, 5.0), (60.0, 70.0), (nan, 75.0), (240.0, 250.0), (400.0, nan)]
    assert np.array_equal(np.array(got), np.array(expected), equal_nan=True)
    assert all(p.condition == "spo2_low" for p in pairs)


# ----------------------------------------------------------------------------- verdicts


def test_accuracy_verdicts_outcomes() -> None:
    r = accuracy(GOLDEN_SET_T, GOLDEN_SET_V, GOLDEN_READ_T, GOLDEN_READ_V, settle_s=20.0)
    # Arms = 1: ≤ 4 PASS; ≤ 1.05 MARGINAL (band 0.105); ≤ 0.9 FAIL. No SD limit: INFO.
    outcomes = {
        limit: accuracy_verdicts(r, prefix="spo2", units="%", arms_limit=limit)[2].outcome
        for limit in (4.0, 1.05, 0.9)
    }
    assert outcomes == {4.0: Outcome.PASS, 1.05: Outcome.MARGINAL, 0.9: Outcome.FAIL}
    bias, sd, arms = accuracy_verdicts(r, prefix="spo2", units="%", bias_limit=0.5)
    assert bias.outcome is Outcome.MARGINAL  # 0.467 ≥ 0.45
    assert (bias.lower, bias.upper) == (-0.5, 0.5)
    assert sd.outcome is Outcome.INFO
    assert arms.outcome is Outcome.INFO
    assert "n = 15, 1 dashes, 4 readings within 20 s" in arms.note
    assert overall_outcome([sd, arms]) is Outcome.UNSET  # INFO judges nothing
    with pytest.raises(AnalysisError, match="arms_limit"):
        accuracy_verdicts(r, prefix="spo2", units="%", arms_limit=0)


def test_single_reading_sd_is_unset() -> None:
    r = accuracy([0.0], [90.0], [1.0], [91.0], settle_s=0)
    assert math.isnan(r.sd)
    _, sd, _ = accuracy_verdicts(r, prefix="spo2", units="%", sd_limit=2)
    assert sd.outcome is Outcome.UNSET
    assert sd.note == "fewer than two readings"


def test_hr_reading_tolerance_per_setting() -> None:
    # Limits: 40 bpm → ±5 (5 > 4), 120 bpm → ±12. Worst errors: −5 at 40 (on the limit,
    # inside: MARGINAL), +13 at 120 (FAIL), 80 appears twice and only dashes → UNSET.
    set_t, set_v = [0, 10, 20, 30], [40, 120, 80, 80]
    read_t = [1, 2, 11, 12, 21, 31]
    read_v = [39, 35, 133, 121, None, None]
    r = accuracy(set_t, set_v, read_t, read_v, settle_s=0)
    verdicts = accuracy_verdicts(
        r,
        prefix="hr",
        units="bpm",
        reading_tolerance=(HR_TOLERANCE_BPM, HR_TOLERANCE_PERCENT),
    )
    by_name = {v.name: v for v in verdicts}
    at40, at120, at80 = (
        by_name["hr_error_at_40"],
        by_name["hr_error_at_120"],
        by_name["hr_error_at_80"],
    )
    assert (at40.value, at40.upper, at40.outcome) == (-5.0, 5.0, Outcome.MARGINAL)
    assert (at120.value, at120.upper, at120.outcome) == (13.0, 12.0, Outcome.FAIL)
    assert at80.outcome is Outcome.UNSET
    assert "2 dashes" in at80.note


def test_response_verdicts() -> None:
    t, v = _step_readings()
    again = v.copy()
    again[:10] = 120.0  # the display stays at 120 through the whole 80-bpm plateau at 40 s
    steps = step_response_times(
        [0, 10, 40, 50], [80, 120, 80, 120], np.r_[t, t + 40], np.r_[v, again]
    )
    names = [x.name for x in response_verdicts(steps, prefix="hr", units="bpm")]
    assert names == ["hr_response_80_to_120", "hr_response_120_to_80", "hr_response_80_to_120_2"]
    verdicts = response_verdicts(steps, prefix="hr", units="bpm", max_response_s=8.5)
    assert [x.outcome for x in verdicts] == [Outcome.MARGINAL, Outcome.FAIL, Outcome.MARGINAL]
    assert "never met" in verdicts[1].note
    info = response_verdicts(steps, prefix="hr", units="bpm")
    assert [x.outcome for x in info] == [Outcome.INFO, Outcome.UNSET, Outcome.INFO]


def test_side_by_side() -> None:
    real = accuracy([0.0], [90.0], [1.0, 2.0], [92.0, 92.0], settle_s=0)
    twin = accuracy([0.0], [90.0], [1.0, 2.0], [91.0, 90.0], settle_s=0)
    verdicts = accuracy_verdicts(real, prefix="spo2", units="%", arms_limit=SPO2_ARMS_PERCENT)
    verdicts += accuracy_verdicts(
        twin, prefix="spo2", units="%", arms_limit=SPO2_ARMS_PERCENT, source="twin"
    )
    verdicts += response_verdicts(
        step_response_times([0, 1], [90, 95], [0.5, 1.5], [90, 95]), prefix="spo2", units="%"
    )
    rows = side_by_side(verdicts)
    assert [row.name for row in rows] == [
        "spo2_bias",
        "spo2_sd",
        "spo2_arms",
        "spo2_response_90_to_95",
    ]
    bias = rows[0]
    assert (bias.real, bias.twin, bias.difference) == (2.0, 0.5, -1.5)
    assert rows[2].real_outcome is Outcome.PASS
    assert rows[2].as_dict()["twin_outcome"] == "PASS"
    assert rows[3].twin is None
    assert rows[3].as_dict()["difference"] is None
    with pytest.raises(AnalysisError, match="two real verdicts"):
        side_by_side(verdicts[:1] * 2)


# ----------------------------------------------------------------------------- end to end

STAIRCASE = [  # (time s, SpO2 %, HR bpm) set on the simulator
    (0.0, 97.0, 80.0),
    (120.0, 92.0, 120.0),
    (240.0, 86.0, 80.0),
    (360.0, 80.0, 40.0),
    (480.0, 75.0, 80.0),
    (600.0, 88.0, 120.0),
    (720.0, 95.0, 60.0),
]


def _simulator_patient() -> PatientRecord:
    """A patient that shows exactly the set SpO2 and HR, as a patient simulator does (no
    physiological variability of the two), stepping along :data:`STAIRCASE`."""
    params = PatientParams.for_patient(Demographics())
    variability = dataclasses.replace(
        params.variability,
        spo2=WalkParams(0.0, 30.0, 0.0, 100.0),
        hr=WalkParams(0.0, 120.0, 20.0, 250.0),
    )
    baseline = dataclasses.replace(params.baseline, spo2_percent=97.0, hr_bpm=80.0)
    events = events_from_mappings(
        [{"kind": "step", "vital": "spo2_percent", "at_s": t, "to": s} for t, s, _ in STAIRCASE[1:]]
        + [{"kind": "step", "vital": "hr_bpm", "at_s": t, "to": h} for t, _, h in STAIRCASE[1:]]
    )
    # Seed arbitrary: only the R-R jitter and the perfusion index draw from it.
    return simulate_patient(
        np.arange(0.0, 840.0, 1.0),
        rng=np.random.default_rng(3),
        params=dataclasses.replace(params, variability=variability, baseline=baseline),
        events=events,
    )


def test_end_to_end_biased_oximeter_against_the_twin() -> None:
    record = _simulator_patient()
    monitor_input = MonitorInput.from_record(record)
    real = simulate_monitor(monitor_input, monitor_preset("masimo", {"spo2.bias_percent": 2.0}))
    twin = simulate_monitor(monitor_input, monitor_preset("masimo"))
    set_t = [s[0] for s in STAIRCASE]
    spo2_set = [s[1] for s in STAIRCASE]
    hr_set = [s[2] for s in STAIRCASE]
    verdicts = []
    sides: tuple[tuple[Source, MonitorOutput], ...] = (("real", real), ("twin", twin))
    for source, out in sides:
        spo2 = accuracy(
            set_t, spo2_set, out.t_s, out.spo2_percent, settle_s=30.0, set_range=SPO2_RANGE_PERCENT
        )
        expected_bias = 2.0 if source == "real" else 0.0
        assert spo2.bias == pytest.approx(expected_bias, abs=0.2)
        assert spo2.n > 500
        verdicts += accuracy_verdicts(
            spo2, prefix="spo2", units="%", arms_limit=SPO2_ARMS_PERCENT, source=source
        )
        hr = accuracy(set_t, hr_set, out.t_s, out.hr_bpm, settle_s=30.0)
        assert abs(hr.bias) < 0.2
        verdicts += accuracy_verdicts(
            hr,
            prefix="hr",
            units="bpm",
            reading_tolerance=(HR_TOLERANCE_BPM, HR_TOLERANCE_PERCENT),
            source=source,
        )
        steps = step_response_times(
            set_t, spo2_set, out.t_s, out.spo2_percent, tolerance=0.5, target="settled"
        )
        # Masimo preset: 8 s averaging; the window ramps the step over the averaging time.
        assert all(5.0 <= s.response_s <= 12.0 for s in steps)
        verdicts += response_verdicts(steps, prefix="spo2", units="%", source=source)
        delays = alarm_delays(out.alarms, {"spo2_low": 15.0})
        assert delays[0].episodes >= 1
        assert delays[0].worst_s < 15.0
        verdicts += alarm_delay_verdicts(delays[:1], source=source)
    rows = {row.name: row for row in side_by_side(verdicts)}
    assert rows["spo2_bias"].difference == pytest.approx(-2.0, abs=0.2)
    assert rows["spo2_arms"].real_outcome is Outcome.PASS
    assert all(row.real is not None and row.twin is not None for row in rows.values())
    assert overall_outcome(verdicts) in (Outcome.PASS, Outcome.MARGINAL)


def test_end_to_end_alarm_times_from_the_settings() -> None:
    # The bench's view: t1 from the simulator's setting crossing the limit, t3 from the
    # monitor's alarm signal. Equal to the twin's own t1/t3 for a step patient.
    record = _simulator_patient()
    out = simulate_monitor(MonitorInput.from_record(record), monitor_preset("masimo"))
    onsets = condition_onsets([s[0] for s in STAIRCASE], [s[1] for s in STAIRCASE], below=90.0)
    signals = [a.t3_s for a in out.alarms if a.condition == "spo2_low"]
    pairs = pair_alarm_times("spo2_low", onsets, signals)
    (delay,) = alarm_delays(pairs, {"spo2_low": 20.0})
    twin_delays = [a.t3_s - a.t1_s for a in out.alarms if a.condition == "spo2_low"]
    assert delay.worst_s == pytest.approx(max(twin_delays))
    assert delay.false_alarms == 0


def test_end_to_end_probe_off_gives_counted_dashes() -> None:
    # A probe off for 60 s in the middle of the 92 % plateau: the monitor freezes, then
    # shows dashes; every dash after the settling time is counted, none is compared.
    record = _simulator_patient()
    off = (record.t_s >= 150.0) & (record.t_s < 210.0)
    record = dataclasses.replace(record, sensor_off=off)
    out = simulate_monitor(MonitorInput.from_record(record), monitor_preset("masimo"))
    set_t = [s[0] for s in STAIRCASE]
    spo2_set = [s[1] for s in STAIRCASE]
    r = accuracy(set_t, spo2_set, out.t_s, out.spo2_percent, settle_s=30.0)
    shown_nan = np.isnan(out.spo2_percent)
    assert shown_nan.sum() > 30
    plateau = r.plateaus[1]
    in_plateau = (out.t_s >= 150.0) & (out.t_s < 240.0)  # 120 s + 30 s settle, to 240 s
    assert plateau.dashes == int((shown_nan & in_plateau).sum()) == r.dashes
    assert r.n + r.dashes + r.settling == out.t_s.size
    assert r.bias == pytest.approx(0.0, abs=0.2)
