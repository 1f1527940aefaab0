"""The device side of the Fluke ProSim 8 remote interface, on a pty or TCP port.

:class:`ProSim8Protocol` is a pure state machine over a
:class:`~medtwin.drivers.emulators.mechanisms.PatientSimulatorMechanism` (the bench's
shared :class:`~medtwin.drivers.emulators.patient_world.PatientWorld`): lines in, one reply
line out (two for ``GETRTC``), as docs/protocols/prosim8.md describes the simulator.
:class:`ProSim8Emulator` serves it with the one emulator server (faults, pacing).

Behaviour, and where a choice had to be made:

* **Local and remote.** After power-on the simulator is local: a valid command other
  than ``REMOTE`` is answered ``ERR=00`` and not carried out. ``REMOTE`` switches to
  remote mode, ``LOCAL`` back (both answer ``OK``). A line that does not parse gets its
  own error (``ERR=01`` … ``ERR=04``) in either mode (which one a real ProSim answers
  first is unverified).
* **Settings.** ``NSRA``, ``SAT``, ``RESPRATE``, ``NIBPP``, ``IBPS`` (a static pressure:
  systolic = diastolic), ``IBPP`` and ``IBPW`` set the mechanism, so every oximeter on
  the bench sees the change from that instant; a value the mechanism refuses (NIBP or
  IBP diastolic above systolic) is answered ``ERR=03``.
* ``VALIDATION=OZYMANDIAS`` turns validation mode on (another password: ``ERR=07``),
  ``VALOFF`` off; ``KEY`` is acknowledged and has no other effect; ``SETRTC`` sets the
  emulated real-time clock (an offset from the bench clock's UTC), ``GETRTC`` reads it;
  ``IDENT`` answers ``<model>,<firmware>,<serial>`` from the mechanism (the real text is
  unknown).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from medtwin.drivers.clock import Clock
from medtwin.drivers.emulators.mechanisms import PatientSimulatorMechanism
from medtwin.drivers.emulators.server import ProtocolHandler, SerialDeviceEmulator
from medtwin.drivers.framing import Framer
from medtwin.drivers.prosim8.codec import (
    VALIDATION_PASSWORD,
    Command,
    CommandError,
    DataReply,
    ErrorCode,
    ErrorReply,
    OkReply,
    ProSim8Framer,
    encode_rtc_reply,
    parse_command,
)

__all__ = ["ProSim8Emulator", "ProSim8Protocol"]

_OK = OkReply().encode()


def _err(code: int) -> list[bytes]:
    return [ErrorReply(int(code)).encode()]


class ProSim8Protocol(ProtocolHandler):
    """The ProSim 8's remote interface as a state machine.

    Parameters
    ----------
    simulator : PatientSimulatorMechanism
        What the commands set.
    clock : Clock
        Bench clock (its UTC is the simulator's real-time clock until ``SETRTC``).
    remote : bool
        Start in remote mode (default: local, as after power-on).
    """

    device_name = "ProSim8"

    def __init__(
        self, simulator: PatientSimulatorMechanism, *, clock: Clock, remote: bool = False
    ) -> None:
        self.simulator = simulator
        self.clock = clock
        self.validation = False
        self.keys: list[tuple[int, int]] = []
        self._rtc_offset = dt.timedelta(0)
        if remote != simulator.settings().remote:
            simulator.set_remote(remote)

    @property
    def remote(self) -> bool:
        return self.simulator.settings().remote

    def new_framer(self) -> Framer[Any]:
        return ProSim8Framer()

    def handle(self, frame: Any) -> list[bytes]:
        line = bytes(frame)
        try:
            command = parse_command(line, device=self.device_name)
        except CommandError as error:
            return _err(error.code)
        if command.name != "REMOTE" and not self.remote:
            return _err(ErrorCode(0))
        try:
            return self._execute(command)
        except ValueError:
            return _err(3)

    def _now_rtc(self) -> dt.datetime:
        return self.clock.utc_at(self.clock.now()) + self._rtc_offset

    def _execute(self, c: Command) -> list[bytes]:
        sim = self.simulator
        name = c.name
        if name == "REMOTE":
            sim.set_remote(True)
        elif name == "LOCAL":
            sim.set_remote(False)
        elif name == "IDENT":
            text = f"{sim.model},{sim.firmware},{sim.serial}"
            return [DataReply(text).encode()]
        elif name == "GETRTC":
            return encode_rtc_reply(self._now_rtc().replace(microsecond=0)).splitlines(
                keepends=True
            )
        elif name == "SETRTC":
            hour, minute, second, month, day, year = (int(a) for a in c.args)
            wanted = dt.datetime(year, month, day, hour, minute, second, tzinfo=dt.UTC)
            now = self.clock.utc_at(self.clock.now())
            if now.tzinfo is None:
                wanted = wanted.replace(tzinfo=None)
            self._rtc_offset = wanted - now
        elif name == "VALIDATION":
            if c.arg("password") != VALIDATION_PASSWORD:
                return _err(7)
            self.validation = True
        elif name == "VALOFF":
            self.validation = False
        elif name == "NSRA":
            sim.set_heart_rate_bpm(float(c.arg("rate_bpm")))
        elif name == "SAT":
            sim.set_spo2_percent(float(c.arg("spo2_pct")))
        elif name == "RESPRATE":
            sim.set_resp_rate_min(float(c.arg("rate_brpm")))
        elif name == "NIBPP":
            sim.set_nibp_mmhg(float(c.arg("systolic_mmhg")), float(c.arg("diastolic_mmhg")))
        elif name == "IBPS":
            p = float(c.arg("pressure_mmhg"))
            sim.set_ibp_mmhg(int(c.arg("channel")), p, p)
        elif name == "IBPP":
            sim.set_ibp_mmhg(
                int(c.arg("channel")), float(c.arg("systolic_mmhg")), float(c.arg("diastolic_mmhg"))
            )
        elif name == "IBPW":
            sim.set_ibp_wave(int(c.arg("channel")), str(c.arg("waveform")))
        elif name == "KEY":
            self.keys.append((int(c.arg("key")), int(c.arg("cycles"))))
        else:  # a command of the table this emulator does not know: a codec/emulator gap
            return _err(5)
        return [_OK]


class ProSim8Emulator(SerialDeviceEmulator):
    """A Fluke ProSim 8 served on a pty (default) or TCP.

    ``ProSim8Emulator(bench.simulator, clock=clock).start()`` returns the port a client
    opens; ``remote=True`` starts it in remote mode.
    """

    handler_class = ProSim8Protocol
