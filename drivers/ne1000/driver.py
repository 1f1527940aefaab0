"""The NE-1000 driver: :class:`NE1000Pump` speaks the New Era RS-232 protocol over a transport.

Protocol: New Era Pump Systems, *NE-1000 Multi-Phaser User Manual*, publication 1200-01,
§10.2; the frames and messages are :mod:`medtwin.drivers.ne1000.codec`'s (pure, fuzzable),
this module adds the I/O: a :mod:`medtwin.drivers.transport`, time-outs, retries through
the guarded call path, alarm handling and device limits. Decisions where the manual is
silent are in ``docs/protocols/ne1000.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Any

from medtwin.drivers.base import (
    DeviceIdentity,
    InfusionPump,
    PumpAlarm,
    PumpLimits,
    PumpState,
    PumpStatus,
    RetryPolicy,
)
from medtwin.drivers.clock import Clock
from medtwin.drivers.errors import (
    CommandRefused,
    ConfigurationError,
    DeviceAlarm,
    DeviceError,
    DeviceTimeout,
    LimitError,
    ProtocolError,
)
from medtwin.drivers.ne1000.codec import (
    _VERSION,
    CR,
    MAX_ADDRESS,
    AlarmCode,
    Command,
    ErrorCode,
    Prompt,
    RateUnit,
    Reply,
    VolumeUnit,
    _restated,
    choose_rate,
    choose_volume,
    decode_dispensed,
    decode_quantity,
    encode_command,
    encode_safe_packet,
    format_number,
    parse_number,
    scan_reply,
)
from medtwin.drivers.ne1000.program import (
    MAX_PHASES,
    PUMPING,
    Phase,
    PhaseFunction,
    ProgramError,
    format_function,
    rate_limits_ml_h,
    walk_program,
)
from medtwin.drivers.transport import ByteTransport, open_transport

__all__ = ["DEFAULT_LIMITS", "NE1000Pump"]

log = logging.getLogger(__name__)


_STATES = {
    Prompt.INFUSING: PumpState.INFUSING,
    Prompt.WITHDRAWING: PumpState.WITHDRAWING,
    Prompt.STOPPED: PumpState.STOPPED,
    Prompt.PAUSED: PumpState.PAUSED,
    Prompt.TIMED_PAUSE: PumpState.WAITING,
    Prompt.USER_WAIT: PumpState.WAITING,
    Prompt.PURGING: PumpState.PURGING,
}
_RUNNING = frozenset({Prompt.INFUSING, Prompt.WITHDRAWING, Prompt.PURGING})

#: Syringe range of the NE-1000 family as nesp-lib encodes it (0.1-80.0 mm). The manual
#: page with the DIA range could not be read: unverified, hence only a default that a
#: bench file's limits replace.
DEFAULT_LIMITS = PumpLimits(min_diameter_mm=0.1, max_diameter_mm=80.0)


class NE1000Pump(InfusionPump):
    """Driver for a New Era NE-1000 family syringe pump (RS-232, basic or safe mode).

    Parameters
    ----------
    port : str
        Device path, emulator pty link or ``socket://HOST:PORT``.
    address : int
        Network address 0-99 (``ADR``); replies from another address are errors.
    safe_mode : bool
        Switch the pump to safe mode (CRC-checked packets, communication time-out) on
        open and frame everything as safe-mode packets; a background heartbeat keeps
        the pump's time-out from expiring while the driver is idle. Otherwise the pump
        is put in basic mode on open (the ``SAF0`` packet of the manual).
    safe_mode_timeout_s : int
        The ``SAF`` time-out (1-255 s) used in safe mode.
    baudrate : int
        Line speed; the pump's default is 19,200 baud (8N1).
    limits : PumpLimits, optional
        Declared limits checked before sending; default :data:`DEFAULT_LIMITS`.
    name, clock, retry
        As for every :class:`~medtwin.drivers.base.Device`.
    """

    protocol = "ne1000"
    #: Largest relative rounding a rate, volume or diameter may suffer from the 4-digit
    #: number format before the driver refuses it (half a unit of the 4th digit of 1.000).
    number_tolerance_rel: float = 5e-4

    def __init__(
        self,
        port: str,
        *,
        address: int = 0,
        safe_mode: bool = False,
        safe_mode_timeout_s: int = 10,
        baudrate: int = 19200,
        limits: PumpLimits | None = None,
        name: str | None = None,
        clock: Clock | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        super().__init__(port, limits=limits or DEFAULT_LIMITS, name=name, clock=clock, retry=retry)
        if isinstance(address, bool) or not isinstance(address, int):
            raise ConfigurationError(
                f"{self.name}: address {address!r} is not an integer 0-{MAX_ADDRESS}",
                field="address",
            )
        if not 0 <= address <= MAX_ADDRESS:
            raise ConfigurationError(
                f"{self.name}: address {address} is outside 0-{MAX_ADDRESS}", field="address"
            )
        if safe_mode and not 1 <= safe_mode_timeout_s <= 255:
            raise ConfigurationError(
                f"{self.name}: safe_mode_timeout_s {safe_mode_timeout_s} is outside 1-255 s",
                field="safe_mode_timeout_s",
            )
        self.address = address
        self.safe_mode = bool(safe_mode)
        self.safe_mode_timeout_s = int(safe_mode_timeout_s)
        self.baudrate = baudrate
        self._transport: ByteTransport = open_transport(port, device=self.name, baudrate=baudrate)
        self._rx = bytearray()
        self._framing_safe = False
        self._last_prompt: Prompt | None = None
        self._rate_unit: RateUnit | None = None
        self._unreported: set[PumpAlarm] = set()
        self._heartbeat: asyncio.Task[None] | None = None
        self._last_tx = 0.0
        self._frames: dict[tuple[Command, bool, int], bytes] = {}
        #: The syringe diameter last set through this driver (mm; None: not set), which
        #: bounds program rates to the pump's range for that syringe.
        self.diameter_mm: float | None = None

    # -- public extras -------------------------------------------------------------------

    async def request(self, command: Command) -> Reply:
        """Send any command (guarded: timeout, retries, reconnect) and return the reply
        as is; alarms and errors are not turned into exceptions here."""
        return await self._call("request", lambda: self._exchange(command))

    async def set_direction(self, infuse: bool) -> None:
        """Pumping direction: ``DIR INF`` or ``DIR WDR``."""
        await self._call(
            "set_direction", lambda: self._command(Command("DIR", "INF" if infuse else "WDR"))
        )

    async def set_rate(self, rate_ml_h: float) -> None:
        """Set the rate (mL/h); refused before sending if outside the limits or if the
        4-digit number format cannot represent it in any rate unit."""
        self.limits.check_rate(rate_ml_h, device=self.name)
        self._check_syringe_range(rate_ml_h, "rate")
        self._rate_argument(rate_ml_h)
        await super().set_rate(rate_ml_h)

    async def set_syringe_diameter(self, diameter_mm: float) -> None:
        self.limits.check_diameter(diameter_mm, device=self.name)
        self._number_argument(diameter_mm, "syringe diameter", "mm")
        await super().set_syringe_diameter(diameter_mm)
        self.diameter_mm = diameter_mm

    async def upload_program(self, phases: Sequence[Phase]) -> None:
        """Write a Pumping Program into the pump (manual 1200-01 §8, §10.4): for phase n,
        ``PHN n`` and ``FUN <function>``, and for a pumping phase its ``RAT``, ``VOL``
        (units, then value) and ``DIR``; then ``PHN 1``. Phases beyond the program keep
        what the pump had: end the program with a ``STP`` phase.

        Everything is checked before anything is sent (:class:`LimitError`): at most 41
        phases, each phase's own ranges, jump and trigger targets inside the program, every
        rate the program reaches (after ``INC``/``DEC``) inside the declared limits and the
        pump's range for the syringe set with :meth:`set_syringe_diameter`, and numbers
        the 4-digit format can carry.
        """
        commands = self._program_commands(phases)

        async def send() -> None:
            for command in commands:
                await self._command(command)

        await self._call("upload_program", send)

    async def run_program(self, start_phase: int = 1) -> None:
        """Start the Pumping Program at ``start_phase`` (``RUN n``)."""
        if not 1 <= start_phase <= MAX_PHASES:
            raise LimitError(
                f"start phase {start_phase} outside 1-{MAX_PHASES}; nothing was sent",
                device=self.name,
            )
        await self._call("run_program", lambda: self._command(Command("RUN", str(start_phase))))

    async def set_volume_target(self, volume_ml: float | None) -> None:
        if volume_ml:
            self.limits.check_volume(volume_ml, device=self.name)
            self._volume_argument(volume_ml)
        await super().set_volume_target(volume_ml)

    # -- argument encoding (no I/O: runs before anything is sent) ----------------------

    def _program_commands(self, phases: Sequence[Phase]) -> list[Command]:
        if not 1 <= len(phases) <= MAX_PHASES:
            raise LimitError(
                f"a program has 1-{MAX_PHASES} phases, not {len(phases)}; nothing was sent",
                device=self.name,
            )
        try:
            for number, phase in enumerate(phases, 1):
                phase.check()
                targets = phase.function in (PhaseFunction.JUMP, PhaseFunction.EVENT)
                if targets and phase.argument > len(phases):
                    raise ProgramError(
                        f"phase {number}: {phase.function.value} to phase {phase.argument}, "
                        f"beyond the program's {len(phases)} phases"
                    )
            reached = [rate for _, step, rate in walk_program(phases) if step is not None]
            steps = [step for _, step, _ in walk_program(phases) if step is not None]
        except ProgramError as exc:
            raise LimitError(f"{exc}; nothing was sent", device=self.name) from None
        for rate, step in zip(reached, steps, strict=True):
            if step.function not in PUMPING:
                continue
            self.limits.check_rate(rate, device=self.name)
            self._check_syringe_range(rate, "program rate")
        commands: list[Command] = []
        for number, phase in enumerate(phases, 1):
            commands += [Command("PHN", str(number)), Command("FUN", format_function(phase))]
            if phase.function not in PUMPING:
                continue
            unit, text = self._program_rate(phase.rate_ml_h)
            commands.append(Command("RAT", text + unit.value))
            if phase.volume_ml:
                self.limits.check_volume(phase.volume_ml, device=self.name)
                volume_unit, volume_text = self._volume_argument(phase.volume_ml)
                commands += [Command("VOL", volume_unit.value), Command("VOL", volume_text)]
            else:
                commands.append(Command("VOL", "0"))
            commands.append(Command("DIR", "INF" if phase.infuse else "WDR"))
        commands.append(Command("PHN", "1"))
        return commands

    def _check_syringe_range(self, rate_ml_h: float, what: str) -> None:
        """LimitError for a rate outside the pump's range for the syringe last set through
        this driver (manual §12.7; :func:`~medtwin.drivers.ne1000.program.rate_limits_ml_h`).
        """
        if not self.diameter_mm:
            return
        low, high = rate_limits_ml_h(self.diameter_mm)
        if not low * (1 - 5e-4) <= rate_ml_h <= high * (1 + 5e-4):
            raise LimitError(
                f"{what} {rate_ml_h:g} mL/h outside the pump's {low:.4g}-{high:.4g} mL/h "
                f"for a {self.diameter_mm:g} mm syringe; nothing was sent",
                device=self.name,
            )

    def _program_rate(self, rate_ml_h: float) -> tuple[RateUnit, str]:
        try:
            return choose_rate(rate_ml_h, tolerance_rel=self.number_tolerance_rel)
        except ValueError as exc:
            raise LimitError(f"{exc}; nothing was sent", device=self.name) from None

    def _rate_argument(self, rate_ml_h: float) -> tuple[RateUnit, str]:
        prefer = self._rate_unit if self._last_prompt in _RUNNING else None
        try:
            return choose_rate(rate_ml_h, tolerance_rel=self.number_tolerance_rel, prefer=prefer)
        except ValueError as exc:
            raise LimitError(f"{exc}; nothing was sent", device=self.name) from None

    def _volume_argument(self, volume_ml: float) -> tuple[VolumeUnit, str]:
        try:
            return choose_volume(volume_ml, tolerance_rel=self.number_tolerance_rel)
        except ValueError as exc:
            raise LimitError(f"{exc}; nothing was sent", device=self.name) from None

    def _number_argument(self, value: float, what: str, unit: str) -> str:
        try:
            text = format_number(value)
        except ValueError as exc:
            raise LimitError(f"{what} {exc}; nothing was sent", device=self.name) from None
        if value and abs(float(text) - value) / value > self.number_tolerance_rel:
            raise LimitError(
                f"{what} {value:g} {unit} cannot be written in 4 digits (would be {text}); "
                "nothing was sent",
                device=self.name,
            )
        return text

    # -- wire ------------------------------------------------------------------------------

    async def _exchange(self, command: Command, *, safe: bool | None = None) -> Reply:
        reply, _ = await self._exchange_raw(command, safe=safe)
        return reply

    def _frame(self, command: Command, as_packet: bool) -> bytes:
        """The bytes for ``command`` (addressed to this pump unless it names an address)."""
        key = (command, as_packet, self.address)
        frame = self._frames.get(key)
        if frame is None:
            address = self.address if command.address is None else command.address
            try:
                payload = encode_command(Command(command.name, command.argument, address))
            except ValueError as exc:
                raise LimitError(f"{exc}; nothing was sent", device=self.name) from None
            data = payload.encode("ascii")
            frame = encode_safe_packet(data) if as_packet else data + bytes([CR])
            if len(self._frames) >= 256:
                self._frames.clear()  # a bound, not an LRU: requests repeat a handful of frames
            self._frames[key] = frame
        return frame

    async def _exchange_raw(
        self, command: Command, *, safe: bool | None = None
    ) -> tuple[Reply, bytes]:
        frame = self._frame(command, self._framing_safe if safe is None else safe)
        # A reply that arrived after its request timed out (or an auto-alarm packet the
        # pump sent while we were idle) must not be taken for the answer to this one.
        self._transport.discard_input()
        self._rx.clear()
        await self._transport.write(frame)
        self._last_tx = time.monotonic()
        reply, raw = await self._read_reply()
        if reply.address != self.address:
            raise ProtocolError(
                f"reply from address {reply.address}, expected {self.address}",
                raw=raw,
                device=self.name,
            )
        self._last_prompt = reply.prompt
        return reply, raw

    async def _read_reply(self) -> tuple[Reply, bytes]:
        while True:
            if self._rx:
                try:
                    decoded, frame, index = scan_reply(self._rx)
                except ProtocolError as exc:
                    self._rx.clear()
                    raise _restated(exc, device=self.name) from None
                del self._rx[:index]
                if decoded is not None:
                    return decoded[0], frame
            self._rx += await self._transport.read_some()

    async def _command(self, command: Command) -> Reply:
        """Exchange and turn alarm/error replies into exceptions."""
        reply, raw = await self._exchange_raw(command)
        self._raise_for(reply, raw, command)
        return reply

    def _raise_for(self, reply: Reply, raw: bytes, command: Command) -> None:
        what = command.text() or "status query"
        if reply.alarm is not None:
            alarm = reply.alarm.pump_alarm
            raise DeviceAlarm(
                f"pump is in alarm A?{reply.alarm.value} ({alarm.value}); it did not execute "
                f"{what!r}. The reply acknowledged the alarm: check the pump, then retry",
                device=self.name,
                alarm=alarm.value,
            )
        if reply.error is not None:
            raise CommandRefused(
                f"pump refused {what!r}: ?{reply.error.value} ({reply.error.meaning})",
                device=self.name,
                reply=raw,
            )

    # -- lifecycle -------------------------------------------------------------------------

    async def _open(self) -> None:
        await self._transport.open()
        try:
            reply, raw = await self._set_mode()
            if self.safe_mode:
                self._raise_for(reply, raw, Command("SAF", str(self.safe_mode_timeout_s)))
        except BaseException:
            await self._transport.close()
            raise
        self._framing_safe = self.safe_mode
        if self.safe_mode and self._heartbeat is None:
            self._heartbeat = asyncio.get_running_loop().create_task(
                self._keep_alive(), name=f"{self.name}-heartbeat"
            )

    async def _set_mode(self) -> tuple[Reply, bytes]:
        """Send ``SAF`` as a safe-mode packet (with the retry policy) and return the reply.

        The pump recognises safe-mode packets in either mode, so this sets the mode
        whatever the pump was left in, like the manual's ``02 08 'SAF0' 55 43 03``.
        """
        argument = str(self.safe_mode_timeout_s) if self.safe_mode else "0"
        command = Command("SAF", argument)

        async def attempt() -> tuple[Reply, bytes]:
            for _ in range(len(AlarmCode) + 1):
                reply, raw = await self._exchange_raw(command, safe=True)
                if reply.alarm is None:
                    return reply, raw
                # The alarm reply acknowledged that alarm and SAF was not executed: send
                # it again. A power-up reset is expected when connecting; any other alarm
                # is reported by the next status.
                if reply.alarm is not AlarmCode.RESET:
                    self._unreported.add(reply.alarm.pump_alarm)
            return reply, raw

        try:
            return await self._retrying("open", attempt, reconnect=False)
        except DeviceTimeout:
            raise DeviceTimeout(
                f"no reply to SAF{argument} within {self.retry.timeout_s:g} s "
                f"({self.retry.retries + 1} attempts) on {self.port}; check the baud rate "
                f"({self.baudrate}), the address ({self.address}) and the cable",
                device=self.name,
            ) from None

    async def _close(self) -> None:
        heartbeat, self._heartbeat = self._heartbeat, None
        if heartbeat is not None and heartbeat is not asyncio.current_task():
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
        await self._transport.close()
        self._rx.clear()

    async def _keep_alive(self) -> None:
        """Send a status query whenever the line has been quiet for a third of the
        safe-mode time-out, so the pump's communication alarm never fires on an idle
        but healthy link."""
        period = self.safe_mode_timeout_s / 3
        while True:
            wait = self._last_tx + period - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            try:
                async with self._lock:
                    if time.monotonic() - self._last_tx < period:
                        continue
                    reply = await self._within(
                        lambda: self._exchange(Command()), what="heartbeat: no reply"
                    )
                if reply.alarm is not None:
                    self._unreported.add(reply.alarm.pump_alarm)
            except (DeviceError, ProtocolError, TimeoutError) as exc:
                # The next user call retries, reconnects and reports; keep beating.
                log.debug("%s: heartbeat failed: %s", self.name, exc)
                self._last_tx = time.monotonic()

    async def _resync(self) -> None:
        self._transport.discard_input()
        self._rx.clear()

    # -- InfusionPump backend ----------------------------------------------------------

    async def _identify(self) -> DeviceIdentity:
        reply = await self._command(Command("VER"))
        match = _VERSION.match(reply.data)
        if match is None:
            raise ProtocolError(
                f"VER reply {reply.data!r} is not NE<model>V<version>",
                raw=reply.data.encode(),
                device=self.name,
            )
        return DeviceIdentity(
            protocol=self.protocol,
            model=f"NE-{match.group('model')}",
            firmware=match.group("version"),
            address=str(self.address),
        )

    async def _set_diameter(self, diameter_mm: float) -> None:
        text = self._number_argument(diameter_mm, "syringe diameter", "mm")
        await self._command(Command("DIA", text))

    async def _read_diameter(self) -> float:
        # "DIA" without an argument queries the programmed diameter: "<float>" in mm.
        reply = await self._command(Command("DIA"))

        def parse(data: str) -> float:
            try:
                return parse_number(data, strict=False)
            except ValueError as exc:
                raise ProtocolError(f"bad DIA reply {data!r}: {exc}", raw=data.encode()) from None

        return float(_decoded(parse, reply.data, self.name))

    async def _set_rate(self, rate_ml_h: float) -> None:
        unit, text = self._rate_argument(rate_ml_h)
        await self._command(Command("RAT", text + unit.value))
        self._rate_unit = unit

    async def _set_volume_target(self, volume_ml: float | None) -> None:
        if not volume_ml:
            await self._command(Command("VOL", "0"))
            return
        unit, text = self._volume_argument(volume_ml)
        await self._command(Command("VOL", unit.value))
        await self._command(Command("VOL", text))

    async def _start(self) -> None:
        await self._command(Command("RUN"))

    async def _stop(self) -> None:
        # The first STP of a running program pauses it (P); a second one stops it (S).
        # STP on a stopped pump is answered ?NA: it is stopped, which is what was asked.
        for _ in range(3):
            reply, raw = await self._exchange_raw(Command("STP"))
            if reply.error is ErrorCode.NOT_APPLICABLE and reply.prompt is Prompt.STOPPED:
                return
            self._raise_for(reply, raw, Command("STP"))
            if reply.prompt is not Prompt.PAUSED:
                return
        raise DeviceError("pump still paused after three STP commands", device=self.name)

    async def _clear_alarms(self) -> None:
        # Any valid command acknowledges an alarm by being answered with it (NE-1600 and
        # NE-4000 manuals §9.3); the status query changes nothing else.
        for _ in range(3):
            reply = await self._exchange(Command())
            if reply.alarm is None:
                break
        self._unreported.clear()

    async def _clear_volume(self) -> None:
        await self._command(Command("CLD", "INF"))
        await self._command(Command("CLD", "WDR"))

    async def _status_reading(self) -> PumpStatus:
        reply, raw = await self._exchange_raw(Command("DIS"))
        t_s = self.clock.now()
        if reply.alarm is not None:
            return self._alarm_status(t_s, reply.alarm)
        self._raise_for(reply, raw, Command("DIS"))
        assert reply.prompt is not None
        infused_ml, withdrawn_ml = _decoded(decode_dispensed, reply.data, self.name)
        rate_ml_h: float | None = 0.0
        if reply.prompt in (Prompt.INFUSING, Prompt.WITHDRAWING):
            rate_reply, rate_raw = await self._exchange_raw(Command("RAT"))
            if rate_reply.alarm is not None:
                return self._alarm_status(self.clock.now(), rate_reply.alarm)
            self._raise_for(rate_reply, rate_raw, Command("RAT"))
            value, unit = _decoded(
                lambda data: decode_quantity(data, RateUnit), rate_reply.data, self.name
            )
            self._rate_unit = unit
            rate_ml_h = value * unit.ml_h
        elif reply.prompt is Prompt.PURGING:
            rate_ml_h = None  # purging runs at the drive's maximum, which RAT does not report
        alarms = frozenset(self._unreported)
        self._unreported.clear()
        return PumpStatus(
            t_s=t_s,
            state=PumpState.ALARM if alarms else _STATES[reply.prompt],
            alarms=alarms,
            rate_ml_h=rate_ml_h,
            infused_ml=infused_ml,
            withdrawn_ml=withdrawn_ml,
            pressure_mmhg=None,  # the NE-1000 has no pressure sensor
        )

    def _alarm_status(self, t_s: float, alarm: AlarmCode) -> PumpStatus:
        alarms = frozenset({alarm.pump_alarm, *self._unreported})
        self._unreported.clear()
        return PumpStatus(t_s=t_s, state=PumpState.ALARM, alarms=alarms, rate_ml_h=0.0)


def _decoded(parse: Any, data: str, device: str) -> Any:
    try:
        return parse(data)
    except ProtocolError as exc:
        raise _restated(exc, device=device) from None
