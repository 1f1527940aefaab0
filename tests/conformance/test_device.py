"""The contract every driver keeps, whatever its class (:class:`medtwin.drivers.base.Device`).

Run against every driver/emulator pair of every device class (pumps, balances, bench I/O;
see conftest.py for real hardware): the lifecycle (a call needs an open device; a port that
does not exist is a :class:`PortError`), identity, the one timeout of each call, the bounded
retries that absorb one faulty reply, a :class:`ProtocolError` or a timeout (never a hang or
a stray exception) when every reply is corrupt, and reconnecting a port that vanished.

Each class's own operations have their suites (``test_pump.py``, ``test_balance.py``,
``test_bench_io.py``); here a class-specific *round trip* (write a setting, read it back, or
read a weight) checks that a driver is still in step with its device after a fault.
"""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import Any

import pytest
from medtwin.drivers.base import DeviceStatus, RetryPolicy
from medtwin.drivers.errors import (
    DeviceError,
    DeviceTimeout,
    PortError,
    ProtocolError,
)
from medtwin.drivers.registry import driver_class

DEVICE_KIND = "*"  # every device class

#: Attempts long enough for a pty under load, short enough to keep the fault cases quick.
QUICK = RetryPolicy(timeout_s=0.15, retries=2, reconnects=20, backoff_s=0.02, backoff_max_s=0.1)


async def round_trip(pair: Any, step: int) -> None:
    """One exchange whose answer proves the driver reads the reply to *this* request."""
    kind = pair.spec.kind
    device = pair.device
    if kind == "pump":
        diameter = (14.43, 26.59)[step % 2]
        await device.set_syringe_diameter(diameter)
        assert await device.read_syringe_diameter() == pytest.approx(diameter, rel=1e-6)
    elif kind == "bench-io":
        occluded = step % 2 == 0
        await device.set_occluded(occluded)
        assert (await device.read_status()).occluded is occluded
    elif kind == "balance":
        reading = await device.read()
        assert reading.unit == "g"
        assert math.isfinite(reading.mass_g)
    elif kind == "simulator":
        rate = (72, 96)[step % 2]
        await device.set_heart_rate(rate)
        if pair.emulated:
            assert pair.mechanism.settings().heart_rate_bpm == rate
    else:  # pragma: no cover - a new device class adds its round trip here
        raise AssertionError(f"no round trip for device class {kind!r}")


@pytest.mark.every_transport
async def test_identify_names_the_protocol(pair: Any) -> None:
    async with asyncio.timeout(20):
        identity = await pair.device.identify()
    assert identity.protocol == pair.spec.protocol
    assert identity.model
    if pair.emulated:
        assert identity.model == pair.mechanism.model


async def test_calls_need_an_open_device(pair: Any) -> None:
    device = pair.device
    await device.close()
    await device.close()  # twice is fine
    assert device.status is DeviceStatus.CLOSED
    with pytest.raises(DeviceError, match=r"identify\(\) needs the device open, but it is closed"):
        await device.identify()
    async with asyncio.timeout(20):
        await device.open()
        await device.identify()
    assert device.status is DeviceStatus.OPEN


async def test_a_port_that_does_not_exist_is_a_port_error(pair_spec: Any, tmp_path: Path) -> None:
    device = driver_class(pair_spec.protocol)(str(tmp_path / "no-such-tty"))
    with pytest.raises(PortError):
        await device.open()
    assert device.status is DeviceStatus.CLOSED


@pytest.mark.parametrize(
    "fault",
    ["drop:count=1", "garbage:count=1", "bad-checksum:count=1", "late:delay=0.25s,count=1"],
)
async def test_one_faulty_reply_is_retried(pair: Any, fault: str) -> None:
    await pair.reopen(retry=QUICK)
    pair.inject(fault)
    async with asyncio.timeout(20):
        await round_trip(pair, 0)
        if fault.startswith("late"):
            await asyncio.sleep(0.3)  # the late reply lands between two exchanges
        for step in (1, 2):
            await round_trip(pair, step)  # in step: a stale reply is never taken for new
    assert pair.device.status is DeviceStatus.OPEN


async def test_a_silent_device_times_out(pair: Any) -> None:
    quick = RetryPolicy(timeout_s=0.15, retries=1)
    await pair.reopen(retry=quick)
    pair.inject("drop")
    async with asyncio.timeout(20):
        with pytest.raises(
            DeviceTimeout, match=r"no reply within 0\.15 s after 2 attempts"
        ) as info:
            await round_trip(pair, 0)
    assert info.value.device == pair.device.name


async def test_corrupt_replies_never_pass_as_data(pair: Any) -> None:
    """Garbage in front of replies and broken checksums (or, in a protocol without one, a
    broken payload byte), at random: every call either returns the right answer (a fault
    the framing absorbs) or raises a ProtocolError carrying the bytes, or a timeout where
    the framing discards a corrupt frame as line noise (Modbus RTU checks the CRC first).
    Never wrong data, another exception or a hang; and once the line is clean the driver is
    back in step."""
    await pair.reopen(retry=RetryPolicy(timeout_s=0.15, retries=1))
    pair.inject("garbage:p=0.5", "bad-checksum:p=0.5")
    async with asyncio.timeout(60):
        failed: list[ProtocolError | DeviceTimeout] = []
        for step in range(3):
            try:
                await round_trip(pair, step)
            except (ProtocolError, DeviceTimeout) as error:
                failed.append(error)
        pair.inject()
        for step in range(2):
            await round_trip(pair, step)
    assert all(error.device == pair.device.name for error in failed)
    assert all(error.raw for error in failed if isinstance(error, ProtocolError))


@pytest.mark.every_transport
async def test_a_port_that_comes_back_is_reopened(pair: Any) -> None:
    async with asyncio.timeout(20):
        await round_trip(pair, 0)
        pair.inject("disconnect:for=0.1s")
        await round_trip(pair, 1)  # the port vanishes on a reply; the driver reopens it
        assert pair.device.status is DeviceStatus.OPEN
        await round_trip(pair, 2)


async def test_a_port_gone_for_good_marks_the_device_lost(pair: Any) -> None:
    await pair.reopen(retry=RetryPolicy(timeout_s=0.15, retries=1, reconnects=1, backoff_s=0.01))
    pair.inject("disconnect:for=30s")
    async with asyncio.timeout(20):
        with pytest.raises(PortError):
            await round_trip(pair, 0)
    assert pair.device.status is DeviceStatus.LOST
