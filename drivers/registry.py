"""Protocol name → driver class, and the emulator behind each protocol.

Like python-can's ``BACKENDS``: a plain table of ``(module, class)`` imported lazily,
extended by the ``medtwin.drivers`` / ``medtwin.emulators`` entry-point groups so a lab
can ship a driver for its own instrument without touching medtwin.
"""

from __future__ import annotations

import functools
import importlib
from importlib.metadata import entry_points
from typing import Any

from medtwin.drivers.base import Device
from medtwin.drivers.errors import ConfigurationError

__all__ = [
    "DRIVERS",
    "EMULATORS",
    "EMULATOR_MECHANISM",
    "driver_class",
    "emulator_class",
    "protocols",
]

#: protocol → (module, class) of the driver.
DRIVERS: dict[str, tuple[str, str]] = {
    "ne1000": ("medtwin.drivers.ne1000", "NE1000Pump"),
    "mt-sics": ("medtwin.drivers.mtsics", "MTSICSBalance"),
    "modbus-pump": ("medtwin.drivers.modbus", "ModbusInfusionPump"),
    "modbus-bench-io": ("medtwin.drivers.modbus", "ModbusBenchIO"),
    "modbus": ("medtwin.drivers.modbus", "ModbusRegisterDevice"),
}

#: protocol → (module, class) of the emulator serving it. Every emulator is built as
#: ``cls(mechanism, *, clock, faults=None, pacing=None, **options)`` where the mechanism is
#: the matching part of :class:`medtwin.drivers.emulators.physical_bench.PhysicalBench`
#: (``pump``, ``balance`` or ``bench_io``, see :data:`EMULATOR_MECHANISM`), and has
#: ``async start(*, tcp=None) -> port``, ``port`` and ``async stop()``.
EMULATORS: dict[str, tuple[str, str]] = {
    "ne1000": ("medtwin.drivers.emulators.ne1000", "NE1000Emulator"),
    "mt-sics": ("medtwin.drivers.emulators.mtsics", "MTSICSEmulator"),
    "modbus-pump": ("medtwin.drivers.emulators.modbus", "ModbusPumpEmulator"),
    "modbus-bench-io": ("medtwin.drivers.emulators.modbus", "ModbusBenchIOEmulator"),
}


#: protocol → which mechanism of the physical bench its emulator drives.
EMULATOR_MECHANISM: dict[str, str] = {
    "ne1000": "pump",
    "mt-sics": "balance",
    "modbus-pump": "pump",
    "modbus-bench-io": "bench_io",
}


@functools.cache
def _plugins(group: str) -> tuple[tuple[str, str, str], ...]:
    """(name, module, class) of the installed plug-ins of ``group`` (read once: scanning
    the entry points takes milliseconds)."""
    found = []
    for ep in entry_points(group=group):
        module, _, attr = ep.value.partition(":")
        found.append((ep.name, module, attr))
    return tuple(found)


def _table(builtin: dict[str, tuple[str, str]], group: str) -> dict[str, tuple[str, str]]:
    table = dict(builtin)
    for name, module, attr in _plugins(group):
        table.setdefault(name, (module, attr))
    return table


def protocols() -> list[str]:
    """Every protocol name a bench file may use."""
    return sorted(_table(DRIVERS, "medtwin.drivers"))


def _load(table: dict[str, tuple[str, str]], protocol: str, what: str) -> Any:
    try:
        module, attr = table[protocol]
    except KeyError:
        raise ConfigurationError(
            f"unknown protocol {protocol!r}; expected one of {', '.join(sorted(table))}",
            field="protocol",
        ) from None
    return getattr(importlib.import_module(module), attr)


def driver_class(protocol: str) -> type[Device]:
    """The driver class for ``protocol`` (imported on first use)."""
    cls = _load(_table(DRIVERS, "medtwin.drivers"), protocol, "driver")
    if not (isinstance(cls, type) and issubclass(cls, Device)):  # pragma: no cover
        raise TypeError(f"driver for {protocol!r} is not a medtwin.drivers.base.Device")
    return cls


def emulator_class(protocol: str) -> type:
    """The emulator class serving ``protocol``."""
    cls = _load(_table(EMULATORS, "medtwin.emulators"), protocol, "emulator")
    if not isinstance(cls, type):  # pragma: no cover
        raise TypeError(f"emulator for {protocol!r} is not a class")
    return cls
