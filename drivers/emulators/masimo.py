"""The device side of the Masimo ASCII 1 serial output (Rad-8 Operator's Manual).

:class:`MasimoProtocol` sends one line every ``line_interval_s`` wall seconds (1 s on the
device) showing the oximeter mechanism's ``snapshot()`` (the shared patient seen through
this monitor's own model), encoded by :func:`medtwin.drivers.masimo.codec.encode_line`:

* ``SPO2``, ``BPM``, ``PI`` rounded to the field's width; ``None`` → dashes. ``SPCO``,
  ``SPMET``, ``DESAT``, ``PIDELTA`` (and ``PVI`` in the ``radical7`` layout) are not
  modelled: dashes.
* ``EXC``: sensor off → ``SENSOR_OFF`` (0x20), searching or no signal → ``PULSE_SEARCH``
  (0x08), low perfusion → ``LOW_PERFUSION`` (0x04), artefact → ``LOW_SIGNAL_IQ``
  (0x400); ``MASIMO_SET`` (0x800) while the sensor is on, as in the Rad-8 capture.
* ``ALARM``: ``spo2_low``/``spo2_high``/``hr_low``/``hr_high`` → the observed bits, with
  ``ALARM_ACTIVE`` (0x10) beside each, as observed; probe-off and no-signal alarms have
  no observed bit and are not sent.
* The date and time are ``start`` plus the device time (whole seconds); ``SN`` is the
  last 10 digits of ``mechanism.serial`` (zero-padded), dashes without digits.

The device receives nothing. Stream faults (see :mod:`.monitor_stream`) act per line:
``bad-checksum`` corrupts one byte in the middle (ASCII 1 has no checksum),
``lost-sync`` loses the line's CR LF (it runs into the next), ``drop``, ``garbage``,
``late``, ``disconnect``.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Final

from medtwin.drivers.clock import Clock
from medtwin.drivers.emulators.faults import FaultPlan
from medtwin.drivers.emulators.mechanisms import OximeterMechanism, OximeterSnapshot
from medtwin.drivers.emulators.monitor_stream import MonitorStreamHandler
from medtwin.drivers.emulators.pacing import Pacing
from medtwin.drivers.emulators.server import SerialDeviceEmulator
from medtwin.drivers.masimo.codec import (
    LINE_END,
    VARIANTS,
    MasimoAlarm,
    MasimoException,
    MasimoReading,
    Variant,
    encode_line,
)

__all__ = ["MasimoEmulator", "MasimoProtocol", "line_reading"]

#: Alarm condition → the observed ``ALARM`` bit.
_ALARM_BITS: Final = {
    "spo2_high": MasimoAlarm.SPO2_HIGH,
    "spo2_low": MasimoAlarm.SPO2_LOW,
    "hr_high": MasimoAlarm.BPM_HIGH,
    "hr_low": MasimoAlarm.BPM_LOW,
}
_DEFAULT_START: Final = datetime(2026, 1, 1, 0, 0, 0)


def _int(value: float | None, high: int) -> int | None:
    if value is None or not math.isfinite(value):
        return None
    return min(max(round(value), 0), high)


def line_reading(
    snap: OximeterSnapshot, *, timestamp: datetime, serial_number: str | None
) -> MasimoReading:
    """The ASCII 1 values of a line showing ``snap`` (see the module)."""
    exc = 0
    if snap.sensor_off:
        exc |= MasimoException.SENSOR_OFF
    else:
        exc |= MasimoException.MASIMO_SET
    if snap.searching or snap.signal_loss:
        exc |= MasimoException.PULSE_SEARCH
    if snap.low_perfusion:
        exc |= MasimoException.LOW_PERFUSION
    if snap.artifact:
        exc |= MasimoException.LOW_SIGNAL_IQ
    alarm = 0
    for name in snap.alarms:
        bit = _ALARM_BITS.get(name)
        if bit is not None:
            alarm |= bit | MasimoAlarm.ALARM_ACTIVE
    pi = snap.pi_percent
    pi_value = None
    if pi is not None and math.isfinite(pi):
        pi_value = round(min(max(pi, 0.0), 99.99), 2)
    return MasimoReading(
        timestamp=timestamp,
        serial_number=serial_number,
        spo2_percent=_int(snap.spo2_percent, 100),
        pulse_rate_bpm=_int(snap.pulse_rate_bpm, 999),
        pi_percent=pi_value,
        alarm=int(alarm),
        exceptions=int(exc),
    )


class MasimoProtocol(MonitorStreamHandler):
    """Masimo ASCII 1 output over an :class:`OximeterMechanism` (see the module).

    Parameters
    ----------
    mechanism : OximeterMechanism
    clock : Clock
    variant : {"rad8", "radical7"}
        Line layout.
    line_interval_s : float
        Wall seconds between lines (1 s on the device).
    start : str or datetime
        The device clock at device time 0 (ISO 8601 text or a naive datetime).
    poll_interval_s : float
        Wall seconds between the server's polls.
    wall_time : callable
        Wall clock of the schedule (``time.monotonic``; injectable for tests).
    """

    def __init__(
        self,
        mechanism: OximeterMechanism,
        *,
        clock: Clock,
        variant: str = "rad8",
        line_interval_s: float = 1.0,
        start: str | datetime = _DEFAULT_START,
        poll_interval_s: float = 0.05,
        wall_time: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(clock=clock, poll_interval_s=poll_interval_s, wall_time=wall_time)
        if variant not in VARIANTS:
            raise ValueError(f"Masimo emulator: variant {variant!r}: expected one of {VARIANTS}")
        if not (math.isfinite(line_interval_s) and line_interval_s > 0):
            raise ValueError(f"Masimo emulator: line_interval_s={line_interval_s!r} must be > 0")
        self.mechanism = mechanism
        self.device_name = "MASIMO"
        self.variant: Variant = variant
        self.line_interval_s = float(line_interval_s)
        self.start = datetime.fromisoformat(start) if isinstance(start, str) else start
        digits = re.sub(r"\D", "", mechanism.serial or "")
        self.serial_number = digits[-10:].rjust(10, "0") if digits else None

    def interval_s(self) -> float:
        return self.line_interval_s

    def unit(self, k: int) -> bytes:
        snap = self.mechanism.snapshot()
        stamp = self.start + timedelta(seconds=math.floor(max(snap.t_s, 0.0)))
        reading = line_reading(snap, timestamp=stamp, serial_number=self.serial_number)
        return encode_line(reading, self.variant)

    def break_sync(self, unit: bytes) -> bytes:
        return unit[: -len(LINE_END)] if unit.endswith(LINE_END) else unit


class MasimoEmulator(SerialDeviceEmulator):
    """A Masimo oximeter's ASCII 1 output on a pty or TCP port; options are
    :class:`MasimoProtocol`'s."""

    handler_class = MasimoProtocol

    def __init__(
        self,
        mechanism: object,
        *,
        clock: Clock,
        faults: FaultPlan | None = None,
        pacing: Pacing | None = None,
        **handler_options: object,
    ) -> None:
        super().__init__(mechanism, clock=clock, faults=faults, pacing=pacing, **handler_options)
        handler = self.handler
        assert isinstance(handler, MonitorStreamHandler)
        handler.faults_source = lambda: self.server.faults
        handler.on_disconnect = self.server.disconnect
