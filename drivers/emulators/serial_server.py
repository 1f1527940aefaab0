"""Serve a byte-protocol emulator on a pty or on TCP (127.0.0.1 only by default).

A protocol emulator subclasses :class:`ProtocolHandler`: a pure state machine (no I/O)
that turns received bytes into replies by calling its mechanism. :class:`EmulatorServer`
owns the port and everything that happens on the wire:

* **pty** — ``os.openpty()``; the slave is what any program opens. Clients are given a
  *stable link* in a private temporary directory (``/tmp/medtwin-emu-XXXX/ttyNE1000``)
  pointing at the current slave, the way ``/dev/serial/by-id`` links follow a USB
  adapter across replugs. A ``disconnect`` fault closes the pty (a client's next read or
  write fails with ``EIO``, as on a real unplug), removes the link, and after the fault's
  ``delay_s`` wall seconds opens a new pty and re-points the link, so a client reopening
  the same path reaches the device again. The server keeps its own slave descriptor open
  so the master never reads ``EIO`` between clients, and puts the line in raw mode so
  the tty layer neither echoes nor translates CR.
* **TCP** — ``loop.create_server`` on ``127.0.0.1`` unless told otherwise. A
  ``disconnect`` fault closes every client connection and closes new ones on accept until
  ``delay_s`` wall seconds have passed.

Fault plans (:mod:`medtwin.drivers.emulators.faults`) are applied to every solicited reply at
*clock* time (``clock.now()``, the device's time base): ``garbage`` puts random bytes from
the plan's seeded generator in front, ``bad-checksum`` sends
:meth:`ProtocolHandler.corrupt_checksum` of the reply, ``drop`` sends nothing, ``late``
sends it ``delay_s`` wall seconds later from a separate task (other requests are served
meanwhile, so a late reply can overtake or trail later ones, as on a real line), and
``disconnect`` drops the port as above. Unsolicited output is sent as is.

Pacing models the serial line that a pty or a socket does not have: a request of *n*
bytes is only complete ``n × bits_per_char / baud`` after it started to arrive, and a
reply of *m* bytes occupies the transmit line for ``m × bits_per_char / baud`` (plus an
inter-frame silence for Modbus RTU). The server computes each reply's wire time once,
sleeps once and writes the whole reply, so the last byte reaches the client when it
would on the wire; it never sleeps per byte.

Unsolicited output (NE-1000 auto-alarm packets, MT-SICS ``SIR`` streams) is collected
after every ``feed`` and, while a client can receive it, every
``handler.poll_interval_s`` wall seconds.

Hand-written on asyncio rather than on pyserial's ``PortManager``/``socat`` because the
behaviour under test (faults per reply, replug through a stable link, wire pacing) lives
exactly in the layer those tools hide.
"""

from __future__ import annotations

import abc
import asyncio
import collections
import contextlib
import logging
import os
import re
import shutil
import tempfile
import time
import tty
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from medtwin.drivers.clock import Clock
from medtwin.drivers.emulators.faults import Fault, FaultPlan

__all__ = ["EmulatorServer", "Pacing", "ProtocolHandler", "SerialDeviceEmulator"]

log = logging.getLogger(__name__)

#: How long a write to a client that stopped reading may wait before the bytes are
#: dropped (a UART transmits whether or not anyone listens).
WRITE_STALL_S = 1.0

#: asyncio's epoll timers wake up to 1 ms late (the timeout is rounded up to whole
#: milliseconds); paced writes sleep until this much before their deadline and yield
#: to the loop for the rest, so a reply's last byte leaves on time rather than ~0.5 ms
#: late on average (a 4 % error on a 12.5 ms exchange at 19200 baud).
TIMER_SLACK_S = 1.1e-3

#: Chunks kept in :attr:`EmulatorServer.rx_log` for tests and troubleshooting.
RX_LOG_CHUNKS = 256


class ProtocolHandler(abc.ABC):
    """Device side of one byte protocol.

    ``feed`` receives whatever bytes arrived (possibly a partial frame, possibly several
    frames) and returns the complete replies due, in order. ``unsolicited`` returns output
    the device sends on its own (NE-1000 auto-alarm packets, MT-SICS ``SIR`` stream); the
    server calls it after every ``feed`` and every ``poll_interval_s`` of wall time.

    A handler must never raise from ``feed``: malformed input gets the device's own error
    reply (or silence) and the handler keeps serving. The server still guards against a
    handler bug: an exception is logged and the bytes are dropped.

    Handlers used through :class:`SerialDeviceEmulator` are constructed as
    ``handler_class(mechanism, clock=clock, **options)``.
    """

    #: Name used in logs, ProtocolError messages and the pty link name.
    device_name: str = "device"
    #: How often the server polls :meth:`unsolicited` (wall seconds); None: never.
    poll_interval_s: float | None = None

    @abc.abstractmethod
    def feed(self, data: bytes) -> list[bytes]: ...

    def unsolicited(self) -> list[bytes]:
        return []

    def corrupt_checksum(self, reply: bytes) -> bytes:
        """The reply with its checksum broken (``bad-checksum`` fault). Protocols without
        a checksum corrupt one payload byte instead."""
        if not reply:
            return reply
        middle = len(reply) // 2
        return reply[:middle] + bytes([reply[middle] ^ 0x20]) + reply[middle + 1 :]

    def reset_input(self) -> None:  # noqa: B027 - optional hook
        """Forget partial input (called on disconnect)."""


@dataclass(frozen=True)
class Pacing:
    """Wire-time pacing: each byte takes ``bits_per_char / baud`` seconds; Modbus RTU adds
    a 3.5-character silence between frames (1.75 ms above 19200 baud, per the spec).

    Parameters
    ----------
    baud : int
        Line speed in bit/s.
    bits_per_char : int
        Bits on the wire per byte: start + data + parity + stop (10 for 8N1, 11 for 8E1).
    interframe_chars : float
        Silence after each frame, in character times (3.5 for Modbus RTU, 0 otherwise).
    """

    baud: int
    bits_per_char: int = 10
    interframe_chars: float = 0.0

    def __post_init__(self) -> None:
        if self.baud <= 0 or self.bits_per_char <= 0 or self.interframe_chars < 0:
            raise ValueError(
                f"invalid pacing baud={self.baud}, bits_per_char={self.bits_per_char}, "
                f"interframe_chars={self.interframe_chars}: baud and bits must be > 0"
            )

    def byte_time_s(self) -> float:
        return self.bits_per_char / self.baud

    def wire_time_s(self, n_bytes: int) -> float:
        """Seconds that ``n_bytes`` occupy the line."""
        return n_bytes * self.byte_time_s()

    def interframe_s(self) -> float:
        """Silence after a frame (s). Modbus fixes t3.5 at 1.75 ms above 19200 baud."""
        if self.interframe_chars <= 0:
            return 0.0
        if self.baud > 19200:
            return 1.75e-3 * self.interframe_chars / 3.5
        return self.interframe_chars * self.byte_time_s()


class _Channel:
    """One byte pipe to a client, with its own transmit-line clock and send queue."""

    def __init__(self, server: EmulatorServer, name: str) -> None:
        self.server = server
        self.name = name
        self.alive = True
        self._rx_free_at = 0.0  # monotonic time the receive line is next idle
        self._tx_free_at = 0.0  # monotonic time the transmit line is next idle
        self._queue: collections.deque[tuple[bytes, float]] = collections.deque()
        self._writer: asyncio.Task[None] | None = None

    # -- implemented per transport ----------------------------------------------------

    def _write_now(self, data: bytes) -> int:
        """Write without blocking; return how many bytes went out."""
        raise NotImplementedError

    async def _wait_writable(self) -> None:
        await asyncio.sleep(0)

    def close(self) -> None:
        self.alive = False
        if self._writer is not None:
            self._writer.cancel()
        self._queue.clear()

    # -- pacing ---------------------------------------------------------------------------

    def received(self, n_bytes: int) -> float:
        """Account for ``n_bytes`` just received; return when the last of them would have
        arrived on the wire (monotonic seconds)."""
        pacing = self.server.pacing
        now = time.monotonic()
        if pacing is None:
            return now
        start = max(now, self._rx_free_at)
        self._rx_free_at = start + pacing.wire_time_s(n_bytes)
        return self._rx_free_at

    def send(self, data: bytes, not_before: float) -> None:
        if not self.alive or not data:
            return
        if self.server.pacing is None and not self._queue and self._writer is None:
            written = self._write_some(data)
            if written is None or written >= len(data):
                return
            data = data[written:]
        self._queue.append((data, not_before))
        if self._writer is None:
            self._writer = self.server._spawn(self._drain(), name=f"{self.name}-writer")

    async def _drain(self) -> None:
        try:
            while self._queue and self.alive:
                data, not_before = self._queue.popleft()
                pacing = self.server.pacing
                if pacing is not None:
                    start = max(time.monotonic(), not_before, self._tx_free_at)
                    done = start + pacing.wire_time_s(len(data))
                    self._tx_free_at = done + pacing.interframe_s()
                    await _sleep_until(done)
                await self._write_all(data)
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


class _PtyChannel(_Channel):
    def __init__(self, server: EmulatorServer) -> None:
        super().__init__(server, f"{server.handler.device_name}-pty")
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        self.slave_path = os.ttyname(self.slave)
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


async def _sleep_until(deadline: float) -> None:
    """Sleep until ``time.monotonic()`` reaches ``deadline``, to well under 1 ms."""
    delay = deadline - time.monotonic()
    if delay > TIMER_SLACK_S:
        await asyncio.sleep(delay - TIMER_SLACK_S)
    # Yield-spin for the last ~1 ms: no event marks a deadline finer than the timer.
    while time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0)


class _TcpChannel(_Channel, asyncio.Protocol):
    def __init__(self, server: EmulatorServer) -> None:
        _Channel.__init__(self, server, f"{server.handler.device_name}-tcp")
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
        self.alive = False
        self.server._tcp_channels.discard(self)
        if self._writer is not None:
            self._writer.cancel()

    def _write_now(self, data: bytes) -> int:
        if self.transport is None or self.transport.is_closing():
            raise ConnectionError("connection closed")
        self.transport.write(data)
        return len(data)

    def close(self) -> None:
        super().close()
        if self.transport is not None:
            self.transport.close()


class EmulatorServer:
    """Serves one :class:`ProtocolHandler` on a pty or TCP port.

    Parameters
    ----------
    handler : ProtocolHandler
        The device side of the protocol.
    clock : Clock
        The device's time base; fault windows are evaluated at ``clock.now()``.
    faults : FaultPlan, optional
        Reply faults to inject (device faults are the physical bench's business).
    pacing : Pacing, optional
        Wire-time pacing; ``None`` moves bytes as fast as the pty/socket allows.
    """

    def __init__(
        self,
        handler: ProtocolHandler,
        *,
        clock: Clock,
        faults: FaultPlan | None = None,
        pacing: Pacing | None = None,
    ) -> None:
        self.handler = handler
        self.clock = clock
        self.faults = faults
        self.pacing = pacing
        #: Bytes received from clients and sent to them since start.
        self.bytes_received = 0
        self.bytes_sent = 0
        #: The last chunks received, as ``(clock time, bytes)``.
        self.rx_log: collections.deque[tuple[float, bytes]] = collections.deque(
            maxlen=RX_LOG_CHUNKS
        )
        #: Reply faults applied so far, as ``(clock time, kind)``.
        self.fault_log: list[tuple[float, str]] = []
        self._kind: str | None = None
        self._port = ""
        self._tasks: set[asyncio.Task[None]] = set()
        self._pty: _PtyChannel | None = None
        self._link_dir: Path | None = None
        self._link: Path | None = None
        self._tcp_server: asyncio.Server | None = None
        self._tcp_channels: set[_TcpChannel] = set()
        self._down = False
        self._stopped = False
        self._up = asyncio.Event()

    # -- lifecycle ---------------------------------------------------------------------

    async def start_pty(self) -> str:
        """Open a pty pair and serve on it.

        Returns
        -------
        str
            The stable link path clients open (it follows the pty across disconnect
            faults); :attr:`slave_path` is the current ``/dev/pts/N`` behind it.
        """
        self._check_not_started()
        self._kind = "pty"
        self._link_dir = Path(tempfile.mkdtemp(prefix="medtwin-emu-"))
        name = re.sub(r"[^A-Za-z0-9_.-]+", "", self.handler.device_name) or "device"
        self._link = self._link_dir / f"tty{name}"
        self._open_pty()
        self._port = str(self._link)
        self._start_polling()
        self._up.set()
        return self._port

    async def start_tcp(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        """Listen on TCP (127.0.0.1 only unless told otherwise); returns (host, port)."""
        self._check_not_started()
        self._kind = "tcp"
        loop = asyncio.get_running_loop()
        self._tcp_server = await loop.create_server(lambda: _TcpChannel(self), host, port)
        bound = self._tcp_server.sockets[0].getsockname()
        bound_host, bound_port = str(bound[0]), int(bound[1])
        self._port = f"socket://{bound_host}:{bound_port}"
        self._start_polling()
        self._up.set()
        return bound_host, bound_port

    def _check_not_started(self) -> None:
        if self._kind is not None:
            raise RuntimeError(f"{self.handler.device_name}: emulator server already started")

    @property
    def port(self) -> str:
        """What a client opens: the stable pty link or ``socket://host:port``."""
        if not self._port:
            raise RuntimeError(f"{self.handler.device_name}: emulator server not started")
        return self._port

    @property
    def slave_path(self) -> str | None:
        """The ``/dev/pts/N`` currently behind the link (None while disconnected)."""
        return self._pty.slave_path if self._pty is not None else None

    @property
    def up(self) -> bool:
        """Whether the port is there (started, not stopped, not inside a disconnect)."""
        return self._up.is_set()

    async def wait_up(self) -> None:
        """Return once the port is there again (e.g. after a ``disconnect`` fault)."""
        await self._up.wait()

    @property
    def connected(self) -> bool:
        """Whether a client can currently receive output."""
        if self._kind == "pty":
            return self._pty is not None
        return bool(self._tcp_channels)

    async def stop(self) -> None:
        """Stop serving and release the pty/socket; idempotent."""
        if self._stopped:
            return
        self._stopped = True
        self._up.clear()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._close_pty()
        if self._link_dir is not None:
            shutil.rmtree(self._link_dir, ignore_errors=True)
            self._link_dir = None
        for channel in list(self._tcp_channels):
            channel.close()
        self._tcp_channels.clear()
        if self._tcp_server is not None:
            self._tcp_server.close()
            await self._tcp_server.wait_closed()
            self._tcp_server = None
        # Let transports run their connection_lost callbacks and release the sockets.
        await asyncio.sleep(0)

    async def __aenter__(self) -> EmulatorServer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- pty --------------------------------------------------------------------------

    def _open_pty(self) -> None:
        assert self._link is not None
        self._pty = _PtyChannel(self)
        tmp = self._link.with_name(self._link.name + ".new")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        tmp.symlink_to(self._pty.slave_path)
        # Atomic re-point: a client never sees a half-made link.
        tmp.replace(self._link)

    def _close_pty(self) -> None:
        if self._pty is not None:
            self._pty.close()
            self._pty = None
        if self._link is not None:
            with contextlib.suppress(FileNotFoundError):
                self._link.unlink()

    # -- data path ---------------------------------------------------------------------

    def _spawn(self, coro: Any, *, name: str) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "%s: emulator task %s failed",
                self.handler.device_name,
                task.get_name(),
                exc_info=task.exception(),
            )

    def _on_data(self, channel: _Channel, data: bytes) -> None:
        self.bytes_received += len(data)
        self.rx_log.append((self.clock.now(), data))
        not_before = channel.received(len(data))
        try:
            replies = self.handler.feed(data)
        except Exception:
            log.exception("%s: handler failed on %r; input dropped", self.handler.device_name, data)
            replies = []
        for reply in replies:
            self._dispatch(channel, reply, not_before)
        self._send_unsolicited(not_before)

    def _dispatch(self, channel: _Channel, reply: bytes, not_before: float) -> None:
        fault = self.faults.reply_fault(self.clock.now()) if self.faults is not None else None
        if fault is None:
            channel.send(reply, not_before)
            return
        self.fault_log.append((self.clock.now(), fault.kind))
        if fault.kind == "garbage":
            channel.send(self._garbage() + reply, not_before)
        elif fault.kind == "bad-checksum":
            channel.send(self.handler.corrupt_checksum(reply), not_before)
        elif fault.kind == "drop":
            pass
        elif fault.kind == "late":
            self._spawn(self._send_late(channel, reply, fault), name="late-reply")
        elif fault.kind == "disconnect":
            self.disconnect(fault.delay_s)
        else:  # pragma: no cover - reply_fault only returns reply faults
            channel.send(reply, not_before)

    def _garbage(self) -> bytes:
        assert self.faults is not None
        return self.faults.garbage()

    async def _send_late(self, channel: _Channel, reply: bytes, fault: Fault) -> None:
        await asyncio.sleep(fault.delay_s)
        channel.send(reply, time.monotonic())

    def _send_unsolicited(self, not_before: float) -> None:
        try:
            outputs = self.handler.unsolicited()
        except Exception:
            log.exception("%s: handler.unsolicited() failed", self.handler.device_name)
            return
        for output in outputs:
            for channel in self._channels():
                channel.send(output, not_before)

    def _channels(self) -> list[_Channel]:
        if self._pty is not None:
            return [self._pty]
        return list(self._tcp_channels)

    def _start_polling(self) -> None:
        if self.handler.poll_interval_s is not None:
            self._spawn(self._poll(), name=f"{self.handler.device_name}-poll")

    async def _poll(self) -> None:
        while True:
            interval = self.handler.poll_interval_s
            if interval is None:
                return
            await asyncio.sleep(interval)
            if self.connected:
                self._send_unsolicited(time.monotonic())

    # -- disconnect -----------------------------------------------------------------------

    def _accepting(self) -> bool:
        return not self._down and not self._stopped

    def disconnect(self, delay_s: float) -> None:
        """Make the port vanish now and come back after ``delay_s`` wall seconds.

        On a pty the client's descriptor gets ``EIO`` and the link disappears until a
        new pty is linked; on TCP every connection is closed and new ones are hung up.
        """
        if self._down or self._stopped:
            return
        self._down = True
        self._up.clear()
        self.handler.reset_input()
        if self._kind == "pty":
            self._close_pty()
        else:
            for channel in list(self._tcp_channels):
                channel.close()
        self._spawn(self._come_back(delay_s), name=f"{self.handler.device_name}-replug")

    async def _come_back(self, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        if self._stopped:
            return
        if self._kind == "pty":
            self._open_pty()
        self._down = False
        self._up.set()


class SerialDeviceEmulator:
    """An emulated serial device: a mechanism + a protocol handler + a server.

    Every emulator in :data:`medtwin.drivers.registry.EMULATORS` has this shape (the Modbus ones
    implement the same three methods over pymodbus)::

        emulator = NE1000Emulator(bench.pump, clock=clock, faults=plan, pacing=None)
        port = await emulator.start()            # pty link; or start(tcp=("127.0.0.1", 0))
        ...                                      # clients open `port`
        await emulator.stop()

    Subclasses set :attr:`handler_class`; it is built as
    ``handler_class(mechanism, clock=clock, **handler_options)`` (override
    :meth:`build_handler` for anything else).
    """

    handler_class: type[ProtocolHandler]

    def __init__(
        self,
        mechanism: object,
        *,
        clock: Clock,
        faults: FaultPlan | None = None,
        pacing: Pacing | None = None,
        **handler_options: object,
    ) -> None:
        self.mechanism = mechanism
        self.clock = clock
        self.handler = self.build_handler(mechanism, clock=clock, options=handler_options)
        self.server = EmulatorServer(self.handler, clock=clock, faults=faults, pacing=pacing)

    def build_handler(
        self, mechanism: object, *, clock: Clock, options: dict[str, object]
    ) -> ProtocolHandler:
        factory = cast(Callable[..., ProtocolHandler], self.handler_class)
        return factory(mechanism, clock=clock, **options)

    async def start(self, *, tcp: tuple[str, int] | None = None) -> str:
        """Serve on a new pty (default) or on TCP; returns the port string a client opens
        (the stable pty link, or ``socket://127.0.0.1:PORT``)."""
        if tcp is None:
            return await self.server.start_pty()
        await self.server.start_tcp(*tcp)
        return self.server.port

    @property
    def port(self) -> str:
        return self.server.port

    async def stop(self) -> None:
        await self.server.stop()

    async def __aenter__(self) -> SerialDeviceEmulator:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()
