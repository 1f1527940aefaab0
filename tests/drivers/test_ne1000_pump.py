"""NE1000Pump driver against the NE-1000 emulator over real ptys and TCP.

Every test runs the real physical bench behind the emulator; the virtual clock makes
volumes exact. Fault tests inject each reply fault kind through the emulator's fault plan
and the motor stall through the bench's device faults.

The contract every pump keeps (alarms refusing a start, a faulty or late reply retried, a
port reopened or lost) is checked once for all pumps in tests/conformance; this file holds
what the NE-1000 does its own way (units on the wire, safe mode, alarm acknowledgement).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest
from medtwin.drivers.base import PumpAlarm, PumpLimits, PumpState, RetryPolicy
from medtwin.drivers.clock import VirtualClock, WallClock
from medtwin.drivers.emulators.faults import FaultPlan, parse_fault
from medtwin.drivers.emulators.ne1000 import NE1000Emulator
from medtwin.drivers.emulators.physical_bench import PhysicalBench
from medtwin.drivers.errors import (
    CommandRefused,
    ConfigurationError,
    LimitError,
    ProtocolError,
)
from medtwin.drivers.ne1000 import Command, NE1000Pump, Prompt, decode_command
from medtwin.drivers.registry import driver_class, emulator_class

FAST_RETRY = RetryPolicy(timeout_s=0.5, retries=2, reconnects=6, backoff_s=0.05)


@dataclass
class Rig:
    clock: VirtualClock | WallClock
    bench: PhysicalBench
    emulator: NE1000Emulator
    pump: NE1000Pump

    def commands_since(self, mark: int) -> list[str]:
        """Command names the emulator received after ``mark`` bytes (basic mode)."""
        data = b"".join(chunk for _, chunk in self.emulator.server.rx_log)
        lines = data[mark - self.emulator.server.bytes_received + len(data) :].split(b"\r")
        return [decode_command(line).name for line in lines if line]


RigFactory = Callable[..., Awaitable[Rig]]


@pytest.fixture
async def rig() -> AsyncIterator[RigFactory]:
    made: list[Rig] = []

    async def build(
        *,
        tcp: bool = False,
        safe_mode: bool = False,
        faults: list[str] | None = None,
        device_faults: list[str] | None = None,
        clock: VirtualClock | WallClock | None = None,
        retry: RetryPolicy = FAST_RETRY,
        limits: PumpLimits | None = None,
        open_pump: bool = True,
        saf_s: int = 255,
        **emulator_options: object,
    ) -> Rig:
        clock = clock or VirtualClock()
        bench = PhysicalBench.default(
            clock=clock, device_faults=[parse_fault(spec) for spec in device_faults or []]
        )
        # Seed 3: a fixed seed keeps probabilistic faults reproducible run to run.
        plan = FaultPlan.parse(faults or [], seed=3) if faults else None
        emulator = NE1000Emulator(bench.pump, clock=clock, faults=plan, **emulator_options)
        port = await emulator.start(tcp=("127.0.0.1", 0) if tcp else None)
        pump = NE1000Pump(
            port,
            safe_mode=safe_mode,
            safe_mode_timeout_s=saf_s,
            clock=clock,
            retry=retry,
            limits=limits,
        )
        made.append(Rig(clock, bench, emulator, pump))
        if open_pump:
            await pump.open()
        return made[-1]

    yield build
    for item in made:
        await item.pump.close()
        await item.emulator.stop()


@pytest.mark.parametrize("tcp", [False, True], ids=["pty", "tcp"])
@pytest.mark.parametrize("safe_mode", [False, True], ids=["basic", "safe"])
async def test_infusion_session(rig: RigFactory, tcp: bool, safe_mode: bool) -> None:
    r = await rig(tcp=tcp, safe_mode=safe_mode)
    assert r.emulator.handler.safe_mode is safe_mode
    async with asyncio.timeout(20):
        identity = await r.pump.identify()
        assert (identity.protocol, identity.model, identity.firmware) == (
            "ne1000",
            "NE-1000",
            "3.928",
        )
        await r.pump.set_syringe_diameter(26.59)
        assert await r.pump.read_syringe_diameter() == 26.59  # "DIA" query
        await r.pump.set_syringe_diameter(14.43)
        assert await r.pump.read_syringe_diameter() == 14.43
        await r.pump.set_syringe_diameter(26.59)
        await r.pump.set_rate(6.0)
        await r.pump.set_volume_target(None)
        status = await r.pump.read_status()
        assert status.state is PumpState.STOPPED
        assert status.alarms == frozenset()  # the power-up A?R was handled on open
        assert status.pressure_mmhg is None
        await r.pump.start()
        assert isinstance(r.clock, VirtualClock)
        # In safe mode a clock jump must stay below the SAF time-out (255 s here): the
        # pump measures it on the device clock.
        r.clock.advance_to(240.0)
        status = await r.pump.read_status()
        assert status.state is PumpState.INFUSING
        assert status.rate_ml_h == pytest.approx(6.0)
        assert status.infused_ml == pytest.approx(0.4, abs=1e-3)
        assert status.t_s == 240.0
        await r.pump.stop()  # pause, then stop
        status = await r.pump.read_status()
        assert status.state is PumpState.STOPPED
        assert status.rate_ml_h == 0.0
        await r.pump.stop()  # already stopped: ?NA is fine
        await r.pump.clear_volume()
        status = await r.pump.read_status()
        assert (status.infused_ml, status.withdrawn_ml) == (0.0, 0.0)


async def test_volume_target_and_direction(rig: RigFactory) -> None:
    r = await rig()
    assert isinstance(r.clock, VirtualClock)
    async with asyncio.timeout(20):
        await r.pump.set_rate(60.0)
        await r.pump.set_volume_target(0.25)  # µL gives 4 digits: VOL UL, VOL 250.0
        assert r.emulator.handler.volume_unit.value == "UL"
        await r.pump.start()
        r.clock.advance_to(60.0)
        status = await r.pump.read_status()
        assert status.state is PumpState.STOPPED
        assert status.infused_ml == pytest.approx(0.25, abs=1e-3)
        await r.pump.set_direction(False)
        reply = await r.pump.request(Command("DIR"))
        assert (reply.prompt, reply.data) == (Prompt.STOPPED, "WDR")


async def test_rate_unit_kept_while_running(rig: RigFactory) -> None:
    r = await rig()
    async with asyncio.timeout(20):
        await r.pump.set_rate(0.5)  # 500.0 UH
        await r.pump.start()
        await r.pump.set_rate(5.0)  # 5000 UH, not 5.000 MH: units cannot change now
        assert (await r.pump.read_status()).rate_ml_h == pytest.approx(5.0)
        with pytest.raises(CommandRefused, match=r"\?NA") as info:
            await r.pump.set_rate(20.0)  # only expressible in mL/h
        assert b"?NA" in info.value.reply


async def test_refused_commands_carry_the_reply(rig: RigFactory) -> None:
    r = await rig()
    async with asyncio.timeout(20):
        with pytest.raises(CommandRefused, match=r"\?OOR") as info:
            await r.pump.set_syringe_diameter(70.0)  # within NE-1000 limits, not the drive's
        assert info.value.reply == b"\x0200S?OOR\x03"
        assert info.value.device == r.pump.name


async def test_limit_refusal_sends_nothing(rig: RigFactory) -> None:
    r = await rig(limits=PumpLimits(max_rate_ml_h=100.0, max_diameter_mm=50.0))
    server = r.emulator.server
    async with asyncio.timeout(20):
        await r.pump.read_status()
        mark = server.bytes_received
        with pytest.raises(LimitError, match="outside the declared limits"):
            await r.pump.set_rate(150.0)
        with pytest.raises(LimitError, match="cannot be written"):
            await r.pump.set_rate(1.23456e-5)  # below what 4 digits of µL/h can say
        with pytest.raises(LimitError, match="declared range"):
            await r.pump.set_syringe_diameter(55.0)
        with pytest.raises(LimitError, match="cannot be written"):
            await r.pump.set_volume_target(12345.0)
        await r.pump.read_status()  # the emulator serves requests in order
    assert r.commands_since(mark) == ["DIS"]


async def test_stall_surfaces_as_an_alarm(rig: RigFactory) -> None:
    r = await rig(device_faults=["stall:at=10s"])
    assert isinstance(r.clock, VirtualClock)
    async with asyncio.timeout(20):
        await r.pump.set_rate(5.0)
        await r.pump.start()
        r.clock.advance_to(11.0)
        status = await r.pump.read_status()
        assert status.state is PumpState.ALARM
        assert status.alarms == frozenset({PumpAlarm.MOTOR_STALL})
        # That reply acknowledged the alarm: the pump is stopped and may be restarted.
        assert (await r.pump.read_status()).state is PumpState.STOPPED
        await r.pump.start()
        assert (await r.pump.read_status()).state is PumpState.INFUSING


async def test_alarm_pending_at_open_is_reported_not_swallowed(rig: RigFactory) -> None:
    r = await rig(open_pump=False)
    r.bench.pump.raise_alarm(PumpAlarm.MOTOR_STALL)
    async with asyncio.timeout(20):
        await r.pump.open()  # acknowledges A?R, then A?S
        status = await r.pump.read_status()
        assert status.state is PumpState.ALARM
        assert status.alarms == frozenset({PumpAlarm.MOTOR_STALL})
        assert (await r.pump.read_status()).alarms == frozenset()


@pytest.mark.parametrize("safe_mode", [False, True], ids=["basic", "safe"])
async def test_garbage_before_every_reply_is_skipped(rig: RigFactory, safe_mode: bool) -> None:
    r = await rig(safe_mode=safe_mode, faults=["garbage"])
    async with asyncio.timeout(20):
        await r.pump.set_rate(12.5)
        reply = await r.pump.request(Command("RAT"))
        assert reply.data == "12.50MH"
    assert len(r.emulator.server.fault_log) >= 3


async def test_bad_checksums_are_retried(rig: RigFactory) -> None:
    r = await rig(safe_mode=True, faults=["bad-checksum:every=2"])
    async with asyncio.timeout(20):
        for rate in (1.0, 2.0, 3.0):
            await r.pump.set_rate(rate)
            assert (await r.pump.request(Command("RAT"))).data == f"{rate:.3f}MH"
    assert "bad-checksum" in {kind for _, kind in r.emulator.server.fault_log}


async def test_every_reply_broken_raises_protocol_error_with_bytes(rig: RigFactory) -> None:
    r = await rig(safe_mode=True, open_pump=True)
    r.emulator.server.faults = FaultPlan.parse(["bad-checksum"])
    async with asyncio.timeout(20):
        with pytest.raises(ProtocolError, match="malformed reply") as info:
            await r.pump.read_status()
    assert info.value.raw.startswith(b"\x02")
    assert info.value.device == r.pump.name


async def test_virtual_clock_jump_beyond_saf_times_out_the_pump(rig: RigFactory) -> None:
    r = await rig(safe_mode=True, saf_s=10)
    assert isinstance(r.clock, VirtualClock)
    async with asyncio.timeout(20):
        await r.pump.set_rate(1.0)
        await r.pump.start()
        r.clock.advance_to(11.0)  # no valid packet for 11 s of device time
        status = await r.pump.read_status()
    assert status.state is PumpState.ALARM
    assert status.alarms == frozenset({PumpAlarm.COMMUNICATION_TIMEOUT})


@pytest.mark.slow
async def test_safe_mode_heartbeat_keeps_the_pump_out_of_timeout(rig: RigFactory) -> None:
    # Wall clock: the pump's 1 s communication time-out and the driver's heartbeat both
    # run in real time here.
    r = await rig(clock=WallClock(), safe_mode=True, saf_s=1, power_on_alarm=False)
    async with asyncio.timeout(20):
        await r.pump.set_rate(1.0)
        await r.pump.start()
        await asyncio.sleep(2.5)  # idle for 2.5 time-outs: only the heartbeat talks
        status = await r.pump.read_status()
    assert status.state is PumpState.INFUSING
    assert PumpAlarm.COMMUNICATION_TIMEOUT not in status.alarms


def test_registry_and_configuration() -> None:
    assert driver_class("ne1000") is NE1000Pump
    assert emulator_class("ne1000") is NE1000Emulator
    with pytest.raises(ConfigurationError, match="address"):
        NE1000Pump("/dev/ttyUSB0", address=100)
    with pytest.raises(ConfigurationError, match="safe_mode_timeout_s"):
        NE1000Pump("/dev/ttyUSB0", safe_mode=True, safe_mode_timeout_s=0)
    with pytest.raises(ConfigurationError, match="socket://"):
        NE1000Pump("socket://bad")


async def test_a_malformed_diameter_reply_is_a_protocol_error_naming_the_pump(
    rig: RigFactory,
) -> None:
    """A pump (or a line) that answers the ``DIA`` query with something that is not a
    number: ProtocolError with the data, not a ValueError from deep inside."""
    r = await rig()
    handler = r.emulator.handler
    answer = handler._commands["DIA"]
    handler._commands["DIA"] = lambda argument: answer(argument) if argument else "2x.5"
    async with asyncio.timeout(20):
        with pytest.raises(ProtocolError, match=r"bad DIA reply '2x\.5'") as info:
            await r.pump.read_syringe_diameter()
    assert info.value.device == r.pump.name
    assert info.value.raw == b"2x.5"
