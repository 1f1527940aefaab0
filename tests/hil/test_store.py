"""The run store (hil.store) against SQLite and PostgreSQL.

Every test taking ``db_url`` runs twice: on a SQLite file in ``tmp_path`` and on the
PostgreSQL server named by ``MEDTWIN_TEST_POSTGRES_URL`` (default
``postgresql+psycopg://postgres@127.0.0.1:5432/test``), each test in a schema of its own
that is dropped afterwards. When the default server does not answer the PostgreSQL half is
skipped; a server named by the variable must answer (tests/conftest.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import math
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from medtwin.drivers.clock import VirtualClock
from medtwin.hil.store import (
    Outcome,
    RunNotFound,
    RunStatus,
    RunStore,
    RunWriter,
    Source,
    StorageError,
)
from medtwin.hil.store.codec import decode_block, encode_block, from_json, to_json
from medtwin.hil.store.liveness import current_process, writer_is_gone
from medtwin.hil.store.schema import SQLITE_APPLICATION_ID, BenchRow, RunRow
from sqlalchemy.pool import NullPool
from sqlmodel import Session

# The back ends (SQLite and a PostgreSQL schema per test) come from tests/hil/conftest.py.


# -- backends --------------------------------------------------------------------------


@pytest.fixture
def stores(db_url: str) -> Iterator[Callable[..., RunStore]]:
    """Open stores on ``db_url`` (or another URL); all are closed at teardown."""
    opened: list[RunStore] = []

    def open_store(url: str | None = None, **options: Any) -> RunStore:
        store = RunStore(url or db_url, **options)
        opened.append(store)
        return store

    yield open_store
    for store in reversed(opened):
        store.close()


@pytest.fixture
def raw_engine(db_url: str) -> Iterator[sa.Engine]:
    """A plain second connection to the same database, to look at what is committed."""
    engine = sa.create_engine(db_url, poolclass=NullPool)
    yield engine
    engine.dispose()


def start(store: RunStore, **overrides: Any) -> RunWriter:
    arguments: dict[str, Any] = {
        "bench_name": "bench-a",
        "bench_text": '[devices.pump1]\nprotocol = "nesp"\n',
        "scenario_name": "trumpet",
        "scenario_text": "[[steps]]\nrate_ml_h = 5.0\n",
        "software_version": "0.1.0",
        "clock": "wall",
        "twin_params": {"inner_diameter_mm": 26.6},
        "devices": [
            {
                "name": "pump1",
                "kind": "syringe_pump",
                "protocol": "nesp",
                "port": "/dev/ttyUSB0",
                "identity": {"model": "NE-1000", "serial": "A123", "firmware": "3.928"},
            }
        ],
    }
    arguments.update(overrides)
    return store.start_run(**arguments)


def bits(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array, dtype=np.float64).view(np.uint64)


def special_floats() -> np.ndarray:
    """Values a text format or a careless conversion would not keep bit for bit."""
    payload_nan = np.array([0x7FF8_0000_0000_BEEF], dtype=np.uint64).view(np.float64)[0]
    return np.array(
        [
            0.0,
            -0.0,
            np.inf,
            -np.inf,
            np.nan,
            payload_nan,
            5e-324,  # smallest subnormal
            2.2250738585072014e-308,
            1.7976931348623157e308,
            0.1,
            1 / 3,
        ]
    )


async def poll(condition: Callable[[], bool], *, timeout_s: float = 20.0) -> None:
    """Await ``condition()`` becoming true (polled: a database has no event to await)."""
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110 - a database offers no event to await
            await asyncio.sleep(0.02)


# -- opening ---------------------------------------------------------------------------


def test_new_store_creates_schema_and_reopens(stores: Callable[..., RunStore], db_url: str) -> None:
    store = stores()
    assert store.list_runs() == []
    assert store.dialect in ("sqlite", "postgresql")
    store.close()
    with pytest.raises(StorageError, match="closed"):
        store.list_runs()
    again = stores(create=False)
    assert again.list_runs() == []


def test_sqlite_store_is_wal_and_marked_as_medtwin(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    with RunStore(f"sqlite:///{path}") as store:
        writer = start(store)
        writer.finish("completed")
        conn = sqlite3.connect(path)
        try:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert conn.execute("PRAGMA application_id").fetchone()[0] == SQLITE_APPLICATION_ID
            meta = dict(conn.execute("SELECT key, value FROM medtwin_meta").fetchall())
            assert meta["schema_version"] == "1"
        finally:
            conn.close()
        # The store's own connections enforce foreign keys (SQLite's default is off).
        with store._backend.engine.connect() as own:
            assert own.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert own.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL


def test_in_memory_sqlite_store_works_across_threads() -> None:
    with RunStore("sqlite://", flush_interval_s=0.05) as store:
        writer = start(store)
        channel = writer.add_channel("v", unit="mL", source="real")
        writer.append(channel, np.arange(10.0), np.arange(10.0) * 2)
        writer.finish("completed")
        run = store.load_run(writer.run_id)
    assert np.array_equal(run.channels[0].values, np.arange(10.0) * 2)


def test_relative_sqlite_file_stays_put_when_the_directory_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    monkeypatch.chdir(first)
    with RunStore("sqlite:///runs.db", flush_interval_s=0.05) as store:
        assert store.url == "sqlite:///runs.db"
        assert store.sqlite_path == first / "runs.db"
        monkeypatch.chdir(second)
        writer = start(store)
        writer.finish("completed")
    assert list(second.iterdir()) == []
    with RunStore(f"sqlite:///{first / 'runs.db'}") as again:
        assert [info.id for info in again.list_runs()] == [writer.run_id]


def test_invalid_urls_raise_storage_error_naming_them(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match=r"invalid database URL 'runs\.db'.*sqlite:///runs\.db"):
        RunStore("runs.db")
    with pytest.raises(StorageError, match="invalid database URL"):
        RunStore("")
    with pytest.raises(StorageError, match=r"no driver for 'nosuchdb'"):
        RunStore("nosuchdb://host/db")
    with pytest.raises(StorageError, match=r"cannot open sqlite:///.*missing-dir.*directory"):
        RunStore(f"sqlite:///{tmp_path / 'missing-dir' / 'x.db'}")
    with pytest.raises(StorageError, match="sqlite_synchronous"):
        RunStore(f"sqlite:///{tmp_path / 'y.db'}", sqlite_synchronous="SOMETIMES")


def test_unreachable_server_hides_the_password() -> None:
    url = "postgresql+psycopg://medtwin:s3cret-pw@127.0.0.1:1/bench"
    with pytest.raises(StorageError) as caught:
        RunStore(url, connect_timeout_s=2)
    message = str(caught.value)
    assert "s3cret-pw" not in message
    assert "postgresql+psycopg://medtwin:***@127.0.0.1:1/bench" in message
    assert "is the server running" in message


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_foreign_sqlite_file_is_refused_and_left_untouched(tmp_path: Path) -> None:
    other = tmp_path / "inventory.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE parts (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO parts (name) VALUES ('syringe')")
    conn.commit()
    conn.close()
    before = _digest(other)
    with pytest.raises(StorageError, match=r"not a medtwin database.*parts"):
        RunStore(f"sqlite:///{other}")
    assert _digest(other) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inventory.db"]
    conn = sqlite3.connect(other)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    finally:
        conn.close()


def test_non_database_file_is_refused_and_left_untouched(tmp_path: Path) -> None:
    junk = tmp_path / "notes.db"
    junk.write_bytes(b"These are my notes, not a database.\n" * 100)
    before = _digest(junk)
    with pytest.raises(StorageError, match=r"not a medtwin database.*not a SQLite file"):
        RunStore(f"sqlite:///{junk}")
    assert _digest(junk) == before


def test_create_false_never_creates_a_file(tmp_path: Path) -> None:
    target = tmp_path / "typo.db"
    with pytest.raises(StorageError, match=r"no run store at .*typo\.db"):
        RunStore(f"sqlite:///{target}", create=False)
    assert not target.exists()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    RunStore(f"sqlite:///{path}").close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE medtwin_meta SET value = '99' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(StorageError, match=r"newer medtwin \(schema 99"):
        RunStore(f"sqlite:///{path}")


@pytest.mark.postgres
def test_postgres_schema_with_clashing_tables_is_refused(
    postgres_admin: sa.Engine, postgres_schema: tuple[str, str]
) -> None:
    schema, url = postgres_schema
    with postgres_admin.begin() as conn:
        conn.execute(sa.text(f'CREATE TABLE "{schema}".runs (id integer)'))
    with pytest.raises(StorageError, match=r"not a medtwin database.*runs"):
        RunStore(url)
    with pytest.raises(StorageError, match="no medtwin_meta"):
        RunStore(url, create=False)
    with postgres_admin.connect() as conn:
        tables = conn.execute(
            sa.text("SELECT table_name FROM information_schema.tables WHERE table_schema=:s"),
            {"s": schema},
        ).scalars()
        assert sorted(tables) == ["runs"]


# -- samples ---------------------------------------------------------------------------


def test_samples_round_trip_bit_exact(stores: Callable[..., RunStore]) -> None:
    # Fixed seed: a failure must reproduce; the values are arbitrary.
    rng = np.random.default_rng(20240611)
    store = stores(max_block_samples=1000, flush_interval_s=3600)
    writer = start(store)
    real = writer.add_channel("pressure_mmhg", unit="mmHg", source="real", device="pump1")
    twin = writer.add_channel("pressure_mmhg", unit="mmHg", source="twin", device="pump1")
    expected: dict[int, tuple[list[np.ndarray], list[np.ndarray]]] = {
        real: ([], []),
        twin: ([], []),
    }

    def add(channel: int, t_s: Any, values: Any) -> None:
        writer.append(channel, t_s, values)
        expected[channel][0].append(np.atleast_1d(np.asarray(t_s, dtype=np.float64)))
        expected[channel][1].append(np.atleast_1d(np.asarray(values, dtype=np.float64)))

    specials = special_floats()
    add(real, np.arange(specials.size, dtype=np.float64), specials)
    for step in range(60):
        n = int(rng.integers(0, 700))
        t = rng.uniform(-1e6, 1e6, n)
        v = rng.standard_normal(n) * 10.0 ** rng.integers(-300, 300, n)
        add(real if step % 2 else twin, t, v)
        for value in rng.standard_normal(int(rng.integers(0, 30))):
            add(twin, float(step), float(value))  # the scalar (live) path
        add(twin, step, 3)  # ints are stored as floats
        add(real, float(step), specials[5])  # a NaN payload through the scalar path
        if step % 7 == 0:
            writer.flush()
    writer.finish("completed")

    run = store.load_run(writer.run_id)
    assert [(ch.id, ch.source) for ch in run.channels] == [(real, Source.REAL), (twin, Source.TWIN)]
    for ch in run.channels:
        t_parts, v_parts = expected[ch.id]
        assert ch.t_s.dtype == np.float64
        assert ch.values.dtype == np.float64
        assert np.array_equal(bits(ch.t_s), bits(np.concatenate(t_parts)))
        assert np.array_equal(bits(ch.values), bits(np.concatenate(v_parts)))
        ch.values[0] = 1.0  # arrays handed out are writable, owned copies
    total = sum(sum(p.size for p in parts[0]) for parts in expected.values())
    assert run.info.sample_count == total
    assert writer.samples_written == total


def test_blocks_are_little_endian_float64_with_dtype_recorded(
    stores: Callable[..., RunStore], raw_engine: sa.Engine
) -> None:
    store = stores(max_block_samples=4, flush_interval_s=3600)
    writer = start(store)
    channel = writer.add_channel("mass_g", unit="g", source="real", device="balance")
    t = np.arange(10, dtype=np.float64) * 0.5
    v = np.linspace(-1.0, 1.0, 10)
    writer.append(channel, t, v)
    writer.flush()
    with raw_engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT seq, n, t_first_s, t_last_s, dtype, t_s, value FROM sample_blocks "
                "WHERE channel_id = :c ORDER BY seq"
            ),
            {"c": channel},
        ).all()
    assert [(r.seq, r.n) for r in rows] == [(0, 4), (1, 4), (2, 2)]
    assert [(r.t_first_s, r.t_last_s) for r in rows] == [(0.0, 1.5), (2.0, 3.5), (4.0, 4.5)]
    assert {r.dtype for r in rows} == {"<f8"}
    assert bytes(rows[0].t_s) == t[:4].astype("<f8").tobytes()
    assert np.array_equal(
        np.concatenate([np.frombuffer(bytes(r.value), dtype="<f8") for r in rows]), v
    )
    writer.finish("completed")


@pytest.mark.parametrize(
    ("t_s", "values", "message"),
    [
        (np.arange(3.0), np.arange(4.0), "t_s has 3 samples but values has 4"),
        (np.zeros((2, 2)), np.zeros((2, 2)), r"1-D array, got shape \(2, 2\)"),
        (np.arange(2.0), np.array([1 + 1j, 2]), "complex"),
        (np.arange(2.0), ["a", "b"], "expected numbers"),
        (np.array([0.0, np.nan]), np.zeros(2), r"t_s\[1\]=.*nan.* is not finite"),
        (math.inf, 1.0, "is not finite"),
        (None, 1.0, "expected numbers"),
    ],
)
def test_append_rejects_bad_input_and_keeps_earlier_data(
    stores: Callable[..., RunStore], t_s: Any, values: Any, message: str
) -> None:
    store = stores(flush_interval_s=3600)
    writer = start(store)
    channel = writer.add_channel("v", unit="", source="real")
    writer.append(channel, np.arange(5.0), np.arange(5.0))
    with pytest.raises(StorageError, match=message):
        writer.append(channel, t_s, values)
    assert writer.pending_samples == 5
    writer.finish("completed")
    run = store.load_run(writer.run_id)
    assert np.array_equal(run.channels[0].values, np.arange(5.0))


def test_append_to_unknown_channel_or_finished_run_fails(stores: Callable[..., RunStore]) -> None:
    store = stores()
    writer = start(store)
    channel = writer.add_channel("v", unit="mL", source="real", device="pump1")
    with pytest.raises(StorageError, match=r"no channel with id 999.*real channel 'v' of pump1"):
        writer.append(999, 0.0, 1.0)
    with pytest.raises(StorageError, match="already has real channel 'v' of pump1"):
        writer.add_channel("v", unit="mL", source="real", device="pump1")
    with pytest.raises(StorageError, match="source 'both'"):
        writer.add_channel("w", unit="mL", source="both")
    writer.finish("completed")
    with pytest.raises(StorageError, match=f"run {writer.run_id} is completed"):
        writer.append(channel, 1.0, 1.0)
    with pytest.raises(StorageError, match="is completed"):
        writer.add_event(1.0, "note")
    with pytest.raises(StorageError, match="already completed"):
        writer.finish("aborted")


async def test_appended_data_is_committed_without_further_calls(
    stores: Callable[..., RunStore],
) -> None:
    store = stores(flush_interval_s=0.2)
    observer = stores()
    writer = start(store)
    channel = writer.add_channel("rate_ml_h", unit="mL/h", source="real", device="pump1")
    heartbeat_0 = observer.run_info(writer.run_id).heartbeat_utc
    writer.append(channel, 0.5, 5.0)
    writer.add_event(0.5, "command", device="pump1", message="RAT 5 MH")
    # Nothing else is called on the writer: its flusher alone must commit the data.
    await poll(lambda: observer.run_info(writer.run_id).sample_count == 1)
    run = observer.load_run(writer.run_id)
    assert [e.message for e in run.events] == ["RAT 5 MH"]
    assert run.info.heartbeat_utc > heartbeat_0
    assert run.info.status is RunStatus.RUNNING
    # An idle run keeps beating, so it is not taken for a dead one.
    beat = run.info.heartbeat_utc
    await poll(lambda: observer.run_info(writer.run_id).heartbeat_utc > beat)
    writer.finish("completed")


def test_threads_append_concurrently_with_flushes(stores: Callable[..., RunStore]) -> None:
    store = stores(max_block_samples=257, flush_interval_s=0.05)
    writer = start(store)
    channels = [writer.add_channel(f"ch{i}", unit="", source="twin") for i in range(4)]
    chunk = 100
    rounds = 200

    def produce(channel: int, index: int) -> None:
        for r in range(rounds):
            t = np.arange(r * chunk, (r + 1) * chunk, dtype=np.float64)
            writer.append(channel, t, t * (index + 1))
            writer.append(channel, float(t[-1]) + 0.5, -1.0)

    def flush_often(stop: threading.Event) -> None:
        while not stop.is_set():
            writer.flush()

    stop = threading.Event()
    flusher = threading.Thread(target=flush_often, args=(stop,))
    producers = [threading.Thread(target=produce, args=(c, i)) for i, c in enumerate(channels)]
    flusher.start()
    for thread in producers:
        thread.start()
    for thread in producers:
        thread.join()
    stop.set()
    flusher.join()
    writer.finish("completed")

    run = store.load_run(writer.run_id)
    for i, ch in enumerate(run.channels):
        expected_t = np.concatenate(
            [
                np.append(
                    np.arange(r * chunk, (r + 1) * chunk, dtype=np.float64), (r + 1) * chunk - 0.5
                )
                for r in range(rounds)
            ]
        )
        assert np.array_equal(ch.t_s, expected_t)
        normal = ch.values != -1.0
        assert np.array_equal(ch.values[normal], ch.t_s[normal] * (i + 1))
        assert np.count_nonzero(~normal) == rounds


@contextmanager
def hold_write_lock(db_url: str) -> Iterator[None]:
    """Another connection holds the lock a flush needs until the block ends."""
    url = sa.make_url(db_url)
    if url.get_backend_name() == "sqlite":
        locker = sqlite3.connect(url.database or "", isolation_level=None)
        try:
            locker.execute("BEGIN EXCLUSIVE")
            yield
            locker.execute("ROLLBACK")
        finally:
            locker.close()
        return
    engine = sa.create_engine(db_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            transaction = conn.begin()
            conn.execute(sa.text("LOCK TABLE sample_blocks IN ACCESS EXCLUSIVE MODE"))
            yield
            transaction.rollback()
    finally:
        engine.dispose()


def test_failed_flush_keeps_data_and_retries_without_duplicates(
    stores: Callable[..., RunStore], db_url: str
) -> None:
    store = stores(lock_timeout_s=0.05, flush_interval_s=3600)
    writer = start(store)
    channel = writer.add_channel("v", unit="mL", source="real")
    writer.append(channel, np.arange(3.0), np.arange(3.0))
    writer.flush()
    writer.append(channel, np.arange(3.0, 6.0), np.arange(3.0, 6.0))
    writer.add_event(3.0, "note", message="while locked")
    with hold_write_lock(db_url):
        with pytest.raises(StorageError, match=f"writing run {writer.run_id} in .* failed") as err:
            writer.flush()
        failure = writer.last_error
        assert failure is err.value
        assert writer.pending_samples == 3
        writer.append(channel, 6.0, 6.0)
    writer.flush()
    assert writer.last_error is None
    assert writer.pending_samples == 0
    writer.finish("completed")
    run = store.load_run(writer.run_id)
    assert np.array_equal(run.channels[0].values, np.arange(7.0))
    assert [e.message for e in run.events] == ["while locked"]


class _AckLost:
    """An engine whose next ``begin()`` block commits and then fails as a dropped
    connection would: the server has the rows, the client gets an error."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine
        self.armed = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    @contextmanager
    def begin(self) -> Iterator[sa.Connection]:
        with self._engine.begin() as conn:
            yield conn
        if self.armed:
            self.armed = False
            raise sa.exc.OperationalError("COMMIT", {}, ConnectionResetError("server closed"))


@pytest.mark.parametrize("final", [False, True], ids=["flush", "finish"])
def test_a_flush_committed_but_reported_failed_is_not_written_twice(
    stores: Callable[..., RunStore], final: bool
) -> None:
    store = stores(flush_interval_s=3600)
    writer = start(store)
    channel = writer.add_channel("v", unit="mL", source="real")
    writer.append(channel, np.arange(3.0), np.arange(3.0))
    writer.add_event(1.0, "note", message="first")
    real_backend = writer._backend
    writer._backend = dataclasses.replace(real_backend, engine=_AckLost(real_backend.engine))  # type: ignore[arg-type]
    write: Callable[[], None] = (lambda: writer.finish("completed")) if final else writer.flush
    with pytest.raises(StorageError, match="server closed"):
        write()
    writer._backend = real_backend
    # Written meanwhile: must land once, after what the lost acknowledgement hid.
    if not final:
        writer.append(channel, 3.0, 3.0)
        writer.add_event(3.0, "note", message="second")
        writer.flush()
    writer.finish("completed")
    assert writer.last_error is None
    run = store.load_run(writer.run_id)
    assert run.info.status == "completed"
    expected = np.arange(3.0 if final else 4.0)
    assert np.array_equal(run.channels[0].values, expected)
    assert writer.samples_written == len(expected)
    assert [e.message for e in run.events if e.kind == "note"] == (
        ["first"] if final else ["first", "second"]
    )


# -- run metadata, events, life cycle ------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LineParams:
    compliance_ul_per_mmhg: float
    resistance_mmhg_s_per_ml: float


def test_run_metadata_round_trip(stores: Callable[..., RunStore]) -> None:
    store = stores()
    clock = VirtualClock(started_utc=datetime(2024, 5, 1, 8, 30, tzinfo=UTC))
    twin_params = {
        "line": LineParams(1.8, 0.25),
        "gains": np.array([1.0, 2.5]),
        "seed": np.int64(7),
        "stderr": np.float64("inf"),
        "missing": float("nan"),
    }
    writer = start(
        store,
        clock=clock,
        twin_params=twin_params,
        devices=[
            {
                "name": "pump1",
                "kind": "syringe_pump",
                "protocol": "nesp",
                "port": "/dev/pts/3",
                "model": "NE-1000",
                "serial": "A1",
                "firmware": "3.928",
            },
            {"name": "balance", "kind": "balance", "protocol": "sbi", "port": "socket://h:4001"},
        ],
    )
    writer.finish("degraded", summary={"lost_samples": 3, "worst_error_pct": float("-inf")})
    run = store.load_run(writer.run_id)
    info = run.info
    assert info.status is RunStatus.DEGRADED
    assert info.clock_kind == "virtual"
    assert info.started_utc == datetime(2024, 5, 1, 8, 30, tzinfo=UTC)
    assert info.ended_utc is not None
    assert info.ended_utc.tzinfo is not None
    assert info.bench_sha256 == hashlib.sha256(run.bench_text.encode()).hexdigest()
    assert info.scenario_sha256 == hashlib.sha256(run.scenario_text.encode()).hexdigest()
    assert info.pid == os.getpid()
    assert info.hostname == socket.gethostname()
    assert run.twin_params["line"] == {
        "compliance_ul_per_mmhg": 1.8,
        "resistance_mmhg_s_per_ml": 0.25,
    }
    assert run.twin_params["gains"] == [1.0, 2.5]
    assert run.twin_params["seed"] == 7
    assert run.twin_params["stderr"] == math.inf
    assert math.isnan(run.twin_params["missing"])
    assert run.summary == {"lost_samples": 3, "worst_error_pct": -math.inf}
    assert [(d.name, d.identity) for d in run.devices] == [
        ("pump1", {"model": "NE-1000", "serial": "A1", "firmware": "3.928"}),
        ("balance", {}),
    ]
    assert run.devices[1].port == "socket://h:4001"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"clock": "sundial"}, "clock 'sundial'"),
        ({"twin_params": {"f": object()}}, r"twin_params\.f: cannot store a object"),
        ({"twin_params": {1: 2}}, "keys must be strings"),
        ({"devices": [{"name": "p"}, {"name": "p"}]}, "duplicate name"),
        ({"devices": [{"name": "p", "baud": 9600}]}, r"devices\[0\]: unknown key.*'baud'"),
        ({"devices": [{"kind": "pump"}]}, r"devices\[0\]\.name"),
        ({"bench_name": ""}, "must not be empty"),
        ({"software_version": "x" * 65}, "software_version: longer than 64"),
    ],
)
def test_invalid_start_run_writes_nothing(
    stores: Callable[..., RunStore], overrides: dict[str, Any], message: str
) -> None:
    store = stores()
    with pytest.raises(StorageError, match=message):
        start(store, **overrides)
    assert store.list_runs() == []


def test_runs_share_identical_benches(
    stores: Callable[..., RunStore], raw_engine: sa.Engine
) -> None:
    store = stores()
    for text in ("a = 1\n", "a = 1\n", "a = 2\n"):
        start(store, bench_text=text).finish("completed")
    with raw_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM benches")).scalar() == 2
    infos = store.list_runs()
    assert infos[0].bench_sha256 == infos[1].bench_sha256 != infos[2].bench_sha256


def test_events_round_trip_in_order(stores: Callable[..., RunStore]) -> None:
    store = stores()
    writer = start(store)
    writer.add_event(0.0, "command", device="pump1", message="RAT 5 MH", data={"rate_ml_h": 5.0})
    writer.add_event(
        12.5,
        "drift",
        device="pump1",
        channel="pressure_mmhg",
        data={"residual": np.float32(0.5), "cusum": np.array([1, 2])},
    )
    writer.add_event(13.0, "alarm", device="pump1", message="occlusion", data=[math.nan, None])
    writer.add_event(13.0, "measurement", data="ep_max_2min")
    with pytest.raises(StorageError, match="kind"):
        writer.add_event(1.0, "")
    with pytest.raises(StorageError, match="not finite"):
        writer.add_event(math.nan, "note")
    with pytest.raises(StorageError, match=r"data\.x: cannot store a set"):
        writer.add_event(1.0, "note", data={"x": {1, 2}})
    writer.finish("completed")
    events = store.load_run(writer.run_id).events
    assert [(e.t_s, e.kind) for e in events] == [
        (0.0, "command"),
        (12.5, "drift"),
        (13.0, "alarm"),
        (13.0, "measurement"),
    ]
    assert events[0].data == {"rate_ml_h": 5.0}
    assert events[0].device == "pump1"
    assert events[1].channel == "pressure_mmhg"
    assert events[1].data == {"residual": 0.5, "cusum": [1, 2]}
    assert math.isnan(events[2].data[0])
    assert events[2].data[1] is None
    assert events[3].data == "ep_max_2min"
    assert events[3].device is None


def test_finish_validates_and_stops_the_flusher(stores: Callable[..., RunStore]) -> None:
    store = stores()
    writer = start(store)
    name = f"medtwin-store-flush-run{writer.run_id}"
    assert any(t.name == name and t.daemon for t in threading.enumerate())
    for bad in ("running", "done"):
        with pytest.raises(StorageError, match=f"finish status '{bad}'"):
            writer.finish(bad)
    with pytest.raises(StorageError, match="summary"):
        writer.finish("completed", summary={"x": object()})
    assert writer.status is RunStatus.RUNNING
    writer.finish(RunStatus.ABORTED, summary={"reason": "operator"})
    assert not any(t.name == name for t in threading.enumerate())
    info = store.run_info(writer.run_id)
    assert info.status is RunStatus.ABORTED


def test_writer_context_manager(stores: Callable[..., RunStore]) -> None:
    store = stores()
    with start(store) as writer:
        writer.add_channel("v", unit="", source="real")
    assert store.run_info(writer.run_id).status is RunStatus.COMPLETED
    with pytest.raises(ZeroDivisionError), start(store) as failing:
        raise ZeroDivisionError("oops")
    run = store.load_run(failing.run_id)
    assert run.info.status is RunStatus.ABORTED
    assert run.events[-1].kind == "note"
    assert "ZeroDivisionError: oops" in run.events[-1].message


def test_closing_the_store_flushes_and_interrupts_open_runs(db_url: str) -> None:
    store = RunStore(db_url, flush_interval_s=3600)
    writer = start(store)
    channel = writer.add_channel("v", unit="", source="real")
    writer.append(channel, np.arange(4.0), np.ones(4))
    store.close()
    assert writer.status is RunStatus.INTERRUPTED
    with RunStore(db_url) as again:
        run = again.load_run(writer.run_id)
    assert run.info.status is RunStatus.INTERRUPTED
    assert run.info.sample_count == 4
    assert "store was closed" in run.events[-1].message


def test_list_runs_counts_and_unknown_runs(stores: Callable[..., RunStore]) -> None:
    store = stores()
    first = start(store, scenario_name="one")
    a = first.add_channel("a", unit="", source="real")
    first.add_channel("b", unit="", source="twin")
    first.append(a, np.arange(100.0), np.zeros(100))
    first.finish("completed")
    second = start(store, scenario_name="two")
    infos = store.list_runs()
    assert [(i.id, i.scenario_name, i.status, i.channel_count, i.sample_count) for i in infos] == [
        (first.run_id, "one", RunStatus.COMPLETED, 2, 100),
        (second.run_id, "two", RunStatus.RUNNING, 0, 0),
    ]
    assert infos[0].duration_s >= 0.0
    assert infos[0].as_json()["status"] == "completed"
    second.finish("completed")
    missing = second.run_id + 100
    for call in (
        lambda: store.load_run(missing),
        lambda: store.run_info(missing),
        lambda: store.save_verdicts(missing, []),
    ):
        with pytest.raises(RunNotFound, match=f"no run {missing} in"):
            call()


def test_run_data_channel_lookup(stores: Callable[..., RunStore]) -> None:
    store = stores()
    writer = start(store)
    writer.add_channel("rate_ml_h", unit="mL/h", source="real", device="pump1")
    writer.add_channel("rate_ml_h", unit="mL/h", source="real", device="pump2")
    writer.add_channel("rate_ml_h", unit="mL/h", source="twin", device="pump1")
    writer.finish("completed")
    run = store.load_run(writer.run_id)
    assert run.channel("rate_ml_h", source="twin").device == "pump1"
    assert run.channel("rate_ml_h", device="pump2").source is Source.REAL
    with pytest.raises(StorageError, match="pass device="):
        run.channel("rate_ml_h")
    with pytest.raises(StorageError, match="no real channel 'volume_ml'"):
        run.channel("volume_ml")


# -- verdicts and calibrations -------------------------------------------------------


def test_verdicts_saved_replaced_and_validated(stores: Callable[..., RunStore]) -> None:
    store = stores()
    writer = start(store)
    writer.finish("completed")
    store.save_verdicts(
        writer.run_id,
        [
            {
                "measurement": "ep_max_2min",
                "source": "real",
                "value": 3.2,
                "units": "%",
                "lower": -5,
                "upper": 5,
                "marginal_lower": -4,
                "marginal_upper": 4,
                "outcome": "PASS",
            },
            {
                "measurement": "ep_max_2min",
                "source": "twin",
                "value": math.nan,
                "units": "%",
                "outcome": "UNSET",
            },
        ],
    )
    store.save_verdicts(
        writer.run_id,
        [
            {
                "measurement": "ep_max_2min",
                "source": "real",
                "value": 4.5,
                "units": "%",
                "lower": -5.0,
                "upper": 5.0,
                "outcome": Outcome.MARGINAL,
            }
        ],
    )
    for bad, message in (
        ({"measurement": "x", "source": "real", "outcome": "OK"}, "outcome: 'OK'"),
        ({"measurement": "x", "source": "model", "outcome": "PASS"}, "source: 'model'"),
        ({"measurement": "x", "source": "real", "outcome": "PASS", "limit": 1}, "'limit'"),
        (
            {"measurement": "x", "source": "real", "outcome": "PASS", "lower": 2, "upper": 1},
            "lower=2.0 is above upper=1.0",
        ),
        ({"measurement": "x", "source": "real", "outcome": "PASS", "lower": math.nan}, "NaN"),
        ({"source": "real", "outcome": "PASS"}, "measurement"),
    ):
        with pytest.raises(StorageError, match=message):
            store.save_verdicts(
                writer.run_id, [{"measurement": "ok", "source": "real", "outcome": "PASS"}, bad]
            )
    verdicts = {(v.measurement, v.source): v for v in store.load_run(writer.run_id).verdicts}
    assert set(verdicts) == {("ep_max_2min", Source.REAL), ("ep_max_2min", Source.TWIN)}
    real = verdicts["ep_max_2min", Source.REAL]
    assert (real.value, real.outcome, real.lower, real.marginal_upper) == (
        4.5,
        Outcome.MARGINAL,
        -5.0,
        None,
    )
    assert verdicts["ep_max_2min", Source.TWIN].value is None


def test_verdicts_from_declared_measurements(stores: Callable[..., RunStore]) -> None:
    from medtwin.hil.measurements import Measurement

    store = stores()
    writer = start(store)
    writer.finish("completed")
    declared = (
        Measurement("mean_flow_error_a", "%", "A over the second hour")
        .in_range(-2, 2)
        .with_marginal(-1.8, 1.8)
    )
    store.save_verdicts(
        writer.run_id,
        [
            declared.measure(1.9, source="real", note="30 s grid"),  # a Verdict object
            declared.measure(0.2, source="twin").as_dict(),  # its dict
        ],
    )
    saved = {v.source: v for v in store.load_run(writer.run_id).verdicts}
    real = saved[Source.REAL]
    assert real.measurement == "mean_flow_error_a"
    assert real.outcome is Outcome.MARGINAL
    assert (real.lower, real.upper, real.marginal_lower, real.marginal_upper) == (-2, 2, -1.8, 1.8)
    assert real.description == "A over the second hour"
    assert real.note == "30 s grid"
    assert saved[Source.TWIN].outcome is Outcome.PASS
    assert saved[Source.TWIN].as_json()["value"] == 0.2


def test_calibration_versions_per_device(stores: Callable[..., RunStore], db_url: str) -> None:
    store = stores()
    writer = start(store)
    writer.finish("completed")
    key = "NE-1000/A123"
    assert store.latest_calibration(key) is None
    assert store.calibrations(key) == []
    first = store.save_calibration(
        key,
        params={
            "backlash_ul": {"value": 2.5, "stderr": 0.1},
            "compliance_ul_per_mmhg": {"value": 1.8, "stderr": math.inf},
        },
        run_id=writer.run_id,
        correlation=np.array([[1.0, 0.3], [0.3, 1.0]]),
        residual_rms_before=0.12,
        residual_rms_after=0.02,
        note="after syringe change",
    )
    second = store.save_calibration(key, params={"backlash_ul": {"value": 2.4, "stderr": None}})
    other = store.save_calibration("NE-1000/B7", params={"backlash_ul": {"value": 1.0}})
    assert (first.version, second.version, other.version) == (1, 2, 1)
    with RunStore(db_url) as reopened:
        third = reopened.save_calibration(key, params={"backlash_ul": {"value": 2.3}})
        assert third.version == 3
        latest = reopened.latest_calibration(key)
        history = reopened.calibrations(key)
    assert latest == third
    assert [c.version for c in history] == [1, 2, 3]
    assert history[0] == first
    assert history[0].params["compliance_ul_per_mmhg"]["stderr"] == math.inf
    assert history[0].correlation == [[1.0, 0.3], [0.3, 1.0]]
    assert history[0].run_id == writer.run_id
    assert history[0].residual_rms_after == 0.02
    assert history[1].params == {"backlash_ul": {"value": 2.4, "stderr": None}}
    assert history[2].created_utc >= history[0].created_utc


def test_a_calibration_committed_but_reported_failed_is_returned_once(
    stores: Callable[..., RunStore],
) -> None:
    store = stores()
    key = "NE-1000/A123"
    real_backend = store._backend
    lossy = _AckLost(real_backend.engine)
    store._backend = dataclasses.replace(real_backend, engine=lossy)  # type: ignore[arg-type]
    try:
        saved = store.save_calibration(key, params={"backlash_ul": {"value": 2.5}})
    finally:
        store._backend = real_backend
    assert not lossy.armed  # the commit did lose its acknowledgement
    assert saved.version == 1
    assert store.calibrations(key) == [saved]  # stored once, not again as version 2


@pytest.mark.parametrize(
    ("key", "params", "message"),
    [
        ("NE-1000", {"k": {"value": 1.0}}, "expected 'model/serial'"),
        ("NE-1000/", {"k": {"value": 1.0}}, "expected 'model/serial'"),
        ("m/s", {}, "params: expected"),
        ("m/s", {"k": 1.0}, r"params\.k: expected"),
        ("m/s", {"k": {"value": math.nan}}, r"params\.k\.value"),
        ("m/s", {"k": {"value": 1.0, "sigma": 0.1}}, "unknown key"),
        ("m/s", {"k": {"value": 1.0, "stderr": "small"}}, r"params\.k\.stderr"),
    ],
)
def test_invalid_calibrations_are_refused(
    stores: Callable[..., RunStore], key: str, params: Any, message: str
) -> None:
    store = stores()
    with pytest.raises(StorageError, match=message):
        store.save_calibration(key, params=params)
    assert store.calibrations(key) == []


def test_calibration_of_unknown_run_is_refused(stores: Callable[..., RunStore]) -> None:
    store = stores()
    with pytest.raises(RunNotFound):
        store.save_calibration("m/s", params={"k": {"value": 1.0}}, run_id=42)
    assert store.calibrations("m/s") == []


# -- stale runs ------------------------------------------------------------------------


def _insert_running_run(
    db_url: str, *, hostname: str, pid: int, marker: str, heartbeat_age_s: float
) -> int:
    """A ``running`` run as a writer elsewhere (another process or host) left it."""
    engine = sa.create_engine(db_url, poolclass=NullPool)
    now = datetime.now(UTC)
    try:
        with Session(engine) as session:
            bench = BenchRow(
                name=f"b-{uuid.uuid4().hex}", text="", sha256=hashlib.sha256(b"").hexdigest()
            )
            session.add(bench)
            session.flush()
            run = RunRow(
                status="running",
                started_utc=now - timedelta(seconds=heartbeat_age_s + 30),
                heartbeat_utc=now - timedelta(seconds=heartbeat_age_s),
                bench_id=bench.id or 0,
                scenario_name="s",
                scenario_text="",
                scenario_sha256="",
                software_version="0",
                clock_kind="wall",
                pid=pid,
                hostname=hostname,
                process_marker=marker,
            )
            session.add(run)
            session.commit()
            return run.id or 0
    finally:
        engine.dispose()


def _dead_pid() -> int:
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(child.stdout)


def _with_start_ticks(marker: str, ticks: str) -> str:
    return ":".join([*marker.split(":")[:3], ticks])


def test_stale_rules(stores: Callable[..., RunStore], db_url: str) -> None:
    stores().close()  # creates the schema
    me = current_process()
    host = me.hostname
    dead = _insert_running_run(
        db_url, hostname=host, pid=_dead_pid(), marker=me.marker, heartbeat_age_s=1
    )
    reused = _insert_running_run(
        db_url,
        hostname=host,
        pid=me.pid,
        marker=_with_start_ticks(me.marker, "1"),
        heartbeat_age_s=1,
    )
    rebooted_marker = me.marker.replace(me.marker.split(":")[1], "00000000-boot")
    rebooted = _insert_running_run(
        db_url, hostname=host, pid=me.pid, marker=rebooted_marker, heartbeat_age_s=1
    )
    alive = _insert_running_run(
        db_url, hostname=host, pid=me.pid, marker=me.marker, heartbeat_age_s=1
    )
    remote_fresh = _insert_running_run(
        db_url, hostname="other-bench-pc", pid=me.pid, marker=me.marker, heartbeat_age_s=5
    )
    remote_old = _insert_running_run(
        db_url, hostname="other-bench-pc", pid=me.pid, marker=me.marker, heartbeat_age_s=120
    )

    store = stores(stale_after_s=60)
    status = {info.id: info.status for info in store.list_runs()}
    assert status == {
        dead: RunStatus.INTERRUPTED,
        reused: RunStatus.INTERRUPTED,
        rebooted: RunStatus.INTERRUPTED,
        alive: RunStatus.RUNNING,
        remote_fresh: RunStatus.RUNNING,
        remote_old: RunStatus.INTERRUPTED,
    }
    run = store.load_run(dead)
    assert run.info.ended_utc == run.info.heartbeat_utc
    assert run.events[-1].kind == "note"
    assert "is gone" in run.events[-1].message
    assert run.events[-1].data["marked_by_pid"] == os.getpid()
    assert "heartbeat is 120 s old" in store.load_run(remote_old).events[-1].message
    # With a 1 s limit the heartbeat rule catches the rest, even the run whose process
    # (this one) is alive: nothing has beaten for it.
    strict = stores(stale_after_s=1)
    assert {info.status for info in strict.list_runs()} == {RunStatus.INTERRUPTED}
    assert strict.mark_stale_runs() == []


def test_zombie_writer_counts_as_gone(stores: Callable[..., RunStore], db_url: str) -> None:
    stores().close()  # creates the schema
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        writer = current_process()
        stat = Path(f"/proc/{child.pid}/stat").read_text().rpartition(")")[2].split()
        marker = _with_start_ticks(writer.marker, stat[19])
        run_id = _insert_running_run(
            db_url, hostname=writer.hostname, pid=child.pid, marker=marker, heartbeat_age_s=0
        )
        assert stores().run_info(run_id).status is RunStatus.RUNNING  # alive: left alone
        child.kill()
        # Wait for the exit without reaping (WNOWAIT): the pid stays a zombie in /proc.
        os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)
        assert Path(f"/proc/{child.pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
        assert stores().run_info(run_id).status is RunStatus.INTERRUPTED
    finally:
        child.kill()
        child.wait()


def test_live_writer_taken_for_stale_resumes(stores: Callable[..., RunStore]) -> None:
    store = stores(flush_interval_s=3600)
    writer = start(store)
    channel = writer.add_channel("v", unit="", source="real")
    writer.append(channel, 0.0, 1.0)
    writer.flush()
    other = stores(stale_after_s=1e-9)  # any heartbeat age is "too old" for this one
    assert other.run_info(writer.run_id).status is RunStatus.INTERRUPTED
    writer.append(channel, 1.0, 2.0)
    writer.flush()
    run = other.load_run(writer.run_id)
    assert run.info.status is RunStatus.RUNNING
    assert run.info.ended_utc is None
    assert [e.kind for e in run.events] == ["note", "note"]
    assert "resumed" in run.events[-1].message
    writer.finish("completed")
    assert other.load_run(writer.run_id).channels[0].values.tolist() == [1.0, 2.0]


def test_liveness_of_this_process() -> None:
    me = current_process()
    assert me.marker.startswith("linux:")
    assert writer_is_gone(me) is False
    assert writer_is_gone(dataclasses.replace(me, hostname="elsewhere")) is None
    pidns_elsewhere = ":".join([*me.marker.split(":")[:2], "1", me.marker.split(":")[3]])
    assert writer_is_gone(dataclasses.replace(me, marker=pidns_elsewhere)) is None


# -- codecs ------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    hnp.arrays(
        np.float64,
        hnp.array_shapes(max_dims=1, max_side=300),
        elements=st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True),
    )
)
def test_block_codec_round_trips_every_bit(samples: np.ndarray) -> None:
    blob = encode_block(samples)
    assert len(blob) == 8 * samples.size
    decoded = decode_block(blob, dtype="<f8", n=samples.size, where="test")
    assert np.array_equal(bits(decoded), bits(samples))
    big_endian = samples.astype(">f8").tobytes()
    assert np.array_equal(
        bits(decode_block(big_endian, dtype=">f8", n=samples.size, where="test")), bits(samples)
    )


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200), st.integers(-5, 40), st.sampled_from(["<f8", ">f4", "<i8", "x"]))
def test_block_decoder_raises_only_storage_error(blob: bytes, n: int, dtype: str) -> None:
    try:
        decoded = decode_block(blob, dtype=dtype, n=n, where="fuzz")
    except StorageError:
        return
    assert decoded.shape == (n,)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.text()
    | st.floats(allow_nan=False)
    | st.sampled_from([math.inf, -math.inf]),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_json_codec_round_trip(value: Any) -> None:
    encoded = to_json(value, where="v")
    json.dumps(encoded, allow_nan=False)  # strict JSON, as PostgreSQL demands
    decoded = from_json(encoded)
    if not _has_special_string(value):
        assert decoded == value


def _has_special_string(value: Any) -> bool:
    if isinstance(value, str):
        return value in ("NaN", "Infinity", "-Infinity")
    if isinstance(value, list):
        return any(_has_special_string(v) for v in value)
    if isinstance(value, dict):
        return any(_has_special_string(v) for v in value.values())
    return False
