"""The device side of the New Era NE-1000 RS-232 protocol, over a pump mechanism.

:class:`NE1000Protocol` is the pump's firmware as seen from its serial port: a pure state
machine (bytes in, reply frames out, no I/O) that executes commands on a
:class:`~medtwin.drivers.emulators.mechanisms.PumpMechanism` and answers exactly as the NE-1000
Multi-Phaser manual (publication 1200-01, §10.2) and its siblings (NE-1600/NE-4000 §9.3-9.4)
describe. :class:`NE1000Emulator`
serves it on a pty or TCP port (:mod:`medtwin.drivers.emulators.serial_server`), so nesp-lib, a
terminal emulator or :class:`medtwin.drivers.ne1000.NE1000Pump` drive it unmodified.

Implemented (framing and number format in :mod:`medtwin.drivers.ne1000.codec`, which this shares):

* basic mode (``command CR``; spaces and control characters stripped, upper-cased) and
  safe mode (``STX length data CRC ETX``); safe-mode packets are recognised in basic mode
  too, which is how ``SAF<n>`` switches modes; a reply is framed in the mode the pump is
  in *after* the command. In safe mode basic text is ignored, a packet whose length,
  CRC or ETX is wrong is answered ``?COM``, and a packet left incomplete for more than
  0.5 s (the manual's inter-byte time-out, a wire property, so in wall time) is
  discarded;
* the ``SAF`` time-out on the device clock: armed by the first valid packet (not at
  power-up), reset by every valid packet, raising ``A?T`` through
  ``mechanism.raise_alarm(COMMUNICATION_TIMEOUT)`` (which stops the pump) when it
  expires; in safe mode every new alarm is also sent unsolicited (auto-alarm);
* alarms ``A?R`` (power-up: pending when the emulator is built, like a pump just switched
  on; it is firmware state, kept here rather than in the mechanism), ``A?S`` (motor stall;
  an occlusion shows as a stall, the NE-1000 senses no pressure), ``A?T``, ``A?E``,
  ``A?O``. An alarm is acknowledged by being sent in reply
  to any recognised command, which is then *not* executed (the manual: "the alarm must be
  acknowledged before any data is changed or the pump is started"); an auto-alarm packet
  does not acknowledge it. Unrecognised input is answered with the error and leaves the
  alarm pending;
* errors ``?`` (unrecognised command or malformed argument), ``?NA`` (not applicable in
  the current state, e.g. ``DIA`` while pumping, ``STP`` while stopped), ``?OOR`` (value
  out of range or more than 4 digits / 3 decimals), ``?COM``;
* commands ``DIA``, ``RAT`` (MM/MH/UM/UH; units cannot change while pumping), ``VOL``
  (value, ``ML``/``UL``; the default units follow the syringe, µL up to 14.00 mm),
  ``DIR`` (INF/WDR/REV), ``RUN``, ``STP`` (running → paused ``P``, paused → stopped
  ``S``), ``PUR``, ``DIS``, ``CLD``, ``VER``, ``SAF``, ``ADR``, ``AL``, ``BP``, ``PF``,
  ``RESET``/``*RESET``; network addresses 0-99, ``*`` system commands and network
  command bursts (``0RAT100MH*1RAT250MH*``);
* rates outside the syringe's range are ``?OOR``: the drive's plunger-speed range times
  the syringe's area (manual §12.7, :func:`medtwin.drivers.ne1000.program.rate_limits_ml_h`);
* the Pumping Program (manual §8): ``PHN``, ``FUN`` (``RAT``, ``INC``, ``DEC``, ``STP``,
  ``JMP``, ``LPS``, ``LOP``, ``LPE``, ``PAS``, ``BEP``, ``OUT``, ``EVN``), ``RUN n``, the
  ``T`` prompt of a timed pause, ``A?O``/``A?E`` (:mod:`.ne1000_program`);
* commands of the manual whose hardware the emulated pump lacks (TTL I/O, triggers,
  keypad lock, buzzer) are ``?NA``, not ``?``;
* no pressure sensor: the emulator declares the drive sensorless
  (``mechanism.set_pressure_sensor(False)``), so an occlusion stalls the motor at the
  drive's force limit (``A?S``), and so does an empty syringe (the plunger reaches the
  barrel's end), which ``RUN`` does not clear silently.

Where the manual is silent, the choice is documented in ``docs/protocols/ne1000.md``
(reply formats checked against nesp-lib and published pump logs). Each such choice is a
constructor option where it could matter to a client.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any, ClassVar

from medtwin.drivers.base import PumpAlarm, PumpState
from medtwin.drivers.clock import Clock
from medtwin.drivers.emulators.faults import FaultPlan
from medtwin.drivers.emulators.mechanisms import PumpMechanism, PumpSnapshot
from medtwin.drivers.emulators.ne1000_program import ProgramCommands, ProgramExecution
from medtwin.drivers.emulators.ne1000_program import RefusedCommand as _RefusedError
from medtwin.drivers.emulators.serial_server import Pacing, ProtocolHandler, SerialDeviceEmulator
from medtwin.drivers.errors import ProtocolError
from medtwin.drivers.ne1000.codec import (
    BROADCAST,
    MAX_COMMAND_LINE,
    STX,
    UNKNOWN,
    AlarmCode,
    Command,
    ErrorCode,
    NE1000Framer,
    Prompt,
    RateUnit,
    Reply,
    VolumeUnit,
    choose_rate,
    clean_command_text,
    decode_command,
    decode_safe_packet,
    encode_reply,
    format_number,
    parse_number,
)
from medtwin.drivers.ne1000.program import (
    MAX_SPEED_MM_H,
    MIN_SPEED_MM_H,
    PhaseFunction,
)

__all__ = ["NE1000Emulator", "NE1000Protocol"]

#: Alarm reported first when several are active.
_ALARM_PRIORITY = (
    AlarmCode.RESET,
    AlarmCode.STALL,
    AlarmCode.TIMEOUT,
    AlarmCode.PROGRAM_ERROR,
    AlarmCode.OUT_OF_RANGE,
)
#: Longest basic command line kept; longer input is answered "?" at its CR.
MAX_LINE = MAX_COMMAND_LINE
#: Syringe diameter at or below which the volume units default to µL (manual, quick start).
UL_DIAMETER_LIMIT_MM = 14.0
#: Baud rates ``ADR ... B`` accepts (NE-9000 manual §12.4.5; same family).
ADR_BAUD_RATES = (19200, 9600, 2400, 1200, 300)

#: Commands that change state even without an argument (all others only query then).
_MUTATING = frozenset({"RUN", "STP", "PUR", "RESET"})
#: Commands of the manual's command set that the emulated pump does not carry out (TTL
#: I/O, triggers, keypad lock, buzzer, program ROM): answered ``?NA``, not ``?``.
NOT_EMULATED = ("TRG", "DIN", "ROM", "LOC", "OUT", "IN", "BUZ")
_VERSION = re.compile(r"^NE\d+(?:X\d*)?V\d+\.\d+$")
_NUMBER_CHARS = re.compile(r"^[\d.]+$")
_RATE_ARG = re.compile(r"^(?P<value>[\d.]+)(?P<unit>MM|MH|UM|UH)?$")
_ADR_ARG = re.compile(r"^(?P<address>\d{1,2})(?:B(?P<baud>\d+))?(?P<mode>DUAL|RECP)?$")


class NE1000Protocol(ProgramCommands, ProtocolHandler):
    """NE-1000 firmware over a pump mechanism (pure: no I/O, time from ``clock``).

    Parameters
    ----------
    mechanism : PumpMechanism
        The pump drive (normally ``PhysicalBench.pump``).
    clock : Clock
        Device time base: safe-mode and inter-byte time-outs are measured on it.
    address : int
        Network address 0-99.
    safe_mode_timeout_s : int
        ``SAF`` setting at power-up (0: basic mode). The pump keeps it in non-volatile
        memory, so a pump last left in safe mode starts in safe mode.
    power_on_alarm : bool
        Start with the ``A?R`` reset alarm pending, as a pump that was just switched on.
    version : str, optional
        What ``VER`` reports. Default: the mechanism's ``firmware`` when it has the
        ``NE<model>V<n>.<n>`` form, else ``NE1000V3.928``.
    inter_byte_timeout_s : float
        Packet inter-byte time-out (0.5 s per the manual), wall seconds.
    reply_to_system_commands : bool
        Whether ``*`` commands are answered. The manual's ``*ADR`` examples describe the
        response, so the default is yes; a multi-pump network would answer in chorus.
    poll_interval_s : float
        How often the server asks for auto-alarm output (wall seconds).
    wall_time : callable
        Wall-clock source for the inter-byte time-out (``time.monotonic``; tests inject).
    min_plunger_speed_mm_h, max_plunger_speed_mm_h : float
        The drive's plunger speed range: ``RAT`` outside speed × the syringe's area is
        ``?OOR`` (manual §12.7 "Syringe Diameters and Rate Limits"; the defaults come from
        New Era's specification and are unverified, see
        :mod:`medtwin.drivers.ne1000.program`).
    """

    device_name = "NE1000"

    def __init__(
        self,
        mechanism: PumpMechanism,
        *,
        clock: Clock,
        address: int = 0,
        safe_mode_timeout_s: int = 0,
        power_on_alarm: bool = True,
        version: str | None = None,
        inter_byte_timeout_s: float = 0.5,
        reply_to_system_commands: bool = True,
        poll_interval_s: float = 0.1,
        wall_time: Callable[[], float] = time.monotonic,
        min_plunger_speed_mm_h: float = MIN_SPEED_MM_H,
        max_plunger_speed_mm_h: float = MAX_SPEED_MM_H,
    ) -> None:
        if not 0 <= address <= 99:
            raise ValueError(f"NE-1000 address {address} outside 0-99")
        if not 0 <= safe_mode_timeout_s <= 255:
            raise ValueError(f"NE-1000 SAF time-out {safe_mode_timeout_s} outside 0-255 s")
        self.mechanism = mechanism
        # The NE-1000 has no force or pressure sensor: an occlusion reaches it only as a
        # motor stall at the drive's force limit (the drive model's max_force_n).
        mechanism.set_pressure_sensor(False)
        self.speed_range_mm_h = (min_plunger_speed_mm_h, max_plunger_speed_mm_h)
        self.clock = clock
        self.address = address
        firmware = str(getattr(mechanism, "firmware", ""))
        self.version = version or (firmware if _VERSION.match(firmware) else "NE1000V3.928")
        self.inter_byte_timeout_s = inter_byte_timeout_s
        self.wall_time = wall_time
        self.reply_to_system_commands = reply_to_system_commands
        self.poll_interval_s = poll_interval_s
        self.saf_timeout_s = safe_mode_timeout_s
        self.baud_setting = 19200
        self.settings = {"AL": 0, "BP": 0, "PF": 0}
        # Safe-mode communication time-out: not armed until the first valid packet.
        self._timer_armed = False
        self._last_valid_t = 0.0
        self._auto_reported: set[AlarmCode] = set()
        # Program state the mechanism does not keep.
        self._paused = False
        self._run_counter_ml = 0.0
        snapshot = mechanism.snapshot()
        self.diameter_mm = snapshot.diameter_mm
        self.infuse = snapshot.infusing
        try:
            self.rate_unit, rate_text = choose_rate(snapshot.rate_setpoint_ml_h)
        except ValueError:
            self.rate_unit, rate_text = RateUnit.ML_H, "0"
        self.rate_value = float(rate_text)
        self.volume_unit = self._default_volume_unit()
        target_ml = snapshot.volume_target_ml or 0.0
        self.volume_value = target_ml / self.volume_unit.ml
        # Pumping Program memory: phase data of the phases not selected (the selected
        # phase's data are the fields above), the selected phase and its function.
        self.phase_number = 1
        self.phase_count = 1
        self.function: PhaseFunction = PhaseFunction.RATE
        self.function_argument = 0
        self._stored: dict[int, tuple[Any, ...]] = {}
        self._program: ProgramExecution | None = None
        self._program_alarm: AlarmCode | None = None
        self._commands: dict[str, Callable[[str], str]] = {
            "": self._cmd_status,
            "VER": self._cmd_ver,
            "SAF": self._cmd_saf,
            "DIA": self._cmd_dia,
            "RAT": self._cmd_rat,
            "VOL": self._cmd_vol,
            "DIR": self._cmd_dir,
            "RUN": self._cmd_run,
            "STP": self._cmd_stp,
            "PUR": self._cmd_pur,
            "DIS": self._cmd_dis,
            "CLD": self._cmd_cld,
            "ADR": self._cmd_adr,
            "AL": self._cmd_flag,
            "BP": self._cmd_flag,
            "PF": self._cmd_flag,
            "PHN": self._cmd_phn,
            "FUN": self._cmd_fun,
            "RESET": self._cmd_reset,
            **dict.fromkeys(NOT_EMULATED, self._cmd_not_emulated),
        }
        self._current_name = ""
        self._reset_pending = power_on_alarm
        self._snap = snapshot  # the state the command being executed found

    # -- ProtocolHandler -------------------------------------------------------------------

    @property
    def safe_mode(self) -> bool:
        return self.saf_timeout_s > 0

    def new_framer(self) -> NE1000Framer:
        # Text is read in basic mode only; the inter-byte time-out is about the wire, so
        # it runs on wall time: a virtual clock standing still must not keep a stray STX
        # waiting forever.
        return NE1000Framer(
            text_enabled=lambda: not self.safe_mode,
            inter_byte_timeout_s=self.inter_byte_timeout_s,
            wall_time=self.wall_time,
            max_line=MAX_LINE,
        )

    def handle(self, frame: bytes) -> list[bytes]:
        now = self.clock.now()
        self._check_timeout(now)
        if frame[0] == STX:
            if len(frame) == 2:  # a length byte too small for any packet
                return self._error_frame(ErrorCode.COMMUNICATION)
            return self._on_packet(frame, now)
        line = frame[:-1]
        return self._on_text(clean_command_text(line[:MAX_LINE]), overflow=len(line) > MAX_LINE)

    def unsolicited(self) -> list[bytes]:
        if not self.safe_mode:
            return []
        self._check_timeout(self.clock.now())
        active = self._alarm_codes(self.mechanism.snapshot())
        new = [code for code in active if code not in self._auto_reported]
        self._auto_reported = set(active)
        return [encode_reply(Reply(self.address, None, code), safe=True) for code in new]

    def corrupt_checksum(self, reply: bytes) -> bytes:
        """A reply with its checksum broken, the framer's way (CRC of a safe-mode packet;
        a basic-mode reply has none, so one data byte is garbled)."""
        return self.new_framer().break_checksum(reply)

    # -- framing -----------------------------------------------------------------------------

    def _on_packet(self, frame: bytes, now: float) -> list[bytes]:
        try:
            payload = decode_safe_packet(frame)
        except ProtocolError:
            return self._error_frame(ErrorCode.COMMUNICATION)
        self._last_valid_t = now
        self._timer_armed = self.safe_mode
        return self._on_text(clean_command_text(payload))

    def _error_frame(self, error: ErrorCode) -> list[bytes]:
        reply = Reply(self.address, self._prompt(self.mechanism.snapshot()), error=error)
        return [encode_reply(reply, safe=self.safe_mode)]

    def _on_text(self, text: str, *, overflow: bool = False) -> list[bytes]:
        if overflow:
            return self._error_frame(ErrorCode.UNRECOGNIZED)
        if not text.startswith(BROADCAST) and BROADCAST in text:
            return self._on_burst(text)
        reply = self._handle(decode_command(text))
        return [] if reply is None else [encode_reply(reply, safe=self.safe_mode)]

    def _on_burst(self, text: str) -> list[bytes]:
        # Network command burst: "<n><command>*" repeated; each pump executes its own
        # part and answers (the manual warns the answers collide on a real network).
        reply: Reply | None = None
        for segment in filter(None, text.split(BROADCAST)):
            command = decode_command(segment)
            if command.address == self.address:
                reply = self._handle(command)
        return [] if reply is None else [encode_reply(reply, safe=self.safe_mode)]

    # -- commands ----------------------------------------------------------------------------

    def _handle(self, command: Command) -> Reply | None:
        if command.address == BROADCAST:
            if not self.reply_to_system_commands:
                self._execute(command)
                return None
        elif command.address is not None and command.address != self.address:
            return None
        return self._execute(command)

    def _execute(self, command: Command) -> Reply:
        snapshot = self._snap = self.mechanism.snapshot()
        if command.name == UNKNOWN:
            return Reply(self.address, self._prompt(snapshot), error=ErrorCode.UNRECOGNIZED)
        pending = self._alarm_codes(snapshot)
        if pending:
            # Sending the alarm in reply to a valid command acknowledges it; the command
            # itself is not executed. A running program has ended with the alarm.
            if self._program is not None:
                self._program.abort()
            code = pending[0]
            if code is AlarmCode.RESET and self._reset_pending:
                self._reset_pending = False  # the mechanism's own alarms stay pending
            elif code is self._program_alarm:
                self._program_alarm = None
            else:
                self.mechanism.clear_alarms()
            self._auto_reported.discard(code)
            return Reply(self.address, None, code)
        self._current_name = command.name
        try:
            data = self._commands[command.name](command.argument)
            error = None
        except _RefusedError as refusal:
            data, error = "", refusal.error
        if error is None and not (command.argument or command.name in _MUTATING):
            after = snapshot  # a query changes nothing: the state it started from stands
        else:
            after = self.mechanism.snapshot()
        return Reply(self.address, self._prompt(after), None, error, data)

    def _cmd_status(self, argument: str) -> str:
        return ""

    def _cmd_ver(self, argument: str) -> str:
        if argument:
            raise _RefusedError(ErrorCode.NOT_APPLICABLE)
        return self.version

    def _cmd_saf(self, argument: str) -> str:
        if not argument:
            return str(self.saf_timeout_s)
        if not argument.isdigit() or len(argument) > 3:
            raise _RefusedError(ErrorCode.UNRECOGNIZED)
        value = int(argument)
        if value > 255:
            raise _RefusedError(ErrorCode.OUT_OF_RANGE)
        self.saf_timeout_s = value
        # "After the reception of this command, valid communications must be received
        # every <time out> seconds."
        self._timer_armed = value > 0
        self._last_valid_t = self.clock.now()
        return ""

    def _cmd_dia(self, argument: str) -> str:
        if not argument:
            return format_number(self.diameter_mm, trailing_point=True)
        value = self._number(argument)
        self._require_stopped()
        self._apply(lambda: self.mechanism.set_diameter_mm(value))
        self.diameter_mm = value
        self.volume_unit = self._default_volume_unit()
        self._paused = False
        return ""

    def _cmd_rat(self, argument: str) -> str:
        if not argument:
            return f"{self._fmt(self.rate_value)}{self.rate_unit.value}"
        match = _RATE_ARG.match(argument)
        if match is None:
            raise _RefusedError(ErrorCode.UNRECOGNIZED)
        value = self._number(match.group("value"))
        unit = RateUnit(match.group("unit")) if match.group("unit") else self.rate_unit
        if unit is not self.rate_unit and self._running():
            raise _RefusedError(ErrorCode.NOT_APPLICABLE)  # units cannot change while pumping
        self._apply(lambda: self._check_rate(value * unit.ml_h))
        if self._selected_phase_is_live():
            self._apply(lambda: self.mechanism.set_rate_ml_h(value * unit.ml_h))
        self.rate_value, self.rate_unit = value, unit
        return ""

    def _cmd_vol(self, argument: str) -> str:
        if not argument:
            return f"{self._fmt(self.volume_value)}{self.volume_unit.value}"
        if argument in ("ML", "UL"):
            self._require_stopped()
            # The stored number keeps its digits and takes the new units (unverified:
            # the manual does not say; nesp-lib always sends the units before the value).
            unit = VolumeUnit(argument)
            if self._selected_phase_is_live():
                self._apply(lambda: self.mechanism.set_volume_target_ml(self._target_ml(unit)))
            self.volume_unit = unit
            self._paused = False
            return ""
        if not _NUMBER_CHARS.match(argument):
            raise _RefusedError(ErrorCode.UNRECOGNIZED)
        value = self._number(argument)
        self._require_stopped()
        self.volume_value, previous = value, self.volume_value
        try:
            if self._selected_phase_is_live():
                self._apply(
                    lambda: self.mechanism.set_volume_target_ml(self._target_ml(self.volume_unit))
                )
        except _RefusedError:
            self.volume_value = previous
            raise
        self._paused = False
        return ""

    def _cmd_dir(self, argument: str) -> str:
        if not argument:
            return "INF" if self.infuse else "WDR"
        if argument == "STK":
            raise _RefusedError(ErrorCode.NOT_APPLICABLE)  # needs the TTL direction input
        if argument not in ("INF", "WDR", "REV"):
            raise _RefusedError(ErrorCode.UNRECOGNIZED)
        if self._running() and self.volume_value:
            # The NE-500 manual §5.4.1: direction changes while pumping only when the
            # volume to be dispensed is 0.
            raise _RefusedError(ErrorCode.NOT_APPLICABLE)
        infuse = {"INF": True, "WDR": False, "REV": not self.infuse}[argument]
        if self._selected_phase_is_live():
            self._apply(lambda: self.mechanism.set_direction(infuse))
        self.infuse = infuse
        return ""

    def _cmd_run(self, argument: str) -> str:
        if argument and (not argument.isdigit() or len(argument) > 2):
            raise _RefusedError(ErrorCode.UNRECOGNIZED)
        start = int(argument) if argument else None
        if start is not None and not 1 <= start <= self.phase_count:
            raise _RefusedError(ErrorCode.OUT_OF_RANGE)  # no such phase in the program
        if self._is_program() or (start or 1) != 1:
            return self._run_program(start)
        snapshot = self._snap
        if self._running(snapshot):
            return ""
        counter = snapshot.infused_ml if self.infuse else snapshot.withdrawn_ml
        target = self._target_ml(self.volume_unit)
        if self._paused and target is not None:
            remaining = target - (counter - self._run_counter_ml)
            if remaining <= 0:
                self._paused = False
                return ""
            run_target: float | None = remaining
        else:
            self._run_counter_ml = counter
            run_target = target
        self._clear_foreign_alarms(snapshot)
        self._apply(lambda: self.mechanism.set_volume_target_ml(run_target))
        self._apply(self.mechanism.start)
        self._paused = False
        return ""

    def _cmd_stp(self, argument: str) -> str:
        if argument:
            raise _RefusedError(ErrorCode.UNRECOGNIZED)
        snapshot = self._snap
        program = self._program
        if program is not None and program.running:
            if program.paused:
                program.abort()  # paused → stopped: the program ends
            else:
                program.pause()
            return ""
        if snapshot.state is PumpState.PURGING:
            self.mechanism.stop()
            self._paused = False
        elif self._running(snapshot) or snapshot.state is PumpState.WAITING:
            self.mechanism.stop()
            self._paused = snapshot.state is not PumpState.WAITING
        elif self._paused:
            self._paused = False
        else:
            raise _RefusedError(ErrorCode.NOT_APPLICABLE)
        return ""

    def _cmd_pur(self, argument: str) -> str:
        if argument:
            raise _RefusedError(ErrorCode.UNRECOGNIZED)
        snapshot = self._snap
        if self._running(snapshot):
            raise _RefusedError(ErrorCode.NOT_APPLICABLE)
        self._clear_foreign_alarms(snapshot)
        self._apply(self.mechanism.purge)
        self._paused = False
        return ""

    def _cmd_dis(self, argument: str) -> str:
        if argument:
            raise _RefusedError(ErrorCode.NOT_APPLICABLE)
        snapshot = self._snap
        unit = self.volume_unit
        largest = max(snapshot.infused_ml, snapshot.withdrawn_ml)
        if unit is VolumeUnit.UL and largest / unit.ml >= 9999.5:
            unit = VolumeUnit.ML  # µL counts past 4 digits are reported in mL
        infused = self._fmt(min(snapshot.infused_ml / unit.ml, 9999.0))
        withdrawn = self._fmt(min(snapshot.withdrawn_ml / unit.ml, 9999.0))
        return f"I{infused}W{withdrawn}{unit.value}"

    def _cmd_cld(self, argument: str) -> str:
        which = {"INF": "infused", "WDR": "withdrawn"}.get(argument)
        if which is None:
            raise _RefusedError(ErrorCode.UNRECOGNIZED)
        self.mechanism.clear_volume("infused" if which == "infused" else "withdrawn")
        if self.infuse == (which == "infused"):
            self._run_counter_ml = 0.0
        return ""

    def _cmd_adr(self, argument: str) -> str:
        if not argument:
            return str(self.address)
        match = _ADR_ARG.match(argument)
        if match is None:
            raise _RefusedError(ErrorCode.UNRECOGNIZED)
        if match.group("mode"):
            raise _RefusedError(ErrorCode.NOT_APPLICABLE)  # dual/reciprocating pairs not emulated
        address = int(match.group("address"))
        baud = int(match.group("baud")) if match.group("baud") else self.baud_setting
        if address > 99 or baud not in ADR_BAUD_RATES:
            raise _RefusedError(ErrorCode.OUT_OF_RANGE)
        # The line speed is the port's business (pacing); the setting is only stored.
        self.address, self.baud_setting = address, baud
        return ""

    def _cmd_flag(self, argument: str) -> str:
        name = self._current_name
        if not argument:
            return str(self.settings[name])
        if argument not in ("0", "1"):
            raise _RefusedError(ErrorCode.OUT_OF_RANGE)
        self.settings[name] = int(argument)
        return ""

    # -- helpers -------------------------------------------------------------------------------

    _FOREIGN_ALARMS: ClassVar[frozenset[PumpAlarm]] = frozenset(
        {PumpAlarm.END_OF_INFUSION, PumpAlarm.NEAR_EMPTY}
    )

    def _clear_foreign_alarms(self, snapshot: PumpSnapshot) -> None:
        # End of infusion / near empty are not NE-1000 alarms (the pump just stops at its
        # volume target); the mechanism may still list them, so RUN clears them. An empty
        # syringe is not among them: it is the stall alarm, acknowledged like any alarm.
        if snapshot.syringe_empty:
            return
        if snapshot.alarms and snapshot.alarms <= self._FOREIGN_ALARMS:
            self.mechanism.clear_alarms()

    def _alarm_codes(self, snapshot: PumpSnapshot) -> list[AlarmCode]:
        codes = {AlarmCode.from_pump_alarm(alarm) for alarm in snapshot.alarms}
        if snapshot.syringe_empty:
            # The NE-1000 has no end-of-syringe sensor: the pusher drives the plunger into
            # the barrel's end and the motor stalls at its force limit.
            codes.add(AlarmCode.STALL)
        if self._reset_pending:
            codes.add(AlarmCode.RESET)
        if self._program_alarm is not None:
            codes.add(self._program_alarm)
        return [code for code in _ALARM_PRIORITY if code in codes]

    def _check_timeout(self, now: float) -> None:
        if self.safe_mode and self._timer_armed and now - self._last_valid_t > self.saf_timeout_s:
            # "The communications time out timer will not restart until the next
            # reception of a valid packet."
            self._timer_armed = False
            self.mechanism.raise_alarm(PumpAlarm.COMMUNICATION_TIMEOUT)

    def _prompt(self, snapshot: PumpSnapshot) -> Prompt:
        program = self._program
        if program is not None and program.running:
            if program.paused:
                return Prompt.PAUSED
            if program.timed_pause:
                return Prompt.TIMED_PAUSE
        state = snapshot.state
        if state is PumpState.INFUSING:
            return Prompt.INFUSING
        if state is PumpState.WITHDRAWING:
            return Prompt.WITHDRAWING
        if state is PumpState.PURGING:
            return Prompt.PURGING
        if state is PumpState.PAUSED:
            return Prompt.PAUSED
        if state is PumpState.WAITING:
            return Prompt.USER_WAIT
        return Prompt.PAUSED if self._paused else Prompt.STOPPED

    def _running(self, snapshot: PumpSnapshot | None = None) -> bool:
        """Whether the pump was running when the current command arrived."""
        state = (snapshot or self._snap).state
        return state in (PumpState.INFUSING, PumpState.WITHDRAWING, PumpState.PURGING)

    def _require_stopped(self) -> None:
        if self._running():
            raise _RefusedError(ErrorCode.NOT_APPLICABLE)

    def _number(self, text: str) -> float:
        if not _NUMBER_CHARS.match(text) or text.count(".") > 1 or text == ".":
            raise _RefusedError(ErrorCode.UNRECOGNIZED)
        try:
            return parse_number(text, strict=True)
        except ValueError:
            raise _RefusedError(ErrorCode.OUT_OF_RANGE) from None

    @staticmethod
    def _fmt(value: float) -> str:
        return format_number(min(max(value, 0.0), 9999.0), trailing_point=True)

    def _default_volume_unit(self) -> VolumeUnit:
        return VolumeUnit.UL if self.diameter_mm <= UL_DIAMETER_LIMIT_MM else VolumeUnit.ML

    def _target_ml(self, unit: VolumeUnit) -> float | None:
        return self.volume_value * unit.ml if self.volume_value > 0 else None


class NE1000Emulator(SerialDeviceEmulator):
    """An emulated NE-1000 on a pty or TCP port, over a pump mechanism.

    ``NE1000Emulator(bench.pump, clock=clock, faults=plan, pacing=Pacing(19200))``; the
    keyword options are :class:`NE1000Protocol`'s. They are spelled out (no ``**kwargs``)
    so that a bench loader can tell which of a device's options the emulator takes.
    """

    handler_class = NE1000Protocol
    handler: NE1000Protocol

    def __init__(
        self,
        mechanism: PumpMechanism,
        *,
        clock: Clock,
        faults: FaultPlan | None = None,
        pacing: Pacing | None = None,
        address: int = 0,
        safe_mode_timeout_s: int = 0,
        power_on_alarm: bool = True,
        version: str | None = None,
        inter_byte_timeout_s: float = 0.5,
        reply_to_system_commands: bool = True,
        poll_interval_s: float = 0.1,
        min_plunger_speed_mm_h: float = MIN_SPEED_MM_H,
        max_plunger_speed_mm_h: float = MAX_SPEED_MM_H,
    ) -> None:
        super().__init__(
            mechanism,
            clock=clock,
            faults=faults,
            pacing=pacing,
            address=address,
            safe_mode_timeout_s=safe_mode_timeout_s,
            power_on_alarm=power_on_alarm,
            version=version,
            inter_byte_timeout_s=inter_byte_timeout_s,
            reply_to_system_commands=reply_to_system_commands,
            poll_interval_s=poll_interval_s,
            min_plunger_speed_mm_h=min_plunger_speed_mm_h,
            max_plunger_speed_mm_h=max_plunger_speed_mm_h,
        )
