"""The emulator server's channels: one byte pipe to one client, on a pty or a TCP connection.

A channel owns what is per connection: its framer (from the handler), its receive and
transmit line clocks for wire-time pacing (:mod:`medtwin.drivers.emulators.pacing`; one
clock on a half-duplex RTU line), its send queue, the silence timer of a framing that
ends frames by silence, and the in-order worker of an asynchronous handler.
:class:`PtyChannel` reads and writes the master side of a pty in raw mode (no echo, no
CR/LF translation) and keeps the slave open so the master never reads ``EIO`` between
clients; :class:`TcpChannel` is an :class:`asyncio.Protocol`. Everything that is the same
for every channel (faults, dispatch, disconnects) is
:class:`~medtwin.drivers.emulators.server.EmulatorServer`'s.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ipaddress
import logging
import os
import time
import tty
from typing import TYPE_CHECKING, Any, ClassVar, cast

from medtwin.drivers.emulators.pacing import sleep_until
from medtwin.drivers.errors import ConfigurationError
from medtwin.drivers.framing import Framer

if TYPE_CHECKING:
    from medtwin.drivers.emulators.server import EmulatorServer

__all__ = [
    "UNPACED_SILENCE_S",
    "WRITE_STALL_S",
    "Channel",
    "PtyChannel",
    "TcpChannel",
    "loopback_host",
]

log = logging.getLogger(__name__)

#: How long a write to a client that stopped reading may wait before the bytes are
#: dropped (a UART transmits whether or not anyone listens).
WRITE_STALL_S = 1.0

#: Without pacing a pty moves bytes at once; a burst that forms no frame is ended after
#: this much silence (the spec's t3.5 is far shorter, but an unpaced client may write a
#: frame in more than one system call).
UNPACED_SILENCE_S = 0.02


class Channel:
    """One byte pipe to a client: its framer, its line clocks, its send queue."""

    def __init__(self, server: EmulatorServer, name: str) -> None:
        self.server = server
        self.name = name
        self.alive = True
        self.framer: Framer[Any] = server.handler.new_framer()
        # A framing native to TCP (MBAP) has no serial line to pace.
        self.pacing = pacing = server.pacing if self.framer.paced else None
        silence = self.framer.silence_chars
        #: Silence kept before a reply (the t3.5 that ends a request on an RTU line).
        self.turnaround_s = pacing.frame_gap_s(silence) if pacing and silence else 0.0
        #: Silence kept after a frame before the line carries the next one.
        self.gap_s = pacing.frame_gap_s(silence) if pacing else 0.0
        self.half_duplex = self.framer.half_duplex and self.serial_line
        self.busy = False
        self._rx_free_at = 0.0  # monotonic time the receive line is next idle
        self._tx_free_at = 0.0  # monotonic time the transmit line is next idle
        self._queue: collections.deque[tuple[bytes, float, asyncio.Future[None] | None]] = (
            collections.deque()
        )
        self._writer: asyncio.Task[None] | None = None
        self._silence: asyncio.TimerHandle | None = None
        self._work: asyncio.Queue[tuple[Any, float]] | None = None
        self._worker: asyncio.Task[None] | None = None

    #: Whether this channel is a serial line (a pty) rather than a TCP connection.
    serial_line: ClassVar[bool] = False

    # -- implemented per transport ----------------------------------------------------

    def _write_now(self, data: bytes) -> int:
        """Write without blocking; return how many bytes went out."""
        raise NotImplementedError

    async def _wait_writable(self) -> None:
        await asyncio.sleep(0)

    def close(self) -> None:
        self.alive = False
        for task in (self._writer, self._worker):
            if task is not None:
                task.cancel()
        if self._silence is not None:
            self._silence.cancel()
            self._silence = None
        for _, _, done in self._queue:
            if done is not None and not done.done():
                done.cancel()
        self._queue.clear()

    # -- input --------------------------------------------------------------------------

    def received(self, n_bytes: int) -> float:
        """Account for ``n_bytes`` just received; return when the last of them would have
        arrived on the wire (monotonic seconds)."""
        pacing = self.pacing
        now = time.monotonic()
        if pacing is None:
            return now
        start = max(now, self._rx_free_at)
        if self.half_duplex:
            start = max(start, self._tx_free_at)
        self._rx_free_at = start + pacing.wire_time_s(n_bytes)
        return self._rx_free_at

    def line_quiet_after(self, end: float) -> None:
        """A request got no reply: the half-duplex line is free again a gap after it."""
        if self.half_duplex and self.pacing is not None:
            self._tx_free_at = max(self._tx_free_at, end + self.gap_s)

    def arm_silence(self) -> None:
        """Restart the timer that ends a frame when the line falls silent."""
        if self.framer.silence_chars is None:
            return
        if self._silence is not None:
            self._silence.cancel()
            self._silence = None
        if self.framer.pending:
            quiet = max(UNPACED_SILENCE_S, self.gap_s)
            loop = asyncio.get_running_loop()
            self._silence = loop.call_later(quiet, self._on_silence)

    def _on_silence(self) -> None:
        self._silence = None
        if self.alive:
            now = time.monotonic()
            frames = self.framer.on_silence()
            if frames:
                self.server._on_frames(self, frames, now)
                self.server._send_unsolicited(now)

    def submit(self, frame: Any, arrived: float) -> None:
        """Queue a frame for the in-order worker (asynchronous handlers)."""
        if self._work is None:
            self._work = asyncio.Queue()
            self._worker = self.server._spawn(self._serve(), name=f"{self.name}-worker")
        self._work.put_nowait((frame, arrived))

    async def _serve(self) -> None:
        assert self._work is not None
        while self.alive:
            frame, arrived = await self._work.get()
            try:
                await self.server._answer(self, frame, arrived)
            finally:
                self.busy = False

    # -- output -------------------------------------------------------------------------

    def send(self, data: bytes, not_before: float) -> None:
        if not self.alive or not data:
            return
        if self.pacing is None and not self._queue and self._writer is None:
            written = self._write_some(data)
            if written is None or written >= len(data):
                return
            data = data[written:]
        self._enqueue(data, not_before, None)

    async def send_and_wait(self, data: bytes, not_before: float) -> None:
        """Send and return once the last byte has left (on a paced line: on the wire)."""
        if not self.alive or not data:
            return
        if self.pacing is None and not self._queue and self._writer is None:
            written = self._write_some(data)
            if written is None or written >= len(data):
                return
            data = data[written:]
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._enqueue(data, not_before, done)
        await done

    def _enqueue(self, data: bytes, not_before: float, done: asyncio.Future[None] | None) -> None:
        self._queue.append((data, not_before, done))
        if self._writer is None:
            self._writer = self.server._spawn(self._drain(), name=f"{self.name}-writer")

    async def _drain(self) -> None:
        try:
            while self._queue and self.alive:
                data, not_before, done = self._queue.popleft()
                pacing = self.pacing
                if pacing is not None:
                    start = max(time.monotonic(), not_before, self._tx_free_at)
                    end = start + pacing.wire_time_s(len(data))
                    self._tx_free_at = end + self.gap_s
                    await sleep_until(end)
                await self._write_all(data)
                if done is not None and not done.done():
                    done.set_result(None)
        finally:
            self._writer = None

    def _write_some(self, data: bytes) -> int | None:
        """Write what the client takes now and count it; None if the write failed (the
        client went away: the rest of the reply is dropped, as on a cut line)."""
        try:
            written = self._write_now(data)
        except OSError as exc:
            log.debug("%s: write failed: %s", self.name, exc)
            return None
        self.server.bytes_sent += written
        return written

    async def _write_all(self, data: bytes) -> None:
        deadline = time.monotonic() + WRITE_STALL_S
        while data and self.alive:
            written = self._write_some(data)
            if written is None:
                return
            data = data[written:]
            if data:
                if time.monotonic() > deadline:
                    log.warning("%s: client not reading; dropped %d bytes", self.name, len(data))
                    return
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                        await self._wait_writable()


class PtyChannel(Channel):
    serial_line = True

    def __init__(self, server: EmulatorServer) -> None:
        super().__init__(server, f"{server.handler.device_name}-pty")
        self.master, self.slave = os.openpty()
        try:
            # Raw mode: no echo, no CR/LF translation, no signals.
            tty.setraw(self.slave)
            os.set_blocking(self.master, False)
            self.slave_path = os.ttyname(self.slave)
        except BaseException:
            os.close(self.master)
            os.close(self.slave)
            raise
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self.master, self._on_readable)

    def _on_readable(self) -> None:
        try:
            data = os.read(self.master, 65536)
        except BlockingIOError:
            return
        except OSError as exc:
            # Cannot happen while we hold the slave open; stop watching rather than spin.
            log.warning("%s: master read failed (%s); pty no longer served", self.name, exc)
            self._loop.remove_reader(self.master)
            return
        if data:
            self.server._on_data(self, data)

    def _write_now(self, data: bytes) -> int:
        try:
            return os.write(self.master, data)
        except BlockingIOError:
            return 0

    async def _wait_writable(self) -> None:
        ready = self._loop.create_future()
        self._loop.add_writer(self.master, _resolve, ready)
        try:
            await ready
        finally:
            self._loop.remove_writer(self.master)

    def close(self) -> None:
        if not self.alive:
            return
        super().close()
        self._loop.remove_reader(self.master)
        self._loop.remove_writer(self.master)
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class TcpChannel(Channel, asyncio.Protocol):
    def __init__(self, server: EmulatorServer) -> None:
        Channel.__init__(self, server, f"{server.handler.device_name}-tcp")
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        if not self.server._accepting():
            # Inside a disconnect window the "port" is away: hang up at once.
            self.alive = False
            self.transport.close()
            return
        self.name = f"{self.name}:{transport.get_extra_info('peername')}"
        self.server._tcp_channels.add(self)

    def data_received(self, data: bytes) -> None:
        if self.alive:
            self.server._on_data(self, data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server._tcp_channels.discard(self)
        Channel.close(self)

    def _write_now(self, data: bytes) -> int:
        if self.transport is None or self.transport.is_closing():
            raise ConnectionError("connection closed")
        self.transport.write(data)
        return len(data)

    def close(self) -> None:
        super().close()
        if self.transport is not None:
            self.transport.close()


def loopback_host(host: str) -> str:
    """``host`` if it is a loopback address (``localhost`` → 127.0.0.1), else refuse."""
    if host == "localhost":
        # One address: "localhost" may resolve to both ::1 and 127.0.0.1, and port 0
        # would then pick a different port on each.
        return "127.0.0.1"
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ConfigurationError(
            f"the emulator listens on loopback only; got host {host!r}, expected "
            "127.0.0.1, ::1 or localhost",
            field="tcp",
        )
    return host
