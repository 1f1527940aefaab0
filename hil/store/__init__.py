"""The run store: every run's metadata, samples, events, verdicts, and device calibrations.

Metadata lives in SQLModel tables, time series as numpy blocks (BLOBs of little-endian
float64), flushed at least every second, so a killed run loses at most the last second and is
marked ``interrupted`` the next time a store is opened (``docs/storage.md``).

    >>> with RunStore("sqlite:///medtwin.db") as store:               # doctest: +SKIP
    ...     writer = store.start_run(bench_name="bench-a", bench_text=toml, ...)
    ...     rate = writer.add_channel("rate_ml_h", unit="mL/h", source="real", device="pump1")
    ...     writer.append(rate, t_s, rate_ml_h)                       # scalars or arrays
    ...     writer.add_event(12.0, "command", device="pump1", message="RAT 5 MH")
    ...     writer.finish("completed", summary={"samples": 3600})
    ...     run = store.load_run(writer.run_id)                       # numpy arrays back

Why blocks instead of one row per sample: inserting rows through the ORM runs at about
15 k samples/s and reads back at about 4 M samples/s; whole numpy blocks go in and come out
two to three orders of magnitude faster (``benchmarks/bench_store.py``), and a BLOB of raw
IEEE 754 bytes round-trips every bit. The ORM is kept for what it is good at: the
metadata. Hand-written parts (the block codec, the flusher, the liveness check) exist
because no library does them for SQLAlchemy; each module says what it does and why.

Modules: :mod:`~medtwin.hil.store.runstore` (:class:`RunStore`: opening and closing, composed of
one part per job on the shared state of :mod:`~medtwin.hil.store.core`:
:mod:`~medtwin.hil.store.lifecycle` (start runs, mark dead ones interrupted),
:mod:`~medtwin.hil.store.reading` (list and load runs), :mod:`~medtwin.hil.store.verdicts`,
:mod:`~medtwin.hil.store.calibrations`), :mod:`~medtwin.hil.store.writer`
(:class:`RunWriter`), :mod:`~medtwin.hil.store.records` (what readers get back),
:mod:`~medtwin.hil.store.schema` (tables), :mod:`~medtwin.hil.store.codec` (blocks, JSON),
:mod:`~medtwin.hil.store.engine` (URLs, SQLite pragmas, PostgreSQL options),
:mod:`~medtwin.hil.store.liveness` (is a writer process still alive?).
"""

from medtwin.drivers.errors import RunNotFound, StorageError
from medtwin.hil.store.engine import DEFAULT_URL, parse_url, redact_url, sqlite_file
from medtwin.hil.store.records import (
    EVENT_KINDS,
    CalibrationParam,
    CalibrationRecord,
    ChannelData,
    DeviceInfo,
    EventRecord,
    Outcome,
    RunData,
    RunInfo,
    RunStatus,
    Source,
    VerdictRecord,
)
from medtwin.hil.store.runstore import RunStore
from medtwin.hil.store.writer import RunWriter

__all__ = [
    "DEFAULT_URL",
    "EVENT_KINDS",
    "CalibrationParam",
    "CalibrationRecord",
    "ChannelData",
    "DeviceInfo",
    "EventRecord",
    "Outcome",
    "RunData",
    "RunInfo",
    "RunNotFound",
    "RunStatus",
    "RunStore",
    "RunWriter",
    "Source",
    "StorageError",
    "VerdictRecord",
    "parse_url",
    "redact_url",
    "sqlite_file",
]
