"""MT-SICS codec: golden bytes from the manuals, round trips and fuzzing.

Golden lines come from the MT-SICS reference manual examples as quoted in the Mettler
Toledo operating instructions (``S`` → ``S S     100.00 g``) and from the Ohaus 7000-series
manual's MT-SICS chapter (``SIR`` → ``S S     129.09 kg``, ``I2 A "T72XW Standard 50.00 kg"``,
``I1 A "" "2.2x" "2.2x" "" ""``, ``@`` → ``I4 A "12345678"``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from medtwin.drivers.errors import ProtocolError
from medtwin.drivers.mtsics import (
    GENERAL_ERRORS,
    LINE_END,
    STATUS_MEANING,
    Command,
    DataReply,
    ErrorReply,
    Quoted,
    Reply,
    StatusReply,
    WeightReply,
    decimals_for_readability,
    decode_reply,
    reply_id,
    weight_value,
)

# --------------------------------------------------------------------------- golden bytes


@pytest.mark.parametrize(
    ("command", "wire"),
    [
        (Command("S"), b"S\r\n"),
        (Command("SI"), b"SI\r\n"),
        (Command("SIR"), b"SIR\r\n"),
        (Command("@"), b"@\r\n"),
        (Command("TA", ("10.00", "g")), b"TA 10.00 g\r\n"),
        (Command("D", (Quoted("HELLO WORLD"),)), b'D "HELLO WORLD"\r\n'),
    ],
)
def test_command_golden_bytes(command: Command, wire: bytes) -> None:
    assert command.encode() == wire
    assert Command.decode(wire) == command


@pytest.mark.parametrize(
    ("wire", "reply"),
    [
        # MT-SICS manual example for S (AL/AT operating instructions, "S – Send stable weight").
        (b"S S     100.00 g\r\n", WeightReply("S", "S", Decimal("100.00"), "g")),
        # Ohaus 7000 manual, SIR example lines.
        (b"S S     129.09 kg\r\n", WeightReply("S", "S", Decimal("129.09"), "kg")),
        (b"S D     114.87 kg\r\n", WeightReply("S", "D", Decimal("114.87"), "kg")),
        (b"S S      -0.25 g\r\n", WeightReply("S", "S", Decimal("-0.25"), "g")),
        (b"T S     100.00 g\r\n", WeightReply("T", "S", Decimal("100.00"), "g")),
        (b"TA A      10.00 g\r\n", WeightReply("TA", "A", Decimal("10.00"), "g")),
        (b"S I\r\n", StatusReply("S", "I")),
        (b"S +\r\n", StatusReply("S", "+")),
        (b"S -\r\n", StatusReply("S", "-")),
        (b"Z A\r\n", StatusReply("Z", "A")),
        (b"ZI D\r\n", StatusReply("ZI", "D")),
        (b"TAC A\r\n", StatusReply("TAC", "A")),
        (b"TA L\r\n", StatusReply("TA", "L")),
        (b"ES\r\n", ErrorReply("ES")),
        (b"ET\r\n", ErrorReply("ET")),
        (b"EL\r\n", ErrorReply("EL")),
        (b'I4 A "12345678"\r\n', DataReply("I4", "A", (Quoted("12345678"),))),
        (
            b'I2 A "T72XW Standard 50.00 kg"\r\n',
            DataReply("I2", "A", (Quoted("T72XW Standard 50.00 kg"),)),
        ),
        (
            b'I1 A "" "2.2x" "2.2x" "" ""\r\n',
            DataReply(
                "I1",
                "A",
                (Quoted(""), Quoted("2.2x"), Quoted("2.2x"), Quoted(""), Quoted("")),
            ),
        ),
        (b'I0 B 0 "I0"\r\n', DataReply("I0", "B", ("0", Quoted("I0")))),
        (b'I0 A 1 "TI"\r\n', DataReply("I0", "A", ("1", Quoted("TI")))),
    ],
)
def test_reply_golden_bytes(wire: bytes, reply: Reply) -> None:
    assert decode_reply(wire) == reply
    assert reply.encode() == wire


def test_weight_value_is_right_aligned_in_ten_characters() -> None:
    line = WeightReply("S", "S", Decimal("0.256"), "g").encode()
    assert line == b"S S      0.256 g\r\n"
    assert line[4:14] == b"     0.256"
    # A value wider than the field is not truncated: the number must stay right.
    wide = WeightReply("S", "S", Decimal("-12345.67890"), "g").encode()
    assert decode_reply(wide) == WeightReply("S", "S", Decimal("-12345.67890"), "g")


def test_replies_are_read_leniently_and_written_canonically() -> None:
    # Some MT-SICS terminals pad differently; the value is what counts.
    reply = decode_reply(b"S S 100.00 g")
    assert reply == WeightReply("S", "S", Decimal("100.00"), "g")
    assert reply.encode() == b"S S     100.00 g\r\n"
    assert decode_reply(b'I0 B   0   "S"') == DataReply("I0", "B", ("0", Quoted("S")))


def test_weight_reply_properties() -> None:
    stable = WeightReply("S", "S", Decimal("129.09"), "kg")
    assert stable.stable
    assert stable.mass_g() == pytest.approx(129_090.0)
    assert not WeightReply("S", "D", Decimal("1"), "g").stable
    assert WeightReply("TA", "A", Decimal("1"), "g").stable
    assert WeightReply("S", "S", Decimal("250"), "mg").mass_g() == pytest.approx(0.25)
    assert WeightReply("S", "S", Decimal("1"), "ct").mass_g() == pytest.approx(0.2)
    with pytest.raises(ValueError, match="'PCS' is not a mass unit"):
        WeightReply("S", "S", Decimal("12"), "PCS").mass_g()


def test_data_reply_texts() -> None:
    reply = decode_reply(b'I0 B 0 "SIR"\r\n')
    assert isinstance(reply, DataReply)
    assert reply.texts == ("0", "SIR")


@pytest.mark.parametrize(
    ("command", "expected"), [("S", "S"), ("SI", "S"), ("SIR", "S"), ("@", "I4"), ("TA", "TA")]
)
def test_reply_id(command: str, expected: str) -> None:
    assert reply_id(command) == expected


@pytest.mark.parametrize(
    ("readability_g", "decimals"),
    [(1.0, 0), (2.0, 0), (0.1, 1), (0.01, 2), (0.02, 2), (0.005, 3), (0.001, 3), (1e-4, 4)],
)
def test_decimals_follow_readability(readability_g: float, decimals: int) -> None:
    assert decimals_for_readability(readability_g) == decimals


@pytest.mark.parametrize("bad", [0.0, -0.01, float("nan"), float("inf")])
def test_decimals_reject_bad_readability(bad: float) -> None:
    with pytest.raises(ValueError, match="readability"):
        decimals_for_readability(bad)


def test_weight_value_rounding() -> None:
    assert weight_value(100.0, 2) == Decimal("100.00")
    assert str(weight_value(100.0, 2)) == "100.00"
    assert str(weight_value(0.125, 2)) == "0.12"  # half-even, as 0.125 is exact in binary
    assert str(weight_value(-0.004, 2)) == "0.00"  # no "-0.00" on the display
    assert str(weight_value(-1.005, 3)) == "-1.005"
    assert str(weight_value(1234.5, 0)) == "1234"


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "wire",
    [
        b"",
        b"\r\n",
        b"s\r\n",  # commands must be uppercase
        b"Si\r\n",
        b"TA  10.00 g\r\n",  # double space
        b"TA 10.00 g \r\n",  # trailing space
        b"S\x00\r\n",
        b"S\rS\r\n",
        b'D "unterminated\r\n',
        b'D "a"b\r\n',
        b"TOOLONGNAME\r\n",
        b"1S\r\n",
    ],
)
def test_malformed_commands_raise_protocol_error(wire: bytes) -> None:
    with pytest.raises(ProtocolError) as caught:
        Command.decode(wire, device="balance")
    assert caught.value.raw == wire
    assert "balance" in str(caught.value)


@pytest.mark.parametrize(
    "wire",
    [
        b"",
        b"\r\n",
        b"hello",
        b"S",  # an id without a status
        b"S X 1 g",  # unknown status
        b"S S  1.0.0 g\x07",
        b"s s     100.00 g",
        b'I4 A "unterminated',
        b"E",
        b"EX",
        b"S S\t100.00 g",
    ],
)
def test_malformed_replies_raise_protocol_error(wire: bytes) -> None:
    with pytest.raises(ProtocolError) as caught:
        decode_reply(wire, device="balance")
    assert caught.value.raw == wire


def test_invalid_messages_are_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="command name"):
        Command("s")
    with pytest.raises(ValueError, match="printable"):
        Command("TA", ("10 g",))
    with pytest.raises(ValueError, match=r"characters 32\.\.255"):
        Quoted('say "hi"')
    with pytest.raises(ValueError, match="status"):
        StatusReply("S", "X")
    with pytest.raises(ValueError, match="plain decimal"):
        WeightReply("S", "S", Decimal("NaN"), "g")
    with pytest.raises(ValueError, match="unit symbol"):
        WeightReply("S", "S", Decimal("1"), "1g")
    with pytest.raises(ValueError, match="at least one field"):
        DataReply("I4", "A", ())
    with pytest.raises(ValueError, match="ES, ET, EL"):
        ErrorReply("EX")


# --------------------------------------------------------------------------- hypothesis

Message = Reply | Command

_names = st.from_regex(r"[A-Z][A-Z0-9]{0,7}", fullmatch=True)
_statuses = st.sampled_from(sorted(STATUS_MEANING))
_units = st.from_regex(r"[A-Za-z%][A-Za-z0-9%]{0,7}", fullmatch=True)
_values = st.builds(
    lambda digits, places: Decimal(digits).scaleb(-places),
    st.integers(-(10**13), 10**13),
    st.integers(0, 7),
)
_text = st.text(
    alphabet=st.characters(min_codepoint=32, max_codepoint=255, exclude_characters='"\x7f'),
    max_size=30,
)
_bare = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=255, exclude_characters='"\x7f'),
    min_size=1,
    max_size=12,
)
_fields = st.one_of(_bare, st.builds(Quoted, _text))

_weight_replies = st.builds(WeightReply, _names, _statuses, _values, _units)
_status_replies = st.builds(StatusReply, _names, _statuses)
_error_replies = st.builds(ErrorReply, st.sampled_from(sorted(GENERAL_ERRORS)))
_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
_UNIT = re.compile(r"[A-Za-z%][A-Za-z0-9%]{0,7}")


def _looks_like_weight(fields: tuple[str | Quoted, ...]) -> bool:
    """A data reply of exactly <number> <unit> has the shape of a weight reply on the wire
    (the reply id tells them apart, not the bytes), so it cannot round-trip as data."""
    return (
        len(fields) == 2
        and isinstance(fields[0], str)
        and isinstance(fields[1], str)
        and _NUMBER.fullmatch(fields[0]) is not None
        and _UNIT.fullmatch(fields[1]) is not None
    )


_data_replies = st.builds(
    DataReply, _names, _statuses, st.lists(_fields, min_size=1, max_size=5).map(tuple)
).filter(lambda reply: not _looks_like_weight(reply.fields))
_replies = st.one_of(_weight_replies, _status_replies, _error_replies, _data_replies)
_commands = st.builds(
    Command,
    st.one_of(_names, st.just("@")),
    st.lists(_fields, max_size=4).map(tuple),
)


@given(_replies)
def test_reply_round_trip(reply: Reply) -> None:
    wire = reply.encode()
    assert wire.endswith(LINE_END)
    decoded = decode_reply(wire)
    assert decoded == reply
    assert decoded.encode() == wire


@given(_commands)
def test_command_round_trip(command: Command) -> None:
    wire = command.encode()
    assert Command.decode(wire) == command
    assert Command.decode(wire).encode() == wire


def _outcome(
    decode: Callable[[bytes], Message], data: bytes
) -> tuple[Message | None, ProtocolError | None]:
    """``decode(data)``, or the ProtocolError it raised (anything else propagates)."""
    try:
        return decode(data), None
    except ProtocolError as exc:
        return None, exc


def _check(decode: Callable[[bytes], Message], data: bytes) -> None:
    message, error = _outcome(decode, data)
    if message is None:
        assert error is not None
        assert error.raw == data
    else:
        # Whatever decodes must re-encode to a line that decodes to the same message.
        assert decode(message.encode()) == message


@given(st.binary(max_size=64))
def test_random_bytes_only_ever_raise_protocol_error(data: bytes) -> None:
    _check(decode_reply, data)
    _check(Command.decode, data)


@given(_replies, st.data())
def test_mutated_replies_decode_or_raise_protocol_error(reply: Reply, data: st.DataObject) -> None:
    wire = bytearray(reply.encode())
    for _ in range(data.draw(st.integers(1, 3))):
        action = data.draw(st.sampled_from(["replace", "insert", "delete"]))
        index = data.draw(st.integers(0, max(0, len(wire) - 1)))
        if action == "replace" and wire:
            wire[index] = data.draw(st.integers(0, 255))
        elif action == "insert":
            wire.insert(index, data.draw(st.integers(0, 255)))
        elif wire:
            del wire[index]
    _check(decode_reply, bytes(wire))


@given(_commands, st.data())
def test_mutated_commands_decode_or_raise_protocol_error(
    command: Command, data: st.DataObject
) -> None:
    wire = bytearray(command.encode())
    index = data.draw(st.integers(0, len(wire) - 1))
    wire[index] = data.draw(st.integers(0, 255))
    _check(Command.decode, bytes(wire))
