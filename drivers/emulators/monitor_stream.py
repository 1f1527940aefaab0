"""What every streaming monitor emulator (Masimo, Nonin) shares: the wall-time schedule of
its output units (frames, lines, records) and the fault layer applied to each unit.

A monitor speaks unasked: unit *k* is due ``k × interval`` wall seconds after the stream
started. :meth:`MonitorStreamHandler.unsolicited` (polled by the one emulator server every
``poll_interval_s``) returns every unit due since the last call in one write, so the rate
is exact whatever the poll jitter; after a stall longer than :data:`MAX_BURST_S` the units
missed are skipped (counted in :attr:`MonitorStreamHandler.skipped`), as a device's UART
does not queue them. The server sends unsolicited output as it is, so the fault plan is
applied here, per unit, through the server's own plan
(:func:`~medtwin.drivers.emulators.faults.apply_reply_fault` with the protocol's
``break_checksum`` and ``break_sync``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Final

from medtwin.drivers.clock import Clock
from medtwin.drivers.emulators.faults import FaultPlan, apply_reply_fault
from medtwin.drivers.emulators.server import ProtocolHandler
from medtwin.drivers.framing import flip_middle_byte

__all__ = ["MAX_BURST_S", "MonitorStreamHandler"]

#: Longest backlog (wall s) sent at once after a stall; older units are skipped.
MAX_BURST_S: Final = 1.0


class MonitorStreamHandler(ProtocolHandler):
    """Base of the streaming monitor handlers (see the module docstring).

    Subclasses implement :meth:`interval_s` and :meth:`unit` (the bytes of unit ``k``) and
    may override :meth:`break_checksum` and :meth:`break_sync`.
    """

    def __init__(
        self,
        *,
        clock: Clock,
        poll_interval_s: float,
        wall_time: Callable[[], float] = time.monotonic,
    ) -> None:
        if not (math.isfinite(poll_interval_s) and poll_interval_s > 0):
            raise ValueError(f"poll_interval_s={poll_interval_s!r} must be a positive time")
        self.clock = clock
        self.poll_interval_s = float(poll_interval_s)
        self._wall = wall_time
        self._t0: float | None = None
        self._sent = 0
        self._paused_until = -math.inf
        #: Where the fault plan is read (set by the emulator: its server's plan).
        self.faults_source: Callable[[], FaultPlan | None] = lambda: None
        #: What makes the port vanish for a ``disconnect`` fault (set by the emulator).
        self.on_disconnect: Callable[[float], None] | None = None
        #: Units generated (sent or faulted) and skipped after a stall.
        self.units = 0
        self.skipped = 0

    # -- the protocol's part -----------------------------------------------------------------

    def interval_s(self) -> float:
        raise NotImplementedError

    def unit(self, k: int) -> bytes:
        """The bytes of output unit ``k`` (0-based since the stream (re)started)."""
        raise NotImplementedError

    def break_checksum(self, unit: bytes) -> bytes:
        return flip_middle_byte(unit)

    def break_sync(self, unit: bytes) -> bytes:
        return unit

    # -- schedule -----------------------------------------------------------------------------

    def restart_stream(self) -> None:
        """Start the unit count again at the next poll (a new data format)."""
        self._t0 = None
        self._sent = 0

    def unsolicited(self) -> list[bytes]:
        now = self._wall()
        interval = self.interval_s()
        if self._t0 is None:
            self._t0 = now
            self._sent = 0
        # The tolerance keeps a unit due exactly on time from rounding down.
        due = int((now - self._t0) / interval + 1e-9) + 1
        if now < self._paused_until:
            self._sent = due  # a held stream: what falls due meanwhile is never sent
            return []
        backlog = due - self._sent
        limit = max(1, int(MAX_BURST_S / interval))
        if backlog > limit:
            self.skipped += backlog - limit
            self._sent = due - limit
        plan = self.faults_source()
        parts: list[bytes] = []
        for k in range(self._sent, due):
            data = self.unit(k)
            self.units += 1
            if plan is not None:
                outcome = apply_reply_fault(
                    plan,
                    data,
                    t_s=self.clock.now(),
                    break_checksum=self.break_checksum,
                    break_sync=self.break_sync,
                )
                if outcome.disconnect_s is not None:
                    self._sent = due
                    if self.on_disconnect is not None:
                        self.on_disconnect(outcome.disconnect_s)
                    return []
                if outcome.late_s > 0:
                    self._paused_until = now + outcome.late_s
                    self._sent = due
                    break
                if outcome.data is None:
                    continue
                data = outcome.data
            parts.append(data)
        self._sent = max(self._sent, due)
        return [b"".join(parts)] if parts else []

    def reset_input(self) -> None:
        super().reset_input()
