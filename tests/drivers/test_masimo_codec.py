"""Masimo ASCII 1 codec: published captures as golden bytes, round trips, resync, fuzzing.

Golden lines are real device output published by others: five consecutive Rad-8 lines
(``cat /dev/ttyUSB0`` in the yahnatan/pulseox README), a Rad-8 line quoted with its CR LF
in an open RAD-8 websocket bridge, the example line of an open Elixir/Nerves RAD8 reader,
and the Radical-7 service-manual line quoted in remkolems/masimo-datacapture.
"""

from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from medtwin.drivers.errors import ProtocolError
from medtwin.drivers.masimo import (
    LINE_END,
    MAX_LINE_LENGTH,
    MasimoAlarm,
    MasimoException,
    MasimoLineDecoder,
    MasimoReading,
    detect_variant,
    encode_line,
    parse_line,
)

_TAIL = b" SPCO=--.-% SPMET=--.-% DESAT=-- PIDELTA=+-- ALARM=0000 EXC=000800\r\n"
# yahnatan/pulseox README: (line, spo2, bpm, pi) as published.
RAD8_CAPTURE = [
    (b"02/22/16 22:47:45 SN=0000056661 SPO2=098% BPM=097 PI=03.60%" + _TAIL, 45, 98, 97, 3.60),
    (b"02/22/16 22:47:46 SN=0000056661 SPO2=098% BPM=096 PI=03.95%" + _TAIL, 46, 98, 96, 3.95),
    (b"02/22/16 22:47:47 SN=0000056661 SPO2=098% BPM=096 PI=04.25%" + _TAIL, 47, 98, 96, 4.25),
    (b"02/22/16 22:47:48 SN=0000056661 SPO2=098% BPM=096 PI=03.19%" + _TAIL, 48, 98, 96, 3.19),
    (b"02/22/16 22:47:49 SN=0000056661 SPO2=098% BPM=097 PI=02.41%" + _TAIL, 49, 98, 97, 2.41),
]
# Quoted with its CR LF in an open RAD-8 websocket bridge: sensor off, alarm sounding.
RAD8_SENSOR_OFF = (
    b"05/20/21 14:06:02 SN=0000182948 SPO2=098% BPM=101 PI=--.--% SPCO=--.-% SPMET=--.-% "
    b"DESAT=-- PIDELTA=+-- ALARM=0010 EXC=000824\r\n"
)
# The example of an open Elixir/Nerves RAD8 reader: low pulse-rate alarm, muted.
RAD8_BPM_LOW = (
    b"03/06/05 21:11:30 SN=0000066575 SPO2=098% BPM=057 PI=07.02% SPCO=--.-% SPMET=--.-% "
    b"DESAT=-- PIDELTA=+-- ALARM=0038 EXC=000800\r\n"
)
# Radical-7 service manual sample (quoted in remkolems/masimo-datacapture), no patient.
RADICAL7_IDLE = (
    b"05/15/07 08:12:21 SN=0000070986 SPO2=---% BPM=--- PI=--.--% SPCO=--.-% SPMET=--.-% "
    b"DESAT=-- PIDELTA=+-- PVI=--- ALARM=0000 EXC=000000\r\n"
)
GOLDEN = [line for line, *_ in RAD8_CAPTURE] + [RAD8_SENSOR_OFF, RAD8_BPM_LOW, RADICAL7_IDLE]


# --------------------------------------------------------------------------- golden bytes


@pytest.mark.parametrize(("line", "second", "spo2", "bpm", "pi"), RAD8_CAPTURE)
def test_published_rad8_capture_parses_to_its_values_and_reencodes(
    line: bytes, second: int, spo2: int, bpm: int, pi: float
) -> None:
    reading = parse_line(line)
    assert reading == MasimoReading(
        timestamp=datetime(2016, 2, 22, 22, 47, second),
        serial_number="0000056661",
        spo2_percent=spo2,
        pulse_rate_bpm=bpm,
        pi_percent=pi,
        exceptions=0x800,
    )
    assert reading.exception_flags == MasimoException.MASIMO_SET
    assert reading.alarm_flags == MasimoAlarm(0)
    assert detect_variant(line) == "rad8"
    assert encode_line(reading, "rad8") == line


def test_sensor_off_line_decodes_exception_and_observed_alarm_bits() -> None:
    reading = parse_line(RAD8_SENSOR_OFF)
    assert reading.pi_percent is None
    assert (reading.spo2_percent, reading.pulse_rate_bpm) == (98, 101)
    assert reading.exception_flags == (
        MasimoException.MASIMO_SET | MasimoException.SENSOR_OFF | MasimoException.LOW_PERFUSION
    )
    assert reading.alarm_flags == MasimoAlarm.ALARM_ACTIVE
    assert encode_line(reading) == RAD8_SENSOR_OFF


def test_low_rate_alarm_line() -> None:
    reading = parse_line(RAD8_BPM_LOW)
    assert reading.timestamp == datetime(2005, 3, 6, 21, 11, 30)
    assert reading.alarm == 0x38
    assert reading.alarm_flags == (
        MasimoAlarm.BPM_LOW | MasimoAlarm.ALARM_ACTIVE | MasimoAlarm.MUTE_PRESSED
    )
    assert encode_line(reading) == RAD8_BPM_LOW


def test_radical7_service_manual_line_is_all_dashes() -> None:
    reading = parse_line(RADICAL7_IDLE)
    assert detect_variant(RADICAL7_IDLE) == "radical7"
    assert reading == MasimoReading(
        timestamp=datetime(2007, 5, 15, 8, 12, 21), serial_number="0000070986"
    )
    assert encode_line(reading, "radical7") == RADICAL7_IDLE
    # The same reading in the Rad-8 layout differs only by the PVI field.
    assert encode_line(reading, "rad8") == RADICAL7_IDLE.replace(b" PVI=---", b"")


def test_every_field_with_a_value() -> None:
    reading = MasimoReading(
        timestamp=datetime(2031, 12, 31, 23, 59, 59),
        serial_number="1234567890",
        spo2_percent=100,
        pulse_rate_bpm=240,
        pi_percent=0.02,
        spco_percent=12.5,
        spmet_percent=1.0,
        desat=7,
        pidelta_percent=-5,
        pvi_percent=14,
        alarm=0x0021,
        exceptions=0xC00,
    )
    wire = encode_line(reading, "radical7")
    assert wire == (
        b"12/31/31 23:59:59 SN=1234567890 SPO2=100% BPM=240 PI=00.02% SPCO=12.5% "
        b"SPMET=01.0% DESAT=07 PIDELTA=-05 PVI=014 ALARM=0021 EXC=000C00\r\n"
    )
    assert parse_line(wire) == reading
    assert parse_line(wire[: -len(LINE_END)]) == reading  # CR LF is optional on input
    positive = encode_line(MasimoReading(timestamp=reading.timestamp, pidelta_percent=9), "rad8")
    assert b" PIDELTA=+09 " in positive


def test_extra_spaces_on_input_are_read() -> None:
    spaced = GOOD.replace(b"BPM=097 ", b"BPM=097   ").replace(b"\r\n", b"  \r\n")
    assert parse_line(spaced) == parse_line(GOOD)


def test_alarm_and_exception_width_on_input_is_lenient() -> None:
    # A Radical-7 colour unit sends six ALARM and seven EXC digits.
    line = RAD8_BPM_LOW.replace(b"ALARM=0038 EXC=000800", b"ALARM=000038 EXC=0000C00")
    reading = parse_line(line)
    assert (reading.alarm, reading.exceptions) == (0x38, 0xC00)


@pytest.mark.parametrize(
    ("reading", "variant", "message"),
    [
        (MasimoReading(timestamp=datetime(2020, 1, 1), pvi_percent=10), "rad8", "PVI"),
        (MasimoReading(timestamp=datetime(2020, 1, 1)), "rad9", "variant"),
        (MasimoReading(timestamp=datetime(2020, 1, 1), alarm=0x10000), "rad8", "4 hex"),
        (MasimoReading(timestamp=datetime(2020, 1, 1), exceptions=0x1000000), "rad8", "6 hex"),
    ],
)
def test_encode_refuses_what_the_layout_cannot_carry(
    reading: MasimoReading, variant: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        encode_line(reading, variant)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"spo2_percent": 101},
        {"pulse_rate_bpm": -1},
        {"pi_percent": 3.601},
        {"pi_percent": 100.0},
        {"spco_percent": 1.25},
        {"pidelta_percent": 100},
        {"serial_number": "12345"},
        {"alarm": -1},
    ],
)
def test_reading_validates_its_fields(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        MasimoReading(timestamp=datetime(2020, 1, 1), **kwargs)  # type: ignore[arg-type]


def test_reading_needs_whole_seconds_in_the_wire_century() -> None:
    with pytest.raises(ValueError, match="whole seconds"):
        MasimoReading(timestamp=datetime(2020, 1, 1, 0, 0, 0, 500))
    with pytest.raises(ValueError, match="2000-2099"):
        MasimoReading(timestamp=datetime(1999, 12, 31))


GOOD = RAD8_CAPTURE[0][0]


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b"\r\n",
        GOOD.replace(b"SPO2=098%", b"SPO2=98%"),  # width
        GOOD.replace(b"SPO2=098%", b"SPO2=0-8%"),  # dashes only as a whole field
        GOOD.replace(b"SPO2=098%", b"SPO2=101%"),  # range
        GOOD.replace(b"PI=03.60%", b"PI=03.60"),  # unit
        GOOD.replace(b"BPM=097 ", b"BPM=097\t"),  # separator
        GOOD.replace(b" BPM", b"BPM"),  # no separator
        GOOD.replace(b"SN=", b"sn="),  # key case
        GOOD.replace(b" EXC=000800", b""),  # missing field
        GOOD.replace(b"02/22/16", b"02/30/16"),  # no such date
        GOOD.replace(b"22:47:45", b"24:47:45"),  # no such time
        GOOD.replace(b"PIDELTA=+--", b"PIDELTA=---"),
        GOOD.replace(b"ALARM=0000", b"ALARM=00G0"),
        GOOD.replace(b"097", b"\xe9\xe9\xe9"),  # not ASCII
        GOOD[:-2] + b" EXTRA=1\r\n",
    ],
)
def test_malformed_lines_raise_protocol_error_with_the_bytes(line: bytes) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_line(line, device="spo2")
    assert info.value.raw == line
    assert info.value.device == "spo2"


# --------------------------------------------------------------------------- streaming


def test_decoder_splits_any_chunking() -> None:
    stream = b"".join(GOLDEN)
    whole = MasimoLineDecoder().feed(stream)
    decoder = MasimoLineDecoder()
    bytewise = [r for i in range(len(stream)) for r in decoder.feed(stream[i : i + 1])]
    assert whole == bytewise == [parse_line(line) for line in GOLDEN]
    assert (decoder.readings, decoder.bad_lines, decoder.dropped_bytes) == (len(GOLDEN), 0, 0)
    assert decoder.pending == 0


def test_decoder_resyncs_after_garbage_on_the_same_line() -> None:
    decoder = MasimoLineDecoder()
    garbage = b"\x00\xff12/3 noise"
    readings = decoder.feed(garbage + GOLDEN[0] + GOLDEN[1])
    assert readings == [parse_line(GOLDEN[0]), parse_line(GOLDEN[1])]
    assert (decoder.readings, decoder.bad_lines, decoder.dropped_bytes) == (2, 0, len(garbage))


def test_decoder_counts_a_cut_line_and_keeps_the_next() -> None:
    # Joining mid-line: the first "line" is the tail of one; a lost run of bytes inside
    # a line breaks only that line.
    cut_tail = GOLDEN[0][60:]
    broken = GOLDEN[1][:40] + GOLDEN[1][45:]
    decoder = MasimoLineDecoder(device="rad8")
    readings = decoder.feed(cut_tail + broken + GOLDEN[2])
    assert readings == [parse_line(GOLDEN[2])]
    assert decoder.bad_lines == 2
    assert decoder.dropped_bytes == len(cut_tail) + len(broken)
    assert decoder.last_error is not None
    assert decoder.last_error.device == "rad8"


def test_decoder_drops_an_overlong_line_and_blank_lines() -> None:
    decoder = MasimoLineDecoder()
    runaway = b"x" * (MAX_LINE_LENGTH + 100) + b"\r\n"
    readings = decoder.feed(runaway + b"\r\n" + GOLDEN[3])
    assert readings == [parse_line(GOLDEN[3])]
    assert decoder.bad_lines == 1
    assert decoder.dropped_bytes == len(runaway) + 2


def test_decoder_reset_drops_the_partial_line() -> None:
    decoder = MasimoLineDecoder()
    assert decoder.feed(GOLDEN[0][:30]) == []
    assert decoder.pending == 30
    decoder.reset()
    assert (decoder.pending, decoder.dropped_bytes) == (0, 30)
    assert decoder.feed(GOLDEN[0]) == [parse_line(GOLDEN[0])]


# --------------------------------------------------------------------------- properties


def _optional(strategy: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    return st.none() | strategy


@st.composite
def readings(draw: st.DrawFn, *, pvi: bool) -> MasimoReading:
    return MasimoReading(
        timestamp=draw(
            st.datetimes(datetime(2000, 1, 1), datetime(2099, 12, 31, 23, 59, 59))
        ).replace(microsecond=0),
        serial_number=draw(_optional(st.from_regex(r"[0-9]{10}", fullmatch=True))),  # type: ignore[arg-type]
        spo2_percent=draw(_optional(st.integers(0, 100))),  # type: ignore[arg-type]
        pulse_rate_bpm=draw(_optional(st.integers(0, 999))),  # type: ignore[arg-type]
        pi_percent=draw(_optional(st.integers(0, 9999).map(lambda n: n / 100))),  # type: ignore[arg-type]
        spco_percent=draw(_optional(st.integers(0, 999).map(lambda n: n / 10))),  # type: ignore[arg-type]
        spmet_percent=draw(_optional(st.integers(0, 999).map(lambda n: n / 10))),  # type: ignore[arg-type]
        desat=draw(_optional(st.integers(0, 99))),  # type: ignore[arg-type]
        pidelta_percent=draw(_optional(st.integers(-99, 99))),  # type: ignore[arg-type]
        pvi_percent=draw(_optional(st.integers(0, 999))) if pvi else None,  # type: ignore[arg-type]
        alarm=draw(st.integers(0, 0xFFFF)),
        exceptions=draw(st.integers(0, 0xFFFFFF)),
    )


@given(readings(pvi=False))
def test_rad8_round_trip(reading: MasimoReading) -> None:
    wire = encode_line(reading, "rad8")
    assert parse_line(wire) == reading
    assert encode_line(parse_line(wire), "rad8") == wire


@given(readings(pvi=True))
def test_radical7_round_trip(reading: MasimoReading) -> None:
    wire = encode_line(reading, "radical7")
    assert detect_variant(wire) == "radical7"
    assert parse_line(wire) == reading


@given(st.binary(max_size=300))
def test_parse_line_fuzz_raises_only_protocol_error(data: bytes) -> None:
    try:
        parse_line(data)
    except ProtocolError as exc:
        raw = exc.raw
    else:
        raw = data
    assert raw == data


@given(st.sampled_from(GOLDEN), st.integers(0, 200), st.binary(min_size=1, max_size=4))
def test_parse_line_mutations_raise_only_protocol_error(
    line: bytes, index: int, patch: bytes
) -> None:
    index %= len(line)
    mutated = line[:index] + patch + line[index + len(patch) :]
    try:
        reading = parse_line(mutated)
    except ProtocolError:
        return
    assert isinstance(reading, MasimoReading)


@given(st.lists(st.binary(max_size=80), max_size=12))
def test_decoder_fuzz_never_raises_and_accounts_for_every_byte(chunks: list[bytes]) -> None:
    decoder = MasimoLineDecoder()
    decoded = [r for chunk in chunks for r in decoder.feed(chunk)]
    fed = sum(map(len, chunks))
    good = sum(len(encode_line(r, "rad8")) for r in decoded)
    assert decoder.readings == len(decoded)
    assert good + decoder.dropped_bytes + decoder.pending == fed


@given(
    st.lists(
        st.tuples(readings(pvi=False), st.binary(max_size=20).filter(lambda b: b"\n" not in b)),
        min_size=1,
        max_size=6,
    ),
    st.data(),
)
def test_decoder_recovers_every_line_behind_garbage(
    items: list[tuple[MasimoReading, bytes]], data: st.DataObject
) -> None:
    stream = b"".join(garbage + encode_line(reading) for reading, garbage in items)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    decoder = MasimoLineDecoder()
    out = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        out += decoder.feed(stream[start:end])
    assert out == [reading for reading, _ in items]
    assert decoder.bad_lines == 0
    assert decoder.dropped_bytes == sum(len(garbage) for _, garbage in items)
