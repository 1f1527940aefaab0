"""The one emulator server: a framer and a device protocol handler behind a pty or TCP port.

Every emulator is the same three parts (pymodbus separates them the same way):

* a **framer** (:class:`medtwin.drivers.framing.Framer`) that splits the bytes one
  connection receives into frames: ASCII lines (NE-1000 basic mode, MT-SICS), STX/ETX
  packets (NE-1000 safe mode), Modbus RTU frames ended by t3.5 of silence, MBAP over TCP,
  fixed-length binary streams;
* a **protocol handler** (:class:`ProtocolHandler`): the device's firmware as a pure state
  machine, frames in, reply bytes out, plus whatever it sends unsolicited (NE-1000
  auto-alarms, MT-SICS ``SIR`` lines, a monitor's continuous stream);
* this **server** (:class:`EmulatorServer`), which owns the port and everything that
  happens on the wire, identically for every protocol:

  - **pty**: ``os.openpty()`` in raw mode; clients are given a *stable link* in a private
    temporary directory (``/tmp/medtwin-emu-XXXX/ttyNE1000``) pointing at the current
    slave, the way ``/dev/serial/by-id`` links follow a USB adapter across replugs. The
    server keeps its own slave descriptor open, so the master never reads ``EIO`` between
    clients.
  - **TCP**: ``loop.create_server`` on a loopback address only (127.0.0.1 by default;
    anything else is refused); each connection gets its own framer.
  - **faults** (:func:`medtwin.drivers.emulators.faults.apply_reply_fault`) act on every
    solicited reply at *clock* time, the same way for every framing: garbage in front,
    a checksum broken the framer's way, a reply dropped, sent ``delay_s`` wall seconds
    late, or the port dropped (a ``disconnect``: on a pty the client's descriptor gets
    ``EIO`` and the link disappears until a new pty is linked ``delay_s`` wall seconds
    later; on TCP every connection is closed and new ones are hung up meanwhile).
    Unsolicited output is sent as is.
  - **pacing** (:class:`~medtwin.drivers.emulators.pacing.Pacing`): a request of *n* bytes
    is complete ``n × bits_per_char / baud`` after it started to arrive, a reply occupies
    the transmit line for its wire time, and a framing that ends frames by silence
    (Modbus RTU) keeps t3.5 before and after each reply on its one half-duplex line.
  - **unsolicited output** is collected after every received chunk and, while a client
    can receive it, every ``handler.poll_interval_s`` wall seconds on a fixed-rate
    schedule (a 75 Hz stream does not drift by the time its own work takes).

A handler whose :meth:`ProtocolHandler.handle` is a coroutine (the Modbus slaves, whose
PDUs pymodbus answers asynchronously) is served in order by one worker per connection
that awaits each reply's delivery; on a half-duplex line (:attr:`Framer.half_duplex`) the
device ignores frames that arrive while it answers, as an RS-485 slave does. A synchronous
handler is answered inline (the fast path of the request/reply benchmarks), a ``late``
reply then leaving from its own task so that later requests are served meanwhile.

Hand-written on asyncio rather than on pyserial's ``PortManager``/``socat`` or pymodbus's
servers because the behaviour under test (faults per reply, replug through a stable link,
wire pacing) lives exactly in the layer those tools hide.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import inspect
import ipaddress
import logging
import os
import re
import shutil
import tempfile
import time
import tty
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, cast

from medtwin.drivers.clock import Clock
from medtwin.drivers.emulators.faults import FaultPlan, apply_reply_fault
from medtwin.drivers.emulators.pacing import Pacing, sleep_until
from medtwin.drivers.errors import ConfigurationError, ProtocolError
from medtwin.drivers.framing import Framer, RawFramer, flip_middle_byte

__all__ = ["EmulatorServer", "Pacing", "ProtocolHandler", "SerialDeviceEmulator"]

log = logging.getLogger(__name__)

#: How long a write to a client that stopped reading may wait before the bytes are
#: dropped (a UART transmits whether or not anyone listens).
WRITE_STALL_S = 1.0

#: Chunks kept in :attr:`EmulatorServer.rx_log` for tests and troubleshooting.
RX_LOG_CHUNKS = 256

#: Without pacing a pty moves bytes at once; a burst that forms no frame is ended after
#: this much silence (the spec's t3.5 is far shorter, but an unpaced client may write a
#: frame in more than one system call).
UNPACED_SILENCE_S = 0.02

Replies = Sequence[bytes]


class ProtocolHandler:
    """Device side of one protocol: frames in, replies out (pure, no I/O).

    A handler either frames its own input, implementing :meth:`feed` (bytes, possibly a
    partial frame or several, in; complete replies out) and optionally
    :meth:`corrupt_checksum`; or it names its framing in :meth:`new_framer` and answers one
    frame at a time in :meth:`handle` (then :meth:`feed` runs its own framer, for tests
    and tools that drive a handler without a server). :meth:`handle` may be a coroutine.

    A handler must never raise from ``feed``/``handle``: malformed input gets the device's
    own error reply (or silence) and the handler keeps serving. The server still guards
    against a handler bug: an exception is logged and the input dropped.

    Handlers used through :class:`SerialDeviceEmulator` are constructed as
    ``handler_class(mechanism, clock=clock, **options)``.
    """

    #: Name used in logs, ProtocolError messages and the pty link name.
    device_name: str = "device"
    #: How often the server polls :meth:`unsolicited` (wall seconds); None: never.
    poll_interval_s: float | None = None
    #: Scheme of the port string on TCP (``socket://`` for a serial line carried over TCP;
    #: ``tcp://`` for Modbus TCP).
    tcp_scheme: str = "socket"
    #: What a TCP client meets while a ``disconnect`` fault holds the port away:
    #: ``"hang-up"`` (accepted and closed at once, as a terminal server whose serial
    #: device is unplugged) or ``"refuse"`` (no listener: the device's own TCP stack is gone).
    tcp_outage: str = "hang-up"

    def new_framer(self) -> Framer[Any]:
        """A framer for one new connection (default: the handler frames its own input)."""
        return RawFramer(self.corrupt_checksum)

    def handle(self, frame: Any) -> Replies | Awaitable[Replies]:
        """The replies to one frame from :meth:`new_framer`'s framer."""
        if type(self).feed is ProtocolHandler.feed:
            raise NotImplementedError(f"{type(self).__name__} implements neither handle nor feed")
        return self.feed(frame)

    def feed(self, data: bytes) -> list[bytes]:
        """Replies due after ``data`` (a handler with a framer: framed by its own one)."""
        framer = self.__dict__.get("_own_framer")
        if framer is None:
            framer = self.__dict__["_own_framer"] = self.new_framer()
        replies: list[bytes] = []
        for frame in framer.feed(data):
            result = self.handle(frame)
            if inspect.isawaitable(result):
                raise TypeError(f"{type(self).__name__}.handle is asynchronous: serve it")
            replies += result
        return replies

    def addressed(self, frame: Any) -> bool:
        """Whether a frame is for this device (a Modbus slave ignores other addresses)."""
        return True

    def answers(self, frame: Any) -> bool:
        """Whether the device will answer ``frame`` (a Modbus broadcast gets no reply, so
        a half-duplex slave keeps listening while it carries one out)."""
        return True

    def unsolicited(self) -> list[bytes]:
        return []

    def corrupt_checksum(self, reply: bytes) -> bytes:
        """The reply with its checksum broken, for a handler that frames its own input
        (framed handlers leave this to their framer)."""
        return flip_middle_byte(reply)

    def reset_input(self) -> None:
        """Forget partial input and queued work (called on disconnect; the server's own
        framers go with the connection). Overrides call this too."""
        framer = self.__dict__.get("_own_framer")
        if framer is not None:
            framer.reset()


class _Channel:
    """One byte pipe to a client: its framer, its line clocks, its send queue."""

    def __init__(self, server: EmulatorServer, name: str) -> None:
        self.server = server
        self.name = name
        self.alive = True
        self.framer: Framer[Any] = server.handler.new_framer()
        pacing = server.pacing
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
        pacing = self.server.pacing
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
        if self.half_duplex and self.server.pacing is not None:
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
        if self.server.pacing is None and not self._queue and self._writer is None:
            written = self._write_some(data)
            if written is None or written >= len(data):
                return
            data = data[written:]
        self._enqueue(data, not_before, None)

    async def send_and_wait(self, data: bytes, not_before: float) -> None:
        """Send and return once the last byte has left (on a paced line: on the wire)."""
        if not self.alive or not data:
            return
        if self.server.pacing is None and not self._queue and self._writer is None:
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
                pacing = self.server.pacing
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


class _PtyChannel(_Channel):
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
        self.server._tcp_channels.discard(self)
        _Channel.close(self)

    def _write_now(self, data: bytes) -> int:
        if self.transport is None or self.transport.is_closing():
            raise ConnectionError("connection closed")
        self.transport.write(data)
        return len(data)

    def close(self) -> None:
        super().close()
        if self.transport is not None:
            self.transport.close()


def _loopback(host: str) -> str:
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


class EmulatorServer:
    """Serves one :class:`ProtocolHandler` on a pty or TCP port.

    Parameters
    ----------
    handler : ProtocolHandler
        The device side of the protocol; its :meth:`~ProtocolHandler.new_framer` frames
        each connection's input.
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
        #: Replies sent (after the fault layer: a dropped one does not count), and frames
        #: a half-duplex device ignored because it was answering.
        self.replies = 0
        self.ignored = 0
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
        self._tcp_address: tuple[str, int] | None = None
        self._tcp_channels: set[_TcpChannel] = set()
        self._down = False
        self._stopped = False
        self._up = asyncio.Event()
        self._asynchronous = inspect.iscoroutinefunction(handler.handle)

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
        try:
            self._open_pty()
        except OSError:
            shutil.rmtree(self._link_dir, ignore_errors=True)
            raise
        self._port = str(self._link)
        self._start_polling()
        self._up.set()
        return self._port

    async def start_tcp(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        """Listen on TCP, on a loopback address only; returns (host, port).

        Raises
        ------
        ConfigurationError
            If ``host`` is not a loopback address: an emulator never listens on a network.
        """
        host = _loopback(host)
        self._check_not_started()
        self._kind = "tcp"
        loop = asyncio.get_running_loop()
        self._tcp_server = await loop.create_server(lambda: _TcpChannel(self), host, port)
        bound = self._tcp_server.sockets[0].getsockname()
        bound_host, bound_port = str(bound[0]), int(bound[1])
        self._tcp_address = (host, bound_port)
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        self._port = f"{self.handler.tcp_scheme}://{shown}:{bound_port}"
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
        self._close_pty()
        if self._link_dir is not None:
            shutil.rmtree(self._link_dir, ignore_errors=True)
            self._link_dir = None
        for channel in list(self._tcp_channels):
            channel.close()
        self._tcp_channels.clear()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
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
        arrived = channel.received(len(data))
        try:
            frames = channel.framer.feed(data)
        except ProtocolError as exc:
            # The stream cannot be resynchronised (MBAP): drop the connection, as a
            # server does; a pty just starts afresh.
            log.debug("%s: %s; input dropped", channel.name, exc)
            channel.framer.reset()
            if not channel.serial_line:
                channel.close()
            return
        except Exception:
            log.exception("%s: framer failed on %r; input dropped", channel.name, data)
            channel.framer.reset()
            return
        self._on_frames(channel, frames, arrived)
        channel.arm_silence()
        self._send_unsolicited(arrived)

    def _on_frames(self, channel: _Channel, frames: list[Any], arrived: float) -> None:
        handler = self.handler
        for frame in frames:
            if not handler.addressed(frame):
                continue  # another device on the line: stay silent
            if self._asynchronous:
                if channel.half_duplex:
                    if channel.busy:
                        # A half-duplex device does not listen while it answers.
                        self.ignored += 1
                        continue
                    channel.busy = handler.answers(frame)
                channel.submit(frame, arrived)
                continue
            try:
                replies = handler.handle(frame)
            except Exception:
                log.exception("%s: handler failed on %r; input dropped", channel.name, frame)
                continue
            for reply in cast(Replies, replies):
                self._dispatch(channel, reply, arrived)

    def _dispatch(self, channel: _Channel, reply: bytes, not_before: float) -> None:
        outcome = self._faulted(channel, reply)
        if outcome is None:
            return
        data, late_s = outcome
        if late_s > 0:
            self._spawn(self._send_late(channel, data, late_s), name="late-reply")
        else:
            self.replies += 1
            channel.send(data, not_before)

    async def _answer(self, channel: _Channel, frame: Any, arrived: float) -> None:
        """Serve one frame of an asynchronous handler and deliver its replies in order."""
        try:
            replies = await cast(Awaitable[Replies], self.handler.handle(frame))
        except Exception:
            log.exception("%s: handler failed on %r; input dropped", channel.name, frame)
            return
        if not replies:
            channel.line_quiet_after(arrived)
        for reply in replies:
            outcome = self._faulted(channel, reply)
            if outcome is None:
                channel.line_quiet_after(arrived)
                continue
            data, late_s = outcome
            if late_s > 0:
                await asyncio.sleep(late_s)
            self.replies += 1
            await channel.send_and_wait(data, arrived + channel.turnaround_s)

    def _faulted(self, channel: _Channel, reply: bytes) -> tuple[bytes, float] | None:
        """The fault layer: what to send (and how late), or None for nothing."""
        if self.faults is None:
            return reply, 0.0
        now = self.clock.now()
        outcome = apply_reply_fault(
            self.faults, reply, t_s=now, break_checksum=channel.framer.break_checksum
        )
        if outcome.fault is not None:
            self.fault_log.append((now, outcome.fault.kind))
        if outcome.disconnect_s is not None:
            self.disconnect(outcome.disconnect_s)
            return None
        if outcome.data is None:
            return None
        return outcome.data, outcome.late_s

    async def _send_late(self, channel: _Channel, reply: bytes, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        self.replies += 1
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
        # Fixed-rate schedule: a device streaming at 75 Hz keeps its rate whatever each
        # poll costs; after a long stall the schedule restarts instead of bursting.
        due = time.monotonic()
        while True:
            interval = self.handler.poll_interval_s
            if interval is None:
                return
            due += interval
            now = time.monotonic()
            if due < now - interval:
                due = now + interval
            await asyncio.sleep(max(0.0, due - now))
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
            if self.handler.tcp_outage == "refuse" and self._tcp_server is not None:
                self._tcp_server.close()
                self._tcp_server = None
            for channel in list(self._tcp_channels):
                channel.close()
        self._spawn(self._come_back(delay_s), name=f"{self.handler.device_name}-replug")

    async def _come_back(self, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        if self._stopped:
            return
        try:
            if self._kind == "pty":
                self._open_pty()
            elif self._tcp_server is None and self._tcp_address is not None:
                loop = asyncio.get_running_loop()
                self._tcp_server = await loop.create_server(
                    lambda: _TcpChannel(self), *self._tcp_address
                )
        except OSError:
            # Nobody awaits this task: say why the port stays away.
            log.exception("%s: could not bring the port back", self.handler.device_name)
            return
        self._down = False
        self._up.set()


class SerialDeviceEmulator:
    """An emulated device: a mechanism + a protocol handler (with its framer) + the server.

    Every emulator in the protocol registry has this shape::

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

    @property
    def faults(self) -> FaultPlan | None:
        return self.server.faults

    @property
    def pacing(self) -> Pacing | None:
        return self.server.pacing

    async def start(self, *, tcp: tuple[str, int] | None = None) -> str:
        """Serve on a new pty (default) or on TCP (loopback only); returns the port string
        a client opens (the stable pty link, or ``socket://127.0.0.1:PORT``)."""
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
