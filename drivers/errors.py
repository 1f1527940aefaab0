"""The one exception tree of medtwin.

Every error medtwin raises on purpose is a :class:`MedtwinError`. The tree lives in
``drivers`` because it is the lowest layer that both ``hil`` and ``fixtures`` import
(``device_models`` is pure physics and raises :class:`ValueError` subclasses of its
own, which ``hil`` turns into :class:`ConfigurationError` at its edge)::

    MedtwinError
    ├── ConfigurationError      a bench, scenario, register map or CLI value is invalid
    ├── ProtocolError           a malformed frame; carries the raw bytes and the device
    ├── DeviceError             a device did something other than what was asked
    │   ├── DeviceTimeout       no (complete) reply within the timeout
    │   ├── PortError           the port cannot be opened, or vanished
    │   ├── CommandRefused      the device answered with an error / exception code
    │   │   └── LimitError      refused by medtwin *before sending*: outside declared limits
    │   └── DeviceAlarm         the device is in an alarm state that blocks the command
    ├── AnalysisError           the data cannot support the requested analysis
    └── StorageError            the run store cannot be opened, read or written
        └── RunNotFound         no run with that id

A message says what happened, to which device or file, and what to do about it.
"""

from __future__ import annotations

__all__ = [
    "AnalysisError",
    "CommandRefused",
    "ConfigurationError",
    "DeviceAlarm",
    "DeviceError",
    "DeviceTimeout",
    "LimitError",
    "MedtwinError",
    "PortError",
    "ProtocolError",
    "RunNotFound",
    "StorageError",
]


class MedtwinError(Exception):
    """Base of every error medtwin raises on purpose."""


class ConfigurationError(MedtwinError):
    """Invalid user input: a file (bench, scenario, register map, syringe table) or option.

    Parameters
    ----------
    message : str
        What was wrong and what was expected.
    source : str, optional
        The file (or ``"--option"``) the value came from.
    field : str, optional
        Dotted path of the offending field inside ``source``.
    """

    def __init__(self, message: str, *, source: str | None = None, field: str | None = None):
        self.source = source
        self.field = field
        where = ":".join(part for part in (source, field) if part)
        super().__init__(f"{where}: {message}" if where else message)


class ProtocolError(MedtwinError):
    """A frame that does not follow the protocol.

    Always carries the offending bytes (``raw``) and, where known, the device name, so a
    bench log shows exactly what arrived on the wire.
    """

    def __init__(self, message: str, *, raw: bytes = b"", device: str | None = None):
        self.raw = bytes(raw)
        self.device = device
        prefix = f"{device}: " if device else ""
        super().__init__(f"{prefix}{message} (raw bytes: {self.raw!r})")


class DeviceError(MedtwinError):
    """A device did not do what was asked. ``device`` names it."""

    def __init__(self, message: str, *, device: str | None = None):
        self.device = device
        prefix = f"{device}: " if device else ""
        super().__init__(f"{prefix}{message}")


class DeviceTimeout(DeviceError, TimeoutError):
    """No complete reply arrived within the timeout."""


class PortError(DeviceError, ConnectionError):
    """The port cannot be opened, or disappeared while in use."""


class CommandRefused(DeviceError):
    """The device answered a command with an error (``?OOR``, ``ES``, a Modbus exception...)."""

    def __init__(self, message: str, *, device: str | None = None, reply: bytes = b""):
        self.reply = bytes(reply)
        super().__init__(message, device=device)


class LimitError(CommandRefused):
    """medtwin refused a command before sending it: it is outside the declared limits."""


class DeviceAlarm(DeviceError):
    """The device is in an alarm state that blocks the command until acknowledged."""

    def __init__(self, message: str, *, device: str | None = None, alarm: str = ""):
        self.alarm = alarm
        super().__init__(message, device=device)


class AnalysisError(MedtwinError):
    """The data cannot support the requested analysis (too short, wrong columns, ...)."""


class StorageError(MedtwinError):
    """The run store cannot be opened, read or written."""


class RunNotFound(StorageError):
    """No run with the requested id exists in the store."""
