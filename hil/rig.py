"""Standing a bench up and taking it down: emulators, drivers, identities.

A :class:`BenchRig` turns a :class:`~medtwin.hil.config.BenchConfig` into open drivers. For
devices whose port is ``emulated`` it first builds one
:class:`~medtwin.drivers.emulators.physical_bench.PhysicalBench` (the truth physics shared by all
emulated devices) and serves each protocol's emulator on a fresh pty (in-process,
sharing the run's clock); every other device is opened on its port string. Code under
test cannot tell the difference: only the port string differs.

The rig's state machine is explicit (labgrid's ``Status``): ``idle → starting → ready →
stopping → stopped`` (or ``failed``); calling a method in the wrong state raises an error
naming the method and the state. Taking the rig down always stops the pumps first.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import inspect
import logging
from typing import Any

from medtwin.drivers.base import (
    Balance,
    BenchIO,
    Device,
    DeviceIdentity,
    InfusionPump,
    PumpLimits,
    RetryPolicy,
)
from medtwin.drivers.clock import Clock
from medtwin.drivers.emulators.faults import FaultPlan, parse_fault
from medtwin.drivers.emulators.physical_bench import PhysicalBench
from medtwin.drivers.emulators.serial_server import Pacing
from medtwin.drivers.errors import ConfigurationError, DeviceError, MedtwinError
from medtwin.drivers.registry import EMULATOR_MECHANISM, driver_class, emulator_class
from medtwin.drivers.transport import line_settings
from medtwin.hil.config import BenchConfig, DeviceConfig
from medtwin.hil.twin import emulation_truth

__all__ = ["BenchRig", "RigStatus", "check_bench"]

log = logging.getLogger(__name__)

#: How long taking the bench down may wait for a pump to acknowledge "stop".
STOP_TIMEOUT_S = 5.0


class RigStatus(enum.StrEnum):
    IDLE = "idle"
    STARTING = "starting"
    READY = "ready"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"


_ALLOWED = {
    RigStatus.IDLE: {RigStatus.STARTING},
    RigStatus.STARTING: {RigStatus.READY, RigStatus.FAILED, RigStatus.STOPPING},
    RigStatus.READY: {RigStatus.STOPPING},
    RigStatus.FAILED: {RigStatus.STOPPING},
    RigStatus.STOPPING: {RigStatus.STOPPED},
    RigStatus.STOPPED: set(),
}


def _accepted(
    callable_: Any, options: dict[str, Any], *, var_keyword: bool = True
) -> dict[str, Any]:
    """The subset of ``options`` that ``callable_`` takes as keyword arguments.

    With ``var_keyword=False`` only parameters it names count (a ``**kwargs`` catch-all
    does not take options meant for the other end of the line).
    """
    params = inspect.signature(callable_).parameters
    if var_keyword and any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return dict(options)
    return {k: v for k, v in options.items() if k in params}


def check_bench(config: BenchConfig) -> None:
    """Everything about ``config`` that can be checked without opening a port: the
    emulated truth and its faults, each emulated device's fault plan and emulator
    options, each driver's options. Raises ConfigurationError naming file:field, the
    same error :meth:`BenchRig.start` would raise later."""
    if any(d.emulated for d in config.devices):
        _physical_truth(config)
    for cfg in config.devices:
        if cfg.emulated:
            _fault_plan(config, cfg)
            _emulator_options(config, cfg)
        _driver_kwargs(config, cfg)


def _physical_truth(config: BenchConfig) -> tuple[Any, list[Any]]:
    """The truth parameters of the emulated bench and its device faults (stall, drift)."""
    emulation = config.emulation
    try:
        faults = [parse_fault(spec) for spec in emulation.faults]
    except ConfigurationError as exc:
        raise ConfigurationError(str(exc), source=config.source, field="emulation.faults") from None
    misplaced = [f.spec for f in faults if f.kind not in ("stall", "drift")]
    if misplaced:
        raise ConfigurationError(
            f"reply faults {misplaced} belong to a device's faults list",
            source=config.source,
            field="emulation.faults",
        )
    return emulation_truth(config), faults


def _fault_plan(config: BenchConfig, cfg: DeviceConfig) -> FaultPlan:
    try:
        return FaultPlan.parse(cfg.faults, seed=config.emulation.seed)
    except ConfigurationError as exc:
        raise ConfigurationError(
            str(exc), source=config.source, field=f"devices.{cfg.name}.faults"
        ) from None


def _emulator_options(config: BenchConfig, cfg: DeviceConfig) -> dict[str, Any]:
    """Protocol options shared by both ends (an address, a device id) go to the emulator
    as well; ``emulator_options`` only to the emulator (and must all be accepted)."""
    cls = emulator_class(cfg.protocol)
    options = _accepted(cls, dict(cfg.options), var_keyword=False)
    unknown = sorted(set(cfg.emulator_options) - set(_accepted(cls, cfg.emulator_options)))
    if unknown:
        raise ConfigurationError(
            f"the {cfg.protocol!r} emulator does not take option(s) {', '.join(unknown)}",
            source=config.source,
            field=f"devices.{cfg.name}.emulator_options",
        )
    options.update(cfg.emulator_options)
    return options


def _driver_kwargs(config: BenchConfig, cfg: DeviceConfig) -> dict[str, Any]:
    """Keyword arguments of the device's driver (all but port, name and clock)."""
    cls = driver_class(cfg.protocol)
    kwargs: dict[str, Any] = dict(cfg.options)
    if cfg.baudrate is not None:
        kwargs["baudrate"] = cfg.baudrate
    retry = {k: v for k, v in cfg.retry.model_dump().items() if v is not None}
    if retry:
        # Start from the driver's own default policy, change what the bench file sets.
        default = getattr(cls, "DEFAULT_RETRY", None) or RetryPolicy()
        kwargs["retry"] = dataclasses.replace(default, **retry)
    if issubclass(cls, InfusionPump):
        limits = cfg.limits
        kwargs["limits"] = PumpLimits(
            min_rate_ml_h=limits.min_rate_ml_h,
            max_rate_ml_h=limits.max_rate_ml_h,
            min_diameter_mm=limits.min_diameter_mm,
            max_diameter_mm=limits.max_diameter_mm,
            max_volume_ml=limits.max_volume_ml,
        )
    accepted = _accepted(cls, {**kwargs, "name": cfg.name, "clock": None})
    unknown = sorted(set(cfg.options) - set(accepted))
    if unknown:
        raise ConfigurationError(
            f"protocol {cfg.protocol!r} does not take option(s) {', '.join(unknown)}",
            source=config.source,
            field=f"devices.{cfg.name}.options",
        )
    line = {k: v for k, v in accepted.items() if k in _LINE_OPTIONS}
    if line:
        try:
            line_settings(cfg.port, cfg.name, **line)
        except ConfigurationError as exc:
            where = "baudrate" if exc.field == "baudrate" else f"options.{exc.field}"
            raise ConfigurationError(
                str(exc), source=config.source, field=f"devices.{cfg.name}.{where}"
            ) from None
    return {k: v for k, v in accepted.items() if k not in ("name", "clock")}


#: Driver options that are serial line settings, checked before any port is opened.
_LINE_OPTIONS = ("baudrate", "bytesize", "parity", "stopbits", "handshake")


class BenchRig:
    """The devices of one bench, opened and ready.

    Parameters
    ----------
    config : BenchConfig
        The validated bench file.
    clock : Clock
        The run's clock; emulators and drivers share it.
    """

    def __init__(self, config: BenchConfig, *, clock: Clock) -> None:
        self.config = config
        self.clock = clock
        self.physical: PhysicalBench | None = None
        self.devices: dict[str, Device] = {}
        self.identities: dict[str, DeviceIdentity] = {}
        self.ports: dict[str, str] = {}
        self._emulators: list[Any] = []
        self._status = RigStatus.IDLE

    # -- state machine ------------------------------------------------------------------

    @property
    def status(self) -> RigStatus:
        return self._status

    def _transition(self, new: RigStatus) -> None:
        if new not in _ALLOWED[self._status]:
            raise DeviceError(f"bench {self.config.name!r} cannot go from {self._status} to {new}")
        self._status = new

    def require_ready(self, method: str) -> None:
        if self._status is not RigStatus.READY:
            raise DeviceError(
                f"{method}() needs the bench {self.config.name!r} ready, but it is "
                f"{self._status.value}; start() it first"
            )

    # -- devices by kind ------------------------------------------------------------------

    def _of_kind(self, kind: str) -> Device | None:
        for cfg in self.config.devices:
            if cfg.kind == kind:
                return self.devices.get(cfg.name)
        return None

    @property
    def pump(self) -> InfusionPump | None:
        device = self._of_kind("pump")
        return device if isinstance(device, InfusionPump) else None

    @property
    def balance(self) -> Balance | None:
        device = self._of_kind("balance")
        return device if isinstance(device, Balance) else None

    @property
    def bench_io(self) -> BenchIO | None:
        device = self._of_kind("bench-io")
        return device if isinstance(device, BenchIO) else None

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Start emulators, open every driver and ask each device who it is."""
        self._transition(RigStatus.STARTING)
        try:
            if any(d.emulated for d in self.config.devices):
                self._build_physical_bench()
            for cfg in self.config.devices:
                port = await self._port_for(cfg)
                device = self._driver(cfg, port)
                self.devices[cfg.name] = device
                await device.open()
                self.identities[cfg.name] = await device.identify()
        except BaseException:
            self._transition(RigStatus.FAILED)
            await self.stop()
            raise
        self._transition(RigStatus.READY)

    def _build_physical_bench(self) -> None:
        truth, faults = _physical_truth(self.config)
        self.physical = PhysicalBench(
            truth,
            clock=self.clock,
            seed=self.config.emulation.seed,
            device_faults=faults,
        )

    async def _port_for(self, cfg: DeviceConfig) -> str:
        if not cfg.emulated:
            self.ports[cfg.name] = cfg.port
            return cfg.port
        assert self.physical is not None
        mechanism = getattr(self.physical, EMULATOR_MECHANISM[cfg.protocol])
        plan = _fault_plan(self.config, cfg)
        pacing = Pacing(baud=cfg.baudrate) if cfg.pace and cfg.baudrate else None
        options = _emulator_options(self.config, cfg)
        emulator = emulator_class(cfg.protocol)(
            mechanism, clock=self.clock, faults=plan, pacing=pacing, **options
        )
        self._emulators.append(emulator)
        port = str(await emulator.start())
        self.ports[cfg.name] = port
        return port

    def _driver(self, cfg: DeviceConfig, port: str) -> Device:
        kwargs = _driver_kwargs(self.config, cfg)
        device: Device = driver_class(cfg.protocol)(port, name=cfg.name, clock=self.clock, **kwargs)
        return device

    async def stop_pumps(self) -> str | None:
        """Stop every pump (best effort, bounded): the first thing done on the way out.

        Returns None when there was no pump to stop, else a one-line account of what
        happened (recorded in the run's event log).
        """
        pump = self.pump
        if pump is None or pump.status.value != "open":
            return None
        try:
            async with asyncio.timeout(STOP_TIMEOUT_S):
                await pump.stop()
        except (MedtwinError, TimeoutError) as exc:
            log.error("could not stop pump %s: %s", pump.name, exc)
            return f"could not stop {pump.name}: {exc}"
        return f"{pump.name} stopped"

    async def stop(self) -> None:
        """Stop pumps, close drivers, stop emulators. Safe to call more than once."""
        if self._status in (RigStatus.STOPPING, RigStatus.STOPPED):
            return
        if self._status is RigStatus.IDLE:
            self._status = RigStatus.STOPPED
            return
        self._transition(RigStatus.STOPPING)
        try:
            await self.stop_pumps()
        finally:
            for device in self.devices.values():
                try:
                    await device.close()
                except Exception as exc:
                    log.error("closing %s failed: %s", device.name, exc)
            for emulator in reversed(self._emulators):
                try:
                    await emulator.stop()
                except Exception as exc:
                    log.error("stopping emulator failed: %s", exc)
            self._emulators.clear()
            self._status = RigStatus.STOPPED
