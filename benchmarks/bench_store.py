"""Run store: sample ingest and read-back, numpy blocks against the SQLModel ORM.

Baseline: the SQLModel ORM storing one row per sample
``(run_id, channel, t_s, value)``, ``session.add`` per row and one commit at the end. It is
measured on ``BASELINE_ROWS`` rows and its per-sample rate extrapolated (10 M rows would
take the better part of ten minutes); the extrapolation is stated in each result's note.

Ours, same process, same disk:

* **ingest**: ``RunStore`` / ``RunWriter`` on a fresh SQLite file (WAL), 10 channels ×
  1 M samples appended in blocks of 1 000 samples per call (what a runner hands over per
  batch of ticks, or a simulation per segment) with the flusher thread running, timed
  from the first append until ``finish()`` has committed the last block. Goal ≥ 100×.
* **read-back**: ``load_run`` of those 10 M samples into numpy arrays, against the ORM
  reading its rows back and building arrays from them. Goal ≥ 20× (a bare SQLite
  BLOB read measured 53× the ORM's row read when the store was designed).
* **live path**: one scalar sample per ``append`` call (10 channels × 20 k ticks), the
  way a runner logs each reading as it arrives, including ``finish()``. Goal ≥ 10× the ORM
  (≥ 10 k samples/s is what live logging of a bench needs).
* **PostgreSQL**: the ingest and read-back again on the server named by
  ``MEDTWIN_TEST_POSTGRES_URL`` (default the local test server, own schema, dropped
  afterwards), against the ORM on the same server; skipped with a note if unreachable.

    python benchmarks/bench_store.py [--quick]
"""

from __future__ import annotations

import gc
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import registry
from sqlalchemy.pool import NullPool
from sqlmodel import Field, Session, SQLModel, col, select

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from _common import BenchResult, ratio_goal  # noqa: E402
from medtwin.hil.store import RunStore, RunWriter  # noqa: E402

CHANNELS = 10
SAMPLES_PER_CHANNEL = 1_000_000
APPEND_BLOCK = 1_000
LIVE_TICKS = 20_000
BASELINE_ROWS = 20_000
REPEAT = 3

POSTGRES_URL = os.environ.get(
    "MEDTWIN_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


class _BaselineModel(SQLModel, registry=registry()):
    """Own registry: the baseline table must not join any other SQLModel metadata."""


class SampleRow(_BaselineModel, table=True):
    """The naive layout: one ORM row per sample."""

    __tablename__ = "bench_sample_rows"

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(index=True)
    channel: str
    t_s: float
    value: float


def _best(fn: Callable[[], float]) -> float:
    """Best of REPEAT runs of ``fn``, which times its own critical part and returns it."""
    best = float("inf")
    for _ in range(REPEAT):
        gc.collect()
        best = min(best, fn())
    return best


def _data(samples: int) -> tuple[np.ndarray, list[np.ndarray]]:
    # Seeded so every run stores the same bytes; the values themselves do not matter.
    rng = np.random.default_rng(6)
    t_s = np.arange(samples, dtype=np.float64) * 0.01
    return t_s, [rng.standard_normal(samples) for _ in range(CHANNELS)]


def _start(store: RunStore) -> tuple[RunWriter, list[int]]:
    writer = store.start_run(
        bench_name="bench",
        bench_text="",
        scenario_name="bench_store",
        scenario_text="",
        software_version="bench",
        clock="virtual",
        twin_params={},
        devices=[],
    )
    channels = [writer.add_channel(f"ch{i}", unit="", source="real") for i in range(CHANNELS)]
    return writer, channels


def _ingest(url: str, samples: int) -> tuple[float, int, RunStore]:
    """Seconds to append and commit CHANNELS × samples; returns the open store too."""
    t_s, values = _data(samples)
    store = RunStore(url)
    writer, channels = _start(store)
    append = writer.append
    start = time.perf_counter()
    for first in range(0, samples, APPEND_BLOCK):
        stop = first + APPEND_BLOCK
        for channel, v in zip(channels, values, strict=True):
            append(channel, t_s[first:stop], v[first:stop])
    writer.finish("completed")
    elapsed = time.perf_counter() - start
    return elapsed, writer.run_id, store


def _live(url: str, ticks: int) -> float:
    store = RunStore(url)
    try:
        writer, channels = _start(store)
        append = writer.append
        start = time.perf_counter()
        for tick in range(ticks):
            t = tick * 0.1
            for channel in channels:
                append(channel, t, 1.5)
        writer.finish("completed")
        return time.perf_counter() - start
    finally:
        store.close()


def _orm_baseline(url: str, rows: int) -> tuple[float, float]:
    """(write s, read s) of ``rows`` samples through the ORM, one row each."""
    engine = sa.create_engine(url)
    try:
        _BaselineModel.metadata.drop_all(engine)
        _BaselineModel.metadata.create_all(engine)
        t_s, values = _data(rows // CHANNELS + 1)
        per_channel = rows // CHANNELS

        def write() -> float:
            with Session(engine) as session:
                session.execute(sa.delete(SampleRow))
                session.commit()
            start = time.perf_counter()
            with Session(engine) as session:
                for c in range(CHANNELS):
                    name = f"ch{c}"
                    for i in range(per_channel):
                        session.add(
                            SampleRow(
                                run_id=1, channel=name, t_s=float(t_s[i]), value=float(values[c][i])
                            )
                        )
                session.commit()
            return time.perf_counter() - start

        def read() -> float:
            start = time.perf_counter()
            with Session(engine) as session:
                result = session.exec(
                    select(SampleRow).where(SampleRow.run_id == 1).order_by(col(SampleRow.id))
                ).all()
                by_channel: dict[str, tuple[list[float], list[float]]] = {}
                for row in result:
                    t_list, v_list = by_channel.setdefault(row.channel, ([], []))
                    t_list.append(row.t_s)
                    v_list.append(row.value)
                arrays = {k: (np.array(t), np.array(v)) for k, (t, v) in by_channel.items()}
            elapsed = time.perf_counter() - start
            assert sum(a[0].size for a in arrays.values()) == per_channel * CHANNELS
            return elapsed

        write_s = _best(write)
        read_s = _best(read)
        _BaselineModel.metadata.drop_all(engine)
        return write_s, read_s
    finally:
        engine.dispose()


def _read(store: RunStore, run_id: int, expected: int) -> float:
    start = time.perf_counter()
    run = store.load_run(run_id)
    elapsed = time.perf_counter() - start
    assert sum(len(ch) for ch in run.channels) == expected
    return elapsed


@contextmanager
def _postgres_schema() -> Iterator[str | None]:
    admin = sa.create_engine(POSTGRES_URL, poolclass=NullPool)
    schema = f"medtwin_bench_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    try:
        with admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    except sa.exc.SQLAlchemyError:
        admin.dispose()
        yield None
        return
    url = sa.make_url(POSTGRES_URL)
    options = f"{url.query.get('options', '')} -csearch_path={schema}".strip()
    try:
        yield url.update_query_dict({"options": options}).render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def _ratio_result(
    name: str, ours_rate: float, base_rate: float, goal: float, note: str
) -> BenchResult:
    return ratio_goal(
        name,
        ours_rate,
        "samples/s",
        baseline=base_rate,
        ratio=ours_rate / base_rate,
        minimum=goal,
        note=note,
    )


def _backend_results(
    label: str, make_url: Callable[[str], str], samples: int, rows: int
) -> list[BenchResult]:
    total = CHANNELS * samples
    base_write_s, base_read_s = _orm_baseline(make_url("baseline"), rows)
    base_write_rate = rows / base_write_s
    base_read_rate = rows / base_read_s

    ingest_times: list[float] = []
    read_times: list[float] = []
    for attempt in range(REPEAT):
        gc.collect()
        elapsed, run_id, store = _ingest(make_url(f"ingest{attempt}"), samples)
        try:
            ingest_times.append(elapsed)
            gc.collect()
            read_times.append(_read(store, run_id, total))
        finally:
            store.close()
    extrapolated = (
        f"ORM measured on {rows:,} rows and extrapolated per sample "
        f"({total:,} rows would take ~{total / base_write_rate:.0f} s)"
    )
    results = [
        _ratio_result(
            f"store ingest {total / 1e6:g}M samples, {label}",
            total / min(ingest_times),
            base_write_rate,
            100,
            f"{CHANNELS} ch × {samples:,} in {APPEND_BLOCK}-sample appends, incl. final "
            f"flush: {min(ingest_times):.2f} s; {extrapolated}",
        ),
        _ratio_result(
            f"store read-back into numpy, {label}",
            total / min(read_times),
            base_read_rate,
            20,
            f"load_run of {total:,} samples: {min(read_times):.3f} s; ORM rows → arrays "
            f"measured on {rows:,} rows, extrapolated",
        ),
    ]
    if label == "SQLite":
        ticks = LIVE_TICKS if samples == SAMPLES_PER_CHANNEL else LIVE_TICKS // 10
        live_s = _best(lambda: _live(make_url(f"live{uuid.uuid4().hex[:6]}"), ticks))
        results.append(
            _ratio_result(
                f"store live path (1 sample per append), {label}",
                CHANNELS * ticks / live_s,
                base_write_rate,
                10,
                f"{CHANNELS * ticks:,} scalar appends incl. finish: {live_s:.3f} s",
            )
        )
    return results


def run(quick: bool = False) -> list[BenchResult]:
    samples = SAMPLES_PER_CHANNEL // 10 if quick else SAMPLES_PER_CHANNEL
    rows = BASELINE_ROWS // 4 if quick else BASELINE_ROWS
    results: list[BenchResult] = []
    with tempfile.TemporaryDirectory(prefix="medtwin-bench-store-") as tmp:

        def sqlite_url(name: str) -> str:
            return f"sqlite:///{Path(tmp) / f'{name}.db'}"

        results += _backend_results("SQLite", sqlite_url, samples, rows)

    with _postgres_schema() as pg_url:
        if pg_url is None:
            results.append(
                BenchResult(
                    name="store ingest, PostgreSQL",
                    value=0.0,
                    unit="samples/s",
                    baseline=None,
                    ratio=None,
                    goal="server reachable",
                    passed=True,
                    note=f"skipped: {sa.make_url(POSTGRES_URL)!r} unreachable",
                )
            )
        else:
            results += _backend_results("PostgreSQL", lambda _name: pg_url, samples, rows)
    return results


if __name__ == "__main__":
    import json

    for result in run(quick="--quick" in sys.argv):
        print(json.dumps(result.as_json()))
