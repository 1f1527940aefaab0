"""The device side of MT-SICS: a Mettler Toledo balance on a pty or TCP port.

:class:`MTSICSProtocol` is a pure state machine over a
:class:`~medtwin.drivers.emulators.mechanisms.BalanceMechanism`: bytes in, reply lines out,
formatted exactly as an MT-SICS balance formats them (Mettler Toledo MT-SICS reference manuals
11780711 and 11780447; reply formats and the ``SIR``/``@`` behaviour cross-checked with the
Ohaus 7000-series manual, an MT-SICS implementation). :class:`MTSICSEmulator` serves it with
:class:`~medtwin.drivers.emulators.serial_server.SerialDeviceEmulator`.

Implemented commands (``I0`` lists them with their MT-SICS level)::

    level 0   I0 I1 I2 I3 I4  S SI SIR  Z ZI  @
    level 1   T TI TA TAC

Behaviour, and where a choice had to be made:

* **Framing.** A command ends at LF; the CR before it is expected (the manual demands
  CR LF) but not enforced, so a client that sends LF alone is still understood. Commands
  must be uppercase with single spaces between parameters; anything else, an unknown
  command, parameters on a command that takes none, or a line longer than
  :data:`MAX_COMMAND_BYTES` is answered ``ES`` and the emulator carries on. ``ET`` is never
  sent: a pty or a socket has no parity or framing errors to report.
* **Waiting for stability.** ``S``, ``Z`` and ``T`` act on a stable value only. If the
  balance is not stable when the command arrives, the command waits; the server polls
  :meth:`MTSICSProtocol.unsolicited` every ``poll_interval_s`` of wall time and the
  command completes as soon as the mechanism reports stable, or fails with ``S I``/``Z I``/
  ``T I`` once ``stability_timeout_s`` of *clock* time has passed. Under a virtual clock
  time does not move while a client waits for a reply, so a value that is not stable
  now will not become stable either: when two polls in a row see the same clock time the
  command fails with ``… I`` at once instead of hanging until the client times out.
  Commands received meanwhile are queued and answered in order (the balance handles one
  command at a time), except ``@``, which cancels them.
* **SIR** sends a weight line at once and then one every ``stream_interval_s`` of wall
  time. ``SIR`` is "overwritten and cancelled by the commands S, SI, SR and @" (Ohaus 7000
  manual, matching the Mettler command descriptions); other commands are answered while
  the stream goes on. ``SR`` is not implemented: it gets ``ES`` and the stream goes on.
  (The task brief said "until the next command"; the manuals win.)
* **TA with a value** presets the tare (``TA`` is the level-1 tare weight value command:
  a query without parameters, a preset with a value and a unit). The value is rounded to
  the readability and must lie in [0, capacity] in a mass unit, else ``TA L``. The
  mechanism contract has no preset-tare method, so the handler clears the mechanism's
  tare and subtracts the preset from the displayed value itself.
* **Zero range.** ``Z``/``ZI`` answer ``Z +``/``Z -`` when the new zero would lie more than
  ``zero_range_g`` from the power-on zero. The MT-SICS manuals name these replies but not
  the range, so there is no limit by default (a bench may zero with its collecting vessel
  on the pan); ``zero_range_g=0.02 * capacity`` gives the zero range Ohaus locks its
  indicators to in legal-for-trade mode (Defender 5000 manual), unverified for Mettler.
* **@** cancels pending commands and the stream, clears the tare (the Ohaus manual says so
  explicitly, "the tare register is cleared"; configurable with ``reset_clears_tare``) and
  answers ``I4 A "<serial>"``.
* **Identification.** ``I2`` is ``"<model> <capacity> g"``, ``I3`` the firmware, ``I4`` the
  serial number, all from the mechanism. ``I1`` reports level 0 as fully implemented and
  the versions given by ``sics_versions`` (illustrative values, configurable).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Final

from medtwin.drivers.clock import Clock
from medtwin.drivers.emulators.mechanisms import BalanceMechanism, BalanceSnapshot
from medtwin.drivers.emulators.serial_server import ProtocolHandler, SerialDeviceEmulator
from medtwin.drivers.errors import ProtocolError
from medtwin.drivers.framing import LineFramer
from medtwin.drivers.mtsics.codec import (
    MASS_UNITS_G,
    Command,
    DataReply,
    ErrorReply,
    Quoted,
    StatusReply,
    WeightReply,
    decimals_for_readability,
    weight_value,
)

__all__ = ["IMPLEMENTED_COMMANDS", "MAX_COMMAND_BYTES", "MTSICSEmulator", "MTSICSProtocol"]

#: Command → MT-SICS level, in the order ``I0`` lists them.
IMPLEMENTED_COMMANDS: Final[dict[str, int]] = {
    "I0": 0,
    "I1": 0,
    "I2": 0,
    "I3": 0,
    "I4": 0,
    "S": 0,
    "SI": 0,
    "SIR": 0,
    "Z": 0,
    "ZI": 0,
    "@": 0,
    "T": 1,
    "TA": 1,
    "TAC": 1,
    "TI": 1,
}

#: Longest command line accepted; a longer one is dropped and answered ``ES``.
MAX_COMMAND_BYTES: Final = 256

_ES: Final = ErrorReply("ES").encode()
# Commands that act on a stable value only (they wait for it on the balance).
_STABLE_ONLY: Final = frozenset({"S", "Z", "T"})
# I1 lists only fully implemented levels: level 0 is I0..I4, S, SI, SIR, Z, ZI and @ (all
# here); level 1 also has D, DW, K and SR, which this emulator does not implement.
_FULL_LEVELS: Final = "0"
# SR would cancel SIR too, but it is not implemented here: it is answered ES and, like any
# unrecognised line, leaves the stream on.
_CANCELS_SIR: Final = frozenset({"S", "SI", "@"})


@dataclass
class _Pending:
    """A command waiting for a stable value."""

    name: str
    deadline_s: float
    last_t_s: float
    polls: int = 0


class MTSICSProtocol(ProtocolHandler):
    """MT-SICS device side over a :class:`BalanceMechanism` (see the module docstring).

    Parameters
    ----------
    mechanism : BalanceMechanism
        The weighing cell.
    clock : Clock, optional
        The device's time base, which stability waits are measured in; without one, the
        mechanism's ``snapshot().t_s`` (on a physical bench: the same clock, offset to the
        bench's start).
    stability_timeout_s : float
        How long (clock time, s) ``S``, ``Z`` and ``T`` wait for a stable value before
        answering ``… I``. Model-specific on real balances (the Ohaus 7000 manual gives
        3 s for ``Z``); unverified for Mettler balances, hence configurable.
    stream_interval_s : float
        Wall time (s) between two ``SIR`` lines.
    poll_interval_s : float
        Wall time (s) between two server polls of :meth:`unsolicited`.
    zero_range_g : float
        Largest distance (g) of a new zero point from the power-on zero; no limit by
        default (see the module docstring).
    reset_clears_tare : bool
        Whether ``@`` clears the tare memory.
    sics_versions : sequence of 4 str
        Versions of MT-SICS levels 0..3 reported by ``I1`` ("" for a level not present).
    wall_time : callable
        Wall clock for ``SIR`` pacing (``time.monotonic``; injectable for tests).
    """

    device_name = "mt-sics"
    poll_interval_s: float | None = 0.05

    def __init__(
        self,
        mechanism: BalanceMechanism,
        *,
        clock: Clock | None = None,
        stability_timeout_s: float = 3.0,
        stream_interval_s: float = 0.1,
        poll_interval_s: float = 0.05,
        zero_range_g: float = math.inf,
        reset_clears_tare: bool = True,
        sics_versions: Sequence[str] = ("2.20", "2.20", "", ""),
        wall_time: Callable[[], float] = time.monotonic,
    ) -> None:
        for label, value in (
            ("stability_timeout_s", stability_timeout_s),
            ("stream_interval_s", stream_interval_s),
            ("poll_interval_s", poll_interval_s),
        ):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"MT-SICS emulator: {label}={value!r} must be a positive time")
        if len(sics_versions) != 4:
            raise ValueError("MT-SICS emulator: sics_versions needs 4 entries (levels 0..3)")
        self.mechanism = mechanism
        self.clock = clock
        # Also names the emulator's pty link (ttyMTSICS).
        self.device_name = "MTSICS"
        self.stability_timeout_s = float(stability_timeout_s)
        self.stream_interval_s = float(stream_interval_s)
        self.poll_interval_s = self._poll_s = float(poll_interval_s)
        if not zero_range_g >= 0:
            raise ValueError(f"MT-SICS emulator: zero_range_g={zero_range_g!r} must be >= 0")
        self.zero_range_g = float(zero_range_g)
        self.reset_clears_tare = reset_clears_tare
        self.sics_versions = tuple(sics_versions)
        self.decimals = decimals_for_readability(mechanism.readability_g)
        self._wall_time = wall_time
        self._queue: deque[bytes] = deque()
        self._pending: _Pending | None = None
        self._streaming = False
        self._last_stream_wall_s = -math.inf
        self._preset_tare_g: float | None = None
        # Distance of the current zero point from the power-on zero (for the zero range).
        self._zero_shift_g = 0.0

    # -- ProtocolHandler -----------------------------------------------------------------

    def new_framer(self) -> LineFramer:
        # Framed at LF: the CR before it is expected but not enforced. A line still open
        # after MAX_COMMAND_BYTES is garbage, answered once at once.
        return LineFramer(b"\n", max_length=MAX_COMMAND_BYTES, overflow_frame=True)

    def handle(self, frame: bytes) -> list[bytes]:
        if not frame.endswith(b"\n"):
            return self._accept(b"\x00" * (MAX_COMMAND_BYTES + 1))
        line = frame[:-1]
        if line.endswith(b"\r"):
            line = line[:-1]
        return self._accept(line)

    def unsolicited(self) -> list[bytes]:
        out = self._poll_pending() if self._pending is not None else []
        if self._streaming:
            now = self._wall_time()
            # Half a poll of slack so that timer jitter does not skip a line.
            if now - self._last_stream_wall_s >= self.stream_interval_s - self._poll_s / 2:
                self._last_stream_wall_s = now
                out.append(self._immediate_weight())
        return out

    def reset_input(self) -> None:
        super().reset_input()
        self._queue.clear()
        self._pending = None

    # -- command handling ----------------------------------------------------------------

    @property
    def streaming(self) -> bool:
        """Whether an ``SIR`` stream is running."""
        return self._streaming

    @property
    def busy(self) -> bool:
        """Whether a command is waiting for a stable value."""
        return self._pending is not None

    def _accept(self, line: bytes) -> list[bytes]:
        if line == b"@":
            # @ is always executed at once and cancels everything that waits.
            self._pending = None
            self._queue.clear()
            return self._execute(line)
        if self._pending is not None or self._queue:
            self._queue.append(line)
            return []
        return self._execute(line)

    def _execute(self, line: bytes) -> list[bytes]:
        if len(line) > MAX_COMMAND_BYTES:
            return [_ES]
        try:
            command = Command.decode(line, device=self.device_name)
        except ProtocolError:
            return [_ES]
        name = command.name
        if name not in IMPLEMENTED_COMMANDS:
            return [_ES]
        if name in _CANCELS_SIR:
            self._streaming = False
        if name == "TA":
            return [self._tare_value(command.params)]
        if command.params:
            return [_ES]
        if name in _STABLE_ONLY:
            return self._start_stable(name)
        return self._simple(name)

    def _simple(self, name: str) -> list[bytes]:
        mech = self.mechanism
        if name == "SI":
            return [self._immediate_weight()]
        if name == "SIR":
            self._streaming = True
            self._last_stream_wall_s = self._wall_time()
            return [self._immediate_weight()]
        if name == "ZI":
            return [self._do_zero("ZI", mech.snapshot())]
        if name == "TI":
            return [self._do_tare("TI", mech.snapshot())]
        if name == "TAC":
            mech.clear_tare()
            self._preset_tare_g = None
            return [StatusReply("TAC", "A").encode()]
        if name == "@":
            self._streaming = False
            if self.reset_clears_tare:
                mech.clear_tare()
                self._preset_tare_g = None
            return [self._text("I4", mech.serial)]
        if name == "I0":
            return self._command_list()
        if name == "I1":
            fields = (Quoted(_FULL_LEVELS), *(Quoted(v) for v in self.sics_versions))
            return [DataReply("I1", "A", fields).encode()]
        if name == "I2":
            capacity = weight_value(mech.capacity_g, self.decimals)
            return [self._text("I2", f"{_safe(mech.model)} {capacity} g")]
        if name == "I3":
            return [self._text("I3", mech.firmware)]
        # I4: the only implemented command left.
        return [self._text("I4", mech.serial)]

    def _command_list(self) -> list[bytes]:
        names = list(IMPLEMENTED_COMMANDS)
        return [
            DataReply(
                "I0",
                "A" if index == len(names) - 1 else "B",
                (str(IMPLEMENTED_COMMANDS[name]), Quoted(name)),
            ).encode()
            for index, name in enumerate(names)
        ]

    def _text(self, command: str, text: str) -> bytes:
        return DataReply(command, "A", (Quoted(_safe(text)),)).encode()

    # -- weighing ------------------------------------------------------------------------

    def _displayed_g(self, snap: BalanceSnapshot) -> float:
        if self._preset_tare_g is None:
            return snap.net_g
        return snap.net_g - self._preset_tare_g

    def _weight(self, command: str, status: str, value_g: float) -> bytes:
        return WeightReply(command, status, weight_value(value_g, self.decimals), "g").encode()

    def _immediate_weight(self) -> bytes:
        snap = self.mechanism.snapshot()
        if snap.overload:
            return StatusReply("S", "+").encode()
        if snap.underload:
            return StatusReply("S", "-").encode()
        return self._weight("S", "S" if snap.stable else "D", self._displayed_g(snap))

    def _now(self, snap: BalanceSnapshot) -> float:
        return snap.t_s if self.clock is None else self.clock.now()

    def _start_stable(self, name: str) -> list[bytes]:
        snap = self.mechanism.snapshot()
        if snap.overload or snap.underload or snap.stable:
            return [self._complete(name, snap)]
        now = self._now(snap)
        self._pending = _Pending(name, deadline_s=now + self.stability_timeout_s, last_t_s=now)
        return []

    def _poll_pending(self) -> list[bytes]:
        """Complete or fail the waiting command; then run what queued up behind it."""
        out = self._check_pending()
        while self._pending is None and self._queue:
            out += self._execute(self._queue.popleft())
        return out

    def _check_pending(self) -> list[bytes]:
        pending = self._pending
        if pending is None:
            return []
        snap = self.mechanism.snapshot()
        if snap.overload or snap.underload or snap.stable:
            self._pending = None
            return [self._complete(pending.name, snap)]
        now = self._now(snap)
        timed_out = now >= pending.deadline_s
        # The first poll may follow the command within microseconds (the server polls
        # after every feed), so only from the second poll on does an unchanged clock
        # mean that time is not moving.
        stalled = pending.polls > 0 and now <= pending.last_t_s
        if timed_out or stalled:
            self._pending = None
            return [StatusReply(pending.name, "I").encode()]
        pending.polls += 1
        pending.last_t_s = now
        return []

    def _complete(self, name: str, snap: BalanceSnapshot) -> bytes:
        """The reply of ``S``/``Z``/``T`` once stable (or over/underloaded)."""
        if name == "Z":
            return self._do_zero("Z", snap)
        if name == "T":
            return self._do_tare("T", snap)
        if snap.overload:
            return StatusReply("S", "+").encode()
        if snap.underload:
            return StatusReply("S", "-").encode()
        return self._weight("S", "S", self._displayed_g(snap))

    def _do_zero(self, name: str, snap: BalanceSnapshot) -> bytes:
        if snap.overload:
            return StatusReply(name, "+").encode()
        if snap.underload:
            return StatusReply(name, "-").encode()
        shift_g = self._zero_shift_g + snap.gross_g
        if abs(shift_g) > self.zero_range_g:
            return StatusReply(name, "+" if shift_g > 0 else "-").encode()
        try:
            self.mechanism.zero()
        except ValueError:
            return StatusReply(name, "+" if snap.gross_g > 0 else "-").encode()
        self._zero_shift_g = shift_g
        self._preset_tare_g = None
        if name == "Z":
            return StatusReply("Z", "A").encode()
        return StatusReply("ZI", "S" if snap.stable else "D").encode()

    def _do_tare(self, name: str, snap: BalanceSnapshot) -> bytes:
        if snap.overload:
            return StatusReply(name, "+").encode()
        if snap.underload:
            return StatusReply(name, "-").encode()
        try:
            tare_g = self.mechanism.tare()
        except ValueError:
            return StatusReply(name, "+" if snap.gross_g > 0 else "-").encode()
        self._preset_tare_g = None
        return self._weight(name, "S" if name == "T" or snap.stable else "D", tare_g)

    def _tare_value(self, params: tuple[str | Quoted, ...]) -> bytes:
        if not params:
            snap = self.mechanism.snapshot()
            tare_g = snap.tare_g if self._preset_tare_g is None else self._preset_tare_g
            return self._weight("TA", "A", tare_g)
        value_text, unit = (*params, "", "")[:2]
        if len(params) != 2 or isinstance(value_text, Quoted) or isinstance(unit, Quoted):
            return _ES
        try:
            value = Decimal(value_text)
        except ArithmeticError:
            return StatusReply("TA", "L").encode()
        factor = MASS_UNITS_G.get(unit)
        if factor is None or not value.is_finite():
            return StatusReply("TA", "L").encode()
        tare_g = float(value) * factor
        if not (0.0 <= tare_g <= self.mechanism.capacity_g):
            return StatusReply("TA", "L").encode()
        readability_g = self.mechanism.readability_g
        tare_g = round(tare_g / readability_g) * readability_g
        self.mechanism.clear_tare()
        self._preset_tare_g = tare_g
        return self._weight("TA", "A", tare_g)


def _safe(text: str) -> str:
    """Text fit for a quoted MT-SICS field (no quote, no control characters)."""
    return "".join(ch if " " <= ch <= "\xff" and ch not in '"\x7f' else "'" for ch in text)


class MTSICSEmulator(SerialDeviceEmulator):
    """A Mettler Toledo MT-SICS balance served on a pty (default) or TCP.

    ``MTSICSEmulator(bench.balance, clock=clock, faults=plan).start()`` returns the port a
    client opens; extra keyword options (``stability_timeout_s``, ``stream_interval_s``,
    ``zero_range_g``, ...) go to :class:`MTSICSProtocol`.
    """

    handler_class = MTSICSProtocol
