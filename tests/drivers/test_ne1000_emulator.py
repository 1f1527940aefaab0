"""The NE-1000 emulator: the protocol state machine over the physical bench, and the
third-party client nesp-lib driving it unmodified over a real pty.

Handler tests feed bytes straight into :class:`NE1000Protocol` on a
:class:`PhysicalBench` with a :class:`VirtualClock`, so every time-out and volume is
exact; ``_ProbeMechanism`` (a fake) isolates the alarm codes the bench cannot raise.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import nesp_lib
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from medtwin.drivers.base import PumpAlarm, PumpState
from medtwin.drivers.clock import VirtualClock
from medtwin.drivers.emulators.faults import parse_fault
from medtwin.drivers.emulators.mechanisms import PumpSnapshot
from medtwin.drivers.emulators.ne1000 import NE1000Emulator, NE1000Protocol
from medtwin.drivers.emulators.physical_bench import PhysicalBench
from medtwin.drivers.errors import ProtocolError
from medtwin.drivers.ne1000 import (
    AlarmCode,
    ErrorCode,
    Prompt,
    Reply,
    decode_dispensed,
    decode_reply,
    encode_safe_packet,
)

T = TypeVar("T")
SAF0_PACKET = bytes([0x02, 0x08]) + b"SAF0" + bytes([0x55, 0x43, 0x03])


def make(
    *,
    clock: VirtualClock | None = None,
    stall_at_s: float | None = None,
    **options: Any,
) -> tuple[NE1000Protocol, PhysicalBench, VirtualClock]:
    clock = clock or VirtualClock()
    faults = [parse_fault(f"stall:at={stall_at_s}s")] if stall_at_s is not None else []
    bench = PhysicalBench.default(clock=clock, device_faults=faults)
    options.setdefault("power_on_alarm", False)
    return NE1000Protocol(bench.pump, clock=clock, **options), bench, clock


def frames(handler: NE1000Protocol, data: bytes) -> list[tuple[Reply, bool]]:
    return [decode_reply(frame) for frame in handler.feed(data)]


def ask(handler: NE1000Protocol, text: str) -> Reply:
    replies = frames(handler, text.encode() + b"\r")
    assert len(replies) == 1, replies
    reply, safe = replies[0]
    assert not safe
    return reply


def ask_safe(handler: NE1000Protocol, text: str) -> tuple[Reply, bool]:
    replies = frames(handler, encode_safe_packet(text.encode()))
    assert len(replies) == 1, replies
    return replies[0]


def ok(reply: Reply, prompt: Prompt = Prompt.STOPPED, data: str = "") -> None:
    assert reply == Reply(0, prompt, data=data), reply


def refused(reply: Reply, error: ErrorCode, prompt: Prompt = Prompt.STOPPED) -> None:
    assert reply == Reply(0, prompt, error=error), reply


# --------------------------------------------------------------------------- basics


def test_power_up_alarm_is_acknowledged_by_the_first_command_which_is_not_executed() -> None:
    handler, bench, _ = make(power_on_alarm=True)
    assert ask(handler, "RAT5MH") == Reply(0, None, AlarmCode.RESET)
    assert bench.pump.snapshot().rate_setpoint_ml_h == 0.0  # not executed
    ok(ask(handler, "RAT5MH"))
    assert bench.pump.snapshot().rate_setpoint_ml_h == 5.0


def test_status_and_version_with_spaces_and_lower_case() -> None:
    handler, _, _ = make()
    ok(ask(handler, ""))
    ok(ask(handler, " 0 "))
    ok(ask(handler, "0 ver"), data="NE1000V3.928")
    refused(ask(handler, "VER 2"), ErrorCode.NOT_APPLICABLE)


def test_diameter_and_default_volume_units() -> None:
    handler, bench, _ = make()
    ok(ask(handler, "DIA"), data="26.59")
    ok(ask(handler, "DIA 12.0"))
    assert bench.pump.snapshot().diameter_mm == 12.0
    ok(ask(handler, "DIA"), data="12.00")
    ok(ask(handler, "VOL"), data="0.000UL")  # at or below 14.00 mm: µL
    ok(ask(handler, "DIA 26.59"))
    ok(ask(handler, "VOL"), data="0.000ML")
    refused(ask(handler, "DIA 75"), ErrorCode.OUT_OF_RANGE)  # beyond the drive's range
    refused(ask(handler, "DIA 12.345"), ErrorCode.OUT_OF_RANGE)  # 5 digits
    refused(ask(handler, "DIA 1.2.3"), ErrorCode.UNRECOGNIZED)
    refused(ask(handler, "DIA 1A"), ErrorCode.UNRECOGNIZED)
    assert bench.pump.snapshot().diameter_mm == 26.59


def test_rate_units_set_query_and_change_while_pumping() -> None:
    handler, bench, _ = make()
    ok(ask(handler, "RAT 10.5 MH"))
    ok(ask(handler, "RAT"), data="10.50MH")
    ok(ask(handler, "RAT 500 UH"))
    ok(ask(handler, "RAT"), data="500.0UH")
    assert bench.pump.snapshot().rate_setpoint_ml_h == pytest.approx(0.5)
    # No units: keeps µL/h. (25 µL/h: 2 µL/h is below the NE-1000's minimum for this
    # 26.59 mm syringe, see test_rate_below_the_syringe_minimum_is_out_of_range.)
    ok(ask(handler, "RAT 25"))
    ok(ask(handler, "RAT"), data="25.00UH")
    ok(ask(handler, "RAT 1500 UH"))
    ok(ask(handler, "RAT"), data="1500.UH")
    ok(ask(handler, "RUN"), Prompt.INFUSING)
    refused(ask(handler, "RAT 20 MH"), ErrorCode.NOT_APPLICABLE, Prompt.INFUSING)
    ok(ask(handler, "RAT 600 UH"), Prompt.INFUSING)  # same units: takes effect at once
    assert bench.pump.snapshot().rate_ml_h == pytest.approx(0.6)
    refused(ask(handler, "RAT 99999 UH"), ErrorCode.OUT_OF_RANGE, Prompt.INFUSING)
    refused(ask(handler, "RAT 5000 MM"), ErrorCode.NOT_APPLICABLE, Prompt.INFUSING)
    refused(ask(handler, "RAT 10 XY"), ErrorCode.UNRECOGNIZED, Prompt.INFUSING)


def test_rate_beyond_the_drive_is_out_of_range() -> None:
    handler, bench, _ = make()
    high = bench.pump.rate_range_ml_h()[1]
    refused(ask(handler, f"RAT {high * 1.1 / 60:.1f} MM"), ErrorCode.OUT_OF_RANGE)


def test_volume_units_and_value() -> None:
    handler, bench, _ = make()
    ok(ask(handler, "VOL 2.5"))
    ok(ask(handler, "VOL"), data="2.500ML")
    assert bench.pump.snapshot().volume_target_ml == pytest.approx(2.5)
    ok(ask(handler, "VOL UL"))  # the number keeps its digits, the units change
    ok(ask(handler, "VOL"), data="2.500UL")
    assert bench.pump.snapshot().volume_target_ml == pytest.approx(0.0025)
    ok(ask(handler, "VOL 0"))
    assert bench.pump.snapshot().volume_target_ml is None
    refused(ask(handler, "VOL 12345"), ErrorCode.OUT_OF_RANGE)
    refused(ask(handler, "VOL XL"), ErrorCode.UNRECOGNIZED)


def test_direction() -> None:
    handler, bench, _ = make()
    ok(ask(handler, "DIR"), data="INF")
    ok(ask(handler, "DIR WDR"))
    ok(ask(handler, "DIR"), data="WDR")
    assert not bench.pump.snapshot().infusing
    ok(ask(handler, "DIR REV"))
    ok(ask(handler, "DIR"), data="INF")
    refused(ask(handler, "DIR STK"), ErrorCode.NOT_APPLICABLE)
    refused(ask(handler, "DIR UP"), ErrorCode.UNRECOGNIZED)


def test_run_pause_resume_stop_and_dispensed_volume() -> None:
    handler, _, clock = make()
    ok(ask(handler, "RAT 60 MH"))
    ok(ask(handler, "RUN"), Prompt.INFUSING)
    clock.advance_to(60.0)
    reply = ask(handler, "DIS")
    assert reply.prompt is Prompt.INFUSING
    assert decode_dispensed(reply.data)[0] == pytest.approx(1.0, abs=2e-3)
    ok(ask(handler, "STP"), Prompt.PAUSED)
    ok(ask(handler, ""), Prompt.PAUSED)
    ok(ask(handler, "RUN"), Prompt.INFUSING)
    ok(ask(handler, "STP"), Prompt.PAUSED)
    ok(ask(handler, "STP"))
    refused(ask(handler, "STP"), ErrorCode.NOT_APPLICABLE)
    refused(ask(handler, "RUN 2"), ErrorCode.OUT_OF_RANGE)


def test_volume_target_survives_pause_and_resume() -> None:
    handler, bench, clock = make()
    ok(ask(handler, "VOL 1.0"))
    ok(ask(handler, "RAT 60 MH"))
    ok(ask(handler, "RUN"), Prompt.INFUSING)
    clock.advance_to(30.0)
    ok(ask(handler, "STP"), Prompt.PAUSED)
    clock.advance_to(100.0)
    ok(ask(handler, "RUN"), Prompt.INFUSING)
    clock.advance_to(200.0)
    reply = ask(handler, "DIS")
    assert reply.prompt is Prompt.STOPPED  # the program completed at 1.000 mL
    assert decode_dispensed(reply.data)[0] == pytest.approx(1.0, abs=5e-3)
    assert bench.pump.snapshot().state is not PumpState.INFUSING


def test_purge_clear_and_dispensed_units() -> None:
    handler, _, clock = make()
    ok(ask(handler, "PUR"), Prompt.PURGING)
    refused(ask(handler, "PUR"), ErrorCode.NOT_APPLICABLE, Prompt.PURGING)
    clock.advance_to(1.0)
    ok(ask(handler, "STP"))  # a purge stops at once, it does not pause
    infused = decode_dispensed(ask(handler, "DIS").data)[0]
    assert infused > 0
    ok(ask(handler, "CLD INF"))
    ok(ask(handler, "DIS"), data="I0.000W0.000ML")
    refused(ask(handler, "CLD"), ErrorCode.UNRECOGNIZED)
    ok(ask(handler, "DIA 12"))
    ok(ask(handler, "DIS"), data="I0.000W0.000UL")


def test_changes_while_pumping_are_not_applicable() -> None:
    handler, _, _ = make()
    ok(ask(handler, "RAT 1 MH"))
    ok(ask(handler, "VOL 5"))
    ok(ask(handler, "RUN"), Prompt.INFUSING)
    refused(ask(handler, "DIA 20"), ErrorCode.NOT_APPLICABLE, Prompt.INFUSING)
    refused(ask(handler, "VOL 2"), ErrorCode.NOT_APPLICABLE, Prompt.INFUSING)
    refused(ask(handler, "DIR WDR"), ErrorCode.NOT_APPLICABLE, Prompt.INFUSING)
    ok(ask(handler, "RUN"), Prompt.INFUSING)  # already running: status only


def test_settings_flags_and_address() -> None:
    handler, _, _ = make()
    ok(ask(handler, "AL 1"))
    ok(ask(handler, "AL"), data="1")
    refused(ask(handler, "BP 2"), ErrorCode.OUT_OF_RANGE)
    ok(ask(handler, "*ADR"), data="0")
    assert ask(handler, "*ADR 7 B 9600") == Reply(7, Prompt.STOPPED)  # answered as 07
    assert handler.address == 7
    assert frames(handler, b"0DIS\r") == []  # no longer ours
    assert ask(handler, "7DIS").address == 7
    assert ask(handler, "*ADR 0").address == 0
    refused(ask(handler, "ADR 5 B 1234"), ErrorCode.OUT_OF_RANGE)


def test_addresses_broadcast_and_bursts() -> None:
    handler, bench, _ = make(address=5)
    assert ask(handler, "DIS").address == 5  # no address: every pump takes it
    assert ask(handler, "05DIS").address == 5
    assert ask(handler, "5 DIS").address == 5
    assert frames(handler, b"3DIS\r") == []
    assert ask(handler, "*VER").data == "NE1000V3.928"
    assert ask(handler, "5RAT10MH*3RAT20MH*").address == 5
    assert bench.pump.snapshot().rate_setpoint_ml_h == 10.0
    assert frames(handler, b"3RAT20MH*4RAT30MH*\r") == []
    quiet, bench2, _ = make(reply_to_system_commands=False)
    assert frames(quiet, b"*RAT 7 MH\r") == []
    assert bench2.pump.snapshot().rate_setpoint_ml_h == 7.0


def test_unrecognised_input_does_not_acknowledge_an_alarm() -> None:
    handler, _, _ = make(power_on_alarm=True)
    refused(ask(handler, "FOO"), ErrorCode.UNRECOGNIZED)
    refused(ask(handler, "X" * 300), ErrorCode.UNRECOGNIZED)  # over-long line
    assert ask(handler, "").alarm is AlarmCode.RESET
    ok(ask(handler, ""))


def test_several_commands_in_one_chunk_get_replies_in_order() -> None:
    handler, _, _ = make()
    replies = frames(handler, b"RAT 3 MH\rRAT\rDIR\r")
    assert [r.data for r, _ in replies] == ["", "3.000MH", "INF"]


# --------------------------------------------------------------------------- safe mode


def test_manual_basic_mode_packet_is_answered_in_basic_mode() -> None:
    handler, _, _ = make(safe_mode_timeout_s=10)
    assert handler.safe_mode
    assert frames(handler, SAF0_PACKET) == [(Reply(0, Prompt.STOPPED), False)]
    assert not handler.safe_mode
    ok(ask(handler, "SAF"), data="0")


def test_saf_packet_in_basic_mode_switches_and_replies_in_safe_mode() -> None:
    handler, _, _ = make()
    assert ask_safe(handler, "0SAF10") == (Reply(0, Prompt.STOPPED), True)
    assert frames(handler, b"0VER\r") == []  # basic text is ignored in safe mode
    assert ask_safe(handler, "0VER") == (Reply(0, Prompt.STOPPED, data="NE1000V3.928"), True)
    assert ask_safe(handler, "SAF") == (Reply(0, Prompt.STOPPED, data="10"), True)
    refused(ask_safe(handler, "SAF256")[0], ErrorCode.OUT_OF_RANGE)


def test_corrupt_packets_are_answered_com() -> None:
    handler, _, _ = make(safe_mode_timeout_s=10)
    packet = bytearray(encode_safe_packet(b"0DIS"))
    packet[-2] ^= 0xFF
    assert frames(handler, bytes(packet)) == [(Reply(0, error=ErrorCode.COMMUNICATION), True)]
    assert frames(handler, b"\x02\x02") == [(Reply(0, error=ErrorCode.COMMUNICATION), True)]
    wrong_end = bytearray(encode_safe_packet(b"0DIS"))
    wrong_end[-1] = 0x04
    assert frames(handler, bytes(wrong_end))[0][0].error is ErrorCode.COMMUNICATION


def test_inter_byte_timeout_discards_a_stalled_packet() -> None:
    wall = [0.0]
    handler, _, _ = make(safe_mode_timeout_s=100, wall_time=lambda: wall[0])
    packet = encode_safe_packet(b"0DIS")
    assert frames(handler, packet[:4]) == []
    wall[0] = 0.6  # more than the manual's 0.5 s between bytes
    assert frames(handler, packet[4:]) == []
    assert ask_safe(handler, "0DIS")[0].data == "I0.000W0.000ML"
    # Within 0.5 s a packet may arrive in pieces.
    assert frames(handler, packet[:3]) == []
    wall[0] = 1.0
    assert frames(handler, packet[3:])[0][0].data == "I0.000W0.000ML"
    # A stray STX with a large length byte in basic mode does not block the line for good.
    basic, _, _ = make(wall_time=lambda: wall[0])
    assert frames(basic, b"\x02\xf0junk") == []
    wall[0] = 2.0
    assert [r.data for r, _ in frames(basic, b"VER\r")] == ["NE1000V3.928"]


def test_safe_mode_timeout_raises_the_timeout_alarm_once() -> None:
    handler, bench, clock = make()
    ask_safe(handler, "0RAT60MH")
    assert ask_safe(handler, "0SAF5") == (Reply(0, Prompt.STOPPED), True)
    assert ask_safe(handler, "0RUN")[0].prompt is Prompt.INFUSING
    clock.advance_to(4.0)
    assert handler.unsolicited() == []
    clock.advance_to(9.5)  # 5.5 s after the last valid packet
    auto = handler.unsolicited()
    assert [decode_reply(frame) for frame in auto] == [(Reply(0, None, AlarmCode.TIMEOUT), True)]
    assert handler.unsolicited() == []  # sent once
    snapshot = bench.pump.snapshot()
    assert PumpAlarm.COMMUNICATION_TIMEOUT in snapshot.alarms
    assert snapshot.state is PumpState.ALARM  # the pump stopped
    # The auto-alarm did not acknowledge it; the next valid command does.
    assert ask_safe(handler, "0DIS")[0] == Reply(0, None, AlarmCode.TIMEOUT)
    assert ask_safe(handler, "0DIS")[0].prompt is Prompt.STOPPED


def test_safe_mode_timer_is_not_armed_at_power_up() -> None:
    handler, bench, clock = make(safe_mode_timeout_s=5, power_on_alarm=True)
    clock.advance_to(100.0)
    auto = [decode_reply(frame) for frame in handler.unsolicited()]
    assert auto == [(Reply(0, None, AlarmCode.RESET), True)]  # the reset auto-alarm only
    assert PumpAlarm.COMMUNICATION_TIMEOUT not in bench.pump.snapshot().alarms


def test_motor_stall_is_an_alarm_reply_and_an_auto_alarm() -> None:
    handler, bench, clock = make(stall_at_s=10.0, safe_mode_timeout_s=255)
    ask_safe(handler, "0RAT5MH")
    assert ask_safe(handler, "0RUN")[0].prompt is Prompt.INFUSING
    clock.advance_to(11.0)
    assert [decode_reply(f)[0] for f in handler.unsolicited()] == [Reply(0, None, AlarmCode.STALL)]
    assert ask_safe(handler, "0RUN")[0] == Reply(0, None, AlarmCode.STALL)
    assert bench.pump.snapshot().alarms == frozenset()  # acknowledged → cleared
    assert ask_safe(handler, "0RUN")[0].prompt is Prompt.INFUSING


class _ProbeMechanism:
    """A pump that only reports a given alarm set (for codes the bench cannot raise)."""

    model, serial, firmware = "probe", "0", "probe"

    def __init__(self, alarms: frozenset[PumpAlarm]) -> None:
        self.alarms = alarms
        self.cleared = 0

    def snapshot(self) -> PumpSnapshot:
        state = PumpState.ALARM if self.alarms else PumpState.STOPPED
        return PumpSnapshot(0.0, state, self.alarms, 0, 1.0, True, 0, 0, None, 20.0, 0, 0)

    def clear_alarms(self) -> None:
        self.cleared += 1
        self.alarms = frozenset()

    def set_pressure_sensor(self, present: bool) -> None:
        self.pressure_sensor = present  # the NE-1000 emulator declares it has none

    def __getattr__(self, name: str) -> Callable[..., None]:
        raise AssertionError(f"{name} must not be called while an alarm is pending")


@pytest.mark.parametrize(
    ("alarms", "code"),
    [
        ({PumpAlarm.PROGRAM_ERROR}, AlarmCode.PROGRAM_ERROR),
        ({PumpAlarm.OUT_OF_RANGE}, AlarmCode.OUT_OF_RANGE),
        ({PumpAlarm.OCCLUSION}, AlarmCode.STALL),  # no pressure sensor: it stalls
        ({PumpAlarm.OUT_OF_RANGE, PumpAlarm.MOTOR_STALL}, AlarmCode.STALL),
    ],
)
def test_alarm_codes_and_priority(alarms: set[PumpAlarm], code: AlarmCode) -> None:
    probe = _ProbeMechanism(frozenset(alarms))
    handler = NE1000Protocol(probe, clock=VirtualClock(), power_on_alarm=False)  # type: ignore[arg-type]
    assert ask(handler, "RAT 5 MH") == Reply(0, None, code)
    assert probe.cleared == 1
    assert handler.version == "NE1000V3.928"  # the probe's firmware is not a VER string


def test_corrupt_checksum_breaks_both_framings() -> None:
    handler, _, _ = make()
    for frame in handler.feed(b"DIS\r") + handler.feed(encode_safe_packet(b"DIS")):
        with pytest.raises(ProtocolError):
            decode_reply(handler.corrupt_checksum(frame))


# --------------------------------------------------------------------------- fuzzing


@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=6), st.booleans())
def test_random_input_never_crashes_and_replies_are_well_formed(
    chunks: list[bytes], safe: bool
) -> None:
    handler, _, clock = make(safe_mode_timeout_s=30 if safe else 0, power_on_alarm=True)
    for index, chunk in enumerate(chunks):
        clock.advance_to(index * 0.3)
        for frame in handler.feed(chunk) + handler.unsolicited():
            reply, _ = decode_reply(frame)
            assert reply.address == handler.address


# --------------------------------------------------------------------------- nesp-lib


@pytest.fixture
async def emulator() -> AsyncIterator[NE1000Emulator]:
    clock = VirtualClock()
    bench = PhysicalBench.default(clock=clock)
    # The power-up A?R stays on: nesp-lib acknowledges it itself when it connects.
    emulator = NE1000Emulator(bench.pump, clock=clock)
    await emulator.start()
    try:
        yield emulator
    finally:
        await emulator.stop()


@pytest.fixture
async def in_thread() -> AsyncIterator[Callable[[Callable[[], T]], asyncio.Future[T]]]:
    """Run blocking third-party code off the event loop (the emulator lives on it)."""
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    loop = asyncio.get_running_loop()
    yield lambda fn: loop.run_in_executor(pool, fn)  # type: ignore[return-value, arg-type]
    pool.shutdown(wait=True)


async def test_nesp_lib_drives_the_emulator_unmodified(
    emulator: NE1000Emulator, in_thread: Any
) -> None:
    def session() -> dict[str, Any]:
        port = nesp_lib.Port(emulator.port, 19200)
        try:
            pump = nesp_lib.Pump(port)
            out: dict[str, Any] = {
                "model": pump.model_number,
                "firmware": pump.firmware_version,
            }
            pump.syringe_diameter_mm = 26.59
            pump.pumping_direction = nesp_lib.PumpingDirection.INFUSE
            pump.pumping_volume_ml = 1.0
            pump.pumping_rate_ml_per_min = 0.5
            out["diameter"] = pump.syringe_diameter_mm
            out["direction"] = pump.pumping_direction
            out["volume"] = pump.pumping_volume_ml
            out["rate"] = pump.pumping_rate_ml_per_min
            pump.run(False)
            out["running"] = pump.status
            pump.stop(False)
            out["stopped"] = pump.status
            out["infused"] = pump.volume_infused_ml
            pump.volume_infused_clear()
            out["cleared"] = pump.volume_infused_ml
            return out
        finally:
            port.close()

    async with asyncio.timeout(60):
        out = await in_thread(session)
    assert out["model"] == 1000
    assert out["firmware"] == (3, 928)
    assert out["diameter"] == pytest.approx(26.59)
    assert out["direction"] is nesp_lib.PumpingDirection.INFUSE
    assert out["volume"] == pytest.approx(1.0)
    assert out["rate"] == pytest.approx(0.5)
    assert out["running"] is nesp_lib.Status.INFUSING
    assert out["stopped"] is nesp_lib.Status.PAUSED
    assert out["infused"] == 0.0  # the virtual clock did not move
    assert out["cleared"] == 0.0
    bench_pump = emulator.handler.mechanism
    assert bench_pump.snapshot().rate_setpoint_ml_h == pytest.approx(30.0)


async def test_nesp_lib_in_safe_mode(in_thread: Any) -> None:
    clock = VirtualClock()
    bench = PhysicalBench.default(clock=clock)
    emulator = NE1000Emulator(bench.pump, clock=clock, power_on_alarm=False)
    await emulator.start()

    def session() -> tuple[int, float, int]:
        port = nesp_lib.Port(emulator.port, 19200)
        try:
            pump = nesp_lib.Pump(port, safe_mode_timeout_s=30)
            timeout = pump.safe_mode_timeout_s
            pump.pumping_rate_ml_per_min = 2.0
            rate = pump.pumping_rate_ml_per_min
            pump.safe_mode_timeout_s = 0  # back to basic mode; stops nesp-lib's heartbeat
            return timeout, rate, pump.safe_mode_timeout_s
        finally:
            port.close()

    try:
        async with asyncio.timeout(60):
            timeout, rate, after = await in_thread(session)
        assert (timeout, rate, after) == (30, pytest.approx(2.0), 0)
        assert not emulator.handler.safe_mode
    finally:
        await emulator.stop()


def test_withdraw_and_clear_withdrawn() -> None:
    handler, bench, clock = make()
    ok(ask(handler, "DIR WDR"))
    ok(ask(handler, "RAT 60 MH"))
    ok(ask(handler, "RUN"), Prompt.WITHDRAWING)
    clock.advance_to(6.0)
    ok(ask(handler, "STP"), Prompt.PAUSED)
    withdrawn = decode_dispensed(ask(handler, "DIS").data)[1]
    assert withdrawn == pytest.approx(0.1, abs=2e-3)
    ok(ask(handler, "CLD WDR"), Prompt.PAUSED)
    assert bench.pump.snapshot().withdrawn_ml == 0


# --------------------------------------------------------------------------- programs


def test_program_memory_queries_and_golden_bytes() -> None:
    handler, _, _ = make()
    assert handler.feed(b"PHN\r") == [b"\x0200S01\x03"]
    assert handler.feed(b"FUN\r") == [b"\x0200SRAT\x03"]
    ok(ask(handler, "PHN 2"))
    ok(ask(handler, "FUN JMP 1"))
    assert handler.feed(b"FUN\r") == [b"\x0200SJMP01\x03"]
    ok(ask(handler, "PHN 3"))
    ok(ask(handler, "FUN PAS 5"))
    assert handler.feed(b"FUN\r") == [b"\x0200SPAS05\x03"]
    assert handler.feed(b"PHN\r") == [b"\x0200S03\x03"]
    refused(ask(handler, "PHN 42"), ErrorCode.OUT_OF_RANGE)
    refused(ask(handler, "FUN LOP 0"), ErrorCode.OUT_OF_RANGE)
    refused(ask(handler, "FUN XYZ"), ErrorCode.UNRECOGNIZED)
    refused(ask(handler, "FUN EVS 2"), ErrorCode.NOT_APPLICABLE)  # needs the TTL input
    assert [p.function.value for p in handler.phases()] == ["RAT", "JMP", "PAS"]


def test_program_alarms_phase_out_of_range_and_program_error() -> None:
    handler, bench, clock = make()
    # Phase 2 increments past the drive's fastest rate: A?O when the phase starts.
    for text in ["RAT 1000 MH", "VOL 0.1", "PHN 2", "FUN INC", "RAT 1000 MH", "VOL 1"]:
        ok(ask(handler, text))
    ok(ask(handler, "RUN"), Prompt.INFUSING)
    clock.advance_to(1.0)  # phase 1 (0.1 mL at 1000 mL/h) took 0.36 s
    assert handler.feed(b"\r") == [b"\x0200A?O\x03"]
    ok(ask(handler, ""))  # acknowledged
    assert bench.pump.snapshot().state is PumpState.STOPPED
    # A program that jumps around without pumping or pausing: A?E.
    ok(ask(handler, "FUN JMP 1"))
    ok(ask(handler, "PHN 1"))
    ok(ask(handler, "FUN JMP 2"))
    assert handler.feed(b"RUN\r") == [b"\x0200S\x03"]
    assert handler.feed(b"\r") == [b"\x0200A?E\x03"]


def test_run_n_starts_at_phase_n() -> None:
    handler, bench, clock = make()
    for text in ["RAT 60 MH", "VOL 1", "PHN 2", "FUN RAT", "RAT 120 MH", "VOL 1", "PHN 3"]:
        ok(ask(handler, text))
    ok(ask(handler, "FUN STP"))
    ok(ask(handler, "RUN 2"), Prompt.INFUSING)
    assert bench.pump.snapshot().rate_ml_h == pytest.approx(120.0)
    clock.advance_to(40.0)  # 1 mL at 120 mL/h is 30 s
    ok(ask(handler, ""))
    assert decode_dispensed(ask(handler, "DIS").data)[0] == pytest.approx(1.0, abs=1e-3)
    refused(ask(handler, "RUN 4"), ErrorCode.OUT_OF_RANGE)  # the program has 3 phases
