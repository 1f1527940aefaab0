"""NoninOximeter against the Nonin emulator over real ptys: the format switch and its
ACK/NAK, the mapping of packets and records to readings, the pleth history; and the
third-party ``nonin`` client (PyPI, app-nonin) reading the emulator unmodified."""

from __future__ import annotations

import asyncio
import importlib.util
import threading
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
from medtwin.drivers.clock import VirtualClock
from medtwin.drivers.emulators.mechanisms import OximeterSnapshot
from medtwin.drivers.emulators.nonin import Nonin2Emulator, Nonin7Emulator
from medtwin.drivers.errors import CommandRefused, ConfigurationError
from medtwin.drivers.nonin import Nonin7Oximeter, NoninOximeter
from medtwin.drivers.nonin.codec import NAK

SNAP = OximeterSnapshot(
    t_s=0.0,
    spo2_percent=95.0,
    pulse_rate_bpm=88.0,
    pi_percent=2.0,
    sensor_off=False,
    searching=False,
    low_perfusion=False,
    artifact=True,
    signal_loss=False,
    alarms=frozenset(),
    extended={"spo2_extended_percent": 94.0, "hr_extended_bpm": 87.0},
)


class Fixed:
    model = "fixed"
    serial = "7"
    firmware = "12"

    def __init__(self, snap: OximeterSnapshot = SNAP) -> None:
        self.snap = snap

    def snapshot(self) -> OximeterSnapshot:
        return self.snap

    def pleth(self, t_s: list[float]) -> list[float]:
        return [0.25] * len(t_s)


@pytest.fixture
async def emulator2() -> AsyncIterator[Nonin2Emulator]:
    emulator = Nonin2Emulator(Fixed(), clock=VirtualClock())
    await emulator.start()
    try:
        yield emulator
    finally:
        await emulator.stop()


@pytest.mark.parametrize("fmt", [2, 7])
async def test_packets_map_to_readings(emulator2: Nonin2Emulator, fmt: int) -> None:
    async with NoninOximeter(emulator2.port, data_format=fmt, clock=VirtualClock()) as dev:
        async with asyncio.timeout(10):
            reading = await dev.read(timeout_s=2.0)
    assert dev.acks == 1
    assert emulator2.handler.data_format == fmt  # type: ignore[attr-defined]
    assert (reading.spo2_percent, reading.pulse_rate_bpm) == (95.0, 88.0)
    assert reading.artifact
    assert not (reading.sensor_off)
    assert not (reading.searching)
    assert not (reading.low_perfusion)
    assert reading.extras["spo2_extended_percent"] == 94.0
    assert reading.extras["hr_extended_bpm"] == 87.0
    assert reading.extras["firmware_revision"] == 12.0
    assert reading.alarms == frozenset()
    top = 255 if fmt == 2 else 65535
    # Samples before the oximeter was switched on hold the mid-scale value.
    assert dev.pleth[-1] == round(0.25 * top)
    assert set(dev.pleth) <= {round(0.25 * top), round(0.5 * top)}


async def test_format8_records_map_to_readings(emulator2: Nonin2Emulator) -> None:
    emulator2.mechanism.snap = replace(SNAP, low_perfusion=True, searching=True)  # type: ignore[attr-defined]
    async with NoninOximeter(emulator2.port, data_format=8) as dev:
        async with asyncio.timeout(10):
            reading = await dev.read(timeout_s=3.0)
    assert (reading.spo2_percent, reading.pulse_rate_bpm) == (95.0, 88.0)
    assert reading.low_perfusion
    assert reading.searching
    assert reading.artifact
    assert dev.link_errors == {"dropped_bytes": dev.link_errors["dropped_bytes"], "reconnects": 0}


async def test_without_select_the_stream_is_read_as_it_is() -> None:
    emulator = Nonin7Emulator(Fixed(), clock=VirtualClock())
    await emulator.start()
    try:
        async with Nonin7Oximeter(emulator.port, select_format=False) as dev:
            async with asyncio.timeout(10):
                reading = await dev.read(timeout_s=2.0)
        assert reading.spo2_percent == 95.0
        assert emulator.handler.acks == 0  # type: ignore[attr-defined]
        assert emulator.server.bytes_received == 0
    finally:
        await emulator.stop()


async def test_nak_is_a_command_refused(
    emulator2: Nonin2Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(emulator2.handler, "handle", lambda frame: [bytes((NAK,))])
    dev = NoninOximeter(emulator2.port, data_format=7)
    async with asyncio.timeout(10):
        with pytest.raises(CommandRefused, match="NAK"):
            await dev.open()
    await dev.close()
    assert dev.naks == 1


def test_fixed_protocols_refuse_another_format() -> None:
    with pytest.raises(ConfigurationError, match="data format #7, not #2"):
        Nonin7Oximeter("/dev/null", data_format=2)
    with pytest.raises(ConfigurationError, match="data_format 13"):
        NoninOximeter("/dev/null", data_format=13)


@pytest.mark.skipif(
    importlib.util.find_spec("nonin") is None, reason="the third-party 'nonin' is not installed"
)
async def test_third_party_nonin_client_reads_the_emulator(
    emulator2: Nonin2Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """app-nonin's ``Nonin`` (PyPI ``nonin`` 0.2.4, for the Xpod 3012 LP) reads #2 frames
    with blocking pyserial. Only its USB enumeration is replaced (a pty has no vendor id);
    its framing and parsing run as published."""
    import nonin.device as third_party

    port = emulator2.port

    class Usb:
        manufacturer = "Nonin Medical"
        product = "Pulse Oximeter"
        serial_number = "emulated"

    monkeypatch.setattr(third_party, "validate_port", lambda port=None: (port, Usb()))
    results: list[Any] = []

    def client() -> None:
        device = third_party.Nonin(port)
        try:
            results.extend(device.read() for _ in range(60))
        finally:
            device.serial.close()

    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    async with asyncio.timeout(20):
        for _ in range(400):  # the client blocks in pyserial: poll its thread
            if not thread.is_alive():
                break
            await asyncio.sleep(0.05)
    assert len(results) == 60
    assert {r["PPG"] for r in results[30:]} == {round(0.25 * 255)}
    assert sum(r["Frame Sync"] for r in results) >= 1
    assert all(r["Artifact - short term"] == 1 for r in results[5:])
