"""A run whose process is killed with SIGKILL mid-run (the durability of docs/storage.md).

A child process writes a run continuously (array appends on one channel, scalar appends
on another, events) and never flushes explicitly: only the store's flusher thread makes
data durable. The test watches the database through its own connection, kills the child
with SIGKILL once enough blocks are committed, and reopens the store: the run must be
``interrupted``, everything that had been committed must be intact and readable, and
what was lost must be no more than the last flush interval (plus scheduling slack).

A second child appends and exits without finishing or closing anything: the store's exit
hook must flush its data and mark the run ``interrupted``.

Runs on SQLite and PostgreSQL like test_store.py (same environment variables).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import sqlalchemy as sa
from medtwin.hil.store import RunStatus, RunStore, Source
from sqlalchemy.pool import NullPool

FLUSH_INTERVAL_S = 0.2
CHUNK = 50  # samples per array append
DT_S = 0.01
BLOCKS_BEFORE_KILL = 8
# How much later than the flush interval a commit may come on a loaded 2-core machine
# before the test calls the durability promise broken.
SCHEDULING_SLACK_S = 2.0

# The child: appends forever and reports "<CLOCK_MONOTONIC time> <samples appended>"
# after every 10 appends (CLOCK_MONOTONIC is one clock for all processes of a host).
CHILD = r"""
import sys, time
import numpy as np
from medtwin.hil.store import RunStore

url, interval_s, chunk, dt_s = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
store = RunStore(url, flush_interval_s=interval_s)
writer = store.start_run(
    bench_name="kill-bench", bench_text="[devices.pump1]\n", scenario_name="kill",
    scenario_text="", software_version="test", clock="wall", twin_params={}, devices=[],
)
real = writer.add_channel("volume_ml", unit="mL", source="real", device="pump1")
twin = writer.add_channel("volume_ml", unit="mL", source="twin", device="pump1")
print("run", writer.run_id, flush=True)
i = 0
appends = 0
while True:
    t = np.arange(i, i + chunk, dtype=np.float64) * dt_s
    # Only correctly rounded IEEE operations, so the parent can recompute every value.
    writer.append(real, t, t * 3.0 - 1.0)
    writer.append(twin, float(t[0]), float(t[0]) * 2.0)
    writer.add_event(float(t[0]), "note", message=str(i))
    i += chunk
    appends += 1
    if appends % 10 == 0:
        print(time.monotonic(), i, flush=True)
    time.sleep(0.001)  # pace the producer, roughly 40 k samples/s
"""


def committed_blocks(engine: sa.Engine, run_id: int) -> int:
    with engine.connect() as conn:
        count = conn.execute(
            sa.text(
                "SELECT count(*) FROM sample_blocks b JOIN channels c ON c.id = b.channel_id "
                "WHERE c.run_id = :run"
            ),
            {"run": run_id},
        ).scalar()
    return int(count or 0)


@pytest.mark.slow
async def test_sigkill_mid_run_keeps_everything_flushed(db_url: str) -> None:
    RunStore(db_url).close()  # schema first, so the child and the observer agree on it
    observer = sa.create_engine(db_url, poolclass=NullPool)
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        db_url,
        str(FLUSH_INTERVAL_S),
        str(CHUNK),
        str(DT_S),
        stdout=asyncio.subprocess.PIPE,
    )
    assert child.stdout is not None
    progress: list[tuple[float, int]] = []

    async def read_progress() -> None:
        assert child.stdout is not None
        async for line in child.stdout:
            stamp, appended = line.split()
            progress.append((float(stamp), int(appended)))

    reader: asyncio.Task[None] | None = None
    try:
        async with asyncio.timeout(60):
            header = (await child.stdout.readline()).split()
            assert header[0] == b"run", header
            run_id = int(header[1])
            reader = asyncio.create_task(read_progress())
            # Polled through a second connection: a database offers no event to await.
            # The child also has to run for longer than the durability window, or the
            # check at the end would have nothing to check.
            while (  # noqa: ASYNC110
                committed_blocks(observer, run_id) < BLOCKS_BEFORE_KILL
                or not progress
                or progress[-1][0] - progress[0][0] < FLUSH_INTERVAL_S + SCHEDULING_SLACK_S + 1
            ):
                await asyncio.sleep(0.02)
            blocks_seen = committed_blocks(observer, run_id)
            killed_at = time.monotonic()
            os.kill(child.pid, signal.SIGKILL)
            assert await child.wait() == -signal.SIGKILL
            await reader
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
        if reader is not None and not reader.done():
            reader.cancel()
        observer.dispose()

    with RunStore(db_url) as store:
        run = store.load_run(run_id)
    assert run.info.status is RunStatus.INTERRUPTED
    assert run.info.ended_utc == run.info.heartbeat_utc
    assert run.events[-1].kind == "note"
    assert "is gone" in run.events[-1].message

    real = run.channel("volume_ml", source=Source.REAL, device="pump1")
    twin = run.channel("volume_ml", source=Source.TWIN, device="pump1")
    n = len(real)
    # Every committed sample is there and exact; appends are never torn.
    assert n > 0
    assert n % CHUNK == 0
    expected_t = np.arange(n, dtype=np.float64) * DT_S
    assert np.array_equal(real.t_s, expected_t)
    assert np.array_equal(real.values, expected_t * 3.0 - 1.0)
    # The scalar channel and the events were committed in the same transactions.
    assert len(twin) == n // CHUNK
    assert np.array_equal(twin.t_s, expected_t[::CHUNK])
    assert np.array_equal(twin.values, expected_t[::CHUNK] * 2.0)
    notes = [e for e in run.events if e.kind == "note"][:-1]
    assert [int(e.message) for e in notes] == list(range(0, n, CHUNK))
    assert run.info.sample_count == n + len(twin)
    assert committed_blocks_after(db_url, run_id) >= blocks_seen

    # Durability within the flush interval: whatever had been appended by
    # (kill - interval - slack) must have been committed.
    deadline = killed_at - FLUSH_INTERVAL_S - SCHEDULING_SLACK_S
    owed = max((appended for stamp, appended in progress if stamp <= deadline), default=0)
    assert owed > 0
    assert n >= owed, f"lost {owed - n} samples appended more than the interval before the kill"


def committed_blocks_after(db_url: str, run_id: int) -> int:
    engine = sa.create_engine(db_url, poolclass=NullPool)
    try:
        return committed_blocks(engine, run_id)
    finally:
        engine.dispose()


EXITING_CHILD = r"""
import sys
import numpy as np
from medtwin.hil.store import RunStore

store = RunStore(sys.argv[1], flush_interval_s=3600)  # only the exit hook can flush
writer = store.start_run(
    bench_name="b", bench_text="", scenario_name="exit", scenario_text="",
    software_version="test", clock="wall", twin_params={}, devices=[],
)
channel = writer.add_channel("v", unit="", source="real")
writer.append(channel, np.arange(100.0), np.arange(100.0) * 0.5)
print(writer.run_id, flush=True)
sys.exit(3)  # neither finish() nor close()
"""


def test_exit_without_finishing_flushes_and_interrupts(db_url: str) -> None:
    RunStore(db_url).close()
    child = subprocess.run(
        [sys.executable, "-c", EXITING_CHILD, db_url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert child.returncode == 3, child.stderr
    run_id = int(child.stdout)
    with RunStore(db_url) as store:
        run = store.load_run(run_id)
    assert run.info.status is RunStatus.INTERRUPTED
    assert np.array_equal(run.channels[0].values, np.arange(100.0) * 0.5)
    assert "process exited without finishing" in run.events[-1].message
