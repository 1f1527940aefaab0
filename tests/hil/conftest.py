"""Fixtures shared by the hil tests: the two store back ends, bench and scenario files,
runs on the emulated benches (in this process or in a ``medtwin run`` child process), and
waiting on another process's run.

PostgreSQL is the test server of ``postgres_admin`` (tests/conftest.py: the server named by
``MEDTWIN_TEST_POSTGRES_URL``, which must answer, or the local default, skipped when it does
not); each test gets a schema of its own, dropped afterwards.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from medtwin.drivers.errors import StorageError
from medtwin.hil.config import load_bench, load_scenario
from medtwin.hil.packaged import bench_path, scenario_path
from medtwin.hil.runner import RunResult
from medtwin.hil.session import run_scenario
from medtwin.hil.store import RunStore


def _url_in_schema(admin: sa.Engine, schema: str) -> str:
    """The test server's URL with ``schema`` first on the search path."""
    url = admin.url
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
        yield _url_in_schema(admin, schema)


@pytest.fixture
def postgres_schema(postgres_admin: sa.Engine) -> Iterator[tuple[str, str]]:
    """(name, URL) of a fresh schema on the test server, dropped afterwards."""
    with _fresh_schema(postgres_admin) as schema:
        yield schema, _url_in_schema(postgres_admin, schema)


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


# --------------------------------------------------------------------------- files and runs

#: The syringe the test scenarios load unless they say otherwise.
SYRINGE = "BD Plastipak 50 mL"


@pytest.fixture(scope="session")
def write_toml() -> Callable[[Path, str, str], Path]:
    """``write_toml(directory, name, text)``: write a bench or scenario file (UTF-8) and
    return its path."""

    def write(directory: Path, name: str, text: str) -> Path:
        path = directory / name
        path.write_text(text, encoding="utf-8")
        return path

    return write


@pytest.fixture(scope="session")
def write_scenario(write_toml: Callable[[Path, str, str], Path]) -> Callable[..., Path]:
    """``write_scenario(directory, *, name, duration, sampling, rate_ml_h, syringe=SYRINGE,
    tare=True, extra="")``: a scenario file that starts an infusion at 0 s.

    At 0 s it loads ``syringe`` (None: the pump's own), sets ``rate_ml_h``, tares the
    balance (unless ``tare`` is false) and starts the pump; ``sampling`` maps device names
    to sample periods; ``extra`` is TOML appended as is (later steps, procedures). The file
    is ``directory/<name>.toml``.
    """

    def write(
        directory: Path,
        *,
        name: str,
        duration: str,
        sampling: Mapping[str, str],
        rate_ml_h: float,
        syringe: str | None = SYRINGE,
        tare: bool = True,
        extra: str = "",
    ) -> Path:
        lines = [f'name = "{name}"', f'duration = "{duration}"', "[sampling]"]
        lines += [f'{device} = "{period}"' for device, period in sampling.items()]
        steps: list[tuple[str, str | None]] = []
        if syringe is not None:
            steps.append(("set_diameter", f'syringe = "{syringe}"'))
        steps.append(("set_rate", f"rate_ml_h = {float(rate_ml_h)!r}"))
        if tare:
            steps.append(("tare", None))
        steps.append(("start", None))
        for action, argument in steps:
            lines += ["[[steps]]", 'at = "0s"', f'action = "{action}"']
            if argument is not None:
                lines.append(argument)
        return write_toml(directory, f"{name}.toml", "\n".join(lines) + "\n" + extra)

    return write


@pytest.fixture(scope="session")
def make_run() -> Callable[..., RunResult]:
    """``make_run(db_url, bench, scenario, *, status="completed")``: run ``scenario`` on
    ``bench`` on the virtual clock, stored in ``db_url``; assert the run ended with
    ``status`` and return its result. ``bench`` and ``scenario`` are files, or the names
    of the shipped ones (``"emulated-nominal"``, ``"iec-flow-5mlh"``)."""

    def run(
        db_url: str, bench: str | Path, scenario: str | Path, *, status: str = "completed"
    ) -> RunResult:
        result = run_scenario(
            load_bench(bench_path(bench) if isinstance(bench, str) else bench),
            load_scenario(scenario_path(scenario) if isinstance(scenario, str) else scenario),
            db_url=db_url,
            clock="virtual",
            progress=False,
        )
        assert result.status == status, (bench, scenario, result.status)
        return result

    return run


@pytest.fixture
def run_process() -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """``run_process(bench, scenario, db_url, *, output=subprocess.PIPE)``: ``medtwin run
    BENCH SCENARIO --db DB_URL --json`` in a child process (unbuffered; stdout and stderr
    go to ``output``). A child still running at teardown is killed and reaped."""
    started: list[subprocess.Popen[bytes]] = []

    def start(
        bench: Path, scenario: Path, db_url: str, *, output: int = subprocess.PIPE
    ) -> subprocess.Popen[bytes]:
        command = ["run", str(bench), str(scenario), "--db", db_url, "--json"]
        proc = subprocess.Popen(
            [sys.executable, "-m", "medtwin.hil", *command],
            stdout=output,
            stderr=output,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


@pytest.fixture
def emulate() -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """``emulate(*args)``: ``medtwin emulate ARGS --json`` in a child process (stdout and
    stderr piped). A child still running at teardown is killed and reaped."""
    started: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "medtwin.hil", "emulate", *args, "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
