"""Nonin data format #8: a 4-byte record once a second (9560 OEM specification p. 16).

``STATUS1 HR-LSB SpO2 STATUS2``, no checksum: STATUS1 has bit 7 set and carries HR bits
8-7 in its bits 1-0; the other three bytes have bit 7 clear, which is how a receiver
finds a record boundary. HR and SpO2 are the display values (HR-D, SpO2-D); 511 and 127
mean missing.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Final

from medtwin.drivers.errors import ProtocolError
from medtwin.drivers.nonin.frames import MISSING_HR, MISSING_SPO2

__all__ = [
    "FORMAT8_LENGTH",
    "Format8Decoder",
    "Format8Record",
    "Format8Status1",
    "Format8Status2",
    "decode_format8",
    "encode_format8",
]

#: Bytes of a format #8 record.
FORMAT8_LENGTH: Final = 4


class Format8Status1(enum.IntFlag):
    """Byte 1 of a #8 record (9560 OEM spec p. 16); bits 1-0 are HR bits 8-7."""

    ALWAYS_SET = 0x80
    OOT = 0x20
    LPRF = 0x10  # low perfusion
    MPRF = 0x08  # marginal perfusion
    ARTF = 0x04


class Format8Status2(enum.IntFlag):
    """Byte 4 of a #8 record (9560 OEM spec p. 16)."""

    SPA = 0x20
    SNSA = 0x08
    LOW_BATTERY = 0x01


@dataclass(frozen=True, slots=True)
class Format8Record:
    """One #8 record (once a second). ``None``: missing value (HR 511, SpO2 127).

    Attributes
    ----------
    hr_bpm : int or None
        HR-D, the 4-beat pulse rate formatted for display, beats/min, 0-510.
    spo2_percent : int or None
        SpO2-D, %, 0-126.
    status1 : int
        :class:`Format8Status1` bits (bits 7 and 1-0 are set from the HR by the encoder).
    status2 : int
        :class:`Format8Status2` bits, 0-127.
    """

    hr_bpm: int | None = None
    spo2_percent: int | None = None
    status1: int = 0
    status2: int = 0

    def __post_init__(self) -> None:
        if self.hr_bpm is not None and not 0 <= self.hr_bpm < MISSING_HR:
            raise ValueError(f"hr_bpm={self.hr_bpm}: expected 0..{MISSING_HR - 1} or None")
        if self.spo2_percent is not None and not 0 <= self.spo2_percent < MISSING_SPO2:
            raise ValueError(
                f"spo2_percent={self.spo2_percent}: expected 0..{MISSING_SPO2 - 1} or None"
            )
        if not 0 <= self.status1 <= 0xFF or self.status1 & 0x03:
            raise ValueError(f"status1={self.status1:#x}: 0..255 with bits 1-0 (HR) clear")
        # Bit 7 is always set on the wire: normalise so that decode(encode(r)) == r.
        object.__setattr__(self, "status1", self.status1 | 0x80)
        if not 0 <= self.status2 <= 0x7F:
            raise ValueError(f"status2={self.status2:#x}: expected 0..127 (bit 7 clear)")

    @property
    def status1_flags(self) -> Format8Status1:
        return Format8Status1(self.status1)

    @property
    def status2_flags(self) -> Format8Status2:
        return Format8Status2(self.status2)


def encode_format8(record: Format8Record) -> bytes:
    """The 4 bytes of a #8 record."""
    hr = MISSING_HR if record.hr_bpm is None else record.hr_bpm
    spo2 = MISSING_SPO2 if record.spo2_percent is None else record.spo2_percent
    status1 = (record.status1 & 0x7C) | 0x80 | (hr >> 7)
    return bytes((status1, hr & 0x7F, spo2, record.status2))


def _format8_ok(raw: bytes) -> bool:
    return raw[0] & 0x80 != 0 and all(b & 0x80 == 0 for b in raw[1:4])


def decode_format8(raw: bytes, *, device: str | None = None) -> Format8Record:
    """Parse one #8 record.

    Raises
    ------
    ProtocolError
        Not 4 bytes, or bit 7 not set in byte 1 / not clear in bytes 2-4.
    """
    if len(raw) != FORMAT8_LENGTH or not _format8_ok(raw):
        raise ProtocolError(
            "Nonin #8 record: expected 4 bytes, bit 7 set in the first and clear in the others",
            raw=raw,
            device=device,
        )
    hr = ((raw[0] & 0x03) << 7) | raw[1]
    return Format8Record(
        hr_bpm=None if hr == MISSING_HR else hr,
        spo2_percent=None if raw[2] == MISSING_SPO2 else raw[2],
        status1=raw[0] & 0xFC,
        status2=raw[3],
    )


@dataclass
class Format8Decoder:
    """Streaming #8 decoder, never raising.

    #8 has no checksum: a record is four bytes whose bit 7 is set in the first and clear in
    the others, which a receiver joining mid-record finds at the next STATUS1 byte.

    Attributes
    ----------
    records : int
    dropped_bytes : int
        Bytes in no decoded record; always ``fed - pending - 4 * records``.
    """

    device: str | None = None
    records: int = 0
    dropped_bytes: int = 0
    _buffer: bytearray = field(default_factory=bytearray, repr=False)

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def reset(self) -> None:
        self.dropped_bytes += len(self._buffer)
        self._buffer.clear()

    def feed(self, data: bytes) -> list[Format8Record]:
        self._buffer += data
        buffer = self._buffer
        out: list[Format8Record] = []
        pos = 0
        while len(buffer) - pos >= FORMAT8_LENGTH:
            raw = bytes(buffer[pos : pos + FORMAT8_LENGTH])
            if _format8_ok(raw):
                out.append(decode_format8(raw, device=self.device))
                self.records += 1
                pos += FORMAT8_LENGTH
            else:
                self.dropped_bytes += 1
                pos += 1
        del buffer[:pos]
        return out
