"""Nonin data formats #2 and #7: 5-byte frames, 25-frame packets, a stream decoder.

Nonin 9560 OEM specification pp. 8-15 (see :mod:`medtwin.drivers.nonin.codec` for the
sources). Frames: #2 ``01 STATUS PLETH DATA CHK`` (8-bit pleth), #7 ``STATUS PLETH-MSB
PLETH-LSB DATA CHK`` (16-bit pleth); CHK = (byte1 + byte2 + byte3 + byte4) mod 256; 75
frames a second, 25 a packet, SYNC set on the first frame of each packet. The DATA byte
of frame *i* carries what :data:`FRAME_DATA` names.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import numpy as np
from medtwin.drivers.errors import ProtocolError
from medtwin.drivers.nonin.commands import ACK, NAK

__all__ = [
    "BAUD_RATE",
    "FRAMES_PER_PACKET",
    "FRAMES_PER_SECOND",
    "FRAME_DATA",
    "FRAME_LENGTH",
    "MISSING_HR",
    "MISSING_SPO2",
    "PACKET_LENGTH",
    "FrameFormat",
    "NoninFrame",
    "NoninPacket",
    "NoninStreamDecoder",
    "PacketValues",
    "Perfusion",
    "Status",
    "Status2",
    "checksum",
    "decode_frame",
    "decode_packet",
    "encode_frame",
    "encode_packet",
    "perfusion",
]

#: Serial speed (9560 OEM spec p. 3): 8 data bits, no parity, 1 stop bit, no flow control.
BAUD_RATE: Final = 9600
FRAME_LENGTH: Final = 5
FRAMES_PER_PACKET: Final = 25
PACKET_LENGTH: Final = FRAME_LENGTH * FRAMES_PER_PACKET
#: Frames sent each second in formats #2 and #7 (three packets).
FRAMES_PER_SECOND: Final = 75
#: Heart rate value meaning "no value" (9-bit field all ones).
MISSING_HR: Final = 511
#: SpO2 value meaning "no value" (7-bit field all ones).
MISSING_SPO2: Final = 127


FrameFormat = Literal[2, 7]

# Format #2 starts every frame with this byte (9560 OEM spec p. 8).
_FORMAT2_START: Final = 0x01


class Status(enum.IntFlag):
    """STATUS byte of a #2/#7 frame (9560 OEM spec pp. 9 and 13). Bit 7 is always set.

    ``SNSD`` (sensor disconnect, bit 6) is secondary: it is the mask of an open OEM III
    driver (pez-globo/pufferfish-software ``Types.h``); the OEM III specification text was
    not read, and the 9560 marks bit 6 reserved.
    """

    ALWAYS_SET = 0x80
    SNSD = 0x40
    ARTF = 0x20
    OOT = 0x10
    SNSA = 0x08
    RPRF = 0x04
    GPRF = 0x02
    SYNC = 0x01
    #: Yellow perfusion is both perfusion bits.
    YPRF = RPRF | GPRF


class Perfusion(enum.Enum):
    """Pulse amplitude class, from the RPRF/GPRF bits (9560 OEM spec p. 9 table)."""

    NONE = 0
    GREEN = 1
    RED = 2
    YELLOW = 3


def perfusion(status: int) -> Perfusion:
    """The perfusion class a STATUS byte reports (bits 2-1: 01 green, 10 red, 11 yellow)."""
    return Perfusion((status >> 1) & 0x03)


class Status2(enum.IntFlag):
    """STAT2, the DATA byte of frame 8 (index 7) in #2/#7 (9560 OEM spec p. 10)."""

    SPA = 0x20  # high-quality SmartPoint measurement
    LOW_BATTERY = 0x01


def checksum(data: bytes) -> int:
    """Sum of ``data`` modulo 256 (the CHK of a frame over its first four bytes)."""
    return sum(data) & 0xFF


# --------------------------------------------------------------------------- frames


@dataclass(frozen=True, slots=True)
class NoninFrame:
    """One 5-byte frame of format #2 or #7.

    Attributes
    ----------
    status : int
        The STATUS byte, bit 7 included (128-255).
    pleth : int
        Pleth sample: 0-255 (#2) or 0-65535 (#7).
    data : int
        The DATA byte (0-255); its meaning depends on the frame's index in the packet.
    """

    status: int
    pleth: int
    data: int

    @property
    def sync(self) -> bool:
        """Whether this is frame 1 of a packet."""
        return bool(self.status & Status.SYNC)


def encode_frame(frame: NoninFrame, fmt: FrameFormat = 2) -> bytes:
    """The 5 bytes of ``frame`` in format ``fmt``, checksum included.

    Raises
    ------
    ValueError
        If a field does not fit (pleth over 8 bits in #2, status without bit 7, ...).
    """
    if not 0x80 <= frame.status <= 0xFF:
        raise ValueError(f"STATUS {frame.status:#x}: bit 7 must be set (128..255)")
    if not 0 <= frame.data <= 0xFF:
        raise ValueError(f"DATA {frame.data}: expected 0..255")
    if fmt == 2:
        if not 0 <= frame.pleth <= 0xFF:
            raise ValueError(f"pleth {frame.pleth}: format #2 carries 0..255")
        head = bytes((_FORMAT2_START, frame.status, frame.pleth, frame.data))
    elif fmt == 7:
        if not 0 <= frame.pleth <= 0xFFFF:
            raise ValueError(f"pleth {frame.pleth}: format #7 carries 0..65535")
        head = bytes((frame.status, frame.pleth >> 8, frame.pleth & 0xFF, frame.data))
    else:
        raise ValueError(f"frame format {fmt!r}: expected 2 or 7")
    return head + bytes((checksum(head),))


def _framing_ok(raw: bytes, fmt: FrameFormat) -> bool:
    """Whether the marker bits of a candidate frame are right (checksum aside)."""
    if fmt == 2:
        return raw[0] == _FORMAT2_START and raw[1] & 0x80 != 0
    return raw[0] & 0x80 != 0


def decode_frame(raw: bytes, fmt: FrameFormat = 2, *, device: str | None = None) -> NoninFrame:
    """Parse one 5-byte frame.

    Raises
    ------
    ProtocolError
        Wrong length, wrong marker bits (#2: first byte 01 and STATUS bit 7; #7: STATUS
        bit 7), or a wrong checksum; carries the bytes.
    """
    if len(raw) != FRAME_LENGTH:
        raise ProtocolError(
            f"Nonin frame of {len(raw)} bytes: expected {FRAME_LENGTH}", raw=raw, device=device
        )
    if not _framing_ok(raw, fmt):
        what = "first byte 01 and STATUS bit 7 set" if fmt == 2 else "STATUS bit 7 set"
        raise ProtocolError(f"Nonin #{fmt} frame: expected {what}", raw=raw, device=device)
    if checksum(raw[:4]) != raw[4]:
        raise ProtocolError(
            f"Nonin #{fmt} frame checksum {raw[4]:#04x}, expected {checksum(raw[:4]):#04x}",
            raw=raw,
            device=device,
        )
    if fmt == 2:
        return NoninFrame(status=raw[1], pleth=raw[2], data=raw[3])
    return NoninFrame(status=raw[0], pleth=(raw[1] << 8) | raw[2], data=raw[3])


# --------------------------------------------------------------------------- packets

#: What the DATA byte of each frame index (0-based) carries (9560 OEM spec p. 8/12):
#: ``(attribute, part)`` where part is ``"msb"``/``"lsb"`` of a two-frame value,
#: ``"byte"`` for a one-frame value, ``"reserved"`` for an undefined byte.
FRAME_DATA: Final[tuple[tuple[str, str], ...]] = (
    ("hr_bpm", "msb"),
    ("hr_bpm", "lsb"),
    ("spo2_percent", "byte"),
    ("firmware_revision", "byte"),
    ("reserved", "reserved"),
    ("timer", "msb"),
    ("timer", "lsb"),
    ("status2", "byte"),
    ("spo2_d_percent", "byte"),
    ("spo2_fast_percent", "byte"),
    ("spo2_beat_percent", "byte"),
    ("reserved", "reserved"),
    ("reserved", "reserved"),
    ("e_hr_bpm", "msb"),
    ("e_hr_bpm", "lsb"),
    ("e_spo2_percent", "byte"),
    ("e_spo2_d_percent", "byte"),
    ("reserved", "reserved"),
    ("reserved", "reserved"),
    ("hr_d_bpm", "msb"),
    ("hr_d_bpm", "lsb"),
    ("e_hr_d_bpm", "msb"),
    ("e_hr_d_bpm", "lsb"),
    ("reserved", "reserved"),
    ("reserved", "reserved"),
)
_RESERVED_INDEXES: Final = tuple(i for i, (_, part) in enumerate(FRAME_DATA) if part == "reserved")
_HR_NAMES: Final = ("hr_bpm", "e_hr_bpm", "hr_d_bpm", "e_hr_d_bpm")
_SPO2_NAMES: Final = (
    "spo2_percent",
    "spo2_d_percent",
    "spo2_fast_percent",
    "spo2_beat_percent",
    "e_spo2_percent",
    "e_spo2_d_percent",
)


@dataclass(frozen=True, slots=True)
class PacketValues:
    """The values one #2/#7 packet carries in its DATA bytes. ``None``: missing value.

    Recording values (4-beat ``hr_bpm``/``spo2_percent``, 8-beat ``e_*``, ``spo2_fast``,
    beat-to-beat ``spo2_beat``) go to the missing value as soon as the finger is removed;
    display values (``*_d_*``) hold the last reading 10 s first (9560 OEM spec p. 10).

    Attributes
    ----------
    hr_bpm, e_hr_bpm, hr_d_bpm, e_hr_d_bpm : int or None
        Pulse rates, beats/min, 0-510 (511 on the wire is missing).
    spo2_percent, spo2_d_percent, spo2_fast_percent, spo2_beat_percent, e_spo2_percent,
    e_spo2_d_percent : int or None
        SpO2, %, 0-126 on the wire (127 is missing).
    firmware_revision : int
        SREV, 0-127.
    timer : int
        The 1/3-second timer, 14 bits (0-16383), sent as two 7-bit halves.
    status2 : int
        STAT2 (see :class:`Status2`), 0-127.
    reserved : tuple of int
        The DATA bytes of the 7 reserved frames (indexes 4, 11, 12, 17, 18, 23, 24),
        0-255, kept so that a captured packet re-encodes byte for byte.
    """

    hr_bpm: int | None = None
    spo2_percent: int | None = None
    firmware_revision: int = 0
    timer: int = 0
    status2: int = 0
    spo2_d_percent: int | None = None
    spo2_fast_percent: int | None = None
    spo2_beat_percent: int | None = None
    e_hr_bpm: int | None = None
    e_spo2_percent: int | None = None
    e_spo2_d_percent: int | None = None
    hr_d_bpm: int | None = None
    e_hr_d_bpm: int | None = None
    reserved: tuple[int, ...] = (0,) * len(_RESERVED_INDEXES)

    def __post_init__(self) -> None:
        for name in _HR_NAMES:
            value = getattr(self, name)
            if value is not None and not 0 <= value < MISSING_HR:
                raise ValueError(f"{name}={value}: expected 0..{MISSING_HR - 1} or None")
        for name in _SPO2_NAMES:
            value = getattr(self, name)
            if value is not None and not 0 <= value < MISSING_SPO2:
                raise ValueError(f"{name}={value}: expected 0..{MISSING_SPO2 - 1} or None")
        for name, high in (("firmware_revision", 0x7F), ("timer", 0x3FFF), ("status2", 0x7F)):
            if not 0 <= getattr(self, name) <= high:
                raise ValueError(f"{name}={getattr(self, name)}: expected 0..{high}")
        if len(self.reserved) != len(_RESERVED_INDEXES) or not all(
            0 <= b <= 0xFF for b in self.reserved
        ):
            raise ValueError(
                f"reserved={self.reserved!r}: expected {len(_RESERVED_INDEXES)} bytes 0..255"
            )

    @property
    def status2_flags(self) -> Status2:
        return Status2(self.status2)


def _data_bytes(values: PacketValues) -> list[int]:
    """The 25 DATA bytes of a packet carrying ``values``."""
    out: list[int] = []
    reserved = iter(values.reserved)
    for name, part in FRAME_DATA:
        if part == "reserved":
            out.append(next(reserved))
            continue
        value = getattr(values, name)
        if value is None:
            value = MISSING_HR if name in _HR_NAMES else MISSING_SPO2
        if part == "msb":
            # HR MSB holds HR bits 8-7; the timer MSB its upper 7 bits.
            out.append((value >> 7) & (0x7F if name == "timer" else 0x03))
        elif part == "lsb":
            out.append(value & 0x7F)
        else:
            out.append(value)
    return out


@dataclass(frozen=True, slots=True)
class NoninPacket:
    """One decoded packet: its values, and each frame's STATUS byte and pleth sample.

    Attributes
    ----------
    values : PacketValues
    statuses : tuple of int, length 25
        STATUS bytes as sent (bit 7 and SYNC included).
    pleth : tuple of int, length 25
        Pleth samples, 75 Hz: 0-255 (#2) or 0-65535 (#7).
    """

    values: PacketValues
    statuses: tuple[int, ...]
    pleth: tuple[int, ...]


def encode_packet(
    values: PacketValues,
    pleth_samples: Sequence[int],
    *,
    fmt: FrameFormat = 2,
    status: int | Sequence[int] = 0,
) -> bytes:
    """The 125 bytes of one packet (25 frames).

    Parameters
    ----------
    values : PacketValues
        What the DATA bytes carry.
    pleth_samples : sequence of int, length 25
        One pleth sample per frame (0-255 for #2, 0-65535 for #7).
    fmt : {2, 7}
        Data format.
    status : int or sequence of int (length 25)
        STATUS bits per frame (one value for all): :class:`Status` flags. Bit 7 is always
        set and SYNC is set on the first frame only, whatever is passed.

    Raises
    ------
    ValueError
        Wrong number of samples or statuses, or a value that does not fit.
    """
    if len(pleth_samples) != FRAMES_PER_PACKET:
        raise ValueError(f"{len(pleth_samples)} pleth samples: a packet has {FRAMES_PER_PACKET}")
    statuses = [status] * FRAMES_PER_PACKET if isinstance(status, int) else list(status)
    if len(statuses) != FRAMES_PER_PACKET:
        raise ValueError(f"{len(statuses)} STATUS values: a packet has {FRAMES_PER_PACKET}")
    out = bytearray()
    for index, (data, pleth, bits) in enumerate(
        zip(_data_bytes(values), pleth_samples, statuses, strict=True)
    ):
        if not 0 <= bits <= 0xFF:
            raise ValueError(f"STATUS {bits}: expected 0..255")
        byte = (bits | 0x80) & 0xFE
        if index == 0:
            byte |= 0x01  # SYNC
        out += encode_frame(NoninFrame(byte, pleth, data), fmt)
    return bytes(out)


def _join(msb: int, lsb: int, *, width: int) -> int:
    """A value split in two DATA bytes: ``width`` bits of ``msb`` above 7 bits of ``lsb``."""
    return ((msb & ((1 << width) - 1)) << 7) | (lsb & 0x7F)


def _packet_from_frames(frames: Sequence[NoninFrame]) -> NoninPacket:
    data = [f.data for f in frames]
    kwargs: dict[str, object] = {}
    for index, (name, part) in enumerate(FRAME_DATA):
        if part == "msb":
            width = 7 if name == "timer" else 2
            kwargs[name] = _join(data[index], data[index + 1], width=width)
        elif part == "byte":
            # SpO2 and the 1/3-s values use 7 bits (bit 7 is 0 in the spec).
            kwargs[name] = data[index] & 0x7F
    for name in _HR_NAMES:
        if kwargs[name] == MISSING_HR:
            kwargs[name] = None
    for name in _SPO2_NAMES:
        if kwargs[name] == MISSING_SPO2:
            kwargs[name] = None
    reserved = tuple(data[i] for i in _RESERVED_INDEXES)
    values = PacketValues(reserved=reserved, **kwargs)  # type: ignore[arg-type]
    return NoninPacket(
        values=values,
        statuses=tuple(f.status for f in frames),
        pleth=tuple(f.pleth for f in frames),
    )


def decode_packet(raw: bytes, fmt: FrameFormat = 2, *, device: str | None = None) -> NoninPacket:
    """Parse exactly one packet (125 bytes, SYNC on the first frame only).

    Raises
    ------
    ProtocolError
        Wrong length, a bad frame, or SYNC where it does not belong.
    """
    if len(raw) != PACKET_LENGTH:
        raise ProtocolError(
            f"Nonin packet of {len(raw)} bytes: expected {PACKET_LENGTH}", raw=raw, device=device
        )
    frames = [
        decode_frame(raw[i : i + FRAME_LENGTH], fmt, device=device)
        for i in range(0, PACKET_LENGTH, FRAME_LENGTH)
    ]
    for index, frame in enumerate(frames):
        if frame.sync != (index == 0):
            raise ProtocolError(
                f"Nonin packet: SYNC {'missing on' if index == 0 else 'set on'} frame {index + 1}",
                raw=raw,
                device=device,
            )
    return _packet_from_frames(frames)


_BYTE_NAMES: Final = tuple(
    (name, index) for index, (name, part) in enumerate(FRAME_DATA) if part == "byte"
)
_SPLIT_NAMES: Final = tuple(
    (name, index) for index, (name, part) in enumerate(FRAME_DATA) if part == "msb"
)
_COLUMN_NAMES: Final = (*(n for n, _ in _BYTE_NAMES), *(n for n, _ in _SPLIT_NAMES), "reserved")


def _slot_setters(cls: type, names: Sequence[str]) -> tuple[Any, ...]:
    # A slot's own descriptor writes it without the frozen dataclass's __setattr__.
    return tuple(cls.__dict__[name].__set__ for name in names)


def _bulk_packets(buffer: bytearray, pos: int, fmt: FrameFormat, out: list[NoninPacket]) -> int:
    """Decode the run of whole, valid packets at ``buffer[pos:]`` into ``out`` and return
    how many; stops before the first packet with a bad marker, checksum or SYNC pattern
    (which the frame-by-frame path then handles).

    The values are built without :class:`PacketValues`' range checks: every field is in
    range by construction (7-bit masks, a 9-bit HR whose 511 becomes None)."""
    n = (len(buffer) - pos) // PACKET_LENGTH
    frames = np.frombuffer(buffer, dtype=np.uint8, count=n * PACKET_LENGTH, offset=pos).reshape(
        n, FRAMES_PER_PACKET, FRAME_LENGTH
    )
    head = frames[:, :, :4].astype(np.uint16)
    ok = (head.sum(axis=2) & 0xFF) == frames[:, :, 4]
    status = frames[:, :, 1] if fmt == 2 else frames[:, :, 0]
    ok &= (status & 0x80) != 0
    if fmt == 2:
        ok &= frames[:, :, 0] == _FORMAT2_START
    sync = (status & 0x01) != 0
    ok[:, 0] &= sync[:, 0]
    ok[:, 1:] &= ~sync[:, 1:]
    good = ok.all(axis=1)
    if not good[0]:
        return 0
    taken = n if good.all() else int(np.argmin(good))
    frames = frames[:taken]
    data = frames[:, :, 3].astype(np.int64)
    if fmt == 2:
        pleth = frames[:, :, 2].tolist()
    else:
        pleth = ((frames[:, :, 1].astype(np.int64) << 8) | frames[:, :, 2]).tolist()
    columns: list[list[Any]] = []
    for name, index in _BYTE_NAMES:
        values = (data[:, index] & 0x7F).tolist()
        if name in _SPO2_NAMES and MISSING_SPO2 in values:
            values = [None if v == MISSING_SPO2 else v for v in values]
        columns.append(values)
    for name, index in _SPLIT_NAMES:
        width = 0x7F if name == "timer" else 0x03
        values = (((data[:, index] & width) << 7) | (data[:, index + 1] & 0x7F)).tolist()
        if name in _HR_NAMES and MISSING_HR in values:
            values = [None if v == MISSING_HR else v for v in values]
        columns.append(values)
    columns.append(list(map(tuple, data[:, list(_RESERVED_INDEXES)].tolist())))
    new = object.__new__
    setters = _VALUE_SETTERS
    set_values, set_statuses, set_pleth = _PACKET_SETTERS
    append = out.append
    for row, statuses, samples in zip(
        zip(*columns, strict=True),
        map(tuple, status[:taken].tolist()),
        map(tuple, pleth),
        strict=True,
    ):
        values = new(PacketValues)
        for setter, value in zip(setters, row, strict=True):
            setter(values, value)
        packet = new(NoninPacket)
        set_values(packet, values)
        set_statuses(packet, statuses)
        set_pleth(packet, samples)
        append(packet)
    return taken


@dataclass
class NoninStreamDecoder:
    """Streaming #2/#7 decoder: bytes in any chunking → packets, never raising.

    Hunting, it looks at every byte offset for a frame whose marker bits and checksum
    hold and whose SYNC bit is set; a valid frame without SYNC is skipped whole, anything
    else one byte at a time. Synchronised, it takes the next 24 frames in place; a frame
    that is not valid there, a missing SYNC at a packet start or an early SYNC drops the
    packet under way and it hunts again (an early SYNC starts the next packet at once).

    An ACK (``06``) or NAK (``15``) byte where a frame is due while synchronised is the
    answer to a format-select command sent while the oximeter streams: no frame of either
    format starts with those bytes (#2 starts with ``01``, #7 with a byte >= 0x80), so it
    is taken out into :attr:`replies` and the packet under way goes on. While hunting such
    a byte cannot be told from data and is dropped.

    Attributes
    ----------
    fmt : {2, 7}
    packets : int
        Packets decoded.
    bad_checksums : int
        Frames, where a frame was expected, with the right marker bits and a wrong CHK.
    lost_sync : int
        Times it was synchronised and had to hunt again (any cause).
    incomplete_packets : int
        Packets begun and dropped.
    dropped_bytes : int
        Bytes in no decoded packet or reply; always
        ``fed - pending - 125 * packets - len(replies)``.
    replies : list of bool
        ACK (True) and NAK (False) bytes taken out of the stream, oldest first; the reader
        may clear it.
    """

    fmt: FrameFormat = 2
    device: str | None = None
    packets: int = 0
    bad_checksums: int = 0
    lost_sync: int = 0
    incomplete_packets: int = 0
    dropped_bytes: int = 0
    replies: list[bool] = field(default_factory=list)
    _buffer: bytearray = field(default_factory=bytearray, repr=False)
    _frames: list[NoninFrame] = field(default_factory=list, repr=False)
    _synced: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        if self.fmt not in (2, 7):
            raise ValueError(f"frame format {self.fmt!r}: expected 2 or 7")

    @property
    def synchronised(self) -> bool:
        return self._synced

    @property
    def pending(self) -> int:
        """Bytes held: a packet under way and an incomplete frame."""
        return len(self._buffer) + FRAME_LENGTH * len(self._frames)

    def reset(self) -> None:
        """Forget everything pending (a reconnected port); it counts as dropped."""
        self.dropped_bytes += self.pending
        self._buffer.clear()
        self._frames.clear()
        self._synced = False

    def feed(self, data: bytes) -> list[NoninPacket]:
        """The packets ``data`` completes, in order."""
        self._buffer += data
        buffer, fmt = self._buffer, self.fmt
        out: list[NoninPacket] = []
        pos = 0
        while pos < len(buffer):
            if self._synced and not self._frames and len(buffer) - pos >= PACKET_LENGTH:
                # Whole packets in step: validated and decoded together (the same packets
                # the frame-by-frame path below would take, at a fraction of the cost).
                taken = _bulk_packets(buffer, pos, fmt, out)
                if taken:
                    self.packets += taken
                    pos += taken * PACKET_LENGTH
                    continue
            if self._synced and buffer[pos] in (ACK, NAK):
                # Where a frame is due no frame starts with these bytes: a reply.
                self.replies.append(buffer[pos] == ACK)
                pos += 1
                continue
            if len(buffer) - pos < FRAME_LENGTH:
                break
            raw = bytes(buffer[pos : pos + FRAME_LENGTH])
            framing = _framing_ok(raw, fmt)
            valid = framing and checksum(raw[:4]) == raw[4]
            if not self._synced:
                if valid and self._status(raw) & Status.SYNC:
                    self._synced = True
                    self._frames = [self._frame(raw)]
                    pos += FRAME_LENGTH
                elif valid:
                    self.dropped_bytes += FRAME_LENGTH
                    pos += FRAME_LENGTH
                else:
                    self.dropped_bytes += 1
                    pos += 1
                continue
            sync = valid and bool(self._status(raw) & Status.SYNC)
            if valid and sync == (not self._frames):
                self._frames.append(self._frame(raw))
                pos += FRAME_LENGTH
                if len(self._frames) == FRAMES_PER_PACKET:
                    out.append(_packet_from_frames(self._frames))
                    self.packets += 1
                    self._frames = []
                continue
            # Out of step: drop the packet under way.
            self.lost_sync += 1
            if self._frames:
                self.incomplete_packets += 1
                self.dropped_bytes += FRAME_LENGTH * len(self._frames)
                self._frames = []
            if sync:
                self._frames = [self._frame(raw)]  # an early SYNC starts the next packet
                pos += FRAME_LENGTH
                continue
            if framing and not valid:
                self.bad_checksums += 1
            self._synced = False
        del buffer[:pos]
        return out

    def _status(self, raw: bytes) -> int:
        return raw[1] if self.fmt == 2 else raw[0]

    def _frame(self, raw: bytes) -> NoninFrame:
        if self.fmt == 2:
            return NoninFrame(status=raw[1], pleth=raw[2], data=raw[3])
        return NoninFrame(status=raw[0], pleth=(raw[1] << 8) | raw[2], data=raw[3])


_VALUE_SETTERS: Final = _slot_setters(PacketValues, _COLUMN_NAMES)
_PACKET_SETTERS: Final = _slot_setters(NoninPacket, ("values", "statuses", "pleth"))
