"""MT-SICS device side: the handler as a state machine, then the emulator on a real pty/TCP.

The handler tests drive :class:`MTSICSProtocol` byte by byte over a small fake balance
mechanism whose load, stability and range flags the test sets, on a virtual clock the
test advances, so every reply is exact and every wait is decided by the test.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

import pytest
import pytest_asyncio
from hypothesis import given, settings
from hypothesis import strategies as st
from medtwin.drivers.clock import VirtualClock
from medtwin.drivers.emulators.mtsics import (
    IMPLEMENTED_COMMANDS,
    MAX_COMMAND_BYTES,
    MTSICSEmulator,
    MTSICSProtocol,
)
from medtwin.drivers.mtsics import LINE_END, DataReply, Quoted, decode_reply
from medtwin.drivers.registry import emulator_class
from medtwin.drivers.transport import ByteTransport, open_transport

if TYPE_CHECKING:
    from conftest import FakeBalance  # tests/drivers/conftest.py


class FakeWallTime:
    """A wall clock the test moves (for SIR pacing)."""

    def __init__(self) -> None:
        self.t_s = 1000.0

    def __call__(self) -> float:
        return self.t_s


@pytest.fixture
def wall() -> FakeWallTime:
    return FakeWallTime()


@pytest.fixture
def handler(mechanism: FakeBalance, clock: VirtualClock, wall: FakeWallTime) -> MTSICSProtocol:
    return MTSICSProtocol(mechanism, clock=clock, wall_time=wall, stream_interval_s=0.1)


def ask(handler: MTSICSProtocol, line: bytes) -> list[bytes]:
    return handler.feed(line + LINE_END)


# --------------------------------------------------------------------------- weighing


def test_s_golden_reply(handler: MTSICSProtocol, mechanism: FakeBalance) -> None:
    mechanism.load_g = 100.0
    assert ask(handler, b"S") == [b"S S     100.00 g\r\n"]


def test_si_reports_dynamic_values(
    handler: MTSICSProtocol, mechanism: FakeBalance, clock: VirtualClock
) -> None:
    mechanism.load_g = 129.07
    mechanism.settled_at_s = 5.0
    assert ask(handler, b"SI") == [b"S D     129.07 g\r\n"]
    clock.advance_to(5.0)
    assert ask(handler, b"SI") == [b"S S     129.07 g\r\n"]


def test_negative_and_zero_values(handler: MTSICSProtocol, mechanism: FakeBalance) -> None:
    mechanism.load_g = -0.25
    assert ask(handler, b"SI") == [b"S S      -0.25 g\r\n"]
    mechanism.load_g = -0.001  # rounds to zero: shown without a sign
    assert ask(handler, b"SI") == [b"S S       0.00 g\r\n"]


@pytest.mark.parametrize(
    ("readability_g", "reply"),
    [
        (1.0, b"S S        123 g\r\n"),
        (0.1, b"S S      123.5 g\r\n"),
        (0.001, b"S S    123.457 g\r\n"),
        (0.0001, b"S S   123.4567 g\r\n"),
    ],
)
def test_decimals_follow_readability(
    clock: VirtualClock,
    make_mechanism: Callable[..., FakeBalance],
    readability_g: float,
    reply: bytes,
) -> None:
    mechanism = make_mechanism(clock, readability_g=readability_g)
    mechanism.load_g = 123.4567
    handler = MTSICSProtocol(mechanism, clock=clock)
    assert ask(handler, b"S") == [reply]


def test_overload_and_underload(handler: MTSICSProtocol, mechanism: FakeBalance) -> None:
    mechanism.load_g = 250.0
    for command in (b"S", b"SI"):
        assert ask(handler, command) == [b"S +\r\n"]
    mechanism.load_g = 0.0
    mechanism.underload = True
    for command in (b"S", b"SI"):
        assert ask(handler, command) == [b"S -\r\n"]


def test_s_waits_for_stability_while_the_clock_moves(
    handler: MTSICSProtocol, mechanism: FakeBalance, clock: VirtualClock
) -> None:
    mechanism.load_g = 50.0
    mechanism.settled_at_s = 1.0
    assert ask(handler, b"S") == []
    assert handler.busy
    for t_s in (0.25, 0.5, 0.75):
        clock.advance_to(t_s)
        assert handler.unsolicited() == []
    clock.advance_to(1.0)
    assert handler.unsolicited() == [b"S S      50.00 g\r\n"]
    assert not handler.busy


def test_s_answers_s_i_after_the_stability_timeout(
    mechanism: FakeBalance, clock: VirtualClock
) -> None:
    handler = MTSICSProtocol(mechanism, clock=clock, stability_timeout_s=2.0)
    mechanism.settled_at_s = 100.0
    assert ask(handler, b"S") == []
    clock.advance_to(1.0)
    assert handler.unsolicited() == []
    clock.advance_to(1.999)
    assert handler.unsolicited() == []
    clock.advance_to(2.0)
    assert handler.unsolicited() == [b"S I\r\n"]
    assert handler.unsolicited() == []


def test_s_answers_s_i_when_the_clock_does_not_move(
    handler: MTSICSProtocol, mechanism: FakeBalance
) -> None:
    mechanism.settled_at_s = 1.0
    assert ask(handler, b"S") == []
    # The server polls right after the feed: no verdict on a clock that had no chance.
    assert handler.unsolicited() == []
    assert handler.unsolicited() == [b"S I\r\n"]


def test_commands_queue_behind_a_waiting_command(
    handler: MTSICSProtocol, mechanism: FakeBalance, clock: VirtualClock
) -> None:
    mechanism.load_g = 20.0
    mechanism.settled_at_s = 0.5
    assert handler.feed(b"S\r\nSI\r\nI4\r\n") == []
    clock.advance_to(0.5)
    assert handler.unsolicited() == [
        b"S S      20.00 g\r\n",
        b"S S      20.00 g\r\n",
        b'I4 A "B123456789"\r\n',
    ]


def test_reset_cancels_waiting_commands(
    handler: MTSICSProtocol, mechanism: FakeBalance, clock: VirtualClock
) -> None:
    mechanism.settled_at_s = 10.0
    assert handler.feed(b"S\r\nT\r\n") == []
    assert ask(handler, b"@") == [b'I4 A "B123456789"\r\n']
    assert not handler.busy
    clock.advance_to(10.0)
    assert handler.unsolicited() == []


# --------------------------------------------------------------------------- zero and tare


def test_zero(handler: MTSICSProtocol, mechanism: FakeBalance) -> None:
    mechanism.load_g = 1.5
    assert ask(handler, b"Z") == [b"Z A\r\n"]
    assert ask(handler, b"S") == [b"S S       0.00 g\r\n"]


def test_zero_waits_for_stability(
    handler: MTSICSProtocol, mechanism: FakeBalance, clock: VirtualClock
) -> None:
    mechanism.load_g = 1.0
    mechanism.settled_at_s = 0.3
    assert ask(handler, b"Z") == []
    clock.advance_to(0.3)
    assert handler.unsolicited() == [b"Z A\r\n"]


def test_zero_has_no_range_limit_by_default(
    handler: MTSICSProtocol, mechanism: FakeBalance
) -> None:
    mechanism.load_g = 50.0  # e.g. a collecting vessel
    assert ask(handler, b"Z") == [b"Z A\r\n"]
    assert ask(handler, b"S") == [b"S S       0.00 g\r\n"]


def test_zero_range_is_counted_from_the_power_on_zero(
    mechanism: FakeBalance, clock: VirtualClock
) -> None:
    # 2 % of 220 g = 4.4 g either way.
    handler = MTSICSProtocol(mechanism, clock=clock, zero_range_g=0.02 * mechanism.capacity_g)
    mechanism.load_g = 4.0
    assert ask(handler, b"Z") == [b"Z A\r\n"]
    mechanism.load_g = 8.0  # 4 g above the new zero, 8 g above the power-on zero
    assert ask(handler, b"Z") == [b"Z +\r\n"]
    assert ask(handler, b"ZI") == [b"ZI +\r\n"]
    mechanism.load_g = -1.0  # 5 g below the current zero, 1 g below the power-on zero
    assert ask(handler, b"Z") == [b"Z A\r\n"]
    mechanism.load_g = -5.0
    assert ask(handler, b"Z") == [b"Z -\r\n"]
    mechanism.load_g = 0.0
    assert ask(handler, b"Z") == [b"Z A\r\n"]


def test_zero_immediately_reports_stability(
    handler: MTSICSProtocol, mechanism: FakeBalance, clock: VirtualClock
) -> None:
    mechanism.settled_at_s = 1.0
    assert ask(handler, b"ZI") == [b"ZI D\r\n"]
    clock.advance_to(1.0)
    assert ask(handler, b"ZI") == [b"ZI S\r\n"]


def test_tare(handler: MTSICSProtocol, mechanism: FakeBalance) -> None:
    mechanism.load_g = 100.0
    assert ask(handler, b"T") == [b"T S     100.00 g\r\n"]
    mechanism.load_g = 112.5
    assert ask(handler, b"S") == [b"S S      12.50 g\r\n"]
    assert ask(handler, b"TA") == [b"TA A     100.00 g\r\n"]
    assert ask(handler, b"TAC") == [b"TAC A\r\n"]
    assert ask(handler, b"S") == [b"S S     112.50 g\r\n"]


def test_tare_immediately_reports_stability(
    handler: MTSICSProtocol, mechanism: FakeBalance, clock: VirtualClock
) -> None:
    mechanism.load_g = 3.0
    mechanism.settled_at_s = 1.0
    assert ask(handler, b"TI") == [b"TI D       3.00 g\r\n"]
    clock.advance_to(1.0)
    assert ask(handler, b"TI") == [b"TI S       3.00 g\r\n"]


def test_tare_out_of_range(handler: MTSICSProtocol, mechanism: FakeBalance) -> None:
    mechanism.load_g = 300.0
    assert ask(handler, b"T") == [b"T +\r\n"]
    mechanism.load_g = -2.0  # the fake refuses to tare a negative load
    assert ask(handler, b"T") == [b"T -\r\n"]
    mechanism.load_g = 0.0
    mechanism.underload = True
    assert ask(handler, b"TI") == [b"TI -\r\n"]


def test_preset_tare(handler: MTSICSProtocol, mechanism: FakeBalance) -> None:
    mechanism.load_g = 110.0
    assert ask(handler, b"TA 10.00 g") == [b"TA A      10.00 g\r\n"]
    assert ask(handler, b"S") == [b"S S     100.00 g\r\n"]
    assert ask(handler, b"TA") == [b"TA A      10.00 g\r\n"]
    # Rounded to the readability; other mass units are converted.
    assert ask(handler, b"TA 2504 mg") == [b"TA A       2.50 g\r\n"]
    assert ask(handler, b"TA 0.05 kg") == [b"TA A      50.00 g\r\n"]
    # A measured tare replaces the preset.
    assert ask(handler, b"T") == [b"T S     110.00 g\r\n"]
    assert ask(handler, b"TA") == [b"TA A     110.00 g\r\n"]


@pytest.mark.parametrize(
    "command", [b"TA -1 g", b"TA 221 g", b"TA 10 furlongs", b"TA 1e3 g", b"TA x g", b"TA 10 PCS"]
)
def test_preset_tare_refuses_bad_values(handler: MTSICSProtocol, command: bytes) -> None:
    assert ask(handler, command) == [b"TA L\r\n"]


@pytest.mark.parametrize("command", [b"TA 10", b"TA 1 g g", b'TA "10" g'])
def test_preset_tare_syntax(handler: MTSICSProtocol, command: bytes) -> None:
    assert ask(handler, command) == [b"ES\r\n"]


def test_reset_clears_the_tare_and_reports_the_serial(
    handler: MTSICSProtocol, mechanism: FakeBalance
) -> None:
    mechanism.load_g = 30.0
    ask(handler, b"T")
    assert ask(handler, b"@") == [b'I4 A "B123456789"\r\n']
    assert ask(handler, b"S") == [b"S S      30.00 g\r\n"]


def test_reset_can_keep_the_tare(mechanism: FakeBalance, clock: VirtualClock) -> None:
    handler = MTSICSProtocol(mechanism, clock=clock, reset_clears_tare=False)
    mechanism.load_g = 30.0
    ask(handler, b"T")
    ask(handler, b"@")
    assert ask(handler, b"S") == [b"S S       0.00 g\r\n"]


# --------------------------------------------------------------------------- identification


def test_identification(handler: MTSICSProtocol) -> None:
    assert ask(handler, b"I1") == [b'I1 A "0" "2.20" "2.20" "" ""\r\n']
    assert ask(handler, b"I2") == [b'I2 A "XS205DU 220.00 g"\r\n']
    assert ask(handler, b"I3") == [b'I3 A "2.10 10.28.0.493.142"\r\n']
    assert ask(handler, b"I4") == [b'I4 A "B123456789"\r\n']


def test_command_list(handler: MTSICSProtocol) -> None:
    lines = ask(handler, b"I0")
    assert lines[0] == b'I0 B 0 "I0"\r\n'
    assert lines[-1] == b'I0 A 1 "TI"\r\n'
    replies = [decode_reply(line) for line in lines]
    assert all(isinstance(r, DataReply) and r.status == "B" for r in replies[:-1])
    listed = {r.texts[1]: int(r.texts[0]) for r in replies if isinstance(r, DataReply)}
    assert listed == IMPLEMENTED_COMMANDS


def test_text_fields_never_carry_quotes(mechanism: FakeBalance, clock: VirtualClock) -> None:
    mechanism.model = 'XS "205"'
    handler = MTSICSProtocol(mechanism, clock=clock)
    reply = decode_reply(ask(handler, b"I2")[0])
    assert reply == DataReply("I2", "A", (Quoted("XS '205' 220.00 g"),))


# --------------------------------------------------------------------------- SIR


def test_sir_streams_until_cancelled(
    handler: MTSICSProtocol, mechanism: FakeBalance, wall: FakeWallTime, clock: VirtualClock
) -> None:
    mechanism.load_g = 129.07
    mechanism.settled_at_s = 1.0
    assert ask(handler, b"SIR") == [b"S D     129.07 g\r\n"]
    assert handler.streaming
    assert handler.unsolicited() == []  # right after the command: not yet due
    wall.t_s += 0.1
    assert handler.unsolicited() == [b"S D     129.07 g\r\n"]
    wall.t_s += 0.05
    assert handler.unsolicited() == []
    wall.t_s += 0.05
    clock.advance_to(1.0)
    mechanism.load_g = 129.09
    assert handler.unsolicited() == [b"S S     129.09 g\r\n"]
    # Other commands are answered while the stream goes on (the manual lists only S,
    # SI, SR and @ as cancelling it).
    assert ask(handler, b"I4") == [b'I4 A "B123456789"\r\n']
    assert ask(handler, b"TAC") == [b"TAC A\r\n"]
    assert ask(handler, b"SR") == [b"ES\r\n"]  # not implemented: no effect on the stream
    assert handler.streaming
    wall.t_s += 0.1
    assert handler.unsolicited() == [b"S S     129.09 g\r\n"]
    assert ask(handler, b"SI") == [b"S S     129.09 g\r\n"]
    assert not handler.streaming
    wall.t_s += 1.0
    assert handler.unsolicited() == []


@pytest.mark.parametrize(("stop", "reply"), [(b"S", b"S S"), (b"@", b'I4 A "B123456789"')])
def test_sir_is_cancelled_by_s_and_reset(
    handler: MTSICSProtocol, wall: FakeWallTime, stop: bytes, reply: bytes
) -> None:
    ask(handler, b"SIR")
    assert ask(handler, stop)[0].startswith(reply)
    assert not handler.streaming
    wall.t_s += 1.0
    assert handler.unsolicited() == []


def test_sir_reports_overload(handler: MTSICSProtocol, mechanism: FakeBalance) -> None:
    mechanism.load_g = 500.0
    assert ask(handler, b"SIR") == [b"S +\r\n"]


# --------------------------------------------------------------------------- malformed input


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b"s",
        b"si",
        b"XYZ",
        b"SR",  # a real MT-SICS command, not implemented here
        b"S 1",
        b"I4 x",
        b"S  ",
        b"\x00\x01\x02",
        b"\xff\xfe",
        b"Z\tA",
    ],
)
def test_malformed_input_gets_es_and_the_handler_keeps_serving(
    handler: MTSICSProtocol, mechanism: FakeBalance, line: bytes
) -> None:
    mechanism.load_g = 1.0
    assert ask(handler, line) == [b"ES\r\n"]
    assert ask(handler, b"S") == [b"S S       1.00 g\r\n"]


def test_partial_and_joined_frames(handler: MTSICSProtocol, mechanism: FakeBalance) -> None:
    mechanism.load_g = 2.0
    assert handler.feed(b"S") == []
    assert handler.feed(b"\r") == []
    assert handler.feed(b"\nI4\r\nS") == [b"S S       2.00 g\r\n", b'I4 A "B123456789"\r\n']
    assert handler.feed(b"I\r\n") == [b"S S       2.00 g\r\n"]


def test_a_bare_lf_also_ends_a_command(handler: MTSICSProtocol) -> None:
    assert handler.feed(b"I4\n") == [b'I4 A "B123456789"\r\n']


def test_an_endless_line_is_dropped_with_one_es(handler: MTSICSProtocol) -> None:
    assert handler.feed(b"A" * (MAX_COMMAND_BYTES + 10)) == [b"ES\r\n"]
    assert handler.feed(b"\r\n") == [b"ES\r\n"]  # what was left of the line
    assert ask(handler, b"I4") == [b'I4 A "B123456789"\r\n']


def test_reset_input_forgets_partial_input(handler: MTSICSProtocol) -> None:
    handler.feed(b"XY")
    handler.reset_input()
    assert ask(handler, b"I4") == [b'I4 A "B123456789"\r\n']


def test_corrupted_reply_byte_no_longer_decodes_to_the_same_reply(
    handler: MTSICSProtocol, mechanism: FakeBalance
) -> None:
    mechanism.load_g = 100.0
    (reply,) = ask(handler, b"S")
    corrupted = handler.corrupt_checksum(reply)
    assert corrupted != reply
    assert len(corrupted) == len(reply)


def test_invalid_options_are_refused(mechanism: FakeBalance) -> None:
    with pytest.raises(ValueError, match="stability_timeout_s"):
        MTSICSProtocol(mechanism, stability_timeout_s=0)
    with pytest.raises(ValueError, match="zero_range_g"):
        MTSICSProtocol(mechanism, zero_range_g=float("nan"))
    with pytest.raises(ValueError, match="sics_versions"):
        MTSICSProtocol(mechanism, sics_versions=("1",))


_chunks = st.lists(
    st.one_of(
        st.binary(max_size=40),
        st.sampled_from(
            [b"S\r\n", b"SI\r\n", b"SIR\r\n", b"T\r\n", b"Z\r\n", b"@\r\n", b"TA 5 g\r\n"]
        ),
    ),
    max_size=12,
)


@settings(max_examples=200)
@given(_chunks, st.booleans())
def test_any_input_gets_valid_replies_and_never_raises(
    make_mechanism: Callable[..., FakeBalance], chunks: list[bytes], stable: bool
) -> None:
    clock = VirtualClock()
    mechanism = make_mechanism(clock)
    mechanism.load_g = 42.0
    mechanism.settled_at_s = 0.0 if stable else 1e9
    wall = FakeWallTime()
    handler = MTSICSProtocol(mechanism, clock=clock, wall_time=wall)
    out: list[bytes] = []
    for chunk in chunks:
        out += handler.feed(chunk)
        out += handler.unsolicited()
        wall.t_s += 0.05
    # Whatever came before, a fresh line and @ bring the balance back in step.
    out += handler.feed(b"\r\n@\r\n")
    for line in out:
        assert line.endswith(LINE_END)
        decode_reply(line)
    assert out[-1] == b'I4 A "B123456789"\r\n'


# --------------------------------------------------------------------------- served


def test_registry_names_the_emulator() -> None:
    assert emulator_class("mt-sics") is MTSICSEmulator


@pytest_asyncio.fixture(params=["pty", "tcp"])
async def served(
    request: pytest.FixtureRequest, clock: VirtualClock, mechanism: FakeBalance
) -> AsyncIterator[ByteTransport]:
    emulator = MTSICSEmulator(mechanism, clock=clock)
    try:
        port = await emulator.start(tcp=("127.0.0.1", 0) if request.param == "tcp" else None)
        transport = open_transport(port, device="raw client")
        await transport.open()
        try:
            yield transport
        finally:
            await transport.close()
    finally:
        await emulator.stop()


async def test_served_bytes_match_the_manual(served: ByteTransport, mechanism: FakeBalance) -> None:
    mechanism.load_g = 100.0
    async with asyncio.timeout(5):
        await served.write(b"S\r\n")
        assert await served.read_until(LINE_END) == b"S S     100.00 g\r\n"
        await served.write(b"s\r\nI4\r\n")
        assert await served.read_until(LINE_END) == b"ES\r\n"
        assert await served.read_until(LINE_END) == b'I4 A "B123456789"\r\n'


async def test_served_s_on_a_stalled_virtual_clock_answers_s_i(
    served: ByteTransport, mechanism: FakeBalance
) -> None:
    mechanism.settled_at_s = 1.0
    async with asyncio.timeout(5):
        await served.write(b"S\r\n")
        assert await served.read_until(LINE_END) == b"S I\r\n"


async def test_served_s_completes_when_the_clock_moves(
    served: ByteTransport, mechanism: FakeBalance, clock: VirtualClock
) -> None:
    mechanism.load_g = 7.0
    mechanism.settled_at_s = 1.0
    async with asyncio.timeout(5):
        await served.write(b"S\r\n")
        reply = asyncio.ensure_future(served.read_until(LINE_END))
        # Move the clock on every loop turn, as a runner stepping a virtual clock would.
        step = 0.0
        while not reply.done():
            step += 0.01
            await clock.sleep_until(step)
        assert reply.result() == b"S S       7.00 g\r\n"
