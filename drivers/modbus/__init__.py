"""Modbus RTU and Modbus TCP devices.

Two layers, as pymodbus separates framers from clients: :mod:`.codec` is the framing
(RTU CRC and t3.5, MBAP; pure, shared with the emulators and the tests) and :mod:`.driver`
the drivers over pymodbus's clients. The drivers are re-exported here, so
``medtwin.drivers.modbus:ModbusInfusionPump`` names the driver.
"""

from medtwin.drivers.modbus.driver import *  # noqa: F403 - the driver's __all__ is this package's
from medtwin.drivers.modbus.driver import __all__ as _driver_all

__all__ = list(_driver_all)
