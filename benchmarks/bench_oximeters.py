"""Oximeter benchmarks (issue 13).

1. Nonin #2 decoding: :class:`~medtwin.drivers.nonin.frames.NoninStreamDecoder` on a long
   byte stream, fed in the driver's 4096-byte reads, against a bare ``struct.iter_unpack``
   loop over the same bytes that checks the marker, the checksum and the SYNC pattern and
   pulls out HR, SpO2, the statuses and the pleth of each packet (no resynchronisation, no
   counters). Goal: ratio >= 0.8 (packets/s, ours over bare; alternating rounds).
2. 50 emulated Nonin #2 monitors streaming at once on one event loop, each watching the
   bench's patient through its own monitor model, each read by a client on its pty. Goal:
   every monitor's frames/s within 1 % of 75 over the measured wall time (value: the worst
   monitor's deviation, %).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from _common import (  # noqa: E402
    BenchResult,
    alternating_rounds,
    paired_rates,
    ratio_goal,
    value_goal,
)
from medtwin.device_models.monitor.params import monitor_preset  # noqa: E402
from medtwin.drivers.clock import WallClock  # noqa: E402
from medtwin.drivers.emulators.nonin import Nonin2Emulator  # noqa: E402
from medtwin.drivers.emulators.physical_bench import PhysicalBench  # noqa: E402
from medtwin.drivers.nonin.codec import (  # noqa: E402
    NoninStreamDecoder,
    PacketValues,
    encode_packet,
)

__all__ = ["run"]

CHUNK = 4096


def _stream(n_packets: int) -> bytes:
    packets = [
        encode_packet(
            PacketValues(hr_bpm=60 + i % 40, spo2_percent=90 + i % 7, timer=i % 16384),
            [(i * 7 + k) % 256 for k in range(25)],
            fmt=2,
            status=0x02,
        )
        for i in range(300)
    ]
    return b"".join(packets[i % 300] for i in range(n_packets))


def _ours(data: bytes) -> int:
    decoder = NoninStreamDecoder(fmt=2)
    count = 0
    for start in range(0, len(data), CHUNK):
        count += len(decoder.feed(data[start : start + CHUNK]))
    return count


def _bare(data: bytes) -> int:
    out = []
    frames: list[tuple[int, int, int]] = []
    for start, status, pleth, value, chk in struct.iter_unpack("5B", data):
        if start != 1 or not status & 0x80 or (start + status + pleth + value) & 0xFF != chk:
            frames = []
            continue
        if status & 1:
            frames = []
        frames.append((status, pleth, value))
        if len(frames) == 25:
            d = [f[2] for f in frames]
            hr = ((d[0] & 3) << 7) | (d[1] & 0x7F)
            out.append((hr, d[2], [f[0] for f in frames], [f[1] for f in frames]))
            frames = []
    return len(out)


def bench_decoding(quick: bool) -> BenchResult:
    n = 3000 if quick else 15000
    data = _stream(n)
    assert _ours(data) == _bare(data) == n
    times = alternating_rounds(
        {"ours": lambda: _ours(data), "bare": lambda: _bare(data)}, repeat=5 if quick else 11
    )
    ours, bare, ratio = paired_rates(n, times, "ours", "bare")
    return ratio_goal(
        "Nonin #2 decoding vs bare struct loop",
        ours,
        "packets/s",
        baseline=bare,
        ratio=ratio,
        minimum=0.8,
        note=f"{n} packets fed in {CHUNK}-byte reads",
    )


async def _many_monitors(n_monitors: int, seconds: float) -> list[float]:
    clock = WallClock()
    bench = PhysicalBench.default(clock=clock, seed=5)
    emulators = [
        Nonin2Emulator(
            bench.patient.oximeter(monitor_preset("nonin"), model="3150", serial=str(k)),
            clock=clock,
        )
        for k in range(n_monitors)
    ]
    loop = asyncio.get_running_loop()
    fds: list[int] = []
    received = [0] * n_monitors

    def reader(index: int, fd: int) -> None:
        with contextlib.suppress(BlockingIOError):
            received[index] += len(os.read(fd, 65536))

    try:
        for index, emulator in enumerate(emulators):
            port = await emulator.start()
            fd = os.open(port, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
            fds.append(fd)
            loop.add_reader(fd, reader, index, fd)
        await asyncio.sleep(1.0)  # warm-up: every stream running
        start_counts = [e.handler.units for e in emulators]  # type: ignore[attr-defined]
        start_bytes = list(received)
        t0 = time.monotonic()
        await asyncio.sleep(seconds)
        elapsed = time.monotonic() - t0
        units = [e.handler.units - s for e, s in zip(emulators, start_counts, strict=True)]  # type: ignore[attr-defined]
        got = [(b - s) / 5 for b, s in zip(received, start_bytes, strict=True)]
    finally:
        for fd in fds:
            loop.remove_reader(fd)
            os.close(fd)
        for emulator in emulators:
            await emulator.stop()
    # Frames the clients received (bytes / 5) per second; the generator count agrees.
    assert all(abs(u - g) <= 75 for u, g in zip(units, got, strict=True))
    return [g / elapsed for g in got]


def bench_many_monitors(quick: bool) -> BenchResult:
    n = 50
    seconds = 4.0 if quick else 12.0
    rates = asyncio.run(_many_monitors(n, seconds))
    worst = max(abs(rate - 75.0) / 75.0 * 100.0 for rate in rates)
    return value_goal(
        f"{n} emulated Nonin #2 monitors on one event loop: worst frames/s deviation from 75",
        worst,
        "%",
        at_most=1.0,
        note=f"{seconds:g} s of wall time; rates {min(rates):.2f}-{max(rates):.2f} frames/s",
    )


def run(quick: bool = False) -> list[BenchResult]:
    return [bench_decoding(quick), bench_many_monitors(quick)]


if __name__ == "__main__":
    for result in run(quick=True):
        print(result.as_json())
