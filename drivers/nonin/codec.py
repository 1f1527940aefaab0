"""Nonin pulse oximeter serial data formats #2, #7 and #8: bytes ⇄ values, no I/O.

Primary source: Nonin Medical, *Onyx II Model 9560 Bluetooth Fingertip Oximeter — OEM
Specification and Technical Information*, pp. 3-4 (settings, format-select command) and
pp. 8-16 (formats #2, #7, #8); the same formats are defined in the WristOx2 3150 OEM
specification and, for #2, the Nonin OEM III module specification. Open implementations
used as cross-checks: mdpnp/mdpnp ``Packet.java`` and ``NoninPulseOx.java`` (#7, the
format command, ACK/NAK), mattjlewis/NoninPulseOx (``DataFormat2PacketSerialiser``,
``DataFormat8Serialiser``), pez-globo/pufferfish-software (``Types.h``, the OEM III
status masks).

* Serial: 9600 baud, 8 data bits, no parity, 1 stop bit, no flow control.
* **#2**: frames of 5 bytes ``01 STATUS PLETH DATA CHK``, 75 frames/s, 25 frames a packet
  (1/3 s). ``CHK`` = (byte1 + byte2 + byte3 + byte4) mod 256. PLETH is 8 bits.
* **#7**: the same, but ``STATUS PLETH-MSB PLETH-LSB DATA CHK`` (16-bit pleth, no 01).
* STATUS: bit 7 always 1, then :class:`Status` bits; SYNC is set on frame 1 of a packet
  only. The DATA byte of frame *i* (0-based) carries the value :data:`FRAME_DATA` names:
  heart rates in two frames (``HR = (MSB & 0x03) << 7 | (LSB & 0x7F)``), the 1/3-s timer
  in two 7-bit halves. Missing values: HR 511, SpO2 127 (:data:`MISSING_HR`,
  :data:`MISSING_SPO2`; ``None`` here).
* **#8**: 4 bytes once a second, ``STATUS1 HR-LSB SpO2 STATUS2`` (no checksum): STATUS1
  bit 7 always 1 and bits 1-0 are HR bits 8-7; the other three bytes have bit 7 clear.
* **Format select**: ``02 70 02 02 <format> 03``; the oximeter answers ACK ``06`` or NAK
  ``15``. Set the clock: ``02 72 06 YY MM DD hh mm ss 03``.

Decoding a single frame or record raises only :class:`~medtwin.drivers.errors.ProtocolError`;
the stream decoders never raise and count what they drop.

This module gathers the protocol in one namespace: :mod:`.frames` (#2 and #7),
:mod:`.format8` (#8) and :mod:`.commands` (format select, clock, ACK/NAK, the command
framer of the emulated oximeter).
"""

from medtwin.drivers.nonin.commands import *  # noqa: F403 - re-exported as one codec
from medtwin.drivers.nonin.commands import __all__ as _commands_all
from medtwin.drivers.nonin.format8 import *  # noqa: F403
from medtwin.drivers.nonin.format8 import __all__ as _format8_all
from medtwin.drivers.nonin.frames import *  # noqa: F403
from medtwin.drivers.nonin.frames import __all__ as _frames_all

__all__ = [*_frames_all, *_format8_all, *_commands_all]
