"""Declared measurements, outcomes, verdict records and the IEC 60601-2-24 helpers."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
from medtwin.drivers.errors import ConfigurationError
from medtwin.hil.analysis.iec60601_2_24 import (
    WINDOWS_WITH_1MIN,
    OcclusionResult,
    bolus_accuracy,
    last_hour_period_min,
    mean_flow_error,
    trumpet_curve,
)
from medtwin.hil.commands._render import verdict_table
from medtwin.hil.measurements import (
    Measurement,
    Outcome,
    Verdict,
    bolus_measurements,
    evaluate_bolus,
    evaluate_mean_error,
    evaluate_occlusion,
    evaluate_trumpet,
    flow_accuracy_measurements,
    occlusion_measurements,
    overall_outcome,
    verdicts_as_dicts,
)
from rich.console import Console


def constant_flow_log(flow_ml_h: float, minutes: float = 120.0) -> tuple[np.ndarray, np.ndarray]:
    n = round(minutes / 0.5)
    t_s = np.arange(n + 1) * 30.0
    return t_s, flow_ml_h * 0.998 * t_s / 3600.0


def render(table: object) -> str:
    buffer = io.StringIO()
    Console(file=buffer, width=200, color_system=None).print(table)
    return buffer.getvalue()


# --------------------------------------------------------------------------- outcomes


@pytest.mark.parametrize(
    ("value", "outcome"),
    [
        (-2.5, Outcome.FAIL),
        (-2.0, Outcome.MARGINAL),  # on the limit: inside (inclusive), in the marginal band
        (-1.9, Outcome.MARGINAL),
        (-1.8, Outcome.MARGINAL),  # on the marginal limit counts as marginal
        (-1.79, Outcome.PASS),
        (0.0, Outcome.PASS),
        (1.79, Outcome.PASS),
        (2.0, Outcome.MARGINAL),
        (2.0001, Outcome.FAIL),
        (math.nan, Outcome.FAIL),
        (math.inf, Outcome.FAIL),
        (None, Outcome.UNSET),
    ],
)
def test_outcome_against_limits_and_marginal_limits(value: float | None, outcome: Outcome) -> None:
    measurement = Measurement("a", "%").in_range(-2, 2).with_marginal(-1.8, 1.8)
    assert measurement.outcome(value) is outcome
    assert measurement.measure(value).outcome is outcome


def test_one_sided_limits_and_no_limits() -> None:
    at_most = Measurement("t", "s").in_range(upper=600).with_marginal(upper=540)
    assert at_most.outcome(-1e9) is Outcome.PASS
    assert at_most.outcome(539.9) is Outcome.PASS
    assert at_most.outcome(540) is Outcome.MARGINAL
    assert at_most.outcome(600.1) is Outcome.FAIL
    informational = Measurement("ep_max_1min", "%")
    assert informational.outcome(123.4) is Outcome.INFO  # disclosed, not judged
    assert informational.outcome(None) is Outcome.UNSET


def test_declarations_are_immutable_and_fluent() -> None:
    bare = Measurement("a", "%", "mean error")
    ranged = bare.in_range(-5, 5)
    marginal = ranged.with_marginal(-4, 4)
    assert (bare.lower, bare.upper) == (None, None)
    assert (ranged.lower, ranged.upper, ranged.marginal_lower) == (-5.0, 5.0, None)
    assert (marginal.marginal_lower, marginal.marginal_upper) == (-4.0, 4.0)
    assert marginal.description == "mean error"
    with pytest.raises(AttributeError):
        marginal.lower = 0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("limits", "fraction", "marginal"),
    [
        ((-2.0, 2.0), 0.1, (-1.8, 1.8)),  # ±2 % claim, outer tenth is marginal
        ((0.0, 10.0), 0.2, (1.0, 9.0)),  # band = 0.2·(10 − 0)/2
        ((None, 600.0), 0.1, (None, 540.0)),  # one-sided: band = 0.1·|600|
        ((-10.0, None), 0.1, (-9.0, None)),
        ((-2.0, 2.0), 0.0, (None, None)),
    ],
)
def test_marginal_fraction(
    limits: tuple[float | None, float | None],
    fraction: float,
    marginal: tuple[float | None, float | None],
) -> None:
    m = Measurement("x", "%").in_range(*limits).with_marginal_fraction(fraction)
    assert m.marginal_lower == pytest.approx(marginal[0])
    assert m.marginal_upper == pytest.approx(marginal[1])


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Measurement("", "%"), "needs a name"),
        (lambda: Measurement("a", "%").in_range(3, 1), "lower limit 3 is above the upper limit 1"),
        (
            lambda: Measurement("a", "%").in_range(-2, 2).with_marginal(-3, 1),
            r"marginal lower limit -3 lies outside the limits \[-2, 2\]",
        ),
        (
            lambda: Measurement("a", "%").in_range(-2, 2).with_marginal(1, -1),
            "marginal lower limit 1 is above the marginal upper limit -1",
        ),
        (lambda: Measurement("a", "%").in_range(math.nan, 1), "got NaN"),
        (lambda: Measurement("a", "%").in_range("x", 1), "must be a number"),  # type: ignore[arg-type]
        (lambda: Measurement("a", "%").with_marginal_fraction(0.1), "no limits"),
        (lambda: Measurement("a", "%").in_range(0, 1).with_marginal_fraction(1.5), "within 0–1"),
        (lambda: Measurement("a", "%").measure(1.0, source="sim"), "'real' or 'twin'"),  # type: ignore[arg-type]
    ],
)
def test_invalid_declarations_are_configuration_errors(build: object, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        build()  # type: ignore[operator]


# --------------------------------------------------------------------------- verdicts


def test_verdict_records_everything_and_is_json_able() -> None:
    measurement = (
        Measurement("mean_flow_error_a", "%", "A").in_range(-2, 2).with_marginal_fraction(0.1)
    )
    verdict = measurement.measure(1.9, source="twin", note="resampled")
    assert verdict == Verdict(
        name="mean_flow_error_a",
        value=1.9,
        units="%",
        outcome=Outcome.MARGINAL,
        source="twin",
        lower=-2.0,
        upper=2.0,
        marginal_lower=pytest.approx(-1.8),  # type: ignore[arg-type]
        marginal_upper=pytest.approx(1.8),  # type: ignore[arg-type]
        description="A",
        note="resampled",
    )
    document = json.loads(json.dumps(verdicts_as_dicts([verdict])))
    assert document[0]["outcome"] == "MARGINAL"
    assert document[0]["source"] == "twin"
    assert document[0]["value"] == 1.9
    assert set(document[0]) == {
        "name",
        "value",
        "units",
        "outcome",
        "source",
        "lower",
        "upper",
        "marginal_lower",
        "marginal_upper",
        "description",
        "note",
        "limits_source",
    }


def test_infinite_value_is_json_null_but_still_fails() -> None:
    verdict = Measurement("t", "s").in_range(upper=10).measure(math.inf)
    assert verdict.outcome is Outcome.FAIL
    assert json.loads(json.dumps(verdict.as_dict()))["value"] is None


@pytest.mark.parametrize(
    ("outcomes", "overall"),
    [
        ([Outcome.PASS, Outcome.PASS], Outcome.PASS),
        ([Outcome.PASS, Outcome.MARGINAL], Outcome.MARGINAL),
        ([Outcome.MARGINAL, Outcome.UNSET], Outcome.UNSET),
        ([Outcome.UNSET, Outcome.FAIL, Outcome.PASS], Outcome.FAIL),
        ([], Outcome.UNSET),
    ],
)
def test_overall_outcome(outcomes: list[Outcome], overall: Outcome) -> None:
    verdicts = [Verdict("x", 1.0, "%", outcome, "real") for outcome in outcomes]
    assert overall_outcome(verdicts) is overall


def test_verdict_table_shows_values_limits_and_outcomes() -> None:
    measurement = Measurement("ep_max_2min", "%").in_range(-5, 5).with_marginal(-4, 4)
    verdicts = [
        measurement.measure(4.5, source="real"),
        measurement.measure(1.25, source="twin"),
        Measurement("info", "mL").measure(None),
    ]
    text = render(verdict_table(verdicts, title="IEC"))
    lines = [line for line in text.splitlines() if "ep_max_2min" in line]
    assert len(lines) == 2
    assert "4.5" in lines[0]
    assert "MARGINAL" in lines[0]
    assert "−5 … 5 %" in lines[0]
    assert "−4 … 4 %" in lines[0]
    assert "1.25" in lines[1]
    assert "twin" in lines[1]
    assert "PASS" in lines[1]
    info = next(line for line in text.splitlines() if "info" in line)
    assert "UNSET" in info


def test_a_value_without_limits_is_shown_as_info_not_as_a_pass() -> None:
    disclosed = Measurement("ep_min_1min", "%").measure(-3.7, source="real")
    judged = Measurement("mean_flow_error_a", "%").in_range(-2, 2).measure(1.0, source="real")
    assert disclosed.outcome is Outcome.INFO  # stored outcome: disclosed, not judged
    assert disclosed.informational
    assert disclosed.outcome_label() == "info"
    assert not judged.informational
    assert judged.outcome_label() == "PASS"
    assert Measurement("x", "%").measure(None).outcome_label() == "UNSET"
    line = next(
        line
        for line in render(verdict_table([disclosed, judged])).splitlines()
        if "ep_min_1min" in line
    )
    assert "info" in line
    assert "PASS" not in line


def test_one_outcome_vocabulary_for_measurements_the_store_and_the_labels() -> None:
    from medtwin.hil import outcomes, store

    assert Outcome is outcomes.Outcome is store.Outcome
    # The stored words and the JSON values are the members' values, unchanged.
    assert [o.value for o in outcomes.SEVERITY] == ["FAIL", "UNSET", "MARGINAL", "PASS", "INFO"]
    assert json.dumps(Measurement("x", "%").in_range(-1, 1).measure(0.0).as_dict()["outcome"]) == (
        '"PASS"'
    )
    assert outcomes.overall_outcome(["PASS", "MARGINAL"]) is Outcome.MARGINAL
    assert outcomes.overall_outcome([]) is None
    assert outcomes.outcome_label(Outcome.INFO, -1.0, 1.0) == "info"
    assert outcomes.outcome_label("PASS", None, None) == "info"
    assert outcomes.outcome_label("FAIL", None, None) == "FAIL"


def test_the_data_model_does_not_import_a_console_library() -> None:
    import ast
    from pathlib import Path

    import medtwin.hil.measurements as measurements

    tree = ast.parse(Path(measurements.__file__).read_text(encoding="utf-8"))
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        (node.module or "").split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
    }
    assert "rich" not in imported


# --------------------------------------------------------------------------- IEC helpers


def test_flow_accuracy_measurements_for_a_syringe_claim() -> None:
    declared = flow_accuracy_measurements(
        accuracy_percent=2, window_limits_percent={2: 5}, windows_min=WINDOWS_WITH_1MIN
    )
    names = [m.name for m in declared]
    assert names == [
        "mean_flow_error_a",
        "ep_max_1min",
        "ep_min_1min",
        "ep_max_2min",
        "ep_min_2min",
        "ep_max_5min",
        "ep_min_5min",
        "ep_max_11min",
        "ep_min_11min",
        "ep_max_19min",
        "ep_min_19min",
        "ep_max_31min",
        "ep_min_31min",
    ]
    a = declared[0]
    assert (a.lower, a.upper) == (-2.0, 2.0)
    assert a.marginal_upper == pytest.approx(1.8)
    by_name = {m.name: m for m in declared}
    assert (by_name["ep_max_2min"].lower, by_name["ep_max_2min"].upper) == (-5.0, 5.0)
    assert (by_name["ep_max_5min"].lower, by_name["ep_max_5min"].upper) == (None, None)
    with_b = flow_accuracy_measurements(accuracy_percent=5, include_b=True)
    assert with_b[1].name == "mean_flow_error_b"
    assert with_b[1].upper == 5.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"accuracy_percent": 0}, "accuracy_percent must be a finite number > 0"),
        ({"accuracy_percent": 2, "window_limits_percent": {3: 5}}, "P = 3 min"),
        ({"accuracy_percent": 2, "window_limits_percent": {2: (6, 1)}}, "above the upper"),
    ],
)
def test_flow_accuracy_declaration_errors(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        flow_accuracy_measurements(**kwargs)  # type: ignore[arg-type]


def test_trumpet_verdicts_from_a_real_analysis() -> None:
    # Constant 5.19 mL/h at r = 5: A = every Ep = +3.8 %. Against ±5 % that passes (the
    # default marginal band is the outer tenth, |e| ≥ 4.5 %); against ±2 % A fails.
    t_s, mass = constant_flow_log(5.19)
    curve = trumpet_curve(t_s, mass, rate_ml_h=5.0, density_g_ml=0.998)
    volumetric = evaluate_trumpet(curve, flow_accuracy_measurements(accuracy_percent=5))
    # A is judged; the Ep of the five default windows have no limits: INFO.
    assert [v.outcome for v in volumetric] == [Outcome.PASS] + [Outcome.INFO] * 10
    assert volumetric[0].value == pytest.approx(3.8)
    syringe = evaluate_trumpet(
        curve,
        flow_accuracy_measurements(accuracy_percent=2, window_limits_percent={31: 4}),
        source="twin",
    )
    assert syringe[0].outcome is Outcome.FAIL
    assert {v.source for v in syringe} == {"twin"}
    by_name = {v.name: v for v in syringe}
    # ±4 % for 31 min: 3.8 is inside but in the outer tenth (≥ 3.6) → MARGINAL.
    assert by_name["ep_max_31min"].outcome is Outcome.MARGINAL
    assert by_name["ep_max_11min"].outcome is Outcome.INFO  # informational


def test_trumpet_declarations_must_match_the_curve() -> None:
    t_s, mass = constant_flow_log(5.0)
    curve = trumpet_curve(t_s, mass, rate_ml_h=5.0, windows_min=(2.0, 5.0), density_g_ml=0.998)
    with pytest.raises(ConfigurationError, match="ep_max_1min, ep_min_1min, ep_max_11min"):
        evaluate_trumpet(
            curve, flow_accuracy_measurements(accuracy_percent=2, windows_min=WINDOWS_WITH_1MIN)
        )
    with pytest.raises(ConfigurationError, match="no measurement named 'ep_max_5min'"):
        evaluate_trumpet(curve, flow_accuracy_measurements(accuracy_percent=2, windows_min=(2.0,)))


def test_mean_error_b_verdict() -> None:
    t_s, mass = constant_flow_log(24.0, minutes=240)
    result = mean_flow_error(
        t_s, mass, rate_ml_h=25.0, analysis_period_min=last_hour_period_min(t_s), density_g_ml=0.998
    )
    b = flow_accuracy_measurements(accuracy_percent=5, include_b=True)[1]
    verdict = evaluate_mean_error(result, b)
    assert verdict.name == "mean_flow_error_b"
    assert verdict.value == pytest.approx(-4.0)
    assert verdict.outcome is Outcome.PASS


def _occlusion(time_to_alarm_s: float | None, bolus_ml: float = 0.2) -> OcclusionResult:
    return OcclusionResult(
        occlusion_s=100.0,
        release_s=2000.0,
        baseline_pressure_mmhg=40.0,
        alarm_s=None if time_to_alarm_s is None else 100.0 + time_to_alarm_s,
        time_to_alarm_s=time_to_alarm_s,
        pressure_at_alarm_mmhg=None if time_to_alarm_s is None else 400.0,
        peak_pressure_mmhg=400.0,
        bolus_end_s=2030.0,
        bolus_mass_g=bolus_ml * 0.998,
        bolus_volume_ml=bolus_ml,
    )


def test_occlusion_verdicts() -> None:
    declared = occlusion_measurements(
        max_time_to_alarm_s=600, max_pressure_at_alarm_mmhg=517, max_bolus_ml=0.5
    )
    assert [m.name for m in declared] == [
        "occlusion_time_to_alarm",
        "occlusion_pressure_at_alarm",
        "occlusion_bolus_volume",
    ]
    fast = evaluate_occlusion(_occlusion(120.0), declared)
    assert [v.outcome for v in fast] == [Outcome.PASS, Outcome.PASS, Outcome.PASS]
    # 0.1·600 = 60-s marginal band below the maximum: 560 s is marginal, 601 s fails.
    assert evaluate_occlusion(_occlusion(560.0), declared)[0].outcome is Outcome.MARGINAL
    assert evaluate_occlusion(_occlusion(601.0), declared)[0].outcome is Outcome.FAIL
    assert evaluate_occlusion(_occlusion(120.0, 0.6), declared, source="twin")[2].outcome is (
        Outcome.FAIL
    )


def test_no_occlusion_alarm_is_a_failure_not_a_missing_value() -> None:
    declared = occlusion_measurements(max_time_to_alarm_s=600)
    time_v, pressure_v, bolus_v = evaluate_occlusion(_occlusion(None), declared)
    assert time_v.outcome is Outcome.FAIL
    assert time_v.value is None
    assert "no occlusion alarm between the occlusion at 100 s and the release at 2000 s" in (
        time_v.note
    )
    assert pressure_v.outcome is Outcome.UNSET
    assert bolus_v.outcome is Outcome.INFO  # informational: no maximum declared
    with pytest.raises(ConfigurationError, match="max_time_to_alarm_s must be > 0"):
        occlusion_measurements(max_time_to_alarm_s=0)


def test_bolus_verdicts() -> None:
    # Deviations 0, +1.002, −1.202, +0.401 % (see test_iec60601_2_24): against ±1 % the
    # mean (+0.05 %) passes and the worst (−1.202 %) fails.
    result = bolus_accuracy(0.5, [0.499, 0.504, 0.493, 0.501], density_g_ml=0.998)
    mean_v, worst_v = evaluate_bolus(result, bolus_measurements(accuracy_percent=1))
    assert mean_v.outcome is Outcome.PASS
    assert worst_v.outcome is Outcome.FAIL
    assert worst_v.value == pytest.approx(-0.6 / 0.499)
    assert worst_v.note == "bolus 3 of 4"
