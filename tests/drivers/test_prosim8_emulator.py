"""The ProSim 8 emulator's state machine: every command of the codec answered as documented."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from medtwin.drivers.clock import VirtualClock
from medtwin.drivers.emulators.patient_world import PatientWorld
from medtwin.drivers.emulators.prosim8 import ProSim8Protocol
from medtwin.drivers.prosim8 import COMMANDS, parse_reply, rtc_datetime


def make(remote: bool = False) -> tuple[ProSim8Protocol, PatientWorld, VirtualClock]:
    clock = VirtualClock(started_utc=dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC))
    world = PatientWorld(clock.now, seed=1)
    return ProSim8Protocol(world.simulator, clock=clock, remote=remote), world, clock


def test_local_mode_refuses_everything_but_remote() -> None:
    proto, world, _ = make()
    assert proto.feed(b"NSRA=120\r\n") == [b"ERR=00\r\n"]
    assert proto.feed(b"IDENT\r\n") == [b"ERR=00\r\n"]
    assert world.simulator.settings().heart_rate_bpm == 80.0
    assert proto.feed(b"REMOTE\r\n") == [b"OK\r\n"]
    assert proto.feed(b"NSRA=120\r\n") == [b"OK\r\n"]
    assert world.simulator.settings().heart_rate_bpm == 120.0
    assert proto.feed(b"LOCAL\r\n") == [b"OK\r\n"]
    assert proto.feed(b"SAT=90\r\n") == [b"ERR=00\r\n"]
    assert world.simulator.settings().spo2_percent == 97.0
    # a line that does not parse gets its own code in local mode too
    assert proto.feed(b"FOO\r\n") == [b"ERR=01\r\n"]


def test_every_setting_reaches_the_world() -> None:
    proto, world, clock = make(remote=True)
    replies = proto.feed(
        b"NSRA=150\r\nSAT=085\r\nRESPRATE=030\r\nNIBPP=140,090\r\n"
        b"IBPS=2,-005\r\nIBPP=1,130,070\r\nIBPW=2,PA\r\nKEY=10,2\r\n"
    )
    assert replies == [b"OK\r\n"] * 8
    s = world.simulator.settings()
    assert (s.heart_rate_bpm, s.spo2_percent, s.resp_rate_min) == (150.0, 85.0, 30.0)
    assert (s.nibp_sys_mmhg, s.nibp_dia_mmhg) == (140.0, 90.0)
    assert s.ibp == {1: (130.0, 70.0), 2: (-5.0, -5.0)}
    assert s.ibp_wave[2] == "PA"
    assert proto.keys == [(10, 2)]
    clock.advance_to(3.0)
    assert world.true_values()["hr_bpm"] == pytest.approx(150.0, abs=2.0)


def test_refusals() -> None:
    proto, world, _ = make(remote=True)
    assert proto.feed(b"NSRA=400\r\n") == [b"ERR=03\r\n"]
    assert proto.feed(b"NIBPP=080,120\r\n") == [b"ERR=03\r\n"]  # the mechanism refuses
    assert proto.feed(b"IBPP=3,120,080\r\n") == [b"ERR=03\r\n"]
    assert proto.feed(b"REMOTE=1\r\n") == [b"ERR=02\r\n"]
    assert proto.feed(b"NSRA\x01=80\r\n")[0].startswith(b"ERR=0")
    assert proto.feed(b"X" * 100 + b"\r\n") == [b"ERR=04\r\n"]
    assert world.simulator.settings().heart_rate_bpm == 80.0


def test_validation_ident_and_rtc() -> None:
    proto, world, clock = make(remote=True)
    assert proto.feed(b"VALIDATION=SECRET\r\n") == [b"ERR=07\r\n"]
    assert not proto.validation
    assert proto.feed(b"VALIDATION=OZYMANDIAS\r\n") == [b"OK\r\n"]
    assert proto.validation
    assert proto.feed(b"VALOFF\r\n") == [b"OK\r\n"]
    assert not proto.validation
    (ident,) = proto.feed(b"IDENT\r\n")
    reply = parse_reply(ident, command="IDENT")
    assert reply.fields == ("ProSim 8", world.simulator.firmware, world.simulator.serial)  # type: ignore[union-attr]
    time_line, date_line = proto.feed(b"GETRTC\r\n")
    moment = rtc_datetime(
        parse_reply(time_line, command="GETRTC"), parse_reply(date_line, command="GETRTC")
    )
    assert moment == dt.datetime(2026, 1, 2, 3, 4, 5)
    assert proto.feed(b"SETRTC=23,59,50,12,31,2030\r\n") == [b"OK\r\n"]
    clock.advance_to(15.0)
    time_line, date_line = proto.feed(b"GETRTC\r\n")
    moment = rtc_datetime(
        parse_reply(time_line, command="GETRTC"), parse_reply(date_line, command="GETRTC")
    )
    assert moment == dt.datetime(2031, 1, 1, 0, 0, 5)


def test_every_command_of_the_table_has_an_answer() -> None:
    samples = {
        "REMOTE": b"REMOTE",
        "LOCAL": b"LOCAL",
        "IDENT": b"IDENT",
        "GETRTC": b"GETRTC",
        "SETRTC": b"SETRTC=01,02,03,04,05,2026",
        "VALIDATION": b"VALIDATION=OZYMANDIAS",
        "VALOFF": b"VALOFF",
        "NSRA": b"NSRA=060",
        "SAT": b"SAT=099",
        "RESPRATE": b"RESPRATE=012",
        "NIBPP": b"NIBPP=120,080",
        "IBPS": b"IBPS=1,+010",
        "IBPP": b"IBPP=2,025,010",
        "IBPW": b"IBPW=1,ART",
        "KEY": b"KEY=17,1",
    }
    assert set(samples) == set(COMMANDS)
    for name, line in samples.items():
        proto, _, _ = make(remote=True)
        replies = proto.feed(line + b"\r\n")
        assert replies, name
        assert not any(r.startswith(b"ERR") for r in replies), (name, replies)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=80))
def test_garbage_never_raises_and_each_line_gets_one_answer(data: bytes) -> None:
    proto, _, _ = make(remote=True)
    replies = proto.feed(data + b"\r\n")
    assert len(replies) <= data.count(b"\r") + data.count(b"\n") + 2
    for reply in replies:
        assert reply.endswith(b"\r\n")
