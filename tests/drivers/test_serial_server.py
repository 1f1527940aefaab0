"""The emulator server: pty with a stable link, TCP, every reply fault, pacing, polling.

A small line protocol defined here isolates the server from any real device:
``WORD\\r`` is answered ``<WORD>\\r`` with a one-byte checksum, ``BOOM\\r`` makes the
handler raise, and ``unsolicited`` hands out whatever the test queued.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from medtwin.drivers.clock import VirtualClock
from medtwin.drivers.emulators.faults import FaultPlan
from medtwin.drivers.emulators.pacing import Pacing
from medtwin.drivers.emulators.server import EmulatorServer, ProtocolHandler, SerialDeviceEmulator
from medtwin.drivers.errors import PortError
from medtwin.drivers.transport import ByteTransport, open_transport


class LineHandler(ProtocolHandler):
    device_name = "line"

    def __init__(self, mechanism: object = None, *, clock: object = None, tag: str = "") -> None:
        self.buffer = b""
        self.queued: list[bytes] = []
        self.tag = tag
        self.resets = 0
        self.failed: asyncio.Event | None = None

    def feed(self, data: bytes) -> list[bytes]:
        self.buffer += data
        replies = []
        while b"\r" in self.buffer:
            line, _, self.buffer = self.buffer.partition(b"\r")
            if line == b"BOOM":
                self.buffer = b""
                if self.failed is not None:
                    self.failed.set()
                raise RuntimeError("handler bug")
            body = b"<" + self.tag.encode() + line + b">"
            replies.append(body + bytes([sum(body) & 0x7F]) + b"\r")
        return replies

    def unsolicited(self) -> list[bytes]:
        out, self.queued = self.queued, []
        return out

    def corrupt_checksum(self, reply: bytes) -> bytes:
        return reply[:-2] + bytes([reply[-2] ^ 0x01]) + reply[-1:]

    def reset_input(self) -> None:
        self.buffer = b""
        self.resets += 1


def checksum_ok(reply: bytes) -> bool:
    return (sum(reply[:-2]) & 0x7F) == reply[-2]


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


async def serve(
    clock: VirtualClock,
    *,
    faults: FaultPlan | None = None,
    pacing: Pacing | None = None,
    tcp: bool = False,
) -> EmulatorServer:
    server = EmulatorServer(LineHandler(), clock=clock, faults=faults, pacing=pacing)
    if tcp:
        await server.start_tcp()
    else:
        await server.start_pty()
    return server


@pytest.fixture
async def pty_server(clock: VirtualClock) -> AsyncIterator[EmulatorServer]:
    server = await serve(clock)
    yield server
    await server.stop()


async def connect(port: str) -> ByteTransport:
    transport = open_transport(port, device="client")
    await transport.open()
    return transport


async def ask(transport: ByteTransport, word: bytes) -> bytes:
    await transport.write(word + b"\r")
    return await transport.read_until(b"\r")


async def test_pty_link_points_at_the_slave(pty_server: EmulatorServer) -> None:
    link = Path(pty_server.port)
    assert link.parent.name.startswith("medtwin-emu-")
    assert str(link.readlink()) == pty_server.slave_path  # noqa: ASYNC240 - a symlink read
    assert pty_server.slave_path is not None
    assert pty_server.slave_path.startswith("/dev/pts/")
    client = await connect(pty_server.port)
    try:
        async with asyncio.timeout(5):
            reply = await ask(client, b"HELLO")
        assert reply.startswith(b"<HELLO>")
        assert checksum_ok(reply)
        assert pty_server.bytes_received == 6
        assert pty_server.rx_log[-1][1] == b"HELLO\r"
    finally:
        await client.close()


async def test_stop_releases_everything(clock: VirtualClock) -> None:
    server = await serve(clock)
    link = Path(server.port)
    await server.stop()
    await server.stop()  # idempotent
    assert not link.parent.exists()
    assert server.slave_path is None


async def test_tcp_serves_on_loopback(clock: VirtualClock) -> None:
    server = await serve(clock, tcp=True)
    try:
        assert server.port.startswith("socket://127.0.0.1:")
        client = await connect(server.port)
        try:
            async with asyncio.timeout(5):
                assert (await ask(client, b"PING")).startswith(b"<PING>")
        finally:
            await client.close()
    finally:
        await server.stop()


async def test_handler_failure_does_not_stop_the_server(pty_server: EmulatorServer) -> None:
    client = await connect(pty_server.port)
    try:
        failed = asyncio.Event()
        pty_server.handler.failed = failed  # type: ignore[attr-defined]
        await client.write(b"BOOM\r")
        async with asyncio.timeout(5):
            await failed.wait()
            assert (await ask(client, b"AFTER")).startswith(b"<AFTER>")
    finally:
        await client.close()


async def test_garbage_fault_prefixes_seeded_random_bytes(clock: VirtualClock) -> None:
    # Seed 7: any fixed seed works; the same seed must give the same bytes twice.
    server = await serve(clock, faults=FaultPlan.parse(["garbage:count=1"], seed=7))
    expected = FaultPlan.parse(["garbage:count=1"], seed=7).garbage()
    client = await connect(server.port)
    try:
        async with asyncio.timeout(5):
            await client.write(b"A\r")
            first = await client.read_exactly(len(expected))
            assert first == expected
            assert (await client.read_until(b"\r")).startswith(b"<A>")
            assert (await ask(client, b"B")).startswith(b"<B>")  # count=1: once only
        assert [kind for _, kind in server.fault_log] == ["garbage"]
    finally:
        await client.close()
        await server.stop()


async def test_bad_checksum_fault_uses_the_handler(clock: VirtualClock) -> None:
    server = await serve(clock, faults=FaultPlan.parse(["bad-checksum:every=2"]))
    client = await connect(server.port)
    try:
        async with asyncio.timeout(5):
            assert checksum_ok(await ask(client, b"ONE"))
            assert not checksum_ok(await ask(client, b"TWO"))
            assert checksum_ok(await ask(client, b"THREE"))
    finally:
        await client.close()
        await server.stop()


async def test_drop_fault_sends_nothing_for_that_reply(clock: VirtualClock) -> None:
    server = await serve(clock, faults=FaultPlan.parse(["drop:count=1"]))
    client = await connect(server.port)
    try:
        await client.write(b"LOST\r")
        async with asyncio.timeout(5):
            # The next thing on the line is the reply to the second request.
            assert (await ask(client, b"FOUND")).startswith(b"<FOUND>")
    finally:
        await client.close()
        await server.stop()


async def test_late_fault_does_not_block_other_replies(clock: VirtualClock) -> None:
    server = await serve(clock, faults=FaultPlan.parse(["late:delay=0.3s,count=1"]))
    client = await connect(server.port)
    try:
        start = time.monotonic()
        await client.write(b"SLOW\r")
        async with asyncio.timeout(5):
            assert (await ask(client, b"FAST")).startswith(b"<FAST>")
            assert time.monotonic() - start < 0.3  # served while SLOW was held back
            assert (await client.read_until(b"\r")).startswith(b"<SLOW>")
        assert time.monotonic() - start >= 0.3
    finally:
        await client.close()
        await server.stop()


async def test_fault_windows_follow_the_device_clock(clock: VirtualClock) -> None:
    server = await serve(clock, faults=FaultPlan.parse(["drop:after=10s"]))
    client = await connect(server.port)
    try:
        async with asyncio.timeout(5):
            assert (await ask(client, b"EARLY")).startswith(b"<EARLY>")
            clock.advance_to(11.0)
            await client.write(b"DROPPED\r")
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.2):
                    await client.read_until(b"\r")
        assert server.fault_log == [(11.0, "drop")]
    finally:
        await client.close()
        await server.stop()


async def test_pty_disconnect_then_reconnect_through_the_stable_link(
    clock: VirtualClock,
) -> None:
    server = await serve(clock, faults=FaultPlan.parse(["disconnect:for=0.2s"]))
    link = Path(server.port)
    client = await connect(server.port)
    try:
        await client.write(b"BYE\r")
        async with asyncio.timeout(5):
            with pytest.raises(PortError, match="vanished"):
                await client.read_until(b"\r")
        assert server.handler.resets == 1  # type: ignore[attr-defined]
        # Like a by-id link while the adapter is unplugged:
        assert not server.up
        assert not os.path.lexists(link)  # noqa: ASYNC240 - one lstat
        await client.close()
        async with asyncio.timeout(5):
            await server.wait_up()
        assert os.readlink(link) == server.slave_path  # noqa: PTH115 - the new pty
        client = await connect(str(link))
        async with asyncio.timeout(5):
            assert (await ask(client, b"BACK")).startswith(b"<BACK>")
    finally:
        await client.close()
        await server.stop()


async def test_tcp_disconnect_refuses_until_the_delay_passed(clock: VirtualClock) -> None:
    server = await serve(clock, tcp=True, faults=FaultPlan.parse(["disconnect:for=0.3s"]))
    client = await connect(server.port)
    try:
        await client.write(b"BYE\r")
        async with asyncio.timeout(5):
            with pytest.raises(PortError):
                await client.read_until(b"\r")
        await client.close()
        start = time.monotonic()
        refused = await connect(server.port)  # accepted by the kernel, hung up at once
        async with asyncio.timeout(5):
            with pytest.raises(PortError):
                await refused.read_exactly(1)
        await refused.close()
        assert time.monotonic() - start < 0.3
        async with asyncio.timeout(5):
            await server.wait_up()
        client = await connect(server.port)
        async with asyncio.timeout(5):
            assert (await ask(client, b"BACK")).startswith(b"<BACK>")
    finally:
        await client.close()
        await server.stop()


async def test_pacing_holds_each_reply_for_its_wire_time(clock: VirtualClock) -> None:
    pacing = Pacing(9600)
    server = await serve(clock, pacing=pacing)
    client = await connect(server.port)
    word = b"X" * 40
    try:
        start = time.monotonic()
        async with asyncio.timeout(5):
            reply = await ask(client, word)
        elapsed = time.monotonic() - start
        # Request and reply each occupy the line for their bytes × 10 bits / 9600.
        assert elapsed >= pacing.wire_time_s(len(word) + 1 + len(reply))
    finally:
        await client.close()
        await server.stop()


def test_pacing_arithmetic() -> None:
    assert Pacing(19200).byte_time_s() == pytest.approx(10 / 19200)
    assert Pacing(9600, bits_per_char=11).wire_time_s(8) == pytest.approx(88 / 9600)
    assert Pacing(19200, 11, 3.5).interframe_s() == pytest.approx(3.5 * 11 / 19200)
    assert Pacing(115200, 11, 3.5).interframe_s() == pytest.approx(1.75e-3)
    assert Pacing(9600).interframe_s() == 0.0
    with pytest.raises(ValueError, match="baud"):
        Pacing(0)


async def test_unsolicited_output_is_polled_while_connected(clock: VirtualClock) -> None:
    handler = LineHandler()
    handler.poll_interval_s = 0.01
    server = EmulatorServer(handler, clock=clock)
    await server.start_pty()
    client = await connect(server.port)
    try:
        handler.queued.append(b"ALARM\r")
        async with asyncio.timeout(5):
            assert await client.read_until(b"\r") == b"ALARM\r"
    finally:
        await client.close()
        await server.stop()


class LineEmulator(SerialDeviceEmulator):
    handler_class = LineHandler


async def test_serial_device_emulator_builds_handler_with_options(clock: VirtualClock) -> None:
    for tcp in (None, ("127.0.0.1", 0)):
        emulator = LineEmulator(object(), clock=clock, tag="T")
        port = await emulator.start(tcp=tcp)
        assert port == emulator.port
        client = await connect(port)
        try:
            async with asyncio.timeout(5):
                assert (await ask(client, b"X")).startswith(b"<TX>")
        finally:
            await client.close()
            await emulator.stop()
