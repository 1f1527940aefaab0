"""The MT-SICS driver: :class:`MTSICSBalance` talks to a Mettler Toledo balance over a transport.

The messages are :mod:`medtwin.drivers.mtsics.codec`'s (MT-SICS reference manuals 11780711
and 11780447, levels 0 and 1); this module adds the I/O.

Driver-side decisions (see ``docs/protocols/mt-sics.md``):

* ``S I`` / ``T I`` / ``Z I`` ("not executable: busy, or no stable value in time") raise
  :class:`~medtwin.drivers.errors.CommandRefused`, not
  :class:`~medtwin.drivers.errors.DeviceTimeout`: the
  balance *did* answer, so the guarded call path must not retry it as a lost reply, and the
  caller can decide to retry or to read the dynamic value with ``read(stable=False)``.
* ``+``/``-`` (overload/underload) and ``ES``/``ET``/``EL`` raise ``CommandRefused`` naming
  the command and what the balance said.
* A reply line that is not MT-SICS raises :class:`~medtwin.drivers.errors.ProtocolError` with the
  bytes; valid lines that belong to another command (a print-key transmission, a stale
  reply) are skipped, a bounded number of them.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from types import TracebackType
from typing import Any, ClassVar, Final, Self, TypeVar

from medtwin.drivers.base import Balance, BalanceReading, DeviceIdentity, RetryPolicy
from medtwin.drivers.clock import Clock
from medtwin.drivers.errors import (
    CommandRefused,
    DeviceError,
    LimitError,
    PortError,
    ProtocolError,
)
from medtwin.drivers.transport import ByteTransport, line_settings, open_transport

__all__ = [
    "BalanceStream",
    "MTSICSBalance",
]

from medtwin.drivers.mtsics.codec import (
    _NUMBER_RE,
    LINE_END,
    MASS_UNITS_G,
    STATUS_MEANING,
    Command,
    DataReply,
    ErrorReply,
    Reply,
    StatusReply,
    WeightReply,
    decode_reply,
    reply_id,
)

T = TypeVar("T")

#: Valid reply lines of other commands skipped while waiting for a reply (a print-key
#: transmission, a reply that arrived after its command timed out).
_MAX_SKIPPED_LINES: Final = 8
#: Longest line accepted from a balance before the input counts as garbage.
_MAX_LINE_BYTES: Final = 512
#: Lines read while stopping a stream before giving up (stream lines in flight, the ``SI``
#: reply, then the ``I4`` fence).
_MAX_FENCE_LINES: Final = 1000


class MTSICSBalance(Balance):
    """A Mettler Toledo (or MT-SICS compatible) balance on a serial port or TCP.

    Parameters
    ----------
    port : str
        ``/dev/ttyUSB0``, an emulator's ``/dev/pts/N``, ``socket://host:port``, or another
        pyserial URL.
    baudrate, bytesize, parity, stopbits
        Line settings; the factory setting of most balances is 9600 8N1.
    handshake : {"none", "xonxoff", "rtscts"}
        Flow control, to match the balance's interface menu (default none). With
        ``xonxoff`` a balance that sends XOFF holds our commands until its XON, and the
        XON/XOFF bytes never reach the reply parser.
    name : str, optional
        Used in logs and error messages.
    clock : Clock, optional
        Time base for reading timestamps (scenario time).
    retry : RetryPolicy, optional
        Timeouts and retries. The default allows 5 s per attempt because ``S``, ``T`` and
        ``Z`` wait *on the balance* for a stable value before answering (``S I`` after the
        balance's own stability timeout, which is model-specific); one attempt must outlast
        it or a slow-settling load reads as a lost reply.
    """

    protocol: ClassVar[str] = "mt-sics"
    #: Default policy when none is given (see ``retry`` above).
    DEFAULT_RETRY: ClassVar[RetryPolicy] = RetryPolicy(timeout_s=5.0)

    def __init__(
        self,
        port: str,
        *,
        baudrate: int = 9600,
        bytesize: int = 8,
        parity: str = "N",
        stopbits: float = 1,
        handshake: str = "none",
        name: str | None = None,
        clock: Clock | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        super().__init__(port, name=name, clock=clock, retry=retry or self.DEFAULT_RETRY)
        self.baudrate = baudrate
        self.bytesize = bytesize
        self.parity = parity
        self.stopbits = stopbits
        self.handshake = handshake
        # Checked now (no I/O), not at the first open: a wrong setting is a set-up error.
        line_settings(port, self.name, **self._line())
        #: Weighing capacity from ``I2`` (g), known after :meth:`identify`.
        self.capacity_g: float | None = None
        self._transport: ByteTransport | None = None
        self._stream: BalanceStream | None = None

    # -- transport -------------------------------------------------------------------

    def _line(self) -> dict[str, Any]:
        return {
            "baudrate": self.baudrate,
            "bytesize": self.bytesize,
            "parity": self.parity,
            "stopbits": self.stopbits,
            "handshake": self.handshake,
        }

    async def _open(self) -> None:
        transport = open_transport(self.port, device=self.name, **self._line())
        await transport.open()
        # A balance that was just switched on announces itself with an unsolicited
        # ``I4 A "<serial>"``; anything waiting belongs to nobody.
        transport.discard_input()
        self._transport = transport

    async def _close(self) -> None:
        transport, self._transport = self._transport, None
        self._stream = None
        if transport is not None:
            await transport.close()

    async def _resync(self) -> None:
        if self._transport is not None:
            self._transport.discard_input()

    def _port(self) -> ByteTransport:
        if self._transport is None:
            # Only after a failed reopen: a PortError lets the call path try again.
            raise PortError(f"{self.port} is not open (lost, reopening failed)", device=self.name)
        return self._transport

    async def _call(self, method: str, op: Callable[[], Awaitable[T]]) -> T:
        # While SIR streams, every line the balance sends is a weight value: a command
        # interleaved now would read a stream line as its reply.
        self._refuse_while_streaming(method)

        async def guarded() -> T:
            self._refuse_while_streaming(method)
            return await op()

        return await super()._call(method, guarded)

    def _refuse_while_streaming(self, method: str) -> None:
        if self._stream is not None:
            raise DeviceError(
                f"{method}() is not possible while an SIR stream is open; close the stream "
                "(leave its 'async with' block) first",
                device=self.name,
            )

    async def _read_line(self) -> bytes:
        return await self._port().read_until(LINE_END, max_size=_MAX_LINE_BYTES)

    async def _exchange(self, command: Command) -> tuple[Reply, bytes]:
        """Send ``command``; return its reply and the line it came in (valid lines of
        other commands are skipped)."""
        port = self._port()
        await port.write(command.encode())
        expected = reply_id(command.name)
        for _ in range(_MAX_SKIPPED_LINES + 1):
            line = await self._read_line()
            reply = decode_reply(line, device=self.name)
            if isinstance(reply, ErrorReply):
                raise CommandRefused(
                    f"{command.name}: the balance answered {reply.code} ({reply.meaning})",
                    device=self.name,
                    reply=line,
                )
            if reply.command == expected:
                if isinstance(reply, StatusReply) and reply.status in "IL+-":
                    raise CommandRefused(
                        f"{command.name}: the balance answered "
                        f"'{reply.command} {reply.status}': {STATUS_MEANING[reply.status]}",
                        device=self.name,
                        reply=line,
                    )
                return reply, line
        raise ProtocolError(
            f"no reply to {command.name!r} among {_MAX_SKIPPED_LINES + 1} lines; the last "
            "one is shown",
            raw=line,
            device=self.name,
        )

    def _unexpected(self, command: str, line: bytes) -> ProtocolError:
        return ProtocolError(f"unexpected reply to {command!r}", raw=line, device=self.name)

    def _mass_g(self, reply: WeightReply) -> float:
        try:
            return reply.mass_g()
        except ValueError as exc:
            raise DeviceError(
                f"{exc}; set the balance's weighing unit (unit 1) to g", device=self.name
            ) from None

    def _reading(self, reply: Reply, line: bytes, command: str) -> BalanceReading:
        if not (isinstance(reply, WeightReply) and reply.status in ("S", "D")):
            raise self._unexpected(command, line)
        return BalanceReading(
            t_s=self.clock.now(), mass_g=self._mass_g(reply), stable=reply.status == "S"
        )

    # -- Balance ---------------------------------------------------------------------

    async def _read(self, stable: bool) -> BalanceReading:
        command = "S" if stable else "SI"
        reply, line = await self._exchange(Command(command))
        reading = self._reading(reply, line, command)
        if stable and not reading.stable:
            raise self._unexpected(command, line)
        return reading

    async def _tare(self) -> float:
        reply, line = await self._exchange(Command("T"))
        if not (isinstance(reply, WeightReply) and reply.status == "S"):
            raise self._unexpected("T", line)
        return self._mass_g(reply)

    async def _zero(self) -> None:
        reply, line = await self._exchange(Command("Z"))
        if not (isinstance(reply, StatusReply) and reply.status == "A"):
            raise self._unexpected("Z", line)

    async def _text(self, command: str) -> str:
        reply, line = await self._exchange(Command(command))
        if not (isinstance(reply, DataReply) and reply.status == "A"):
            raise self._unexpected(command, line)
        return " ".join(reply.texts)

    async def _identify(self) -> DeviceIdentity:
        data = await self._text("I2")
        serial = await self._text("I4")
        firmware = await self._text("I3")
        model, capacity_g = _split_balance_data(data)
        self.capacity_g = capacity_g
        return DeviceIdentity(
            protocol=self.protocol,
            model=model,
            serial=serial,
            firmware=firmware,
            address=self.port,
        )

    # -- MT-SICS extras ------------------------------------------------------------------

    async def tare_value(self) -> float:
        """The tare currently in the balance's tare memory (``TA``), in g."""

        async def op() -> float:
            reply, line = await self._exchange(Command("TA"))
            if not isinstance(reply, WeightReply) or reply.status != "A":
                raise self._unexpected("TA", line)
            return self._mass_g(reply)

        return await self._call("tare_value", op)

    async def preset_tare(self, tare_g: float) -> float:
        """Preset the tare to ``tare_g`` grams (``TA <value> g``); returns the tare the
        balance stored (rounded to its readability)."""
        if not (math.isfinite(tare_g) and tare_g >= 0):
            raise LimitError(
                f"preset tare {tare_g!r} g must be a finite value >= 0; nothing was sent",
                device=self.name,
            )
        if self.capacity_g is not None and tare_g > self.capacity_g:
            raise LimitError(
                f"preset tare {tare_g:g} g is above the balance's capacity "
                f"{self.capacity_g:g} g; nothing was sent",
                device=self.name,
            )

        async def op() -> float:
            value = format(Decimal(repr(float(tare_g))), "f")
            reply, line = await self._exchange(Command("TA", (value, "g")))
            if not isinstance(reply, WeightReply) or reply.status != "A":
                raise self._unexpected("TA", line)
            return self._mass_g(reply)

        return await self._call("preset_tare", op)

    async def clear_tare(self) -> None:
        """Clear the tare memory (``TAC``)."""

        async def op() -> None:
            reply, line = await self._exchange(Command("TAC"))
            if not (isinstance(reply, StatusReply) and reply.status == "A"):
                raise self._unexpected("TAC", line)

        await self._call("clear_tare", op)

    async def reset(self) -> str:
        """``@``: cancel whatever the balance is doing and return to its power-on state
        (without zeroing; the tare memory is cleared). Returns the serial number."""
        return await self._call("reset", lambda: self._text("@"))

    def stream(self) -> BalanceStream:
        """Readings sent by the balance on its own (``SIR``), as an async iterator.

        Use it as ``async with balance.stream() as readings: async for r in readings: …``.
        Leaving the block stops the stream (``SI``) and drops what was still in flight;
        until then the balance's other methods raise :class:`DeviceError`.
        """
        self._require_open("stream")
        return BalanceStream(self)


def _split_balance_data(text: str) -> tuple[str, float | None]:
    """``"XS205DU 220.00 g"`` → ``("XS205DU", 220.0)``; text without capacity → (text, None)."""
    parts = text.rsplit(" ", 2)
    if len(parts) == 3 and parts[2] in MASS_UNITS_G and _NUMBER_RE.fullmatch(parts[1]):
        return parts[0], float(parts[1]) * MASS_UNITS_G[parts[2]]
    return text, None


class BalanceStream:
    """An open ``SIR`` stream of one :class:`MTSICSBalance` (see :meth:`MTSICSBalance.stream`).

    Iterating yields one :class:`BalanceReading` per line the balance sends (stable or
    dynamic). ``S +``/``S -``/``S I`` lines raise :class:`CommandRefused`, a garbled line
    raises :class:`ProtocolError` and no line within ``retry.timeout_s`` raises
    :class:`DeviceTimeout`; the stream stays open after any of these, so iteration may go
    on. Closing sends ``SI`` (which cancels ``SIR``) and then ``I4`` as a fence: every line
    before the ``I4`` reply is dropped, so the balance is quiet and in step afterwards.
    """

    def __init__(self, balance: MTSICSBalance) -> None:
        self._balance = balance
        self._open = False
        self._closed = False

    async def start(self) -> None:
        """Send ``SIR``. Called by ``async with``."""
        if self._open or self._closed:
            raise DeviceError("an SIR stream can be started once", device=self._balance.name)
        balance = self._balance

        async def op() -> None:
            await balance._port().write(Command("SIR").encode())

        await balance._call("stream", op)
        balance._stream = self
        self._open = True

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __aiter__(self) -> AsyncIterator[BalanceReading]:
        return self

    async def __anext__(self) -> BalanceReading:
        if not self._open:
            raise StopAsyncIteration
        balance = self._balance
        line = await balance._within(balance._read_line, what="SIR stream: no value")
        reply = decode_reply(line, device=balance.name)
        if isinstance(reply, StatusReply) and reply.command == "S" and reply.status in "I+-":
            raise CommandRefused(
                f"SIR stream: the balance sent 'S {reply.status}': {STATUS_MEANING[reply.status]}",
                device=balance.name,
                reply=line,
            )
        return balance._reading(reply, line, "SIR")

    async def aclose(self) -> None:
        """Stop the stream (``SI``, then the ``I4`` fence). Safe to call twice."""
        if not self._open:
            return
        self._open = False
        self._closed = True
        balance = self._balance
        if balance._transport is None:  # the port closed under us: nothing to stop
            balance._stream = None
            return

        async def stop() -> None:
            port = balance._port()
            await port.write(Command("SI").encode() + Command("I4").encode())
            for _ in range(_MAX_FENCE_LINES):
                line = await balance._read_line()
                if line.startswith(b"I4 "):
                    return
            raise ProtocolError(
                f"SIR stream did not stop within {_MAX_FENCE_LINES} lines",
                raw=line,
                device=balance.name,
            )

        try:
            await balance._within(stop, what="SIR stream: no answer to the stop command")
        finally:
            balance._stream = None
