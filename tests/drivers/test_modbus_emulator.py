"""The Modbus emulators at the byte level: RTU framing, CRC, the request/response PDUs
(including exception codes and Read Device Identification) and raw frames on the wire."""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from medtwin.drivers.base import PumpAlarm, PumpState
from medtwin.drivers.clock import VirtualClock
from medtwin.drivers.emulators.modbus import (
    ModbusBenchIOEmulator,
    ModbusPumpEmulator,
    modbus_t35_s,
)
from medtwin.drivers.emulators.pacing import Pacing
from medtwin.drivers.emulators.physical_bench import PhysicalBench
from medtwin.drivers.errors import ConfigurationError
from medtwin.drivers.modbus.codec import RtuFrame, RtuRequestFramer, mbap_frame, rtu_crc, rtu_frame

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[2]


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine from a synchronous (hypothesis) test."""
    return asyncio.run(coro)


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
def bench(clock: VirtualClock) -> PhysicalBench:
    # Seed 7: a fixed transducer-noise sequence, so a failure replays identically.
    return PhysicalBench.default(clock=clock, seed=7)


# --------------------------------------------------------------------------- CRC and framing


def test_crc_matches_the_specification_examples() -> None:
    # MODBUS over Serial Line V1.02, appendix B: the CRC of 02 07 is 0x1241, sent 41 12.
    assert rtu_crc(bytes.fromhex("0207")) == bytes.fromhex("4112")
    # Read holding registers 108-110 of slave 17 (Application Protocol V1.1b3 example).
    assert rtu_frame(0x11, bytes.fromhex("03006B0003")) == bytes.fromhex("1103006B00037687")


def test_crc_golden_read_of_ten_registers() -> None:
    assert rtu_frame(1, bytes.fromhex("030000000A")) == bytes.fromhex("01030000000AC5CD")


@pytest.mark.parametrize(
    "frame",
    [
        "01 04 00 00 00 0A 70 0D",
        "01 10 00 00 00 02 04 42 91 00 00 B6 3A",
        "01 06 00 04 00 01 09 CB",
    ],
)
def test_frames_quoted_in_the_docs(frame: str) -> None:
    raw = bytes.fromhex(frame)
    assert rtu_frame(raw[0], raw[1:-2]) == raw
    assert frame in (REPO / "docs" / "protocols" / "modbus.md").read_text()


def test_mbap_frame_golden() -> None:
    assert mbap_frame(1, 1, bytes.fromhex("0300000002")) == bytes.fromhex(
        "000100000006010300000002"
    )


def test_framer_reassembles_a_frame_fed_byte_by_byte() -> None:
    framer = RtuRequestFramer()
    frame = bytes.fromhex("01030000000AC5CD")
    out: list[RtuFrame] = []
    for byte in frame:
        out += framer.feed(bytes((byte,)))
    assert out == [RtuFrame(1, bytes.fromhex("030000000A"), frame)]
    assert framer.pending == 0


def test_framer_splits_back_to_back_frames_including_variable_length_ones() -> None:
    write = rtu_frame(1, bytes.fromhex("10 0000 0002 04 4291 0000"))
    read = rtu_frame(2, bytes.fromhex("0400000002"))
    frames = RtuRequestFramer().feed(write + read)
    assert [(f.device_id, f.pdu[0]) for f in frames] == [(1, 16), (2, 4)]


def test_framer_drops_a_corrupt_frame_until_the_line_is_silent() -> None:
    framer = RtuRequestFramer()
    good = rtu_frame(1, bytes.fromhex("0300000002"))
    bad = good[:-1] + bytes((good[-1] ^ 1,))
    assert framer.feed(bad) == []
    assert framer.feed(good) == []  # still inside the corrupted burst
    assert framer.errors == 1
    assert framer.on_silence() == []
    assert framer.feed(good) == [RtuFrame(1, good[1:-2], good)]


def test_framer_hands_an_unknown_function_with_good_crc_over_at_silence() -> None:
    framer = RtuRequestFramer()
    unknown = rtu_frame(1, bytes.fromhex("4101020304"))
    assert framer.feed(unknown) == []
    assert framer.on_silence() == [RtuFrame(1, unknown[1:-2], unknown, known=False)]
    assert framer.feed(b"\xff\xfe\x03") == []
    assert framer.on_silence() == []
    assert framer.errors == 1


@settings(max_examples=300)
@given(st.lists(st.binary(max_size=40), max_size=12), st.lists(st.booleans(), max_size=12))
def test_framer_fuzz_only_yields_frames_with_good_crc(
    chunks: list[bytes], quiet: list[bool]
) -> None:
    framer = RtuRequestFramer()
    frames: list[RtuFrame] = []
    for index, chunk in enumerate(chunks):
        frames += framer.feed(chunk)
        if index < len(quiet) and quiet[index]:
            frames += framer.on_silence()
    frames += framer.on_silence()
    for frame in frames:
        assert rtu_crc(frame.raw[:-2]) == frame.raw[-2:]
        assert frame.raw == bytes((frame.device_id,)) + frame.pdu + frame.raw[-2:]


@given(st.binary(min_size=1, max_size=30).map(lambda pdu: rtu_frame(1, pdu)))
def test_framer_finds_every_well_formed_known_request(frame: bytes) -> None:
    framer = RtuRequestFramer()
    found = framer.feed(frame) + framer.on_silence()
    for item in found:
        assert item.raw == frame or frame.startswith(item.raw)


def test_t35_follows_the_serial_line_spec() -> None:
    assert modbus_t35_s(Pacing(baud=9600, bits_per_char=11)) == pytest.approx(3.5 * 11 / 9600)
    assert modbus_t35_s(Pacing(baud=19200, bits_per_char=10)) == pytest.approx(3.5 * 10 / 19200)
    assert modbus_t35_s(Pacing(baud=115200)) == 1.75e-3
    assert modbus_t35_s(Pacing(baud=9600, interframe_chars=4.0)) == pytest.approx(4 * 10 / 9600)


# --------------------------------------------------------------------------- PDUs


def test_pump_register_reads_reflect_the_mechanism_now(
    bench: PhysicalBench, clock: VirtualClock
) -> None:
    emulator = ModbusPumpEmulator(bench.pump, clock=clock)
    bench.pump.set_rate_ml_h(72.5)
    bench.pump.start()
    clock.advance_to(600.0)
    reply = run(emulator.datastore.respond(bytes.fromhex("040000000A")))
    assert reply[:2] == bytes.fromhex("0414")
    words = struct.unpack(">10H", reply[2:])
    snap = bench.pump.snapshot()
    assert words[0] == 1  # infusing
    assert words[2:4] == (0x4291, 0x0000)  # 72.5 mL/h, float32 ABCD
    assert struct.unpack(">f", reply[10:14])[0] == pytest.approx(snap.infused_ml, rel=1e-6)
    assert struct.unpack(">I", reply[18:22])[0] == 600
    assert snap.state is PumpState.INFUSING


@pytest.mark.parametrize(
    ("request_hex", "reply_hex"),
    [
        ("0800000000", "8801"),  # diagnostics: not implemented
        ("1800000000", "9801"),  # read FIFO queue: not implemented
        ("030000007E", "8303"),  # 126 registers: quantity out of range
        ("0300000000", "8303"),  # 0 registers
        ("01000007D1", "8103"),  # 2001 coils
        ("03FFFF0002", "8302"),  # runs past address 65535
        ("0300040001", "8302"),  # the command register is write-only
        ("0300050001", "8302"),  # undeclared address
        ("0400000001", "04020000"),  # state: stopped
        ("0600040009", "8603"),  # command 9 is not a command
        ("0600000000", "8602"),  # half of a float32
        ("0500000000", "8502"),  # no coil on the pump
        ("0600010000", "8602"),  # still half of a float32
        ("1000000002044291000000", "9003"),  # byte count 4 but 5 data bytes
        ("10000000020344910000", "9003"),  # byte count disagrees with the quantity
        ("100000000204C2910000", "9003"),  # -72.5 mL/h: outside the map's limits
        ("17000000020000000102000A", "9702"),  # FC 23 writing half of a float32
    ],
)
def test_exception_codes_follow_the_specification(
    bench: PhysicalBench, clock: VirtualClock, request_hex: str, reply_hex: str
) -> None:
    emulator = ModbusPumpEmulator(bench.pump, clock=clock)
    assert run(emulator.datastore.respond(bytes.fromhex(request_hex))).hex() == reply_hex.lower()


def test_a_write_the_mechanism_refuses_is_exception_3(
    bench: PhysicalBench, clock: VirtualClock
) -> None:
    emulator = ModbusPumpEmulator(bench.pump, clock=clock)
    # 1500 mL/h is inside the map's limits but beyond the drive with a 4.7 mm syringe.
    bench.pump.set_diameter_mm(4.7)
    assert run(emulator.datastore.respond(bytes.fromhex("10000000020444BB8000"))).hex() == "9003"
    assert bench.pump.snapshot().rate_setpoint_ml_h == 0.0
    bench.pump.raise_alarm(PumpAlarm.OCCLUSION)
    assert run(emulator.datastore.respond(bytes.fromhex("0600040001"))).hex() == "8603"


def test_writes_reach_the_mechanism_and_echo(bench: PhysicalBench, clock: VirtualClock) -> None:
    emulator = ModbusPumpEmulator(bench.pump, clock=clock)
    store = emulator.datastore
    assert run(store.respond(bytes.fromhex("1000000002044291 0000"))) == bytes.fromhex("1000000002")
    assert bench.pump.snapshot().rate_setpoint_ml_h == 72.5
    assert run(store.respond(bytes.fromhex("0600040001"))) == bytes.fromhex("0600040001")
    assert bench.pump.snapshot().state is PumpState.INFUSING
    assert run(store.respond(bytes.fromhex("0600040002"))) == bytes.fromhex("0600040002")
    assert bench.pump.snapshot().state is PumpState.STOPPED
    # Mask write (FC 22) and read/write (FC 23) go through the same checks.
    assert run(store.respond(bytes.fromhex("1600000000FFFF"))).hex() == "9602"
    reply = run(store.respond(bytes.fromhex("17 0000 0002 0000 0002 04 41200000")))
    assert reply == bytes.fromhex("1704") + struct.pack(">f", 10.0)
    assert bench.pump.snapshot().rate_setpoint_ml_h == 10.0


def test_bench_io_coil_status_and_saturation(bench: PhysicalBench, clock: VirtualClock) -> None:
    emulator = ModbusBenchIOEmulator(bench.bench_io, clock=clock)
    store = emulator.datastore
    assert run(store.respond(bytes.fromhex("050000FF00"))) == bytes.fromhex("050000FF00")
    assert bench.bench_io.occluded() is True
    assert run(store.respond(bytes.fromhex("0100000001"))) == bytes.fromhex("010101")
    assert run(store.respond(bytes.fromhex("0200000001"))) == bytes.fromhex("020101")
    assert run(store.respond(bytes.fromhex("0500001234"))).hex() == "8503"
    assert run(store.respond(bytes.fromhex("0100010001"))).hex() == "8102"
    assert run(store.respond(bytes.fromhex("0F 0000 0002 01 01"))).hex() == "8f02"
    assert run(store.respond(bytes.fromhex("0F 0000 0001 01 00"))) == bytes.fromhex("0F00000001")
    assert bench.bench_io.occluded() is False
    reply = run(store.respond(bytes.fromhex("0400000005")))
    pressure = struct.unpack(">f", reply[2:6])[0]
    assert -100.0 <= pressure <= 2500.0
    assert struct.unpack(">H", reply[6:8])[0] == 0  # in range: no status bits


def test_bench_io_pressure_saturates_and_flags_over_range(clock: VirtualClock) -> None:
    class HighPressure:
        model = "T"
        serial = "1"

        def set_occluded(self, occluded: bool) -> None: ...

        def occluded(self) -> bool:
            return True

        def pressure_mmhg(self) -> float:
            return 4000.0

    emulator = ModbusBenchIOEmulator(HighPressure(), clock=clock)
    reply = run(emulator.datastore.respond(bytes.fromhex("0400000003")))
    assert struct.unpack(">fH", reply[2:8]) == (2500.0, 0b01)


@pytest.mark.parametrize(
    ("request_hex", "ids"),
    [
        ("2B0E0100", [0, 1, 2]),  # basic
        ("2B0E0200", [0, 1, 2, 4, 5]),  # regular
        ("2B0E0300", [0, 1, 2, 4, 5, 0x80]),  # extended: the serial is private object 0x80
        ("2B0E0380", [0x80]),  # stream from object 0x80
        ("2B0E0480", [0x80]),  # individual access
        ("2B0E0102", [2]),
        ("2B0E0150", [0, 1, 2]),  # not a basic object: the stream restarts at 0
    ],
)
def test_read_device_identification(
    bench: PhysicalBench, clock: VirtualClock, request_hex: str, ids: list[int]
) -> None:
    pump = bench.pump
    every = {
        0: b"medtwin",
        1: pump.model.encode(),
        2: pump.firmware.encode(),
        4: b"Reference infusion-pump test interface",
        5: pump.model.encode(),
        0x80: pump.serial.encode(),
    }
    emulator = ModbusPumpEmulator(pump, clock=clock)
    reply = run(emulator.datastore.respond(bytes.fromhex(request_hex)))
    # function, MEI type, read code, conformity 0x83, more follows 0, next object 0, count
    assert reply[:7] == bytes((0x2B, 0x0E, bytes.fromhex(request_hex)[2], 0x83, 0, 0, len(ids)))
    found: dict[int, bytes] = {}
    at = 7
    for _ in range(len(ids)):
        key, size = reply[at], reply[at + 1]
        found[key] = reply[at + 2 : at + 2 + size]
        at += 2 + size
    assert at == len(reply)
    assert found == {key: every[key] for key in ids}


def test_read_device_identification_splits_long_answers(clock: VirtualClock) -> None:
    class Verbose:
        model = "M" * 200
        serial = "S" * 200

        def set_occluded(self, occluded: bool) -> None: ...

        def occluded(self) -> bool:
            return False

        def pressure_mmhg(self) -> float:
            return 0.0

    emulator = ModbusBenchIOEmulator(Verbose(), clock=clock)
    first = run(emulator.datastore.respond(bytes.fromhex("2B0E0300")))
    assert len(first) <= 253
    more, next_id, count = first[4], first[5], first[6]
    assert more == 0xFF
    rest = run(emulator.datastore.respond(bytes((0x2B, 0x0E, 3, next_id))))
    assert rest[4] in (0x00, 0xFF)
    assert count >= 1
    assert rest[6] >= 1


@pytest.mark.parametrize(
    ("request_hex", "reply_hex"),
    [("2B0E0410", "ab02"), ("2B0E0500", "ab03"), ("2B0D0100", "ab01"), ("2B0E01", "ab03")],
)
def test_read_device_identification_errors(
    bench: PhysicalBench, clock: VirtualClock, request_hex: str, reply_hex: str
) -> None:
    emulator = ModbusPumpEmulator(bench.pump, clock=clock)
    assert run(emulator.datastore.respond(bytes.fromhex(request_hex))).hex() == reply_hex


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=1, max_size=60))
def test_random_request_pdus_always_get_a_response_pdu(pdu: bytes) -> None:
    clock = VirtualClock()
    bench = PhysicalBench.default(clock=clock, seed=7)
    emulator = ModbusPumpEmulator(bench.pump, clock=clock)
    reply = run(emulator.datastore.respond(pdu))
    assert reply[0] & 0x7F == pdu[0] & 0x7F
    if reply[0] & 0x80:
        assert len(reply) == 2
        assert reply[1] in (1, 2, 3, 4)


def test_emulator_configuration_errors(
    bench: PhysicalBench, clock: VirtualClock, tmp_path: Any
) -> None:
    with pytest.raises(ConfigurationError, match=r"expected 1\.\.247"):
        ModbusPumpEmulator(bench.pump, clock=clock, device_id=0)
    with pytest.raises(ConfigurationError, match="cannot serve 'pinch_valve'"):
        ModbusPumpEmulator(bench.pump, clock=clock, register_map="bench_io")
    with pytest.raises(ConfigurationError, match="loopback only"):
        run(ModbusPumpEmulator(bench.pump, clock=clock).start(tcp=("0.0.0.0", 0)))


# --------------------------------------------------------------------------- raw frames


def _is_symlink(path: str) -> bool:
    return Path(path).is_symlink()


@contextlib.asynccontextmanager
async def serving(emulator: ModbusPumpEmulator, **start: Any) -> AsyncIterator[str]:
    port = await emulator.start(**start)
    try:
        yield port
    finally:
        await emulator.stop()


async def test_raw_rtu_frames_on_the_pty(bench: PhysicalBench, clock: VirtualClock) -> None:
    emulator = ModbusPumpEmulator(bench.pump, clock=clock)
    async with serving(emulator) as port:
        assert _is_symlink(port)
        fd = os.open(port, os.O_RDWR | os.O_NOCTTY)
        try:
            loop = asyncio.get_running_loop()
            received = asyncio.Queue[bytes]()
            loop.add_reader(fd, lambda: received.put_nowait(os.read(fd, 256)))
            try:
                os.write(fd, bytes.fromhex("01 04 00 00 00 01 31 CA"))
                async with asyncio.timeout(2):
                    reply = await received.get()
                    while len(reply) < 7:
                        reply += await received.get()
                assert reply == rtu_frame(1, bytes.fromhex("04020000"))
                # A request for slave 2 gets no answer; slave 1 answers the next one.
                os.write(fd, rtu_frame(2, bytes.fromhex("0400000001")))
                os.write(fd, rtu_frame(1, bytes.fromhex("0800000000")))
                async with asyncio.timeout(2):
                    reply = await received.get()
                    while len(reply) < 5:
                        reply += await received.get()
                assert reply == rtu_frame(1, bytes.fromhex("8801"))
            finally:
                loop.remove_reader(fd)
        finally:
            os.close(fd)


async def test_raw_mbap_frames_on_tcp(bench: PhysicalBench, clock: VirtualClock) -> None:
    bench.pump.set_rate_ml_h(72.5)
    emulator = ModbusPumpEmulator(bench.pump, clock=clock)
    async with serving(emulator, tcp=("127.0.0.1", 0)) as port:
        assert port.startswith("tcp://127.0.0.1:")
        reader, writer = await asyncio.open_connection("127.0.0.1", int(port.rsplit(":", 1)[1]))
        try:
            async with asyncio.timeout(2):
                writer.write(bytes.fromhex("000100000006010300000002"))
                assert await reader.readexactly(13) == bytes.fromhex("00010000000701030442910000")
                # Unit 0xFF addresses the device itself; unit 9 is another device behind a
                # gateway that does not exist: exception 0x0B.
                writer.write(bytes.fromhex("0002 0000 0006 FF 04 0000 0001"))
                assert await reader.readexactly(11) == bytes.fromhex("0002 0000 0005 FF 04 02 0000")
                writer.write(bytes.fromhex("0003 0000 0006 09 04 0000 0001"))
                assert await reader.readexactly(9) == bytes.fromhex("0003 0000 0003 09 84 0B")
        finally:
            writer.close()
            await writer.wait_closed()
