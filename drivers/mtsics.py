"""Mettler Toledo MT-SICS: the codec (bytes ⇄ messages) and the :class:`MTSICSBalance` driver.

MT-SICS (Mettler Toledo Standard Interface Command Set) is the ASCII line protocol of
Mettler Toledo balances and weighing terminals (and of MT-SICS compatible terminals such
as the Ohaus 7000 series). The subset used here is levels 0 and 1 as described in the
MT-SICS reference manuals (Mettler Toledo 11780711 for Excellence/New Classic balances,
11780447 for Basic/Classic balances) and the operating instructions that excerpt them:

* **Commands** are uppercase, parameters are separated from the command name and from
  each other by one space, every command ends with CR LF.
* **Replies** are ``ID STATUS [fields] CR LF``. ``ID`` names the command the reply belongs
  to (``SI`` and ``SIR`` answer with ``S``; ``@`` answers with ``I4``). ``STATUS`` is one
  character: ``A`` done, ``B`` more lines follow, ``S`` stable, ``D`` dynamic (not
  stable), ``I`` not executable now (busy, or no stability within the balance's timeout),
  ``L`` wrong parameter, ``+`` overload / above range, ``-`` underload / below range.
* **Weight replies** carry the value right-aligned in a 10-character field and the unit:
  ``S S     100.00 g`` (``S``), ``S D     129.07 g`` (``SI``), ``T S     100.00 g``,
  ``TA A      10.00 g``. The number of decimals is the balance's readability.
* **Text replies** quote their text: ``I4 A "0123456789"``, ``I2 A "XS205DU 220.00 g"``,
  ``I0 B 0 "S"``.
* **General errors** have no status: ``ES`` syntax (command not recognised), ``ET``
  transmission (parity/framing error, interface break), ``EL`` logical (cannot execute).

The codec is hand-written: there is no maintained asynchronous MT-SICS library to build
on (InstrumentKit's PyPI release predates its MT-SICS module; ``mettler-toledo-device``
was last released in 2018; ``labmcp-mettler-toledo`` is a synchronous MCP server), and the
grammar is small enough that a few regular expressions state it exactly. Decoding never
raises anything but :class:`~medtwin.drivers.errors.ProtocolError` on wire input, which the tests
check with hypothesis.

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
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
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
    "GENERAL_ERRORS",
    "LINE_END",
    "MASS_UNITS_G",
    "STATUS_MEANING",
    "WEIGHT_FIELD_WIDTH",
    "BalanceStream",
    "Command",
    "DataReply",
    "ErrorReply",
    "Field",
    "MTSICSBalance",
    "Quoted",
    "Reply",
    "StatusReply",
    "WeightReply",
    "decimals_for_readability",
    "decode_reply",
    "reply_id",
    "weight_value",
]

T = TypeVar("T")

#: Every MT-SICS command and reply ends with CR LF.
LINE_END: Final = b"\r\n"
#: Width of the right-aligned weight value field of a weight reply.
WEIGHT_FIELD_WIDTH: Final = 10

#: What each status character means (reply to any command).
STATUS_MEANING: Final[dict[str, str]] = {
    "A": "command executed",
    "B": "command executed, more lines follow",
    "S": "stable",
    "D": "dynamic (not stable)",
    "I": "command not executable now (balance busy, or no stable value within its timeout)",
    "L": "command understood but not executable (wrong parameter, or not possible now)",
    "+": "overload: above the weighing (or zeroing/taring) range",
    "-": "underload: below the weighing (or zeroing/taring) range, e.g. pan not in place",
}

#: General error replies, which carry no status.
GENERAL_ERRORS: Final[dict[str, str]] = {
    "ES": "syntax error: the balance did not recognise the command",
    "ET": "transmission error: the balance received a faulty command (parity, framing, break)",
    "EL": "logical error: the balance cannot execute the command",
}

#: Grams per unit for the weighing units an MT-SICS balance can report in.
MASS_UNITS_G: Final[dict[str, float]] = {
    "g": 1.0,
    "mg": 1e-3,
    "ug": 1e-6,
    "kg": 1e3,
    "ct": 0.2,  # metric carat
    "lb": 453.59237,
    "oz": 28.349523125,
    "ozt": 31.1034768,  # troy ounce
    "dwt": 1.55517384,  # pennyweight
    "GN": 0.06479891,  # grain
}

_STATUSES: Final = frozenset(STATUS_MEANING)
_NAME = r"[A-Z][A-Z0-9]{0,7}"
_NAME_RE: Final = re.compile(rf"{_NAME}|@")
_ID_RE: Final = re.compile(_NAME)
_NUMBER = r"-?[0-9]+(?:\.[0-9]+)?"
_NUMBER_RE: Final = re.compile(_NUMBER)
_UNIT = r"[A-Za-z%][A-Za-z0-9%]{0,7}"
_UNIT_RE: Final = re.compile(_UNIT)
# A weight reply: ID, one status character, the right-aligned value, the unit.
_WEIGHT_RE: Final = re.compile(
    rf"(?P<id>{_NAME}) (?P<status>[ABSDIL+\-]) +(?P<value>{_NUMBER}) (?P<unit>{_UNIT})"
)
_STATUS_RE: Final = re.compile(rf"(?P<id>{_NAME}) (?P<status>[ABSDIL+\-])")
_DATA_RE: Final = re.compile(rf"(?P<id>{_NAME}) (?P<status>[ABSDIL+\-]) +(?P<rest>.+)")
# A bare field: printable, no space and no quote. Quoted text: 8-bit characters 32..255
# (the manual's range) except the quote itself, for which the manual defines no escape,
# and DEL, a control character.
_BARE_RE: Final = re.compile(r"[!#-~\x80-\xff]+")
_TEXT_RE: Final = re.compile(r"[ !#-~\x80-\xff]*")
_CONTROL_RE: Final = re.compile(r"[\x00-\x1f\x7f]")


def _wire_text(line: bytes) -> str:
    """The line as text without its CR LF; 8-bit bytes map one-to-one (latin-1)."""
    if line.endswith(LINE_END):
        line = line[: -len(LINE_END)]
    return line.decode("latin-1")


# --------------------------------------------------------------------------- messages


@dataclass(frozen=True, slots=True)
class Quoted:
    """A quoted text field (``"XS205DU 220.00 g"``); ``text`` is without the quotes."""

    text: str

    def __post_init__(self) -> None:
        if _TEXT_RE.fullmatch(self.text) is None:
            raise ValueError(
                f"MT-SICS text {self.text!r} may only hold characters 32..255 except '\"' and DEL"
            )


#: One parameter of a command or field of a reply: a bare token or a quoted text.
Field = str | Quoted


def _check_bare(token: str) -> None:
    if _BARE_RE.fullmatch(token) is None:
        raise ValueError(
            f"MT-SICS field {token!r} must be printable, without spaces or quotes "
            "(use Quoted for text)"
        )


def _encode_field(field: Field) -> str:
    return f'"{field.text}"' if isinstance(field, Quoted) else field


def _split_fields(text: str, *, strict: bool) -> list[Field] | None:
    """The fields of ``text``; ``None`` if it is not well formed.

    Fields are separated by spaces: exactly one when ``strict`` (commands, as the balance
    demands), one or more otherwise (replies, read leniently).
    """
    fields: list[Field] = []
    index = 0
    while index < len(text):
        if fields:
            if text[index] != " ":
                return None
            index += 1
            if not strict:
                while index < len(text) and text[index] == " ":
                    index += 1
            if index == len(text):
                return None  # a trailing separator
        if text[index] == '"':
            end = text.find('"', index + 1)
            if end < 0:
                return None
            body = text[index + 1 : end]
            if _TEXT_RE.fullmatch(body) is None:
                return None
            fields.append(Quoted(body))
            index = end + 1
            continue
        end = text.find(" ", index)
        end = len(text) if end < 0 else end
        token = text[index:end]
        if _BARE_RE.fullmatch(token) is None:
            return None
        fields.append(token)
        index = end
    return fields


@dataclass(frozen=True, slots=True)
class Command:
    """One MT-SICS command: ``name`` (``"S"``, ``"TA"``, ``"@"``) and its parameters.

    ``Command("TA", ("10.00", "g")).encode() == b"TA 10.00 g\\r\\n"``.
    """

    name: str
    params: tuple[Field, ...] = ()

    def __post_init__(self) -> None:
        if _NAME_RE.fullmatch(self.name) is None:
            raise ValueError(
                f"MT-SICS command name {self.name!r} must be '@' or an uppercase letter "
                "followed by up to 7 uppercase letters or digits"
            )
        for param in self.params:
            if not isinstance(param, Quoted):
                _check_bare(param)

    def encode(self) -> bytes:
        """The command as sent on the wire, CR LF included."""
        parts = [self.name, *(_encode_field(p) for p in self.params)]
        return " ".join(parts).encode("latin-1") + LINE_END

    @classmethod
    def decode(cls, line: bytes, *, device: str | None = None) -> Command:
        """Parse one received command line (with or without its CR LF), strictly.

        The balance is strict: uppercase command, single spaces between parameters.

        Raises
        ------
        ProtocolError
            For anything that is not a well-formed command (the balance answers ``ES``).
        """
        text = _wire_text(line)
        if not text:
            raise ProtocolError("empty MT-SICS command", raw=line, device=device)
        if _CONTROL_RE.search(text):
            raise ProtocolError(
                "MT-SICS command contains control characters", raw=line, device=device
            )
        name, separator, rest = text.partition(" ")
        if _NAME_RE.fullmatch(name) is None:
            what = "must be uppercase" if name.upper() != name else "is not a command name"
            raise ProtocolError(f"MT-SICS command {name!r} {what}", raw=line, device=device)
        params: list[Field] = []
        if separator:
            fields = _split_fields(rest, strict=True)
            if not fields:
                raise ProtocolError(
                    "malformed MT-SICS parameters: expected single spaces between them "
                    "and text in double quotes",
                    raw=line,
                    device=device,
                )
            params = fields
        return cls(name, tuple(params))


@dataclass(frozen=True, slots=True)
class WeightReply:
    """A reply with a weight value: ``S S     100.00 g``, ``T S …``, ``TA A …``.

    ``value`` keeps the decimals as sent (``Decimal("100.00")``) so that bytes round-trip.
    """

    command: str
    status: str
    value: Decimal
    unit: str

    def __post_init__(self) -> None:
        if _ID_RE.fullmatch(self.command) is None:
            raise ValueError(f"MT-SICS reply id {self.command!r} is not a command name")
        if self.status not in _STATUSES:
            raise ValueError(f"MT-SICS status {self.status!r} is not one of {sorted(_STATUSES)}")
        if not self.value.is_finite() or _NUMBER_RE.fullmatch(format(self.value, "f")) is None:
            raise ValueError(f"MT-SICS weight value {self.value!r} is not a plain decimal")
        if _UNIT_RE.fullmatch(self.unit) is None:
            raise ValueError(f"MT-SICS unit {self.unit!r} is not a unit symbol")

    @property
    def stable(self) -> bool:
        """Whether the balance flagged the value as stable (``S``, or ``A`` for ``TA``)."""
        return self.status in ("S", "A")

    def mass_g(self) -> float:
        """The value in grams.

        Raises
        ------
        ValueError
            If the unit is not a mass unit (piece counting, percent, a custom unit).
        """
        try:
            factor = MASS_UNITS_G[self.unit]
        except KeyError:
            raise ValueError(
                f"unit {self.unit!r} is not a mass unit; expected one of " + ", ".join(MASS_UNITS_G)
            ) from None
        return float(self.value) * factor

    def encode(self) -> bytes:
        value = format(self.value, "f").rjust(WEIGHT_FIELD_WIDTH)
        return f"{self.command} {self.status} {value} {self.unit}".encode("latin-1") + LINE_END


@dataclass(frozen=True, slots=True)
class StatusReply:
    """A reply that is only a status: ``Z A``, ``S I``, ``S +``, ``TAC A``, ``ZI S``."""

    command: str
    status: str

    def __post_init__(self) -> None:
        if _ID_RE.fullmatch(self.command) is None:
            raise ValueError(f"MT-SICS reply id {self.command!r} is not a command name")
        if self.status not in _STATUSES:
            raise ValueError(f"MT-SICS status {self.status!r} is not one of {sorted(_STATUSES)}")

    def encode(self) -> bytes:
        return f"{self.command} {self.status}".encode("latin-1") + LINE_END


@dataclass(frozen=True, slots=True)
class DataReply:
    """A reply with fields that are not a weight: ``I4 A "0123456789"``, ``I0 B 0 "S"``."""

    command: str
    status: str
    fields: tuple[Field, ...]

    def __post_init__(self) -> None:
        if _ID_RE.fullmatch(self.command) is None:
            raise ValueError(f"MT-SICS reply id {self.command!r} is not a command name")
        if self.status not in _STATUSES:
            raise ValueError(f"MT-SICS status {self.status!r} is not one of {sorted(_STATUSES)}")
        if not self.fields:
            raise ValueError("a DataReply needs at least one field (else use StatusReply)")
        for field in self.fields:
            if not isinstance(field, Quoted):
                _check_bare(field)

    @property
    def texts(self) -> tuple[str, ...]:
        """Every field as text (quoted fields without their quotes)."""
        return tuple(f.text if isinstance(f, Quoted) else f for f in self.fields)

    def encode(self) -> bytes:
        fields = " ".join(_encode_field(f) for f in self.fields)
        return f"{self.command} {self.status} {fields}".encode("latin-1") + LINE_END


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """A general error: ``ES`` (syntax), ``ET`` (transmission) or ``EL`` (logical)."""

    code: str

    def __post_init__(self) -> None:
        if self.code not in GENERAL_ERRORS:
            raise ValueError(f"MT-SICS general error {self.code!r} is not one of ES, ET, EL")

    @property
    def meaning(self) -> str:
        return GENERAL_ERRORS[self.code]

    def encode(self) -> bytes:
        return self.code.encode("ascii") + LINE_END


Reply = WeightReply | StatusReply | DataReply | ErrorReply


def decode_reply(line: bytes, *, device: str | None = None) -> Reply:
    """Parse one reply line (with or without its CR LF).

    Replies from balances are read leniently where the manual leaves room (any number of
    spaces before the weight value or between fields) and strictly everywhere else.

    Raises
    ------
    ProtocolError
        If the line is not an MT-SICS reply; carries the bytes.
    """
    text = _wire_text(line)
    if _CONTROL_RE.search(text):
        raise ProtocolError("MT-SICS reply contains control characters", raw=line, device=device)
    if text in GENERAL_ERRORS:
        return ErrorReply(text)
    match = _WEIGHT_RE.fullmatch(text)
    if match is not None:
        return WeightReply(match["id"], match["status"], Decimal(match["value"]), match["unit"])
    match = _STATUS_RE.fullmatch(text)
    if match is not None:
        return StatusReply(match["id"], match["status"])
    match = _DATA_RE.fullmatch(text)
    if match is not None:
        fields = _split_fields(match["rest"], strict=False)
        if fields:
            return DataReply(match["id"], match["status"], tuple(fields))
    raise ProtocolError("not an MT-SICS reply", raw=line, device=device)


def reply_id(command: str) -> str:
    """The id the reply to ``command`` starts with (``SI``/``SIR`` → ``S``, ``@`` → ``I4``)."""
    return {"SI": "S", "SIR": "S", "@": "I4"}.get(command, command)


def decimals_for_readability(readability_g: float) -> int:
    """Decimals a balance with this readability displays (0.01 g → 2, 0.005 g → 3, 1 g → 0).

    Raises
    ------
    ValueError
        If ``readability_g`` is not a positive finite number.
    """
    if not (math.isfinite(readability_g) and readability_g > 0):
        raise ValueError(f"readability {readability_g!r} g must be a positive number")
    # The small offset absorbs binary rounding (log10(0.001) is -2.9999999999999996).
    return max(0, -math.floor(math.log10(readability_g) + 1e-9))


def weight_value(value: float, decimals: int) -> Decimal:
    """``value`` rounded half-even to ``decimals`` places, as shown on the display.

    A value that rounds to zero is shown without a minus sign.
    """
    quantum = Decimal(1).scaleb(-decimals)
    rounded = Decimal(repr(float(value))).quantize(quantum, rounding=ROUND_HALF_EVEN)
    return rounded.copy_abs() if rounded.is_zero() else rounded


# --------------------------------------------------------------------------- driver

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
