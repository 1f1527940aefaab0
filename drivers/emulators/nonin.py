"""The device side of the Nonin serial data formats #2, #7 and #8 (9560 OEM specification).

:class:`NoninProtocol` is the oximeter's firmware over an
:class:`~medtwin.drivers.emulators.mechanisms.OximeterMechanism` (the shared patient seen
through this monitor's own model); :class:`NoninEmulator` serves it on the one emulator
server. Byte for byte what the codec (:mod:`medtwin.drivers.nonin.codec`) specifies:

* **#2 / #7**: 75 frames a second on the wall clock, 25-frame packets. At each packet
  start the handler takes one ``snapshot()`` (the DATA bytes: 4-beat ``HR``/``SpO2``
  recording values, missing while the sensor is off; the display values ``HR-D``/
  ``SpO2-D`` as the monitor model shows them, which hold them after a probe-off; the
  8-beat ``E-`` values from ``snapshot.extended`` when the mechanism has them, else the
  missing values 127/511; ``SpO2 Fast`` and ``SpO2 B-B`` from ``extended`` if present,
  else the 4-beat value — a simplification) and the pleth of the last 1/3 s
  (``pleth(times)``, quantised to 8 or 16 bits). STATUS per frame: ``SNSA`` sensor off,
  ``OOT`` searching or no signal, ``ARTF`` artefact, and while a pulse is shown ``GPRF``
  (green) or ``RPRF`` (red, low perfusion). The specification holds the perfusion bits
  12 frames on each pulse; here they are set on every frame (a simplification).
* **#8**: one 4-byte record a second: ``HR-D``, ``SpO2-D``, ``OOT``/``LPRF``/``ARTF`` in
  STATUS1 and ``SNSA`` in STATUS2.
* **Format select** ``02 70 02 02 <format> 03``: ACK and the new format from the next
  unit for 2, 7 or 8; NAK for anything else (#13 and #1 are not emulated). The
  specification's "first five seconds of a connection" window is not enforced (a pty
  has no connection event). The set-clock command is accepted silently.

Stream faults (see :mod:`.monitor_stream`): ``bad-checksum`` adds one to a frame's CHK
(#8, which has no checksum: sets bit 7 of its SpO2 byte), ``lost-sync`` sends a frame
with its SYNC bit wrong and a valid CHK (#8: clears STATUS1 bit 7), ``drop``,
``garbage``, ``late``, ``disconnect``.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from medtwin.drivers.clock import Clock
from medtwin.drivers.emulators.faults import FaultPlan
from medtwin.drivers.emulators.mechanisms import OximeterMechanism, OximeterSnapshot
from medtwin.drivers.emulators.monitor_stream import MonitorStreamHandler
from medtwin.drivers.emulators.pacing import Pacing
from medtwin.drivers.emulators.server import SerialDeviceEmulator
from medtwin.drivers.errors import ProtocolError
from medtwin.drivers.framing import Framer
from medtwin.drivers.nonin.codec import (
    ACK,
    FRAME_LENGTH,
    FRAMES_PER_PACKET,
    FRAMES_PER_SECOND,
    MISSING_HR,
    MISSING_SPO2,
    NAK,
    Format8Record,
    Format8Status1,
    Format8Status2,
    NoninCommandFramer,
    PacketValues,
    Status,
    encode_format8,
    encode_packet,
    parse_set_format,
    parse_set_time,
)

__all__ = [
    "EMULATED_FORMATS",
    "Nonin2Emulator",
    "Nonin7Emulator",
    "Nonin8Emulator",
    "NoninEmulator",
    "NoninProtocol",
    "packet_values",
]

#: The data formats the emulator streams (and ACKs).
EMULATED_FORMATS = frozenset({2, 7, 8})


def _hr(value: float | None) -> int | None:
    if value is None or not math.isfinite(value):
        return None
    return min(max(round(value), 0), MISSING_HR - 1)


def _spo2(value: float | None) -> int | None:
    if value is None or not math.isfinite(value):
        return None
    return min(max(round(value), 0), MISSING_SPO2 - 1)


def packet_values(
    snap: OximeterSnapshot, *, timer: int = 0, firmware_revision: int = 0
) -> PacketValues:
    """The DATA bytes' values of a #2/#7 packet showing ``snap`` (see the module)."""
    hr, spo2 = _hr(snap.pulse_rate_bpm), _spo2(snap.spo2_percent)
    off = snap.sensor_off
    ext = snap.extended
    e_hr, e_spo2 = _hr(ext.get("hr_extended_bpm")), _spo2(ext.get("spo2_extended_percent"))
    fast = _spo2(ext["spo2_fast_percent"]) if "spo2_fast_percent" in ext else spo2
    beat = _spo2(ext["spo2_beat_percent"]) if "spo2_beat_percent" in ext else spo2
    return PacketValues(
        hr_bpm=None if off else hr,
        spo2_percent=None if off else spo2,
        firmware_revision=firmware_revision & 0x7F,
        timer=timer & 0x3FFF,
        status2=0,
        spo2_d_percent=spo2,
        spo2_fast_percent=None if off else fast,
        spo2_beat_percent=None if off else beat,
        e_hr_bpm=None if off else e_hr,
        e_spo2_percent=None if off else e_spo2,
        e_spo2_d_percent=e_spo2,
        hr_d_bpm=hr,
        e_hr_d_bpm=e_hr,
    )


def _status(snap: OximeterSnapshot) -> int:
    bits = 0
    if snap.sensor_off:
        bits |= Status.SNSA
    if snap.searching or snap.signal_loss:
        bits |= Status.OOT
    if snap.artifact:
        bits |= Status.ARTF
    if not snap.sensor_off and snap.pulse_rate_bpm is not None:
        bits |= Status.RPRF if snap.low_perfusion else Status.GPRF
    return int(bits)


def _record(snap: OximeterSnapshot) -> Format8Record:
    status1 = 0
    if snap.searching or snap.signal_loss:
        status1 |= Format8Status1.OOT
    if snap.low_perfusion:
        status1 |= Format8Status1.LPRF
    if snap.artifact:
        status1 |= Format8Status1.ARTF
    return Format8Record(
        hr_bpm=_hr(snap.pulse_rate_bpm),
        spo2_percent=_spo2(snap.spo2_percent),
        status1=int(status1),
        status2=int(Format8Status2.SNSA) if snap.sensor_off else 0,
    )


class NoninProtocol(MonitorStreamHandler):
    """Nonin oximeter firmware over an :class:`OximeterMechanism` (see the module).

    Parameters
    ----------
    mechanism : OximeterMechanism
    clock : Clock
        Device time of the snapshots and the pleth samples.
    data_format : {2, 7, 8}
        Format streamed from power-on (a 9560 keeps it in non-volatile memory).
    firmware_revision : int, optional
        SREV (0-127); default: the digits of ``mechanism.firmware``, else 0.
    poll_interval_s : float
        Wall seconds between the server's polls (default one frame time, 1/75 s).
    wall_time : callable
        Wall clock of the stream schedule (``time.monotonic``; injectable for tests).
    """

    def __init__(
        self,
        mechanism: OximeterMechanism,
        *,
        clock: Clock,
        data_format: int = 2,
        firmware_revision: int | None = None,
        poll_interval_s: float = 1.0 / FRAMES_PER_SECOND,
        wall_time: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(clock=clock, poll_interval_s=poll_interval_s, wall_time=wall_time)
        if data_format not in EMULATED_FORMATS:
            raise ValueError(f"Nonin emulator: data_format {data_format!r}: expected 2, 7 or 8")
        self.mechanism = mechanism
        self.device_name = "NONIN"
        self.data_format = int(data_format)
        if firmware_revision is None:
            digits = re.sub(r"\D", "", mechanism.firmware or "")
            firmware_revision = int(digits[-3:]) & 0x7F if digits else 0
        if not 0 <= firmware_revision <= 0x7F:
            raise ValueError(f"Nonin emulator: firmware_revision {firmware_revision}: 0..127")
        self.firmware_revision = firmware_revision
        self._packet = b""
        self._packet_no = -1
        self._t_first = clock.now()
        self._last_pleth_t = -math.inf
        self._last_pleth = 0.5
        #: Format-select commands answered (ACK, NAK) and clock settings received.
        self.acks = 0
        self.naks = 0
        self.clock_set: list[Any] = []
        #: Packets whose pleth the mechanism could not give (its value held instead).
        self.pleth_errors = 0

    # -- commands ------------------------------------------------------------------------

    def new_framer(self) -> Framer[Any]:
        return NoninCommandFramer()

    def handle(self, frame: Any) -> list[bytes]:
        raw = bytes(frame)
        try:
            fmt = parse_set_format(raw)
        except ProtocolError:
            try:
                self.clock_set.append(parse_set_time(raw))
            except ProtocolError:
                self.naks += 1
                return [bytes((NAK,))]
            return []
        if fmt not in EMULATED_FORMATS:
            self.naks += 1
            return [bytes((NAK,))]
        self.acks += 1
        if fmt != self.data_format:
            self.data_format = fmt
            self.restart_stream()
        return [bytes((ACK,))]

    # -- the stream ----------------------------------------------------------------------

    def restart_stream(self) -> None:
        super().restart_stream()
        self._packet_no = -1

    def interval_s(self) -> float:
        return 1.0 if self.data_format == 8 else 1.0 / FRAMES_PER_SECOND

    def unit(self, k: int) -> bytes:
        if self.data_format == 8:
            return encode_format8(_record(self.mechanism.snapshot()))
        packet_no, index = divmod(k, FRAMES_PER_PACKET)
        if packet_no != self._packet_no:
            self._packet = self._make_packet(packet_no)
            self._packet_no = packet_no
        start = index * FRAME_LENGTH
        return self._packet[start : start + FRAME_LENGTH]

    def _make_packet(self, packet_no: int) -> bytes:
        snap = self.mechanism.snapshot()
        values = packet_values(snap, timer=packet_no, firmware_revision=self.firmware_revision)
        samples = self._pleth(snap.t_s)
        top = 0xFF if self.data_format == 2 else 0xFFFF
        quantised = np.clip(np.rint(samples * top), 0, top).astype(int).tolist()
        return encode_packet(values, quantised, fmt=self.data_format, status=_status(snap))  # type: ignore[arg-type]

    def _pleth(self, now: float) -> np.ndarray[Any, np.dtype[np.float64]]:
        """The last 1/3 s of pleth (25 samples) at ``now``; samples already asked for, or
        before the oximeter was switched on, repeat the last value (the mechanism is
        asked for ascending times that are never in the past of an earlier call)."""
        times = now - np.arange(FRAMES_PER_PACKET - 1, -1, -1) / FRAMES_PER_SECOND
        fresh = (times > self._last_pleth_t) & (times >= self._t_first)
        out = np.full(FRAMES_PER_PACKET, self._last_pleth)
        if fresh.any():
            try:
                new = np.asarray(self.mechanism.pleth(times[fresh].tolist()), dtype=float)
            except ValueError:
                # Times the mechanism no longer (or not yet) holds: the last value holds.
                self.pleth_errors += 1
                return np.full(FRAMES_PER_PACKET, self._last_pleth)
            first = int(np.argmax(fresh))
            out[first:] = self._last_pleth
            out[fresh] = new
            self._last_pleth_t = float(times[fresh][-1])
            self._last_pleth = float(new[-1])
        clipped: np.ndarray[Any, np.dtype[np.float64]] = np.clip(out, 0.0, 1.0)
        return clipped

    def break_checksum(self, unit: bytes) -> bytes:
        if self.data_format == 8:
            return unit[:2] + bytes((unit[2] | 0x80,)) + unit[3:]
        return unit[:4] + bytes(((unit[4] + 1) & 0xFF,))

    def break_sync(self, unit: bytes) -> bytes:
        if self.data_format == 8:
            return bytes((unit[0] & 0x7F,)) + unit[1:]
        at = 1 if self.data_format == 2 else 0
        head = bytearray(unit[:4])
        head[at] ^= Status.SYNC
        return bytes(head) + bytes((sum(head) & 0xFF,))


class NoninEmulator(SerialDeviceEmulator):
    """A Nonin oximeter (#2/#7/#8) on a pty or TCP port::

        emulator = Nonin2Emulator(bench.patient.oximeter(monitor_preset("nonin"), ...),
                                  clock=clock)
        port = await emulator.start()

    Options are :class:`NoninProtocol`'s.
    """

    handler_class = NoninProtocol
    #: The format streamed from power-on when the options do not say.
    default_format = 2

    def __init__(
        self,
        mechanism: object,
        *,
        clock: Clock,
        faults: FaultPlan | None = None,
        pacing: Pacing | None = None,
        **handler_options: object,
    ) -> None:
        handler_options.setdefault("data_format", self.default_format)
        super().__init__(mechanism, clock=clock, faults=faults, pacing=pacing, **handler_options)
        handler = self.handler
        assert isinstance(handler, MonitorStreamHandler)
        handler.faults_source = lambda: self.server.faults
        handler.on_disconnect = self.server.disconnect


class Nonin2Emulator(NoninEmulator):
    """Protocol ``nonin2``: streams #2 from power-on."""

    default_format = 2


class Nonin7Emulator(NoninEmulator):
    """Protocol ``nonin7``: streams #7 from power-on."""

    default_format = 7


class Nonin8Emulator(NoninEmulator):
    """Protocol ``nonin8``: streams #8 from power-on."""

    default_format = 8
