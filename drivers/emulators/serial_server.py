"""Serve a byte-protocol emulator on a pty or on TCP (127.0.0.1 only).

CONTRACT (implementation in progress by the serial-infrastructure work; the signatures
below are fixed and other emulators code against them):

* A protocol emulator subclasses :class:`ProtocolHandler`: a pure state machine (no I/O)
  that turns received bytes into replies by calling its mechanism.
* :class:`EmulatorServer` owns the port: a pty pair (the slave path is what any program
  opens) or a TCP listener; it feeds received bytes to the handler, applies the fault
  plan to each reply, paces bytes at the configured baud rate when asked, and sends
  unsolicited output (auto-alarms, streaming) when the handler has some.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

from drivers.clock import Clock
from drivers.emulators.faults import FaultPlan

__all__ = ["EmulatorServer", "Pacing", "ProtocolHandler", "SerialDeviceEmulator"]


class ProtocolHandler(abc.ABC):
    """Device side of one byte protocol.

    ``feed`` receives whatever bytes arrived (possibly a partial frame, possibly several
    frames) and returns the complete replies due, in order. ``unsolicited`` returns output
    the device sends on its own (NE-1000 auto-alarm packets, MT-SICS ``SIR`` stream); the
    server calls it after every ``feed`` and every ``poll_interval_s`` of wall time.
    """

    #: Name used in logs and ProtocolError messages.
    device_name: str = "device"
    #: How often the server polls :meth:`unsolicited` (wall seconds); None: never.
    poll_interval_s: float | None = None

    @abc.abstractmethod
    def feed(self, data: bytes) -> list[bytes]: ...

    def unsolicited(self) -> list[bytes]:
        return []

    def corrupt_checksum(self, reply: bytes) -> bytes:
        """The reply with its checksum broken (``bad-checksum`` fault). Protocols without
        a checksum corrupt one payload byte instead."""
        if not reply:
            return reply
        middle = len(reply) // 2
        return reply[:middle] + bytes([reply[middle] ^ 0x20]) + reply[middle + 1 :]

    def reset_input(self) -> None:  # noqa: B027 - optional hook
        """Forget partial input (called on disconnect)."""


@dataclass(frozen=True)
class Pacing:
    """Wire-time pacing: each byte takes ``bits_per_char / baud`` seconds; Modbus RTU adds
    a 3.5-character silence between frames (1.75 ms above 19200 baud, per the spec)."""

    baud: int
    bits_per_char: int = 10
    interframe_chars: float = 0.0

    def byte_time_s(self) -> float:
        return self.bits_per_char / self.baud


class EmulatorServer:
    """Serves one :class:`ProtocolHandler` on a pty or TCP port."""

    def __init__(
        self,
        handler: ProtocolHandler,
        *,
        clock: Clock,
        faults: FaultPlan | None = None,
        pacing: Pacing | None = None,
    ) -> None:
        raise NotImplementedError("being implemented")

    async def start_pty(self) -> str:
        """Open a pty pair and serve on it; returns the slave path (e.g. /dev/pts/7)."""
        raise NotImplementedError

    async def start_tcp(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        """Listen on TCP (127.0.0.1 only unless told otherwise); returns (host, port)."""
        raise NotImplementedError

    @property
    def port(self) -> str:
        """What a client opens: the pty path or ``socket://host:port``."""
        raise NotImplementedError

    async def stop(self) -> None:
        """Stop serving and release the pty/socket; idempotent."""
        raise NotImplementedError


class SerialDeviceEmulator:
    """An emulated serial device: a mechanism + a protocol handler + a server.

    Every emulator in :data:`drivers.registry.EMULATORS` has this shape (the Modbus ones
    implement the same three methods over pymodbus)::

        emulator = NE1000Emulator(bench.pump, clock=clock, faults=plan, pacing=None)
        port = await emulator.start()            # pty path; or start(tcp=("127.0.0.1", 0))
        ...                                      # clients open `port`
        await emulator.stop()

    Subclasses set :attr:`handler_class`; extra keyword options go to the handler.
    """

    handler_class: type[ProtocolHandler]

    def __init__(
        self,
        mechanism: object,
        *,
        clock: Clock,
        faults: FaultPlan | None = None,
        pacing: Pacing | None = None,
        **handler_options: object,
    ) -> None:
        raise NotImplementedError("being implemented")

    async def start(self, *, tcp: tuple[str, int] | None = None) -> str:
        """Serve on a new pty (default) or on TCP; returns the port string a client opens
        (``/dev/pts/N`` or ``socket://127.0.0.1:PORT``)."""
        raise NotImplementedError

    @property
    def port(self) -> str:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError
