"""New Era NE-1000 codec: bytes ⇄ messages, no I/O (also NE-500/NE-1600/NE-4000, WPI Aladdin).

Protocol: New Era Pump Systems, *NE-1000 Multi-Phaser User Manual*, publication 1200-01
(08/01/14), §10.2 "RS-232 protocol"; the NE-500 (1200-02), NE-1600 (1200-02), NE-4000 and
NE-9000 (1200-04) manuals carry the same chapter, with the error codes, the alarm
acknowledgement rule and the command set. Behaviour the manuals leave open was checked
against the third-party client florian-lapp/nesp-lib-py (``nesp_lib/pump.py``); see
``docs/protocols/ne1000.md``.

Framing
-------
* Basic mode, to the pump: ``[address] command [arguments] CR``; the pump strips spaces
  and control characters and upper-cases. From the pump: ``STX address(2 digits) status
  [data] ETX``.
* Safe mode, both ways: ``STX length data CRC-16 ETX`` where ``length`` counts every byte
  after STX including itself (``len(data) + 4``) and the CRC is CCITT, init 0, not
  reflected, high byte first, over ``data`` (``binascii.crc_hqx(data, 0)``). The manual's
  own example, the packet that returns a pump to basic mode, is
  ``02 08 'SAF0' 55 43 03``.
* ``status`` is a prompt (``I`` infusing, ``W`` withdrawing, ``S`` stopped, ``P`` paused,
  ``T`` timed pause, ``U`` user wait, ``X`` purging) or an alarm ``A?R`` (reset/power
  loss), ``A?S`` (motor stall), ``A?T`` (safe-mode timeout), ``A?E`` (program error),
  ``A?O`` (phase out of range). ``data`` may be a command error ``?`` (not recognised),
  ``?NA`` (not applicable now), ``?OOR`` (out of range), ``?COM`` (bad packet) or ``?IGN``
  (ignored).
* Numbers: at most 4 digits plus a decimal point, at most 3 digits after it.

Everything here is pure (``encode_*``/``decode_*``/``find_reply``, :class:`Command`,
:class:`Reply`, number formatting, and :class:`NE1000Framer`, the device-side splitter of
the byte stream into basic-mode lines and safe-mode packets): bytes in, dataclasses out,
no I/O, and every malformed input raises :class:`~medtwin.drivers.errors.ProtocolError` (or
:class:`ValueError` for numbers) so it can be fuzzed. The driver
(:mod:`medtwin.drivers.ne1000.driver`) and the emulator
(:mod:`medtwin.drivers.emulators.ne1000`) both build on it; the emulator imports nothing
else of this package.

The codec is hand-written: no maintained library implements the New Era framing as a
reusable codec (nesp-lib couples it to blocking pyserial and threads), and CRC-16 comes
from the standard library.
"""

from __future__ import annotations

import binascii
import enum
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, TypeVar

from medtwin.drivers.base import PumpAlarm
from medtwin.drivers.errors import ProtocolError
from medtwin.drivers.framing import LineFramer, StxEtxFramer

__all__ = [
    "BROADCAST",
    "COMMAND_NAMES",
    "CR",
    "ETX",
    "MAX_COMMAND_LINE",
    "STX",
    "UNKNOWN",
    "AlarmCode",
    "Command",
    "ErrorCode",
    "NE1000Framer",
    "Prompt",
    "RateUnit",
    "Reply",
    "VolumeUnit",
    "choose_rate",
    "choose_volume",
    "clean_command_text",
    "crc16",
    "decode_command",
    "decode_dispensed",
    "decode_quantity",
    "decode_reply",
    "decode_reply_text",
    "decode_safe_packet",
    "encode_basic_command",
    "encode_command",
    "encode_reply",
    "encode_safe_packet",
    "find_reply",
    "format_number",
    "parse_number",
    "scan_reply",
]

STX: Final = 0x02
ETX: Final = 0x03
CR: Final = 0x0D
#: The "system command" address: accepted whatever the pump's own address.
BROADCAST: Final = "*"
#: Highest network address.
MAX_ADDRESS: Final = 99
#: Largest payload a safe-mode packet can carry (the length byte counts payload + 4).
MAX_SAFE_PAYLOAD: Final = 255 - 4
#: A basic reply longer than this is not an NE-1000 reply (guards the frame scanner).
MAX_BASIC_REPLY: Final = 128
#: Digits and decimals of the protocol's <float>.
MAX_DIGITS: Final = 4
MAX_DECIMALS: Final = 3


class Prompt(enum.StrEnum):
    """Operational state in a reply (the ``<prompt>`` of the manual)."""

    INFUSING = "I"
    WITHDRAWING = "W"
    STOPPED = "S"
    PAUSED = "P"
    TIMED_PAUSE = "T"
    USER_WAIT = "U"
    PURGING = "X"


class AlarmCode(enum.StrEnum):
    """``<alarm type>`` after ``A?``."""

    RESET = "R"
    STALL = "S"
    TIMEOUT = "T"
    PROGRAM_ERROR = "E"
    OUT_OF_RANGE = "O"

    @property
    def pump_alarm(self) -> PumpAlarm:
        return _ALARMS[self]

    @classmethod
    def from_pump_alarm(cls, alarm: PumpAlarm) -> AlarmCode | None:
        """The NE-1000 alarm a medtwin alarm shows as (None: the pump has no such alarm).

        The NE-1000 senses no line pressure: an occlusion stalls the motor (``A?S``).
        """
        if alarm is PumpAlarm.OCCLUSION:
            return cls.STALL
        for code, pump_alarm in _ALARMS.items():
            if pump_alarm is alarm:
                return code
        return None


_ALARMS: dict[AlarmCode, PumpAlarm] = {
    AlarmCode.RESET: PumpAlarm.POWER_RESET,
    AlarmCode.STALL: PumpAlarm.MOTOR_STALL,
    AlarmCode.TIMEOUT: PumpAlarm.COMMUNICATION_TIMEOUT,
    AlarmCode.PROGRAM_ERROR: PumpAlarm.PROGRAM_ERROR,
    AlarmCode.OUT_OF_RANGE: PumpAlarm.OUT_OF_RANGE,
}


class ErrorCode(enum.StrEnum):
    """``<command error>`` after ``?``."""

    UNRECOGNIZED = ""
    NOT_APPLICABLE = "NA"
    OUT_OF_RANGE = "OOR"
    COMMUNICATION = "COM"
    IGNORED = "IGN"

    @property
    def meaning(self) -> str:
        return _ERROR_MEANINGS[self]


_ERROR_MEANINGS = {
    ErrorCode.UNRECOGNIZED: "command not recognised",
    ErrorCode.NOT_APPLICABLE: "command not applicable in the pump's current state",
    ErrorCode.OUT_OF_RANGE: "command data out of range",
    ErrorCode.COMMUNICATION: "invalid communications packet received",
    ErrorCode.IGNORED: "command ignored due to a simultaneous new phase start",
}


class RateUnit(enum.StrEnum):
    """Rate units of ``RAT``."""

    ML_MIN = "MM"
    ML_H = "MH"
    UL_MIN = "UM"
    UL_H = "UH"

    @property
    def ml_h(self) -> float:
        """mL/h per one of this unit."""
        return _RATE_ML_H[self]


_RATE_ML_H = {
    RateUnit.ML_MIN: 60.0,
    RateUnit.ML_H: 1.0,
    RateUnit.UL_MIN: 60.0 / 1000.0,
    RateUnit.UL_H: 1.0 / 1000.0,
}
#: Tie-break order when two units represent a rate equally well.
_RATE_PREFERENCE = (RateUnit.ML_H, RateUnit.ML_MIN, RateUnit.UL_H, RateUnit.UL_MIN)


class VolumeUnit(enum.StrEnum):
    """Volume units of ``VOL`` and ``DIS``."""

    ML = "ML"
    UL = "UL"

    @property
    def ml(self) -> float:
        """mL per one of this unit."""
        return 1.0 if self is VolumeUnit.ML else 1e-3


# --------------------------------------------------------------------------- numbers

_NUMBER = re.compile(r"^(?P<int>\d*)(?:\.(?P<frac>\d*))?$")


def format_number(value: float, *, trailing_point: bool = False) -> str:
    """The protocol's ``<float>``: at most 4 digits, at most 3 after the point.

    Uses as many decimals as fit (``5`` → ``5.000``, ``26.594`` → ``26.59``,
    ``1234`` → ``1234``), rounding to nearest.

    Parameters
    ----------
    value : float
        A finite, non-negative number below 9999.5.
    trailing_point : bool
        Write ``1234.`` rather than ``1234`` for 4-digit integers (the pump's own
        replies always carry a decimal point, and nesp-lib's reply parser needs one).

    Raises
    ------
    ValueError
        If the value is negative, not finite or does not fit in 4 digits.
    """
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{value!r} is not a finite, non-negative number")
    for decimals in range(MAX_DECIMALS, -1, -1):
        text = f"{value:.{decimals}f}"
        if sum(ch.isdigit() for ch in text) <= MAX_DIGITS:
            return text + "." if decimals == 0 and trailing_point else text
    raise ValueError(f"{value!r} does not fit in {MAX_DIGITS} digits")


def parse_number(text: str, *, strict: bool = True) -> float:
    """Value of a ``<float>``.

    Parameters
    ----------
    text : str
        Digits with at most one decimal point.
    strict : bool
        Also enforce the 4-digit / 3-decimal limits (the pump does; a driver reading a
        reply accepts more).

    Raises
    ------
    ValueError
        Naming the text and what was expected.
    """
    match = _NUMBER.match(text)
    if match is None or not any(ch.isdigit() for ch in text):
        raise ValueError(f"{text!r} is not a number (digits and at most one '.')")
    frac = match.group("frac") or ""
    if strict and (len(match.group("int")) + len(frac) > MAX_DIGITS or len(frac) > MAX_DECIMALS):
        raise ValueError(f"{text!r} has more than {MAX_DIGITS} digits or {MAX_DECIMALS} decimals")
    return float(text if text != "." else "nan")


def _significant_digits(text: str) -> int:
    return len(text.replace(".", "").lstrip("0"))


def _encodings(
    value: float, units: tuple[tuple[str, float], ...]
) -> list[tuple[int, float, int, str, str]]:
    """Every unit ``value`` (in base units) can be written in, best first."""
    out = []
    for rank, (unit, per_unit) in enumerate(units):
        try:
            text = format_number(value / per_unit)
        except ValueError:
            continue
        written = float(text) * per_unit
        error = abs(written - value) / value if value else (0.0 if written == 0 else math.inf)
        out.append((-_significant_digits(text), error, rank, unit, text))
    out.sort()
    return out


def choose_rate(
    rate_ml_h: float, *, tolerance_rel: float = 5e-4, prefer: RateUnit | None = None
) -> tuple[RateUnit, str]:
    """The ``RAT`` argument that represents ``rate_ml_h`` with the most significant digits.

    Ties go to the smaller rounding error, then to mL/h, mL/min, µL/h, µL/min. ``prefer``
    (the unit the pump runs in: units cannot change while pumping) wins whenever it
    represents the rate within ``tolerance_rel``.

    Raises
    ------
    ValueError
        If no unit represents the rate within ``tolerance_rel`` (relative).
    """
    order: tuple[RateUnit, ...] = _RATE_PREFERENCE
    if prefer is not None:
        order = (prefer, *(u for u in _RATE_PREFERENCE if u is not prefer))
    options = _encodings(rate_ml_h, tuple((u.value, u.ml_h) for u in order))
    good = [o for o in options if o[1] <= tolerance_rel]
    if not good:
        raise ValueError(
            f"{rate_ml_h!r} mL/h cannot be written in 4 digits in any of MM/MH/UM/UH "
            f"within {tolerance_rel:.2%}"
        )
    if prefer is not None:
        for option in good:
            if option[3] == prefer.value:
                return prefer, option[4]
    best = good[0]
    return RateUnit(best[3]), best[4]


def choose_volume(volume_ml: float, *, tolerance_rel: float = 5e-4) -> tuple[VolumeUnit, str]:
    """The ``VOL`` units and value that represent ``volume_ml`` best (see choose_rate)."""
    options = _encodings(volume_ml, ((VolumeUnit.ML.value, 1.0), (VolumeUnit.UL.value, 1e-3)))
    good = [o for o in options if o[1] <= tolerance_rel]
    if not good:
        raise ValueError(
            f"{volume_ml!r} mL cannot be written in 4 digits in mL or µL within {tolerance_rel:.2%}"
        )
    return VolumeUnit(good[0][3]), good[0][4]


# --------------------------------------------------------------------------- commands

#: Commands this codec splits off a command string (longest match first).
COMMAND_NAMES: Final = (
    "RESET",
    "ADR",
    "BUZ",
    "DIN",
    "FUN",
    "LOC",
    "OUT",
    "PHN",
    "ROM",
    "TRG",
    "IN",
    "CLD",
    "DIA",
    "DIR",
    "DIS",
    "PUR",
    "RAT",
    "RUN",
    "SAF",
    "STP",
    "VER",
    "VOL",
    "AL",
    "BP",
    "PF",
)
#: The name :func:`decode_command` gives a command string it does not recognise.
UNKNOWN: Final = "?"

_CONTROL_AND_SPACE = re.compile(r"[\x00-\x20\x7f]+")


@dataclass(frozen=True, slots=True)
class Command:
    """One command to the pump.

    ``name`` is ``""`` for the status query (a packet without a command), a name from
    :data:`COMMAND_NAMES`, or :data:`UNKNOWN` for text the codec did not recognise (the
    text is then in ``argument``). ``address`` is 0-99, :data:`BROADCAST` or None (no
    address: every pump on the line takes it as its own).
    """

    name: str = ""
    argument: str = ""
    address: int | str | None = None

    def text(self) -> str:
        address = "" if self.address is None else str(self.address)
        name = "" if self.name == UNKNOWN else self.name
        return f"{address}{name}{self.argument}"


def clean_command_text(data: bytes) -> str:
    """What the pump makes of received command bytes: control characters and spaces
    stripped, upper-cased, non-ASCII bytes kept as replacement characters."""
    return _CONTROL_AND_SPACE.sub("", data.decode("ascii", errors="replace")).upper()


def decode_command(data: bytes | str) -> Command:
    """Split command data (without CR or packet framing) into address, name, argument.

    Never raises: unrecognised text yields ``Command(UNKNOWN, text, address)``.
    """
    text = clean_command_text(data) if isinstance(data, bytes) else data
    address: int | str | None = None
    if text.startswith(BROADCAST):
        address, text = BROADCAST, text[1:]
    else:
        match = re.match(r"\d{1,2}", text)
        if match:
            address, text = int(match.group()), text[match.end() :]
    if not text:
        return Command("", "", address)
    for name in COMMAND_NAMES:
        if text.startswith(name):
            return Command(name, text[len(name) :], address)
    return Command(UNKNOWN, text, address)


def encode_command(command: Command) -> str:
    """The command data string (no framing)."""
    if isinstance(command.address, int) and not 0 <= command.address <= MAX_ADDRESS:
        raise ValueError(f"address {command.address} outside 0-{MAX_ADDRESS}")
    text = command.text()
    if not text.isascii() or not text.isprintable():
        raise ValueError(f"command {text!r} must be printable ASCII")
    return text


def encode_basic_command(command: Command) -> bytes:
    """Basic-mode frame: command data + CR."""
    return encode_command(command).encode("ascii") + bytes([CR])


# --------------------------------------------------------------------------- safe mode


def crc16(data: bytes) -> int:
    """CRC-16 CCITT (polynomial 0x1021, init 0, not reflected) as the pump computes it."""
    return binascii.crc_hqx(data, 0)


def encode_safe_packet(payload: bytes) -> bytes:
    """``STX length payload CRC-hi CRC-lo ETX``.

    Raises
    ------
    ProtocolError
        If the payload does not fit the one-byte length.
    """
    if len(payload) > MAX_SAFE_PAYLOAD:
        raise ProtocolError(
            f"safe-mode payload of {len(payload)} bytes exceeds {MAX_SAFE_PAYLOAD}",
            raw=payload,
        )
    return bytes([STX, len(payload) + 4, *payload, *crc16(payload).to_bytes(2, "big"), ETX])


def decode_safe_packet(frame: bytes) -> bytes:
    """The payload of one complete safe-mode packet.

    Raises
    ------
    ProtocolError
        For a wrong STX/ETX, a length byte that does not match, or a bad CRC.
    """
    if len(frame) < 5 or frame[0] != STX:
        raise ProtocolError("safe-mode packet must start with STX and hold >= 5 bytes", raw=frame)
    if frame[1] != len(frame) - 1:
        raise ProtocolError(
            f"safe-mode length byte says {frame[1]} but {len(frame) - 1} bytes follow STX",
            raw=frame,
        )
    if frame[-1] != ETX:
        raise ProtocolError("safe-mode packet does not end with ETX", raw=frame)
    payload = frame[2:-3]
    received = int.from_bytes(frame[-3:-1], "big")
    if received != crc16(payload):
        raise ProtocolError(
            f"safe-mode CRC {received:#06x} does not match {crc16(payload):#06x}",
            raw=frame,
        )
    return payload


# --------------------------------------------------------------------------- replies


@dataclass(frozen=True, slots=True)
class Reply:
    """One reply from the pump: address, status (prompt or alarm), data or error.

    Exactly one of ``prompt`` and ``alarm`` is set. ``error`` is None unless the pump
    refused the command; ``data`` holds a query's answer.
    """

    address: int
    prompt: Prompt | None = Prompt.STOPPED
    alarm: AlarmCode | None = None
    error: ErrorCode | None = None
    data: str = ""

    def text(self) -> str:
        if (self.prompt is None) == (self.alarm is None):
            raise ValueError("a reply has exactly one of prompt and alarm")
        if not 0 <= self.address <= MAX_ADDRESS:
            raise ValueError(f"address {self.address} outside 0-{MAX_ADDRESS}")
        status = self.prompt.value if self.prompt is not None else f"A?{self.alarm}"
        if self.error is not None:
            if self.data:
                raise ValueError("a reply carries data or an error, not both")
            tail = f"?{self.error.value}"
        else:
            if self.data.startswith("?"):
                raise ValueError("reply data must not start with '?' (that is an error)")
            tail = self.data
        if not tail.isascii() or not tail.isprintable():
            raise ValueError(f"reply data {tail!r} must be printable ASCII")
        return f"{self.address:02d}{status}{tail}"

    @property
    def pump_alarm(self) -> PumpAlarm | None:
        return self.alarm.pump_alarm if self.alarm is not None else None


_REPLY = re.compile(r"^(?P<addr>\d\d)(?:(?P<prompt>[IWSPTUX])|A\?(?P<alarm>[RSTEO]))(?P<rest>.*)$")


def decode_reply_text(text: str) -> Reply:
    """Parse ``address status [data | ?error]``.

    Raises
    ------
    ProtocolError
        If the text does not follow the reply grammar.
    """
    match = _REPLY.match(text)
    if match is None or not text.isprintable():
        raise ProtocolError(
            "reply is not <2-digit address><I|W|S|P|T|U|X|A?R|S|T|E|O>[data]",
            raw=text.encode("ascii", errors="replace"),
        )
    rest = match.group("rest")
    error: ErrorCode | None = None
    if rest.startswith("?"):
        try:
            error = ErrorCode(rest[1:])
        except ValueError:
            raise ProtocolError(
                f"unknown command error {rest!r}; expected ?, ?NA, ?OOR, ?COM or ?IGN",
                raw=text.encode("ascii"),
            ) from None
        rest = ""
    prompt = Prompt(match.group("prompt")) if match.group("prompt") else None
    alarm = AlarmCode(match.group("alarm")) if match.group("alarm") else None
    return Reply(int(match.group("addr")), prompt, alarm, error, rest)


def encode_reply(reply: Reply, *, safe: bool) -> bytes:
    """A reply frame, basic (``STX text ETX``) or safe-mode packet."""
    payload = reply.text().encode("ascii")
    return encode_safe_packet(payload) if safe else bytes([STX, *payload, ETX])


_BASIC_FRAME = re.compile(rb"\x02(\d\d)(?:([IWSPTUX])|A\?([RSTEO]))([\x20-\x7e]*)\x03\Z")
_PROMPTS = {p.value.encode(): p for p in Prompt}
_ALARM_CODES = {a.value.encode(): a for a in AlarmCode}
_ERRORS = {e.value.encode(): e for e in ErrorCode}


def decode_reply(frame: bytes) -> tuple[Reply, bool]:
    """Decode one complete reply frame of either framing.

    Returns
    -------
    (Reply, bool)
        The reply and whether it came as a safe-mode packet.

    Raises
    ------
    ProtocolError
        For any malformed frame.
    """
    match = _BASIC_FRAME.match(frame)
    if match is not None:
        # The common case in one regex: a well-formed basic reply (printable by pattern).
        return _basic_reply(match, frame), False
    if len(frame) < 2 or frame[0] != STX:
        raise ProtocolError("reply must start with STX", raw=frame)
    if _is_digit(frame[1]):
        if frame[-1] != ETX or len(frame) < 5:
            raise ProtocolError("basic reply must be STX <address><status>[data] ETX", raw=frame)
        payload, safe = frame[1:-1], False
    else:
        payload, safe = decode_safe_packet(frame), True
    try:
        text = payload.decode("ascii")
    except UnicodeDecodeError:
        raise ProtocolError("reply holds non-ASCII bytes", raw=frame) from None
    try:
        return decode_reply_text(text), safe
    except ProtocolError as exc:
        raise _restated(exc, raw=frame) from None


def _known_error(match: re.Match[bytes]) -> bool:
    """Whether a :data:`_BASIC_FRAME` match carries data or a known ``?error``."""
    rest: bytes = match.group(4)
    return rest[:1] != b"?" or rest[1:] in _ERRORS


def _basic_reply(match: re.Match[bytes], frame: bytes) -> Reply:
    """The reply of a frame :data:`_BASIC_FRAME` matched."""
    address, prompt, alarm, rest = match.groups()
    error: ErrorCode | None = None
    if rest[:1] == b"?":
        error = _ERRORS.get(rest[1:])
        if error is None:
            raise ProtocolError(
                f"unknown command error {rest.decode()!r}; expected ?, ?NA, ?OOR, ?COM or ?IGN",
                raw=frame,
            )
        rest = b""
    return Reply(
        int(address),
        _PROMPTS[prompt] if prompt else None,
        _ALARM_CODES[alarm] if alarm else None,
        error,
        rest.decode("ascii"),
    )


def _restated(
    exc: ProtocolError, *, raw: bytes | None = None, device: str | None = None
) -> ProtocolError:
    """The same error with the whole frame as ``raw`` and/or the device name added."""
    message = str(exc).rsplit(" (raw bytes: ", 1)[0]
    if exc.device:
        message = message.removeprefix(f"{exc.device}: ")
    return ProtocolError(message, raw=exc.raw if raw is None else raw, device=device or exc.device)


def _is_digit(byte: int) -> bool:
    return 0x30 <= byte <= 0x39


_NOT_PRINTABLE = re.compile(rb"[^\x20-\x7e]")

_Decoded = tuple[Reply, bool]


def _candidate(buffer: bytes | bytearray, start: int) -> tuple[str, int, _Decoded | None]:
    """Classify the frame that would start at ``buffer[start]`` (an STX): ``valid`` (with
    its decoding), ``invalid`` or ``incomplete``, and where it ends."""
    if start + 1 >= len(buffer):
        return "incomplete", len(buffer), None
    if _is_digit(buffer[start + 1]):
        stop = _NOT_PRINTABLE.search(buffer, start + 1)
        if stop is None:
            if len(buffer) - start > MAX_BASIC_REPLY:
                return "invalid", len(buffer), None
            return "incomplete", len(buffer), None
        if buffer[stop.start()] != ETX or stop.start() - start > MAX_BASIC_REPLY:
            return "invalid", stop.start(), None
        end = stop.start() + 1
    else:
        length = buffer[start + 1]
        if length < 4:
            return "invalid", start + 2, None
        end = start + 1 + length
        if end > len(buffer):
            return "incomplete", len(buffer), None
    try:
        decoded = decode_reply(bytes(buffer[start:end]))
    except ProtocolError:
        return "invalid", end, None
    return "valid", end, decoded


def scan_reply(buffer: bytes | bytearray) -> tuple[_Decoded | None, bytes, int]:
    """:func:`find_reply`, also returning the decoded frame: ``((reply, safe), frame,
    index)``, or ``(None, b"", index)`` when more bytes are needed."""
    if 0 < len(buffer) <= MAX_BASIC_REPLY + 1 and buffer[0] == STX:
        # The common case, a buffer holding exactly one well-formed basic reply, in one
        # regex match; the scan below finds the same frame, only slower.
        frame = bytes(buffer)
        match = _BASIC_FRAME.match(frame)
        if match is not None and _known_error(match):
            return (_basic_reply(match, frame), False), frame, len(frame)
    first_bad: int | None = None
    waiting_at: int | None = None
    position = buffer.find(STX)
    while position >= 0:
        kind, end, decoded = _candidate(buffer, position)
        if decoded is not None:
            return decoded, bytes(buffer[position:end]), end
        if kind == "incomplete" and waiting_at is None:
            waiting_at = position
        elif kind == "invalid" and first_bad is None:
            first_bad = end
        position = buffer.find(STX, position + 1)
    if waiting_at is not None:
        return None, b"", waiting_at
    if first_bad is not None:
        raise ProtocolError("malformed reply", raw=bytes(buffer[:first_bad]))
    return None, b"", len(buffer)


def find_reply(buffer: bytes | bytearray) -> tuple[bytes | None, int]:
    """Find the first complete, valid reply frame in a receive buffer.

    Bytes before it that cannot start a frame (line noise, a ``garbage`` fault) are
    skipped; so is a broken frame when a valid one follows it.

    Returns
    -------
    (frame, index)
        ``frame`` is the reply frame and ``index`` the position after it; or ``frame``
        is None and ``index`` is where the unread part starts (the caller drops the bytes
        before it and reads more).

    Raises
    ------
    ProtocolError
        If the buffer holds a complete but malformed frame and nothing after it can
        still become a valid one (e.g. a reply with a broken CRC).
    """
    decoded, frame, index = scan_reply(buffer)
    return (frame if decoded is not None else None), index


# --------------------------------------------------------------------------- data fields

_QUANTITY = re.compile(r"^(?P<value>[\d.]+)(?P<unit>[A-Z]{2})$")
_DISPENSED = re.compile(r"^I(?P<infused>[\d.]+)W(?P<withdrawn>[\d.]+)(?P<unit>UL|ML)$")
_VERSION = re.compile(r"^NE(?P<model>\d+)(?:X(?P<upgrade>\d*))?V(?P<version>\d+\.\d+)$")


_Unit = TypeVar("_Unit", RateUnit, VolumeUnit)


def decode_quantity(data: str, units: type[_Unit]) -> tuple[float, _Unit]:
    """``<float><units>`` of a ``RAT`` or ``VOL`` query as (value, unit).

    Raises
    ------
    ProtocolError
        If the data is not a number followed by one of the units.
    """
    match = _QUANTITY.match(data)
    try:
        if match is None:
            raise ValueError(f"expected <number><{'|'.join(u.value for u in units)}>")
        return parse_number(match.group("value"), strict=False), units(match.group("unit"))
    except ValueError as exc:
        raise ProtocolError(f"bad quantity {data!r}: {exc}", raw=data.encode()) from None


def decode_dispensed(data: str) -> tuple[float, float]:
    """``I<float>W<float><ML|UL>`` of ``DIS`` as (infused_ml, withdrawn_ml).

    Raises
    ------
    ProtocolError
        If the data does not follow that format.
    """
    match = _DISPENSED.match(data)
    try:
        if match is None:
            raise ValueError("expected I<number>W<number><ML|UL>")
        scale = VolumeUnit(match.group("unit")).ml
        infused = parse_number(match.group("infused"), strict=False) * scale
        withdrawn = parse_number(match.group("withdrawn"), strict=False) * scale
    except ValueError as exc:
        raise ProtocolError(f"bad DIS reply {data!r}: {exc}", raw=data.encode()) from None
    return infused, withdrawn


# --------------------------------------------------------------------------- device-side framing

#: Longest basic command line a pump keeps; a longer one is answered ``?`` at its CR.
MAX_COMMAND_LINE: Final = 128


class NE1000Framer(StxEtxFramer):
    """What an NE-1000 reads from its port: safe-mode packets and basic-mode lines.

    Frames are either a packet ``STX length … ETX`` (complete at its length byte; its
    ETX and CRC are :func:`decode_safe_packet`'s to check, so a bad packet still reaches
    the pump, which answers ``?COM``; a length byte below 4 ends it at once) or a basic
    command line ending in CR, at most :data:`MAX_COMMAND_LINE` + 1 bytes before the CR
    (one more than the pump keeps, so that the handler can tell a line overflowed).
    Packets are recognised in basic mode too, which is how ``SAF<n>`` switches modes;
    while ``text_enabled()`` is false (safe mode) bytes outside packets are dropped. A
    packet stalled for more than ``inter_byte_timeout_s`` of ``wall_time`` (0.5 s, the
    manual's inter-byte time-out) is discarded when the next bytes arrive.
    """

    def __init__(
        self,
        *,
        text_enabled: Callable[[], bool] = lambda: True,
        inter_byte_timeout_s: float = 0.5,
        wall_time: Callable[[], float] = time.monotonic,
        max_line: int = MAX_COMMAND_LINE,
    ) -> None:
        super().__init__(
            min_length=4,
            text=LineFramer(bytes((CR,)), max_length=max_line),
            text_enabled=text_enabled,
            inter_byte_timeout_s=inter_byte_timeout_s,
            wall_time=wall_time,
        )
