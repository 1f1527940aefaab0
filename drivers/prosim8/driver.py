"""The ProSim 8 driver: :class:`ProSim8Simulator` sets the patient over a serial line or TCP.

The messages are :mod:`medtwin.drivers.prosim8.codec`'s (docs/protocols/prosim8.md); this
module adds the I/O:

* ``open()`` sends ``REMOTE`` (the simulator refuses every other command in local mode)
  and ``close()`` sends ``LOCAL`` to hand the front panel back (best effort: a simulator
  that no longer answers is closed anyway).
* Every command is answered by one line, which names no command: input waiting before a
  command is sent (a late reply to an earlier, timed-out one) is discarded.
* Every command is answered by one line. ``OK`` is success; ``ERR=nn`` raises
  :class:`~medtwin.drivers.errors.CommandRefused` naming the command and the code's
  meaning (the simulator *did* answer, so the call path does not retry it). A line that is
  not a reply raises :class:`~medtwin.drivers.errors.ProtocolError`; no line within the
  retry policy's timeout raises :class:`~medtwin.drivers.errors.DeviceTimeout`.
* Values are checked twice before a byte is sent: against the bench's
  :class:`~medtwin.drivers.vital_signs.SimulatorLimits` (by
  :class:`~medtwin.drivers.vital_signs.PatientSimulator`) and against the simulator's own
  ranges (:func:`~medtwin.drivers.prosim8.codec.encode_command`). Values are rounded to
  the integers the protocol carries.
* Line settings: 115200 baud 8N1 with RTS/CTS flow control, as OpenICE opens a ProSim 6/8.
  A pseudo-terminal has no modem lines, so against the emulator's pty the flow control is
  accepted by the kernel and has no effect (tests cover the protocol, not the handshake).
"""

from __future__ import annotations

import contextlib
from typing import Any, ClassVar, Final

from medtwin.drivers.base import DeviceIdentity, RetryPolicy
from medtwin.drivers.clock import Clock
from medtwin.drivers.errors import CommandRefused, DeviceError, PortError, ProtocolError
from medtwin.drivers.prosim8.codec import (
    LINE_END,
    DataReply,
    ErrorReply,
    OkReply,
    encode_command,
    parse_reply,
)
from medtwin.drivers.transport import ByteTransport, line_settings, open_transport
from medtwin.drivers.vital_signs import PatientSimulator, SimulatorLimits

__all__ = ["ProSim8Simulator"]

_MAX_LINE_BYTES: Final = 256
_IBP_WAVES: Final = ("ART", "RART", "LV", "LA", "RV", "PA", "PAW", "RA")


class ProSim8Simulator(PatientSimulator):
    """A Fluke ProSim 8 (or 6) vital-signs simulator on a serial port or TCP.

    Parameters
    ----------
    port : str
        ``/dev/ttyUSB0``, an emulator's ``/dev/pts/N``, ``socket://host:port``.
    baudrate, handshake
        Line settings (115200, ``"rtscts"``; 8N1 always).
    limits : SimulatorLimits, optional
        The bench's narrower ranges (checked before sending).
    name, clock, retry
        As for every driver.
    """

    protocol: ClassVar[str] = "prosim8"

    def __init__(
        self,
        port: str,
        *,
        baudrate: int = 115200,
        handshake: str = "rtscts",
        limits: SimulatorLimits | None = None,
        name: str | None = None,
        clock: Clock | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        super().__init__(port, limits=limits, name=name, clock=clock, retry=retry)
        self.baudrate = baudrate
        self.handshake = handshake
        line_settings(port, self.name, **self._line())
        self._transport: ByteTransport | None = None

    def _line(self) -> dict[str, Any]:
        return {
            "baudrate": self.baudrate,
            "bytesize": 8,
            "parity": "N",
            "stopbits": 1,
            "handshake": self.handshake,
        }

    # -- transport ---------------------------------------------------------------------

    async def _open(self) -> None:
        transport = open_transport(self.port, device=self.name, **self._line())
        await transport.open()
        transport.discard_input()
        self._transport = transport
        try:
            await self._retrying("open", lambda: self._command("REMOTE"), reconnect=False)
        except BaseException:
            self._transport = None
            await transport.close()
            raise

    async def _close(self) -> None:
        transport = self._transport
        if transport is not None and transport.is_open:
            with contextlib.suppress(DeviceError, OSError, TimeoutError):
                await self._retrying("close", lambda: self._command("LOCAL"), reconnect=False)
        self._transport = None
        if transport is not None:
            await transport.close()

    async def _resync(self) -> None:
        if self._transport is not None:
            self._transport.discard_input()

    def _port(self) -> ByteTransport:
        if self._transport is None:
            raise PortError(f"{self.port} is not open (lost, reopening failed)", device=self.name)
        return self._transport

    async def _exchange(self, name: str, *args: int | str) -> tuple[object, bytes]:
        data = encode_command(name, *args, device=self.name)
        port = self._port()
        # ``OK`` carries no reference to its command: a reply that arrived after its
        # command timed out would pass for the answer to this one, so drop it first.
        port.discard_input()
        await port.write(data)
        line = await port.read_until(LINE_END[-1:], max_size=_MAX_LINE_BYTES)
        reply = parse_reply(line, command=name, device=self.name)
        if isinstance(reply, ErrorReply):
            raise CommandRefused(
                f"{name}: the simulator answered ERR={reply.code:02d} ({reply.meaning})",
                device=self.name,
                reply=line,
            )
        return reply, line

    async def _command(self, name: str, *args: int | str) -> None:
        reply, line = await self._exchange(name, *args)
        if not isinstance(reply, OkReply):
            raise ProtocolError(f"unexpected reply to {name!r}", raw=line, device=self.name)

    # -- PatientSimulator ----------------------------------------------------------------

    async def _identify(self) -> DeviceIdentity:
        reply, line = await self._exchange("IDENT")
        if not isinstance(reply, DataReply):
            raise ProtocolError("unexpected reply to 'IDENT'", raw=line, device=self.name)
        fields = reply.fields
        return DeviceIdentity(
            protocol=self.protocol,
            model=fields[0],
            firmware=fields[1] if len(fields) > 1 else "",
            serial=fields[2] if len(fields) > 2 else "",
            address=self.port,
        )

    async def _set_heart_rate(self, bpm: float) -> None:
        await self._command("NSRA", round(bpm))

    async def _set_spo2(self, percent: float) -> None:
        await self._command("SAT", round(percent))

    async def _set_resp_rate(self, per_min: float) -> None:
        await self._command("RESPRATE", round(per_min))

    async def _set_nibp(self, systolic: float, diastolic: float) -> None:
        await self._command("NIBPP", round(systolic), round(diastolic))

    # -- ProSim extras --------------------------------------------------------------------

    async def set_ibp(self, channel: int, systolic: float, diastolic: float) -> None:
        """Dynamic invasive pressure on ``channel`` (1, 2), mmHg (``IBPP``)."""
        self.limits.check("ibp_mmhg", systolic, device=self.name)
        self.limits.check("ibp_mmhg", diastolic, device=self.name)
        await self._call(
            "set_ibp", lambda: self._command("IBPP", channel, round(systolic), round(diastolic))
        )

    async def set_ibp_static(self, channel: int, pressure: float) -> None:
        """Static invasive pressure on ``channel`` (1, 2), mmHg (``IBPS``)."""
        self.limits.check("ibp_mmhg", pressure, device=self.name)
        await self._call("set_ibp_static", lambda: self._command("IBPS", channel, round(pressure)))

    async def set_ibp_wave(self, channel: int, wave: str) -> None:
        """Invasive-pressure waveform on ``channel`` (``ART``, ``PA`` …; ``IBPW``)."""
        await self._call("set_ibp_wave", lambda: self._command("IBPW", channel, wave))

    async def send(self, name: str, *args: int | str) -> None:
        """Any command of the table answered by ``OK`` (``KEY``, ``VALOFF`` …)."""
        await self._call(name.lower(), lambda: self._command(name, *args))
