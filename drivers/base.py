"""Async device interfaces: one small class per device class, many protocol backends.

The pattern is python-can's ``BusABC``: the public methods here do the common work once
(state checks, limit checks *before anything is sent*, timeouts, bounded retries,
reconnecting a port that vanished) and each protocol backend overrides only the
underscore methods that move bytes. A backend never sees a command outside the
device's declared limits, and code under test cannot tell an emulated device from a
real one: only the port string differs.

Readings are frozen, timestamped dataclasses. ``t_s`` is *scenario time* from the
device's :class:`~medtwin.drivers.clock.Clock` (wall or virtual), taken when the reply arrived.

Backends implement:

1. ``_open()`` / ``_close()``: acquire and release the transport;
2. ``_identify()`` → :class:`DeviceIdentity`;
3. the class-specific operations listed on each interface (``_set_rate`` ...).

They raise :class:`~medtwin.drivers.errors.ProtocolError` for malformed frames,
:class:`~medtwin.drivers.errors.DeviceTimeout` for missing replies,
:class:`~medtwin.drivers.errors.PortError` for a lost port and
:class:`~medtwin.drivers.errors.CommandRefused` for device-side error replies.
"""

from __future__ import annotations

import abc
import asyncio
import enum
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar, Self, TypeVar

from medtwin.drivers.clock import Clock, WallClock
from medtwin.drivers.errors import (
    DeviceError,
    DeviceTimeout,
    LimitError,
    PortError,
    ProtocolError,
)

__all__ = [
    "Balance",
    "BalanceReading",
    "BenchIO",
    "BenchIOStatus",
    "Device",
    "DeviceIdentity",
    "DeviceStatus",
    "InfusionPump",
    "PumpAlarm",
    "PumpLimits",
    "PumpState",
    "PumpStatus",
    "RegisterDevice",
    "RetryPolicy",
]

T = TypeVar("T")


# --------------------------------------------------------------------------- readings


class PumpState(enum.StrEnum):
    """Operating state of an infusion pump, common to every protocol."""

    STOPPED = "stopped"
    INFUSING = "infusing"
    WITHDRAWING = "withdrawing"
    PAUSED = "paused"
    PURGING = "purging"
    WAITING = "waiting"  # waiting for a trigger / timed pause
    ALARM = "alarm"


class PumpAlarm(enum.StrEnum):
    """Alarms an infusion pump reports. Bit numbers follow the reference Modbus map."""

    OCCLUSION = "occlusion"  # bit 0
    END_OF_INFUSION = "end_of_infusion"  # bit 1
    NEAR_EMPTY = "near_empty"  # bit 2
    MOTOR_STALL = "motor_stall"  # bit 3
    COMMUNICATION_TIMEOUT = "communication_timeout"  # bit 4
    POWER_RESET = "power_reset"  # NE-1000 A?R
    PROGRAM_ERROR = "program_error"  # NE-1000 A?E
    OUT_OF_RANGE = "out_of_range"  # NE-1000 A?O


@dataclass(frozen=True, slots=True)
class DeviceIdentity:
    """What a device says about itself (model, serial, firmware) and how we reach it."""

    protocol: str
    model: str
    serial: str = ""
    firmware: str = ""
    address: str = ""

    @property
    def key(self) -> str:
        """Stable identity used to file calibrations: ``model/serial``."""
        return f"{self.model}/{self.serial}" if self.serial else self.model


@dataclass(frozen=True, slots=True)
class PumpStatus:
    """One status reading of an infusion pump.

    Fields a protocol cannot report are ``None``; volumes are what the pump itself counts
    (steps × its configured syringe), not what reached the patient.
    """

    t_s: float
    state: PumpState
    alarms: frozenset[PumpAlarm] = frozenset()
    rate_ml_h: float | None = None
    infused_ml: float | None = None
    withdrawn_ml: float | None = None
    pressure_mmhg: float | None = None

    @property
    def running(self) -> bool:
        return self.state in (PumpState.INFUSING, PumpState.WITHDRAWING, PumpState.PURGING)


@dataclass(frozen=True, slots=True)
class BalanceReading:
    """One balance reading. ``mass_g`` is the displayed (net) value in grams."""

    t_s: float
    mass_g: float
    stable: bool
    unit: str = "g"


@dataclass(frozen=True, slots=True)
class BenchIOStatus:
    """State of the bench I/O module: the pinch valve and the inline pressure transducer."""

    t_s: float
    occluded: bool
    pressure_mmhg: float


@dataclass(frozen=True, slots=True)
class PumpLimits:
    """Declared limits of a pump (from the bench file or the device); checked before sending.

    ``min_rate_ml_h``/``max_rate_ml_h`` bound the rate setpoint; the diameter range bounds
    the syringe the pump accepts; ``max_volume_ml`` bounds a volume target.
    """

    min_rate_ml_h: float = 0.0
    max_rate_ml_h: float = math.inf
    min_diameter_mm: float = 0.0
    max_diameter_mm: float = math.inf
    max_volume_ml: float = math.inf

    def check_rate(self, rate_ml_h: float, *, device: str) -> None:
        _check_range(
            rate_ml_h,
            self.min_rate_ml_h,
            self.max_rate_ml_h,
            what="rate",
            unit="mL/h",
            bounds="the declared limits ",
            device=device,
        )

    def check_diameter(self, diameter_mm: float, *, device: str) -> None:
        _check_range(
            diameter_mm,
            self.min_diameter_mm,
            self.max_diameter_mm,
            what="syringe diameter",
            unit="mm",
            bounds="the declared range ",
            device=device,
        )

    def check_volume(self, volume_ml: float, *, device: str) -> None:
        _check_range(
            volume_ml, 0.0, self.max_volume_ml, what="volume", unit="mL", bounds="", device=device
        )


def _check_range(
    value: float, low: float, high: float, *, what: str, unit: str, bounds: str, device: str
) -> None:
    """LimitError unless ``low <= value <= high`` (NaN and infinities are outside)."""
    if not math.isfinite(value) or not (low <= value <= high):
        raise LimitError(
            f"{what} {value:g} {unit} is outside {bounds}[{low:g}, {high:g}] {unit}; "
            "nothing was sent",
            device=device,
        )


# --------------------------------------------------------------------------- lifecycle


class DeviceStatus(enum.StrEnum):
    """Explicit lifecycle of a driver (labgrid's ``Status``)."""

    CLOSED = "closed"
    OPEN = "open"
    LOST = "lost"  # the port vanished and reconnecting failed; ``open()`` may be retried


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Timeouts and bounded retries applied by :meth:`Device._call` to every operation.

    ``timeout_s`` bounds one attempt; a timed-out or garbled attempt is retried up to
    ``retries`` more times; a lost port is reopened up to ``reconnects`` times, waiting
    ``backoff_s`` × 2^k between tries (capped at ``backoff_max_s``).
    """

    timeout_s: float = 1.0
    retries: int = 2
    reconnects: int = 3
    backoff_s: float = 0.05
    backoff_max_s: float = 2.0


class _AttemptTimer:
    """One re-armable event-loop timer that bounds a device's attempts, one at a time.

    ``asyncio.timeout()`` schedules a timer handle per attempt and cancels it afterwards,
    about 7 µs a call on the 2-core CI machine class: 5-10 % of an NE-1000 round trip on
    a pty, measured as the gap between the driver with and without it against the same
    emulator (``benchmarks/bench_ne1000.py``). Here an attempt only records its deadline.
    The handle, once armed, stays armed: when it fires it re-arms itself for the deadline
    of the attempt now running, disarms if none is, and cancels the task if that
    attempt's deadline has passed. So every attempt is still cancelled at its own
    deadline, and :meth:`stop` reports a timeout exactly when ``asyncio.timeout`` would
    raise one (the cancellation was ours and nobody else's).
    """

    __slots__ = (
        "_cancelling",
        "_deadline",
        "_expired",
        "_fires_at",
        "_generation",
        "_handle",
        "_loop",
        "_task",
    )

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._generation = 0
        self._fires_at = 0.0
        self._task: asyncio.Task[Any] | None = None
        self._deadline = 0.0
        self._cancelling = 0
        self._expired = False

    @property
    def busy(self) -> bool:
        """Whether an attempt is running under this timer."""
        return self._task is not None

    def start(self, task: asyncio.Task[Any], timeout_s: float) -> None:
        """Bound the attempt ``task`` is about to make to ``timeout_s`` from now."""
        loop = task.get_loop()
        deadline = loop.time() + timeout_s
        self._task = task
        self._deadline = deadline
        self._cancelling = task.cancelling()
        self._expired = False
        if self._handle is None or loop is not self._loop or self._fires_at > deadline:
            self._arm(loop, deadline)

    def stop(self, task: asyncio.Task[Any]) -> bool:
        """End the attempt; True if the timer cancelled it and no one else did."""
        self._task = None
        if not self._expired:
            return False
        self._expired = False
        return task.uncancel() <= self._cancelling

    def disarm(self) -> None:
        """Drop the pending handle unless an attempt is running (the device closed)."""
        if self._task is not None:
            return
        handle, self._handle = self._handle, None
        self._generation += 1
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if handle is not None and running is self._loop:
            handle.cancel()

    def _arm(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        # A handle of another loop is left to fire there (cancelling it from this thread
        # would not be safe); the generation number makes it a no-op.
        if self._handle is not None and loop is self._loop:
            self._handle.cancel()
        self._generation += 1
        self._loop, self._fires_at = loop, when
        self._handle = loop.call_at(when, self._fire, self._generation)

    def _fire(self, generation: int) -> None:
        loop = self._loop
        if generation != self._generation or loop is None:
            return
        self._handle = None
        task = self._task
        if task is None:
            return  # idle: the next attempt re-arms
        if self._deadline > self._fires_at:
            self._arm(loop, self._deadline)  # a later attempt moved the deadline on
            return
        self._expired = True
        task.cancel()


class Device(abc.ABC):
    """Base of every driver: lifecycle, identity and the guarded call path.

    Constructors take the port positionally and everything else keyword-only
    (``Pump("/dev/ttyUSB0", name="pump", clock=clock)``).
    """

    #: Protocol name as used in the registry and bench files.
    protocol: ClassVar[str] = ""

    def __init__(
        self,
        port: str,
        *,
        name: str | None = None,
        clock: Clock | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.port = port
        self.name = name or f"{self.protocol or type(self).__name__}@{port}"
        self.clock: Clock = clock or WallClock()
        self.retry = retry or RetryPolicy()
        self._status = DeviceStatus.CLOSED
        self._lock = asyncio.Lock()
        self._timer = _AttemptTimer()

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def status(self) -> DeviceStatus:
        return self._status

    async def open(self) -> None:
        """Open the port. Raises :class:`PortError` naming the device and the port."""
        if self._status is DeviceStatus.OPEN:
            return
        await self._open()
        self._status = DeviceStatus.OPEN

    async def close(self) -> None:
        """Close the port; safe to call twice and after the port vanished."""
        if self._status is DeviceStatus.CLOSED:
            return
        try:
            await self._close()
        finally:
            self._status = DeviceStatus.CLOSED
            self._timer.disarm()

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def identify(self) -> DeviceIdentity:
        """Ask the device who it is (model, serial, firmware)."""
        return await self._call("identify", self._identify)

    # -- the guarded call path -----------------------------------------------------------

    def _require_open(self, method: str) -> None:
        if self._status is not DeviceStatus.OPEN:
            raise DeviceError(
                f"{method}() needs the device open, but it is {self._status.value}; "
                "call open() (or use 'async with') first",
                device=self.name,
            )

    async def _call(self, method: str, op: Callable[[], Awaitable[T]]) -> T:
        """Run one operation with the timeout, retry and reconnect policy.

        Calls are serialised per device: protocols here are strictly request/reply.
        """
        self._require_open(method)
        async with self._lock:
            return await self._retrying(method, op)

    async def _retrying(
        self, method: str, op: Callable[[], Awaitable[T]], *, reconnect: bool = True
    ) -> T:
        """:meth:`_call` without the open check and the lock, for a backend's ``_open``
        (a handshake that must survive a garbled first reply).

        Each attempt is bounded by ``retry.timeout_s``; a timed-out or garbled attempt is
        retried up to ``retry.retries`` more times after :meth:`_resync`. A lost port is
        reopened up to ``retry.reconnects`` times with a backoff when ``reconnect`` is true
        (inside ``_open`` it must not be: it would reopen itself), else PortError is raised.
        """
        policy = self.retry
        attempts_left = policy.retries
        reconnects_left = policy.reconnects if reconnect else 0
        delay = policy.backoff_s
        while True:
            try:
                return await self._within(op)
            except TimeoutError as exc:
                if attempts_left <= 0:
                    raise DeviceTimeout(
                        f"{method}(): no reply within {policy.timeout_s:g} s "
                        f"after {policy.retries + 1} attempts on {self.port}",
                        device=self.name,
                    ) from exc
                attempts_left -= 1
                await self._resync()
            except ProtocolError:
                if attempts_left <= 0:
                    raise
                attempts_left -= 1
                await self._resync()
            except PortError:
                if reconnects_left <= 0:
                    if reconnect:
                        self._status = DeviceStatus.LOST
                    raise
                reconnects_left -= 1
                await asyncio.sleep(delay)
                delay = min(delay * 2, policy.backoff_max_s)
                try:
                    await self._close()
                    await self._open()
                except PortError:
                    continue

    async def _within(self, op: Callable[[], Awaitable[T]], *, what: str = "no reply") -> T:
        """One attempt of ``op``, bounded by ``retry.timeout_s``: no lock, no retry.

        Raises :class:`DeviceTimeout` ("``what`` within ``t`` s on ``port``") when the
        time runs out; everything else ``op`` raises passes through. The call path, the
        handshakes in ``_open`` and a backend's own bounded waits (a stream read, a
        heartbeat) all go through here: a device has one timeout mechanism.
        """
        timer = self._timer
        task = asyncio.current_task()
        if task is None or timer.busy:
            # Attempts that overlap (a second task, or one nested in ``op``) get a timer
            # of their own: the shared one bounds one attempt at a time.
            bound = asyncio.timeout(self.retry.timeout_s)
            try:
                async with bound:
                    return await op()
            except TimeoutError as exc:
                if bound.expired():
                    raise self._timed_out(what) from exc
                raise
        timer.start(task, self.retry.timeout_s)
        try:
            result = await op()
        except asyncio.CancelledError:
            if timer.stop(task):
                raise self._timed_out(what) from None
            raise
        except BaseException:
            timer.stop(task)
            raise
        timer.stop(task)
        return result

    def _timed_out(self, what: str) -> DeviceTimeout:
        return DeviceTimeout(
            f"{what} within {self.retry.timeout_s:g} s on {self.port}", device=self.name
        )

    async def _resync(self) -> None:  # noqa: B027 - optional hook, empty by design
        """Drop partial input after a timeout or a garbled frame (override per protocol)."""

    # -- backend hooks -------------------------------------------------------------------

    @abc.abstractmethod
    async def _open(self) -> None: ...

    @abc.abstractmethod
    async def _close(self) -> None: ...

    @abc.abstractmethod
    async def _identify(self) -> DeviceIdentity: ...


class InfusionPump(Device):
    """An infusion pump (syringe or volumetric).

    Backends implement ``_set_diameter``, ``_read_diameter``, ``_set_rate``,
    ``_set_volume_target``, ``_start``, ``_stop``, ``_clear_alarms``, ``_clear_volume``
    and ``_status``.
    """

    def __init__(
        self,
        port: str,
        *,
        limits: PumpLimits | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(port, **kwargs)
        self.limits = limits or PumpLimits()

    async def set_syringe_diameter(self, diameter_mm: float) -> None:
        """Tell the pump the syringe's inner diameter (mm); checked against the limits."""
        self.limits.check_diameter(diameter_mm, device=self.name)
        await self._call("set_syringe_diameter", lambda: self._set_diameter(diameter_mm))

    async def read_syringe_diameter(self) -> float:
        """The syringe inner diameter (mm) the pump is programmed with, as it reports it.

        What a QA check compares with the syringe on the bench: a pump set up for the
        wrong syringe delivers wrong volumes while believing it is right.
        """
        return await self._call("read_syringe_diameter", self._read_diameter)

    async def set_rate(self, rate_ml_h: float) -> None:
        """Set the infusion rate (mL/h); refused before sending if outside the limits."""
        self.limits.check_rate(rate_ml_h, device=self.name)
        await self._call("set_rate", lambda: self._set_rate(rate_ml_h))

    async def set_volume_target(self, volume_ml: float | None) -> None:
        """Volume after which the pump stops by itself (``None`` or 0: no target)."""
        if volume_ml is not None:
            self.limits.check_volume(volume_ml, device=self.name)
        await self._call("set_volume_target", lambda: self._set_volume_target(volume_ml))

    async def start(self) -> None:
        await self._call("start", self._start)

    async def stop(self) -> None:
        await self._call("stop", self._stop)

    async def clear_alarms(self) -> None:
        await self._call("clear_alarms", self._clear_alarms)

    async def clear_volume(self) -> None:
        """Reset the pump's dispensed-volume counters."""
        await self._call("clear_volume", self._clear_volume)

    async def read_status(self) -> PumpStatus:
        return await self._call("read_status", self._status_reading)

    @abc.abstractmethod
    async def _set_diameter(self, diameter_mm: float) -> None: ...

    @abc.abstractmethod
    async def _read_diameter(self) -> float: ...

    @abc.abstractmethod
    async def _set_rate(self, rate_ml_h: float) -> None: ...

    @abc.abstractmethod
    async def _set_volume_target(self, volume_ml: float | None) -> None: ...

    @abc.abstractmethod
    async def _start(self) -> None: ...

    @abc.abstractmethod
    async def _stop(self) -> None: ...

    @abc.abstractmethod
    async def _clear_alarms(self) -> None: ...

    @abc.abstractmethod
    async def _clear_volume(self) -> None: ...

    @abc.abstractmethod
    async def _status_reading(self) -> PumpStatus: ...


class Balance(Device):
    """A laboratory balance used gravimetrically.

    Backends implement ``_read(stable)``, ``_tare`` and ``_zero``.
    """

    async def read(self, *, stable: bool = False) -> BalanceReading:
        """The displayed net mass. ``stable=True`` waits for a stable value (MT-SICS ``S``),
        otherwise the value is returned at once with its stability flag (``SI``)."""
        return await self._call("read", lambda: self._read(stable))

    async def tare(self) -> float:
        """Tare; returns the tare value in g."""
        return await self._call("tare", self._tare)

    async def zero(self) -> None:
        await self._call("zero", self._zero)

    @abc.abstractmethod
    async def _read(self, stable: bool) -> BalanceReading: ...

    @abc.abstractmethod
    async def _tare(self) -> float: ...

    @abc.abstractmethod
    async def _zero(self) -> None: ...


class RegisterDevice(Device):
    """A device described by a register map (Modbus): values by name, in engineering units.

    Backends implement ``_read_values(names)`` and ``_write_value(name, value)``; the
    register map gives types, scaling, access and min/max, checked before writing.
    """

    async def read_values(self, *names: str) -> dict[str, float | int | bool]:
        return await self._call("read_values", lambda: self._read_values(names))

    async def write_value(self, name: str, value: float | int | bool) -> None:
        await self._call("write_value", lambda: self._write_value(name, value))

    @abc.abstractmethod
    async def _read_values(self, names: tuple[str, ...]) -> dict[str, float | int | bool]: ...

    @abc.abstractmethod
    async def _write_value(self, name: str, value: float | int | bool) -> None: ...


class BenchIO(RegisterDevice):
    """The bench I/O module: a pinch valve that occludes the line, an inline transducer."""

    async def set_occluded(self, occluded: bool) -> None:
        await self.write_value("pinch_valve", bool(occluded))

    async def read_status(self) -> BenchIOStatus:
        values = await self.read_values("pinch_valve", "line_pressure_mmhg")
        return BenchIOStatus(
            t_s=self.clock.now(),
            occluded=bool(values["pinch_valve"]),
            pressure_mmhg=float(values["line_pressure_mmhg"]),
        )
