"""The Masimo and Nonin emulators byte for byte, on a fake oximeter mechanism and a fake
wall clock (no I/O): what each unit carries, the stream rate, the format switch, faults."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from datetime import datetime

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from medtwin.drivers.clock import VirtualClock
from medtwin.drivers.emulators.faults import FaultPlan
from medtwin.drivers.emulators.masimo import MasimoProtocol
from medtwin.drivers.emulators.mechanisms import OximeterSnapshot
from medtwin.drivers.emulators.nonin import NoninProtocol, packet_values
from medtwin.drivers.masimo.codec import MasimoLineDecoder, parse_line
from medtwin.drivers.nonin.codec import (
    ACK,
    NAK,
    Format8Decoder,
    NoninStreamDecoder,
    Status,
    decode_packet,
    encode_packet,
    encode_set_format,
    encode_set_time,
)
from medtwin.drivers.nonin.codec import (
    PacketValues as PacketValues,
)

NORMAL = OximeterSnapshot(
    t_s=45.0,
    spo2_percent=97.4,
    pulse_rate_bpm=72.6,
    pi_percent=3.6,
    sensor_off=False,
    searching=False,
    low_perfusion=False,
    artifact=False,
    signal_loss=False,
    alarms=frozenset(),
    extended={},
)


@dataclass
class FakeOximeter:
    """An OximeterMechanism with a fixed snapshot and a flat pleth of 0.5."""

    snap: OximeterSnapshot = NORMAL
    model: str = "fake"
    serial: str = "SN12345"
    firmware: str = "41"
    asked: list[float] = field(default_factory=list)

    def snapshot(self) -> OximeterSnapshot:
        return self.snap

    def pleth(self, t_s: list[float]) -> list[float]:
        seq = self.asked[-1:] + list(t_s)
        assert all(b > a for a, b in itertools.pairwise(seq))  # ascending, no repeat
        self.asked += t_s
        return [0.5] * len(t_s)


class FakeWall:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def nonin(fmt: int = 2, snap: OximeterSnapshot = NORMAL) -> tuple[NoninProtocol, FakeWall]:
    wall = FakeWall()
    clock = VirtualClock()
    clock.advance_to(45.0)
    return NoninProtocol(FakeOximeter(snap), clock=clock, data_format=fmt, wall_time=wall), wall


def stream(handler: NoninProtocol | MasimoProtocol) -> bytes:
    return b"".join(handler.unsolicited())


def first_packet(handler: NoninProtocol, wall: FakeWall) -> bytes:
    """The 25 frames of the first packet: the stream starts at the first poll."""
    data = stream(handler)
    wall.t += 24 / 75
    return data + stream(handler)


def test_nonin2_sends_75_frames_a_second_by_the_wall_clock() -> None:
    handler, wall = nonin(2)
    data = stream(handler)
    assert len(data) == 5  # the first frame at once
    while wall.t < 110.0 - 0.02:  # polls off the frame grid: the count follows the wall
        wall.t += 0.0173
        data += stream(handler)
    wall.t = 110.0
    data += stream(handler)
    assert len(data) == 5 * 751


def test_nonin2_packet_carries_the_snapshot() -> None:
    handler, wall = nonin(2)
    packet = decode_packet(first_packet(handler, wall), 2)
    assert packet.values == packet_values(NORMAL, timer=0, firmware_revision=41)
    assert packet.values.hr_d_bpm == 73
    assert packet.values.spo2_d_percent == 97
    assert packet.values.e_spo2_percent is None  # no extended values: missing 127
    assert packet.pleth == (128,) * 25  # 0.5 in 8 bits
    assert packet.statuses[0] == 0x80 | Status.GPRF | Status.SYNC
    assert set(packet.statuses[1:]) == {0x80 | Status.GPRF}


def test_nonin7_golden_first_frame_and_16_bit_pleth() -> None:
    handler, wall = nonin(7)
    # STATUS 0x83 (bit 7, green, SYNC), pleth 0x8000 (0.5 of 65535 rounds to 32768),
    # HR MSB 0; CHK = 83 + 80 + 00 + 00 = 0x103 -> 03.
    assert stream(handler) == bytes.fromhex("83 80 00 00 03")
    wall.t += 24 / 75
    assert len(stream(handler)) == 24 * 5


def test_sensor_off_sends_missing_recording_values_and_snsa() -> None:
    off = replace(NORMAL, sensor_off=True, spo2_percent=None, pulse_rate_bpm=None)
    handler, wall = nonin(2, off)
    packet = decode_packet(first_packet(handler, wall), 2)
    assert packet.values.hr_bpm is None
    assert packet.values.spo2_percent is None
    assert all(s & Status.SNSA for s in packet.statuses)
    assert not any(s & (Status.GPRF | Status.RPRF) for s in packet.statuses)


def test_extended_values_and_low_perfusion() -> None:
    snap = replace(
        NORMAL,
        low_perfusion=True,
        extended={"spo2_extended_percent": 96.0, "hr_extended_bpm": 71.0},
    )
    handler, wall = nonin(2, snap)
    packet = decode_packet(first_packet(handler, wall), 2)
    assert (packet.values.e_spo2_percent, packet.values.e_hr_bpm) == (96, 71)
    assert (packet.values.e_spo2_d_percent, packet.values.e_hr_d_bpm) == (96, 71)
    assert all(s & Status.YPRF == Status.RPRF for s in packet.statuses)


def test_nonin8_golden_record_once_a_second() -> None:
    handler, wall = nonin(8)
    # STATUS1 0x80 (HR bits 8-7 = 0), HR LSB 73 = 0x49, SpO2 97 = 0x61, STATUS2 0.
    assert stream(handler) == bytes.fromhex("80 49 61 00")
    wall.t += 0.9
    assert stream(handler) == b""
    wall.t += 0.1
    assert len(stream(handler)) == 4


def test_format_select_is_acked_and_switches_the_stream() -> None:
    handler, _wall = nonin(2)
    stream(handler)
    assert handler.feed(encode_set_format(8)) == [bytes((ACK,))]
    assert stream(handler) == bytes.fromhex("80 49 61 00")
    assert handler.feed(encode_set_format(13)) == [bytes((NAK,))]
    assert handler.feed(b"\x02\x55\x00\x03") == [bytes((NAK,))]
    assert handler.feed(encode_set_time(datetime(2026, 12, 4, 20, 0, 0))) == []
    assert handler.clock_set == [datetime(2026, 12, 4, 20, 0, 0)]
    assert handler.data_format == 8
    assert (handler.acks, handler.naks) == (1, 2)


@pytest.mark.parametrize(
    ("spec", "counter"),
    [
        ("bad-checksum:every=30", "bad_checksums"),
        ("lost-sync:every=30", "lost_sync"),
        ("drop:every=30", "incomplete_packets"),
    ],
)
def test_nonin_stream_faults_reach_the_decoder(spec: str, counter: str) -> None:
    handler, wall = nonin(2)
    plan = FaultPlan.parse([spec], seed=1)
    handler.faults_source = lambda: plan
    decoder = NoninStreamDecoder(fmt=2)
    decoded = 0
    for _ in range(300):
        wall.t += 1 / 75
        decoded += len(decoder.feed(stream(handler)))
    assert getattr(decoder, counter) > 0
    assert decoded > 0  # readings go on between the faults


def test_nonin8_faults_are_dropped_bytes() -> None:
    handler, wall = nonin(8)
    plan = FaultPlan.parse(["bad-checksum:every=2"], seed=1)
    handler.faults_source = lambda: plan
    decoder = Format8Decoder()
    records = []
    for _ in range(10):
        wall.t += 1.0
        records += decoder.feed(stream(handler))
    assert decoder.dropped_bytes > 0
    assert records


def test_masimo_golden_line() -> None:
    wall = FakeWall()
    clock = VirtualClock()
    handler = MasimoProtocol(FakeOximeter(), clock=clock, wall_time=wall)
    line = stream(handler)
    assert line == (
        b"01/01/26 00:00:45 SN=0000012345 SPO2=097% BPM=073 PI=03.60% SPCO=--.-% "
        b"SPMET=--.-% DESAT=-- PIDELTA=+-- ALARM=0000 EXC=000800\r\n"
    )
    wall.t += 0.99
    assert stream(handler) == b""
    wall.t += 0.01
    assert len(stream(handler)) == len(line)


def test_masimo_alarms_and_exceptions() -> None:
    snap = replace(
        NORMAL,
        spo2_percent=None,
        pi_percent=None,
        searching=True,
        low_perfusion=True,
        artifact=True,
        alarms=frozenset({"spo2_low", "hr_high", "spo2_sensor_off"}),
    )
    handler = MasimoProtocol(
        FakeOximeter(snap), clock=VirtualClock(), wall_time=FakeWall(), variant="radical7"
    )
    reading = parse_line(stream(handler))
    assert reading.spo2_percent is None
    assert reading.pi_percent is None
    assert reading.alarm == 0x02 | 0x04 | 0x10
    assert reading.exceptions == 0x800 | 0x008 | 0x004 | 0x400
    assert reading.pvi_percent is None


def test_masimo_stream_faults_are_counted() -> None:
    wall = FakeWall()
    handler = MasimoProtocol(FakeOximeter(), clock=VirtualClock(), wall_time=wall)
    plan = FaultPlan.parse(["bad-checksum:every=3", "lost-sync:every=4"], seed=1)
    handler.faults_source = lambda: plan
    decoder = MasimoLineDecoder()
    lines = []
    for _ in range(24):
        wall.t += 1.0
        lines += decoder.feed(stream(handler))
    assert decoder.bad_lines > 0
    assert len(lines) >= 12


@settings(max_examples=60, deadline=None)
@given(
    fmt=st.sampled_from([2, 7]),
    seed=st.integers(0, 2**32 - 1),
    chunk=st.integers(1, 700),
)
def test_bulk_and_frame_by_frame_decoding_agree(fmt: int, seed: int, chunk: int) -> None:
    """Whole packets are decoded together when in step; fed a byte at a time the decoder
    goes frame by frame. Both give the same packets and counters on a faulty stream."""
    rng = np.random.default_rng(seed)
    packets = [
        encode_packet(
            PacketValues(
                hr_bpm=int(rng.integers(0, 511)) if rng.random() < 0.9 else None,
                spo2_percent=int(rng.integers(0, 127)),
                timer=int(rng.integers(0, 16384)),
                e_hr_bpm=None,
            ),
            rng.integers(0, 256 if fmt == 2 else 65536, size=25).tolist(),
            fmt=fmt,  # type: ignore[arg-type]
            status=int(rng.integers(0, 128)) & 0x7E,
        )
        for _ in range(12)
    ]
    data = bytearray(b"".join(packets))
    for _ in range(int(rng.integers(0, 4))):  # corrupt a few bytes anywhere
        data[int(rng.integers(0, len(data)))] ^= int(rng.integers(1, 256))
    whole, single = NoninStreamDecoder(fmt=fmt), NoninStreamDecoder(fmt=fmt)  # type: ignore[arg-type]
    got_whole = [p for i in range(0, len(data), chunk) for p in whole.feed(data[i : i + chunk])]
    got_single = [p for i in range(len(data)) for p in single.feed(data[i : i + 1])]
    assert got_whole == got_single
    counters = ("packets", "bad_checksums", "lost_sync", "incomplete_packets", "dropped_bytes")
    assert [getattr(whole, c) for c in counters] == [getattr(single, c) for c in counters]
