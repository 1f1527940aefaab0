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
import asyncio
import contextlib
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

from medtwin.drivers.base import Device, RetryPolicy
from medtwin.drivers.clock import Clock
from medtwin.drivers.errors import DeviceTimeout, LimitError, PortError
from medtwin.drivers.transport import ByteTransport, open_transport

__all__ = [
    "OximeterReading",
    "PatientSimulator",
    "PulseOximeter",
    "SimulatorLimits",
    "StreamingOximeter",
]

log = logging.getLogger(__name__)


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


#: Retry policy of the streaming oximeter drivers: one attempt of :meth:`PulseOximeter.read`
#: must outlast the slowest stream (Masimo and Nonin #8 send once a second), and a
#: timed-out read is not worth repeating on a device that speaks unasked.
STREAMING_RETRY = RetryPolicy(timeout_s=5.0, retries=0, reconnects=10)


class StreamingOximeter(PulseOximeter):
    """Base of the oximeter drivers whose device streams unsolicited (Masimo, Nonin).

    A background task reads whatever arrives and feeds the protocol's stream decoder
    (:meth:`_decode`, never raising); the newest complete reading is kept with its
    arrival time. :meth:`PulseOximeter.read` returns it when it is younger than
    ``timeout_s`` (wall seconds), else waits up to ``timeout_s`` for the next one and
    raises :class:`~medtwin.drivers.errors.DeviceTimeout`: a device that stopped
    streaming times out instead of repeating its last value. The reader never blocks the
    event loop (it awaits the transport) and never raises into the run: garbage, lost
    bytes and bad checksums end in :attr:`link_errors`. A port that vanishes is reopened
    with the device's :class:`~medtwin.drivers.base.RetryPolicy` backoff (``reconnects``
    failed tries in a row, then the reader gives up and the next :meth:`read` raises the
    :class:`~medtwin.drivers.errors.PortError`; ``open()`` again to start over).

    Subclasses implement :meth:`_decode`, :meth:`_reset_decoder` and :meth:`_counters`
    and may override :meth:`_handshake` (run after every (re)open, before reading).
    """

    #: Bytes the reader asks the transport for at most per wake-up.
    read_chunk = 4096

    def __init__(
        self,
        port: str,
        *,
        baudrate: int = 9600,
        bytesize: int = 8,
        parity: str = "N",
        stopbits: float = 1,
        handshake: str = "none",
        name: str | None = None,
        clock: Clock | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        super().__init__(port, name=name, clock=clock, retry=retry or STREAMING_RETRY)
        self._transport: ByteTransport = open_transport(
            port,
            device=self.name,
            baudrate=baudrate,
            bytesize=bytesize,
            parity=parity,
            stopbits=stopbits,
            handshake=handshake,
        )
        self._reader: asyncio.Task[None] | None = None
        self._latest: OximeterReading | None = None
        self._latest_wall_s = -math.inf
        self._arrived = asyncio.Event()
        self._gave_up: PortError | None = None
        #: Readings decoded since the driver was made.
        self.readings = 0
        #: Times the reader reopened a vanished port.
        self.reconnects = 0

    # -- the protocol's part -------------------------------------------------------------

    @abc.abstractmethod
    def _decode(self, data: bytes) -> list[OximeterReading]:
        """The readings ``data`` completes (decoder state kept between calls; never raises)."""

    @abc.abstractmethod
    def _reset_decoder(self) -> None:
        """Forget a partial frame (the port was reopened)."""

    @abc.abstractmethod
    def _counters(self) -> dict[str, int]:
        """The decoder's error counters, for :attr:`link_errors`."""

    async def _handshake(self) -> None:
        """Run after every (re)open, before the reader starts (a format-select command)."""

    # -- PulseOximeter -----------------------------------------------------------------------

    @property
    def link_errors(self) -> dict[str, int]:
        return {**self._counters(), "reconnects": self.reconnects}

    @property
    def latest(self) -> OximeterReading | None:
        """The newest reading, however old (None before the first)."""
        return self._latest

    async def _open(self) -> None:
        self._gave_up = None
        await self._transport.open()
        try:
            await self._handshake()
        except BaseException:
            await self._transport.close()
            raise
        self._reader = asyncio.get_running_loop().create_task(
            self._read_loop(), name=f"{self.name}-reader"
        )

    async def _close(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None and reader is not asyncio.current_task():
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        await self._transport.close()
        self._reset_decoder()

    async def _read(self, timeout_s: float) -> OximeterReading:
        if not (math.isfinite(timeout_s) and timeout_s >= 0):
            raise ValueError(f"{self.name}: read timeout_s={timeout_s!r} must be >= 0 s")
        if self._gave_up is not None:
            raise self._gave_up
        latest = self._latest
        if latest is not None and time.monotonic() - self._latest_wall_s <= timeout_s:
            return latest
        arrived = self._arrived
        try:
            async with asyncio.timeout(timeout_s):
                await arrived.wait()
        except TimeoutError:
            if self._gave_up is not None:
                raise self._gave_up from None
            raise DeviceTimeout(
                f"no reading within {timeout_s:g} s on {self.port} (device not streaming, "
                f"wrong data format or baud rate, or cable unplugged; link errors "
                f"{self.link_errors})",
                device=self.name,
            ) from None
        if self._gave_up is not None:
            raise self._gave_up
        assert self._latest is not None
        return self._latest

    # -- the reader --------------------------------------------------------------------------

    def _publish(self, readings: list[OximeterReading]) -> None:
        if not readings:
            return
        self.readings += len(readings)
        self._latest = readings[-1]
        self._latest_wall_s = time.monotonic()
        arrived, self._arrived = self._arrived, asyncio.Event()
        arrived.set()

    async def _read_loop(self) -> None:
        while True:
            try:
                data = await self._transport.read_some(self.read_chunk)
            except PortError as exc:
                if not await self._reconnect(exc):
                    return
                continue
            self._publish(self._decode(data))

    async def _reconnect(self, exc: PortError) -> bool:
        """Reopen a vanished port with the retry policy's backoff; False if it gave up."""
        log.info("%s: %s; reconnecting", self.name, exc)
        policy = self.retry
        delay = policy.backoff_s
        for _ in range(max(1, policy.reconnects)):
            await asyncio.sleep(delay)
            delay = min(delay * 2, policy.backoff_max_s)
            with contextlib.suppress(PortError):
                await self._transport.close()
            self._reset_decoder()
            try:
                await self._transport.open()
                await self._handshake()
            except (PortError, DeviceTimeout) as error:
                exc = error if isinstance(error, PortError) else exc
                continue
            self.reconnects += 1
            return True
        self._gave_up = exc
        arrived, self._arrived = self._arrived, asyncio.Event()
        arrived.set()
        return False
