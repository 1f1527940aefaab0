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
import logging
import re
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, cast

from medtwin.drivers.clock import Clock
from medtwin.drivers.emulators.channels import Channel, PtyChannel, TcpChannel, loopback_host
from medtwin.drivers.emulators.faults import FaultPlan, apply_reply_fault
from medtwin.drivers.emulators.pacing import Pacing
from medtwin.drivers.errors import ProtocolError
from medtwin.drivers.framing import Framer, RawFramer, flip_middle_byte

__all__ = ["EmulatorServer", "Pacing", "ProtocolHandler", "SerialDeviceEmulator"]

log = logging.getLogger(__name__)

#: Chunks kept in :attr:`EmulatorServer.rx_log` for tests and troubleshooting.
RX_LOG_CHUNKS = 256

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
        self._pty: PtyChannel | None = None
        self._link_dir: Path | None = None
        self._link: Path | None = None
        self._tcp_server: asyncio.Server | None = None
        self._tcp_address: tuple[str, int] | None = None
        self._tcp_channels: set[TcpChannel] = set()
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
        host = loopback_host(host)
        self._check_not_started()
        self._kind = "tcp"
        loop = asyncio.get_running_loop()
        self._tcp_server = await loop.create_server(lambda: TcpChannel(self), host, port)
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
    def started(self) -> bool:
        """Whether :meth:`start_pty` or :meth:`start_tcp` has run (even if stopped since)."""
        return bool(self._port)

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
        self._pty = PtyChannel(self)
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

    def _on_data(self, channel: Channel, data: bytes) -> None:
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

    def _on_frames(self, channel: Channel, frames: list[Any], arrived: float) -> None:
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

    def _dispatch(self, channel: Channel, reply: bytes, not_before: float) -> None:
        outcome = self._faulted(channel, reply)
        if outcome is None:
            return
        data, late_s = outcome
        if late_s > 0:
            self._spawn(self._send_late(channel, data, late_s), name="late-reply")
        else:
            self.replies += 1
            channel.send(data, not_before)

    async def _answer(self, channel: Channel, frame: Any, arrived: float) -> None:
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

    def _faulted(self, channel: Channel, reply: bytes) -> tuple[bytes, float] | None:
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

    async def _send_late(self, channel: Channel, reply: bytes, delay_s: float) -> None:
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

    def _channels(self) -> list[Channel]:
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
                    lambda: TcpChannel(self), *self._tcp_address
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
