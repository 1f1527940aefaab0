"""The Masimo driver: :class:`MasimoOximeter` reads the ASCII 1 serial output.

Protocol: Rad-8 Operator's Manual (serial output, trend format; see
:mod:`medtwin.drivers.masimo.codec`). The oximeter sends one line a second and accepts
no commands; this module adds the I/O (a :mod:`medtwin.drivers.transport`, the background
reader of :class:`~medtwin.drivers.vital_signs.StreamingOximeter`, whose decoder is the
codec's :class:`~medtwin.drivers.masimo.codec.MasimoLineDecoder`) and the mapping of a
line to :class:`~medtwin.drivers.vital_signs.OximeterReading`:

* ``SPO2``, ``BPM``, ``PI`` → the displayed values (dashes → None);
* ``EXC`` (documented bits, manual p. 4-24): no sensor, sensor off, defective or
  unrecognised sensor → ``sensor_off``; pulse search → ``searching``; low perfusion →
  ``low_perfusion``; interference, ambient light or low signal IQ → ``artifact``;
* ``ALARM`` (bits observed on one Rad-8, not documented by Masimo:
  :class:`~medtwin.drivers.masimo.codec.MasimoAlarm`): SpO2 high/low and BPM high/low →
  ``spo2_high``, ``spo2_low``, ``hr_high``, ``hr_low``; the "alarm sounding" and "mute
  pressed" bits → ``extras`` (1.0 or 0.0);
* ``SPCO``, ``SPMET``, ``DESAT``, ``PIDELTA`` and (Radical-7 layout) ``PVI`` → ``extras``.

The device's own clock and serial number of the last line are kept in
:attr:`MasimoOximeter.last_line`.
"""

from __future__ import annotations

from typing import Final

from medtwin.drivers.base import DeviceIdentity, RetryPolicy
from medtwin.drivers.clock import Clock
from medtwin.drivers.masimo.codec import (
    BAUD_RATE,
    MasimoAlarm,
    MasimoException,
    MasimoLineDecoder,
    MasimoReading,
)
from medtwin.drivers.vital_signs import OximeterReading, StreamingOximeter

__all__ = ["ALARM_CONDITIONS", "MasimoOximeter", "reading_from_line"]

#: ``ALARM`` bit → alarm condition name (:data:`medtwin.device_models.monitor.monitor.CONDITIONS`).
ALARM_CONDITIONS: Final[dict[MasimoAlarm, str]] = {
    MasimoAlarm.SPO2_HIGH: "spo2_high",
    MasimoAlarm.SPO2_LOW: "spo2_low",
    MasimoAlarm.BPM_HIGH: "hr_high",
    MasimoAlarm.BPM_LOW: "hr_low",
}
_SENSOR_OFF: Final = (
    MasimoException.NO_SENSOR
    | MasimoException.SENSOR_OFF
    | MasimoException.DEFECTIVE_SENSOR
    | MasimoException.UNRECOGNIZED_SENSOR
)
_ARTIFACT: Final = (
    MasimoException.INTERFERENCE | MasimoException.AMBIENT_LIGHT | MasimoException.LOW_SIGNAL_IQ
)


class MasimoOximeter(StreamingOximeter):
    """Driver for a Masimo oximeter (Rad-8, Radical-7, Root) set to ASCII 1 output.

    Parameters
    ----------
    port : str
        Device path, emulator pty link or ``socket://HOST:PORT``.
    baudrate : int
        Line speed; ASCII 1 runs at 9600 baud, 8N1 (Rad-8 manual p. 7-3).
    name, clock, retry
        As for every :class:`~medtwin.drivers.base.Device`.

    Both line layouts (``rad8``, ``radical7``) are read; nothing is ever sent.
    """

    protocol = "masimo"

    def __init__(
        self,
        port: str,
        *,
        baudrate: int = BAUD_RATE,
        name: str | None = None,
        clock: Clock | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        super().__init__(port, baudrate=baudrate, name=name, clock=clock, retry=retry)
        self._decoder = MasimoLineDecoder(device=self.name)
        #: The last line decoded, as the device sent it (its clock, serial number).
        self.last_line: MasimoReading | None = None

    def _counters(self) -> dict[str, int]:
        decoder = self._decoder
        return {"bad_lines": decoder.bad_lines, "dropped_bytes": decoder.dropped_bytes}

    def _reset_decoder(self) -> None:
        self._decoder.reset()

    def _decode(self, data: bytes) -> list[OximeterReading]:
        lines = self._decoder.feed(data)
        if not lines:
            return []
        self.last_line = lines[-1]
        now = self.clock.now()
        return [reading_from_line(now, line) for line in lines]

    async def _identify(self) -> DeviceIdentity:
        await self._read(self.retry.timeout_s)
        line = self.last_line
        serial = line.serial_number if line is not None and line.serial_number else ""
        return DeviceIdentity(protocol=self.protocol, model="Masimo", serial=serial)


def reading_from_line(t_s: float, line: MasimoReading) -> OximeterReading:
    """The :class:`OximeterReading` of one ASCII 1 line, received at ``t_s``."""
    exc = line.exceptions
    alarm = line.alarm
    extras: dict[str, float | None] = {
        "spco_percent": line.spco_percent,
        "spmet_percent": line.spmet_percent,
        "desat": _maybe(line.desat),
        "pidelta_percent": _maybe(line.pidelta_percent),
        "pvi_percent": _maybe(line.pvi_percent),
        "alarm_sounding": float(bool(alarm & MasimoAlarm.ALARM_ACTIVE)),
        "alarm_muted": float(bool(alarm & MasimoAlarm.MUTE_PRESSED)),
    }
    return OximeterReading(
        t_s=t_s,
        spo2_percent=_maybe(line.spo2_percent),
        pulse_rate_bpm=_maybe(line.pulse_rate_bpm),
        pi_percent=line.pi_percent,
        sensor_off=bool(exc & _SENSOR_OFF),
        searching=bool(exc & MasimoException.PULSE_SEARCH),
        low_perfusion=bool(exc & MasimoException.LOW_PERFUSION),
        artifact=bool(exc & _ARTIFACT),
        alarms=frozenset(name for bit, name in ALARM_CONDITIONS.items() if alarm & bit),
        extras=extras,
    )


def _maybe(value: int | None) -> float | None:
    return None if value is None else float(value)
