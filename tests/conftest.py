"""Shared test configuration: the PostgreSQL test server.

The leak checks (tasks, ptys, sockets, threads) come from medtwin's own pytest plugin,
enabled for every test by ``hil_leak_check = "all"`` in pyproject.toml.

PostgreSQL tests (marked ``postgres``) reach the server through :func:`postgres_admin`:

* ``MEDTWIN_TEST_POSTGRES_URL`` set: that server must answer, or every PostgreSQL test
  fails (errors) loudly; CI sets it (``.ci/run``) so that it cannot pass without them.
* not set: the default URL, ``postgresql+psycopg://postgres@127.0.0.1:5432/test``, is
  tried; when nothing answers there the tests are skipped, with a reason naming the URL,
  so a developer without PostgreSQL still gets a green suite.

``-m "not postgres"`` deselects them whatever the environment says.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

#: The variable naming the test server; when set, an unreachable server is an error.
POSTGRES_URL_VARIABLE = "MEDTWIN_TEST_POSTGRES_URL"
#: The server tried when the variable is not set; unreachable means skip.
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@pytest.fixture(scope="session")
def postgres_admin() -> Iterator[sa.Engine]:
    """An engine on the PostgreSQL test server (no pooled connections left open between
    uses); skips or fails as the module docstring says when the server does not answer."""
    explicit = os.environ.get(POSTGRES_URL_VARIABLE, "").strip()
    url = explicit or DEFAULT_POSTGRES_URL
    shown = sa.make_url(url).render_as_string(hide_password=True)
    engine: sa.Engine | None = None
    try:
        # A short connect timeout: a firewalled host must not hold the whole suite.
        engine = sa.create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": 10})
        with engine.connect():
            pass
    except (sa.exc.SQLAlchemyError, ImportError) as error:
        if engine is not None:
            engine.dispose()
        if explicit:
            pytest.fail(
                f"PostgreSQL test server {shown} (from {POSTGRES_URL_VARIABLE}) does not "
                f"answer: {error}. Start it or fix the URL; unset {POSTGRES_URL_VARIABLE} "
                "to skip the PostgreSQL tests instead.",
                pytrace=False,
            )
        pytest.skip(
            f"no PostgreSQL server answers at {shown} (the default; "
            f"{POSTGRES_URL_VARIABLE} is not set): {type(error).__name__}"
        )
    yield engine
    engine.dispose()
