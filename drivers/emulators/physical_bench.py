"""The virtual hardware: one physical bench (pump → line → pinch valve → balance).

CONTRACT (implementation in progress by the lead; signatures fixed): a
:class:`PhysicalBench` holds ``device_models`` truth parameters and state, advances the
physics to ``clock.now()`` whenever any mechanism is touched, and exposes the three
mechanisms of :mod:`drivers.emulators.mechanisms`:

* ``bench.pump``: :class:`~drivers.emulators.mechanisms.PumpMechanism`
* ``bench.balance``: :class:`~drivers.emulators.mechanisms.BalanceMechanism`
* ``bench.bench_io``: :class:`~drivers.emulators.mechanisms.BenchIOMechanism`

so an NE-1000 emulator, an MT-SICS emulator and a Modbus bench-I/O emulator built on the
same bench see the same pump moving the plunger, the same line building pressure while the
valve is closed, and the same balance weighing what the line delivers.

Ready when ``PhysicalBench.default(clock=VirtualClock())`` no longer raises
NotImplementedError.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

from drivers.clock import Clock
from drivers.emulators.faults import Fault
from drivers.emulators.mechanisms import BalanceMechanism, BenchIOMechanism, PumpMechanism

__all__ = ["PhysicalBench"]


class PhysicalBench:
    pump: PumpMechanism
    balance: BalanceMechanism
    bench_io: BenchIOMechanism

    def __init__(
        self,
        truth: object,
        *,
        clock: Clock,
        seed: int = 0,
        device_faults: Sequence[Fault] = (),
    ) -> None:
        raise NotImplementedError("being implemented")

    @classmethod
    def default(
        cls,
        *,
        pump: Literal["syringe", "volumetric"] = "syringe",
        clock: Clock,
        seed: int = 0,
        overrides: Mapping[str, float | str] | None = None,
        device_faults: Sequence[Fault] = (),
    ) -> PhysicalBench:
        """A bench with nominal truth parameters (BD Plastipak 50 mL syringe on a syringe
        pump, or a volumetric pump), optionally overridden by dotted parameter names
        (``{"pump.syringe.inner_diameter_mm": 26.4}``)."""
        raise NotImplementedError("being implemented")
