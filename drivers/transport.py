"""Async byte transports for serial protocols: tty paths, emulator ptys, pyserial URLs.

CONTRACT (implementation in progress by the serial-infrastructure work; signatures fixed):

``open_transport(port, ...)`` returns a :class:`ByteTransport` for

* a device path (``/dev/ttyUSB0``, an emulator's ``/dev/pts/N``): pyserial with the given
  line settings, read without blocking the event loop;
* ``socket://HOST:PORT``: raw TCP (asyncio streams);
* any other pyserial URL (``rfc2217://``, ``loop://``...), through pyserial.

Reads never block forever: callers wrap them in ``asyncio.timeout`` (drivers.base does).
A port that vanishes raises :class:`~drivers.errors.PortError` naming device and port.
"""

from __future__ import annotations

import abc

__all__ = ["ByteTransport", "open_transport"]


class ByteTransport(abc.ABC):
    """An open, bidirectional byte stream."""

    port: str

    @abc.abstractmethod
    async def open(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    @property
    @abc.abstractmethod
    def is_open(self) -> bool: ...

    @abc.abstractmethod
    async def write(self, data: bytes) -> None: ...

    @abc.abstractmethod
    async def read_until(self, terminator: bytes, *, max_size: int = 4096) -> bytes:
        """Bytes up to and including ``terminator``; ProtocolError past ``max_size``."""

    @abc.abstractmethod
    async def read_exactly(self, n: int) -> bytes: ...

    @abc.abstractmethod
    def discard_input(self) -> None:
        """Drop everything received but not yet read."""


def open_transport(
    port: str,
    *,
    device: str,
    baudrate: int = 9600,
    bytesize: int = 8,
    parity: str = "N",
    stopbits: float = 1,
) -> ByteTransport:
    """A (not yet opened) transport for ``port``."""
    raise NotImplementedError("being implemented")
