"""Fixtures of the example syringe-pump acceptance suite.

medtwin's pytest plugin provides the bench (``hil_bench``), the recorded test helper
(``hil``) and one fixture per device of the bench file (``pump``, ``balance``,
``bench_io``). This file adds what depends on the device under test: what its
manufacturer declares, and the syringe the bench says is loaded. To qualify another pump
model, edit :class:`Declared`.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from medtwin.device_models.syringes import SyringeSpec
from medtwin.fixtures.recorder import HilTest


@dataclass(frozen=True)
class Declared:
    """What the manufacturer declares for the pump under test (its IFU / data sheet).

    IEC 60601-2-24 prescribes how to measure; the limits are the manufacturer's claims
    (a syringe pump typically declares ±2 % flow accuracy).
    """

    models: tuple[str, ...] = ("NE-1000", "NE-500", "NE-1600", "NE-1800")
    intermediate_rate_ml_h: float = 5.0
    accuracy_percent: float = 2.0
    #: The NE-1000 senses no pressure: its occlusion alarm is the motor stall at the drive's
    #: force limit, ~1900 mmHg with a BD 50 mL syringe, ~62 min at 5 mL/h.
    max_time_to_occlusion_alarm: str = "75min"
    #: Resolution of the diameter the pump reports (NE-1000: 4 digits, 0.01 mm above 10 mm).
    diameter_resolution_mm: float = 0.01


@pytest.fixture(scope="session")
def declared() -> Declared:
    """The manufacturer's declared performance of the pump under test."""
    return Declared()


@pytest.fixture
def bench_syringe(hil: HilTest) -> SyringeSpec:
    """The syringe the bench file says is loaded (its ``[twin] syringe``)."""
    if hil.config.twin.syringe is None:
        pytest.skip(f"bench {hil.config.name!r} declares no syringe ([twin] syringe)")
    syringe: SyringeSpec = hil.twin.params.pump.syringe  # type: ignore[union-attr]
    return syringe
