"""The Nonin driver: :class:`NoninOximeter` reads data format #2, #7 or #8 from the stream.

Protocol: Nonin 9560 OEM specification (see :mod:`medtwin.drivers.nonin.codec` for the
pages and the cross-checks); the frames, packets, records and the format-select command
are the codec's. This module adds the I/O (a :mod:`medtwin.drivers.transport`, the
background reader of :class:`~medtwin.drivers.vital_signs.StreamingOximeter`), the
format switch on open, and the mapping of the protocol's values and bits to
:class:`~medtwin.drivers.vital_signs.OximeterReading`:

* #2/#7: one reading per packet (25 frames, 1/3 s). The displayed values are the display
  values ``SpO2-D``/``HR-D`` (what the oximeter shows; they hold the last value 10 s after
  the finger is removed). The 4-beat recording values, ``SpO2 Fast``, ``SpO2 B-B`` and the
  8-beat ``E-`` values go into ``extras`` (None: the missing value 127/511). Status flags
  are the STATUS bits of any frame of the packet: ``SNSA`` or ``SNSD`` → ``sensor_off``,
  ``OOT`` → ``searching``, ``ARTF`` → ``artifact``, red perfusion (``RPRF`` alone) →
  ``low_perfusion``. The 75 Hz pleth samples of the packets go to :attr:`NoninOximeter.pleth`.
* #8: one reading per record (1 s): ``HR-D``/``SpO2-D``; ``SNSA`` (STATUS2) →
  ``sensor_off``, ``OOT`` → ``searching``, ``LPRF`` → ``low_perfusion``, ``ARTF`` →
  ``artifact``.

Nonin's serial formats carry no alarm bits: ``alarms`` is always empty.
"""

from __future__ import annotations

import asyncio
import collections
import time
from typing import Final, Literal

from medtwin.drivers.base import DeviceIdentity, RetryPolicy
from medtwin.drivers.clock import Clock
from medtwin.drivers.errors import CommandRefused, ConfigurationError, DeviceTimeout
from medtwin.drivers.nonin.commands import ACK, NAK, encode_set_format
from medtwin.drivers.nonin.format8 import (
    Format8Decoder,
    Format8Record,
    Format8Status1,
    Format8Status2,
)
from medtwin.drivers.nonin.frames import (
    BAUD_RATE,
    FRAMES_PER_SECOND,
    NoninPacket,
    NoninStreamDecoder,
    Perfusion,
    Status,
    perfusion,
)
from medtwin.drivers.vital_signs import OximeterReading, StreamingOximeter

__all__ = [
    "DATA_FORMATS",
    "PLETH_HISTORY_S",
    "Nonin2Oximeter",
    "Nonin7Oximeter",
    "Nonin8Oximeter",
    "NoninOximeter",
]

#: The data formats the driver reads.
DATA_FORMATS: Final = (2, 7, 8)
#: Seconds of pleth samples :attr:`NoninOximeter.pleth` keeps.
PLETH_HISTORY_S: Final = 10

DataFormat = Literal[2, 7, 8]


class NoninOximeter(StreamingOximeter):
    """Driver for a Nonin pulse oximeter streaming data format #2, #7 or #8.

    Parameters
    ----------
    port : str
        Device path, emulator pty link or ``socket://HOST:PORT``.
    data_format : {2, 7, 8}, optional
        The format to read; default the class's :attr:`default_format` (2; the
        registered protocols ``nonin2``, ``nonin7`` and ``nonin8`` are the subclasses
        that fix it, and refuse another).
    select_format : bool
        Send the format-select command (``02 70 02 02 <format> 03``) on every (re)open and
        require the oximeter's ACK; NAK raises :class:`CommandRefused`. False: the
        oximeter is already set to ``data_format`` (a 9560 keeps it in non-volatile
        memory) and nothing is sent.
    handshake_timeout_s : float
        How long (wall s) to wait for the ACK and the first frame of the new format.
    baudrate : int
        Line speed; Nonin's serial formats run at 9600 baud, 8N1.
    name, clock, retry
        As for every :class:`~medtwin.drivers.base.Device`.
    """

    protocol = "nonin"
    #: The format read when ``data_format`` is not given.
    default_format: DataFormat = 2
    #: Whether the class reads only :attr:`default_format` (the registered protocols).
    fixed_format = False

    def __init__(
        self,
        port: str,
        *,
        data_format: int | None = None,
        select_format: bool = True,
        handshake_timeout_s: float = 3.0,
        baudrate: int = BAUD_RATE,
        name: str | None = None,
        clock: Clock | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        if data_format is None:
            data_format = self.default_format
        if data_format not in DATA_FORMATS or isinstance(data_format, bool):
            raise ConfigurationError(
                f"{name or self.protocol} on {port}: data_format {data_format!r} is not one "
                f"of {', '.join(map(str, DATA_FORMATS))}",
                field="data_format",
            )
        if self.fixed_format and data_format != self.default_format:
            raise ConfigurationError(
                f"{name or self.protocol} on {port}: protocol {self.protocol} reads data "
                f"format #{self.default_format}, not #{data_format}",
                field="data_format",
            )
        if not handshake_timeout_s > 0:
            raise ConfigurationError(
                f"{name or 'nonin'} on {port}: handshake_timeout_s must be > 0",
                field="handshake_timeout_s",
            )
        super().__init__(port, baudrate=baudrate, name=name, clock=clock, retry=retry)
        self.data_format: DataFormat = data_format  # type: ignore[assignment]
        self.select_format = bool(select_format)
        self.handshake_timeout_s = float(handshake_timeout_s)
        self._frames: NoninStreamDecoder | None = None
        self._records: Format8Decoder | None = None
        if data_format == 8:
            self._records = Format8Decoder(device=self.name)
        else:
            self._frames = NoninStreamDecoder(fmt=data_format, device=self.name)  # type: ignore[arg-type]
        #: The newest pleth samples (#2: 0-255, #7: 0-65535), 75 a second, oldest first.
        self.pleth: collections.deque[int] = collections.deque(
            maxlen=FRAMES_PER_SECOND * PLETH_HISTORY_S
        )
        #: Format-select replies seen: ACKs and NAKs.
        self.acks = 0
        self.naks = 0

    # -- StreamingOximeter -------------------------------------------------------------------

    def _counters(self) -> dict[str, int]:
        if self._records is not None:
            return {"dropped_bytes": self._records.dropped_bytes}
        decoder = self._frames
        assert decoder is not None
        return {
            "bad_checksums": decoder.bad_checksums,
            "lost_sync": decoder.lost_sync,
            "incomplete_packets": decoder.incomplete_packets,
            "dropped_bytes": decoder.dropped_bytes,
        }

    def _reset_decoder(self) -> None:
        if self._records is not None:
            self._records.reset()
        if self._frames is not None:
            self._frames.reset()

    def _decode(self, data: bytes) -> list[OximeterReading]:
        if self._records is not None:
            now = self.clock.now()
            return [_record_reading(now, record) for record in self._records.feed(data)]
        decoder = self._frames
        assert decoder is not None
        packets = decoder.feed(data)
        if decoder.replies:
            # An ACK/NAK among the frames: a format command answered late (counted).
            self.acks += sum(decoder.replies)
            self.naks += len(decoder.replies) - sum(decoder.replies)
            decoder.replies.clear()
        if not packets:
            return []
        now = self.clock.now()
        for packet in packets:
            self.pleth.extend(packet.pleth)
        return [_packet_reading(now, packet) for packet in packets]

    async def _handshake(self) -> None:
        if not self.select_format:
            return
        await self._transport.write(encode_set_format(self.data_format))
        # The ACK/NAK arrives between the frames of whatever format the oximeter streamed
        # before (or alone, if it was silent); then frames of the new format follow.
        # Decoders of the old formats take a reply byte out once they are synchronised;
        # the new format's own decoder decoding a frame means the switch was accepted.
        watchers = [NoninStreamDecoder(fmt=2), NoninStreamDecoder(fmt=7)]
        first = True
        deadline = time.monotonic() + self.handshake_timeout_s
        acked = False
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DeviceTimeout(
                    f"no ACK to the format-select command (#{self.data_format}) and no "
                    f"#{self.data_format} data within {self.handshake_timeout_s:g} s on "
                    f"{self.port}; check the cable and that the oximeter supports the format",
                    device=self.name,
                )
            try:
                async with asyncio.timeout(remaining):
                    data = await self._transport.read_some(self.read_chunk)
            except TimeoutError:
                continue
            if first and data[:1] in (bytes((ACK,)), bytes((NAK,))):
                reply, data = data[0], data[1:]
                acked = self._reply(reply == ACK)
            first = False
            if not acked:
                for watcher in watchers:
                    watcher.feed(data)
                    for ok in watcher.replies:
                        acked = self._reply(ok)
                    watcher.replies.clear()
            readings = self._decode(data)
            self._publish(readings)
            if acked or readings:
                return

    def _reply(self, ok: bool) -> bool:
        if ok:
            self.acks += 1
            return True
        self.naks += 1
        raise CommandRefused(
            f"the oximeter answered NAK to the format-select command for #{self.data_format}: "
            "it does not support that format",
            device=self.name,
            reply=bytes((NAK,)),
        )

    async def _identify(self) -> DeviceIdentity:
        # The serial formats carry only the firmware revision (SREV, #2/#7 frame 4).
        firmware = ""
        if self._frames is not None:
            reading = await self._read(self.retry.timeout_s)
            revision = reading.extras.get("firmware_revision")
            if revision is not None:
                firmware = str(int(revision))
        return DeviceIdentity(protocol=self.protocol, model="Nonin", firmware=firmware)


class Nonin2Oximeter(NoninOximeter):
    """:class:`NoninOximeter` reading data format #2 (protocol ``nonin2``)."""

    protocol = "nonin2"
    default_format = 2
    fixed_format = True


class Nonin7Oximeter(NoninOximeter):
    """:class:`NoninOximeter` reading data format #7 (protocol ``nonin7``)."""

    protocol = "nonin7"
    default_format = 7
    fixed_format = True


class Nonin8Oximeter(NoninOximeter):
    """:class:`NoninOximeter` reading data format #8 (protocol ``nonin8``)."""

    protocol = "nonin8"
    default_format = 8
    fixed_format = True


def _packet_reading(t_s: float, packet: NoninPacket) -> OximeterReading:
    values = packet.values
    bits = 0
    red = False
    for status in packet.statuses:
        bits |= status
        red = red or perfusion(status) is Perfusion.RED
    extras: dict[str, float | None] = {
        "spo2_recording_percent": _maybe(values.spo2_percent),
        "hr_recording_bpm": _maybe(values.hr_bpm),
        "spo2_fast_percent": _maybe(values.spo2_fast_percent),
        "spo2_beat_percent": _maybe(values.spo2_beat_percent),
        "spo2_extended_percent": _maybe(values.e_spo2_percent),
        "hr_extended_bpm": _maybe(values.e_hr_bpm),
        "spo2_extended_display_percent": _maybe(values.e_spo2_d_percent),
        "hr_extended_display_bpm": _maybe(values.e_hr_d_bpm),
        "firmware_revision": float(values.firmware_revision),
        "timer": float(values.timer),
    }
    return OximeterReading(
        t_s=t_s,
        spo2_percent=_maybe(values.spo2_d_percent),
        pulse_rate_bpm=_maybe(values.hr_d_bpm),
        pi_percent=None,
        sensor_off=bool(bits & (Status.SNSA | Status.SNSD)),
        searching=bool(bits & Status.OOT),
        low_perfusion=red,
        artifact=bool(bits & Status.ARTF),
        extras=extras,
    )


def _record_reading(t_s: float, record: Format8Record) -> OximeterReading:
    status1, status2 = record.status1, record.status2
    return OximeterReading(
        t_s=t_s,
        spo2_percent=_maybe(record.spo2_percent),
        pulse_rate_bpm=_maybe(record.hr_bpm),
        pi_percent=None,
        sensor_off=bool(status2 & Format8Status2.SNSA),
        searching=bool(status1 & Format8Status1.OOT),
        low_perfusion=bool(status1 & Format8Status1.LPRF),
        artifact=bool(status1 & Format8Status1.ARTF),
    )


def _maybe(value: int | None) -> float | None:
    return None if value is None else float(value)
