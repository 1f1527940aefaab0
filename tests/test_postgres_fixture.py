"""The PostgreSQL test server policy of tests/conftest.py: skip or fail.

A developer without PostgreSQL gets the PostgreSQL tests skipped, with a reason naming the
URL that was tried; CI names the server in ``MEDTWIN_TEST_POSTGRES_URL``, and then a server
that does not answer is an error, never a silent skip. Both are checked here against a
closed port, in a child pytest run whose conftest is the real one with only its default
URL pointed at that port.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

CONFTEST = Path(__file__).with_name("conftest.py")
DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"

TEST_FILE = """
import pytest

@pytest.mark.postgres
def test_needs_the_server(postgres_admin):
    pass
"""


@pytest.fixture
def closed_url() -> str:
    """A PostgreSQL URL on a local port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"postgresql+psycopg://postgres@127.0.0.1:{port}/test"


def _child(pytester: pytest.Pytester, default_url: str) -> None:
    text = CONFTEST.read_text(encoding="utf-8")
    assert text.count(f'"{DEFAULT_URL}"') == 1, "the default URL moved; update this test"
    pytester.makeconftest(text.replace(f'"{DEFAULT_URL}"', f'"{default_url}"'))
    pytester.makeini("[pytest]\nmarkers =\n    postgres: PostgreSQL\n")
    pytester.makepyfile(test_pg=TEST_FILE)


def _run(pytester: pytest.Pytester) -> pytest.RunResult:
    # -p no:medtwin: the policy is the conftest's alone, and a child run without the plug-in
    # starts in a fraction of the time.
    return pytester.runpytest_subprocess("-p", "no:medtwin", "-p", "no:cacheprovider", "-rs")


def test_unset_and_unreachable_default_skips_naming_the_url(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, closed_url: str
) -> None:
    monkeypatch.delenv("MEDTWIN_TEST_POSTGRES_URL", raising=False)
    _child(pytester, closed_url)
    result = _run(pytester)
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(
        [f"SKIPPED*no PostgreSQL server answers at {closed_url}*MEDTWIN_TEST_POSTGRES_URL*"]
    )


def test_named_server_that_does_not_answer_is_an_error(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, closed_url: str
) -> None:
    monkeypatch.setenv("MEDTWIN_TEST_POSTGRES_URL", closed_url)
    # The default stays the real one (it may well answer): the variable alone decides.
    _child(pytester, DEFAULT_URL)
    result = _run(pytester)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [f"*PostgreSQL test server {closed_url} (from MEDTWIN_TEST_POSTGRES_URL) does not*"]
    )
