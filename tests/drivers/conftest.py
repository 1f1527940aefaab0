"""Fixtures shared by the driver tests: a balance mechanism the test scripts.

:class:`FakeBalance` stands behind the MT-SICS emulator in both the emulator's own tests
(``test_mtsics_emulator.py``) and the driver's (``test_mtsics_balance.py``): its load,
stability and range flags are set by the test, on the test's clock, so every reading is
exact and every wait is decided by the test.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from medtwin.drivers.clock import Clock, VirtualClock
from medtwin.drivers.emulators.mechanisms import BalanceSnapshot


class FakeBalance:
    """A :class:`~medtwin.drivers.emulators.mechanisms.BalanceMechanism` whose load and flags the
    test sets directly.

    Stable once the clock reaches ``settled_at_s``; the displayed net is quantised to the
    readability, as a real display is; taring a negative load is refused, as a balance
    refuses it.
    """

    model = "XS205DU"
    serial = "B123456789"
    firmware = "2.10 10.28.0.493.142"
    capacity_g = 220.0
    readability_g = 0.01

    def __init__(self, clock: Clock, *, readability_g: float = 0.01) -> None:
        self.clock = clock
        self.readability_g = readability_g
        self.load_g = 0.0
        self.zero_point_g = 0.0
        self.tare_g = 0.0
        self.settled_at_s = 0.0
        self.underload = False

    def _gross_g(self) -> float:
        return self.load_g - self.zero_point_g

    def snapshot(self) -> BalanceSnapshot:
        gross = self._gross_g()
        step = self.readability_g
        return BalanceSnapshot(
            t_s=self.clock.now(),
            net_g=round((gross - self.tare_g) / step) * step,
            gross_g=gross,
            tare_g=self.tare_g,
            stable=self.clock.now() >= self.settled_at_s,
            overload=gross > self.capacity_g,
            underload=self.underload,
        )

    def tare(self) -> float:
        gross = self._gross_g()
        if gross < 0:
            raise ValueError("cannot tare a negative load")
        self.tare_g = round(gross / self.readability_g) * self.readability_g
        return self.tare_g

    def zero(self) -> None:
        self.zero_point_g = self.load_g
        self.tare_g = 0.0

    def clear_tare(self) -> None:
        self.tare_g = 0.0


@pytest.fixture
def clock() -> VirtualClock:
    """The test's clock (a test module may override it, e.g. to start elsewhere)."""
    return VirtualClock()


@pytest.fixture
def mechanism(clock: Clock) -> FakeBalance:
    """A :class:`FakeBalance` on the test's ``clock``."""
    return FakeBalance(clock)


@pytest.fixture(scope="session")
def make_mechanism() -> Callable[..., FakeBalance]:
    """``make_mechanism(clock, readability_g=0.01)``: another :class:`FakeBalance`, for a
    test that needs its own clock or readability."""
    return FakeBalance
