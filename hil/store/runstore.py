"""The run store: open a database, start runs, read them back, keep verdicts and calibrations.

:class:`RunStore` opens (and if asked creates) the database and closes it; what it does
with it comes from one part per job, composed here: :mod:`.lifecycle` (start runs, mark
dead ones interrupted), :mod:`.reading` (list and load runs), :mod:`.verdicts` and
:mod:`.calibrations`, on the shared state of :mod:`.core`. See :mod:`medtwin.hil.store` for
the overview and ``docs/storage.md`` for the schema and the durability guarantee.
"""

from __future__ import annotations

import math
import threading
import weakref
from pathlib import Path
from types import TracebackType

import sqlalchemy as sa
from medtwin.drivers.errors import StorageError
from medtwin.hil.store.calibrations import CalibrationStore
from medtwin.hil.store.engine import (
    DEFAULT_URL,
    db_errors,
    describe_error,
    enable_wal,
    make_backend,
    parse_url,
    redact_url,
    sqlite_file,
    sqlite_read_only_requested,
    sqlite_read_only_url,
    sqlite_writable,
)
from medtwin.hil.store.lifecycle import RunLifecycle
from medtwin.hil.store.reading import RunReader
from medtwin.hil.store.schema import (
    SCHEMA_VERSION,
    SQLITE_APPLICATION_ID,
    MetaRow,
    StoreModel,
    table,
)
from medtwin.hil.store.verdicts import VerdictStore
from medtwin.hil.store.writer import RunWriter, utc_now
from sqlalchemy import exc

__all__ = ["RunStore"]


class RunStore(RunLifecycle, RunReader, VerdictStore, CalibrationStore):
    """Runs, their samples, events, verdicts, and device calibrations, in one database.

    Parameters
    ----------
    url : str
        SQLAlchemy URL; default ``sqlite:///medtwin.db`` in the working directory.
        ``postgresql+psycopg://user:password@host/db`` for PostgreSQL.
    create : bool
        Create the schema in an empty database (default). With False, a missing SQLite
        file or a database without medtwin tables is an error (what read-only commands
        such as ``medtwin runs`` want, so that a typo does not leave an empty file behind).
    stale_after_s : float
        A ``running`` run whose heartbeat is older than this is considered dead even when
        its process cannot be checked (another host). Default 60 s: a live writer beats
        every ``flush_interval_s``.
    flush_interval_s : float
        Everything appended to a run is committed within this wall time (default 1 s).
    max_block_samples : int
        Largest number of samples in one stored block (default 65 536, 512 KiB per BLOB).
    lock_timeout_s : float
        How long a write waits for a lock held by another connection (SQLite busy
        timeout, PostgreSQL ``lock_timeout``) before the flush fails and is retried.
    connect_timeout_s : float
        PostgreSQL connection timeout (unless the URL sets ``connect_timeout``).
    sqlite_synchronous : {"NORMAL", "FULL", "EXTRA", "OFF"}
        SQLite ``PRAGMA synchronous``; see :mod:`medtwin.hil.store.engine`.
    read_only : bool or None
        Open the store for reading only: nothing is created or changed (stale runs are not
        marked), and any write fails with a StorageError saying the store is read-only.
        A SQLite URL with ``?mode=ro`` asks for it too. None decides by the file: read-only
        when the SQLite file or its directory cannot be written (``os.access``), which is
        what the reading commands (``medtwin runs``, ``report``, ``export``) pass. With
        False (the default), a SQLite store that cannot be written is an error at once,
        naming the file, rather than a failed write later in a run.

    Notes
    -----
    **Stale runs.** Opening a store marks every ``running`` run ``interrupted`` whose
    writer is gone: same hostname and the pid is no longer that process (dead, a zombie,
    or reused by a process with another start time, per :mod:`medtwin.hil.store.liveness`), or
    its heartbeat is older than ``stale_after_s`` (the only test possible for a run
    written on another host). :meth:`mark_stale_runs` applies the rule again on demand.
    The run's ``ended_utc`` becomes its last heartbeat, and a ``note`` event records who
    marked it and why.

    Raises
    ------
    StorageError
        Invalid URL, missing driver, unreachable server, a file or database that is not
        a medtwin store (or is one of a newer schema); the message names the URL with
        its password hidden and says what to do.
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        create: bool = True,
        stale_after_s: float = 60.0,
        flush_interval_s: float = 1.0,
        max_block_samples: int = 65536,
        lock_timeout_s: float = 30.0,
        connect_timeout_s: float = 10.0,
        sqlite_synchronous: str = "NORMAL",
        read_only: bool | None = False,
    ) -> None:
        if not stale_after_s > 0:
            raise StorageError(f"stale_after_s={stale_after_s!r}: expected seconds > 0")
        if not (math.isfinite(flush_interval_s) and flush_interval_s > 0):
            raise StorageError(f"flush_interval_s={flush_interval_s!r}: expected seconds > 0")
        if not isinstance(max_block_samples, int) or max_block_samples < 1:
            raise StorageError(f"max_block_samples={max_block_samples!r}: expected an int ≥ 1")
        self.stale_after_s = float(stale_after_s)
        self.flush_interval_s = float(flush_interval_s)
        self.max_block_samples = max_block_samples
        self._closed = False
        self._close_lock = threading.Lock()
        self._writers: weakref.WeakSet[RunWriter] = weakref.WeakSet()

        parsed = parse_url(url)
        self._url_text = redact_url(parsed)
        path = sqlite_file(parsed)
        if path is not None and not path.is_absolute() and parsed.database == str(path):
            # Pin a relative file to today's working directory: the pool opens new
            # connections later, possibly after the process changed directory.
            path = path.resolve()
            parsed = parsed.set(database=str(path))
        if path is not None and not create and not path.exists():
            raise StorageError(
                f"no run store at {self._url_text}: {path} does not exist "
                "(check --db, or record a run first)"
            )
        if sqlite_read_only_requested(parsed):
            read_only = True
        exists = path is not None and path.exists()
        if read_only is None:
            read_only = exists and path is not None and not sqlite_writable(path)
        if not read_only and exists and path is not None and not sqlite_writable(path):
            raise StorageError(
                f"the run store {self._url_text} is read-only ({path} or its directory "
                "cannot be written): it can be listed, reported and exported, but a run or "
                "a calibration cannot be stored in it; use a --db you can write"
            )
        self.read_only = bool(read_only)
        if self.read_only:
            if path is None or not exists:
                raise StorageError(
                    f"cannot open {self._url_text} read-only: only an existing SQLite file "
                    "can be (a PostgreSQL user without write grants reads the same way)"
                )
            parsed = sqlite_read_only_url(parsed, path)
            create = False
        self._backend = make_backend(
            parsed,
            lock_timeout_s=lock_timeout_s,
            connect_timeout_s=connect_timeout_s,
            sqlite_synchronous=sqlite_synchronous,
            read_only=self.read_only,
        )
        self._backend.shown_url = self._url_text
        try:
            self._prepare_schema(create=create)
            if not self.read_only:
                # Marking dead runs is a write; a read-only store shows them as they are
                # stored (a dead writer's run still says "running").
                self.mark_stale_runs()
        except BaseException:
            self._backend.engine.dispose()
            raise

    # -- opening ---------------------------------------------------------------------

    @property
    def sqlite_path(self) -> Path | None:
        """Absolute path of the SQLite file, or None (in-memory SQLite, other databases)."""
        return sqlite_file(self._backend.url)

    @property
    def dialect(self) -> str:
        """``"sqlite"``, ``"postgresql"``, ..."""
        return self._backend.dialect

    def _open_error(self, error: BaseException, what: str) -> StorageError:
        url = self._backend.url
        reason = describe_error(error, url)
        if self._backend.is_sqlite:
            path = sqlite_file(url)
            if "not a database" in reason or "encrypted" in reason:
                return StorageError(
                    f"{self.url} is not a medtwin database: {path} is not a SQLite file "
                    f"({reason}); point --db at a medtwin store or a new file"
                )
            if "unable to open" in reason:
                return StorageError(
                    f"cannot open {self.url}: {reason} (does the directory of {path} exist "
                    "and is it writable?)"
                )
        elif self._backend.dialect == "postgresql":
            return StorageError(
                f"cannot {what} {self.url}: {reason} (is the server running and are the "
                "host, port, user, password and database name right?)"
            )
        return StorageError(f"cannot {what} {self.url}: {reason}")

    def _prepare_schema(self, *, create: bool) -> None:
        backend = self._backend
        try:
            with backend.lock, backend.engine.connect() as conn:
                names = set(sa.inspect(conn).get_table_names())
                app_id = 0
                if backend.is_sqlite:
                    app_id = int(conn.exec_driver_sql("PRAGMA application_id").scalar() or 0)
                version = None
                if MetaRow.__tablename__ in names:
                    meta = table(MetaRow)
                    version = conn.execute(
                        sa.select(meta.c.value).where(meta.c.key == "schema_version")
                    ).scalar()
        except exc.SQLAlchemyError as error:
            raise self._open_error(error, "connect to") from error

        if app_id not in (0, SQLITE_APPLICATION_ID):
            raise StorageError(
                f"{self.url} is not a medtwin database: its SQLite application_id is "
                f"{app_id:#x}, medtwin's is {SQLITE_APPLICATION_ID:#x} (another "
                "application's file?)"
            )
        ours = set(StoreModel.metadata.tables)
        if version is not None or MetaRow.__tablename__ in names:
            self._check_version(version)
            missing = sorted(ours - names)
            if missing:
                raise StorageError(
                    f"{self.url} is a damaged medtwin database: table(s) "
                    f"{', '.join(missing)} missing"
                )
            return
        if not create:
            raise StorageError(
                f"{self.url} is not a medtwin database (it has no medtwin_meta table); "
                "check --db, or record a run there first"
            )
        clash = sorted(names & ours)
        if clash or (backend.is_sqlite and names):
            shown = ", ".join(sorted(clash or names)[:8])
            raise StorageError(
                f"{self.url} is not a medtwin database: it already holds table(s) {shown} "
                "but no medtwin_meta; use a new file (SQLite) or another schema "
                "(PostgreSQL: ?options=-csearch_path%3Dmedtwin)"
            )
        self._create_schema()

    def _check_version(self, version: str | None) -> None:
        try:
            number = int(version or "")
        except ValueError:
            raise StorageError(
                f"{self.url} is a damaged medtwin database: schema_version {version!r}"
            ) from None
        if number > SCHEMA_VERSION:
            raise StorageError(
                f"{self.url} was written by a newer medtwin (schema {number}, this one reads "
                f"{SCHEMA_VERSION}); upgrade medtwin"
            )
        if number < SCHEMA_VERSION:  # pragma: no cover - no older schema exists yet
            raise StorageError(
                f"{self.url} has the old schema {number}; this medtwin needs {SCHEMA_VERSION}"
            )

    def _create_schema(self) -> None:
        backend = self._backend
        from importlib.metadata import PackageNotFoundError, version

        try:
            software = version("medtwin")
        except PackageNotFoundError:  # pragma: no cover - bare checkout
            software = "unknown"
        try:
            with backend.lock, backend.engine.begin() as conn:
                StoreModel.metadata.create_all(conn)
                conn.execute(
                    sa.insert(table(MetaRow)),
                    [
                        {"key": "schema_version", "value": str(SCHEMA_VERSION)},
                        {"key": "created_utc", "value": utc_now().isoformat()},
                        {"key": "created_by", "value": f"medtwin {software}"},
                    ],
                )
                if backend.is_sqlite:
                    conn.exec_driver_sql(f"PRAGMA application_id={SQLITE_APPLICATION_ID}")
        except exc.IntegrityError:
            # Another process created the schema at the same moment: use theirs.
            self._prepare_schema(create=False)
            return
        except exc.SQLAlchemyError as error:
            raise self._open_error(error, "create the schema in") from error
        with db_errors(backend, "switching to WAL mode"):
            enable_wal(backend)

    # -- closing ---------------------------------------------------------------------

    def close(self) -> None:
        """Finish open runs as ``interrupted`` (after a last flush) and release the database.

        Idempotent. Raises StorageError if an open run could not be flushed; the
        connections are released all the same.
        """
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        errors: list[str] = []
        for writer in list(self._writers):
            try:
                writer.abandon("the run store was closed while the run was open")
            except StorageError as error:
                errors.append(str(error))
        self._backend.engine.dispose()
        if errors:
            raise StorageError("; ".join(errors))

    def __enter__(self) -> RunStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<RunStore {self.url} {state}>"
