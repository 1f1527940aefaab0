"""Nonin #2/#7/#8 codec: frames built by hand from the OEM specification, resync, fuzzing.

Golden bytes are written out here from the Nonin 9560 OEM specification (frame layouts
pp. 8 and 12, STATUS p. 9, HR/SpO2 formats p. 11, #8 p. 16, format select p. 4), with
checksums added up by hand (CHK = byte1 + byte2 + byte3 + byte4 mod 256), not produced
by the encoder under test.
"""

from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from medtwin.drivers.errors import ProtocolError
from medtwin.drivers.nonin import (
    ACK,
    FRAME_DATA,
    FRAMES_PER_PACKET,
    MAX_COMMAND_DATA,
    MISSING_HR,
    MISSING_SPO2,
    NAK,
    PACKET_LENGTH,
    STX,
    Format8Decoder,
    Format8Record,
    Format8Status1,
    Format8Status2,
    NoninCommand,
    NoninCommandFramer,
    NoninFrame,
    NoninPacket,
    NoninStreamDecoder,
    PacketValues,
    Perfusion,
    Status,
    Status2,
    decode_format8,
    decode_frame,
    decode_packet,
    encode_format8,
    encode_frame,
    encode_packet,
    encode_set_format,
    encode_set_time,
    parse_command,
    parse_format_reply,
    parse_set_format,
    parse_set_time,
    perfusion,
)

# --------------------------------------------------------------------------- golden frames


@pytest.mark.parametrize(
    ("wire", "fmt", "frame"),
    [
        # #2, frame 1: 01, STATUS 0x81 (bit 7 + SYNC), PLETH 0x40, HR MSB 0; 01+81+40+00 = C2.
        (bytes.fromhex("01 81 40 00 C2"), 2, NoninFrame(0x81, 0x40, 0x00)),
        # #2, frame 2: HR LSB 72 (0x48), green perfusion (GPRF 0x02): 01+82+41+48 = 10C -> 0C.
        (bytes.fromhex("01 82 41 48 0C"), 2, NoninFrame(0x82, 0x41, 0x48)),
        # #2 with artifact, out of track, sensor alarm and yellow: STATUS 0x80|20|10|08|06 = BE;
        # 01+BE+FF+7F = 23D -> 3D.
        (bytes.fromhex("01 BE FF 7F 3D"), 2, NoninFrame(0xBE, 0xFF, 0x7F)),
        # #7, frame 1: STATUS 81, PLETH 0x1234, data 00: 81+12+34+00 = C7.
        (bytes.fromhex("81 12 34 00 C7"), 7, NoninFrame(0x81, 0x1234, 0x00)),
        # #7, pleth 0xFFFF, SpO2 97 (0x61): 80+FF+FF+61 = 2DF -> DF.
        (bytes.fromhex("80 FF FF 61 DF"), 7, NoninFrame(0x80, 0xFFFF, 0x61)),
    ],
)
def test_frame_golden_bytes(wire: bytes, fmt: int, frame: NoninFrame) -> None:
    assert encode_frame(frame, fmt) == wire  # type: ignore[arg-type]
    assert decode_frame(wire, fmt) == frame  # type: ignore[arg-type]


def test_status_bits_and_perfusion_classes() -> None:
    # 9560 OEM spec p. 9: RPRF is bit 2, GPRF bit 1; green 01, yellow 11, red 10.
    assert [perfusion(s) for s in (0x80, 0x82, 0x86, 0x84)] == [
        Perfusion.NONE,
        Perfusion.GREEN,
        Perfusion.YELLOW,
        Perfusion.RED,
    ]
    assert Status(0xBE) == (
        Status.ALWAYS_SET | Status.ARTF | Status.OOT | Status.SNSA | Status.YPRF
    )
    assert Status.SNSD == 0x40


HR_300 = (0x02, 0x2C)  # 300 = 0b10_0101100: MSB holds bits 8-7 (10), LSB bits 6-0
HR_MISSING = (0x03, 0x7F)  # 511


def _hand_packet_data() -> list[int]:
    """The 25 DATA bytes of a packet, laid out by hand from the spec's frame table."""
    return [
        *HR_300,  # 1-2 HR 300
        0x61,  # 3 SpO2 97
        0x2A,  # 4 SREV 42
        0xEE,  # 5 reserved (kept as sent)
        0x12,  # 6 TMR MSB
        0x34,  # 7 TMR LSB: timer = 0x12 << 7 | 0x34 = 2356
        0x21,  # 8 STAT2: SmartPoint + low battery
        0x60,  # 9 SpO2-D 96
        0x5F,  # 10 SpO2 fast 95
        MISSING_SPO2,  # 11 SpO2 beat-to-beat missing
        0x00,  # 12 reserved
        0xFF,  # 13 reserved
        0x00,  # 14 E-HR MSB
        0x48,  # 15 E-HR LSB: 72
        0x62,  # 16 E-SpO2 98
        0x63,  # 17 E-SpO2-D 99
        0x01,  # 18 reserved
        0x02,  # 19 reserved
        *HR_MISSING,  # 20-21 HR-D missing
        0x01,  # 22 E-HR-D MSB
        0x00,  # 23 E-HR-D LSB: 128
        0x03,  # 24 reserved
        0x04,  # 25 reserved
    ]


HAND_VALUES = PacketValues(
    hr_bpm=300,
    spo2_percent=97,
    firmware_revision=42,
    timer=2356,
    status2=0x21,
    spo2_d_percent=96,
    spo2_fast_percent=95,
    spo2_beat_percent=None,
    e_hr_bpm=72,
    e_spo2_percent=98,
    e_spo2_d_percent=99,
    hr_d_bpm=None,
    e_hr_d_bpm=128,
    reserved=(0xEE, 0x00, 0xFF, 0x01, 0x02, 0x03, 0x04),
)


def _hand_packet(fmt: int) -> bytes:
    out = bytearray()
    for index, data in enumerate(_hand_packet_data()):
        status = 0x83 if index == 0 else 0x82  # bit 7, green perfusion, SYNC on frame 1
        # #2: 01 STATUS PLETH DATA with pleth 0, 10, 20, ...; #7: STATUS MSB LSB DATA with
        # pleth 0x0080, 0x0181, ...
        head = [0x01, status, index * 10, data] if fmt == 2 else [status, index, 0x80 + index, data]
        out += bytes([*head, sum(head) % 256])
    return bytes(out)


@pytest.mark.parametrize("fmt", [2, 7])
def test_packet_built_by_hand_decodes_and_reencodes(fmt: int) -> None:
    wire = _hand_packet(fmt)
    assert len(wire) == PACKET_LENGTH
    packet = decode_packet(wire, fmt)  # type: ignore[arg-type]
    assert packet.values == HAND_VALUES
    assert packet.values.status2_flags == Status2.SPA | Status2.LOW_BATTERY
    assert packet.statuses == (0x83,) + (0x82,) * 24
    if fmt == 2:
        assert packet.pleth == tuple(range(0, 250, 10))
    else:
        assert packet.pleth == tuple((i << 8) | (0x80 + i) for i in range(25))
    again = encode_packet(HAND_VALUES, packet.pleth, fmt=fmt, status=Status.GPRF)  # type: ignore[arg-type]
    assert again == wire


def test_frame_data_table_follows_the_spec_order() -> None:
    assert len(FRAME_DATA) == FRAMES_PER_PACKET
    assert FRAME_DATA[0] == ("hr_bpm", "msb")
    assert FRAME_DATA[7] == ("status2", "byte")
    assert FRAME_DATA[21] == ("e_hr_d_bpm", "msb")
    named = {name for name, part in FRAME_DATA if part != "reserved"}
    assert named | {"reserved"} == set(PacketValues.__dataclass_fields__)


def test_missing_values_are_511_and_127() -> None:
    wire = encode_packet(PacketValues(), [0] * 25)
    data = [wire[i + 3] for i in range(0, PACKET_LENGTH, 5)]
    assert (data[0], data[1]) == HR_MISSING
    assert data[2] == MISSING_SPO2
    assert ((data[0] & 0x03) << 7 | data[1]) == MISSING_HR
    assert decode_packet(wire).values == PacketValues()


def test_encode_packet_forces_bit7_and_sync_on_the_first_frame_only() -> None:
    wire = encode_packet(PacketValues(), [0] * 25, status=[Status.SYNC | Status.ARTF] * 25)
    statuses = [wire[i + 1] for i in range(0, PACKET_LENGTH, 5)]
    assert statuses == [0xA1] + [0xA0] * 24


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: encode_frame(NoninFrame(0x01, 0, 0)), "bit 7"),
        (lambda: encode_frame(NoninFrame(0x80, 256, 0), 2), "0..255"),
        (lambda: encode_frame(NoninFrame(0x80, 65536, 0), 7), "0..65535"),
        (lambda: encode_frame(NoninFrame(0x80, 0, 0), 3), "2 or 7"),  # type: ignore[arg-type]
        (lambda: encode_packet(PacketValues(), [0] * 24), "24 pleth"),
        (lambda: encode_packet(PacketValues(), [0] * 25, status=[0] * 3), "3 STATUS"),
        (lambda: PacketValues(hr_bpm=511), "hr_bpm"),
        (lambda: PacketValues(spo2_percent=127), "spo2_percent"),
        (lambda: PacketValues(timer=1 << 14), "timer"),
        (lambda: PacketValues(reserved=(0,)), "reserved"),
        (lambda: Format8Record(status1=0x01), "status1"),
        (lambda: Format8Record(status2=0x80), "status2"),
        (lambda: encode_set_format(256), "0..255"),
    ],
)
def test_encoders_refuse_values_that_do_not_fit(call: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()  # type: ignore[operator]


@pytest.mark.parametrize(
    ("wire", "fmt", "message"),
    [
        (bytes.fromhex("01 81 40 00"), 2, "4 bytes"),
        (bytes.fromhex("02 81 40 00 C3"), 2, "first byte 01"),
        (bytes.fromhex("01 01 40 00 42"), 2, "bit 7"),
        (bytes.fromhex("01 81 40 00 C3"), 2, "checksum"),
        (bytes.fromhex("01 12 34 00 47"), 7, "bit 7"),
        (bytes.fromhex("81 12 34 00 C8"), 7, "checksum"),
    ],
)
def test_bad_frames_raise_protocol_error(wire: bytes, fmt: int, message: str) -> None:
    with pytest.raises(ProtocolError, match=message) as info:
        decode_frame(wire, fmt, device="spo2")  # type: ignore[arg-type]
    assert info.value.raw == wire


def test_packet_with_misplaced_sync_is_refused() -> None:
    wire = bytearray(_hand_packet(2))
    wire[5 * 3 + 1] |= 0x01  # SYNC on frame 4 ...
    wire[5 * 3 + 4] = (wire[5 * 3 + 4] + 1) % 256  # ... with a checksum that holds
    with pytest.raises(ProtocolError, match="SYNC set on frame 4"):
        decode_packet(bytes(wire))
    with pytest.raises(ProtocolError, match="SYNC missing"):
        decode_packet(_hand_packet(2)[5:] + _hand_packet(2)[5:10])


# --------------------------------------------------------------------------- format #8


@pytest.mark.parametrize(
    ("wire", "record"),
    [
        # HR 300 (bits 8-7 = 10 in STATUS1), OOT, SpO2 95, low battery: 80|20|02 = A2.
        (
            bytes.fromhex("A2 2C 5F 01"),
            Format8Record(hr_bpm=300, spo2_percent=95, status1=0x20, status2=0x01),
        ),
        # Missing values, marginal perfusion + artifact, sensor alarm + SmartPoint.
        (
            bytes.fromhex("8F 7F 7F 28"),
            Format8Record(status1=0x0C, status2=0x28),
        ),
        (bytes.fromhex("80 48 62 00"), Format8Record(hr_bpm=72, spo2_percent=98)),
    ],
)
def test_format8_golden_bytes(wire: bytes, record: Format8Record) -> None:
    assert encode_format8(record) == wire
    assert decode_format8(wire) == record


def test_format8_flags() -> None:
    record = decode_format8(bytes.fromhex("BF 7F 7F 29"))
    assert record.status1_flags == (
        Format8Status1.ALWAYS_SET
        | Format8Status1.OOT
        | Format8Status1.LPRF
        | Format8Status1.MPRF
        | Format8Status1.ARTF
    )
    assert record.status2_flags == (
        Format8Status2.SPA | Format8Status2.SNSA | Format8Status2.LOW_BATTERY
    )
    assert record.hr_bpm is None


@pytest.mark.parametrize("wire", [b"\x80\x00\x00", b"\x00\x48\x62\x00", b"\x80\x80\x62\x00"])
def test_format8_bad_records(wire: bytes) -> None:
    with pytest.raises(ProtocolError, match="#8"):
        decode_format8(wire)


# --------------------------------------------------------------------------- format select


@pytest.mark.parametrize(
    ("fmt", "wire"),
    [
        (2, bytes.fromhex("02 70 02 02 02 03")),
        (7, bytes.fromhex("02 70 02 02 07 03")),
        (8, bytes.fromhex("02 70 02 02 08 03")),
        (13, bytes.fromhex("02 70 02 02 0D 03")),
    ],
)
def test_format_select_golden_bytes(fmt: int, wire: bytes) -> None:
    assert encode_set_format(fmt) == wire
    assert parse_set_format(wire) == fmt


@pytest.mark.parametrize(
    "wire",
    [
        b"",
        bytes.fromhex("02 70 02 02 07"),
        bytes.fromhex("02 71 02 02 07 03"),
        b"\x02p\x02\x02\x07\x04",
    ],
)
def test_bad_format_select(wire: bytes) -> None:
    with pytest.raises(ProtocolError, match="format-select"):
        parse_set_format(wire)


def test_set_clock_golden_bytes_from_the_spec_example() -> None:
    # 9560 OEM spec p. 4: 12-31-2050 14:30:15 is 02 72 06 32 0C 1F 0E 1E 0F 03.
    wire = bytes.fromhex("02 72 06 32 0C 1F 0E 1E 0F 03")
    assert encode_set_time(datetime(2050, 12, 31, 14, 30, 15)) == wire
    assert parse_set_time(wire) == datetime(2050, 12, 31, 14, 30, 15)
    assert parse_command(wire) == NoninCommand(0x72, bytes.fromhex("32 0C 1F 0E 1E 0F"))


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        (bytes.fromhex("02 72 06 32 0D 1F 0E 1E 0F 03"), "no such date"),  # month 13
        (bytes.fromhex("02 72 06 64 0C 1F 0E 1E 0F 03"), "no such date"),  # year 100
        (bytes.fromhex("02 72 05 32 0C 1F 0E 1E 03"), "set-clock"),
        (bytes.fromhex("02 70 02 02 07 03"), "set-clock"),
    ],
)
def test_bad_set_clock(wire: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        parse_set_time(wire)


def test_set_clock_refuses_a_year_it_cannot_carry() -> None:
    with pytest.raises(ValueError, match="2000-2099"):
        encode_set_time(datetime(2100, 1, 1))


@pytest.mark.parametrize(
    "wire",
    [
        b"\x02\x70\x00",  # too short
        bytes.fromhex("03 70 00 03"),  # no STX
        bytes.fromhex("02 70 01 03"),  # size says one data byte, none before ETX
        bytes.fromhex("02 70 00 04"),  # no ETX
        bytes([STX, 0x70, MAX_COMMAND_DATA + 1]),
    ],
)
def test_bad_commands(wire: bytes) -> None:
    with pytest.raises(ProtocolError, match="not a Nonin command"):
        parse_command(wire)


def test_command_validation() -> None:
    assert NoninCommand(0x74, b"\x02\x02").encode() == bytes.fromhex("02 74 02 02 02 03")
    with pytest.raises(ValueError, match="op code"):
        NoninCommand(256)
    with pytest.raises(ValueError, match="at most"):
        NoninCommand(0x70, bytes(MAX_COMMAND_DATA + 1))


def test_command_framer_splits_commands_and_drops_noise() -> None:
    select = encode_set_format(7)
    clock = encode_set_time(datetime(2026, 12, 4, 20, 0, 0))
    framer = NoninCommandFramer()
    stream = b"\x00\xff" + select + b"\x06" + clock + select[:3]
    assert framer.feed(stream) == [select, clock]
    assert (framer.pending, framer.dropped) == (3, 3)
    assert framer.on_silence() == []
    assert (framer.pending, framer.dropped) == (0, 6)
    # One byte at a time gives the same commands.
    framer = NoninCommandFramer()
    assert [f for b in select + clock for f in framer.feed(bytes([b]))] == [select, clock]


def test_command_framer_ends_an_oversized_command_at_once() -> None:
    framer = NoninCommandFramer()
    frames = framer.feed(bytes([0x02, 0x70, 0xFF]) + encode_set_format(2))
    assert frames == [bytes([0x02, 0x70, 0xFF]), encode_set_format(2)]
    with pytest.raises(ProtocolError):
        parse_command(frames[0])
    assert framer.break_checksum(encode_set_format(2)) != encode_set_format(2)


@given(st.lists(st.binary(max_size=40), max_size=10))
def test_command_framer_fuzz(chunks: list[bytes]) -> None:
    framer = NoninCommandFramer()
    frames = [f for chunk in chunks for f in framer.feed(chunk)]
    assert all(f[0] == STX for f in frames)
    assert framer.dropped + framer.pending + sum(map(len, frames)) == sum(map(len, chunks))
    for frame in frames:
        try:
            parse_command(frame)
        except ProtocolError as exc:
            assert exc.raw == frame  # noqa: PT017 - every rejection carries the bytes


@given(
    st.lists(
        st.tuples(
            st.builds(NoninCommand, st.integers(0, 255), st.binary(max_size=MAX_COMMAND_DATA)),
            st.binary(max_size=6).filter(lambda b: STX not in b),
        ),
        max_size=5,
    )
)
def test_command_framer_recovers_every_command_behind_noise(
    items: list[tuple[NoninCommand, bytes]],
) -> None:
    framer = NoninCommandFramer()
    stream = b"".join(noise + command.encode() for command, noise in items)
    assert [parse_command(f) for f in framer.feed(stream)] == [c for c, _ in items]
    assert framer.dropped == sum(len(noise) for _, noise in items)


def test_ack_and_nak() -> None:
    assert parse_format_reply(bytes([ACK])) is True
    assert parse_format_reply(b"\x15") is False
    assert NAK == 0x15
    for bad in (b"", b"\x06\x06", b"\x00"):
        with pytest.raises(ProtocolError, match="ACK"):
            parse_format_reply(bad)


# --------------------------------------------------------------------------- streaming


def _packets(n: int, fmt: int = 2) -> list[bytes]:
    return [
        encode_packet(
            PacketValues(hr_bpm=60 + i, spo2_percent=90 + i, timer=i),
            [(i * 7 + k) % 256 for k in range(25)],
            fmt=fmt,  # type: ignore[arg-type]
        )
        for i in range(n)
    ]


def _counters(d: NoninStreamDecoder) -> tuple[int, int, int, int, int]:
    return (d.packets, d.bad_checksums, d.lost_sync, d.incomplete_packets, d.dropped_bytes)


@pytest.mark.parametrize("fmt", [2, 7])
def test_stream_any_chunking(fmt: int) -> None:
    stream = b"".join(_packets(4, fmt))
    decoder = NoninStreamDecoder(fmt=fmt)  # type: ignore[arg-type]
    out = [p for i in range(len(stream)) for p in decoder.feed(stream[i : i + 1])]
    assert out == [decode_packet(p, fmt) for p in _packets(4, fmt)]  # type: ignore[arg-type]
    assert _counters(decoder) == (4, 0, 0, 0, 0)
    assert decoder.synchronised


def test_stream_joined_mid_packet_waits_for_sync() -> None:
    first, second, third = _packets(3)
    decoder = NoninStreamDecoder()
    out = decoder.feed(first[37:] + second + third)
    assert [p.values.hr_bpm for p in out] == [61, 62]
    # 88 bytes of the cut packet are dropped: 3 single bytes to the next frame boundary,
    # then 17 valid frames without SYNC skipped whole.
    assert _counters(decoder) == (2, 0, 0, 0, PACKET_LENGTH - 37)


def test_stream_garbage_before_and_between_packets() -> None:
    packets = _packets(3)
    garbage = bytes([0x00, 0xFF, 0x7E, 0x81])  # no 01: cannot start a #2 frame
    decoder = NoninStreamDecoder()
    out = decoder.feed(garbage + packets[0] + garbage + packets[1] + packets[2])
    assert len(out) == 3
    # Garbage between packets breaks the expected SYNC once.
    assert _counters(decoder) == (3, 0, 1, 0, 2 * len(garbage))


def test_stream_bad_checksum_drops_that_packet_only() -> None:
    packets = _packets(3)
    bad = bytearray(packets[1])
    bad[5 * 6 + 4] ^= 0x01  # frame 7's CHK
    decoder = NoninStreamDecoder()
    out = decoder.feed(packets[0] + bytes(bad) + packets[2])
    assert [p.values.hr_bpm for p in out] == [60, 62]
    assert _counters(decoder) == (2, 1, 1, 1, PACKET_LENGTH)


def test_stream_lost_bytes_drop_that_packet_only() -> None:
    packets = _packets(3, fmt=7)
    lossy = packets[1][:52] + packets[1][54:]  # two bytes lost inside frame 11
    decoder = NoninStreamDecoder(fmt=7)
    out = decoder.feed(packets[0] + lossy + packets[2])
    assert [p.values.spo2_percent for p in out] == [90, 92]
    assert decoder.packets == 2
    assert decoder.incomplete_packets == 1
    assert decoder.lost_sync == 1
    assert decoder.dropped_bytes == len(lossy)


def test_stream_early_sync_starts_the_next_packet() -> None:
    packets = _packets(3)
    decoder = NoninStreamDecoder()
    out = decoder.feed(packets[0] + packets[1][:50] + packets[2])
    assert [p.values.timer for p in out] == [0, 2]
    assert _counters(decoder) == (2, 0, 1, 1, 50)


@pytest.mark.parametrize("fmt", [2, 7])
def test_stream_takes_ack_and_nak_out_between_frames(fmt: int) -> None:
    first, second = _packets(2, fmt)
    decoder = NoninStreamDecoder(fmt=fmt)  # type: ignore[arg-type]
    out = decoder.feed(first + second[:40] + bytes([ACK]))
    assert (len(out), decoder.replies, decoder.pending) == (1, [True], 40)
    out = decoder.feed(second[40:] + bytes([NAK]))
    assert [p.values.timer for p in out] == [1]
    assert decoder.replies == [True, False]
    assert (decoder.lost_sync, decoder.dropped_bytes) == (0, 0)


def test_stream_drops_a_reply_byte_while_hunting() -> None:
    decoder = NoninStreamDecoder()
    out = decoder.feed(bytes([ACK]) + _packets(1)[0])
    assert len(out) == 1
    assert (decoder.replies, decoder.dropped_bytes) == ([], 1)


def test_stream_reset_counts_pending_bytes() -> None:
    decoder = NoninStreamDecoder()
    decoder.feed(_packets(1)[0][:63])
    assert decoder.pending == 63
    decoder.reset()
    assert (decoder.pending, decoder.dropped_bytes, decoder.synchronised) == (0, 63, False)


def test_stream_refuses_unknown_format() -> None:
    with pytest.raises(ValueError, match="2 or 7"):
        NoninStreamDecoder(fmt=8)  # type: ignore[arg-type]


def test_format8_stream_resyncs_on_the_status_byte() -> None:
    records = [Format8Record(hr_bpm=100 + i, spo2_percent=90 + i) for i in range(3)]
    wire = [encode_format8(r) for r in records]
    decoder = Format8Decoder()
    out = decoder.feed(wire[0][2:] + b"\x00\x7f" + wire[1] + wire[2][:1])
    assert out == records[1:2]
    assert (decoder.records, decoder.dropped_bytes, decoder.pending) == (1, 4, 1)
    assert decoder.feed(wire[2][1:]) == records[2:]
    decoder.reset()
    assert decoder.pending == 0


# --------------------------------------------------------------------------- properties

hr = st.none() | st.integers(0, MISSING_HR - 1)
spo2 = st.none() | st.integers(0, MISSING_SPO2 - 1)
packet_values = st.builds(
    PacketValues,
    hr_bpm=hr,
    spo2_percent=spo2,
    firmware_revision=st.integers(0, 127),
    timer=st.integers(0, 0x3FFF),
    status2=st.integers(0, 127),
    spo2_d_percent=spo2,
    spo2_fast_percent=spo2,
    spo2_beat_percent=spo2,
    e_hr_bpm=hr,
    e_spo2_percent=spo2,
    e_spo2_d_percent=spo2,
    hr_d_bpm=hr,
    e_hr_d_bpm=hr,
    reserved=st.tuples(*[st.integers(0, 255)] * 7),
)


@st.composite
def packets(draw: st.DrawFn, fmt: int) -> tuple[PacketValues, list[int], list[int], bytes]:
    values = draw(packet_values)
    pleth = draw(st.lists(st.integers(0, 255 if fmt == 2 else 65535), min_size=25, max_size=25))
    status = draw(st.lists(st.integers(0, 255), min_size=25, max_size=25))
    return values, pleth, status, encode_packet(values, pleth, fmt=fmt, status=status)  # type: ignore[arg-type]


@pytest.mark.parametrize("fmt", [2, 7])
@given(data=st.data())
def test_packet_round_trip(fmt: int, data: st.DataObject) -> None:
    values, pleth, status, wire = data.draw(packets(fmt))
    packet = decode_packet(wire, fmt)  # type: ignore[arg-type]
    assert packet.values == values
    assert list(packet.pleth) == pleth
    assert [s & 0xFE for s in packet.statuses] == [(s | 0x80) & 0xFE for s in status]
    assert encode_packet(packet.values, packet.pleth, fmt=fmt, status=packet.statuses) == wire  # type: ignore[arg-type]


@given(
    st.builds(
        Format8Record,
        hr_bpm=hr,
        spo2_percent=spo2,
        status1=st.integers(0, 63).map(lambda b: b << 2),
        status2=st.integers(0, 127),
    )
)
def test_format8_round_trip(record: Format8Record) -> None:
    assert decode_format8(encode_format8(record)) == record


@given(
    st.tuples(
        st.integers(0x80, 0xFF), st.integers(0, 0x7F), st.integers(0, 0x7F), st.integers(0, 0x7F)
    ).map(bytes)
)
def test_format8_bytes_round_trip(wire: bytes) -> None:
    assert encode_format8(decode_format8(wire)) == wire


@given(st.binary(max_size=130), st.sampled_from([2, 7]))
def test_single_decoders_fuzz_raise_only_protocol_error(data: bytes, fmt: int) -> None:
    for decode in (
        lambda: decode_frame(data, fmt),  # type: ignore[arg-type]
        lambda: decode_packet(data, fmt),  # type: ignore[arg-type]
        lambda: decode_format8(data),
        lambda: parse_set_format(data),
        lambda: parse_set_time(data),
        lambda: parse_command(data),
        lambda: parse_format_reply(data),
    ):
        try:
            decode()
        except ProtocolError as exc:
            assert exc.raw == data  # noqa: PT017 - every rejection carries the bytes


@given(st.lists(st.binary(max_size=200), max_size=10), st.sampled_from([2, 7]))
def test_stream_fuzz_never_raises_and_accounts_for_every_byte(
    chunks: list[bytes], fmt: int
) -> None:
    decoder = NoninStreamDecoder(fmt=fmt)  # type: ignore[arg-type]
    out = [p for chunk in chunks for p in decoder.feed(chunk)]
    assert all(isinstance(p, NoninPacket) for p in out)
    fed = sum(map(len, chunks))
    assert decoder.packets == len(out)
    assert decoder.dropped_bytes == (
        fed - decoder.pending - PACKET_LENGTH * len(out) - len(decoder.replies)
    )
    assert decoder.lost_sync >= decoder.incomplete_packets


@given(st.lists(st.binary(max_size=40), max_size=10))
def test_format8_stream_fuzz(chunks: list[bytes]) -> None:
    decoder = Format8Decoder()
    out = [r for chunk in chunks for r in decoder.feed(chunk)]
    assert decoder.dropped_bytes == sum(map(len, chunks)) - decoder.pending - 4 * len(out)


@pytest.mark.parametrize("fmt", [2, 7])
@given(data=st.data())
def test_stream_recovers_every_packet_behind_garbage(fmt: int, data: st.DataObject) -> None:
    # Garbage that cannot start a frame (#2: no 01 byte; #7: no byte with bit 7 set), so
    # no false frame can begin in it, and holds no ACK/NAK byte (taken out as a reply);
    # every packet after it must come out intact.
    frame_start = (lambda b: b == 0x01) if fmt == 2 else (lambda b: b >= 0x80)
    byte = st.integers(0, 255).filter(lambda b: not frame_start(b) and b not in (ACK, NAK))
    garbage = st.lists(byte, max_size=12).map(bytes)
    items = data.draw(st.lists(st.tuples(packets(fmt), garbage), min_size=1, max_size=4))
    stream = b"".join(g + p[3] for p, g in items)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    decoder = NoninStreamDecoder(fmt=fmt)  # type: ignore[arg-type]
    out = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        out += decoder.feed(stream[start:end])
    assert [p.values for p in out] == [p[0] for p, _ in items]
    assert decoder.dropped_bytes == sum(len(g) for _, g in items)
    assert decoder.incomplete_packets == 0
