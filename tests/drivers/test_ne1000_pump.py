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
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest
from medtwin.device_models.line import MMHG_PER_CM_WATER
from medtwin.device_models.syringe_pump import PA_PER_MMHG, SyringePumpParams
from medtwin.device_models.system.params import rows_from
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
from medtwin.drivers.ne1000 import (
    AlarmCode,
    Command,
    ErrorCode,
    NE1000Pump,
    Prompt,
    Reply,
    decode_command,
    decode_dispensed,
    encode_reply,
)
from medtwin.drivers.ne1000.program import Phase, PhaseFunction, expand_program, rate_limits_ml_h
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


# --------------------------------------------------------------------------- issue 11 §2
# The NE-1000 as the real pump behaves: each test drives the emulator over a real pty
# with the driver, on the virtual clock.


def _wire(reply: Reply) -> bytes:
    """The basic-mode bytes of a reply (golden bytes are written out in the tests)."""
    return encode_reply(reply, safe=False)


async def test_occlusion_stalls_at_the_force_limit_not_a_pressure_threshold(
    rig: RigFactory,
) -> None:
    # BD Plastipak 50 mL (26.59 mm) at 5 mL/h: the NE-1000 has no pressure sensor, so the
    # closed line stalls the motor when P·A + stopper friction reaches the drive's force
    # limit: P_stall = (F_max − F_friction)/A. A generic 500 mmHg threshold alarmed after
    # ~17 min, a quarter of the real time to alarm and bolus.
    r = await rig()
    params = r.bench.sim.params
    pump_params = params.pump
    assert isinstance(pump_params, SyringePumpParams)
    assert pump_params.pressure_sensor is False  # the emulator declared it
    area_m2 = math.pi * (pump_params.syringe.inner_diameter_mm * 1e-3) ** 2 / 4.0
    friction_n = pump_params.syringe.stopper_friction_n
    p_stall = (pump_params.drive.max_force_n - friction_n) / area_m2 / PA_PER_MMHG
    compliance_ml = float(rows_from(params)[0].C[0])  # barrel + tubing, mL/mmHg
    rate = 5.0
    async with asyncio.timeout(60):
        await r.pump.set_syringe_diameter(26.59)
        await r.pump.set_rate(rate)
        await r.pump.set_volume_target(None)
        await r.pump.start()
        r.clock.advance_to(1200.0)  # steady flow
        r.bench.sync()
        p_before = r.bench.sim.state.pressure_mmhg[0]
        r.bench.bench_io.set_occluded(True)
        t, step = 1200.0, 10.0
        while True:
            t += step
            r.clock.advance_to(t)
            status = await r.pump.read_status()
            if status.state is PumpState.ALARM:
                break
            assert t < 1200.0 + 3 * 3600.0, "no stall within 3 h"
        assert status.alarms == frozenset({PumpAlarm.MOTOR_STALL})
        expected_s = compliance_ml * (p_stall - p_before) / (rate / 3600.0)
        assert 3300.0 < expected_s < 4200.0  # ~1 h, not the ~17 min of 500 mmHg
        # the alarm is seen at the first poll after the stall
        assert expected_s <= t - 1200.0 < expected_s + step + 1.0
        p_alarm = r.bench.sim.state.pressure_mmhg[0]
        assert p_alarm == pytest.approx(p_stall, rel=2e-3)
        # Unintended bolus: what the line stored releases through the opened valve.
        grams_per_ml = params.balance.grams_per_ml
        before_g = r.bench.balance.snapshot().net_g
        r.bench.bench_io.set_occluded(False)
        r.clock.advance_to(t + 600.0)
        bolus_ml = (r.bench.balance.snapshot().net_g - before_g) / grams_per_ml
        p_eq = params.line.back_pressure_mmhg - MMHG_PER_CM_WATER * params.line.head_height_cm
        expected_bolus = compliance_ml * (p_stall - p_eq)
        assert bolus_ml == pytest.approx(expected_bolus, rel=0.03)
        assert bolus_ml > 3.5 * compliance_ml * 500.0 * 0.9  # ~4× the 500 mmHg bolus


async def test_rate_below_the_syringe_minimum_is_out_of_range(rig: RigFactory) -> None:
    r = await rig()
    async with asyncio.timeout(20):
        await r.pump.set_syringe_diameter(26.59)
        reply = await r.pump.request(Command("RAT", "0.001UH"))
        assert reply == Reply(0, Prompt.STOPPED, error=ErrorCode.OUT_OF_RANGE)
        assert _wire(reply) == b"\x0200S?OOR\x03"
        low = rate_limits_ml_h(26.59)[0]
        assert low == pytest.approx(0.02337, rel=1e-3)  # 0.73 µL/h × (26.59/4.699)²
        too_slow = await r.pump.request(Command("RAT", "20.00UH"))
        assert too_slow.error is ErrorCode.OUT_OF_RANGE
        assert (await r.pump.request(Command("RAT", "25.00UH"))).error is None
        mark = r.emulator.server.bytes_received
        with pytest.raises(LimitError, match=r"for a 26\.59 mm syringe; nothing was sent"):
            await r.pump.set_rate(0.01)  # 10 µL/h on a 60 mL syringe: refused before sending
        assert r.emulator.server.bytes_received == mark


async def test_reset_and_out_of_scope_commands_are_answered(rig: RigFactory) -> None:
    r = await rig()
    async with asyncio.timeout(20):
        for command, wire in [
            (Command("RESET"), b"\x0200S\x03"),
            (Command("RESET", address="*"), b"\x0200S\x03"),
            (Command("TRG", "FT"), b"\x0200S?NA\x03"),
            (Command("OUT", "1"), b"\x0200S?NA\x03"),
            (Command("IN", "2"), b"\x0200S?NA\x03"),
            (Command("BUZ", "1"), b"\x0200S?NA\x03"),
            (Command("FUN", "PRI"), b"\x0200S?NA\x03"),
        ]:
            assert _wire(await r.pump.request(command)) == wire, command
        # RESET stops a running pump and clears the program memory to one RAT phase
        await r.pump.set_rate(5.0)
        await r.pump.upload_program([Phase(PhaseFunction.RATE, 5.0), Phase(PhaseFunction.STOP)])
        await r.pump.start()
        assert (await r.pump.request(Command("RESET"))).prompt is Prompt.STOPPED
        assert r.emulator.handler.phase_count == 1
        assert (await r.pump.request(Command("FUN"))).data == "RAT"


async def test_pumping_program_from_the_driver(rig: RigFactory) -> None:
    r = await rig()
    program = [
        Phase(PhaseFunction.RATE, 60.0, 0.5),  # 30 s at 60 mL/h
        Phase(PhaseFunction.LOOP_START),
        Phase(PhaseFunction.PAUSE, argument=10),  # 10 s timed pause
        Phase(PhaseFunction.INCREMENT, 60.0, 0.5),  # 120 mL/h for 15 s, then 180 for 10 s
        Phase(PhaseFunction.LOOP, argument=1),  # back once: the body runs twice
        Phase(PhaseFunction.STOP),
    ]
    segments = expand_program(program)
    assert [(s.duration_s, s.rate_ml_h) for s in segments] == [
        (30.0, 60.0),
        (10.0, 0.0),
        (15.0, 120.0),
        (10.0, 0.0),
        (10.0, 180.0),
        (math.inf, 0.0),
    ]
    async with asyncio.timeout(30):
        await r.pump.set_syringe_diameter(26.59)
        mark = r.emulator.server.bytes_received
        await r.pump.upload_program(program)
        sent = r.commands_since(mark)
        assert sent[:7] == ["PHN", "FUN", "RAT", "VOL", "VOL", "DIR", "PHN"]
        assert sent[-1] == "PHN"
        assert (await r.pump.request(Command("FUN"))).data == "RAT"
        await r.pump.run_program(1)
        expected = {
            15.0: (Prompt.INFUSING, 0.25, 1),
            35.0: (Prompt.TIMED_PAUSE, 0.5, 3),
            47.5: (Prompt.INFUSING, 0.75, 4),
            60.0: (Prompt.TIMED_PAUSE, 1.0, 3),
            70.0: (Prompt.INFUSING, 1.25, 4),
            80.0: (Prompt.STOPPED, 1.5, 6),
        }
        for t, (prompt, infused, phase) in expected.items():
            r.clock.advance_to(t)
            reply = await r.pump.request(Command("DIS"))
            assert reply.prompt is prompt, t
            assert decode_dispensed(reply.data)[0] == pytest.approx(infused, abs=1e-3), t
            if prompt is not Prompt.STOPPED:
                assert (await r.pump.request(Command("PHN"))).data == f"{phase:02d}", t
        # a user STP pauses the program and RUN resumes it where it was
        await r.pump.run_program(1)
        r.clock.advance_to(95.0)
        assert (await r.pump.request(Command("STP"))).prompt is Prompt.PAUSED
        r.clock.advance_to(200.0)
        assert (await r.pump.request(Command("RUN"))).prompt is Prompt.INFUSING
        r.clock.advance_to(217.0)
        reply = await r.pump.request(Command("DIS"))
        assert reply.prompt is Prompt.TIMED_PAUSE
        assert decode_dispensed(reply.data)[0] == pytest.approx(2.0, abs=1e-3)


async def test_program_limits_are_checked_before_sending(rig: RigFactory) -> None:
    r = await rig(limits=PumpLimits(max_rate_ml_h=100.0))
    async with asyncio.timeout(20):
        await r.pump.set_syringe_diameter(26.59)
        mark = r.emulator.server.bytes_received
        bad = [
            [Phase(PhaseFunction.RATE, 60.0, 1.0), Phase(PhaseFunction.INCREMENT, 60.0, 1.0)],
            [Phase(PhaseFunction.JUMP, argument=5)],
            [Phase(PhaseFunction.LOOP, argument=1)],
            [Phase(PhaseFunction.RATE, 0.01, 1.0)],  # below the 26.59 mm syringe's minimum
            [Phase(PhaseFunction.PAUSE, argument=100)],
            [Phase(PhaseFunction.STOP)] * 42,
        ]
        for program in bad:
            with pytest.raises(LimitError, match="nothing was sent"):
                await r.pump.upload_program(program)
        with pytest.raises(LimitError):
            await r.pump.run_program(42)
        assert r.emulator.server.bytes_received == mark


async def test_empty_syringe_is_a_stall_that_run_does_not_clear(rig: RigFactory) -> None:
    r = await rig()
    r.bench.set_truth({"pump.fill_ml": 1.0})
    async with asyncio.timeout(30):
        await r.pump.set_syringe_diameter(26.59)
        await r.pump.set_rate(60.0)
        await r.pump.set_volume_target(None)
        await r.pump.start()
        r.clock.advance_to(120.0)  # 1 mL is gone after 60 s
        status = await r.pump.read_status()
        assert status.state is PumpState.ALARM
        assert status.alarms == frozenset({PumpAlarm.MOTOR_STALL})
        r.bench.sync()
        assert r.bench.sim.state.plunger_ml[0] == pytest.approx(1.0, abs=1e-3)  # the fill
        counted = r.bench.pump.snapshot().infused_ml
        # Acknowledged by that reply; RUN drives the plunger into the barrel's end again
        # and the pump stalls again at once: no silent restart.
        await r.pump.start()
        r.clock.advance_to(121.0)
        assert (await r.pump.request(Command(""))) == Reply(0, None, AlarmCode.STALL)
        assert _wire(Reply(0, None, AlarmCode.STALL)) == b"\x0200A?S\x03"
        assert r.bench.pump.snapshot().infused_ml == pytest.approx(counted, abs=1e-3)
