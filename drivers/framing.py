"""Framers: split a received byte stream into frames, and know how a frame's checksum breaks.

A framer is the layer between the bytes a transport moves and the messages a codec
decodes (pymodbus's ``Framer`` classes play the same role between its transports and its
PDUs). It is pure: no I/O, no clock of its own, so it is tested against golden bytes and
fuzzed without a port. The emulator server (:mod:`medtwin.drivers.emulators.server`) puts
one framer per connection in front of a device's protocol handler; protocol codecs build
their own framers from the ones here (:class:`medtwin.drivers.ne1000.codec.NE1000Framer`,
the Modbus RTU and MBAP framers in :mod:`medtwin.drivers.modbus.codec`).

The contract every framer keeps (checked by hypothesis in ``tests/drivers/test_framing.py``):

1. :meth:`Framer.feed` takes any bytes, in any chunking, and returns the frames they
   complete, in order. Random input never raises anything but
   :class:`~medtwin.drivers.errors.ProtocolError` (which a stream framer raises when the
   stream cannot be resynchronised and the connection should be dropped, as MBAP's).
2. Garbage never swallows a good frame that follows the framer's resynchronisation point:
   a line terminator for :class:`LineFramer`, a start byte for :class:`StxEtxFramer`
   (plus the inter-byte time-out or :meth:`Framer.on_silence`), line silence for
   Modbus RTU, a good frame boundary for :class:`BinaryStreamFramer`.
3. :meth:`Framer.break_checksum` turns a well-formed frame of this framing into one a
   conforming receiver rejects (the ``bad-checksum`` fault), the same way every time.

Framings here:

* :class:`LineFramer` — ASCII lines ended by a terminator (NE-1000 basic mode: CR;
  MT-SICS: CR LF, framed at LF);
* :class:`StxEtxFramer` — ``STX length payload ETX`` packets where ``length`` counts the
  bytes after STX (NE-1000 safe mode, manual 1200-01 §10.2), optionally with text lines
  between packets;
* :class:`BinaryStreamFramer` — fixed-length binary frames found by a validity test
  (a sync bit, a checksum), for the continuously streaming monitors: a Nonin pulse
  oximeter sends 5-byte frames at 75 Hz in its data format #2 (Nonin OEM III
  specification), with no request to answer;
* :class:`RawFramer` — every received chunk is one frame (a handler that frames its own
  input).
"""

from __future__ import annotations

import abc
import math
import time
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = [
    "BinaryStreamFramer",
    "Framer",
    "LineFramer",
    "RawFramer",
    "StxEtxFramer",
    "flip_middle_byte",
]

FrameT = TypeVar("FrameT")


def flip_middle_byte(frame: bytes) -> bytes:
    """``frame`` with one bit of its middle byte flipped: how a framing without a checksum
    of its own is corrupted (a client must then reject the garbled value, not a CRC)."""
    if not frame:
        return frame
    middle = len(frame) // 2
    return frame[:middle] + bytes([frame[middle] ^ 0x20]) + frame[middle + 1 :]


class Framer(abc.ABC, Generic[FrameT]):
    """Splits the bytes one device receives on one connection into frames (see the module
    docstring for the contract).

    Attributes
    ----------
    silence_chars : float or None
        Line silence, in character times, that ends a frame (3.5 for Modbus RTU). When
        set, the server calls :meth:`on_silence` once the line has been quiet that long
        with bytes pending, and a paced line keeps that silence before and after every
        reply. None: silence means nothing to this framing.
    half_duplex : bool
        Whether one line carries both directions and the device does not listen while it
        answers (an RS-485 Modbus slave): frames that arrive meanwhile are ignored.
    paced : bool
        Whether the framing travels on a serial line that pacing models (False for a
        framing native to TCP, MBAP).
    """

    silence_chars: float | None = None
    half_duplex: bool = False
    paced: bool = True

    @abc.abstractmethod
    def feed(self, data: bytes) -> list[FrameT]:
        """The frames ``data`` completes, in order."""

    def on_silence(self) -> list[FrameT]:
        """The line fell silent: end or discard what is pending. Default: keep waiting."""
        return []

    @property
    @abc.abstractmethod
    def pending(self) -> int:
        """Bytes received that do not (yet) form a frame."""

    @abc.abstractmethod
    def reset(self) -> None:
        """Forget pending input (a new connection, a replugged line)."""

    def break_checksum(self, frame: bytes) -> bytes:
        """``frame`` with its checksum broken (default: no checksum, flip a payload bit)."""
        return flip_middle_byte(frame)


class RawFramer(Framer[bytes]):
    """Every chunk received is one frame: for a handler that frames its own input.

    ``break_checksum`` is the handler's own corruption rule when it has one.
    """

    def __init__(self, break_checksum: Callable[[bytes], bytes] = flip_middle_byte) -> None:
        self._break = break_checksum

    def feed(self, data: bytes) -> list[bytes]:
        return [data] if data else []

    @property
    def pending(self) -> int:
        return 0

    def reset(self) -> None:
        pass

    def break_checksum(self, frame: bytes) -> bytes:
        return self._break(frame)


class LineFramer(Framer[bytes]):
    """ASCII lines ended by ``terminator`` (frames include it).

    Parameters
    ----------
    terminator : bytes
        One byte that ends a line (``b"\\r"`` for NE-1000 basic mode, ``b"\\n"`` for
        MT-SICS, whose CR before the LF stays in the frame for the handler to check).
    max_length : int, optional
        Longest line kept. A longer line is cut to ``max_length + 1`` bytes (so the
        handler can tell it overflowed) and the rest up to the terminator is dropped; if
        ``overflow_frame`` is set, such a line is instead emitted at once, without a
        terminator, as soon as it overflows (MT-SICS answers a runaway line at once).
    """

    def __init__(
        self,
        terminator: bytes = b"\r",
        *,
        max_length: int | None = None,
        overflow_frame: bool = False,
    ) -> None:
        if len(terminator) != 1:
            raise ValueError(f"line terminator {terminator!r}: expected one byte")
        self.terminator = terminator
        self.max_length = max_length
        self.overflow_frame = overflow_frame
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        frames: list[bytes] = []
        terminator = self.terminator
        start = 0
        while (end := data.find(terminator, start)) >= 0:
            self._append(data[start:end], frames, tail=False)
            frames.append(bytes(self._buffer) + terminator)
            self._buffer.clear()
            start = end + 1
        self._append(data[start:], frames, tail=True)
        return frames

    def _append(self, chunk: bytes, frames: list[bytes], *, tail: bool) -> None:
        limit = self.max_length
        if limit is None:
            self._buffer += chunk
            return
        if self.overflow_frame:
            # A line completed in the same chunk is judged by the handler whatever its
            # length; only a line still open after the chunk counts as runaway.
            self._buffer += chunk
            if tail and len(self._buffer) > limit:
                frames.append(bytes(self._buffer))
                self._buffer.clear()
            return
        room = limit + 1 - len(self._buffer)
        if room > 0:
            self._buffer += chunk[:room]

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def reset(self) -> None:
        self._buffer.clear()

    def feed_byte_text(self, byte: int) -> bytes | None:
        """One text byte (for a framer that interleaves lines with packets): the line
        it completes, if any."""
        if byte == self.terminator[0]:
            line = bytes(self._buffer) + self.terminator
            self._buffer.clear()
            return line
        if self.max_length is None or len(self._buffer) <= self.max_length:
            self._buffer.append(byte)
        return None


class StxEtxFramer(Framer[bytes]):
    """``STX length payload ETX`` packets, ``length`` counting every byte after STX.

    A packet is complete when ``length`` bytes followed the STX; whether it ends in ETX
    and whether its checksum holds is the codec's to judge (a device answers a bad packet,
    it does not silently drop it). A length byte below ``min_length`` ends the packet at
    once (the codec rejects it). Between packets, bytes go to ``text`` (a
    :class:`LineFramer`) while ``text_enabled()`` holds, and are dropped otherwise: the
    NE-1000 reads basic-mode lines and safe-mode packets on one port and ignores text in
    safe mode. A packet left incomplete for more than ``inter_byte_timeout_s`` of
    ``wall_time`` is discarded when the next bytes arrive (the manual's 0.5 s inter-byte
    time-out; a wire property, hence wall time), or at :meth:`on_silence`.

    ``break_checksum`` flips a bit of the byte before ETX (the CRC's low byte).
    """

    STX = 0x02
    ETX = 0x03

    def __init__(
        self,
        *,
        min_length: int = 4,
        text: LineFramer | None = None,
        text_enabled: Callable[[], bool] = lambda: True,
        inter_byte_timeout_s: float = math.inf,
        wall_time: Callable[[], float] = time.monotonic,
    ) -> None:
        self.min_length = min_length
        self.text = text
        self.text_enabled = text_enabled
        self.inter_byte_timeout_s = inter_byte_timeout_s
        self.wall_time = wall_time
        self._packet: bytearray | None = None
        self._last_byte_t = -math.inf

    def feed(self, data: bytes) -> list[bytes]:
        wall = self.wall_time()
        if self._packet is not None and wall - self._last_byte_t > self.inter_byte_timeout_s:
            self._packet = None
        self._last_byte_t = wall
        frames: list[bytes] = []
        for byte in data:
            packet = self._packet
            if packet is not None:
                packet.append(byte)
                # Complete at its declared length; a length byte too small for a packet
                # ends it at once (the codec answers it as a bad packet).
                size = len(packet)
                if (size == 2 and byte < self.min_length) or (size >= 2 and size == packet[1] + 1):
                    self._packet = None
                    frames.append(bytes(packet))
                continue
            if byte == self.STX:
                self._packet = bytearray((byte,))
            elif self.text is not None and self.text_enabled():
                line = self.text.feed_byte_text(byte)
                if line is not None:
                    frames.append(line)
        return frames

    def on_silence(self) -> list[bytes]:
        self._packet = None
        return []

    @property
    def pending(self) -> int:
        text = self.text.pending if self.text is not None else 0
        return text + (len(self._packet) if self._packet is not None else 0)

    def reset(self) -> None:
        self._packet = None
        if self.text is not None:
            self.text.reset()

    def break_checksum(self, frame: bytes) -> bytes:
        packet = len(frame) >= 5 and frame[0] == self.STX and frame[-1] == self.ETX
        if packet and frame[1] == len(frame) - 1:
            return frame[:-2] + bytes([frame[-2] ^ 0x01]) + frame[-1:]
        return flip_middle_byte(frame)


class BinaryStreamFramer(Framer[bytes]):
    """Fixed-length binary frames found in a continuous stream by a validity test.

    At each position the next ``length`` bytes are a frame if ``valid(candidate)`` holds
    (a sync bit and a checksum, typically); otherwise the first byte is dropped as noise
    and the search moves on by one byte, which is how a receiver joining a running
    stream synchronises. :meth:`on_silence` drops a partial frame.

    Parameters
    ----------
    length : int
        Bytes per frame (5 for Nonin data format #2).
    valid : callable
        Whether a candidate frame is well formed.
    checksum_index : int
        Which byte :meth:`break_checksum` flips (default: the last).
    """

    def __init__(
        self, length: int, valid: Callable[[bytes], bool], *, checksum_index: int = -1
    ) -> None:
        if length < 1:
            raise ValueError(f"frame length {length}: expected >= 1")
        self.length = length
        self.valid = valid
        self.checksum_index = checksum_index
        self._buffer = bytearray()
        #: Bytes dropped while searching for a frame boundary.
        self.dropped = 0

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        frames: list[bytes] = []
        buffer, n = self._buffer, self.length
        start = 0
        while len(buffer) - start >= n:
            candidate = bytes(buffer[start : start + n])
            if self.valid(candidate):
                frames.append(candidate)
                start += n
            else:
                start += 1
                self.dropped += 1
        del buffer[:start]
        return frames

    def on_silence(self) -> list[bytes]:
        self.dropped += len(self._buffer)
        self._buffer.clear()
        return []

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def reset(self) -> None:
        self._buffer.clear()

    def break_checksum(self, frame: bytes) -> bytes:
        if len(frame) != self.length:
            return flip_middle_byte(frame)
        index = self.checksum_index % self.length
        return frame[:index] + bytes([frame[index] ^ 0x01]) + frame[index + 1 :]
