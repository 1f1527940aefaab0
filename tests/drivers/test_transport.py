"""Byte transports over real ptys, TCP sockets and pyserial URLs."""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import termios
import tty
from collections.abc import AsyncIterator, Iterator

import pytest
from medtwin.drivers.errors import ConfigurationError, PortError, ProtocolError
from medtwin.drivers.transport import ByteTransport, SerialTransport, TcpTransport, open_transport


@pytest.fixture
def pty_pair() -> Iterator[tuple[int, str]]:
    """(master fd, slave path) of a raw pty; the slave fd stays open meanwhile."""
    master, slave = os.openpty()
    tty.setraw(slave)
    try:
        yield master, os.ttyname(slave)
    finally:
        for fd in (master, slave):
            with contextlib.suppress(OSError):
                os.close(fd)


@pytest.fixture
async def serial_port(pty_pair: tuple[int, str]) -> AsyncIterator[tuple[int, ByteTransport]]:
    master, path = pty_pair
    transport = open_transport(path, device="dut", baudrate=19200)
    await transport.open()
    try:
        yield master, transport
    finally:
        await transport.close()


async def test_pty_round_trip_and_reads(serial_port: tuple[int, ByteTransport]) -> None:
    master, transport = serial_port
    assert isinstance(transport, SerialTransport)
    assert transport.is_open
    await transport.write(b"0DIS\r")
    assert os.read(master, 100) == b"0DIS\r"
    os.write(master, b"\x0200S\x03\x02")
    async with asyncio.timeout(5):
        assert await transport.read_until(b"\x03") == b"\x0200S\x03"
        assert await transport.read_exactly(1) == b"\x02"
        os.write(master, b"abc")
        assert await transport.read_some() == b"abc"


async def test_terminator_split_across_chunks(serial_port: tuple[int, ByteTransport]) -> None:
    master, transport = serial_port
    reader = asyncio.create_task(transport.read_until(b"\r\n"))
    os.write(master, b"S S 1.0 g\r")
    await asyncio.sleep(0)  # let the first chunk arrive on its own
    os.write(master, b"\n")
    async with asyncio.timeout(5):
        assert await reader == b"S S 1.0 g\r\n"


async def test_read_until_past_max_size_raises_with_the_bytes(
    serial_port: tuple[int, ByteTransport],
) -> None:
    master, transport = serial_port
    os.write(master, b"x" * 40)
    async with asyncio.timeout(5):
        with pytest.raises(ProtocolError) as info:
            await transport.read_until(b"\x03", max_size=16)
    assert info.value.raw == b"x" * 40
    assert info.value.device == "dut"


async def test_discard_input(serial_port: tuple[int, ByteTransport]) -> None:
    master, transport = serial_port
    os.write(master, b"stale")
    async with asyncio.timeout(5):
        assert await transport.read_exactly(1) == b"s"
    transport.discard_input()
    os.write(master, b"fresh")
    async with asyncio.timeout(5):
        assert await transport.read_exactly(5) == b"fresh"


async def test_vanished_pty_raises_port_error_naming_device_and_port() -> None:
    master, slave = os.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    os.close(slave)
    transport = open_transport(path, device="pump-1")
    await transport.open()
    try:
        reader = asyncio.create_task(transport.read_exactly(1))
        await asyncio.sleep(0)
        os.close(master)  # the "cable" is pulled: the slave side reads EIO
        async with asyncio.timeout(5):
            with pytest.raises(PortError) as info:
                await reader
        assert "pump-1" in str(info.value)
        assert path in str(info.value)
        assert not transport.is_open
        with pytest.raises(PortError):
            await transport.write(b"x")
    finally:
        await transport.close()


async def test_open_failures_are_port_errors(pty_pair: tuple[int, str]) -> None:
    transport = open_transport("/dev/does-not-exist-medtwin", device="pump-2")
    with pytest.raises(PortError, match=r"pump-2.*does-not-exist"):
        await transport.open()
    _, path = pty_pair
    first = open_transport(path, device="a")
    await first.open()
    try:
        second = open_transport(path, device="b")
        with pytest.raises(PortError, match="cannot open"):
            await second.open()  # the exclusive lock keeps two programs off one tty
    finally:
        await first.close()


XON, XOFF = b"\x11", b"\x13"


async def test_xonxoff_holds_output_until_xon_and_strips_the_control_bytes(
    pty_pair: tuple[int, str],
) -> None:
    master, path = pty_pair
    transport = open_transport(path, device="balance", handshake="xonxoff")
    await transport.open()
    try:
        assert isinstance(transport, SerialTransport)
        assert transport._fd is not None
        iflag = termios.tcgetattr(transport._fd)[0]
        assert iflag & termios.IXON
        assert iflag & termios.IXOFF
        async with asyncio.timeout(5):
            # XOFF then a marker: once the marker is read, the tty has seen the XOFF.
            os.write(master, XOFF + b"m")
            assert await transport.read_some() == b"m"  # XOFF is not data
            write = asyncio.create_task(transport.write(b"S\r\n"))
            for _ in range(5):
                await asyncio.sleep(0)
            # An observation window, not a wait for something: nothing may come out.
            assert select.select([master], [], [], 0.2)[0] == []
            assert not write.done()  # waiting on the loop, the loop is not blocked
            os.write(master, XON)
            await write
            assert os.read(master, 100) == b"S\r\n"
            os.write(master, XOFF + XON + b"S S 1.0 g\r\n")
            assert await transport.read_until(b"\r\n") == b"S S 1.0 g\r\n"
    finally:
        await transport.close()


async def test_rtscts_sets_hardware_flow_control(pty_pair: tuple[int, str]) -> None:
    _, path = pty_pair
    transport = open_transport(path, device="balance", handshake="rtscts")
    await transport.open()
    try:
        assert isinstance(transport, SerialTransport)
        assert transport._fd is not None
        attrs = termios.tcgetattr(transport._fd)
        assert attrs[2] & termios.CRTSCTS
        assert not attrs[0] & termios.IXON
    finally:
        await transport.close()


def test_bad_line_settings_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError, match="parity"):
        open_transport("/dev/ttyUSB0", device="pump", parity="X")
    with pytest.raises(ConfigurationError, match="baudrate"):
        open_transport("/dev/ttyUSB0", device="pump", baudrate=0)
    with pytest.raises(ConfigurationError, match="stopbits"):
        open_transport("/dev/ttyUSB0", device="pump", stopbits=3)
    with pytest.raises(ConfigurationError, match="bytesize"):
        open_transport("/dev/ttyUSB0", device="pump", bytesize=9)
    with pytest.raises(ConfigurationError, match=r"handshake='dtr'.*none, xonxoff, rtscts"):
        open_transport("/dev/ttyUSB0", device="balance", handshake="dtr")
    with pytest.raises(ConfigurationError, match="handshake"):
        open_transport("socket://127.0.0.1:4001", device="balance", handshake="dtr")
    with pytest.raises(ConfigurationError, match="socket://HOST:PORT"):
        open_transport("socket://nohost", device="pump")
    with pytest.raises(ConfigurationError, match="empty port"):
        open_transport("", device="pump")


async def test_read_before_open_is_a_port_error() -> None:
    transport = open_transport("loop://", device="pump")
    with pytest.raises(PortError, match="not open"):
        await transport.read_exactly(1)


async def test_pyserial_url_without_descriptor_is_polled() -> None:
    transport = open_transport("loop://", device="loop")
    await transport.open()
    try:
        await transport.write(b"hello\r")
        async with asyncio.timeout(5):
            assert await transport.read_until(b"\r") == b"hello\r"
    finally:
        await transport.close()


@pytest.fixture
async def tcp_peer() -> AsyncIterator[tuple[asyncio.Server, asyncio.Queue[asyncio.StreamWriter]]]:
    writers: asyncio.Queue[asyncio.StreamWriter] = asyncio.Queue()
    opened: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        opened.append(writer)
        await writers.put(writer)
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(100):
                writer.write(data.upper())

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        yield server, writers
    finally:
        for writer in opened:
            writer.close()
        server.close()
        await server.wait_closed()
        await asyncio.sleep(0)


async def test_tcp_round_trip_and_peer_close(
    tcp_peer: tuple[asyncio.Server, asyncio.Queue[asyncio.StreamWriter]],
) -> None:
    server, writers = tcp_peer
    port = server.sockets[0].getsockname()[1]
    transport = open_transport(f"socket://127.0.0.1:{port}", device="tcp-pump")
    assert isinstance(transport, TcpTransport)
    await transport.open()
    try:
        await transport.write(b"dis\r")
        async with asyncio.timeout(5):
            assert await transport.read_until(b"\r") == b"DIS\r"
            peer = await writers.get()
            peer.close()
            with pytest.raises(PortError, match="tcp-pump"):
                await transport.read_exactly(1)
    finally:
        await transport.close()


async def test_tcp_connection_refused_is_a_port_error() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    transport = open_transport(f"socket://127.0.0.1:{port}", device="gone")
    with pytest.raises(PortError, match="cannot connect"):
        await transport.open()


def test_line_resources_are_validated_descriptions_of_a_port() -> None:
    from medtwin.drivers.transport import SerialLine, TcpLine, line_for

    line = line_for(
        "/dev/ttyUSB0", device="balance", baudrate=9600, parity="e", handshake="xonxoff"
    )
    assert line == SerialLine("/dev/ttyUSB0", 9600, 8, "E", 1, "xonxoff")
    assert line.pyserial_options()["xonxoff"] is True
    assert line_for("tcp://127.0.0.1:502", device="io") == TcpLine("127.0.0.1", 502, "tcp")
    assert line_for("socket://10.0.0.5:4001", device="p").url == "socket://10.0.0.5:4001"
    with pytest.raises(ConfigurationError, match="balance on /dev/x: stopbits=3 is not valid") as e:
        line_for("/dev/x", device="balance", stopbits=3)
    assert e.value.field == "stopbits"
    # checked for TCP too: the bench file is wrong whether or not this port uses it
    with pytest.raises(ConfigurationError, match="bytesize=9") as e:
        line_for("socket://127.0.0.1:4001", device="p", bytesize=9)
    with pytest.raises(ConfigurationError, match="unknown line setting"):
        line_for("/dev/x", device="p", flow="rts")
    with pytest.raises(ConfigurationError, match=r"outside 1\.\.65535"):
        TcpLine("127.0.0.1", 70000)
    with pytest.raises(ConfigurationError, match="baudrate=True"):
        SerialLine("/dev/x", baudrate=True)
