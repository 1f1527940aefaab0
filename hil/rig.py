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
from medtwin.drivers.protocol import ProtocolOptions
from medtwin.drivers.registry import descriptor, driver_class, emulator_class
from medtwin.drivers.transport import LINE_SETTINGS, SerialLine, line_for
from medtwin.drivers.vital_signs import PatientSimulator, PulseOximeter
from medtwin.hil.config import BenchConfig, DeviceConfig
from medtwin.hil.monitor_twin import truth_params
from medtwin.hil.twin import emulation_truth
from pydantic import ValidationError

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


def check_bench(config: BenchConfig) -> None:
    """Everything about ``config`` that can be checked without opening a port: the
    emulated truth and its faults, each emulated device's fault plan and emulator
    options, each device's line settings and driver options (against its protocol's
    descriptor). Raises ConfigurationError naming file:field, the same error
    :meth:`BenchRig.start` would raise later."""
    if any(d.emulated for d in config.devices):
        _physical_truth(config)
    for cfg in config.devices:
        if cfg.emulated:
            _fault_plan(config, cfg)
            _emulator_options(config, cfg)
            if cfg.kind == "oximeter":
                truth_params(config, cfg)
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


def _options(
    config: BenchConfig,
    cfg: DeviceConfig,
    model: type[ProtocolOptions],
    given: dict[str, Any],
    where: str,
    refusal: str,
) -> dict[str, Any]:
    """``given`` validated by the options ``model``: the values the bench file set (unset
    ones keep the constructor's default). Errors name ``devices.<name>.<where>``."""
    field = f"devices.{cfg.name}.{where}"
    unknown = sorted(set(given) - set(model.model_fields))
    if unknown:
        misplaced = [name for name in unknown if name in LINE_SETTINGS]
        hint = (
            f"; {misplaced[0]} is a line setting: put it in the device's line table "
            f"(line = {{ {misplaced[0]} = ... }})"
            if misplaced
            else ""
        )
        raise ConfigurationError(
            f"{refusal} does not take option(s) {', '.join(unknown)}{hint}",
            source=config.source,
            field=field,
        )
    try:
        validated = model.model_validate(given)
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = ".".join(str(part) for part in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        raise ConfigurationError(
            f"{message} (got {error.get('input')!r})",
            source=config.source,
            field=f"{field}.{loc}" if loc else field,
        ) from None
    return validated.model_dump(exclude_unset=True)


def _emulator_options(config: BenchConfig, cfg: DeviceConfig) -> dict[str, Any]:
    """Options both ends take (an address, a device id) given in ``options`` go to the
    emulator as well; ``emulator_options`` only to the emulator."""
    protocol = descriptor(cfg.protocol)
    refusal = f"the {cfg.protocol!r} emulator"
    own = _options(
        config, cfg, protocol.emulator_options, cfg.emulator_options, "emulator_options", refusal
    )
    shared = {k: v for k, v in cfg.options.items() if k in protocol.shared_options}
    # The emulator's model checks the shared values too (its range may be narrower).
    _options(config, cfg, protocol.emulator_options, shared, "options", refusal)
    return {**shared, **own}


def _line(config: BenchConfig, cfg: DeviceConfig) -> dict[str, Any]:
    """The line settings the bench file gives, checked against the protocol's line (the
    settings it takes, their values): the keywords for the driver."""
    protocol = descriptor(cfg.protocol)
    given = cfg.line_settings()

    def where(setting: str) -> str:
        alias = setting == "baudrate" and cfg.baudrate is not None
        return f"devices.{cfg.name}.{setting if alias else 'line.' + setting}"

    fixed = [s for s in given if s not in protocol.line.settings]
    if fixed:
        raise ConfigurationError(
            f"protocol {cfg.protocol!r} fixes {fixed[0]} (a {protocol.line.kind} line taking "
            f"only {', '.join(protocol.line.settings) or 'no settings'})",
            source=config.source,
            field=where(fixed[0]),
        )
    try:
        resource = line_for(cfg.port, device=cfg.name, **given)
    except ConfigurationError as exc:
        raise ConfigurationError(
            str(exc).removeprefix(f"{exc.field}: "),
            source=config.source,
            field=where(exc.field) if exc.field in given else f"devices.{cfg.name}.port",
        ) from None
    if isinstance(resource, SerialLine):
        # the resource's spelling (parity upper case), for exactly the settings given
        return {s: getattr(resource, s) for s in given}
    return given


def _driver_kwargs(config: BenchConfig, cfg: DeviceConfig) -> dict[str, Any]:
    """Keyword arguments of the device's driver (all but port, name and clock)."""
    protocol = descriptor(cfg.protocol)
    cls = driver_class(cfg.protocol)
    kwargs = _options(
        config, cfg, protocol.options, cfg.options, "options", f"protocol {cfg.protocol!r}"
    )
    kwargs.update(_line(config, cfg))
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
    if issubclass(cls, PatientSimulator):
        kwargs["limits"] = cfg.limits.simulator_limits()
    return kwargs


#: The identity an emulated oximeter reports, by the preset its protocol starts from
#: (the model names of the manuals the presets cite; the serial is the bench's device name).
_EMULATED_MODEL = {"masimo": "Rad-8", "nonin": "3150", "generic": "oximeter"}


def _mechanism(physical: PhysicalBench, config: BenchConfig, cfg: DeviceConfig) -> Any:
    """The part of the physical bench the protocol's emulator drives. An oximeter is the
    bench's patient seen through its own monitor model, with the device's truth
    parameters (:func:`medtwin.hil.monitor_twin.truth_params`)."""
    protocol = cfg.protocol
    name = descriptor(protocol).mechanism
    if name == "oximeter":
        params = truth_params(config, cfg)
        return physical.patient.oximeter(
            params, model=_EMULATED_MODEL.get(params.name, params.name), serial=cfg.name
        )
    mechanism = getattr(physical, name, None) if name else None
    if mechanism is None:
        raise ConfigurationError(
            f"protocol {protocol!r} ({descriptor(protocol).source}) names mechanism {name!r}, "
            "which the physical bench does not have; expected pump, balance, bench_io, "
            "oximeter or simulator",
            field="protocol",
        )
    return mechanism


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

    @property
    def simulator(self) -> PatientSimulator | None:
        device = self._of_kind("simulator")
        return device if isinstance(device, PatientSimulator) else None

    def oximeter(self, name: str) -> PulseOximeter:
        """The oximeter named ``name`` (``KeyError`` if there is none of that name)."""
        device = self.devices[name]
        if not isinstance(device, PulseOximeter):
            raise KeyError(name)
        return device

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
        mechanism = _mechanism(self.physical, self.config, cfg)
        plan = _fault_plan(self.config, cfg)
        baudrate = cfg.line_settings().get("baudrate")
        pacing = Pacing(baud=baudrate) if cfg.pace and baudrate else None
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
