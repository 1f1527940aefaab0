"""ProSim8Simulator against a scripted TCP peer: the exact bytes it sends and how it reads
what comes back (the emulator-backed contract is tests/conformance/test_simulator.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
from medtwin.drivers.base import RetryPolicy
from medtwin.drivers.errors import CommandRefused, ProtocolError
from medtwin.drivers.prosim8 import ProSim8Simulator

Answer = Callable[[bytes], bytes]


class Peer:
    """Records every line received and answers it with ``answer(line)``."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.lines: list[bytes] = []
        self.server: asyncio.Server | None = None

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            self.lines.append(line)
            reply = self.answer(line)
            if reply:
                writer.write(reply)
                await writer.drain()
        writer.close()

    @property
    def port(self) -> str:
        assert self.server is not None
        return f"socket://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"


@pytest.fixture
async def peer() -> AsyncIterator[Callable[[Answer], Peer]]:
    made: list[Peer] = []

    def start(answer: Answer) -> Peer:
        p = Peer(answer)
        made.append(p)
        return p

    yield start
    for p in made:
        if p.server is not None:
            p.server.close()
            await p.server.wait_closed()


async def serve(p: Peer) -> Peer:
    p.server = await asyncio.start_server(p._client, "127.0.0.1", 0)
    return p


async def test_the_bytes_on_the_wire(peer: Callable[[Answer], Peer]) -> None:
    def answer(line: bytes) -> bytes:
        return b"ProSim8,2.1.0,0012345\r\n" if line == b"IDENT\r\n" else b"OK\r\n"

    p = await serve(peer(answer))
    async with asyncio.timeout(10):
        async with ProSim8Simulator(p.port) as sim:
            identity = await sim.identify()
            await sim.set_heart_rate(119.6)
            await sim.set_spo2(97)
            await sim.set_resp_rate(15)
            await sim.set_nibp(120, 80)
            await sim.set_ibp(2, 25, 10)
            await sim.set_ibp_static(1, -5)
            await sim.set_ibp_wave(1, "RA")
            await sim.send("KEY", 10, 1)
        await asyncio.sleep(0.05)
    assert (identity.model, identity.firmware, identity.serial) == ("ProSim8", "2.1.0", "0012345")
    assert identity.protocol == "prosim8"
    assert p.lines == [
        b"REMOTE\r\n",
        b"IDENT\r\n",
        b"NSRA=120\r\n",
        b"SAT=097\r\n",
        b"RESPRATE=015\r\n",
        b"NIBPP=120,080\r\n",
        b"IBPP=2,025,010\r\n",
        b"IBPS=1,-005\r\n",
        b"IBPW=1,RA\r\n",
        b"KEY=10,1\r\n",
        b"LOCAL\r\n",
    ]


async def test_err_replies_name_their_meaning(peer: Callable[[Answer], Peer]) -> None:
    def answer(line: bytes) -> bytes:
        return b"ERR=06\r\n" if line.startswith(b"SAT") else b"OK\r\n"

    p = await serve(peer(answer))
    async with asyncio.timeout(10), ProSim8Simulator(p.port) as sim:
        with pytest.raises(CommandRefused, match=r"SAT: the simulator answered ERR=06 \(option"):
            await sim.set_spo2(90)
        await sim.set_heart_rate(60)  # still in step
    assert p.lines.count(b"SAT=090\r\n") == 1  # a refusal is not retried


async def test_a_line_that_is_no_reply_is_a_protocol_error(peer: Callable[[Answer], Peer]) -> None:
    def answer(line: bytes) -> bytes:
        return b"HELLO\r\n" if line.startswith(b"NSRA") else b"OK\r\n"

    p = await serve(peer(answer))
    quick = RetryPolicy(timeout_s=0.5, retries=0)
    async with asyncio.timeout(10), ProSim8Simulator(p.port, retry=quick) as sim:
        with pytest.raises(ProtocolError):
            await sim.set_heart_rate(60)


async def test_a_simulator_in_local_mode_fails_the_open(peer: Callable[[Answer], Peer]) -> None:
    p = await serve(peer(lambda line: b"ERR=00\r\n"))
    sim = ProSim8Simulator(p.port, retry=RetryPolicy(timeout_s=0.5, retries=0))
    async with asyncio.timeout(10):
        with pytest.raises(CommandRefused, match="ERR=00"):
            await sim.open()
    await sim.close()
