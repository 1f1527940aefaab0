"""Former home of the emulator server, kept so that existing imports keep working.

The server, its channels and the handler contract live in
:mod:`medtwin.drivers.emulators.server`; wire-time pacing in
:mod:`medtwin.drivers.emulators.pacing`.
"""

from medtwin.drivers.emulators.pacing import Pacing
from medtwin.drivers.emulators.server import EmulatorServer, ProtocolHandler, SerialDeviceEmulator

__all__ = ["EmulatorServer", "Pacing", "ProtocolHandler", "SerialDeviceEmulator"]
