"""Async interfaces of the patient-side device classes: pulse oximeters and patient simulators.

The same pattern as :mod:`medtwin.drivers.base` (python-can's ``BusABC``): the public
methods do the common work once (state checks, limit checks *before anything is sent*,
timeouts, retries) and each protocol backend overrides only the underscore methods.

* :class:`PulseOximeter` — a device that *reports* SpO2, pulse rate and perfusion (Masimo
  ASCII 1, Nonin #2/#7/#8; later a multiparameter monitor's SpO2 module). Most oximeters
  stream unsolicited; the driver decodes the stream in the background (garbage, lost bytes
  and bad checksums are counted in :attr:`PulseOximeter.link_errors`, never raised to the
  run) and :meth:`PulseOximeter.read` returns the newest complete reading.
* :class:`PatientSimulator` — a device that *sets* the patient the monitors see (Fluke
  ProSim 8). Every setter checks the simulator's declared :class:`SimulatorLimits` before
  a byte is sent.

Values an oximeter shows as invalid (dashes, Nonin's 127/511) are ``None``.
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass, field
from typing import Any

from medtwin.drivers.base import Device
from medtwin.drivers.errors import LimitError

__all__ = [
    "OximeterReading",
    "PatientSimulator",
    "PulseOximeter",
    "SimulatorLimits",
]


@dataclass(frozen=True)
class OximeterReading:
    """One reading as the oximeter reported it.

    Attributes
    ----------
    t_s : float
        Scenario time (s) when the reading arrived (the device's clock).
    spo2_percent, pulse_rate_bpm, pi_percent : float or None
        Displayed values; None when the device marks them invalid.
    sensor_off, searching, low_perfusion, artifact : bool
        The device's status flags, mapped from its protocol's bits.
    alarms : frozenset of str
        Active alarm conditions the device reports, by the names of
        :data:`medtwin.device_models.monitor.alarms.CONDITIONS` where the protocol says
        which (``"spo2_low"``, ``"hr_high"`` …).
    extras : dict
        Further values the protocol carries (Nonin's 8-beat ``E-`` values, Masimo's
        ``SPCO``), by name with its unit (``"spo2_extended_percent"``).
    """

    t_s: float
    spo2_percent: float | None
    pulse_rate_bpm: float | None
    pi_percent: float | None = None
    sensor_off: bool = False
    searching: bool = False
    low_perfusion: bool = False
    artifact: bool = False
    alarms: frozenset[str] = frozenset()
    extras: dict[str, float | None] = field(default_factory=dict)


class PulseOximeter(Device):
    """A pulse oximeter (or a monitor's SpO2 and pulse-rate module).

    Backends implement ``_read(timeout_s)`` (the newest complete reading, waiting up to
    ``timeout_s`` for the first one) and keep :attr:`link_errors` up to date.
    """

    @property
    def link_errors(self) -> dict[str, int]:
        """Counters of what the stream decoder dropped (``bad_checksums``, ``lost_sync``,
        ``dropped_bytes`` …): the link's health, reported with the run, never raised."""
        return {}

    async def read(self, *, timeout_s: float = 3.0) -> OximeterReading:
        """The newest complete reading. Raises :class:`DeviceTimeout` when none arrived
        within ``timeout_s`` (an unplugged cable, a device that stopped streaming)."""
        return await self._call("read", lambda: self._read(timeout_s))

    @abc.abstractmethod
    async def _read(self, timeout_s: float) -> OximeterReading: ...


@dataclass(frozen=True)
class SimulatorLimits:
    """The ranges a patient simulator may be set to (each ``(low, high)``), checked before
    sending. Defaults are the ProSim 8 ranges (docs/protocols/prosim8.md); a bench may
    narrow them to what its monitors under test accept."""

    heart_rate_bpm: tuple[float, float] = (10.0, 360.0)
    spo2_percent: tuple[float, float] = (0.0, 100.0)
    resp_rate_min: tuple[float, float] = (10.0, 150.0)
    nibp_mmhg: tuple[float, float] = (0.0, 400.0)
    ibp_mmhg: tuple[float, float] = (-10.0, 300.0)

    def check(self, what: str, value: float, *, device: str) -> None:
        """Raise :class:`LimitError` naming the device when ``value`` is outside ``what``'s
        range (or not a finite number)."""
        low, high = getattr(self, what)
        if not (math.isfinite(value) and low <= value <= high):
            raise LimitError(
                f"{device}: {what} = {value:g} is outside the simulator's limits "
                f"[{low:g}, {high:g}]; nothing was sent"
            )


class PatientSimulator(Device):
    """A vital-signs simulator that sets the patient the monitors on the bench observe.

    Backends implement the underscore setters; each public setter checks
    :attr:`limits` first, so a backend never sees a value outside them.
    """

    def __init__(self, port: str, *, limits: SimulatorLimits | None = None, **kwargs: Any) -> None:
        super().__init__(port, **kwargs)
        self.limits = limits or SimulatorLimits()

    async def set_heart_rate(self, bpm: float) -> None:
        self.limits.check("heart_rate_bpm", bpm, device=self.name)
        await self._call("set_heart_rate", lambda: self._set_heart_rate(bpm))

    async def set_spo2(self, percent: float) -> None:
        self.limits.check("spo2_percent", percent, device=self.name)
        await self._call("set_spo2", lambda: self._set_spo2(percent))

    async def set_resp_rate(self, per_min: float) -> None:
        self.limits.check("resp_rate_min", per_min, device=self.name)
        await self._call("set_resp_rate", lambda: self._set_resp_rate(per_min))

    async def set_nibp(self, systolic: float, diastolic: float) -> None:
        self.limits.check("nibp_mmhg", systolic, device=self.name)
        self.limits.check("nibp_mmhg", diastolic, device=self.name)
        if diastolic > systolic:
            raise LimitError(
                f"{self.name}: NIBP diastolic {diastolic:g} mmHg is above systolic "
                f"{systolic:g} mmHg; nothing was sent"
            )
        await self._call("set_nibp", lambda: self._set_nibp(systolic, diastolic))

    @abc.abstractmethod
    async def _set_heart_rate(self, bpm: float) -> None: ...

    @abc.abstractmethod
    async def _set_spo2(self, percent: float) -> None: ...

    @abc.abstractmethod
    async def _set_resp_rate(self, per_min: float) -> None: ...

    @abc.abstractmethod
    async def _set_nibp(self, systolic: float, diastolic: float) -> None: ...
