"""``medtwin emulate monitor`` / ``simulator``: the patient side served from a terminal."""

from __future__ import annotations

import asyncio
import json
import os
import select
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from medtwin.drivers.prosim8 import ProSim8Simulator
from medtwin.drivers.registry import descriptor, protocols
from medtwin.hil.cli import main

Start = Callable[..., "subprocess.Popen[bytes]"]


def _of_kind(kind: str) -> list[str]:
    return sorted(
        name
        for name in protocols()
        if descriptor(name).kind == kind and descriptor(name).emulator is not None
    )


def _first_line(proc: subprocess.Popen[bytes], timeout_s: float = 30.0) -> dict[str, object]:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout_s)
    assert ready, "the emulator printed nothing"
    doc = json.loads(proc.stdout.readline())
    assert isinstance(doc, dict)
    return doc


def _stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGINT)
    try:
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode


def _read_some(fd: int, want: int, timeout_s: float = 20.0) -> bytes:
    got = b""
    deadline = time.monotonic() + timeout_s
    while len(got) < want and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            got += os.read(fd, 4096)
    return got


@pytest.mark.slow
@pytest.mark.parametrize("protocol", _of_kind("oximeter"))
def test_a_monitor_streams_on_its_pty(emulate: Start, protocol: str) -> None:
    proc = emulate("monitor", "--protocol", protocol, "--hr", "75", "--spo2", "95", "--seed", "3")
    doc = _first_line(proc)
    assert (doc["protocol"], doc["device"]) == (protocol, "monitor")
    fd = os.open(str(doc["port"]), os.O_RDWR | os.O_NOCTTY)
    try:
        # nonin2/7 stream at once; masimo and nonin8 once a second (nonin8 after its
        # format request in real life, but the emulator streams on its own)
        data = _read_some(fd, 8)
    finally:
        os.close(fd)
    assert len(data) >= 8, f"{protocol}: only {data!r} in 20 s"
    assert _stop(proc) == 0


@pytest.mark.parametrize("protocol", _of_kind("simulator"))
async def test_a_simulator_obeys_its_driver_over_tcp(emulate: Start, protocol: str) -> None:
    proc = emulate("simulator", "--protocol", protocol, "--tcp", "127.0.0.1:0")
    doc = _first_line(proc)
    assert (doc["protocol"], doc["device"]) == (protocol, "simulator")
    assert str(doc["port"]).startswith("socket://127.0.0.1:")
    async with asyncio.timeout(30), ProSim8Simulator(str(doc["port"])) as sim:
        identity = await sim.identify()
        assert identity.model.startswith("ProSim")
        await sim.set_heart_rate(120)
        await sim.set_nibp(130, 85)
    assert _stop(proc) == 0


def test_the_protocols_come_from_the_registry() -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["emulate", "monitor", "--help"])
    assert result.exit_code == 0
    for name in _of_kind("oximeter"):
        assert name in result.output
    # a pump protocol is not a monitor; a monitor needs its protocol named
    result = runner.invoke(main, ["emulate", "monitor", "--protocol", "ne1000"])
    assert result.exit_code == 2
    assert "not a monitor" in result.output
    if len(_of_kind("oximeter")) > 1:
        result = runner.invoke(main, ["emulate", "monitor"])
        assert result.exit_code == 2
        assert "name the monitor protocol" in result.output


def test_listening_beyond_loopback_and_impossible_patients_are_refused() -> None:
    runner = CliRunner()
    result = runner.invoke(
        main, ["emulate", "simulator", "--protocol", "prosim8", "--tcp", "0.0.0.0:0"]
    )
    assert result.exit_code != 0
    assert "127.0.0.1" in result.output
    result = runner.invoke(
        main, ["emulate", "simulator", "--protocol", "prosim8", "--hr", "900", "--json"]
    )
    assert result.exit_code != 0
    assert "heart_rate_bpm" in result.output


MONITOR_BENCH = """
name = "monitors"

[[devices]]
name = "spo2-real"
kind = "oximeter"
protocol = "masimo"
port = "emulated"

[[devices]]
name = "prosim"
kind = "simulator"
protocol = "prosim8"
port = "emulated"

[[devices]]
name = "pump"
kind = "pump"
protocol = "ne1000"
port = "emulated"

[emulation]
seed = 5
"""


async def test_a_bench_file_serves_every_emulated_device(emulate: Start, tmp_path: Path) -> None:
    bench = tmp_path / "monitors.toml"
    bench.write_text(MONITOR_BENCH)
    proc = emulate("bench", str(bench))
    devices = _first_line(proc)["devices"]
    assert isinstance(devices, list)
    by_name = {d["device"]: d for d in devices}
    assert {(d["protocol"], d["kind"]) for d in devices} == {
        ("masimo", "oximeter"),
        ("prosim8", "simulator"),
        ("ne1000", "pump"),
    }
    async with asyncio.timeout(30), ProSim8Simulator(str(by_name["prosim"]["port"])) as sim:
        await sim.set_heart_rate(100)
    fd = os.open(str(by_name["spo2-real"]["port"]), os.O_RDWR | os.O_NOCTTY)
    try:
        assert len(_read_some(fd, 8)) >= 8  # the oximeter streams its line once a second
    finally:
        os.close(fd)
    assert _stop(proc) == 0
