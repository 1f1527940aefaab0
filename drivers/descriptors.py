"""The descriptors of medtwin's built-in protocols and their options models.

Registered through medtwin's own ``medtwin.protocols`` entry points (pyproject.toml),
exactly as a lab's plug-in registers its protocols. The option fields mirror the driver
and emulator constructors documented in docs/protocols/ (NE-1000: New Era *NE-1000 Series
Syringe Pump User Manual*, RS-232 protocol chapter; MT-SICS: Mettler Toledo *MT-SICS
Interface Command Reference*; Modbus: *MODBUS Application Protocol Specification V1.1b3*
and *MODBUS over Serial Line V1.02*); the defaults are those of the constructors.
"""

from __future__ import annotations

import math
from typing import Literal

from medtwin.drivers.ne1000.program import MAX_SPEED_MM_H, MIN_SPEED_MM_H
from medtwin.drivers.protocol import (
    MODBUS_SETTINGS,
    SERIAL_SETTINGS,
    LineSpec,
    NoOptions,
    ProtocolDescriptor,
    ProtocolOptions,
)
from pydantic import Field

__all__ = [
    "MASIMO",
    "MODBUS",
    "MODBUS_BENCH_IO",
    "MODBUS_PUMP",
    "MTSICS",
    "NE1000",
    "NONIN2",
    "NONIN7",
    "NONIN8",
    "PROSIM8",
    "MTSICSEmulatorOptions",
    "MasimoEmulatorOptions",
    "ModbusBenchIOOptions",
    "ModbusEmulatorOptions",
    "ModbusPumpOptions",
    "ModbusRegisterOptions",
    "NE1000EmulatorOptions",
    "NE1000Options",
    "NoninEmulatorOptions",
    "NoninOptions",
    "ProSim8EmulatorOptions",
]


# -- NE-1000 -------------------------------------------------------------------------------


class NE1000Options(ProtocolOptions):
    """Driver options of the NE-1000 (network address 0-99; safe mode: the pump stops and
    alarms when no valid command arrives within the timeout, manual §"Safe Mode")."""

    address: int = Field(0, ge=0, le=99, strict=True)
    safe_mode: bool = False
    safe_mode_timeout_s: int = Field(10, ge=1, le=255, strict=True)


class NE1000EmulatorOptions(ProtocolOptions):
    """Emulator options of the NE-1000 (address and safe mode as the pump's menu sets them)."""

    address: int = Field(0, ge=0, le=99, strict=True)
    safe_mode_timeout_s: int = Field(0, ge=0, le=255, strict=True)
    power_on_alarm: bool = True
    version: str | None = None
    inter_byte_timeout_s: float = Field(0.5, gt=0)
    reply_to_system_commands: bool = True
    poll_interval_s: float = Field(0.1, gt=0)
    # The drive's plunger-speed range that bounds RAT per syringe (manual §12.7; the
    # defaults, from New Era's specification, are unverified: see docs/protocols/ne1000.md).
    min_plunger_speed_mm_h: float = Field(MIN_SPEED_MM_H, gt=0)
    max_plunger_speed_mm_h: float = Field(MAX_SPEED_MM_H, gt=0)


NE1000 = ProtocolDescriptor(
    name="ne1000",
    kind="pump",
    driver="medtwin.drivers.ne1000:NE1000Pump",
    emulator="medtwin.drivers.emulators.ne1000:NE1000Emulator",
    mechanism="pump",
    # The pump's RS-232 framing is fixed at 8N1 without handshake; only the speed is set.
    line=LineSpec("serial", ("baudrate",)),
    options=NE1000Options,
    emulator_options=NE1000EmulatorOptions,
    description="New Era NE-1000 syringe pump, RS-232 basic/safe mode",
)


# -- MT-SICS ---------------------------------------------------------------------------------


class MTSICSEmulatorOptions(ProtocolOptions):
    """Emulator options of the MT-SICS balance (timings of its stable-weight and ``SIR``
    stream replies, the zero range, and the level versions ``I1`` reports)."""

    stability_timeout_s: float = Field(3.0, gt=0)
    stream_interval_s: float = Field(0.1, gt=0)
    poll_interval_s: float = Field(0.05, gt=0)
    zero_range_g: float = Field(math.inf, gt=0)
    reset_clears_tare: bool = True
    sics_versions: tuple[str, str, str, str] = ("2.20", "2.20", "", "")


MTSICS = ProtocolDescriptor(
    name="mt-sics",
    kind="balance",
    driver="medtwin.drivers.mtsics:MTSICSBalance",
    emulator="medtwin.drivers.emulators.mtsics:MTSICSEmulator",
    mechanism="balance",
    line=LineSpec("serial", SERIAL_SETTINGS),
    options=NoOptions,
    emulator_options=MTSICSEmulatorOptions,
    description="Mettler Toledo MT-SICS balance, level 0/1 commands",
)


# -- Modbus ----------------------------------------------------------------------------------


class _ModbusOptions(ProtocolOptions):
    # 0-255 covers Modbus TCP unit ids; the driver narrows it to 1-247 on a serial line.
    device_id: int | None = Field(None, ge=0, le=255, strict=True)


class ModbusRegisterOptions(_ModbusOptions):
    """A generic Modbus device: its register map (a shipped name or a TOML file) is required."""

    register_map: str = Field(min_length=1)


class ModbusPumpOptions(_ModbusOptions):
    """A Modbus infusion pump; the default map is the shipped ``infusion_pump``."""

    register_map: str = Field("infusion_pump", min_length=1)


class ModbusBenchIOOptions(_ModbusOptions):
    """The bench I/O module (pinch valve coil, line pressure); default map ``bench_io``."""

    register_map: str = Field("bench_io", min_length=1)


class ModbusEmulatorOptions(ProtocolOptions):
    """Options of the Modbus emulators: slave address (default: the map's), the register
    map (default: the emulator's own), and the framing served on ``--tcp``."""

    device_id: int | None = Field(None, ge=1, le=247, strict=True)
    register_map: str | None = Field(None, min_length=1)
    tcp_framing: Literal["mbap", "rtu"] = "mbap"


_MODBUS_LINE = LineSpec("modbus", MODBUS_SETTINGS)

MODBUS_PUMP = ProtocolDescriptor(
    name="modbus-pump",
    kind="pump",
    driver="medtwin.drivers.modbus:ModbusInfusionPump",
    emulator="medtwin.drivers.emulators.modbus:ModbusPumpEmulator",
    mechanism="pump",
    line=_MODBUS_LINE,
    options=ModbusPumpOptions,
    emulator_options=ModbusEmulatorOptions,
    description="infusion pump over Modbus RTU/TCP, by register map",
)

MODBUS_BENCH_IO = ProtocolDescriptor(
    name="modbus-bench-io",
    kind="bench-io",
    driver="medtwin.drivers.modbus:ModbusBenchIO",
    emulator="medtwin.drivers.emulators.modbus:ModbusBenchIOEmulator",
    mechanism="bench_io",
    line=_MODBUS_LINE,
    options=ModbusBenchIOOptions,
    emulator_options=ModbusEmulatorOptions,
    description="bench I/O module (pinch valve, line pressure) over Modbus RTU/TCP",
)

MODBUS = ProtocolDescriptor(
    name="modbus",
    kind=None,
    driver="medtwin.drivers.modbus:ModbusRegisterDevice",
    line=_MODBUS_LINE,
    options=ModbusRegisterOptions,
    description="any Modbus RTU/TCP device, values by register map",
)


# -- Pulse oximeters (Masimo ASCII 1, Nonin #2/#7/#8) ---------------------------------------
# Both stream at 9600 baud 8N1 without handshake (Rad-8 manual p. 7-3; Nonin 9560 OEM
# specification p. 3). The monitor model behind an emulated oximeter (preset, truth
# overrides) is the bench device's ``monitor``/``truth`` tables, not an emulator option.


class MasimoEmulatorOptions(ProtocolOptions):
    """Emulator options of the Masimo ASCII 1 output (line layout, line period, the
    device clock at time 0)."""

    variant: Literal["rad8", "radical7"] = "rad8"
    line_interval_s: float = Field(1.0, gt=0)
    start: str = "2026-01-01T00:00:00"
    poll_interval_s: float = Field(0.05, gt=0)


MASIMO = ProtocolDescriptor(
    name="masimo",
    kind="oximeter",
    driver="medtwin.drivers.masimo:MasimoOximeter",
    emulator="medtwin.drivers.emulators.masimo:MasimoEmulator",
    mechanism="oximeter",
    line=LineSpec("serial", ("baudrate",)),
    options=NoOptions,
    emulator_options=MasimoEmulatorOptions,
    description="Masimo Rad-8/Radical-7/Root pulse oximeter, ASCII 1 serial output",
)


class NoninOptions(ProtocolOptions):
    """Driver options of the Nonin oximeters: whether to send the format-select command
    on open (and require its ACK), and how long to wait for it."""

    select_format: bool = True
    handshake_timeout_s: float = Field(3.0, gt=0)


class NoninEmulatorOptions(ProtocolOptions):
    """Emulator options of the Nonin oximeters (firmware revision SREV, poll period)."""

    firmware_revision: int | None = Field(None, ge=0, le=127, strict=True)
    poll_interval_s: float = Field(1.0 / 75, gt=0)


def _nonin(fmt: int, what: str) -> ProtocolDescriptor:
    return ProtocolDescriptor(
        name=f"nonin{fmt}",
        kind="oximeter",
        driver=f"medtwin.drivers.nonin:Nonin{fmt}Oximeter",
        emulator=f"medtwin.drivers.emulators.nonin:Nonin{fmt}Emulator",
        mechanism="oximeter",
        line=LineSpec("serial", ("baudrate",)),
        options=NoninOptions,
        emulator_options=NoninEmulatorOptions,
        description=f"Nonin pulse oximeter, serial data format #{fmt} ({what})",
    )


NONIN2 = _nonin(2, "75 frames/s, 8-bit pleth")
NONIN7 = _nonin(7, "75 frames/s, 16-bit pleth")
NONIN8 = _nonin(8, "4 bytes once a second")


# -- Patient simulator (Fluke ProSim 8) -------------------------------------------------------
# 115200 baud 8N1 with RTS/CTS flow control (OpenICE's DemoProsim68; docs/protocols/prosim8.md).


class ProSim8EmulatorOptions(ProtocolOptions):
    """Emulator options of the ProSim 8: start in remote mode (default local, as after
    power-on)."""

    remote: bool = False


PROSIM8 = ProtocolDescriptor(
    name="prosim8",
    kind="simulator",
    driver="medtwin.drivers.prosim8:ProSim8Simulator",
    emulator="medtwin.drivers.emulators.prosim8:ProSim8Emulator",
    mechanism="simulator",
    line=LineSpec("serial", ("baudrate", "handshake")),
    options=NoOptions,
    emulator_options=ProSim8EmulatorOptions,
    description="Fluke ProSim 8 vital-signs simulator, remote-control interface",
)
