"""Modbus framing: RTU (CRC-16, frames ended by 3.5 characters of silence) and MBAP over TCP.

Pure (no I/O), so the emulator, the tests and any tool that needs Modbus frames share one
implementation: the ADU builders :func:`rtu_frame` and :func:`mbap_frame`, the CRC, the
serial-line silence t3.5, and the two device-side framers of
:mod:`medtwin.drivers.framing`'s contract, :class:`RtuRequestFramer` and
:class:`MbapFramer`. The PDUs themselves are pymodbus's (``pymodbus.pdu``); the client side
(:mod:`medtwin.drivers.modbus.driver`) uses pymodbus's own framers through its clients.

References: MODBUS over Serial Line V1.02 (RTU framing, CRC-16 low byte first, t3.5 =
1.75 ms above 19200 baud, §2.5.1.1; broadcast address 0, §2.1), MODBUS Messaging on TCP/IP
Implementation Guide V1.0b (MBAP header: transaction id, protocol id 0, length = unit id +
PDU, unit id), MODBUS Application Protocol Specification V1.1b3 (PDU at most 253 bytes,
exception responses).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from medtwin.drivers.errors import ProtocolError
from medtwin.drivers.framing import Framer, flip_middle_byte
from pymodbus.framer import FramerRTU
from pymodbus.pdu import DecodePDU

__all__ = [
    "MAX_PDU",
    "MAX_RTU_ADU",
    "MbapFrame",
    "MbapFramer",
    "RtuFrame",
    "RtuRequestFramer",
    "exception_pdu",
    "mbap_frame",
    "rtu_crc",
    "rtu_frame",
    "t35_s",
]

#: Longest PDU (function code + data) the application protocol allows.
MAX_PDU = 253
#: Longest RTU ADU: address + PDU + CRC.
MAX_RTU_ADU = 256


def rtu_crc(data: bytes) -> bytes:
    """The two CRC bytes of a Modbus RTU frame, in wire order (low byte first)."""
    return int(FramerRTU.compute_CRC(data)).to_bytes(2, "big")


def rtu_frame(device_id: int, pdu: bytes) -> bytes:
    """Address + PDU + CRC: one RTU ADU."""
    body = bytes((device_id,)) + pdu
    return body + rtu_crc(body)


def mbap_frame(transaction_id: int, unit_id: int, pdu: bytes) -> bytes:
    """MBAP header (transaction, protocol 0, length, unit) + PDU: one Modbus TCP ADU."""
    return struct.pack(">HHHB", transaction_id, 0, len(pdu) + 1, unit_id) + pdu


def exception_pdu(function_code: int, code: int) -> bytes:
    """The exception response PDU: function code with its high bit set, then the code."""
    return bytes(((function_code & 0x7F) | 0x80, code))


def t35_s(baud: int, bits_per_char: int, chars: float = 3.5) -> float:
    """The RTU inter-frame silence (s): ``chars`` character times, fixed at 1.75 ms above
    19200 baud (MODBUS over Serial Line V1.02, §2.5.1.1)."""
    if baud > 19200:
        return 1.75e-3
    return chars * bits_per_char / baud


@dataclass(frozen=True, slots=True)
class RtuFrame:
    """One RTU request with a good CRC: ``pdu`` is function code + data.

    ``known`` is False for a function code pymodbus cannot frame (answered with
    exception 1 once the line falls silent).
    """

    device_id: int
    pdu: bytes
    raw: bytes
    known: bool = True


class RtuRequestFramer(Framer[RtuFrame]):
    """Splits the byte stream a Modbus slave receives into RTU request frames (pure).

    A frame's length follows from its function code (pymodbus's request table); a frame
    whose CRC fails is discarded together with everything until the line falls silent,
    as a slave does with a corrupted frame (MODBUS over Serial Line V1.02, §2.5.1.1).
    Bytes that form no frame wait for :meth:`on_silence`, which also turns a burst with a
    good CRC but an unknown function code into a frame (to be refused with exception 1).
    """

    silence_chars = 3.5
    half_duplex = True

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._discarding = False
        self._decoder = DecodePDU(True)
        #: Frames dropped for a bad CRC or as noise (the diagnostics "bus error" count).
        self.errors = 0

    @property
    def pending(self) -> int:
        """Bytes received that do not yet form a frame."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[RtuFrame]:
        """Frames completed by ``data``, in order."""
        if self._discarding:
            return []
        self._buffer += data
        frames: list[RtuFrame] = []
        buffer = self._buffer
        while len(buffer) >= 4:
            size = self._frame_size(bytes(buffer))
            if size is None or size == 0 or len(buffer) < size:
                if len(buffer) > MAX_RTU_ADU:
                    self._drop()
                break
            raw = bytes(buffer[:size])
            if rtu_crc(raw[:-2]) != raw[-2:]:
                self._drop()
                break
            del buffer[:size]
            frames.append(RtuFrame(raw[0], raw[1:-2], raw))
        return frames

    def on_silence(self) -> list[RtuFrame]:
        """The line went quiet: end the current burst."""
        burst = bytes(self._buffer)
        self._buffer.clear()
        self._discarding = False
        if len(burst) >= 4 and rtu_crc(burst[:-2]) == burst[-2:] and not burst[1] & 0x80:
            return [RtuFrame(burst[0], burst[1:-2], burst, known=False)]
        if burst:
            self.errors += 1
        return []

    def reset(self) -> None:
        self._buffer.clear()
        self._discarding = False

    def break_checksum(self, frame: bytes) -> bytes:
        """The frame with its CRC's low byte inverted (a slave or master must drop it)."""
        if len(frame) < 4:
            return flip_middle_byte(frame)
        return frame[:-2] + bytes((frame[-2] ^ 0xFF,)) + frame[-1:]

    def _drop(self) -> None:
        self._buffer.clear()
        self._discarding = True
        self.errors += 1

    def _frame_size(self, data: bytes) -> int | None:
        """Frame length (None: unknown function, 0: need more bytes)."""
        if data[1] & 0x80 or data[1] == 0:
            return None
        try:
            pdu_class = self._decoder.lookupPduClass(data)
            if pdu_class is None:
                return None
            return int(pdu_class.calculateRtuFrameSize(data))
        except Exception:  # pymodbus raises several kinds for odd frames
            return None


@dataclass(frozen=True, slots=True)
class MbapFrame:
    """One Modbus TCP request: the MBAP header's transaction and unit ids, and the PDU."""

    transaction_id: int
    unit_id: int
    pdu: bytes
    raw: bytes


class MbapFramer(Framer[MbapFrame]):
    """Splits a Modbus TCP byte stream into MBAP requests (pure).

    The header's length field delimits each ADU. A header whose protocol identifier is not
    0 or whose length cannot hold a PDU means the stream is not Modbus (or lost its
    place): TCP gives no way to resynchronise, so :meth:`feed` raises
    :class:`~medtwin.drivers.errors.ProtocolError` and forgets the stream; a server drops
    such a connection (the next one starts clean). Requests completed before a bad header
    in the same chunk are returned first; the error comes with the next call.
    """

    #: Modbus TCP has no serial line behind it: its replies are never paced.
    paced = False

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[MbapFrame]:
        self._buffer += data
        buffer = self._buffer
        frames: list[MbapFrame] = []
        while len(buffer) >= 7:
            transaction, protocol, length, unit = struct.unpack_from(">HHHB", buffer)
            if protocol != 0 or not 2 <= length <= MAX_PDU + 1:
                raw = bytes(buffer)
                buffer.clear()
                if frames:
                    # Deliver what was whole; the bad header is reported on the next call.
                    buffer += raw
                    return frames
                raise ProtocolError(
                    f"not a Modbus TCP header (protocol {protocol}, length {length})",
                    raw=raw,
                    device="mbap",
                )
            end = 6 + length
            if len(buffer) < end:
                break
            raw = bytes(buffer[:end])
            del buffer[:end]
            frames.append(MbapFrame(transaction, unit, raw[7:], raw))
        return frames

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def reset(self) -> None:
        self._buffer.clear()

    def break_checksum(self, frame: bytes) -> bytes:
        """Modbus TCP has no checksum of its own (TCP's catches corruption on the wire); a
        broken protocol identifier is the corruption a conforming client must reject."""
        if len(frame) < 7:
            return flip_middle_byte(frame)
        return frame[:2] + b"\x00\x01" + frame[4:]
