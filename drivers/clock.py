"""Time bases shared by drivers, emulators and the HIL runner.

A :class:`Clock` gives *scenario time*: seconds since the clock started, as a float.
Drivers stamp readings with it and in-process emulators evaluate their physics at it, so
an emulated bench and the runner always agree on "now".

* :class:`WallClock` follows ``time.monotonic()``; ``sleep_until`` really sleeps.
* :class:`VirtualClock` only moves when told to. The runner walks its timeline and calls
  ``sleep_until(t)``, which jumps straight to ``t``; the protocol exchanges in between still
  run over real ports in wall time. That is how a 2-hour scenario runs in seconds.

The clock lives in ``drivers`` (not ``hil``) because emulators and drivers need it and
imports flow ``hil → drivers``; ``medtwin.hil.clock`` re-exports it.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "VirtualClock", "WallClock"]


@runtime_checkable
class Clock(Protocol):
    """What drivers, emulators and the runner need from a time base."""

    @property
    def started_utc(self) -> datetime:
        """UTC wall-clock time at scenario time 0."""
        ...

    def now(self) -> float:
        """Scenario time in seconds (monotonic, starts at 0)."""
        ...

    async def sleep_until(self, t_s: float) -> None:
        """Return once scenario time has reached ``t_s`` (at once if it already has)."""
        ...

    def utc_at(self, t_s: float) -> datetime:
        """UTC timestamp of scenario time ``t_s``."""
        ...


class WallClock:
    """Scenario time follows the wall clock from construction."""

    def __init__(self) -> None:
        self._t0 = time.monotonic()
        self._started_utc = datetime.now(UTC)

    @property
    def started_utc(self) -> datetime:
        return self._started_utc

    def now(self) -> float:
        return time.monotonic() - self._t0

    async def sleep_until(self, t_s: float) -> None:
        delay = t_s - self.now()
        if delay > 0:
            await asyncio.sleep(delay)

    def utc_at(self, t_s: float) -> datetime:
        return self._started_utc + timedelta(seconds=t_s)


class VirtualClock:
    """Scenario time that advances only through :meth:`sleep_until` / :meth:`advance_to`.

    The UTC stamps of a virtual run are ``started_utc + t``: they say when the run
    started and where in scenario time each sample lies, not when its bytes moved.
    """

    def __init__(self, start_s: float = 0.0, *, started_utc: datetime | None = None) -> None:
        self._t = float(start_s)
        self._started_utc = started_utc or datetime.now(UTC)

    @property
    def started_utc(self) -> datetime:
        return self._started_utc

    def now(self) -> float:
        return self._t

    def advance_to(self, t_s: float) -> None:
        """Jump to ``t_s``; time never goes backwards."""
        if t_s > self._t:
            self._t = float(t_s)

    async def sleep_until(self, t_s: float) -> None:
        self.advance_to(t_s)
        # Yield once so that tasks woken by the jump (emulator timers, readers) run.
        await asyncio.sleep(0)

    def utc_at(self, t_s: float) -> datetime:
        return self._started_utc + timedelta(seconds=t_s)
