"""The patient-simulator contract (:class:`medtwin.drivers.vital_signs.PatientSimulator`).

Run against every registered protocol of kind ``simulator`` (the ProSim 8), its driver
against its emulator over a pty and TCP with the bench's shared patient behind it (see
conftest.py for real hardware): identity, every setter reaching the patient, values
outside the limits refused with nothing on the wire, the device's refusals raised as
CommandRefused, and the one timeout of each call.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from medtwin.drivers.base import RetryPolicy
from medtwin.drivers.errors import CommandRefused, DeviceTimeout, LimitError

DEVICE_KIND = "simulator"


@pytest.mark.every_transport
async def test_identify_and_remote_mode(pair: Any) -> None:
    async with asyncio.timeout(20):
        identity = await pair.device.identify()
    assert identity.protocol == pair.spec.protocol
    assert identity.model
    if pair.emulated:
        assert pair.mechanism.settings().remote  # open() took the simulator over
        await pair.device.close()
        assert not pair.mechanism.settings().remote  # close() handed it back


@pytest.mark.every_transport
async def test_every_setting_reaches_the_patient(pair: Any) -> None:
    device = pair.device
    async with asyncio.timeout(20):
        await device.set_heart_rate(123)
        await device.set_spo2(88)
        await device.set_resp_rate(22)
        await device.set_nibp(135, 85)
    if not pair.emulated:
        return
    s = pair.mechanism.settings()
    assert (s.heart_rate_bpm, s.spo2_percent, s.resp_rate_min) == (123.0, 88.0, 22.0)
    assert (s.nibp_sys_mmhg, s.nibp_dia_mmhg) == (135.0, 85.0)
    await pair.advance(5.0)
    truth = pair.bench.patient.true_values()
    assert truth["hr_bpm"] == pytest.approx(123.0, abs=3.0)
    assert truth["spo2_percent"] == pytest.approx(88.0, abs=2.0)


async def test_invasive_pressure_settings(pair: Any) -> None:
    device = pair.device
    if not hasattr(device, "set_ibp"):
        pytest.skip(f"{pair.spec.protocol} has no invasive-pressure channels")
    async with asyncio.timeout(20):
        await device.set_ibp(1, 140, 70)
        await device.set_ibp_static(2, -5)
        await device.set_ibp_wave(2, "PA")
    if pair.emulated:
        s = pair.mechanism.settings()
        assert s.ibp == {1: (140.0, 70.0), 2: (-5.0, -5.0)}
        assert s.ibp_wave[2] == "PA"


@pytest.mark.parametrize(
    "call",
    [
        ("set_heart_rate", (400,)),
        ("set_heart_rate", (5,)),
        ("set_spo2", (101,)),
        ("set_resp_rate", (200,)),
        ("set_nibp", (80, 120)),
        ("set_nibp", (500, 80)),
    ],
    ids=lambda c: f"{c[0]}{c[1]}",
)
async def test_out_of_limit_values_send_nothing(pair: Any, call: tuple[str, tuple[float]]) -> None:
    before = pair.requests_seen() if pair.emulated else None
    settings = pair.mechanism.settings() if pair.emulated else None
    method, args = call
    with pytest.raises(LimitError, match="nothing was sent"):
        await getattr(pair.device, method)(*args)
    if pair.emulated:
        assert pair.requests_seen() == before
        assert pair.mechanism.settings() == settings


async def test_the_bench_limits_narrow_the_simulator_ones(pair: Any) -> None:
    from medtwin.drivers.vital_signs import SimulatorLimits

    device = pair.device
    device.limits = SimulatorLimits(heart_rate_bpm=(30.0, 200.0))
    with pytest.raises(LimitError):
        await device.set_heart_rate(220)
    await device.set_heart_rate(200)


async def test_device_refusals_raise_command_refused(pair: Any) -> None:
    pair.need_emulator("a refusal the emulator is known to give")
    device = pair.device
    async with asyncio.timeout(20):
        # IBP diastolic above systolic passes the driver's range checks; the device refuses.
        with pytest.raises(CommandRefused, match="ERR=03") as info:
            await device.set_ibp(1, 80, 120)
        assert info.value.reply == b"ERR=03\r\n"
        # In local mode every command but REMOTE is refused with ERR=00.
        await device.send("LOCAL")
        with pytest.raises(CommandRefused, match=r"ERR=00.*no commands"):
            await device.set_heart_rate(90)
        await device.send("REMOTE")
        await device.set_heart_rate(90)
    assert pair.mechanism.settings().heart_rate_bpm == 90.0


async def test_a_silent_simulator_times_out(pair: Any) -> None:
    await pair.reopen(retry=RetryPolicy(timeout_s=0.15, retries=1))
    pair.inject("drop")
    async with asyncio.timeout(20):
        with pytest.raises(DeviceTimeout, match=r"0\.15 s"):
            await pair.device.set_spo2(90)
