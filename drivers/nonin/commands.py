"""Commands a host sends a Nonin oximeter, and the oximeter's ACK/NAK.

Nonin 9560 OEM specification pp. 4-5: a command is ``STX op-code data-size data ETX``
(``data-size`` counts the data bytes only, so a command is ``data-size + 4`` bytes; no
checksum). Two are implemented here:

* **select the data format**: ``02 70 02 02 <format> 03`` (data type ``02``, format
  ``02``, ``07``, ``08`` or ``0D``). During the first five seconds of a connection the
  oximeter answers ACK ``06`` for a format it supports and NAK ``15`` otherwise; it keeps
  the format in non-volatile memory.
* **set the clock**: ``02 72 06 YY MM DD hh mm ss 03`` (no response).

:class:`NoninCommandFramer` splits what an emulated oximeter receives into commands.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

from medtwin.drivers.errors import ProtocolError
from medtwin.drivers.framing import Framer

__all__ = [
    "ACK",
    "DATA_FORMATS",
    "ETX",
    "MAX_COMMAND_DATA",
    "NAK",
    "OPCODE_SET_FORMAT",
    "OPCODE_SET_TIME",
    "STX",
    "NoninCommand",
    "NoninCommandFramer",
    "encode_set_format",
    "encode_set_time",
    "parse_command",
    "parse_format_reply",
    "parse_set_format",
    "parse_set_time",
]

STX: Final = 0x02
ETX: Final = 0x03
ACK: Final = 0x06
NAK: Final = 0x15
#: Op code of the format-select command (9560 OEM spec p. 4).
OPCODE_SET_FORMAT: Final = 0x70
#: Op code of the set-clock command (9560 OEM spec p. 4).
OPCODE_SET_TIME: Final = 0x72
#: The data formats the 9560 accepts (0x0D, 0x08, 0x07, 0x02); others are NAKed.
DATA_FORMATS: Final = frozenset({2, 7, 8, 13})
#: Data type byte of the format-select command.
_DATA_TYPE_FORMAT: Final = 0x02
#: Longest data a command is taken to carry; a larger size byte is not a command. The
#: longest documented command carries 6 data bytes (set the clock).
MAX_COMMAND_DATA: Final = 32


@dataclass(frozen=True, slots=True)
class NoninCommand:
    """One command: its op code and data bytes."""

    opcode: int
    data: bytes = b""

    def __post_init__(self) -> None:
        if not 0 <= self.opcode <= 0xFF:
            raise ValueError(f"op code {self.opcode}: expected 0..255")
        if len(self.data) > MAX_COMMAND_DATA:
            raise ValueError(f"{len(self.data)} data bytes: at most {MAX_COMMAND_DATA}")

    def encode(self) -> bytes:
        """``STX op-code data-size data ETX``."""
        return bytes((STX, self.opcode, len(self.data))) + self.data + bytes((ETX,))


def parse_command(raw: bytes, *, device: str | None = None) -> NoninCommand:
    """Parse one command.

    Raises
    ------
    ProtocolError
        Not ``STX op size data ETX`` with ``size`` data bytes.
    """
    if (
        len(raw) < 4
        or raw[0] != STX
        or raw[2] > MAX_COMMAND_DATA
        or len(raw) != raw[2] + 4
        or raw[-1] != ETX
    ):
        raise ProtocolError(
            "not a Nonin command (STX op-code data-size data ETX)", raw=raw, device=device
        )
    return NoninCommand(raw[1], bytes(raw[3:-1]))


def encode_set_format(data_format: int) -> bytes:
    """The 6-byte command selecting ``data_format``: ``02 70 02 02 <format> 03``.

    Raises
    ------
    ValueError
        If ``data_format`` is not a byte. (Whether the oximeter supports it is the
        oximeter's to say: it answers NAK.)
    """
    if not 0 <= data_format <= 0xFF:
        raise ValueError(f"data format {data_format}: expected 0..255")
    return NoninCommand(OPCODE_SET_FORMAT, bytes((_DATA_TYPE_FORMAT, data_format))).encode()


def parse_set_format(raw: bytes, *, device: str | None = None) -> int:
    """The data format a format-select command asks for.

    Raises
    ------
    ProtocolError
        If ``raw`` is not ``02 70 02 02 <format> 03``.
    """
    try:
        command = parse_command(raw, device=device)
    except ProtocolError:
        command = None
    if (
        command is None
        or command.opcode != OPCODE_SET_FORMAT
        or len(command.data) != 2
        or command.data[0] != _DATA_TYPE_FORMAT
    ):
        raise ProtocolError(
            "not a Nonin format-select command (02 70 02 02 <format> 03)", raw=raw, device=device
        )
    return command.data[1]


def encode_set_time(clock: datetime) -> bytes:
    """The 10-byte command setting the oximeter's clock (two-digit year, no response).

    Raises
    ------
    ValueError
        If the year is outside 2000-2099 (the command carries 00-99).
    """
    if not 2000 <= clock.year <= 2099:
        raise ValueError(f"year {clock.year}: the command carries 2000-2099")
    fields = (clock.year - 2000, clock.month, clock.day, clock.hour, clock.minute, clock.second)
    return NoninCommand(OPCODE_SET_TIME, bytes(fields)).encode()


def parse_set_time(raw: bytes, *, device: str | None = None) -> datetime:
    """The time a set-clock command carries.

    Raises
    ------
    ProtocolError
        If ``raw`` is not a set-clock command or its date/time does not exist.
    """
    try:
        command = parse_command(raw, device=device)
    except ProtocolError:
        command = None
    if command is None or command.opcode != OPCODE_SET_TIME or len(command.data) != 6:
        raise ProtocolError(
            "not a Nonin set-clock command (02 72 06 YY MM DD hh mm ss 03)", raw=raw, device=device
        )
    year, month, day, hour, minute, second = command.data
    try:
        if year > 99:
            raise ValueError(year)
        return datetime(2000 + year, month, day, hour, minute, second)
    except ValueError:
        raise ProtocolError(
            "Nonin set-clock command: no such date/time", raw=raw, device=device
        ) from None


def parse_format_reply(raw: bytes, *, device: str | None = None) -> bool:
    """True for ACK (``06``), False for NAK (``15``).

    Raises
    ------
    ProtocolError
        For any other reply.
    """
    if raw == bytes((ACK,)):
        return True
    if raw == bytes((NAK,)):
        return False
    raise ProtocolError(
        "Nonin format-select reply: expected ACK (06) or NAK (15)", raw=raw, device=device
    )


class NoninCommandFramer(Framer[bytes]):
    """Splits the bytes an oximeter receives into commands (``STX op size data ETX``).

    A command is complete ``size + 4`` bytes after its STX; whether it ends in ETX is
    :func:`parse_command`'s to judge (the oximeter NAKs a bad command). A size byte above
    :data:`MAX_COMMAND_DATA` ends the command at once, as a 3-byte frame the handler
    rejects. Bytes between commands that are not STX are dropped and counted in
    :attr:`dropped`; :meth:`on_silence` drops a partial command. There is no checksum,
    so :meth:`break_checksum` flips a bit of the middle byte (the default).
    """

    def __init__(self) -> None:
        self._command: bytearray | None = None
        #: Bytes dropped between commands or with a partial command.
        self.dropped = 0

    def feed(self, data: bytes) -> list[bytes]:
        frames: list[bytes] = []
        for byte in data:
            command = self._command
            if command is None:
                if byte == STX:
                    self._command = bytearray((byte,))
                else:
                    self.dropped += 1
                continue
            command.append(byte)
            size = len(command)
            if (size == 3 and byte > MAX_COMMAND_DATA) or (size >= 3 and size == command[2] + 4):
                frames.append(bytes(command))
                self._command = None
        return frames

    def on_silence(self) -> list[bytes]:
        self.reset()
        return []

    @property
    def pending(self) -> int:
        return len(self._command) if self._command is not None else 0

    def reset(self) -> None:
        self.dropped += self.pending
        self._command = None
