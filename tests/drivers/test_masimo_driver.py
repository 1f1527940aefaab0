"""MasimoOximeter: the mapping of an ASCII 1 line to a reading (golden lines), and the
driver against the Masimo emulator over a real pty (identity, garbage counted)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from medtwin.drivers.clock import VirtualClock
from medtwin.drivers.emulators.faults import FaultPlan
from medtwin.drivers.emulators.masimo import MasimoEmulator
from medtwin.drivers.emulators.mechanisms import OximeterSnapshot
from medtwin.drivers.masimo import MasimoOximeter, parse_line
from medtwin.drivers.masimo.driver import reading_from_line

#: The Rad-8 capture of the codec's docstring (yahnatan/pulseox README).
CAPTURE = (
    b"02/22/16 22:47:45 SN=0000056661 SPO2=098% BPM=097 PI=03.60% SPCO=--.-% "
    b"SPMET=--.-% DESAT=-- PIDELTA=+-- ALARM=0000 EXC=000800\r\n"
)


def test_the_rad8_capture_reads_as_a_clean_reading() -> None:
    reading = reading_from_line(12.0, parse_line(CAPTURE))
    assert (reading.t_s, reading.spo2_percent, reading.pulse_rate_bpm) == (12.0, 98.0, 97.0)
    assert reading.pi_percent == 3.6
    assert not (reading.sensor_off)
    assert not (reading.searching)
    assert not (reading.low_perfusion)
    assert not reading.artifact
    assert reading.alarms == frozenset()
    assert reading.extras["spco_percent"] is None
    assert reading.extras["alarm_sounding"] == 0.0


def test_alarm_and_exception_bits_map_to_flags_and_conditions() -> None:
    line = CAPTURE.replace(b"ALARM=0000", b"ALARM=001A").replace(b"EXC=000800", b"EXC=00042D")
    reading = reading_from_line(0.0, parse_line(line))
    # ALARM 0x1A: SpO2 low, BPM low, sounding. EXC 0x42D: no sensor, low perfusion,
    # pulse search, sensor off, low signal IQ.
    assert reading.alarms == frozenset({"spo2_low", "hr_low"})
    assert reading.extras["alarm_sounding"] == 1.0
    assert reading.sensor_off
    assert reading.low_perfusion
    assert reading.searching
    assert reading.artifact


class Fixed:
    model = "Rad-8"
    serial = "56661"
    firmware = ""

    def __init__(self) -> None:
        self.snap = OximeterSnapshot(
            t_s=0.0,
            spo2_percent=96.0,
            pulse_rate_bpm=64.0,
            pi_percent=1.25,
            sensor_off=False,
            searching=False,
            low_perfusion=False,
            artifact=False,
            signal_loss=False,
            alarms=frozenset({"spo2_low"}),
            extended={},
        )

    def snapshot(self) -> OximeterSnapshot:
        return self.snap

    def pleth(self, t_s: list[float]) -> list[float]:
        return [0.5] * len(t_s)


@pytest.fixture
async def emulator() -> AsyncIterator[MasimoEmulator]:
    # A fast line period keeps the test short; the format is the same.
    emulator = MasimoEmulator(Fixed(), clock=VirtualClock(), line_interval_s=0.1)
    await emulator.start()
    try:
        yield emulator
    finally:
        await emulator.stop()


async def test_driver_reads_identity_and_values(emulator: MasimoEmulator) -> None:
    async with MasimoOximeter(emulator.port) as dev:
        async with asyncio.timeout(10):
            identity = await dev.identify()
            reading = await dev.read(timeout_s=2.0)
    assert identity.serial == "0000056661"
    assert (reading.spo2_percent, reading.pulse_rate_bpm, reading.pi_percent) == (96, 64, 1.25)
    assert reading.alarms == frozenset({"spo2_low"})


async def test_garbage_lines_are_counted_never_raised(emulator: MasimoEmulator) -> None:
    emulator.server.faults = FaultPlan.parse(["garbage:every=2", "bad-checksum:every=3"], seed=2)
    async with MasimoOximeter(emulator.port) as dev:
        async with asyncio.timeout(10):
            for _ in range(8):
                seen = dev.readings
                while dev.readings == seen:
                    await dev.read(timeout_s=2.0)
                    await asyncio.sleep(0.02)
        errors = dev.link_errors
    assert errors["bad_lines"] > 0
    assert errors["dropped_bytes"] > 0
