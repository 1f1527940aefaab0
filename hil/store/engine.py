"""Database URLs and engines of the run store (SQLite and PostgreSQL via SQLAlchemy).

Any SQLAlchemy URL is accepted; medtwin is tested against two:

* ``sqlite:///medtwin.db`` (the default: a file in the working directory), or
  ``sqlite://`` for a private in-memory store. On every new SQLite connection:

  - ``PRAGMA journal_mode=WAL`` (only on a file marked with medtwin's
    ``application_id``, so a wrong ``--db`` never changes another application's
    file): readers (``medtwin runs``, reports) never block the
    writer and the writer never blocks them, and a commit appends to the log instead of
    rewriting pages, so the flush every second stays cheap;
  - ``PRAGMA synchronous=NORMAL``: in WAL mode a commit is then durable against a crash
    or ``kill -9`` of the *process* (the log is in the OS cache and is replayed on the
    next open) and the database is never corrupted; only a power cut or kernel crash
    may undo the last commits. ``sqlite_synchronous="FULL"`` adds an fsync per commit
    for an audit trail that must survive power loss as well;
  - ``PRAGMA foreign_keys=ON``: SQLite does not enforce foreign keys unless asked, and
    a sample block without its channel is unreadable;
  - the busy timeout (``lock_timeout_s``) lets two processes share the file.

  WAL needs shared memory between the processes using the file, so the file must be on
  a local disk, not a network share.

* ``postgresql+psycopg://user:password@host:5432/db`` (psycopg 3, extra ``postgres``;
  ``postgresql://`` is read as ``postgresql+psycopg://``). A schema other than the
  user's default is chosen in the URL: ``...?options=-csearch_path%3Dmedtwin``.
  Connections are pinged before use (a server restart between two flushes costs one
  reconnect, not a failed flush), and ``lock_timeout`` is set from ``lock_timeout_s``.

Errors are :class:`~medtwin.drivers.errors.StorageError` naming the URL with its password hidden.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from medtwin.drivers.errors import StorageError
from medtwin.hil.store.schema import SQLITE_APPLICATION_ID
from sqlalchemy import event, exc
from sqlalchemy.engine import URL, Engine
from sqlalchemy.pool import StaticPool
from sqlmodel import Session

__all__ = [
    "DEFAULT_URL",
    "Backend",
    "db_errors",
    "describe_error",
    "enable_wal",
    "make_backend",
    "parse_url",
    "redact_url",
    "sqlite_file",
    "sqlite_read_only_requested",
    "sqlite_read_only_url",
    "sqlite_writable",
]

DEFAULT_URL = "sqlite:///medtwin.db"

_SQLITE_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")
_PASSWORD_IN_URL = re.compile(r"(://[^:/@]*:)[^@]*@")


def _mask(text: str) -> str:
    return _PASSWORD_IN_URL.sub(r"\1***@", text)


def parse_url(url: str) -> URL:
    """Parse a database URL (``postgresql://`` is taken to mean psycopg 3).

    Raises
    ------
    StorageError
        ``url`` is not a URL; the message shows it (password hidden) and an example.
    """
    if not isinstance(url, str) or not url.strip():
        raise StorageError(
            f"invalid database URL {url!r}: expected e.g. {DEFAULT_URL} or "
            "postgresql+psycopg://user@host:5432/dbname"
        )
    try:
        parsed = sa.make_url(url.strip())
    except (exc.ArgumentError, ValueError) as error:
        hint = ""
        if "://" not in url:
            hint = f" (a file? write sqlite:///{url.strip()})"
        raise StorageError(
            f"invalid database URL {_mask(url)!r}{hint}: expected e.g. {DEFAULT_URL} or "
            "postgresql+psycopg://user@host:5432/dbname"
        ) from error
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def redact_url(url: URL | str) -> str:
    """The URL as text with its password replaced by ``***`` (for messages and logs)."""
    if isinstance(url, str):
        text = url
        try:
            url = sa.make_url(text)
        except (exc.ArgumentError, ValueError):
            return _mask(text)
    return url.render_as_string(hide_password=True)


def _is_sqlite(url: URL) -> bool:
    return url.get_backend_name() == "sqlite"


def _is_sqlite_memory(url: URL) -> bool:
    return _is_sqlite(url) and (
        url.database in (None, "", ":memory:") or url.query.get("mode") == "memory"
    )


def sqlite_file(url: URL) -> Path | None:
    """The file a ``sqlite:`` URL names (relative to the working directory), else None."""
    if not _is_sqlite(url) or _is_sqlite_memory(url) or not url.database:
        return None
    database = url.database
    if database.startswith("file:"):  # URI filename (?uri=true), percent-encoded
        database = urllib.parse.unquote(database[len("file:") :].partition("?")[0])
    return Path(database)


def sqlite_read_only_requested(url: URL) -> bool:
    """True for a SQLite URL asking for a read-only open (``?mode=ro``, with or without
    ``uri=true``)."""
    return _is_sqlite(url) and url.query.get("mode") == "ro"


def sqlite_writable(path: Path) -> bool:
    """Can this process write the store file and create its journal beside it?

    In WAL mode SQLite writes ``-wal`` and ``-shm`` files next to the database, so the
    directory must be writable as well as the file (SQLite documentation, "Write-Ahead
    Logging", section 8 "Read-Only Databases").
    """
    return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)


def sqlite_read_only_url(url: URL, path: Path) -> URL:
    """The URI-filename URL that opens ``path`` read-only (``mode=ro``).

    When the directory cannot be written and no ``-wal`` file is there, SQLite cannot
    create the shared-memory file a WAL database needs even to be read, so the file is
    opened ``immutable=1``: nothing can be writing it, since no writer could create its
    log there either (SQLite documentation, "Write-Ahead Logging", section 8, and "URI
    Filenames", query parameters ``mode`` and ``immutable``).
    """
    query = {"mode": "ro", "uri": "true"}
    wal = path.with_name(path.name + "-wal")
    if not os.access(path.parent, os.W_OK) and not wal.exists():
        query["immutable"] = "1"
    return url.set(
        drivername="sqlite+pysqlite",
        database="file:" + urllib.parse.quote(str(path)),
        query=query,
    )


def describe_error(error: BaseException, url: URL) -> str:
    """One line saying what the database driver reported, without the password."""
    original = getattr(error, "orig", None) or error
    text = " ".join(str(original).split())
    if url.password:
        text = text.replace(str(url.password), "***")
    return _mask(text) or type(original).__name__


@dataclass
class Backend:
    """An engine plus what the store needs to know about it.

    ``lock`` serializes every use of the database by one store. It is a real lock only for
    an in-memory SQLite store, where all threads share one connection (``StaticPool``);
    file SQLite and PostgreSQL hand each thread its own pooled connection and let the
    database arbitrate, so a long read never delays the flusher.
    """

    url: URL
    engine: Engine
    lock: contextlib.AbstractContextManager[Any]
    #: The URL as the user gave it, for messages (a read-only open rewrites ``url``).
    shown_url: str | None = None

    @property
    def url_text(self) -> str:
        return self.shown_url or redact_url(self.url)

    @property
    def dialect(self) -> str:
        return self.url.get_backend_name()

    @property
    def is_sqlite(self) -> bool:
        return _is_sqlite(self.url)

    @contextlib.contextmanager
    def session(self, doing: str) -> Iterator[Session]:
        """An ORM session under :attr:`lock`; database errors become StorageError naming
        ``doing``."""
        with self.lock, db_errors(self, doing), Session(self.engine) as session:
            yield session

    @contextlib.contextmanager
    def connection(self, doing: str, *, transaction: bool = False) -> Iterator[sa.Connection]:
        """A Core connection (in one transaction if asked) under :attr:`lock`; database
        errors become StorageError naming ``doing``."""
        with (
            self.lock,
            db_errors(self, doing),
            self.engine.begin() if transaction else self.engine.connect() as conn,
        ):
            yield conn


class _NoLock(contextlib.AbstractContextManager[None]):
    def __exit__(self, *exc_info: object) -> None:
        return None


def make_backend(
    url: URL,
    *,
    lock_timeout_s: float,
    connect_timeout_s: float,
    sqlite_synchronous: str,
    read_only: bool = False,
) -> Backend:
    """Create the engine for ``url`` (no connection is opened yet).

    Raises
    ------
    StorageError
        Unknown database type or missing driver, or an invalid option.
    """
    synchronous = sqlite_synchronous.upper()
    if synchronous not in _SQLITE_SYNCHRONOUS:
        raise StorageError(
            f"sqlite_synchronous={sqlite_synchronous!r}: expected one of "
            + ", ".join(_SQLITE_SYNCHRONOUS)
        )
    if not lock_timeout_s > 0 or not connect_timeout_s > 0:
        raise StorageError("lock_timeout_s and connect_timeout_s must be positive (seconds)")

    kwargs: dict[str, Any] = {}
    connect_args: dict[str, Any] = {}
    lock: contextlib.AbstractContextManager[Any] = _NoLock()
    if _is_sqlite(url):
        connect_args["timeout"] = lock_timeout_s
        if _is_sqlite_memory(url):
            # One shared connection, or every thread would see its own empty database.
            kwargs["poolclass"] = StaticPool
            connect_args["check_same_thread"] = False
            lock = threading.RLock()
    elif url.get_backend_name() == "postgresql":
        kwargs["pool_pre_ping"] = True
        if "connect_timeout" not in url.query:
            connect_args["connect_timeout"] = max(1, round(connect_timeout_s))
        # libpq "options" from the URL (e.g. a search_path) are kept and extended.
        options = url.query.get("options", "")
        if isinstance(options, tuple):
            options = " ".join(options)
        lock_ms = max(1, round(lock_timeout_s * 1000))
        connect_args["options"] = f"{options} -c lock_timeout={lock_ms}".strip()
    try:
        engine = sa.create_engine(url, connect_args=connect_args, **kwargs)
    except (exc.NoSuchModuleError, ImportError) as error:
        extra = ""
        if url.get_backend_name() == "postgresql":
            extra = "; install the PostgreSQL extra: pip install 'medtwin[postgres]'"
        raise StorageError(
            f"cannot use database URL {redact_url(url)}: no driver for "
            f"{url.drivername!r} ({describe_error(error, url)}){extra}"
        ) from error
    except (exc.ArgumentError, TypeError, ValueError) as error:
        raise StorageError(
            f"cannot use database URL {redact_url(url)}: {describe_error(error, url)}"
        ) from error

    if _is_sqlite(url):

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
            cursor = dbapi_connection.cursor()
            try:
                # journal_mode is stored in the file: switch only a file already marked as
                # medtwin's, never another application's (a new store is switched right
                # after its schema is created, see enable_wal).
                cursor.execute("PRAGMA application_id")
                # A read-only connection leaves the journal mode as the file has it.
                if not read_only and cursor.fetchone()[0] == SQLITE_APPLICATION_ID:
                    cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute(f"PRAGMA synchronous={synchronous}")
                cursor.execute("PRAGMA foreign_keys=ON")
            finally:
                cursor.close()

    return Backend(url=url, engine=engine, lock=lock)


def enable_wal(backend: Backend) -> None:
    """Switch a (new, verified) SQLite store to WAL; a no-op for other databases.

    ``journal_mode`` cannot change inside a transaction, so this runs on its own after
    the schema is committed. An in-memory database answers "memory" and stays so.
    """
    if not backend.is_sqlite:
        return
    with backend.lock, backend.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA journal_mode=WAL")


@contextlib.contextmanager
def db_errors(backend: Backend, action: str) -> Iterator[None]:
    """Turn database errors raised inside the block into StorageError(``action`` ...)."""
    try:
        yield
    except exc.SQLAlchemyError as error:
        reason = describe_error(error, backend.url)
        if "readonly database" in reason:
            reason += (
                " (this store is open read-only: it can be listed, reported and exported, "
                "but nothing can be stored in it; use a --db you can write)"
            )
        raise StorageError(f"{action} in {backend.url_text} failed: {reason}") from error
