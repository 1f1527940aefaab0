"""The NE-1000 codec: golden bytes from the manual and real pump logs, plus fuzzing.

Golden sources: the NE-1000 manual's basic-mode return packet ``02 08 'SAF0' 55 43 03``
(publication 1200-01 §10.2.2); reply texts logged from real pumps in public code
(``00SI0.200W0.000ML`` for DIS, ``00SNE1000V3.928`` for VER).
"""

from __future__ import annotations

import contextlib
import math

import nesp_lib
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from medtwin.drivers.errors import ProtocolError
from medtwin.drivers.ne1000 import (
    BROADCAST,
    UNKNOWN,
    AlarmCode,
    Command,
    ErrorCode,
    Prompt,
    RateUnit,
    Reply,
    VolumeUnit,
    choose_rate,
    choose_volume,
    crc16,
    decode_command,
    decode_dispensed,
    decode_quantity,
    decode_reply,
    decode_safe_packet,
    encode_basic_command,
    encode_command,
    encode_reply,
    encode_safe_packet,
    find_reply,
    format_number,
    parse_number,
)

SAF0_PACKET = bytes([0x02, 0x08]) + b"SAF0" + bytes([0x55, 0x43, 0x03])


# --------------------------------------------------------------------------- golden bytes


def test_manual_safe_mode_packet_is_reproduced_byte_for_byte() -> None:
    assert crc16(b"SAF0") == 0x5543
    assert encode_safe_packet(b"SAF0") == SAF0_PACKET
    assert decode_safe_packet(SAF0_PACKET) == b"SAF0"


def test_safe_packet_matches_the_third_party_client_encoder() -> None:
    # nesp-lib's private encoder is the reference a real pump has been driven with.
    encode = nesp_lib.Pump._Pump__command_request_encode_safe
    for request in ("SAF0", "0SAF10", "0DIS", "0RAT10.50MH", ""):
        assert encode_safe_packet(request.encode()) == encode(request)


def test_basic_command_frames() -> None:
    assert encode_basic_command(Command("RAT", "10.5MH", 0)) == b"0RAT10.5MH\r"
    assert encode_basic_command(Command("DIS", address=12)) == b"12DIS\r"
    assert encode_basic_command(Command()) == b"\r"
    assert encode_basic_command(Command("ADR", "3", BROADCAST)) == b"*ADR3\r"


def test_dis_reply_logged_from_a_real_pump() -> None:
    reply, safe = decode_reply(b"\x0200SI0.200W0.000ML\x03")
    assert not safe
    assert reply == Reply(0, Prompt.STOPPED, data="I0.200W0.000ML")
    assert decode_dispensed(reply.data) == pytest.approx((0.2, 0.0))
    assert decode_dispensed("I16.09W0.000ML") == pytest.approx((16.09, 0.0))
    assert decode_dispensed("I974.0W12.00UL") == pytest.approx((0.974, 0.012))


def test_ver_alarm_and_error_replies() -> None:
    assert decode_reply(b"\x0200SNE1000V3.928\x03")[0].data == "NE1000V3.928"
    alarm, _ = decode_reply(b"\x0207A?S\x03")
    assert alarm.address == 7
    assert alarm.prompt is None
    assert alarm.alarm is AlarmCode.STALL
    assert alarm.pump_alarm is not None
    assert alarm.pump_alarm.value == "motor_stall"
    for text, error in (
        (b"00S?", ErrorCode.UNRECOGNIZED),
        (b"00S?NA", ErrorCode.NOT_APPLICABLE),
        (b"00I?OOR", ErrorCode.OUT_OF_RANGE),
        (b"00S?COM", ErrorCode.COMMUNICATION),
        (b"00X?IGN", ErrorCode.IGNORED),
    ):
        reply, _ = decode_reply(b"\x02" + text + b"\x03")
        assert reply.error is error
        assert reply.data == ""


def test_safe_mode_reply_packet() -> None:
    frame = encode_reply(Reply(0, None, AlarmCode.TIMEOUT), safe=True)
    assert frame == bytes([0x02, 9]) + b"00A?T" + crc16(b"00A?T").to_bytes(2, "big") + b"\x03"
    assert decode_reply(frame) == (Reply(0, None, AlarmCode.TIMEOUT), True)


def test_rat_and_vol_query_data() -> None:
    assert decode_quantity("10.50MH", RateUnit) == (10.5, RateUnit.ML_H)
    assert decode_quantity("1500.UH", RateUnit) == (1500.0, RateUnit.UL_H)
    assert decode_quantity("1.000ML", VolumeUnit) == (1.0, VolumeUnit.ML)
    with pytest.raises(ProtocolError):
        decode_quantity("10.50XX", RateUnit)
    with pytest.raises(ProtocolError):
        decode_quantity("MH", RateUnit)


def test_command_decoding_strips_and_upper_cases_like_the_pump() -> None:
    assert decode_command(b" 0 rat 10.5 mh") == Command("RAT", "10.5MH", 0)
    assert decode_command(b"\t12dis") == Command("DIS", "", 12)
    assert decode_command(b"*adr 3") == Command("ADR", "3", BROADCAST)
    assert decode_command(b"") == Command("", "", None)
    assert decode_command(b"5") == Command("", "", 5)
    assert decode_command(b"0XYZ") == Command(UNKNOWN, "XYZ", 0)


# --------------------------------------------------------------------------- numbers


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (5.0, "5.000"),
        (26.594, "26.59"),
        (0.5, "0.500"),
        (9.9996, "10.00"),
        (123.45, "123.5"),
        (1234.0, "1234"),
        (0.0, "0.000"),
    ],
)
def test_format_number_uses_four_digits(value: float, text: str) -> None:
    assert format_number(value) == text


def test_format_number_refuses_what_does_not_fit() -> None:
    for bad in (10000.0, 9999.5, -1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match=r"digits|finite"):
            format_number(bad)
    assert format_number(1234.0, trailing_point=True) == "1234."


def test_parse_number_enforces_the_manual_limits_when_strict() -> None:
    assert parse_number("12.34") == 12.34
    assert parse_number(".5") == 0.5
    assert parse_number("1234.") == 1234.0
    for bad in ("12345", "1.2345", "0.0001", "1.2.3", "", "."):
        with pytest.raises(ValueError, match=r"number|digits"):
            parse_number(bad)
    assert parse_number("12345", strict=False) == 12345.0


@pytest.mark.parametrize(
    ("rate_ml_h", "unit", "text"),
    [
        (5.0, RateUnit.ML_H, "5.000"),
        (0.01, RateUnit.UL_H, "10.00"),
        (0.5, RateUnit.UL_H, "500.0"),
        (100.0, RateUnit.ML_H, "100.0"),
        (12345.0, RateUnit.ML_MIN, "205.8"),
        (83.33, RateUnit.ML_H, "83.33"),
    ],
)
def test_choose_rate_keeps_the_most_significant_digits(
    rate_ml_h: float, unit: RateUnit, text: str
) -> None:
    assert choose_rate(rate_ml_h) == (unit, text)


def test_choose_rate_refuses_unrepresentable_rates() -> None:
    for bad in (1e6, 1.23456e-5, -1.0, math.nan):
        with pytest.raises(ValueError, match="cannot be written"):
            choose_rate(bad)
    # Zero is representable; whether the drive accepts it is the pump's call (?OOR).
    assert choose_rate(0.0) == (RateUnit.ML_H, "0.000")


def test_choose_rate_prefers_the_running_unit() -> None:
    assert choose_rate(0.5, prefer=RateUnit.ML_H) == (RateUnit.ML_H, "0.500")
    # Not representable in the preferred unit within tolerance: the best one wins.
    assert choose_rate(0.0123, prefer=RateUnit.ML_H) == (RateUnit.UL_H, "12.30")


def test_choose_volume() -> None:
    assert choose_volume(1.0) == (VolumeUnit.ML, "1.000")
    assert choose_volume(0.25) == (VolumeUnit.UL, "250.0")
    with pytest.raises(ValueError, match="cannot be written"):
        choose_volume(12345.0)


# --------------------------------------------------------------------------- frame scanning


def test_find_reply_skips_garbage_before_a_reply() -> None:
    reply = encode_reply(Reply(0, Prompt.INFUSING), safe=False)
    assert find_reply(b"\xff\x17" + reply + b"tail") == (reply, 2 + len(reply))
    safe = encode_reply(Reply(0, Prompt.STOPPED, data="I1.000W0.000ML"), safe=True)
    # A stray STX with a huge length byte in front must not hide the real packet.
    buffer = b"\x02\xf0junk" + safe
    assert find_reply(buffer) == (safe, len(buffer))


def test_find_reply_waits_for_the_rest_of_a_frame() -> None:
    frame = encode_reply(Reply(0, Prompt.STOPPED, data="I1.000W0.000ML"), safe=True)
    for cut in range(len(frame)):
        found, index = find_reply(b"xx" + frame[:cut])
        assert found is None
        assert index == (2 if cut else 2 + cut)


def test_find_reply_reports_a_broken_frame() -> None:
    frame = bytearray(encode_reply(Reply(0, Prompt.STOPPED), safe=True))
    frame[-2] ^= 0x01
    with pytest.raises(ProtocolError) as info:
        find_reply(bytes(frame))
    assert info.value.raw == bytes(frame)
    with pytest.raises(ProtocolError):
        find_reply(b"\x0200Q\x03")


# --------------------------------------------------------------------------- fuzzing

addresses = st.integers(0, 99)
printable = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30)


@st.composite
def replies(draw: st.DrawFn) -> Reply:
    address = draw(addresses)
    if draw(st.booleans()):
        return Reply(address, None, draw(st.sampled_from(AlarmCode)))
    prompt = draw(st.sampled_from(Prompt))
    if draw(st.booleans()):
        return Reply(address, prompt, error=draw(st.sampled_from(ErrorCode)))
    data = draw(printable.filter(lambda s: not s.startswith("?")))
    return Reply(address, prompt, data=data)


@given(replies(), st.booleans())
def test_reply_round_trip(reply: Reply, safe: bool) -> None:
    frame = encode_reply(reply, safe=safe)
    assert decode_reply(frame) == (reply, safe)
    assert find_reply(frame) == (frame, len(frame))


@given(
    st.sampled_from(["", "DIA", "RAT", "VOL", "DIR", "RUN", "STP", "DIS", "VER", "SAF"]),
    st.text(st.sampled_from("0123456789.MHULINFWDR"), max_size=8),
    st.one_of(st.none(), addresses, st.just(BROADCAST)),
)
def test_command_round_trip(name: str, argument: str, address: int | str | None) -> None:
    # An argument starting with a digit right after a bare status query would be read
    # as part of the address; the pump has the same ambiguity, so it is excluded.
    assume(name or not argument)
    command = Command(name, argument, address)
    assert decode_command(encode_basic_command(command)[:-1]) == command
    assert decode_command(encode_command(command).encode()) == command


@given(st.floats(min_value=0.001, max_value=9999.0))
def test_number_round_trip_within_half_a_digit(value: float) -> None:
    text = format_number(value)
    parsed = parse_number(text)
    decimals = len(text.split(".")[1]) if "." in text else 0
    assert abs(parsed - value) <= 0.5 * 10**-decimals + 1e-12


@given(st.floats(min_value=1e-4, max_value=1e5))
def test_chosen_rate_is_within_tolerance(rate_ml_h: float) -> None:
    try:
        unit, text = choose_rate(rate_ml_h)
    except ValueError:
        return
    assert abs(float(text) * unit.ml_h - rate_ml_h) <= 5e-4 * rate_ml_h


@given(st.binary(max_size=64))
def test_random_bytes_raise_only_protocol_error(data: bytes) -> None:
    for decode in (decode_reply, decode_safe_packet, find_reply):
        with contextlib.suppress(ProtocolError):
            decode(data)
    decode_command(data)  # never raises


@given(replies(), st.booleans(), st.data())
def test_mutated_frames_raise_only_protocol_error(
    reply: Reply, safe: bool, data: st.DataObject
) -> None:
    frame = bytearray(encode_reply(reply, safe=safe))
    for _ in range(data.draw(st.integers(1, 3))):
        action = data.draw(st.sampled_from(["flip", "insert", "delete"]))
        position = data.draw(st.integers(0, len(frame)))
        if action == "flip" and position < len(frame):
            frame[position] ^= data.draw(st.integers(1, 255))
        elif action == "insert":
            frame.insert(position, data.draw(st.integers(0, 255)))
        elif action == "delete" and position < len(frame) and len(frame) > 1:
            del frame[position]
    try:
        decoded, _ = decode_reply(bytes(frame))
    except ProtocolError:
        pass
    else:
        assert 0 <= decoded.address <= 99
    try:
        find_reply(bytes(frame))
    except ProtocolError as exc:
        raw = exc.raw
    else:
        raw = b"ok"
    assert raw  # an error always carries the offending bytes
