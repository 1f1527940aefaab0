"""What every part of :class:`~medtwin.hil.store.RunStore` shares: the open database and checks.

:class:`StoreCore` holds the attributes a store is opened with (the backend, the URL, the
settings its writers get) and the checks the parts use (is the store open, does a run exist).
The parts are mixins on top of it, one per job: :mod:`.lifecycle` (start runs, mark dead
ones interrupted), :mod:`.reading` (list and load runs), :mod:`.verdicts` and
:mod:`.calibrations`; :mod:`.runstore` opens and closes the database and composes them.
The argument checks below are shared by the parts that write.
"""

from __future__ import annotations

import math
import threading
import weakref
from typing import TYPE_CHECKING, Final

import numpy as np
import sqlalchemy as sa
from medtwin.drivers.errors import RunNotFound, StorageError
from medtwin.hil.store.engine import Backend
from medtwin.hil.store.schema import RunRow, table

if TYPE_CHECKING:
    from medtwin.hil.store.writer import RunWriter

__all__ = ["INSERT_RETRIES", "StoreCore", "check_text", "optional_float"]

# How often an insert that lost a race with another process (a unique key taken meanwhile)
# is retried before the store gives up.
INSERT_RETRIES: Final = 5


class StoreCore:
    """The state every part of the store uses; see :class:`~medtwin.hil.store.RunStore`."""

    _backend: Backend
    _url_text: str
    _closed: bool
    _close_lock: threading.Lock
    _writers: weakref.WeakSet[RunWriter]
    stale_after_s: float
    flush_interval_s: float
    max_block_samples: int
    #: Opened for reading only (see :class:`~medtwin.hil.store.RunStore`'s ``read_only``).
    read_only: bool

    @property
    def url(self) -> str:
        """The database URL as given, with its password hidden.

        A relative SQLite file is opened at its absolute path as of opening the store
        (``sqlite_path`` gives it), so a later change of directory does not switch files.
        """
        return self._url_text

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError(f"the run store {self.url} is closed")

    def _not_found(self, run_id: object) -> RunNotFound:
        return RunNotFound(f"no run {run_id} in {self.url} (`medtwin runs` lists them)")

    def _require_run(self, conn: sa.Connection, run_id: object) -> None:
        runs = table(RunRow)
        if conn.execute(sa.select(runs.c.id).where(runs.c.id == run_id)).first() is None:
            raise self._not_found(run_id)


def check_text(value: object, *, field: str, max_len: int | None = None) -> str:
    if not isinstance(value, str):
        raise StorageError(f"{field}: expected a string, got {type(value).__name__}")
    if max_len is not None and len(value) > max_len:
        raise StorageError(f"{field}: longer than {max_len} characters")
    return value


def optional_float(value: object, *, field: str, nan_as_none: bool) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise StorageError(f"{field}: expected a number or None, got {type(value).__name__}")
    number = float(value)
    if math.isnan(number):
        if nan_as_none:
            return None
        raise StorageError(f"{field}: NaN is not accepted here (use None)")
    return number
