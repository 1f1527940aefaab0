"""The pulse-oximeter contract (:class:`medtwin.drivers.vital_signs.PulseOximeter`), for every
oximeter protocol the registry lists (Masimo ASCII 1, Nonin #2/#7/#8, any plug-in's).

Each driver reads its emulator over a real pty (and TCP for the tests marked
``every_transport``) with the bench's patient behind it, seen through the vendor preset's
monitor model (conftest.py). Checked:

* readings carry valid values, timestamped on the device's clock;
* a displayed value tracks what the patient simulator is set to;
* with the probe off the values read None and the sensor-off flag is set;
* garbage and bad checksums injected into the stream are counted in ``link_errors`` and
  the next reading still arrives; a stream that stops times out; a vanished port is
  reopened by the reader.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import Any

import pytest
from medtwin.drivers.base import RetryPolicy
from medtwin.drivers.clock import VirtualClock
from medtwin.drivers.errors import DeviceTimeout
from medtwin.drivers.vital_signs import OximeterReading

DEVICE_KIND = "oximeter"

#: Long enough for the slowest stream (one line or record a second) on a loaded machine.
STREAM = RetryPolicy(timeout_s=4.0, retries=0, reconnects=30, backoff_s=0.02, backoff_max_s=0.1)


async def fresh(pair: Any, *, after_wall_s: float) -> OximeterReading:
    """The first reading that arrived after ``after_wall_s`` (``time.monotonic``)."""
    while True:
        reading: OximeterReading = await pair.device.read(timeout_s=3.0)
        if pair.device._latest_wall_s > after_wall_s:
            return reading
        await asyncio.sleep(0.05)


async def settle(pair: Any, seconds: float) -> OximeterReading:
    """Let ``seconds`` of device time pass in steps (the monitor model is fed as it goes),
    then return a reading sent after that."""
    for _ in range(int(seconds)):
        await pair.advance(1.0)
    # The first reading after that may have been sent before it (still in the pipe).
    first = await fresh(pair, after_wall_s=time.monotonic())
    assert first is not None
    return await fresh(pair, after_wall_s=pair.device._latest_wall_s)


async def until(condition: Callable[[], bool]) -> None:
    """Poll the driver's counters (as a runner does) until ``condition`` holds; the
    caller's ``asyncio.timeout`` bounds it."""
    for _ in range(10_000):
        if condition():
            return
        await asyncio.sleep(0.05)
    pytest.fail("condition never held")


@pytest.fixture
async def oximeter(pair: Any) -> Any:
    await pair.reopen(retry=STREAM)
    return pair


@pytest.mark.every_transport
async def test_readings_carry_valid_values(oximeter: Any) -> None:
    pair = oximeter
    async with asyncio.timeout(60):
        reading = await settle(pair, 40)
    assert reading.spo2_percent is not None
    assert 80 <= reading.spo2_percent <= 100
    assert reading.pulse_rate_bpm is not None
    assert 30 <= reading.pulse_rate_bpm <= 250
    assert not reading.sensor_off
    if isinstance(pair.clock, VirtualClock):
        assert reading.t_s == pair.clock.now()
    assert pair.device.link_errors.get("bad_checksums", 0) == 0


async def test_a_displayed_value_tracks_the_simulator(oximeter: Any) -> None:
    pair = oximeter
    pair.need_emulator("setting the patient")
    async with asyncio.timeout(90):
        await settle(pair, 30)
        pair.bench.simulator.set_heart_rate_bpm(120.0)
        reading = await settle(pair, 40)
    assert reading.pulse_rate_bpm == pytest.approx(120.0, abs=3.0)


async def test_values_read_none_with_the_probe_off(oximeter: Any) -> None:
    pair = oximeter
    pair.need_emulator("taking the probe off")
    async with asyncio.timeout(90):
        await settle(pair, 30)
        pair.bench.patient.set_sensor_off(True)
        reading = await settle(pair, 40)
    assert reading.sensor_off
    assert reading.spo2_percent is None
    # The pulse rate is not checked: the patient world's monitor model derives it from
    # the R peaks, which a probe-off does not stop (reported to the world's owner).


@pytest.mark.every_transport
@pytest.mark.parametrize("fault", ["garbage:count=3", "bad-checksum:count=3"])
async def test_stream_faults_are_counted_and_readings_go_on(oximeter: Any, fault: str) -> None:
    pair = oximeter
    async with asyncio.timeout(30):
        await pair.device.read(timeout_s=3.0)
        before = sum(pair.device.link_errors.values())
        pair.inject(fault)
        await until(lambda: sum(pair.device.link_errors.values()) > before)
        reading = await fresh(pair, after_wall_s=time.monotonic())
    assert isinstance(reading, OximeterReading)
    assert not math.isnan(reading.t_s)


async def test_lost_sync_is_counted_and_readings_go_on(oximeter: Any) -> None:
    pair = oximeter
    async with asyncio.timeout(30):
        await pair.device.read(timeout_s=3.0)
        before = sum(pair.device.link_errors.values())
        pair.inject("lost-sync:count=2")
        await until(lambda: sum(pair.device.link_errors.values()) > before)
        await fresh(pair, after_wall_s=time.monotonic())


async def test_a_stream_that_stops_times_out(oximeter: Any) -> None:
    pair = oximeter
    async with asyncio.timeout(30):
        await pair.device.read(timeout_s=3.0)
        pair.inject("drop")
        dropped_at = time.monotonic()
        # Readings that arrived before the stream stopped are returned while they are
        # younger than the timeout; then the read times out.
        for _ in range(100):
            try:
                await pair.device.read(timeout_s=1.5)
            except DeviceTimeout as error:
                timeout = error
                break
            assert pair.device._latest_wall_s <= dropped_at + 0.1
            await asyncio.sleep(0.1)  # polling the driver, as a runner does
        else:
            pytest.fail("read() kept returning readings after the stream stopped")
    assert timeout.device == pair.device.name


@pytest.mark.every_transport
async def test_a_vanished_port_is_reopened_by_the_reader(oximeter: Any) -> None:
    pair = oximeter
    async with asyncio.timeout(30):
        await pair.device.read(timeout_s=3.0)
        pair.inject("disconnect:for=0.2s")
        await until(lambda: pair.device.link_errors["reconnects"] > 0)
        pair.inject()
        await fresh(pair, after_wall_s=time.monotonic())
    assert pair.device.link_errors["reconnects"] >= 1
