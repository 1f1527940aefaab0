"""Framers: golden bytes, their checksum breakers, and hypothesis fuzzing of the contract.

Every framer of the emulator server is checked the same way
(:mod:`medtwin.drivers.framing`'s contract): random bytes in random chunks never raise
anything but ProtocolError, the frames of a clean stream do not depend on how it is
chunked, garbage never swallows a good frame that follows the framer's resynchronisation
point, and a broken checksum is rejected by the codec.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from medtwin.drivers.errors import ProtocolError
from medtwin.drivers.framing import (
    BinaryStreamFramer,
    Framer,
    LineFramer,
    RawFramer,
    flip_middle_byte,
)
from medtwin.drivers.modbus.codec import (
    MbapFrame,
    MbapFramer,
    RtuFrame,
    RtuRequestFramer,
    mbap_frame,
    rtu_crc,
    rtu_frame,
    t35_s,
)
from medtwin.drivers.ne1000.codec import NE1000Framer, decode_reply, decode_safe_packet


def nonin_valid(frame: bytes) -> bool:
    """Nonin data format #2: start byte 01, status with its sync bit 7 set, checksum =
    sum of the first four bytes modulo 256 (Nonin OEM III specification)."""
    return frame[0] == 0x01 and frame[1] & 0x80 != 0 and (sum(frame[:4]) & 0xFF) == frame[4]


def nonin_frame(status: int, pleth: int, extra: int) -> bytes:
    body = bytes((0x01, 0x80 | status, pleth, extra))
    return body + bytes((sum(body) & 0xFF,))


# --------------------------------------------------------------------------- golden bytes


def test_line_framer_splits_at_the_terminator_in_any_chunking() -> None:
    framer = LineFramer(b"\r")
    assert framer.feed(b"RAT 100 M") == []
    assert framer.pending == 9
    assert framer.feed(b"H\rDIS\rVE") == [b"RAT 100 MH\r", b"DIS\r"]
    assert framer.feed(b"R\r") == [b"VER\r"]
    assert framer.pending == 0


def test_line_framer_cuts_an_overlong_line_one_past_its_limit() -> None:
    framer = LineFramer(b"\r", max_length=4)
    assert framer.feed(b"ABCDEFGH\rOK\r") == [b"ABCDE\r", b"OK\r"]
    runaway = LineFramer(b"\n", max_length=4, overflow_frame=True)
    assert runaway.feed(b"ABC\r\nABCDEF") == [b"ABC\r\n", b"ABCDEF"]
    assert runaway.feed(b"\n") == [b"\n"]


def test_ne1000_framer_reads_the_manuals_packet_and_basic_lines() -> None:
    # The manual's own example: the packet that returns a pump to basic mode.
    saf0 = bytes.fromhex("0208") + b"SAF0" + bytes.fromhex("554303")
    framer = NE1000Framer()
    assert framer.feed(b"DIS\r" + saf0[:3]) == [b"DIS\r"]
    assert framer.feed(saf0[3:] + b"VER\r") == [saf0, b"VER\r"]
    assert decode_safe_packet(saf0) == b"SAF0"


def test_ne1000_framer_ends_a_packet_at_a_short_length_byte_and_ignores_text_in_safe_mode() -> None:
    safe = True
    framer = NE1000Framer(text_enabled=lambda: not safe)
    assert framer.feed(b"\x02\x01DIS\r") == [b"\x02\x01"]
    safe = False
    assert framer.feed(b"DIS\r") == [b"DIS\r"]


def test_ne1000_framer_drops_a_packet_stalled_past_the_inter_byte_timeout() -> None:
    now = [0.0]
    framer = NE1000Framer(wall_time=lambda: now[0])
    assert framer.feed(b"\x02\x08SA") == []
    now[0] = 0.6  # the manual's 0.5 s inter-byte time-out has passed
    # The stalled packet is gone; what follows is read as basic-mode text again.
    assert framer.feed(b"F0UC\x03DIS\r") == [b"F0UC\x03DIS\r"]
    assert framer.feed(b"\x02\x08SA") == []
    now[0] = 0.9  # within the time-out: the packet goes on
    assert framer.feed(b"F0UC\x03") == [b"\x02\x08SAF0UC\x03"]


def test_rtu_framer_golden_frame_and_silence() -> None:
    # Read Holding Registers 0..9 of slave 1: the classic example, CRC C5 CD.
    request = bytes.fromhex("01030000000AC5CD")
    assert rtu_crc(request[:-2]) == bytes.fromhex("C5CD")
    framer = RtuRequestFramer()
    assert framer.silence_chars == 3.5
    assert framer.half_duplex
    assert framer.feed(request[:5]) == []
    assert framer.feed(request[5:]) == [RtuFrame(1, bytes.fromhex("030000000A"), request)]
    # A corrupted frame is dropped with everything until the line falls silent.
    assert framer.feed(framer.break_checksum(request) + request) == []
    assert framer.on_silence() == []
    assert framer.feed(request) == [RtuFrame(1, request[1:-2], request)]
    assert framer.errors == 1


def test_t35_follows_the_serial_line_spec() -> None:
    assert t35_s(9600, 11) == pytest.approx(3.5 * 11 / 9600)
    assert t35_s(115200, 10) == 1.75e-3


def test_mbap_framer_golden_frame_and_bad_header() -> None:
    request = bytes.fromhex("000100000006010300000002")
    assert mbap_frame(1, 1, bytes.fromhex("0300000002")) == request
    framer = MbapFramer()
    assert framer.feed(request[:8]) == []
    assert (
        framer.feed(request[8:] + request)
        == [MbapFrame(1, 1, bytes.fromhex("0300000002"), request)] * 2
    )
    with pytest.raises(ProtocolError):
        framer.feed(framer.break_checksum(request))


def test_binary_stream_framer_finds_nonin_frames_in_a_running_stream() -> None:
    frames = [nonin_frame(0x01, 0x40 + i, i) for i in range(4)]
    assert frames[0] == bytes.fromhex("01814000C2")
    framer = BinaryStreamFramer(5, nonin_valid)
    # Joining mid-frame: the tail of a frame is noise until the next frame boundary.
    stream = frames[0][2:] + b"".join(frames[1:])
    assert framer.feed(stream[:8]) == [frames[1]]
    assert framer.feed(stream[8:]) == frames[2:]
    assert framer.dropped == 3
    assert not nonin_valid(framer.break_checksum(frames[3]))


def test_checksum_breakers_are_rejected_by_the_codecs() -> None:
    packet = bytes.fromhex("0208") + b"SAF0" + bytes.fromhex("554303")
    with pytest.raises(ProtocolError):
        decode_safe_packet(NE1000Framer().break_checksum(packet))
    reply = b"\x0200S\x03"
    assert decode_reply(reply)[0].prompt is not None
    assert flip_middle_byte(reply) != reply
    rtu = rtu_frame(1, bytes.fromhex("04040000002A"))
    broken = RtuRequestFramer().break_checksum(rtu)
    assert rtu_crc(broken[:-2]) != broken[-2:]
    assert RawFramer(lambda frame: b"!" + frame).break_checksum(b"x") == b"!x"


# --------------------------------------------------------------------------- fuzzing


@dataclass(frozen=True)
class Case:
    """One framer under fuzzing: how to build it, one good frame, how it resynchronises."""

    name: str
    make: Callable[[], Framer[Any]]
    good: bytes
    resync: Callable[[Framer[Any]], list[Any]]
    raw_of: Callable[[Any], bytes]


def _silence(framer: Framer[Any]) -> list[Any]:
    return framer.on_silence()


def _line_end(framer: Framer[Any]) -> list[Any]:
    return framer.feed(b"\r")


def _ne1000_resync(framer: Framer[Any]) -> list[Any]:
    return framer.on_silence() + framer.feed(b"\r")


def _reset(framer: Framer[Any]) -> list[Any]:
    framer.reset()
    return []


def _raw(frame: Any) -> bytes:
    return frame if isinstance(frame, bytes) else frame.raw


CASES = [
    Case("line-cr", lambda: LineFramer(b"\r", max_length=128), b"RAT 100 MH\r", _line_end, _raw),
    Case(
        "line-lf",
        lambda: LineFramer(b"\n", max_length=256, overflow_frame=True),
        b"S\r\n",
        lambda f: f.feed(b"\n"),
        _raw,
    ),
    Case(
        "ne1000",
        NE1000Framer,
        bytes.fromhex("0208") + b"SAF0" + bytes.fromhex("554303"),
        _ne1000_resync,
        _raw,
    ),
    Case("rtu", RtuRequestFramer, bytes.fromhex("01030000000AC5CD"), _silence, _raw),
    Case("mbap", MbapFramer, bytes.fromhex("000100000006010300000002"), _reset, _raw),
    Case(
        "stream",
        lambda: BinaryStreamFramer(5, nonin_valid),
        nonin_frame(0x05, 0x7F, 0x22),
        _silence,
        _raw,
    ),
]

chunked = st.lists(st.binary(min_size=0, max_size=64), min_size=1, max_size=12)


def _feed(framer: Framer[Any], data: bytes) -> list[Any]:
    try:
        return framer.feed(data)
    except ProtocolError:
        framer.reset()  # what a server does: drop the connection, start afresh
        return []


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
@settings(max_examples=150, deadline=None)
@given(chunks=chunked)
def test_random_bytes_raise_nothing_but_protocol_error(case: Case, chunks: list[bytes]) -> None:
    framer = case.make()
    for chunk in chunks:
        for frame in _feed(framer, chunk):
            assert isinstance(_raw(frame), bytes)
        assert framer.pending >= 0
    framer.on_silence()
    framer.break_checksum(b"".join(chunks))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
@settings(max_examples=100, deadline=None)
@given(garbage=st.binary(max_size=300))
def test_a_good_frame_after_garbage_and_resync_is_never_lost(case: Case, garbage: bytes) -> None:
    framer = case.make()
    _feed(framer, garbage)
    case.resync(framer)
    assert [case.raw_of(frame) for frame in framer.feed(case.good)] == [case.good]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
@settings(max_examples=100, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=60), max_size=8), copies=st.integers(1, 5))
def test_a_clean_stream_frames_the_same_in_any_chunking(
    case: Case, cuts: list[int], copies: int
) -> None:
    stream = case.good * copies
    framer = case.make()
    frames: list[Any] = []
    last = 0
    for cut in sorted(cuts):
        cut = min(cut, len(stream))
        frames += framer.feed(stream[last:cut])
        last = cut
    frames += framer.feed(stream[last:])
    assert [case.raw_of(frame) for frame in frames] == [case.good] * copies


def test_emulators_import_their_codecs_not_the_drivers() -> None:
    # A fresh interpreter: this test process has long imported every driver.
    code = (
        "import sys\n"
        "import medtwin.drivers.emulators.ne1000, medtwin.drivers.emulators.mtsics\n"
        "import medtwin.drivers.emulators.modbus\n"
        "loaded = [m for m in sys.modules if m.startswith('medtwin.drivers.')]\n"
        "print(','.join(sorted(loaded)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()
    loaded = set(out.split(","))
    assert {"medtwin.drivers.ne1000.codec", "medtwin.drivers.mtsics.codec"} <= loaded
    assert "medtwin.drivers.modbus.codec" in loaded
    for driver in ("ne1000", "mtsics", "modbus"):
        assert f"medtwin.drivers.{driver}.driver" not in loaded
    assert "medtwin.drivers.transport" not in loaded
