"""Mettler Toledo MT-SICS codec: bytes ⇄ messages, no I/O.

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

The driver (:class:`~medtwin.drivers.mtsics.driver.MTSICSBalance`) and the emulator
(:mod:`medtwin.drivers.emulators.mtsics`) both build on this module; the emulator imports
nothing else of this package.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Final

from medtwin.drivers.errors import (
    ProtocolError,
)

__all__ = [
    "GENERAL_ERRORS",
    "LINE_END",
    "MASS_UNITS_G",
    "STATUS_MEANING",
    "WEIGHT_FIELD_WIDTH",
    "Command",
    "DataReply",
    "ErrorReply",
    "Field",
    "Quoted",
    "Reply",
    "StatusReply",
    "WeightReply",
    "decimals_for_readability",
    "decode_reply",
    "reply_id",
    "weight_value",
]

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
