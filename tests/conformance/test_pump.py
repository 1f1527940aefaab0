"""The infusion-pump contract (:class:`medtwin.drivers.base.InfusionPump`), for every pump.

Run against every pump protocol's driver/emulator pair (NE-1000, Modbus pump, and any
protocol a descriptor adds) with the physical bench behind the emulator on a virtual
clock, or against a real pump (conftest.py, docs/real-hardware.md):

* the syringe diameter reads back as set (what a QA check compares with the bench);
* a rate, a start, time passing: the pump reports infusing at that rate and counts the
  volume; a stop stops the count; clearing the volume zeroes it;
* a volume target stops the pump by itself;
* values outside the declared limits are refused before anything is sent;
* an alarm is reported by the next status, refuses a start with a DeviceAlarm naming it,
  and goes with ``clear_alarms``.

What only one protocol does (units chosen on the wire, safe mode, register maps,
exception codes) stays in tests/drivers.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest
from medtwin.drivers.base import PumpAlarm, PumpLimits, PumpState
from medtwin.drivers.clock import VirtualClock
from medtwin.drivers.errors import DeviceAlarm, LimitError

DEVICE_KIND = "pump"

#: The BD Plastipak 50 mL of the physical bench (docs/models.md), and a 20 mL one.
DIAMETERS_MM = (26.59, 14.43)


async def test_syringe_diameter_reads_back_as_set(pair: Any) -> None:
    async with asyncio.timeout(20):
        for diameter in (*DIAMETERS_MM, DIAMETERS_MM[0]):
            await pair.device.set_syringe_diameter(diameter)
            # Modbus carries a float32: the nearest one to what was written.
            assert await pair.device.read_syringe_diameter() == pytest.approx(diameter, rel=1e-6)
    if pair.emulated:
        assert pair.mechanism.diameter_mm() == pytest.approx(DIAMETERS_MM[0], rel=1e-6)


@pytest.mark.every_transport
async def test_infusion_is_reported_and_counted(pair: Any) -> None:
    pump = pair.device
    # 240 s of device time on the virtual clock; a real pump gets 10 s of the wall clock.
    seconds = 240.0 if isinstance(pair.clock, VirtualClock) else 10.0
    async with asyncio.timeout(40):
        await pump.set_syringe_diameter(DIAMETERS_MM[0])
        await pump.set_rate(6.0)
        await pump.set_volume_target(None)
        await pump.clear_volume()
        status = await pump.read_status()
        assert status.state is PumpState.STOPPED
        assert not status.running
        assert status.alarms == frozenset()  # a power-up alarm is handled by open()
        started = pair.clock.now()
        await pump.start()
        await pair.advance(seconds)
        status = await pump.read_status()
        assert status.state is PumpState.INFUSING
        assert status.running
        assert status.rate_ml_h == pytest.approx(6.0)
        expected_ml = 6.0 * (status.t_s - started) / 3600.0
        assert status.infused_ml == pytest.approx(expected_ml, rel=0.02, abs=2e-3)
        if pair.emulated:
            assert status.t_s == started + seconds
            # What the pump's firmware counted, to the digits its protocol carries.
            truth = pair.mechanism.snapshot()
            assert status.infused_ml == pytest.approx(truth.infused_ml, rel=1e-3, abs=1e-3)
        await pump.stop()
        stopped = await pump.read_status()
        assert stopped.state is PumpState.STOPPED
        assert not stopped.running
        await pair.advance(60.0 if pair.emulated else 2.0)
        assert (await pump.read_status()).infused_ml == pytest.approx(stopped.infused_ml)
        await pump.clear_volume()
        cleared = await pump.read_status()
        assert cleared.infused_ml == 0.0
        assert cleared.withdrawn_ml in (0.0, None)


async def test_a_volume_target_stops_the_pump(pair: Any) -> None:
    pump = pair.device
    async with asyncio.timeout(60):
        await pump.set_syringe_diameter(DIAMETERS_MM[0])
        await pump.clear_volume()
        await pump.set_rate(60.0)
        await pump.set_volume_target(0.25)  # 15 s at 60 mL/h
        await pump.start()
        await pair.advance(30.0)
        status = await pump.read_status()
        assert not status.running
        assert status.state is not PumpState.INFUSING
        assert status.infused_ml == pytest.approx(0.25, rel=0.01, abs=2e-3)
        await pump.clear_alarms()  # an end-of-infusion alarm, where the protocol has one
        await pump.set_volume_target(None)


async def test_values_outside_the_limits_are_refused_before_sending(pair: Any) -> None:
    limits = PumpLimits(min_rate_ml_h=0.1, max_rate_ml_h=100.0, max_diameter_mm=50.0)
    pump = await pair.reopen(limits=limits)
    async with asyncio.timeout(20):
        await pump.read_status()
        seen = pair.requests_seen() if pair.emulated else None
        for call, value in [
            (pump.set_rate, 150.0),
            (pump.set_rate, 0.05),
            (pump.set_rate, math.nan),
            (pump.set_rate, math.inf),
            (pump.set_syringe_diameter, 55.0),
            (pump.set_syringe_diameter, -1.0),
            (pump.set_volume_target, -0.5),
        ]:
            with pytest.raises(LimitError, match="nothing was sent") as info:
                await call(value)
            assert info.value.device == pump.name
        if pair.emulated:
            assert pair.requests_seen() == seen
            assert pair.mechanism.snapshot().rate_setpoint_ml_h == 0.0
        await pump.set_rate(100.0)  # the bound itself is allowed
        await pump.set_rate(0.1)


async def test_an_alarm_is_reported_and_cleared(pair: Any) -> None:
    pair.need_emulator("an alarm raised on the bench")
    pump = pair.device
    async with asyncio.timeout(20):
        pair.mechanism.raise_alarm(PumpAlarm.MOTOR_STALL)
        status = await pump.read_status()
        assert status.state is PumpState.ALARM
        assert PumpAlarm.MOTOR_STALL in status.alarms
        assert not status.running
        await pump.clear_alarms()
        status = await pump.read_status()
        assert status.alarms == frozenset()
        assert status.state is PumpState.STOPPED


async def test_a_start_refused_in_alarm_is_a_device_alarm(pair: Any) -> None:
    pair.need_emulator("an alarm raised on the bench")
    pump = pair.device
    async with asyncio.timeout(20):
        await pump.set_rate(3.0)
        pair.mechanism.raise_alarm(PumpAlarm.MOTOR_STALL)
        with pytest.raises(DeviceAlarm) as info:
            await pump.start()
        assert info.value.alarm == PumpAlarm.MOTOR_STALL.value
        assert info.value.device == pump.name
        assert pair.mechanism.snapshot().state is not PumpState.INFUSING  # not executed
        await pump.clear_alarms()
        await pump.start()
        assert (await pump.read_status()).state is PumpState.INFUSING
        await pump.stop()
