"""Stand up every driver/emulator pair of a device class, or a driver on real hardware.

The conformance suites (``test_pump.py``, ``test_balance.py``, ``test_bench_io.py``) assert
the device-class contract of :mod:`medtwin.drivers.base` once, and this file runs them
against every protocol of that class, as python-can runs one test class against its virtual
bus and, when a flag names it, against real hardware:

* **Emulated** (default): each protocol in the registry whose driver implements the class's
  interface and that has an emulator is served over a real pty (and, for the tests marked
  ``every_transport``, over TCP too) with the physical bench behind it, on a virtual clock.
* **Real hardware**: ``MEDTWIN_CONFORMANCE_PORT_<PROTOCOL>`` names the port of a real
  device (``<PROTOCOL>`` is the protocol name upper-cased with ``-`` as ``_``:
  ``MEDTWIN_CONFORMANCE_PORT_NE1000=/dev/ttyUSB0``,
  ``MEDTWIN_CONFORMANCE_PORT_MODBUS_PUMP=tcp://192.168.0.20:502``). That protocol's tests
  then run once against that port on the wall clock instead of the emulator; the driver's
  options (address, line settings) come from ``MEDTWIN_CONFORMANCE_OPTIONS_<PROTOCOL>`` as
  a JSON object. Tests that need the emulator (fault injection, an alarm raised on the
  bench) are skipped there, with the reason. See docs/real-hardware.md.

The protocols come from the registry's descriptors (:func:`protocols_of`: every descriptor
of that ``kind``; its ``emulator`` and ``mechanism`` say how to serve it), so a protocol
added by a descriptor, built in or from a plug-in, is in the suite without an edit here.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from medtwin.drivers.base import (
    Balance,
    BenchIO,
    Device,
    InfusionPump,
    PumpLimits,
    RetryPolicy,
)
from medtwin.drivers.clock import Clock, VirtualClock, WallClock
from medtwin.drivers.emulators.faults import FaultPlan
from medtwin.drivers.emulators.physical_bench import PhysicalBench
from medtwin.drivers.registry import descriptor, descriptors, driver_class, emulator_class
from medtwin.drivers.vital_signs import PatientSimulator, PulseOximeter

#: Device class (a descriptor's ``kind``) → its interface in base.py. A new device class
#: adds its row here and its suite beside this file.
INTERFACES: dict[str, type[Device]] = {
    "pump": InfusionPump,
    "balance": Balance,
    "bench-io": BenchIO,
    "oximeter": PulseOximeter,
    "simulator": PatientSimulator,
}

#: Classes whose devices speak unasked (a monitor's stream): test_device.py's request/reply
#: contract does not apply; their own suite covers timeouts, faults and reconnects.
STREAMING = frozenset({"oximeter"})

#: Short attempts keep the fault cases quick; reconnects outlast a 0.3 s disconnect.
FAST = RetryPolicy(timeout_s=0.5, retries=2, reconnects=20, backoff_s=0.02, backoff_max_s=0.1)

PORT_VARIABLE = "MEDTWIN_CONFORMANCE_PORT_{}"
OPTIONS_VARIABLE = "MEDTWIN_CONFORMANCE_OPTIONS_{}"


def protocols_of(kind: str) -> list[str]:
    """Every registered protocol of device class ``kind``, built in or from a plug-in."""
    return sorted(name for name, found in descriptors().items() if found.kind == kind)


def _variable(template: str, protocol: str) -> str:
    return template.format(protocol.upper().replace("-", "_").replace(".", "_"))


@dataclass(frozen=True)
class PairSpec:
    """One row of the suite: a protocol on one transport (or on real hardware)."""

    kind: str
    protocol: str
    transport: str  # "pty", "tcp" or "hardware"
    port: str | None = None  # the real device's port
    options: dict[str, Any] = field(default_factory=dict)  # real device's driver options

    @property
    def id(self) -> str:
        return f"{self.protocol}-{self.transport}"


def pair_specs(kind: str, *, every_transport: bool) -> list[PairSpec]:
    """The rows for device class ``kind``: real hardware where a port variable names one,
    else the emulator on a pty (and on TCP with ``every_transport``)."""
    specs = []
    for protocol in protocols_of(kind):
        port = os.environ.get(_variable(PORT_VARIABLE, protocol), "").strip()
        if port:
            raw = os.environ.get(_variable(OPTIONS_VARIABLE, protocol), "").strip() or "{}"
            options = json.loads(raw)
            if not isinstance(options, dict):
                raise pytest.UsageError(
                    f"{_variable(OPTIONS_VARIABLE, protocol)} must be a JSON object, got {raw}"
                )
            specs.append(PairSpec(kind, protocol, "hardware", port, options))
        elif descriptor(protocol).emulator is not None:
            for transport in ("pty", "tcp") if every_transport else ("pty",):
                specs.append(PairSpec(kind, protocol, transport))
    return specs


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "every_transport: run a conformance test over TCP as well as a pty"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrise ``pair_spec`` by the module's ``DEVICE_KIND`` (``"*"``: every class)."""
    kind = getattr(metafunc.module, "DEVICE_KIND", None)
    if kind is None or "pair_spec" not in metafunc.fixturenames:
        return
    every = metafunc.definition.get_closest_marker("every_transport") is not None
    kinds = [k for k in INTERFACES if k not in STREAMING] if kind == "*" else [kind]
    specs = [spec for one in kinds for spec in pair_specs(one, every_transport=every)]
    metafunc.parametrize("pair_spec", specs, ids=[spec.id for spec in specs])


@dataclass
class Pair:
    """A driver under test and, when emulated, the emulator and bench behind it."""

    spec: PairSpec
    clock: Clock
    bench: PhysicalBench | None
    emulator: Any | None
    port: str
    device: Any = None  # the driver instance; typed per suite (InfusionPump, ...)
    _made: list[Device] = field(default_factory=list)

    @property
    def emulated(self) -> bool:
        return self.emulator is not None

    def need_emulator(self, why: str) -> None:
        """Skip on real hardware: this check needs ``why`` (fault injection, ...)."""
        if not self.emulated:
            pytest.skip(f"needs the emulator ({why}); {self.spec.protocol} is real hardware")

    @property
    def mechanism(self) -> Any:
        """The physical bench's device behind the emulator (the truth)."""
        assert self.bench is not None
        if descriptor(self.spec.protocol).mechanism == "oximeter":
            return self.emulator.mechanism  # one of the patient's oximeters: this one
        return getattr(self.bench, str(descriptor(self.spec.protocol).mechanism))

    def build(self, *, retry: RetryPolicy = FAST, limits: PumpLimits | None = None) -> Any:
        """A new, unopened driver on the pair's port (closed at teardown)."""
        kwargs: dict[str, Any] = dict(self.spec.options)
        if limits is not None:
            kwargs["limits"] = limits
        device = driver_class(self.spec.protocol)(
            self.port,
            name=f"{self.spec.protocol}-under-test",
            clock=self.clock,
            retry=retry,
            **kwargs,
        )
        self._made.append(device)
        return device

    async def reopen(self, *, retry: RetryPolicy = FAST, limits: PumpLimits | None = None) -> Any:
        """Close the current driver and open a new one with other settings."""
        if self.device is not None:
            await self.device.close()
        self.device = self.build(retry=retry, limits=limits)
        await self.device.open()
        return self.device

    async def advance(self, seconds: float) -> None:
        """Let ``seconds`` of device time pass (at once on the virtual clock)."""
        if isinstance(self.clock, VirtualClock):
            self.clock.advance_to(self.clock.now() + seconds)
        else:
            await asyncio.sleep(seconds)

    def inject(self, *specs: str) -> None:
        """Reply faults from now on (emulator fault-plan specs, ``"drop:count=1"``)."""
        self.need_emulator("reply fault injection")
        # Seed 3: which reply a probabilistic fault hits is then the same every run.
        plan = FaultPlan.parse(list(specs), seed=3) if specs else None
        server = getattr(self.emulator, "server", None)
        # The serial-line emulators keep their plan on their server, the Modbus ones on
        # themselves; one emulator server will make this one attribute.
        if server is not None and hasattr(server, "faults"):
            server.faults = plan
        else:
            self.emulator.faults = plan

    def requests_seen(self) -> int:
        """A count that grows with every request the emulator receives."""
        self.need_emulator("counting the requests on the wire")
        server = getattr(self.emulator, "server", None)
        if server is not None and hasattr(server, "bytes_received"):
            return int(server.bytes_received)
        return int(self.emulator.requests) + int(getattr(self.emulator, "ignored", 0))


def bench_mechanism(bench: PhysicalBench, protocol: str) -> Any:
    """What ``protocol``'s emulator drives on ``bench``: an oximeter is the bench's patient
    seen through the monitor model of its vendor's preset."""
    name = str(descriptor(protocol).mechanism)
    if name == "oximeter":
        from medtwin.device_models.monitor.params import monitor_preset

        preset = "masimo" if protocol.startswith("masimo") else "nonin"
        return bench.patient.oximeter(
            monitor_preset(preset), model=preset, serial="0000012345", firmware="41"
        )
    return getattr(bench, name)


@pytest.fixture
async def pair(pair_spec: PairSpec) -> AsyncIterator[Pair]:
    """The pair of ``pair_spec``, its driver open with :data:`FAST` retries."""
    emulator = None
    bench = None
    if pair_spec.transport == "hardware":
        assert pair_spec.port is not None
        clock: Clock = WallClock()
        port = pair_spec.port
    else:
        clock = VirtualClock()
        # Seed 11: fixed balance and transducer noise, so a failing case replays exactly.
        bench = PhysicalBench.default(clock=clock, seed=11)
        mechanism = bench_mechanism(bench, pair_spec.protocol)
        emulator = emulator_class(pair_spec.protocol)(mechanism, clock=clock)
        port = await emulator.start(tcp=("127.0.0.1", 0) if pair_spec.transport == "tcp" else None)
    made = Pair(pair_spec, clock, bench, emulator, port)
    try:
        made.device = made.build()
        async with asyncio.timeout(20):
            await made.device.open()
        yield made
    finally:
        for device in made._made:
            await device.close()
        if emulator is not None:
            await emulator.stop()


@pytest.fixture(scope="session")
def suite_protocols() -> dict[str, list[str]]:
    """Device class → the protocols its suite runs against (emulated or real)."""
    return {kind: protocols_of(kind) for kind in INTERFACES}
