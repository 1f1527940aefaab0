"""One fault layer for every framing: the same plan acts the same way on NE-1000 safe-mode
packets and on Modbus RTU frames, and a streaming device pushes frames unasked.

The pure part (:func:`apply_reply_fault`) is checked frame by frame; the served part runs a
safe-mode NE-1000 and a Modbus RTU pump behind the one server with the same fault plan, a
raw client on each pty checking the bytes it receives.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from medtwin.drivers.clock import VirtualClock
from medtwin.drivers.emulators.faults import FaultPlan, apply_reply_fault
from medtwin.drivers.emulators.modbus import ModbusPumpEmulator
from medtwin.drivers.emulators.ne1000 import NE1000Emulator
from medtwin.drivers.emulators.physical_bench import PhysicalBench
from medtwin.drivers.emulators.server import EmulatorServer, ProtocolHandler
from medtwin.drivers.errors import ProtocolError
from medtwin.drivers.framing import BinaryStreamFramer, Framer
from medtwin.drivers.modbus.codec import RtuRequestFramer, rtu_crc, rtu_frame
from medtwin.drivers.ne1000.codec import NE1000Framer, decode_reply, encode_safe_packet
from medtwin.drivers.transport import ByteTransport, open_transport

NE1000_REPLY = encode_safe_packet(b"00S")
RTU_REPLY = rtu_frame(1, bytes.fromhex("0404000000C8"))


def _rtu_ok(frame: bytes) -> bool:
    return rtu_crc(frame[:-2]) == frame[-2:]


@pytest.mark.parametrize(
    ("framer", "reply"),
    [(NE1000Framer(), NE1000_REPLY), (RtuRequestFramer(), RTU_REPLY)],
    ids=["ne1000-safe", "modbus-rtu"],
)
def test_each_fault_acts_the_same_on_both_framings(framer: Framer[Any], reply: bytes) -> None:
    def outcome(spec: str) -> Any:
        # Seeded: the same plan puts the same garbage in front on every framing.
        return apply_reply_fault(
            FaultPlan.parse([spec], seed=7), reply, t_s=0.0, break_checksum=framer.break_checksum
        )

    garbage = FaultPlan.parse([], seed=7).garbage()
    assert outcome("garbage").data == garbage + reply
    broken = outcome("bad-checksum").data
    assert broken == framer.break_checksum(reply)
    assert len(broken) == len(reply)
    assert broken[-2] != reply[-2]  # both framings carry their check just before the end
    assert outcome("drop").data is None
    late = outcome("late:delay=2s")
    assert (late.data, late.late_s) == (reply, 2.0)
    gone = outcome("disconnect:for=5s")
    assert (gone.data, gone.disconnect_s) == (None, 5.0)
    assert outcome("drop:after=1h").fault is None


async def _client(port: str) -> ByteTransport:
    transport = open_transport(port, device="client")
    await transport.open()
    return transport


async def _ne1000_exchange(client: ByteTransport) -> bytes:
    await client.write(encode_safe_packet(b"DIS"))
    head = await client.read_exactly(2)
    return head + await client.read_exactly(head[1] - 1)


async def _modbus_exchange(client: ByteTransport) -> bytes:
    await client.write(rtu_frame(1, bytes.fromhex("0400000002")))
    return await client.read_exactly(9)  # address, FC, byte count, 2 registers, CRC


def _ne1000_ok(frame: bytes) -> bool:
    try:
        decode_reply(frame)
    except ProtocolError:
        return False
    return True


Exchange = Callable[[ByteTransport], Awaitable[bytes]]


@pytest.mark.parametrize(
    ("protocol", "exchange", "valid"),
    [("ne1000", _ne1000_exchange, _ne1000_ok), ("modbus", _modbus_exchange, _rtu_ok)],
    ids=["ne1000-safe", "modbus-rtu"],
)
async def test_the_served_plan_breaks_one_checksum_then_drops_one_reply(
    protocol: str, exchange: Exchange, valid: Callable[[bytes], bool]
) -> None:
    clock = VirtualClock()
    bench = PhysicalBench.default(clock=clock, seed=0)
    plan = FaultPlan.parse(["bad-checksum:count=1", "drop:every=3,count=1"], seed=1)
    emulator: NE1000Emulator | ModbusPumpEmulator
    if protocol == "ne1000":
        emulator = NE1000Emulator(
            bench.pump, clock=clock, faults=plan, safe_mode_timeout_s=30, power_on_alarm=False
        )
    else:
        emulator = ModbusPumpEmulator(bench.pump, clock=clock, faults=plan)
    port = await emulator.start()
    client = await _client(port)
    try:
        async with asyncio.timeout(5):
            assert not valid(await exchange(client))  # 1st reply: checksum broken
            assert valid(await exchange(client))  # 2nd: clean
        with pytest.raises(TimeoutError):  # 3rd: dropped
            async with asyncio.timeout(0.3):
                await exchange(client)
        await client.close()
        await asyncio.sleep(0.05)  # a Modbus slave resynchronises on line silence
        client = await _client(port)
        async with asyncio.timeout(5):
            assert valid(await exchange(client))
        kinds = [kind for _, kind in emulator.server.fault_log]
        assert kinds == ["bad-checksum", "drop"]
    finally:
        await client.close()
        await emulator.stop()


class _Oximeter(ProtocolHandler):
    """A streaming device: one Nonin-style 5-byte frame every poll, never asked."""

    device_name = "oximeter"
    poll_interval_s = 1 / 75

    def __init__(self) -> None:
        self.count = 0

    def new_framer(self) -> Framer[Any]:
        return BinaryStreamFramer(5, _nonin_valid)

    def handle(self, frame: bytes) -> list[bytes]:
        return []

    def unsolicited(self) -> list[bytes]:
        self.count += 1
        body = bytes((0x01, 0x80, self.count & 0xFF, 0x00))
        return [body + bytes((sum(body) & 0xFF,))]


def _nonin_valid(frame: bytes) -> bool:
    return frame[0] == 0x01 and frame[1] & 0x80 != 0 and (sum(frame[:4]) & 0xFF) == frame[4]


async def test_a_streaming_device_pushes_frames_at_its_rate_with_faults_left_alone() -> None:
    clock = VirtualClock()
    server = EmulatorServer(_Oximeter(), clock=clock, faults=FaultPlan.parse(["drop"]), pacing=None)
    port = await server.start_pty()
    client = await _client(port)
    framer = BinaryStreamFramer(5, _nonin_valid)
    frames: list[bytes] = []
    try:
        async with asyncio.timeout(5):
            while len(frames) < 30:
                frames += framer.feed(await client.read_exactly(5))
        # In order, none lost: reply faults act on replies, not on unsolicited output.
        counters = [frame[2] for frame in frames]
        assert counters == list(range(counters[0], counters[0] + len(counters)))
        assert server.fault_log == []
    finally:
        await client.close()
        await server.stop()
