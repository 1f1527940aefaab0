"""Modbus RTU and Modbus TCP devices.

Two layers, as pymodbus separates framers from clients: :mod:`.codec` is the framing
(RTU CRC and t3.5, MBAP; pure, shared with the emulators and the tests) and :mod:`.driver`
the drivers over pymodbus's clients. The drivers are re-exported here, so
``medtwin.drivers.modbus:ModbusInfusionPump`` names the driver; they are imported on first
use, so that importing the codec (as an emulator does) never loads the clients.
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from medtwin.drivers.modbus.driver import (
        EXCEPTION_CODES,
        ModbusBenchIO,
        ModbusExceptionReply,
        ModbusInfusionPump,
        ModbusLink,
        ModbusRegisterDevice,
    )

__all__ = [
    "EXCEPTION_CODES",
    "ModbusBenchIO",
    "ModbusExceptionReply",
    "ModbusInfusionPump",
    "ModbusLink",
    "ModbusRegisterDevice",
]


def __getattr__(name: str) -> object:
    if name in __all__:
        from medtwin.drivers.modbus import driver

        return getattr(driver, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
