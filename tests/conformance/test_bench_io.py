"""The bench I/O contract (:class:`medtwin.drivers.base.BenchIO`), for every bench I/O module.

Run against every bench-I/O protocol's driver/emulator pair (Modbus, and any protocol a
descriptor adds) with the physical bench behind the emulator on a virtual clock, or
against a real module (conftest.py, docs/real-hardware.md): the pinch valve closes and
opens on command and reports its position, and the inline transducer's pressure is read
with a timestamp on the device's clock.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest
from medtwin.drivers.clock import VirtualClock

DEVICE_KIND = "bench-io"


@pytest.mark.every_transport
async def test_the_pinch_valve_follows_the_command(pair: Any) -> None:
    async with asyncio.timeout(20):
        for occluded in (True, False, True, False):
            await pair.device.set_occluded(occluded)
            status = await pair.device.read_status()
            assert status.occluded is occluded
            if pair.emulated:
                assert pair.mechanism.occluded() is occluded


async def test_the_line_pressure_is_read(pair: Any) -> None:
    async with asyncio.timeout(20):
        await pair.device.set_occluded(False)
        if pair.emulated:
            await pair.advance(30.0)
        status = await pair.device.read_status()
    assert math.isfinite(status.pressure_mmhg)
    if isinstance(pair.clock, VirtualClock):
        assert status.t_s == pair.clock.now()
    if pair.emulated:
        # The transducer's noise is 0.1 mmHg (1 σ) on the physical bench.
        assert status.pressure_mmhg == pytest.approx(pair.mechanism.pressure_mmhg(), abs=1.0)


async def test_an_occluded_line_builds_pressure(pair: Any) -> None:
    pair.need_emulator("a pump infusing into the bench's line")
    pump = pair.bench.pump
    async with asyncio.timeout(20):
        await pair.device.set_occluded(False)
        pump.set_rate_ml_h(25.0)
        pump.start()
        await pair.advance(60.0)
        open_line = (await pair.device.read_status()).pressure_mmhg
        await pair.device.set_occluded(True)
        await pair.advance(120.0)
        occluded = (await pair.device.read_status()).pressure_mmhg
        pump.stop()
    assert occluded > open_line + 50.0
