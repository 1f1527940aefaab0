"""IEEE 11073-10101 table: the partition rule, the published codes, lookups.

The codes checked one by one below are the ones listed by HL7 publications: the DK Core
value set *IEEE Basic Observation* (heart rate, SpO2, NIBP, respiration rates) and the
HL7 Personal Health Device IG (pulse rate 149530, unit term 2720 → 264864 bpm, 266016
mmHg); the others are checked only against the partition rule and flagged unverified.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from medtwin.drivers.errors import ConfigurationError
from medtwin.drivers.nomenclature import (
    METRICS,
    UNITS,
    Metric,
    Partition,
    Unit,
    code32,
    metric,
    metric_by_code,
    split_code,
    unit,
    unit_by_code,
)
from medtwin.drivers.prosim8 import COMMANDS

PUBLISHED_METRICS = {
    "MDC_ECG_HEART_RATE": 147842,
    "MDC_PULS_OXIM_PULS_RATE": 149530,
    "MDC_PULS_OXIM_SAT_O2": 150456,
    "MDC_PRESS_BLD_NONINV": 150020,
    "MDC_PRESS_BLD_NONINV_SYS": 150021,
    "MDC_PRESS_BLD_NONINV_DIA": 150022,
    "MDC_PRESS_BLD_NONINV_MEAN": 150023,
    "MDC_RESP_RATE": 151562,
    "MDC_AWAY_RESP_RATE": 151570,
    "MDC_TTHOR_RESP_RATE": 151578,
    "MDC_CO2_RESP_RATE": 151594,
}
PUBLISHED_UNITS = {"MDC_DIM_BEAT_PER_MIN": 264864, "MDC_DIM_MMHG": 266016}


@pytest.mark.parametrize(("ref_id", "code"), sorted(PUBLISHED_METRICS.items()))
def test_published_metric_codes(ref_id: str, code: int) -> None:
    entry = metric(ref_id)
    assert entry.code == code
    assert entry.verified
    assert metric_by_code(code) is entry


@pytest.mark.parametrize(("ref_id", "code"), sorted(PUBLISHED_UNITS.items()))
def test_published_unit_codes(ref_id: str, code: int) -> None:
    entry = unit(ref_id)
    assert entry.code == code
    assert entry.verified
    assert unit_by_code(code) is entry


def test_table_holds_every_metric_the_bench_needs() -> None:
    wanted = {
        "MDC_ECG_HEART_RATE": "MDC_DIM_BEAT_PER_MIN",
        "MDC_PULS_OXIM_PULS_RATE": "MDC_DIM_BEAT_PER_MIN",
        "MDC_PULS_OXIM_SAT_O2": "MDC_DIM_PERCENT",
        "MDC_PRESS_BLD_NONINV_SYS": "MDC_DIM_MMHG",
        "MDC_PRESS_BLD_NONINV_DIA": "MDC_DIM_MMHG",
        "MDC_PRESS_BLD_NONINV_MEAN": "MDC_DIM_MMHG",
        "MDC_RESP_RATE": "MDC_DIM_RESP_PER_MIN",
        "MDC_TTHOR_RESP_RATE": "MDC_DIM_RESP_PER_MIN",
        "MDC_CO2_RESP_RATE": "MDC_DIM_RESP_PER_MIN",
        "MDC_TEMP_BODY": "MDC_DIM_DEGC",
        "MDC_FLOW_FLUID_PUMP": "MDC_DIM_MILLI_L_PER_HR",
        "MDC_VOL_FLUID_DELIV_TOTAL": "MDC_DIM_MILLI_L",
    }
    assert {ref: METRICS[ref].unit_id for ref in wanted} == wanted


def test_unverified_entries_are_flagged() -> None:
    unverified = {m.ref_id for m in METRICS.values() if not m.verified}
    assert unverified == {
        "MDC_TEMP",
        "MDC_TEMP_BODY",
        "MDC_FLOW_FLUID_PUMP",
        "MDC_VOL_FLUID_DELIV_TOTAL",
    }
    entries: list[Metric | Unit] = [*METRICS.values(), *UNITS.values()]
    for entry in entries:
        assert entry.source
        if not entry.verified:
            assert "DK Core" not in entry.source
            assert "Personal Health Device" not in entry.source


@pytest.mark.parametrize("entry", list(METRICS.values()), ids=lambda m: m.ref_id)
def test_metrics_obey_the_partition_rule(entry: Metric) -> None:
    partition, term = split_code(entry.code)
    assert partition == Partition.SCADA
    assert entry.code == 2 * 65536 + term == code32(Partition.SCADA, entry.term)
    assert entry.ref_id.startswith("MDC_")
    assert entry.unit_id in UNITS


@pytest.mark.parametrize("entry", list(UNITS.values()), ids=lambda u: u.ref_id)
def test_units_obey_the_partition_rule(entry: Unit) -> None:
    partition, term = split_code(entry.code)
    assert partition == Partition.DIM
    assert entry.code == code32(Partition.DIM, entry.term) == 4 * 65536 + term
    assert entry.ref_id.startswith("MDC_DIM_")


def test_known_term_codes() -> None:
    # IEEE 11073 term codes as printed in the HL7 PHD IG (unit 2720) and as the
    # partition rule gives them for the DK Core codes.
    assert metric("MDC_ECG_HEART_RATE").term == 16770
    assert metric("MDC_PULS_OXIM_SAT_O2").term == 19384
    assert unit("MDC_DIM_BEAT_PER_MIN").term == 2720
    assert unit("MDC_DIM_MMHG").term == 3872
    assert code32(Partition.SCADA, 18949) == metric("MDC_PRESS_BLD_NONINV_SYS").code


def test_codes_and_ids_are_unique() -> None:
    assert len({m.code for m in METRICS.values()}) == len(METRICS)
    assert len({u.code for u in UNITS.values()}) == len(UNITS)
    assert not set(METRICS) & set(UNITS)


def test_unknown_lookups_raise_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="unknown MDC metric 'MDC_NOPE'"):
        metric("MDC_NOPE")
    with pytest.raises(ConfigurationError, match=r"2::1"):
        metric_by_code(131073)
    with pytest.raises(ConfigurationError, match="unknown MDC unit 'MDC_DIM_FOO'"):
        unit("MDC_DIM_FOO")
    with pytest.raises(ConfigurationError, match=r"4::1"):
        unit_by_code(262145)
    # A metric code is not a unit code and vice versa.
    with pytest.raises(ConfigurationError):
        unit_by_code(147842)
    with pytest.raises(ConfigurationError):
        metric_by_code(266016)


@pytest.mark.parametrize(("partition", "term"), [(-1, 0), (0, -1), (65536, 0), (0, 65536)])
def test_code32_refuses_out_of_range(partition: int, term: int) -> None:
    with pytest.raises(ValueError, match="16 bits"):
        code32(partition, term)


@pytest.mark.parametrize("code", [-1, 1 << 32])
def test_split_code_refuses_out_of_range(code: int) -> None:
    with pytest.raises(ValueError, match="32-bit"):
        split_code(code)


@given(st.integers(0, 65535), st.integers(0, 65535))
def test_code32_split_round_trip(partition: int, term: int) -> None:
    assert split_code(code32(partition, term)) == (partition, term)


@given(st.integers(0, (1 << 32) - 1))
def test_split_code32_round_trip(code: int) -> None:
    assert code32(*split_code(code)) == code


def test_prosim8_arguments_name_metrics_with_matching_units() -> None:
    """Each ProSim 8 argument that sets a monitor metric names one of the table, in the
    metric's unit, so a run can store what the simulator set beside what a monitor read."""
    tagged = [
        (name, param)
        for name, spec in COMMANDS.items()
        for param in spec.params
        if param.metric is not None
    ]
    assert {(name, param.name) for name, param in tagged} == {
        ("NSRA", "rate_bpm"),
        ("SAT", "spo2_pct"),
        ("RESPRATE", "rate_brpm"),
        ("NIBPP", "systolic_mmhg"),
        ("NIBPP", "diastolic_mmhg"),
    }
    for _, param in tagged:
        assert param.metric is not None
        assert metric(param.metric).unit.symbol == param.unit
