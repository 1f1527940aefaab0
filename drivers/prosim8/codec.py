"""Fluke Biomedical ProSim 8 remote-control codec: bytes ⇄ messages, no I/O.

The ProSim 8 vital-signs simulator is driven over its serial (USB virtual COM) port with
ASCII command lines ``COMMAND`` or ``COMMAND=arg1,arg2,...`` ended by CR LF; it answers
each command with one line ``OK`` or ``ERR=nn`` (two digits), or with the data a query
asks for (``IDENT``, ``GETRTC``). Sources (details and what is unverified:
``docs/protocols/prosim8.md``):

* Fluke Biomedical, *ProSim 6/8 Communications Interface* document (the command set, the
  ``ERR=nn`` codes, the local/remote rule) — the primary source, which we could not
  obtain; every fact below is cross-checked against the open client instead.
* OpenICE, ``mdpnp/mdpnp``: ``devices/fluke/src/main/java/org/mdpnp/devices/fluke/
  prosim8/FlukeProSim8.java`` (command spellings, argument zero padding and signs, range
  checks, the validation password, the ``KEY`` codes, the two reply lines of ``GETRTC``)
  and ``interop-lab/demo-devices/.../prosim68/DemoProsim68.java`` (115200 baud, 8N1,
  hardware flow control; ``IDENT`` answers comma-separated fields, the model first).
* The Fluke ProSim 2/3 operators manual (remote operation chapter) for the error codes
  00..07 and the rule that a simulator in local (front-panel) mode refuses remote
  commands until it receives ``REMOTE``.

Everything here is pure: :data:`COMMANDS` is the one table of commands (name, argument
schema with wire format, range and unit); :func:`encode_command` refuses anything outside
it *before* a byte is produced (:class:`~medtwin.drivers.errors.LimitError` for a value
outside the range or the caller's narrower limits,
:class:`~medtwin.drivers.errors.ConfigurationError` for an unknown command or a wrong
argument count or type); :func:`parse_command` is the simulator side and raises
:class:`CommandError`, a :class:`~medtwin.drivers.errors.ProtocolError` carrying the
``ERR=nn`` code the simulator answers with; :func:`encode_reply`/:func:`parse_reply` and
:class:`ProSim8Framer` complete it. Decoding wire input never raises anything but
:class:`~medtwin.drivers.errors.ProtocolError` (checked with hypothesis).
"""

from __future__ import annotations

import datetime as _dt
import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

from medtwin.drivers.errors import ConfigurationError, LimitError, ProtocolError
from medtwin.drivers.framing import Framer

__all__ = [
    "BAUD_RATE",
    "COMMANDS",
    "ERROR_MEANING",
    "IBP_WAVEFORMS",
    "KEY_CODES",
    "LINE_END",
    "MAX_LINE",
    "VALIDATION_PASSWORD",
    "Command",
    "CommandError",
    "CommandSpec",
    "DataReply",
    "ErrorCode",
    "ErrorReply",
    "OkReply",
    "Param",
    "ProSim8Framer",
    "Reply",
    "RtcDateReply",
    "RtcTimeReply",
    "encode_command",
    "encode_reply",
    "encode_rtc_reply",
    "parse_command",
    "parse_reply",
    "rtc_datetime",
]

#: Every command and reply line ends with CR LF (OpenICE writes CR LF after each command).
LINE_END: Final = b"\r\n"
#: Line speed OpenICE opens the ProSim 6/8 with (8 data bits, no parity, 1 stop bit,
#: RTS/CTS). Secondary source (DemoProsim68.java); ProSim 2/3 use 9600 baud.
BAUD_RATE: Final = 115200
#: Longest command line the simulator side keeps; a longer one is corrupt (ERR=04). Our
#: choice: the longest legal line (SETRTC, VALIDATION) is under 40 bytes.
MAX_LINE: Final = 64
#: The password that switches validation mode on (``VALIDATION=OZYMANDIAS``), as OpenICE
#: sends it. Secondary source; a simulator answers any other password with ERR=07.
VALIDATION_PASSWORD: Final = "OZYMANDIAS"


class ErrorCode(enum.IntEnum):
    """The ``ERR=nn`` codes of the ProSim remote interface (ProSim 2/3 manual; the
    ProSim 6/8 document is not at hand, so 6/8 use of the same table is unverified)."""

    NO_COMMANDS_ALLOWED = 0
    UNKNOWN_COMMAND = 1
    ILLEGAL_COMMAND = 2
    ILLEGAL_PARAMETER = 3
    DATA_CORRUPTED = 4
    UNKNOWN_ERROR = 5
    OPTION_NOT_INSTALLED = 6
    WRONG_PASSWORD = 7


#: What each error code means.
ERROR_MEANING: Final[Mapping[int, str]] = {
    ErrorCode.NO_COMMANDS_ALLOWED: "no commands allowed (simulator in local mode: send REMOTE)",
    ErrorCode.UNKNOWN_COMMAND: "unknown command",
    ErrorCode.ILLEGAL_COMMAND: "illegal command (known command, wrong form or argument count)",
    ErrorCode.ILLEGAL_PARAMETER: "illegal parameter (not a number, out of range, unknown name)",
    ErrorCode.DATA_CORRUPTED: "data corrupted (non-ASCII or control bytes, overlong line)",
    ErrorCode.UNKNOWN_ERROR: "unknown error",
    ErrorCode.OPTION_NOT_INSTALLED: "option not installed",
    ErrorCode.WRONG_PASSWORD: "wrong password",
}

#: ``IBPW`` waveform names (OpenICE ``FlukeProSim8.Wave``) and what they simulate.
IBP_WAVEFORMS: Final[Mapping[str, str]] = {
    "ART": "arterial",
    "RART": "radial artery",
    "LV": "left ventricle",
    "LA": "left atrium",
    "RV": "right ventricle",
    "PA": "pulmonary artery",
    "PAW": "pulmonary artery wedge",
    "RA": "right atrium (CVP)",
}

#: ``KEY`` front-panel key codes (OpenICE ``FlukeProSim8.KeyCode``), sent as two digits.
KEY_CODES: Final[Mapping[str, int]] = {
    "F1": 1,
    "F2": 2,
    "F3": 3,
    "F4": 4,
    "F5": 5,
    "UP": 6,
    "DOWN": 7,
    "LEFT": 8,
    "RIGHT": 9,
    "ENTER": 10,
    "ECG": 11,
    "NIBP": 12,
    "SPECIAL_FUNCTIONS": 13,
    "SPO2": 14,
    "IBP": 15,
    "SETUP": 16,
    "BACKLIGHT": 17,
}

# --------------------------------------------------------------------------- the table

ParamKind = Literal["uint", "sint", "choice", "text"]
ReplyKind = Literal["ok", "ident", "rtc"]

_TEXT_RE: Final = re.compile(r"[!-+\--<>-~]{1,32}")  # printable, no space, ',' or '='


@dataclass(frozen=True, slots=True)
class Param:
    """One argument of a command: its wire format, range and unit.

    Parameters
    ----------
    name : str
        Name with its unit (``rate_bpm``, ``pressure_mmhg``); the key of a caller's limits.
    kind : {"uint", "sint", "choice", "text"}
        Unsigned integer, integer always sent with its sign, one of ``choices``, or text.
    low, high : int
        Inclusive range of an integer argument.
    width : int
        Digits an integer is zero-padded to (0: as many as it needs). A signed argument
        gets its sign in front of the padded digits (``+080``, ``-010``).
    unit : str
        Unit of an integer argument (``bpm``, ``%``, ``mmHg``, ``1/min``), ``""`` if none.
    choices : tuple of str
        The legal values of a ``choice`` argument.
    metric : str or None
        IEEE 11073-10101 reference id of the monitor metric the argument sets, if any.
    """

    name: str
    kind: ParamKind
    low: int = 0
    high: int = 0
    width: int = 0
    unit: str = ""
    choices: tuple[str, ...] = ()
    metric: str | None = None

    @property
    def max_digits(self) -> int:
        """Most digits a well-formed integer of this argument has."""
        return max(self.width, len(str(max(abs(self.low), abs(self.high)))))

    def check(self, value: object, *, command: str) -> int | str:
        """``value`` if it has the right type for this argument, else ConfigurationError."""
        if self.kind in ("uint", "sint"):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigurationError(
                    f"ProSim 8 {command} argument {self.name} must be an integer, got {value!r}"
                )
            return value
        if not isinstance(value, str):
            raise ConfigurationError(
                f"ProSim 8 {command} argument {self.name} must be text, got {value!r}"
            )
        return value

    def in_range(self, value: int | str) -> bool:
        """Whether ``value`` (of the right type) is legal on the wire."""
        if self.kind == "choice":
            return value in self.choices
        if self.kind == "text":
            return isinstance(value, str) and _TEXT_RE.fullmatch(value) is not None
        return isinstance(value, int) and self.low <= value <= self.high

    def format(self, value: int | str) -> str:
        """The argument as sent (``80`` → ``"080"``; ``-10`` → ``"-010"`` for a signed one)."""
        if isinstance(value, str):
            return value
        digits = str(abs(value)).zfill(self.width)
        if self.kind == "sint":
            return ("-" if value < 0 else "+") + digits
        return digits

    def parse(self, text: str) -> int | str | None:
        """The value of a received argument; None if it is not well formed or in range.

        Integers are read leniently: fewer digits than the padding width, and for a
        signed argument a missing ``+``, are accepted (clients differ); more digits than
        the width, or a sign on an unsigned argument, are not.
        """
        if self.kind in ("choice", "text"):
            return text if self.in_range(text) else None
        pattern = r"[+-]?[0-9]+" if self.kind == "sint" else r"[0-9]+"
        if re.fullmatch(pattern, text) is None:
            return None
        if len(text.lstrip("+-")) > self.max_digits:
            return None
        value = int(text)
        return value if self.in_range(value) else None

    def describe(self) -> str:
        """The argument's format and range, as the docs table shows it."""
        if self.kind == "choice":
            return f"{self.name}: one of {', '.join(self.choices)}"
        if self.kind == "text":
            return f"{self.name}: text"
        unit = f" {self.unit}" if self.unit else ""
        return f"{self.name}: {self.low}..{self.high}{unit}"


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """One command of the remote interface: its arguments and what it answers."""

    name: str
    params: tuple[Param, ...]
    summary: str
    reply: ReplyKind = "ok"


def _u(
    name: str, low: int, high: int, width: int, unit: str = "", metric: str | None = None
) -> Param:
    return Param(name, "uint", low, high, width, unit, metric=metric)


_CHANNEL: Final = _u("channel", 1, 2, 1)

_SPECS: Final = (
    CommandSpec("REMOTE", (), "enter remote mode: the front panel is locked, commands obeyed"),
    CommandSpec("LOCAL", (), "return to local (front-panel) mode"),
    CommandSpec("IDENT", (), "identify: comma-separated fields, the model first", "ident"),
    CommandSpec("GETRTC", (), "read the real-time clock: a time line, then a date line", "rtc"),
    CommandSpec(
        "SETRTC",
        (
            _u("hour", 0, 23, 2),
            _u("minute", 0, 59, 2),
            _u("second", 0, 59, 2),
            _u("month", 1, 12, 2),
            _u("day", 1, 31, 2),
            _u("year", 2000, 2099, 4),  # our range: the clock's own is undocumented here
        ),
        "set the real-time clock",
    ),
    CommandSpec(
        "VALIDATION", (Param("password", "text"),), "validation mode on (needs the password)"
    ),
    CommandSpec("VALOFF", (), "validation mode off"),
    CommandSpec(
        "NSRA",
        (_u("rate_bpm", 10, 360, 3, "bpm", "MDC_ECG_HEART_RATE"),),
        "ECG: adult normal sinus rhythm at this heart rate",
    ),
    CommandSpec(
        "SAT",
        (_u("spo2_pct", 0, 100, 3, "%", "MDC_PULS_OXIM_SAT_O2"),),
        "SpO2: oxygen saturation",
    ),
    CommandSpec(
        "RESPRATE",
        (_u("rate_brpm", 10, 150, 3, "1/min", "MDC_TTHOR_RESP_RATE"),),
        "respiration (impedance) rate",
    ),
    CommandSpec(
        "NIBPP",
        (
            _u("systolic_mmhg", 0, 400, 3, "mmHg", "MDC_PRESS_BLD_NONINV_SYS"),
            _u("diastolic_mmhg", 0, 400, 3, "mmHg", "MDC_PRESS_BLD_NONINV_DIA"),
        ),
        "NIBP: dynamic pressure the next cuff measurement finds",
    ),
    CommandSpec(
        "IBPS",
        (_CHANNEL, Param("pressure_mmhg", "sint", -10, 300, 3, "mmHg")),
        "IBP channel: static pressure",
    ),
    CommandSpec(
        "IBPP",
        (
            _CHANNEL,
            _u("systolic_mmhg", 0, 300, 3, "mmHg"),
            _u("diastolic_mmhg", 0, 300, 3, "mmHg"),
        ),
        "IBP channel: dynamic pressure (systolic, diastolic)",
    ),
    CommandSpec(
        "IBPW",
        (_CHANNEL, Param("waveform", "choice", choices=tuple(IBP_WAVEFORMS))),
        "IBP channel: waveform",
    ),
    CommandSpec(
        "KEY",
        # The cycles range is ours: OpenICE sends it unpadded and checks nothing.
        (_u("key", 1, len(KEY_CODES), 2), _u("cycles", 1, 9999, 0)),
        "press a front-panel key (KEY_CODES) for a number of cycles",
    ),
)

#: The one table of commands, by name.
COMMANDS: Final[Mapping[str, CommandSpec]] = {spec.name: spec for spec in _SPECS}


# --------------------------------------------------------------------------- commands


class CommandError(ProtocolError):
    """A command line the simulator refuses; ``code`` is the ``ERR=nn`` it answers."""

    def __init__(
        self, message: str, *, code: ErrorCode, raw: bytes = b"", device: str | None = None
    ):
        self.code = code
        super().__init__(f"{message} (ERR={code:02d})", raw=raw, device=device)


@dataclass(frozen=True, slots=True)
class Command:
    """One command with its arguments (``Command("NSRA", (80,))`` is ``NSRA=080``)."""

    name: str
    args: tuple[int | str, ...] = ()

    @property
    def spec(self) -> CommandSpec:
        return COMMANDS[self.name]

    def arg(self, name: str) -> int | str:
        """The argument called ``name`` (``cmd.arg("rate_bpm")``)."""
        for param, value in zip(self.spec.params, self.args, strict=True):
            if param.name == name:
                return value
        raise KeyError(f"{self.name} has no argument {name!r}")

    def encode(self) -> bytes:
        """The command as sent, CR LF included (validated as :func:`encode_command`)."""
        return encode_command(self.name, *self.args)


def encode_command(
    name: str,
    *args: int | str,
    limits: Mapping[str, tuple[float, float]] | None = None,
    device: str | None = None,
) -> bytes:
    """The bytes of one command, validated against :data:`COMMANDS` before encoding.

    Parameters
    ----------
    name : str
        Command name (``"NSRA"``).
    *args : int or str
        Its arguments in table order: integers in the argument's unit, names for
        ``choice`` arguments, text for the password.
    limits : mapping of str to (low, high), optional
        Narrower limits declared for this device, keyed ``"COMMAND.argument"``
        (``{"NSRA.rate_bpm": (30, 200)}``); a value outside them is refused.
    device : str, optional
        Device name for the error message.

    Raises
    ------
    ConfigurationError
        Unknown command, wrong argument count or type, a limit for an unknown argument.
    LimitError
        A value outside the command's range or the declared limits (nothing is sent).
    """
    spec = COMMANDS.get(name)
    if spec is None:
        raise ConfigurationError(
            f"unknown ProSim 8 command {name!r}; expected one of {', '.join(COMMANDS)}"
        )
    if len(args) != len(spec.params):
        expected = ", ".join(p.name for p in spec.params) or "no arguments"
        raise ConfigurationError(
            f"ProSim 8 {name} takes {len(spec.params)} argument(s) ({expected}), got {len(args)}"
        )
    declared = dict(limits or {})
    for key in declared:
        command, _, argument = key.partition(".")
        if command == name and argument not in {p.name for p in spec.params}:
            raise ConfigurationError(f"limit {key!r}: {name} has no argument {argument!r}")
    texts: list[str] = []
    for param, raw_value in zip(spec.params, args, strict=True):
        value = param.check(raw_value, command=name)
        if not param.in_range(value):
            shown = "(hidden)" if param.name == "password" else repr(value)
            raise LimitError(
                f"ProSim 8 {name} {param.name}={shown} refused before sending: "
                f"expected {param.describe()}",
                device=device,
            )
        bounds = declared.get(f"{name}.{param.name}")
        if bounds is not None and isinstance(value, int):
            low, high = bounds
            if not low <= value <= high:
                raise LimitError(
                    f"ProSim 8 {name} {param.name}={value} refused before sending: outside "
                    f"the declared limits {low}..{high} {param.unit}".rstrip(),
                    device=device,
                )
        texts.append(param.format(value))
    if name == "SETRTC":
        _check_calendar(args, device=device)
    line = name + ("=" + ",".join(texts) if texts else "")
    return line.encode("ascii") + LINE_END


def _check_calendar(args: tuple[int | str, ...], *, device: str | None) -> None:
    _, _, _, month, day, year = args
    try:
        _dt.date(int(year), int(month), int(day))
    except ValueError:
        raise LimitError(
            f"ProSim 8 SETRTC date {year}-{month}-{day} is not a calendar date", device=device
        ) from None


_NAME_RE: Final = re.compile(r"[A-Z][A-Z0-9]*")
_CONTROL_RE: Final = re.compile(r"[^\x20-\x7e]")


def _strip_line_end(line: bytes) -> bytes:
    while line[-1:] in (b"\r", b"\n"):
        line = line[:-1]
    return line


def parse_command(line: bytes, *, device: str | None = None) -> Command:
    """Parse one received command line (the simulator side), with or without its CR LF.

    Raises
    ------
    CommandError
        With the ``ERR=nn`` code to answer: 04 for non-ASCII or control bytes or an
        overlong line, 01 for an unknown command name, 02 for a known command in the
        wrong form (``=`` without arguments, a wrong argument count), 03 for an argument
        that is malformed or out of range (SETRTC: also not a calendar date). The split
        between 02 and 03 is our reading of the ProSim 2/3 table.
    """
    body = _strip_line_end(bytes(line))
    if len(body) > MAX_LINE:
        raise CommandError(
            "ProSim 8 command line too long", code=ErrorCode.DATA_CORRUPTED, raw=line, device=device
        )
    text = body.decode("latin-1")
    if _CONTROL_RE.search(text):
        raise CommandError(
            "ProSim 8 command holds non-ASCII or control bytes",
            code=ErrorCode.DATA_CORRUPTED,
            raw=line,
            device=device,
        )
    name, equals, rest = text.partition("=")
    spec = COMMANDS.get(name) if _NAME_RE.fullmatch(name) else None
    if spec is None:
        raise CommandError(
            f"unknown ProSim 8 command {name!r}",
            code=ErrorCode.UNKNOWN_COMMAND,
            raw=line,
            device=device,
        )
    texts = rest.split(",") if equals else []
    if len(texts) != len(spec.params) or (equals and not spec.params):
        raise CommandError(
            f"ProSim 8 {name} takes {len(spec.params)} argument(s), got {len(texts)}",
            code=ErrorCode.ILLEGAL_COMMAND,
            raw=line,
            device=device,
        )
    values: list[int | str] = []
    for param, arg in zip(spec.params, texts, strict=True):
        value = param.parse(arg)
        if value is None:
            raise CommandError(
                f"ProSim 8 {name} argument {param.name}={arg!r}: expected {param.describe()}",
                code=ErrorCode.ILLEGAL_PARAMETER,
                raw=line,
                device=device,
            )
        values.append(value)
    if name == "SETRTC":
        try:
            _check_calendar(tuple(values), device=device)
        except LimitError as error:
            raise CommandError(
                str(error), code=ErrorCode.ILLEGAL_PARAMETER, raw=line, device=device
            ) from None
    return Command(name, tuple(values))


# --------------------------------------------------------------------------- replies


@dataclass(frozen=True, slots=True)
class OkReply:
    """``OK``: the command was carried out."""

    def encode(self) -> bytes:
        return b"OK" + LINE_END


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """``ERR=nn``: the command was refused; ``code`` 0..99 (meanings for 0..7)."""

    code: int

    def __post_init__(self) -> None:
        if not 0 <= self.code <= 99:
            raise ValueError(f"ProSim error code {self.code} must be 0..99 (two digits)")

    @property
    def meaning(self) -> str:
        return ERROR_MEANING.get(self.code, "undocumented error code")

    def encode(self) -> bytes:
        return f"ERR={self.code:02d}".encode("ascii") + LINE_END


@dataclass(frozen=True, slots=True)
class DataReply:
    """A data line: the ``IDENT`` answer (comma-separated, the model first) or other text."""

    text: str

    def __post_init__(self) -> None:
        if not self.text or _CONTROL_RE.search(self.text):
            raise ValueError(f"ProSim data reply {self.text!r} must be non-empty printable ASCII")

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(self.text.split(","))

    @property
    def model(self) -> str:
        """The first field (OpenICE takes it as the model name)."""
        return self.fields[0]

    def encode(self) -> bytes:
        return self.text.encode("ascii") + LINE_END


@dataclass(frozen=True, slots=True)
class RtcTimeReply:
    """First ``GETRTC`` line: ``HH:MM:SS`` (24 h)."""

    hour: int
    minute: int
    second: int

    def __post_init__(self) -> None:
        _dt.time(self.hour, self.minute, self.second)  # ValueError if not a time

    def encode(self) -> bytes:
        return f"{self.hour:02d}:{self.minute:02d}:{self.second:02d}".encode() + LINE_END


@dataclass(frozen=True, slots=True)
class RtcDateReply:
    """Second ``GETRTC`` line: ``MM/DD/YYYY``."""

    month: int
    day: int
    year: int

    def __post_init__(self) -> None:
        _dt.date(self.year, self.month, self.day)  # ValueError if not a date

    def encode(self) -> bytes:
        return f"{self.month:02d}/{self.day:02d}/{self.year:04d}".encode() + LINE_END


Reply = OkReply | ErrorReply | DataReply | RtcTimeReply | RtcDateReply

_ERR_RE: Final = re.compile(r"ERR=([0-9]{2})")
_TIME_RE: Final = re.compile(r"([0-9]{2}):([0-9]{2}):([0-9]{2})")
_DATE_RE: Final = re.compile(r"([0-9]{2})/([0-9]{2})/([0-9]{4})")


def encode_reply(reply: Reply) -> bytes:
    """The reply line as the simulator sends it, CR LF included."""
    return reply.encode()


def encode_rtc_reply(moment: _dt.datetime) -> bytes:
    """The two lines the simulator answers ``GETRTC`` with: time, then date."""
    time_line = RtcTimeReply(moment.hour, moment.minute, moment.second).encode()
    return time_line + RtcDateReply(moment.month, moment.day, moment.year).encode()


def rtc_datetime(time: Reply, date: Reply, *, device: str | None = None) -> _dt.datetime:
    """The clock reading of the two ``GETRTC`` lines (naive: the simulator has no zone).

    Raises
    ------
    ProtocolError
        If ``time`` is not a time line or ``date`` not a date line (the simulator
        answered ``ERR=nn``, or the lines came in another order).
    """
    if not isinstance(time, RtcTimeReply) or not isinstance(date, RtcDateReply):
        raise ProtocolError(
            f"GETRTC answered {type(time).__name__}, {type(date).__name__}: expected a time "
            "line, then a date line",
            raw=time.encode() + date.encode(),
            device=device,
        )
    return _dt.datetime(date.year, date.month, date.day, time.hour, time.minute, time.second)


def parse_reply(line: bytes, *, command: str | None = None, device: str | None = None) -> Reply:
    """Parse one reply line from the simulator (with or without its line end).

    Parameters
    ----------
    line : bytes
        The line.
    command : str, optional
        The command it answers. A command that answers ``OK`` accepts only ``OK`` or
        ``ERR=nn``; ``GETRTC`` also a time or date line; ``IDENT`` any text. Without
        it, a time or date line is read as such and any other text as a DataReply.

    Raises
    ------
    ProtocolError
        Not a reply (to ``command``).
    """
    body = _strip_line_end(bytes(line))
    text = body.decode("latin-1")
    if not text or _CONTROL_RE.search(text):
        raise ProtocolError(
            "ProSim 8 reply is empty or holds non-ASCII or control bytes", raw=line, device=device
        )
    kind: ReplyKind | None = None
    if command is not None:
        spec = COMMANDS.get(command)
        if spec is None:
            raise ValueError(f"unknown ProSim 8 command {command!r}")
        kind = spec.reply
    if text == "OK":
        return OkReply()
    match = _ERR_RE.fullmatch(text)
    if match is not None:
        return ErrorReply(int(match[1]))
    if kind in (None, "rtc"):
        try:
            if (match := _TIME_RE.fullmatch(text)) is not None:
                return RtcTimeReply(int(match[1]), int(match[2]), int(match[3]))
            if (match := _DATE_RE.fullmatch(text)) is not None:
                return RtcDateReply(int(match[1]), int(match[2]), int(match[3]))
        except ValueError:
            raise ProtocolError(
                "ProSim 8 clock reply is not a valid time or date", raw=line, device=device
            ) from None
    if kind in (None, "ident"):
        return DataReply(text)
    expected = "a clock line, OK or ERR=nn" if kind == "rtc" else "OK or ERR=nn"
    raise ProtocolError(f"ProSim 8 reply to {command} is not {expected}", raw=line, device=device)


# --------------------------------------------------------------------------- framing

_TERMINATOR_RE: Final = re.compile(rb"(\r|\n)")


class ProSim8Framer(Framer[bytes]):
    """Splits a received byte stream into lines, without their terminators.

    A line ends at CR, LF or CR LF (OpenICE's reader accepts all three, and so does this
    side for clients that send only one); empty lines are dropped. A line longer than
    ``max_length`` is cut to ``max_length + 1`` bytes, so :func:`parse_command` answers
    it ERR=04, and the rest of it up to the terminator is discarded: garbage never
    swallows the good line after the next terminator.
    """

    def __init__(self, *, max_length: int = MAX_LINE) -> None:
        if max_length < 1:
            raise ValueError(f"max_length {max_length} must be at least 1")
        self.max_length = max_length
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        lines: list[bytes] = []
        buffer = self._buffer
        for chunk in _TERMINATOR_RE.split(bytes(data)):
            if chunk in (b"\r", b"\n"):
                if buffer:
                    lines.append(bytes(buffer))
                buffer.clear()
                continue
            room = self.max_length + 1 - len(buffer)
            if room > 0:
                buffer += chunk[:room]
        return lines

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def reset(self) -> None:
        self._buffer.clear()
