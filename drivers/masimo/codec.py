"""Masimo ASCII 1 serial output (Rad-8, Radical-7, Root): bytes ⇄ readings, no I/O.

A Masimo pulse oximeter set to the *ASCII 1* serial mode (Rad-8 Operator's Manual,
Setup Menu Level 3, "Serial Output (SEr)", p. 4-20; the factory default is ASCII 2) sends
one text line per second at 9600 baud, 8 data bits, no parity, 1 stop bit, no handshake
(same manual, "Serial interface setup", p. 7-3), here folded after ``SPCO``::

    02/22/16 22:47:45 SN=0000056661 SPO2=098% BPM=097 PI=03.60% SPCO=--.-%
    SPMET=--.-% DESAT=-- PIDELTA=+-- ALARM=0000 EXC=000800

* The date is ``MM/DD/YY`` and the time ``HH:MM:SS`` (manual p. 4-24, trend format).
* Every value has a fixed width and is zero-padded; a value the device cannot give is
  the same width of dashes (``SPO2=---%``, ``PI=--.--%``, ``PIDELTA=+--``).
* ``EXC`` is the exception word in hexadecimal; its bits are documented in the manual
  (p. 4-24, :class:`MasimoException`). ``ALARM`` is hexadecimal too, but Masimo does not
  publish its bits: :class:`MasimoAlarm` holds the bits *observed* by experiment on a
  Rad-8 (remkolems/masimo-datacapture, ``masimo-capture.py``), not a specification.
* The line ends with CR LF (a raw line quoted with its ``\\r\\n`` in an open RAD-8
  websocket bridge; ``@separator "\\r\\n"`` in an open Elixir/Nerves RAD8 reader; the
  blank line between lines of ``cat /dev/ttyUSB0`` in yahnatan/pulseox is the CR that
  the tty turns into a newline). None of these is a Masimo document: :data:`LINE_END`
  is the one place to change if a device disagrees.

Two layouts are implemented (:data:`VARIANTS`). ``"rad8"`` is the real Rad-8 capture
above (yahnatan/pulseox README). ``"radical7"`` is the Radical-7 line as the Radical-7
service manual prints it (quoted in ``masimo-capture.py``: ``... PIDELTA=+-- PVI=---
ALARM=0000 EXC=000000``) and as MD PnP OpenICE parses it (``masimo-radical-7.spec``,
one regular expression over ``SN= SPO2= BPM= PI= SPCO= SPMET= DESAT= PIDELTA= PVI=
ALARM= EXC=``). The wider Radical-7 "colour" layout (``SPHB= SPOC= RESVD= ... EXC1=``)
is not implemented: no verbatim capture of it was found.

:func:`parse_line` raises only :class:`~medtwin.drivers.errors.ProtocolError` on wire
input; :class:`MasimoLineDecoder` never raises: it counts what it cannot use.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final, Literal, get_args

from medtwin.drivers.errors import ProtocolError

__all__ = [
    "BAUD_RATE",
    "LINE_END",
    "MAX_LINE_LENGTH",
    "VARIANTS",
    "MasimoAlarm",
    "MasimoException",
    "MasimoLineDecoder",
    "MasimoReading",
    "Variant",
    "detect_variant",
    "encode_line",
    "parse_line",
]

#: Serial speed of the ASCII 1 output (Rad-8 manual p. 7-3; 8 data bits, no parity, 1 stop).
BAUD_RATE: Final = 9600
#: What ends a line on the wire (see the module docstring for the evidence).
LINE_END: Final = b"\r\n"
#: Longest line the decoder keeps; a real line is about 130 bytes.
MAX_LINE_LENGTH: Final = 512

Variant = Literal["rad8", "radical7"]
#: The line layouts :func:`encode_line` can produce.
VARIANTS: Final[tuple[Variant, ...]] = get_args(Variant)


class MasimoException(enum.IntFlag):
    """Bits of the ``EXC`` word (Rad-8 Operator's Manual p. 4-24, "Exception Messages").

    0x100 and 0x200 are reserved in the manual.
    """

    NO_SENSOR = 0x001
    DEFECTIVE_SENSOR = 0x002
    LOW_PERFUSION = 0x004
    PULSE_SEARCH = 0x008
    INTERFERENCE = 0x010
    SENSOR_OFF = 0x020
    AMBIENT_LIGHT = 0x040
    UNRECOGNIZED_SENSOR = 0x080
    LOW_SIGNAL_IQ = 0x400
    #: The algorithm runs in full SET mode (a SET sensor and clean data).
    MASIMO_SET = 0x800


class MasimoAlarm(enum.IntFlag):
    """Bits of the ``ALARM`` word *as observed*, not as specified.

    Masimo treats the ALARM encoding as proprietary. These bits come from experiments on
    one Rad-8 (remkolems/masimo-datacapture ``masimo-capture.py``: a limit crossed by hand
    and the word read back); treat them as unverified and do not rely on other bits.
    """

    SPO2_HIGH = 0x01
    SPO2_LOW = 0x02
    BPM_HIGH = 0x04
    BPM_LOW = 0x08
    #: The alarm is sounding (seen together with each limit alarm).
    ALARM_ACTIVE = 0x10
    #: The alarm-silence (mute) button was pressed.
    MUTE_PRESSED = 0x20


@dataclass(frozen=True, slots=True)
class MasimoReading:
    """One ASCII 1 line. ``None`` stands for a value the device sent as dashes.

    Attributes
    ----------
    timestamp : datetime
        The device's clock, to the second (naive; the device sends no zone). The wire
        carries a two-digit year, read as 2000-2099.
    serial_number : str or None
        The 10-digit device serial number (``SN=``), as sent.
    spo2_percent : int or None
        Functional SpO2, %, 0-100.
    pulse_rate_bpm : int or None
        Pulse rate, beats/min, 0-999 on the wire.
    pi_percent : float or None
        Perfusion index, %, two decimals (0.00-99.99).
    spco_percent, spmet_percent : float or None
        Carboxy- and methaemoglobin saturation, %, one decimal (0.0-99.9).
    desat : int or None
        ``DESAT=`` (desaturation index), two digits.
    pidelta_percent : int or None
        ``PIDELTA=``, a signed two-digit value (sign always sent).
    pvi_percent : int or None
        Pleth variability index, %, three digits (``radical7`` layout only).
    alarm : int
        The ``ALARM`` word (see :class:`MasimoAlarm`; only the observed bits are named).
    exceptions : int
        The ``EXC`` word (see :class:`MasimoException`).
    """

    timestamp: datetime
    serial_number: str | None = None
    spo2_percent: int | None = None
    pulse_rate_bpm: int | None = None
    pi_percent: float | None = None
    spco_percent: float | None = None
    spmet_percent: float | None = None
    desat: int | None = None
    pidelta_percent: int | None = None
    pvi_percent: int | None = None
    alarm: int = 0
    exceptions: int = 0

    def __post_init__(self) -> None:
        if self.timestamp.microsecond or not 2000 <= self.timestamp.year <= 2099:
            raise ValueError(
                f"timestamp {self.timestamp}: the line carries whole seconds and years 2000-2099"
            )
        if self.serial_number is not None and _SERIAL_RE.fullmatch(self.serial_number) is None:
            raise ValueError(f"serial_number={self.serial_number!r}: expected 10 digits")
        for name, low, high in _INT_RANGES:
            value = getattr(self, name)
            if value is not None and not low <= value <= high:
                raise ValueError(f"{name}={value}: expected {low}..{high} or None")
        for name, limit, digits in _FLOAT_RANGES:
            number = getattr(self, name)
            if number is not None and not (
                0.0 <= number <= limit and round(number, digits) == number
            ):
                raise ValueError(
                    f"{name}={number}: expected 0..{limit} with at most {digits} decimals, or None"
                )
        for name in ("alarm", "exceptions"):
            value = getattr(self, name)
            if not 0 <= value <= 0xFFFFFFFF:
                raise ValueError(f"{name}={value:#x}: expected 0..0xFFFFFFFF (8 hex digits)")

    @property
    def exception_flags(self) -> MasimoException:
        """The documented exception bits that are set (unknown bits are kept)."""
        return MasimoException(self.exceptions)

    @property
    def alarm_flags(self) -> MasimoAlarm:
        """The observed alarm bits that are set (unknown bits are kept; see the class)."""
        return MasimoAlarm(self.alarm)


_SERIAL_RE: Final = re.compile(r"[0-9]{10}")
_INT_RANGES: Final = (
    ("spo2_percent", 0, 100),
    ("pulse_rate_bpm", 0, 999),
    ("desat", 0, 99),
    ("pidelta_percent", -99, 99),
    ("pvi_percent", 0, 999),
)
_FLOAT_RANGES: Final = (
    ("pi_percent", 99.99, 2),
    ("spco_percent", 99.9, 1),
    ("spmet_percent", 99.9, 1),
)


@dataclass(frozen=True, slots=True)
class _Field:
    """One ``KEY=value`` field: how its value is written and read."""

    key: str
    attribute: str
    kind: Literal["serial", "int", "signed", "float", "hex"]
    width: int  # digits (int, signed, hex, serial) or total characters (float, e.g. 5)
    decimals: int = 0
    suffix: str = ""

    def encode(self, value: object) -> str:
        kind, width = self.kind, self.width
        if kind == "hex":
            assert isinstance(value, int)
            text = format(value, f"0{width}X")
            if len(text) > width:
                raise ValueError(f"{self.key}={value:#x} does not fit in {width} hex digits")
        elif value is None:
            dashes = "-" * width
            if kind == "float":
                dashes = "-" * (width - self.decimals - 1) + "." + "-" * self.decimals
            text = "+" + dashes if kind == "signed" else dashes
        elif kind == "serial":
            assert isinstance(value, str)
            text = value
        elif kind == "float":
            assert isinstance(value, float | int)
            text = format(value, f"0{width}.{self.decimals}f")
        elif kind == "signed":
            assert isinstance(value, int)
            text = ("-" if value < 0 else "+") + format(abs(value), f"0{width}d")
        else:
            assert isinstance(value, int)
            text = format(value, f"0{width}d")
        return f"{self.key}={text}{self.suffix}"

    def pattern(self) -> str:
        """A regular expression for the value (named after the attribute), suffix included."""
        kind, width, name = self.kind, self.width, self.attribute
        if kind == "hex":
            body = rf"(?P<{name}>[0-9A-Fa-f]{{1,8}})"
        elif kind == "serial":
            body = rf"(?P<{name}>[0-9]{{{width}}}|-{{{width}}})"
        elif kind == "float":
            whole = width - self.decimals - 1
            body = (
                rf"(?P<{name}>[0-9]{{{whole}}}\.[0-9]{{{self.decimals}}}"
                rf"|-{{{whole}}}\.-{{{self.decimals}}})"
            )
        elif kind == "signed":
            body = rf"(?P<{name}>[+\-][0-9]{{{width}}}|\+-{{{width}}})"
        else:
            body = rf"(?P<{name}>[0-9]{{{width}}}|-{{{width}}})"
        return f"{self.key}={body}{re.escape(self.suffix)}"

    def decode(self, text: str) -> object:
        if self.kind == "hex":
            return int(text, 16)
        if "-" in text and not text.lstrip("+-").isdigit():
            return None  # dashes: no value
        if self.kind == "serial":
            return text
        if self.kind == "float":
            return float(text)
        return int(text)


_COMMON_HEAD: Final = (
    _Field("SN", "serial_number", "serial", 10),
    _Field("SPO2", "spo2_percent", "int", 3, suffix="%"),
    _Field("BPM", "pulse_rate_bpm", "int", 3),
    _Field("PI", "pi_percent", "float", 5, decimals=2, suffix="%"),
    _Field("SPCO", "spco_percent", "float", 4, decimals=1, suffix="%"),
    _Field("SPMET", "spmet_percent", "float", 4, decimals=1, suffix="%"),
    _Field("DESAT", "desat", "int", 2),
    _Field("PIDELTA", "pidelta_percent", "signed", 2),
)
# ALARM/EXC widths as sent: 4 and 6 hex digits on both layouts (Rad-8 capture, Radical-7
# service manual sample). The reader accepts 1-8 digits (a Radical-7 colour unit sends
# ALARM=000000 EXC=0000C00); the writer uses the layout's width.
_LAYOUTS: Final[dict[Variant, tuple[_Field, ...]]] = {
    "rad8": (
        *_COMMON_HEAD,
        _Field("ALARM", "alarm", "hex", 4),
        _Field("EXC", "exceptions", "hex", 6),
    ),
    "radical7": (
        *_COMMON_HEAD,
        _Field("PVI", "pvi_percent", "int", 3),
        _Field("ALARM", "alarm", "hex", 4),
        _Field("EXC", "exceptions", "hex", 6),
    ),
}
_TIMESTAMP = r"(?P<timestamp>[0-9]{2}/[0-9]{2}/[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2})"
_LINE_RES: Final[dict[Variant, re.Pattern[str]]] = {
    # Runs of spaces and trailing spaces are read (OpenICE's expression allows them too);
    # the writer always uses single spaces.
    variant: re.compile(_TIMESTAMP + "".join(" +" + f.pattern() for f in fields) + " *")
    for variant, fields in _LAYOUTS.items()
}
_TIMESTAMP_FORMAT: Final = "%m/%d/%y %H:%M:%S"
#: Where a line starts: the decoder resynchronises on this inside a garbled line.
_LINE_START_RE: Final = re.compile(rb"[0-9]{2}/[0-9]{2}/[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2} SN=")


def encode_line(reading: MasimoReading, variant: Variant = "rad8") -> bytes:
    """The line the device sends for ``reading``, CR LF included.

    Parameters
    ----------
    reading : MasimoReading
        The values; ``None`` becomes dashes of the field's width.
    variant : {"rad8", "radical7"}
        The layout (``radical7`` adds ``PVI=``; ``rad8`` has no PVI field, so a reading
        with ``pvi_percent`` set cannot be written as ``rad8``).

    Raises
    ------
    ValueError
        If the variant is unknown, a value does not fit its field, or ``pvi_percent`` is
        set for the ``rad8`` layout.
    """
    try:
        fields = _LAYOUTS[variant]
    except KeyError:
        raise ValueError(f"Masimo line variant {variant!r}: expected one of {VARIANTS}") from None
    if variant == "rad8" and reading.pvi_percent is not None:
        raise ValueError("the rad8 layout has no PVI field; use variant='radical7'")
    parts = [reading.timestamp.strftime(_TIMESTAMP_FORMAT)]
    parts += [f.encode(getattr(reading, f.attribute)) for f in fields]
    return " ".join(parts).encode("ascii") + LINE_END


def detect_variant(line: bytes) -> Variant:
    """The layout of a line: ``"radical7"`` if it carries a ``PVI=`` field, else ``"rad8"``."""
    return "radical7" if b" PVI=" in line else "rad8"


def parse_line(line: bytes, *, device: str | None = None) -> MasimoReading:
    """Parse one ASCII 1 line (with or without its CR LF).

    Strict about the fields' order and widths and dashes only as a whole field; lenient
    where a reader can be without ambiguity: fields may be separated by more than one
    space, trailing spaces are ignored, and ALARM and EXC accept 1-8 hex digits (widths
    differ between models).

    Raises
    ------
    ProtocolError
        If the line is not an ASCII 1 line of a known layout, or its date does not exist;
        carries the bytes.
    """
    body = line[: -len(LINE_END)] if line.endswith(LINE_END) else line.rstrip(b"\r\n")
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        raise ProtocolError("Masimo line is not ASCII", raw=line, device=device) from None
    variant = detect_variant(body)
    match = _LINE_RES[variant].fullmatch(text)
    if match is None:
        raise ProtocolError(
            f"not a Masimo ASCII 1 line ({variant} layout: 'MM/DD/YY HH:MM:SS SN=... EXC=...')",
            raw=line,
            device=device,
        )
    stamp = match["timestamp"]
    try:
        # strptime's %y would put 69-99 in the 1900s; the device's clock runs from 2000.
        month, day, year = (int(part) for part in stamp[:8].split("/"))
        hour, minute, second = (int(part) for part in stamp[9:].split(":"))
        timestamp = datetime(2000 + year, month, day, hour, minute, second)
    except ValueError:
        raise ProtocolError(
            f"Masimo line date/time {stamp!r} does not exist", raw=line, device=device
        ) from None
    values = {f.attribute: f.decode(match[f.attribute]) for f in _LAYOUTS[variant]}
    try:
        return MasimoReading(timestamp=timestamp, **values)  # type: ignore[arg-type]
    except ValueError as exc:
        raise ProtocolError(
            f"Masimo line value out of range: {exc}", raw=line, device=device
        ) from None


@dataclass
class MasimoLineDecoder:
    """Streaming decoder: bytes in any chunking → readings, never raising.

    Lines are split at LF. A line that does not parse is retried from the last
    ``MM/DD/YY HH:MM:SS SN=`` inside it (garbage before a good line, a line joined to
    the tail of a cut one); what is skipped is counted, never raised. A line longer
    than :data:`MAX_LINE_LENGTH` is dropped up to its LF. Empty lines are ignored.

    Attributes
    ----------
    readings : int
        Lines decoded.
    bad_lines : int
        Lines (or overflowing runs) that held no decodable reading.
    dropped_bytes : int
        Bytes that are in no decoded line (bad lines, garbage before a good one, the
        overflow of an over-long line); terminators of bad lines included.
    last_error : ProtocolError or None
        Why the last bad line was rejected.
    """

    device: str | None = None
    readings: int = 0
    bad_lines: int = 0
    dropped_bytes: int = 0
    last_error: ProtocolError | None = None
    _buffer: bytearray = field(default_factory=bytearray, repr=False)
    _overflow: bool = field(default=False, repr=False)

    def feed(self, data: bytes) -> list[MasimoReading]:
        """The readings ``data`` completes, in order."""
        out: list[MasimoReading] = []
        start = 0
        while (end := data.find(b"\n", start)) >= 0:
            self._append(data[start:end])
            line = bytes(self._buffer) + b"\n"
            overflow = self._overflow
            self._buffer.clear()
            self._overflow = False
            start = end + 1
            if overflow:
                self.bad_lines += 1
                self.dropped_bytes += len(line)
                continue
            reading = self._line(line)
            if reading is not None:
                out.append(reading)
        self._append(data[start:])
        return out

    @property
    def pending(self) -> int:
        """Bytes held for a line not yet ended."""
        return len(self._buffer)

    def reset(self) -> None:
        """Forget a partial line (a reconnected port); it counts as dropped."""
        self.dropped_bytes += len(self._buffer)
        self._buffer.clear()
        self._overflow = False

    def _append(self, chunk: bytes) -> None:
        if self._overflow:
            self.dropped_bytes += len(chunk)
            return
        self._buffer += chunk
        if len(self._buffer) > MAX_LINE_LENGTH:
            self._overflow = True
            # Counted when its LF arrives, with the rest of the line.
            self.dropped_bytes += len(self._buffer)
            self._buffer.clear()

    def _line(self, line: bytes) -> MasimoReading | None:
        if line.strip(b"\r\n") == b"":
            self.dropped_bytes += len(line)
            return None
        try:
            reading = parse_line(line, device=self.device)
        except ProtocolError as exc:
            starts = list(_LINE_START_RE.finditer(line))
            if starts and starts[-1].start() > 0:
                skip = starts[-1].start()
                try:
                    reading = parse_line(line[skip:], device=self.device)
                except ProtocolError:
                    pass
                else:
                    self.dropped_bytes += skip
                    self.readings += 1
                    return reading
            self.bad_lines += 1
            self.dropped_bytes += len(line)
            self.last_error = exc
            return None
        self.readings += 1
        return reading
