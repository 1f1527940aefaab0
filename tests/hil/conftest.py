"""Fixtures shared by the hil tests: the two store back ends, and waiting on another
process's run.

PostgreSQL is the server named by ``MEDTWIN_TEST_POSTGRES_URL`` (default
``postgresql+psycopg://postgres@127.0.0.1:5432/test``); each test gets a schema of its
own, dropped afterwards. An unreachable server fails the test (CI must not pass without
it) unless ``MEDTWIN_SKIP_POSTGRES=1``.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from drivers.errors import StorageError
from hil.store import RunStore

POSTGRES_URL = os.environ.get(
    "MEDTWIN_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
SKIP_POSTGRES = os.environ.get("MEDTWIN_SKIP_POSTGRES") == "1"


@pytest.fixture(scope="session")
def postgres_admin() -> Iterator[sa.Engine]:
    """An engine on the test server (no pooled connections left open between uses)."""
    if SKIP_POSTGRES:
        pytest.skip("MEDTWIN_SKIP_POSTGRES=1")
    engine = sa.create_engine(POSTGRES_URL, poolclass=NullPool)
    try:
        with engine.connect():
            pass
    except sa.exc.SQLAlchemyError as error:
        engine.dispose()
        pytest.fail(
            f"PostgreSQL test server {sa.make_url(POSTGRES_URL)!r} is unreachable ({error}); "
            "start it, point MEDTWIN_TEST_POSTGRES_URL at one, or set MEDTWIN_SKIP_POSTGRES=1",
            pytrace=False,
        )
    yield engine
    engine.dispose()


def _url_in_schema(schema: str) -> str:
    """The test server's URL with ``schema`` first on the search path."""
    url = sa.make_url(POSTGRES_URL)
    options = url.query.get("options", "")
    url = url.update_query_dict({"options": f"{options} -csearch_path={schema}".strip()})
    return url.render_as_string(hide_password=False)


@contextmanager
def _fresh_schema(admin: sa.Engine) -> Iterator[str]:
    """A fresh schema on the test server, dropped afterwards."""
    schema = f"medtwin_test_{os.getpid()}_{uuid.uuid4().hex[:10]}"
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield schema
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The same test on a SQLite file and on a PostgreSQL schema of its own."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'medtwin.db'}"
        return
    admin = request.getfixturevalue("postgres_admin")
    with _fresh_schema(admin) as schema:
        yield _url_in_schema(schema)


@pytest.fixture
def postgres_schema(postgres_admin: sa.Engine) -> Iterator[tuple[str, str]]:
    """(name, URL) of a fresh schema on the test server, dropped afterwards."""
    with _fresh_schema(postgres_admin) as schema:
        yield schema, _url_in_schema(schema)


@pytest.fixture
def wait_for_channel() -> Callable[[str, str, int], int]:
    """Wait (up to 60 s) until another process's newest run has at least ``n`` durable
    samples on ``channel``; returns how many it has."""

    def wait(db: str, channel: str, n: int) -> int:
        deadline = time.monotonic() + 60.0
        durable = 0
        while time.monotonic() < deadline:
            try:
                with RunStore(db, create=False) as store:
                    runs = store.list_runs()
                    if runs:
                        durable = len(store.load_run(runs[0].id).channel(channel))
            except StorageError:
                pass  # the other process is still creating the database or its channels
            if durable >= n:
                return durable
            time.sleep(0.1)  # polling another process's database: there is no event to await
        raise AssertionError(f"the other process stored only {durable} samples of {channel}")

    return wait
