"""``medtwin emulate`` as a user runs it from two terminals: one serves, one talks."""

from __future__ import annotations

import asyncio
import json
import select
import signal
import subprocess
import sys

import pytest
from click.testing import CliRunner
from medtwin.drivers.modbus import ModbusBenchIO, ModbusInfusionPump
from medtwin.drivers.mtsics import MTSICSBalance
from medtwin.drivers.ne1000 import NE1000Pump
from medtwin.hil.cli import main


def _first_line(proc: subprocess.Popen[bytes], timeout_s: float = 30.0) -> dict[str, object]:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout_s)
    assert ready, "the emulator printed nothing"
    return json.loads(proc.stdout.readline())


def _stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> int:
    proc.send_signal(sig)
    try:
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode


async def test_pump_on_a_pty_with_the_ne1000_driver(emulate) -> None:  # type: ignore[no-untyped-def]
    proc = emulate("pump", "--protocol", "ne1000")
    doc = _first_line(proc)
    assert doc["protocol"] == "ne1000"
    assert doc["device"] == "pump"
    async with asyncio.timeout(30), NE1000Pump(str(doc["port"])) as pump:
        identity = await pump.identify()
        assert identity.model == "NE-1000"
        await pump.set_syringe_diameter(26.59)
        await pump.set_rate(120.0)
        status = await pump.read_status()
        assert status.rate_ml_h in (0.0, 120.0, None) or status.running is False
    assert _stop(proc) == 0


async def test_whole_bench_shares_one_line(emulate) -> None:  # type: ignore[no-untyped-def]
    proc = emulate("bench")
    ports = {d["device"]: d["port"] for d in _first_line(proc)["devices"]}  # type: ignore[union-attr]
    assert set(ports) == {"pump", "balance", "bench-io"}
    async with (
        asyncio.timeout(60),
        NE1000Pump(ports["pump"]) as pump,
        MTSICSBalance(ports["balance"]) as balance,
        ModbusBenchIO(ports["bench-io"]) as io,
    ):
        await balance.tare()
        await io.set_occluded(True)
        await pump.set_syringe_diameter(26.59)
        await pump.set_rate(1000.0)
        await pump.start()
        # the valve is closed: the pressure rises, nothing reaches the balance
        async with asyncio.timeout(20):
            # polling the device over its protocol: there is no event to wait on
            while (await io.read_status()).pressure_mmhg < 50.0:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        assert abs((await balance.read()).mass_g) < 0.005
        await io.set_occluded(False)
        await pump.stop()
        await pump.clear_alarms()
    assert _stop(proc, signal.SIGINT) == 0


async def test_modbus_pump_on_tcp(emulate) -> None:  # type: ignore[no-untyped-def]
    proc = emulate("pump", "--protocol", "modbus", "--tcp", "127.0.0.1:0")
    doc = _first_line(proc)
    port = str(doc["port"])
    assert port.startswith("tcp://127.0.0.1:")
    async with asyncio.timeout(30), ModbusInfusionPump(port) as pump:
        await pump.set_rate(10.0)
        assert (await pump.read_status()).state.value == "stopped"
    assert _stop(proc) == 0


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_right_after_the_port_line_stops_cleanly(emulate, sig: int) -> None:  # type: ignore[no-untyped-def]
    proc = emulate("bench")
    doc = _first_line(proc)
    assert len(doc["devices"]) == 3  # type: ignore[arg-type]
    assert _stop(proc, sig) == 0


def test_sigint_stops_an_emulator_started_with_sigint_ignored() -> None:
    # What a shell does to `medtwin emulate … &`: the job inherits SIGINT ignored.
    proc = subprocess.Popen(
        [sys.executable, "-m", "medtwin.hil", "emulate", "balance", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    try:
        assert _first_line(proc)["protocol"] == "mt-sics"
    finally:
        code = _stop(proc, signal.SIGINT)
    assert code == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["pump", "--tcp", "0.0.0.0:5000"], "127.0.0.1 only"),
        (["balance", "--protocol", "ne1000"], "Invalid value for '--protocol'"),
        (["pump", "--fault", "explode:p=1"], "unknown fault kind 'explode'"),
        (["pump", "--set", "pump.drive.nope=1"], "unknown parameter 'pump.drive.nope'"),
        (["pump", "--pace"], "--pace needs --baud"),
    ],
)
def test_bad_options_exit_2(args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, ["emulate", *args])
    assert result.exit_code == 2
    assert message in result.output
