"""Modbus driver overhead against bare pymodbus, and paced RTU throughput against the wire.

1. **Driver overhead.** Our ``read_values`` of the reference pump's status block (input
   registers 0-9: state, alarms, rate, volume, pressure, uptime; planned into one FC 4
   read and decoded to engineering values, through the guarded call path with its
   timeout and lock) against bare pymodbus ``read_input_registers(0, count=10)`` on the
   same emulator, RTU over a pty and Modbus TCP, in this process. On TCP both clients
   are connected at once and alternate read by read; RTU allows one master per port, so
   there they alternate in short batches. Each side's best batch counts (the least
   disturbed estimate on a shared machine). Goal: ours achieves at least 0.8 of bare
   pymodbus's reads per second.

2. **Paced RTU line.** The emulator paces replies as a 19,200 baud line with 11-bit
   characters (8E1, the serial-line spec's default framing). One transaction of the
   status read is

       t_tx = (n_request + n_reply) × bits_per_char / baud + 2 × t3.5
            = (8 + 25) × 11 / 19200 + 2 × 3.5 × 11 / 19200 = 22.92 ms

   (the request, the silence that ends it, the reply, the silence before the next
   request; MODBUS over Serial Line V1.02 §2.5.1.1), so the wire limit is 1 / t_tx =
   43.6 transactions/s. Goal: our driver achieves at least 90 % of it.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from _common import BenchResult, ratio_goal  # noqa: E402
from medtwin.drivers.base import RetryPolicy  # noqa: E402
from medtwin.drivers.clock import VirtualClock  # noqa: E402
from medtwin.drivers.emulators.modbus import ModbusPumpEmulator, modbus_t35_s  # noqa: E402
from medtwin.drivers.emulators.pacing import Pacing  # noqa: E402
from medtwin.drivers.emulators.physical_bench import PhysicalBench  # noqa: E402
from medtwin.drivers.modbus import ModbusRegisterDevice  # noqa: E402
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient  # noqa: E402

STATUS = (
    "state",
    "alarm_bits",
    "delivered_rate_ml_h",
    "volume_infused_ml",
    "line_pressure_mmhg",
    "uptime_s",
)
REQUEST_BYTES = 8  # address, function, start (2), count (2), CRC (2)
REPLY_BYTES = 3 + 2 * 10 + 2  # address, function, byte count, 10 registers, CRC


async def _ours_batch(port: str, clock: VirtualClock, n: int) -> float:
    async with ModbusRegisterDevice(
        port, register_map="infusion_pump", clock=clock, retry=RetryPolicy(timeout_s=2.0)
    ) as device:
        await device.read_values(*STATUS)  # warm-up: connection and read plan
        start = time.perf_counter()
        for _ in range(n):
            await device.read_values(*STATUS)
        return (time.perf_counter() - start) / n


async def _bare_batch(port: str, n: int) -> float:
    client: AsyncModbusSerialClient | AsyncModbusTcpClient
    if port.startswith("tcp://"):
        client = AsyncModbusTcpClient(
            "127.0.0.1", port=int(port.rsplit(":", 1)[1]), timeout=2, retries=0
        )
    else:
        client = AsyncModbusSerialClient(port, timeout=2, retries=0)
    try:
        if not await client.connect():
            raise RuntimeError(f"bare pymodbus cannot connect to {port}")
        await client.read_input_registers(0, count=10, device_id=1)
        start = time.perf_counter()
        for _ in range(n):
            reply = await client.read_input_registers(0, count=10, device_id=1)
            if reply.isError():
                raise RuntimeError(f"bare pymodbus read failed: {reply}")
        return (time.perf_counter() - start) / n
    finally:
        client.close()
        await asyncio.sleep(0)


async def _interleaved_tcp(
    port: str, clock: VirtualClock, rounds: int, n: int
) -> tuple[list[float], list[float]]:
    """Modbus TCP allows both clients on at once: alternate single reads, so both sides
    see the same machine load read by read."""
    device = ModbusRegisterDevice(
        port, register_map="infusion_pump", clock=clock, retry=RetryPolicy(timeout_s=2.0)
    )
    client = AsyncModbusTcpClient(
        "127.0.0.1", port=int(port.rsplit(":", 1)[1]), timeout=2, retries=0
    )
    ours: list[float] = []
    bare: list[float] = []
    await device.open()
    try:
        if not await client.connect():
            raise RuntimeError(f"bare pymodbus cannot connect to {port}")
        await device.read_values(*STATUS)
        await client.read_input_registers(0, count=10, device_id=1)
        clock_s = time.perf_counter
        for _ in range(rounds):
            spent_ours = spent_bare = 0.0
            for _ in range(n):
                t0 = clock_s()
                await device.read_values(*STATUS)
                t1 = clock_s()
                reply = await client.read_input_registers(0, count=10, device_id=1)
                spent_bare += clock_s() - t1
                spent_ours += t1 - t0
                if reply.isError():
                    raise RuntimeError(f"bare pymodbus read failed: {reply}")
            ours.append(spent_ours / n)
            bare.append(spent_bare / n)
    finally:
        client.close()
        await device.close()
    return ours, bare


async def _overhead(tcp: bool, quick: bool) -> BenchResult:
    clock = VirtualClock()
    bench = PhysicalBench.default(clock=clock, seed=0)
    emulator = ModbusPumpEmulator(bench.pump, clock=clock)
    port = await emulator.start(tcp=("127.0.0.1", 0) if tcp else None)
    # Many short batches: on a shared machine the best batch of each side is the least
    # disturbed estimate. RTU allows one master per port, so the sides take turns.
    rounds, n = (6, 50) if quick else (40, 100)
    ours: list[float] = []
    bare: list[float] = []
    try:
        if tcp:
            ours, bare = await _interleaved_tcp(port, clock, rounds, n)
        else:
            for _ in range(rounds):
                bare.append(await _bare_batch(port, n))
                ours.append(await _ours_batch(port, clock, n))
    finally:
        await emulator.stop()
    ours_rate, bare_rate = 1.0 / min(ours), 1.0 / min(bare)
    how = "alternating reads" if tcp else "alternating batches"
    return ratio_goal(
        f"modbus read_values vs bare pymodbus ({'Modbus TCP' if tcp else 'RTU pty'})",
        ours_rate,
        "reads/s",
        baseline=bare_rate,
        ratio=ours_rate / bare_rate,
        minimum=0.8,
        note=f"10 input registers decoded to 6 values; best of {rounds} × {n} reads, {how}",
    )


def wire_limit_tx_s(pacing: Pacing) -> float:
    """Transactions/s a line at ``pacing`` allows for the 10-register status read."""
    t_tx = (REQUEST_BYTES + REPLY_BYTES) * pacing.byte_time_s() + 2 * modbus_t35_s(pacing)
    return 1.0 / t_tx


async def _paced(quick: bool) -> BenchResult:
    pacing = Pacing(baud=19200, bits_per_char=11)
    clock = VirtualClock()
    bench = PhysicalBench.default(clock=clock, seed=0)
    emulator = ModbusPumpEmulator(bench.pump, clock=clock, pacing=pacing)
    port = await emulator.start()
    n = 40 if quick else 200
    try:
        per_read = await _ours_batch(port, clock, n)
    finally:
        await emulator.stop()
    achieved, limit = 1.0 / per_read, wire_limit_tx_s(pacing)
    return ratio_goal(
        "modbus RTU paced at 19200 baud 11 bit/char vs wire limit",
        achieved,
        "tx/s",
        baseline=limit,
        ratio=achieved / limit,
        minimum=0.9,
        note=f"{n} status reads; limit = 1 / ((8 + 25) × 11/19200 + 2 × t3.5)",
    )


async def _all(quick: bool) -> list[BenchResult]:
    return [await _overhead(False, quick), await _overhead(True, quick), await _paced(quick)]


def run(quick: bool = False) -> list[BenchResult]:
    """Measure; see the module docstring."""
    return asyncio.run(_all(quick))


if __name__ == "__main__":
    for result in run(quick="--quick" in sys.argv):
        row: dict[str, Any] = result.as_json()
        print(row)
