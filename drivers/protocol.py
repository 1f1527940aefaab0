"""What medtwin knows about one protocol, in one place: the protocol descriptor.

A :class:`ProtocolDescriptor` names a protocol's device kind, its driver and emulator
(``"module:Class"``, imported only when used), the mechanism of the physical bench its
emulator drives, the line it runs on and which line settings a bench file may give, and
the options models of both ends. The bench loader, the rig, ``medtwin emulate`` and
``medtwin protocols`` read the descriptor; none of them keeps a table of its own.

Built-in protocols and a lab's own are registered the same way, by an entry point of the
``medtwin.protocols`` group whose object is a descriptor (see
:mod:`medtwin.drivers.registry` and docs/adding-a-device.md)::

    [project.entry-points."medtwin.protocols"]
    acme-pump = "acme_medtwin:ACME_PUMP"

Options models are pydantic models (``extra="forbid"``): the fields are exactly what a bench
file may put in ``options`` (for the driver) and ``emulator_options`` (for the emulator),
with their types and defaults. A field present in both models (an address, a Modbus
device id) is a setting of the device both ends must agree on: a value given in
``options`` goes to the emulator as well.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from pydantic import BaseModel, ConfigDict

__all__ = [
    "MODBUS_SETTINGS",
    "SERIAL_SETTINGS",
    "DeviceKind",
    "LineKind",
    "LineSpec",
    "NoOptions",
    "ProtocolDescriptor",
    "ProtocolOptions",
]

#: The kinds of device a bench holds; a scenario step addresses a device by its kind.
DeviceKind = Literal["pump", "balance", "bench-io", "oximeter", "simulator"]

#: What a protocol's port is: a serial line (a tty, an emulator's pty, a pyserial URL, or
#: ``socket://HOST:PORT`` to a serial device server), or a Modbus line (RTU on a serial
#: line or ``socket://``, or Modbus TCP on ``tcp://HOST:PORT``).
LineKind = Literal["serial", "modbus"]

#: Every setting of a serial line (see :class:`medtwin.drivers.transport.SerialLine`).
SERIAL_SETTINGS: tuple[str, ...] = ("baudrate", "bytesize", "parity", "stopbits", "handshake")
#: Modbus RTU frames are binary (a CRC byte may equal XON/XOFF): no software handshake.
MODBUS_SETTINGS: tuple[str, ...] = ("baudrate", "bytesize", "parity", "stopbits")


class ProtocolOptions(BaseModel):
    """Base of every options model: unknown fields are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class NoOptions(ProtocolOptions):
    """A driver or emulator that takes no options from the bench file."""


@dataclasses.dataclass(frozen=True)
class LineSpec:
    """The line a protocol runs on and the settings its driver takes from the bench file.

    Parameters
    ----------
    kind : LineKind
        ``"serial"`` or ``"modbus"`` (see :data:`LineKind`).
    settings : tuple of str
        The line settings the bench file may give (``line = {...}``); each is passed to the
        driver's constructor as the keyword of the same name. A setting not listed is fixed
        by the protocol (the NE-1000 is always 8N1 without handshake, so it lists only
        ``baudrate``).
    """

    kind: LineKind = "serial"
    settings: tuple[str, ...] = SERIAL_SETTINGS

    def __post_init__(self) -> None:
        known = SERIAL_SETTINGS if self.kind == "serial" else MODBUS_SETTINGS
        stray = [s for s in self.settings if s not in known]
        if stray:
            raise ValueError(f"a {self.kind} line has no setting(s) {', '.join(stray)}")


@dataclasses.dataclass(frozen=True)
class ProtocolDescriptor:
    """Everything medtwin knows about one protocol.

    Parameters
    ----------
    name : str
        The name a bench file gives as ``protocol`` (``"ne1000"``).
    kind : DeviceKind or None
        The device kind it drives; None for a generic device (a Modbus register device)
        that the bench may list under any kind.
    driver : str
        ``"module:Class"`` of the driver, a :class:`medtwin.drivers.base.Device` built as
        ``cls(port, *, name, clock, retry=..., limits=... (pumps), **options, **line)``.
    emulator : str or None
        ``"module:Class"`` of the emulator, built as
        ``cls(mechanism, *, clock, faults, pacing, **emulator_options)`` with
        ``async start(*, tcp=None) -> port`` and ``async stop()``; None when there is none.
    mechanism : str or None
        The attribute of :class:`medtwin.drivers.emulators.physical_bench.PhysicalBench` the
        emulator drives (``"pump"``, ``"balance"``, ``"bench_io"``; later device classes add
        their own). Required with an emulator.
    line : LineSpec
        The line kind and the settings the driver takes.
    options : type of ProtocolOptions
        The driver options a bench file may give in ``options``.
    emulator_options : type of ProtocolOptions
        The emulator options a bench file may give in ``emulator_options``.
    description : str
        One line for ``medtwin protocols``.
    source : str
        Who registered it: ``"built in"`` or ``"<distribution> <version>"``. Filled in by
        the registry from the entry point; a plug-in leaves it empty.
    """

    name: str
    kind: DeviceKind | None
    driver: str
    emulator: str | None = None
    mechanism: str | None = None
    line: LineSpec = LineSpec()
    options: type[ProtocolOptions] = NoOptions
    emulator_options: type[ProtocolOptions] = NoOptions
    description: str = ""
    source: str = ""

    def __post_init__(self) -> None:
        for what, target in (("driver", self.driver), ("emulator", self.emulator)):
            if target is not None and not _is_target(target):
                raise ValueError(f"protocol {self.name!r}: {what} {target!r} is not 'module:Class'")
        if (self.emulator is None) != (self.mechanism is None):
            raise ValueError(
                f"protocol {self.name!r}: an emulator needs the mechanism it drives, and a "
                "mechanism needs an emulator"
            )
        for what, model in (("options", self.options), ("emulator_options", self.emulator_options)):
            if not (isinstance(model, type) and issubclass(model, BaseModel)):
                raise ValueError(f"protocol {self.name!r}: {what} is not a pydantic model")

    @property
    def shared_options(self) -> frozenset[str]:
        """Options both ends take (given once in ``options``, they reach the emulator too)."""
        return frozenset(self.options.model_fields) & frozenset(self.emulator_options.model_fields)


def _is_target(text: str) -> bool:
    module, sep, attr = text.partition(":")
    return bool(sep and module and attr and "." not in attr and " " not in text)
