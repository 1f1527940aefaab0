"""Modbus drivers against the Modbus emulators over real ptys (RTU), Modbus TCP and RTU
over TCP, with the physical bench behind them; faults; third-party pymodbus on both ends.

The contract every pump and bench I/O module keeps is checked once in tests/conformance;
here are the Modbus specifics: register maps, exception codes, each framing under faults.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from medtwin.drivers.base import PumpAlarm, PumpLimits, PumpState, RetryPolicy
from medtwin.drivers.clock import VirtualClock
from medtwin.drivers.emulators.faults import FaultPlan
from medtwin.drivers.emulators.modbus import ModbusBenchIOEmulator, ModbusPumpEmulator
from medtwin.drivers.emulators.pacing import Pacing
from medtwin.drivers.emulators.physical_bench import PhysicalBench
from medtwin.drivers.errors import (
    ConfigurationError,
    DeviceTimeout,
    LimitError,
    PortError,
)
from medtwin.drivers.modbus import (
    ModbusBenchIO,
    ModbusExceptionReply,
    ModbusInfusionPump,
    ModbusRegisterDevice,
)
from medtwin.drivers.register_map import load_register_map
from medtwin.drivers.registry import driver_class, emulator_class
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

TRANSPORTS = ["rtu-pty", "modbus-tcp", "rtu-over-tcp"]
FAST = RetryPolicy(timeout_s=0.3, retries=2, reconnects=8, backoff_s=0.02, backoff_max_s=0.2)
PUMP_MAP = Path(load_register_map("infusion_pump").source)


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
def bench(clock: VirtualClock) -> PhysicalBench:
    # Seed 11: a fixed transducer-noise sequence, so a failing run replays identically.
    return PhysicalBench.default(clock=clock, seed=11)


def _emulator_options(transport: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(constructor options, start options) for a transport."""
    if transport == "rtu-pty":
        return {}, {}
    framing = "mbap" if transport == "modbus-tcp" else "rtu"
    return {"tcp_framing": framing}, {"tcp": ("127.0.0.1", 0)}


@contextlib.asynccontextmanager
async def serving(
    emulator: ModbusPumpEmulator | ModbusBenchIOEmulator, **start: Any
) -> AsyncIterator[str]:
    port = await emulator.start(**start)
    try:
        yield port
    finally:
        await emulator.stop()


@contextlib.asynccontextmanager
async def pump_on(
    bench: PhysicalBench,
    clock: VirtualClock,
    transport: str = "rtu-pty",
    *,
    faults: list[str] | None = None,
    retry: RetryPolicy = FAST,
    **driver: Any,
) -> AsyncIterator[tuple[ModbusPumpEmulator, ModbusInfusionPump]]:
    options, start = _emulator_options(transport)
    # Seed 3 for the fault plan: which replies a probabilistic fault hits is then fixed.
    plan = FaultPlan.parse(faults, seed=3) if faults else None
    emulator = ModbusPumpEmulator(bench.pump, clock=clock, faults=plan, **options)
    async with (
        serving(emulator, **start) as port,
        ModbusInfusionPump(port, clock=clock, retry=retry, **driver) as pump,
    ):
        yield emulator, pump


def _pump_map_variant(path: Path, *edits: tuple[str, str], extra: str = "") -> Path:
    """A copy of the shipped pump map with text edits (first occurrence each)."""
    text = PUMP_MAP.read_text()
    for old, new in edits:
        assert old in text
        text = text.replace(old, new, 1)
    path.write_text(text + "\n" + extra)
    return path


# --------------------------------------------------------------------------- end to end


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_pump_end_to_end(bench: PhysicalBench, clock: VirtualClock, transport: str) -> None:
    async with pump_on(bench, clock, transport) as (emulator, pump):
        identity = await pump.identify()
        assert (identity.model, identity.serial, identity.firmware) == (
            bench.pump.model,
            bench.pump.serial,
            bench.pump.firmware,
        )
        assert identity.protocol == "modbus-pump"
        await pump.set_syringe_diameter(14.43)
        # holding 10-11, float32 ABCD: the float32 nearest to what was written
        assert await pump.read_syringe_diameter() == pytest.approx(14.43, rel=1e-7)
        await pump.set_syringe_diameter(26.59)
        assert await pump.read_syringe_diameter() == pytest.approx(26.59, rel=1e-7)
        await pump.set_rate(72.5)
        await pump.set_volume_target(None)
        await pump.start()
        await clock.sleep_until(1800.0)
        status = await pump.read_status()
        truth = bench.pump.snapshot()
        assert status.state is PumpState.INFUSING
        assert status.alarms == frozenset()
        assert status.rate_ml_h == 72.5
        assert status.t_s == 1800.0
        assert status.infused_ml == pytest.approx(truth.infused_ml, rel=1e-6)
        assert status.infused_ml == pytest.approx(72.5 / 2, rel=0.02)
        assert status.pressure_mmhg == pytest.approx(truth.pressure_mmhg, rel=1e-6, abs=1e-5)
        values = await pump.read_values("rate_setpoint_ml_h", "syringe_diameter_mm", "uptime_s")
        assert values["rate_setpoint_ml_h"] == 72.5
        assert values["syringe_diameter_mm"] == pytest.approx(26.59, rel=1e-7)
        assert values["uptime_s"] == 1800
        await pump.stop()
        assert (await pump.read_status()).state is PumpState.STOPPED
        await pump.clear_volume()
        assert (await pump.read_status()).infused_ml == 0.0
        assert emulator.requests == emulator.replies


async def test_volume_target_ends_the_infusion(bench: PhysicalBench, clock: VirtualClock) -> None:
    async with pump_on(bench, clock) as (_, pump):
        await pump.set_rate(60.0)
        await pump.set_volume_target(0.5)
        await pump.start()
        await clock.sleep_until(60.0)
        status = await pump.read_status()
        assert status.state is PumpState.STOPPED
        assert status.alarms == {PumpAlarm.END_OF_INFUSION}
        assert status.infused_ml == pytest.approx(0.5, rel=0.01)
        assert (await pump.read_values("volume_to_be_infused_ml")) == {
            "volume_to_be_infused_ml": 0.5
        }
        await pump.clear_alarms()
        assert (await pump.read_status()).alarms == frozenset()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_bench_io_end_to_end(
    bench: PhysicalBench, clock: VirtualClock, transport: str
) -> None:
    options, start = _emulator_options(transport)
    emulator = ModbusBenchIOEmulator(bench.bench_io, clock=clock, **options)
    async with (
        serving(emulator, **start) as port,
        ModbusBenchIO(port, clock=clock, retry=FAST) as io,
    ):
        await io.set_occluded(True)
        assert bench.bench_io.occluded() is True
        status = await io.read_status()
        assert status.occluded is True
        assert -100.0 <= status.pressure_mmhg <= 2500.0
        await clock.sleep_until(42.5)
        values = await io.read_values("valve_closed_feedback", "status", "uptime_s")
        assert values == {"valve_closed_feedback": True, "status": 0, "uptime_s": 42}
        await io.set_occluded(False)
        assert (await io.read_status()).occluded is False
        identity = await io.identify()
        assert (identity.model, identity.serial) == (bench.bench_io.model, bench.bench_io.serial)


async def test_generic_device_reads_and_writes_any_map(
    bench: PhysicalBench, clock: VirtualClock
) -> None:
    emulator = ModbusPumpEmulator(bench.pump, clock=clock)
    async with (
        serving(emulator) as port,
        ModbusRegisterDevice(port, register_map=PUMP_MAP, clock=clock, retry=FAST) as device,
    ):
        await device.write_value("rate_setpoint_ml_h", 12.25)
        await device.write_value("command", 1)
        values = await device.read_values("state", "delivered_rate_ml_h", "rate_setpoint_ml_h")
        assert values == {"state": 1, "delivered_rate_ml_h": 12.25, "rate_setpoint_ml_h": 12.25}


async def test_registry_names_the_modbus_classes() -> None:
    assert driver_class("modbus-pump") is ModbusInfusionPump
    assert driver_class("modbus-bench-io") is ModbusBenchIO
    assert emulator_class("modbus-pump") is ModbusPumpEmulator
    assert emulator_class("modbus-bench-io") is ModbusBenchIOEmulator


async def test_cdab_variant_map_on_both_ends(
    bench: PhysicalBench, clock: VirtualClock, tmp_path: Path
) -> None:
    variant = _pump_map_variant(
        tmp_path / "pump_cdab.toml",
        ('word_order = "ABCD"', 'word_order = "CDAB"'),
        ("device_id = 1", "device_id = 7"),
    )
    emulator = ModbusPumpEmulator(bench.pump, clock=clock, register_map=variant)
    async with serving(emulator) as port:
        async with ModbusInfusionPump(port, register_map=variant, clock=clock, retry=FAST) as pump:
            assert pump.device_id == 7
            await pump.set_rate(72.5)
        client = AsyncModbusSerialClient(port, timeout=2, retries=0)
        try:
            assert await client.connect()
            reply = await client.read_holding_registers(0, count=2, device_id=7)
            assert reply.registers == [0x0000, 0x4291]
        finally:
            client.close()


# --------------------------------------------------------------------------- refusals


async def test_limits_are_refused_before_anything_is_sent(
    bench: PhysicalBench, clock: VirtualClock
) -> None:
    async with pump_on(bench, clock, limits=PumpLimits(max_rate_ml_h=100.0)) as (emulator, pump):
        before = emulator.requests
        with pytest.raises(LimitError, match="declared limits"):
            await pump.set_rate(150.0)  # PumpLimits
        with pytest.raises(LimitError, match="outside the declared limits"):
            await pump.set_syringe_diameter(60.0)  # the map's 0.1..50 mm
        with pytest.raises(LimitError, match="write-only"):
            await pump.read_values("command")
        assert emulator.requests == before
        assert bench.pump.snapshot().rate_setpoint_ml_h == 0.0
    emulator = ModbusPumpEmulator(bench.pump, clock=clock)
    async with (
        serving(emulator) as port,
        ModbusRegisterDevice(port, register_map="infusion_pump", clock=clock, retry=FAST) as device,
    ):
        for name, value in [
            ("rate_setpoint_ml_h", 1500.5),
            ("command", 9),
            ("state", 1),
            ("rate_setpoint_ml_h", math.nan),
        ]:
            with pytest.raises(LimitError, match="nothing was sent"):
                await device.write_value(name, value)
        assert emulator.requests == 0


async def test_device_exceptions_name_the_code(
    bench: PhysicalBench, clock: VirtualClock, tmp_path: Path
) -> None:
    wide = _pump_map_variant(
        tmp_path / "wide.toml",
        ("max = 1500.0", "max = 5000.0"),
        extra='[registers.spare]\ntable = "holding"\naddress = 20\ntype = "uint16"\n',
    )
    emulator = ModbusPumpEmulator(bench.pump, clock=clock)
    async with (
        serving(emulator, tcp=("127.0.0.1", 0)) as port,
        ModbusRegisterDevice(port, register_map=wide, clock=clock, retry=FAST) as device,
    ):
        with pytest.raises(
            ModbusExceptionReply, match=r"exception 3 \(ILLEGAL DATA VALUE\)"
        ) as info:
            await device.write_value("rate_setpoint_ml_h", 3000.0)
        assert (info.value.exception_code, info.value.function_code) == (3, 16)
        assert info.value.reply.endswith(bytes.fromhex("9003"))
        with pytest.raises(
            ModbusExceptionReply, match=r"exception 2 \(ILLEGAL DATA ADDRESS\)"
        ) as info:
            await device.read_values("spare")
        assert info.value.exception_code == 2
        bench.pump.set_diameter_mm(4.7)
        with pytest.raises(ModbusExceptionReply, match="exception 3"):
            await device.write_value("rate_setpoint_ml_h", 100.0)  # beyond the drive


async def test_wrong_device_id(bench: PhysicalBench, clock: VirtualClock) -> None:
    quick = RetryPolicy(timeout_s=0.15, retries=1)
    emulator = ModbusPumpEmulator(bench.pump, clock=clock)
    async with (
        serving(emulator) as port,
        ModbusInfusionPump(port, device_id=2, clock=clock, retry=quick) as pump,
    ):
        with pytest.raises(DeviceTimeout, match=r"no reply within 0\.15 s after 2 attempts"):
            await pump.read_status()  # another slave on the line: silence
    emulator = ModbusPumpEmulator(bench.pump, clock=clock)
    async with (
        serving(emulator, tcp=("127.0.0.1", 0)) as port,
        ModbusInfusionPump(port, device_id=9, clock=clock, retry=quick) as pump,
    ):
        with pytest.raises(ModbusExceptionReply, match="GATEWAY TARGET") as info:
            await pump.read_status()
        assert info.value.exception_code == 0x0B


async def test_identity_without_function_43_comes_from_the_map(
    bench: PhysicalBench, clock: VirtualClock
) -> None:
    emulator = ModbusPumpEmulator(bench.pump, clock=clock)
    answer = emulator.datastore.respond

    async def no_identification(pdu: bytes) -> bytes:
        return bytes((0xAB, 0x01)) if pdu[:1] == b"\x2b" else await answer(pdu)

    emulator.datastore.respond = no_identification  # type: ignore[method-assign]
    async with serving(emulator) as port, ModbusInfusionPump(port, clock=clock, retry=FAST) as pump:
        identity = await pump.identify()
        assert (identity.model, identity.serial, identity.firmware) == (
            "MEDTWIN-REF-PUMP",
            "",
            "1.0",
        )


# --------------------------------------------------------------------------- faults


@pytest.mark.slow
@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("fault", ["drop", "bad-checksum", "garbage", "late:delay=0.5s"])
async def test_a_faulty_reply_is_retried(
    bench: PhysicalBench, clock: VirtualClock, transport: str, fault: str
) -> None:
    bench.pump.set_rate_ml_h(33.0)
    spec = fault + ("," if ":" in fault else ":") + "count=1"
    async with pump_on(bench, clock, transport, faults=[spec]) as (emulator, pump):
        status = await pump.read_status()
        assert status.state is PumpState.STOPPED
        assert (await pump.read_values("rate_setpoint_ml_h")) == {"rate_setpoint_ml_h": 33.0}
        # The faulty reply, at least one retry (a slave busy with a late reply ignores it),
        # the second read.
        assert emulator.requests + emulator.ignored >= 3


@pytest.mark.slow
@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("fault", ["drop", "bad-checksum", "late:delay=1s"])
async def test_a_fault_on_every_reply_is_a_timeout(
    bench: PhysicalBench, clock: VirtualClock, transport: str, fault: str
) -> None:
    quick = RetryPolicy(timeout_s=0.15, retries=1)
    async with pump_on(bench, clock, transport, faults=[fault], retry=quick) as (emulator, pump):
        with pytest.raises(DeviceTimeout, match="after 2 attempts"):
            await pump.read_status()
        assert emulator.requests >= 1


async def test_late_reply_within_the_timeout_is_fine(
    bench: PhysicalBench, clock: VirtualClock
) -> None:
    async with pump_on(
        bench, clock, faults=["late:delay=0.1s"], retry=RetryPolicy(timeout_s=1.0, retries=0)
    ) as (emulator, pump):
        assert (await pump.read_status()).state is PumpState.STOPPED
        assert (emulator.requests, emulator.replies) == (1, 1)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_disconnect_and_reconnect(
    bench: PhysicalBench, clock: VirtualClock, transport: str
) -> None:
    bench.pump.set_rate_ml_h(5.0)
    async with pump_on(bench, clock, transport, faults=["disconnect:for=0.2s"]) as (emulator, pump):
        port = emulator.port
        status = await pump.read_status()  # the first reply takes the port down
        assert status.state is PumpState.STOPPED
        assert emulator.port == port
        assert (await pump.read_values("rate_setpoint_ml_h")) == {"rate_setpoint_ml_h": 5.0}


async def test_paced_rtu_line(bench: PhysicalBench, clock: VirtualClock) -> None:
    emulator = ModbusPumpEmulator(
        bench.pump, clock=clock, pacing=Pacing(baud=19200, bits_per_char=11)
    )
    async with serving(emulator) as port, ModbusInfusionPump(port, clock=clock, retry=FAST) as pump:
        await pump.set_rate(20.0)
        assert (await pump.read_values("rate_setpoint_ml_h")) == {"rate_setpoint_ml_h": 20.0}
        assert (await pump.read_status()).state is PumpState.STOPPED


# --------------------------------------------------------------------------- third party


async def test_bare_pymodbus_client_reads_and_writes_the_emulator_over_rtu(
    bench: PhysicalBench, clock: VirtualClock
) -> None:
    emulator = ModbusPumpEmulator(bench.pump, clock=clock)
    async with serving(emulator) as port:
        client = AsyncModbusSerialClient(port, baudrate=19200, timeout=2, retries=0)
        try:
            assert await client.connect()
            float32 = client.DATATYPE.FLOAT32
            reply = await client.write_registers(
                0, client.convert_to_registers(72.5, float32), device_id=1
            )
            assert not reply.isError()
            assert bench.pump.snapshot().rate_setpoint_ml_h == 72.5
            assert not (await client.write_register(4, 1, device_id=1)).isError()
            await clock.sleep_until(1200.0)  # 24 mL: well before the 50 mL syringe is empty
            reply = await client.read_input_registers(0, count=10, device_id=1)
            assert reply.registers[0] == 1  # infusing
            assert client.convert_from_registers(reply.registers[2:4], float32) == 72.5
            infused = client.convert_from_registers(reply.registers[4:6], float32)
            assert infused == pytest.approx(bench.pump.snapshot().infused_ml, rel=1e-6)
            assert (
                client.convert_from_registers(reply.registers[8:10], client.DATATYPE.UINT32) == 1200
            )
            refused = await client.write_register(4, 9, device_id=1)
            assert (refused.isError(), refused.exception_code) == (True, 3)
            gap = await client.read_holding_registers(0, count=6, device_id=1)
            assert (gap.isError(), gap.exception_code) == (True, 2)
            unsupported = await client.read_fifo_queue(address=0, device_id=1)
            assert (unsupported.isError(), unsupported.exception_code) == (True, 1)
            info = await client.read_device_information(read_code=3, device_id=1)
            assert getattr(info, "information", {})[0x80] == bench.pump.serial.encode()
            # Broadcast (address 0): carried out, never answered.
            await client.write_registers(
                0, client.convert_to_registers(9.5, float32), device_id=0, no_response_expected=True
            )
            # The slave carries it out before it answers the next request.
            reply = await client.read_holding_registers(0, count=2, device_id=1)
            assert client.convert_from_registers(reply.registers, float32) == 9.5
            assert bench.pump.snapshot().rate_setpoint_ml_h == 9.5
        finally:
            client.close()


async def test_bare_pymodbus_client_over_modbus_tcp(
    bench: PhysicalBench, clock: VirtualClock
) -> None:
    emulator = ModbusBenchIOEmulator(bench.bench_io, clock=clock)
    async with serving(emulator, tcp=("127.0.0.1", 0)) as port:
        client = AsyncModbusTcpClient(
            "127.0.0.1", port=int(port.rsplit(":", 1)[1]), timeout=2, retries=0
        )
        try:
            assert await client.connect()
            assert not (await client.write_coil(0, True, device_id=1)).isError()
            assert bench.bench_io.occluded() is True
            assert (await client.read_coils(0, count=1, device_id=1)).bits[0] is True
            assert (await client.read_discrete_inputs(0, count=1, device_id=1)).bits[0] is True
            reply = await client.read_input_registers(0, count=5, device_id=1)
            pressure = client.convert_from_registers(reply.registers[0:2], client.DATATYPE.FLOAT32)
            assert isinstance(pressure, float)
            assert -100.0 <= pressure <= 2500.0
            wrong = await client.read_coils(1, count=1, device_id=1)
            assert (wrong.isError(), wrong.exception_code) == (True, 2)
        finally:
            client.close()
            await asyncio.sleep(0)


async def test_our_driver_against_a_pymodbus_server(clock: VirtualClock) -> None:
    """A third-party slave (pymodbus's own server) serving the bench I/O map."""
    pressure = struct.unpack(">2H", struct.pack(">f", 123.5))
    device = SimDevice(
        id=1,
        simdata=(
            [SimData(0, count=16, values=False, datatype=DataType.BITS)],
            [SimData(0, count=16, values=False, datatype=DataType.BITS)],
            [SimData(0, count=1, values=0, datatype=DataType.REGISTERS)],
            [SimData(0, values=[*pressure, 0, 0, 7], datatype=DataType.REGISTERS)],
        ),
    )
    server = ModbusTcpServer(device, address=("127.0.0.1", 0))
    await server.serve_forever(background=True)
    try:
        port = server.transport.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        async with ModbusBenchIO(f"tcp://127.0.0.1:{port}", clock=clock, retry=FAST) as io:
            await io.set_occluded(True)
            status = await io.read_status()
            assert (status.occluded, status.pressure_mmhg) == (True, 123.5)
            assert (await io.read_values("uptime_s")) == {"uptime_s": 7}
    finally:
        await server.shutdown()
        await asyncio.sleep(0)


# --------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("port", "options", "words"),
    [
        ("tcp://127.0.0.1", {}, "expected tcp://HOST:PORT"),
        ("socket://127.0.0.1:99999", {}, "expected socket://HOST:PORT"),
        ("", {}, "empty port"),
        ("/dev/ttyUSB0", {"device_id": 0}, "expected 1..247"),
        ("tcp://127.0.0.1:502", {"device_id": 256}, "expected 0..255"),
        ("/dev/ttyUSB0", {"parity": "X"}, "parity N|E|O|M|S"),
    ],
)
def test_bad_driver_configuration(port: str, options: dict[str, Any], words: str) -> None:
    with pytest.raises(ConfigurationError, match=words):
        ModbusInfusionPump(port, **options)


def test_pump_driver_checks_the_map(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="needs an entry 'rate_setpoint_ml_h'"):
        ModbusInfusionPump("/dev/ttyUSB0", register_map="bench_io")
    renamed = _pump_map_variant(tmp_path / "pump.toml", ('1 = "infusing"', '1 = "running"'))
    with pytest.raises(ConfigurationError, match="'running' is not a pump state") as info:
        ModbusInfusionPump("/dev/ttyUSB0", register_map=renamed)
    assert info.value.field == "registers.state.values.1"
    with pytest.raises(ConfigurationError, match="pinch valve through a coil"):
        ModbusBenchIO("/dev/ttyUSB0", register_map=_bench_map_with_register_valve(tmp_path))


def _bench_map_with_register_valve(tmp_path: Path) -> Path:
    path = tmp_path / "io.toml"
    path.write_text(
        '[map]\nname = "io"\n[registers.pinch_valve]\ntable = "holding"\naddress = 0\n'
        'type = "uint16"\n[registers.line_pressure_mmhg]\ntable = "input"\n'
        'address = 0\ntype = "float32"\n'
    )
    return path


async def test_missing_port_is_a_port_error(clock: VirtualClock, tmp_path: Path) -> None:
    pump = ModbusInfusionPump(str(tmp_path / "no-such-tty"), clock=clock, retry=FAST)
    with pytest.raises(PortError, match="cannot open"):
        await pump.open()
    closed = ModbusInfusionPump("tcp://127.0.0.1:1", clock=clock, retry=FAST)
    with pytest.raises(PortError, match=r"cannot open tcp://127\.0\.0\.1:1"):
        await closed.open()
