"""Writing one run: buffered samples and events, made durable at least every second.

:meth:`RunWriter.append` and :meth:`RunWriter.add_event` only buffer (a list append under a
lock, well under a microsecond for a scalar sample), so the runner's event loop never waits
for the database. A daemon *flusher* thread writes everything buffered every
``flush_interval_s / 2`` (default every 0.5 s) in one transaction: each channel's pending
samples become one or more blocks (at most ``max_block_samples`` each), the events their
rows, and the run's heartbeat is set to now. Data appended at time *t* is therefore
committed by *t* + ``flush_interval_s`` as long as one flush takes less than half the
interval, even if nothing more is ever appended, and a process killed at any instant loses
at most that last interval.

Failure handling: if a flush fails (database locked for longer than the lock timeout,
server gone), the rows it tried to write stay queued *with the block numbers they were
given* and the next flush retries them, so nothing is lost or duplicated; an explicit
:meth:`RunWriter.flush` or :meth:`RunWriter.finish` raises :class:`StorageError`, while the
background flusher logs a warning and tries again. A failure can also come *after* the
server committed (the connection drops before the acknowledgement arrives). Each flush sets
the run's heartbeat to its own timestamp in the same transaction, so the retry first reads
the heartbeat: if it is the failed attempt's, that attempt landed and only what came after
it is written (no duplicated events, no clash on the block numbers).

If another process decided this run was stale (its heartbeat too old, e.g. while this
process was stopped with Ctrl-Z) and marked it ``interrupted``, the next successful flush
sets it back to ``running`` and records a ``note`` event saying so.

Threads: any thread may call the writer. Buffers are guarded by one lock, flushes by
another; the flusher is a daemon thread stopped by :meth:`finish` (or by closing the
store, or at interpreter exit, when an unfinished run is flushed and marked
``interrupted``).
"""

from __future__ import annotations

import atexit
import logging
import math
import threading
import time
import weakref
from collections.abc import Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from medtwin.drivers.errors import StorageError
from medtwin.hil.store.codec import BLOCK_DTYPE, encode_block, to_json
from medtwin.hil.store.engine import Backend
from medtwin.hil.store.records import RunStatus, Source
from medtwin.hil.store.schema import ChannelRow, EventRow, RunRow, SampleBlockRow, table

__all__ = ["RunWriter"]

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]

_FINAL_STATUSES = frozenset(RunStatus) - {RunStatus.RUNNING}
_MAX_KIND_LEN = 32

# Writers whose run is still open; flushed and marked interrupted at interpreter exit
# (the flusher is a daemon thread and would otherwise die with up to one interval unsaved).
_OPEN_WRITERS: weakref.WeakSet[RunWriter] = weakref.WeakSet()


def _close_open_writers_at_exit() -> None:
    for writer in list(_OPEN_WRITERS):
        try:
            writer.abandon("the process exited without finishing the run")
        except Exception as error:  # pragma: no cover - best effort at exit
            log.warning("run %s: could not be closed at exit: %s", writer.run_id, error)


atexit.register(_close_open_writers_at_exit)


def utc_now() -> datetime:
    return datetime.now(UTC)


class _ChannelBuffer:
    """Samples of one channel not yet handed to a flush, in append order.

    Scalars (the live path: one sample per tick) go to plain lists, which is several times
    cheaper than building two one-element arrays per call; arrays are kept as chunks. A
    run of scalars is closed into a chunk before the next array so the order is kept.
    """

    __slots__ = ("n", "t_chunks", "t_scalars", "v_chunks", "v_scalars")

    def __init__(self) -> None:
        self.n = 0
        self.t_chunks: list[FloatArray] = []
        self.v_chunks: list[FloatArray] = []
        self.t_scalars: list[float] = []
        self.v_scalars: list[float] = []

    def _close_scalars(self) -> None:
        if self.t_scalars:
            self.t_chunks.append(np.array(self.t_scalars, dtype=np.float64))
            self.v_chunks.append(np.array(self.v_scalars, dtype=np.float64))
            self.t_scalars = []
            self.v_scalars = []

    def add_arrays(self, t_s: FloatArray, values: FloatArray) -> None:
        self._close_scalars()
        self.t_chunks.append(t_s)
        self.v_chunks.append(values)
        self.n += int(t_s.shape[0])

    def take(self) -> tuple[list[FloatArray], list[FloatArray]]:
        self._close_scalars()
        taken = (self.t_chunks, self.v_chunks)
        self.t_chunks = []
        self.v_chunks = []
        self.n = 0
        return taken


class _Channel:
    __slots__ = ("buffer", "device", "name", "next_seq", "source")

    def __init__(self, name: str, source: Source, device: str | None) -> None:
        self.name = name
        self.source = source
        self.device = device
        self.buffer = _ChannelBuffer()
        self.next_seq = 0  # assigned under the flush lock only

    def label(self) -> str:
        where = f" of {self.device}" if self.device else ""
        return f"{self.source} channel {self.name!r}{where}"


def _as_samples(x: Any, *, what: str) -> FloatArray:
    """Copy of ``x`` as a 1-D float64 array (a scalar becomes shape (1,))."""
    if x is None:
        raise StorageError(f"{what}: expected numbers, got None")
    if np.iscomplexobj(x):
        raise StorageError(f"{what}: complex numbers cannot be stored (expected real floats)")
    try:
        array = np.array(x, dtype=np.float64, copy=True)
    except (TypeError, ValueError) as error:
        raise StorageError(f"{what}: expected numbers, got {type(x).__name__}") from error
    if array.ndim == 0:
        return array.reshape(1)
    if array.ndim != 1:
        raise StorageError(f"{what}: expected a scalar or a 1-D array, got shape {array.shape}")
    return array


class RunWriter:
    """Writes one run; created by :meth:`medtwin.hil.store.RunStore.start_run`.

    Usable as a context manager: leaving the block finishes the run ``completed``, or
    ``aborted`` (with a ``note`` event naming the exception) if an exception escaped,
    unless :meth:`finish` was called inside.

    Attributes
    ----------
    run_id : int
        The run's id in the store.
    started_utc : datetime
        UTC wall-clock time of scenario time 0.
    flush_interval_s : float
        Everything appended is committed within this many seconds of wall time.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        run_id: int,
        started_utc: datetime,
        flush_interval_s: float,
        max_block_samples: int,
    ) -> None:
        self.run_id = run_id
        self.started_utc = started_utc
        self.flush_interval_s = float(flush_interval_s)
        self._max_block = int(max_block_samples)
        self._backend = backend
        self._lock = threading.Lock()  # buffers, channel table, state flags
        self._flush_lock = threading.Lock()  # one flush (or channel insert) at a time
        self._channels: dict[int, _Channel] = {}
        self._channel_keys: dict[tuple[str, str, str | None], int] = {}
        self._events: list[dict[str, Any]] = []
        self._unwritten_blocks: list[dict[str, Any]] = []
        self._unwritten_events: list[dict[str, Any]] = []
        # The last flush that failed, as (its heartbeat, blocks, events it wrote): it may
        # have been committed all the same (see the module notes), until a read says.
        self._unsettled: tuple[datetime, int, int] | None = None
        self._status: RunStatus | None = None
        self._finishing = False
        self._last_error: StorageError | None = None
        self._last_write = time.monotonic()
        self._samples_written = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._flusher_main, name=f"medtwin-store-flush-run{run_id}", daemon=True
        )
        _OPEN_WRITERS.add(self)
        self._thread.start()

    # -- state ----------------------------------------------------------------------

    @property
    def status(self) -> RunStatus:
        """``running`` until :meth:`finish` succeeded, then the final status."""
        return self._status or RunStatus.RUNNING

    @property
    def samples_written(self) -> int:
        """Samples committed to the database so far."""
        return self._samples_written

    @property
    def pending_samples(self) -> int:
        """Samples appended but not yet committed."""
        with self._lock:
            buffered = sum(ch.buffer.n for ch in self._channels.values())
        return buffered + sum(int(row["n"]) for row in self._unwritten_blocks)

    @property
    def last_error(self) -> StorageError | None:
        """The error of the last failed flush (None once a flush succeeds)."""
        return self._last_error

    def _check_open_locked(self) -> None:
        if self._status is not None or self._finishing:
            state = self._status or "finishing"
            raise StorageError(f"run {self.run_id} is {state}: nothing more can be written")

    # -- channels, samples, events ----------------------------------------------------

    def add_channel(
        self, name: str, *, unit: str, source: Source | str, device: str | None = None
    ) -> int:
        """Declare a time series and return its id (for :meth:`append`).

        Parameters
        ----------
        name : str
            Channel name, e.g. ``"volume_ml"``; unique per (source, device) in a run.
        unit : str
            Unit of the values, e.g. ``"mL"`` (``""`` for dimensionless).
        source : {"real", "twin"}
            Measured on the device, or computed by the twin.
        device : str, optional
            The bench device the channel belongs to.

        Raises
        ------
        StorageError
            Invalid argument, a duplicate channel, a finished run, or a database error.
        """
        where = f"run {self.run_id}: add_channel({name!r})"
        if not isinstance(name, str) or not name.strip() or len(name) > 200:
            raise StorageError(f"{where}: name must be a non-empty string of ≤ 200 characters")
        if not isinstance(unit, str) or len(unit) > 32:
            raise StorageError(f"{where}: unit must be a string of ≤ 32 characters")
        try:
            src = Source(source)
        except ValueError:
            raise StorageError(f"{where}: source {source!r}: expected 'real' or 'twin'") from None
        if device is not None and (not isinstance(device, str) or not device):
            raise StorageError(f"{where}: device must be None or a non-empty string")
        key = (name, str(src), device)
        with self._flush_lock:
            with self._lock:
                self._check_open_locked()
                if key in self._channel_keys:
                    raise StorageError(
                        f"{where}: run already has {_Channel(name, src, device).label()} "
                        f"(id {self._channel_keys[key]})"
                    )
            row = ChannelRow(run_id=self.run_id, name=name, unit=unit, source=str(src))
            row.device = device
            with self._backend.session(where) as session:
                session.add(row)
                session.commit()
                channel_id = int(row.id or 0)
            with self._lock:
                self._channels[channel_id] = _Channel(name, src, device)
                self._channel_keys[key] = channel_id
        return channel_id

    def channel_id(self, name: str, *, source: Source | str, device: str | None = None) -> int:
        """Id of a channel added earlier (StorageError if there is none)."""
        key = (name, str(source), device)
        with self._lock:
            if key not in self._channel_keys:
                raise StorageError(f"run {self.run_id} has no {source} channel {name!r}")
            return self._channel_keys[key]

    def append(self, channel_id: int, t_s: Any, values: Any) -> None:
        """Buffer samples of one channel; committed within ``flush_interval_s``.

        Parameters
        ----------
        channel_id : int
            From :meth:`add_channel`.
        t_s : float or array_like, shape (n,)
            Scenario time of each sample, s; must be finite.
        values : float or array_like, shape (n,)
            The samples (NaN and ±inf are stored as they are). Copied: the caller may
            reuse its arrays.

        Raises
        ------
        StorageError
            Unknown channel, shapes that differ, non-finite or non-numeric times, or a
            finished run. Nothing of a rejected call is kept; earlier data is untouched.
        """
        if isinstance(t_s, float | int) and isinstance(values, float | int):
            # Live path: one sample per call, no numpy objects.
            t_s = float(t_s)
            values = float(values)
            if not math.isfinite(t_s):
                raise StorageError(
                    f"run {self.run_id} channel {channel_id}: t_s={t_s!r} is not finite"
                )
            with self._lock:
                self._check_open_locked()
                channel = self._channels.get(channel_id)
                if channel is None:
                    raise self._unknown_channel(channel_id)
                buffer = channel.buffer
                buffer.t_scalars.append(t_s)
                buffer.v_scalars.append(values)
                buffer.n += 1
            return
        what = f"run {self.run_id} channel {channel_id}"
        t_arr = _as_samples(t_s, what=f"{what} t_s")
        v_arr = _as_samples(values, what=f"{what} values")
        if t_arr.shape != v_arr.shape:
            raise StorageError(
                f"{what}: t_s has {t_arr.shape[0]} samples but values has {v_arr.shape[0]}"
            )
        if not np.isfinite(t_arr).all():
            bad = int(np.flatnonzero(~np.isfinite(t_arr))[0])
            raise StorageError(f"{what}: t_s[{bad}]={t_arr[bad]!r} is not finite")
        if t_arr.shape[0] == 0:
            with self._lock:
                if channel_id not in self._channels:
                    raise self._unknown_channel(channel_id)
            return
        with self._lock:
            self._check_open_locked()
            channel = self._channels.get(channel_id)
            if channel is None:
                raise self._unknown_channel(channel_id)
            channel.buffer.add_arrays(t_arr, v_arr)

    def _unknown_channel(self, channel_id: object) -> StorageError:
        known = ", ".join(f"{cid} ({ch.label()})" for cid, ch in self._channels.items())
        return StorageError(
            f"run {self.run_id}: no channel with id {channel_id!r} "
            f"(channels of this run: {known or 'none; call add_channel first'})"
        )

    def add_event(
        self,
        t_s: float,
        kind: str,
        *,
        device: str | None = None,
        channel: str | None = None,
        message: str = "",
        data: Any = None,
    ) -> None:
        """Buffer an event at scenario time ``t_s`` (s); committed with the next flush.

        ``kind`` is a lower-case word (see :data:`medtwin.hil.store.EVENT_KINDS`); ``data`` is
        any JSON-able value (numpy values and dataclasses are converted), copied now.
        """
        where = f"run {self.run_id}: event"
        try:
            t = float(t_s)
        except (TypeError, ValueError):
            raise StorageError(f"{where}: t_s={t_s!r} is not a number") from None
        if not math.isfinite(t):
            raise StorageError(f"{where}: t_s={t_s!r} is not finite")
        if not isinstance(kind, str) or not kind or len(kind) > _MAX_KIND_LEN:
            raise StorageError(
                f"{where}: kind {kind!r}: expected a word of ≤ {_MAX_KIND_LEN} characters "
                "such as 'command', 'alarm', 'fault', 'drift', 'lost', 'note'"
            )
        for label, text in (("device", device), ("channel", channel)):
            if text is not None and not isinstance(text, str):
                raise StorageError(f"{where}: {label} must be a string or None")
        if not isinstance(message, str):
            raise StorageError(f"{where}: message must be a string")
        row = {
            "run_id": self.run_id,
            "t_s": t,
            "kind": kind,
            "device": device,
            "channel": channel,
            "message": message,
            "data": to_json(data, where=f"{where} data"),
        }
        with self._lock:
            self._check_open_locked()
            self._events.append(row)

    # -- flushing -----------------------------------------------------------------------

    def flush(self) -> None:
        """Commit everything buffered now (and update the heartbeat).

        Raises
        ------
        StorageError
            The database refused the write; the data stays queued for the next flush.
        """
        with self._flush_lock:
            self._flush_locked(final_status=None, summary=None)

    def _take_pending_locked(self) -> None:
        """Move buffers into the unwritten queue as block rows (holds the flush lock)."""
        with self._lock:
            taken = [
                (cid, ch, ch.buffer.take()) for cid, ch in self._channels.items() if ch.buffer.n
            ]
            events, self._events = self._events, []
        for cid, channel, (t_chunks, v_chunks) in taken:
            t_all = t_chunks[0] if len(t_chunks) == 1 else np.concatenate(t_chunks)
            v_all = v_chunks[0] if len(v_chunks) == 1 else np.concatenate(v_chunks)
            for start in range(0, t_all.shape[0], self._max_block):
                t_block = t_all[start : start + self._max_block]
                v_block = v_all[start : start + self._max_block]
                self._unwritten_blocks.append(
                    {
                        "channel_id": cid,
                        "seq": channel.next_seq,
                        "n": int(t_block.shape[0]),
                        "t_first_s": float(t_block[0]),
                        "t_last_s": float(t_block[-1]),
                        "dtype": BLOCK_DTYPE,
                        "t_s": encode_block(t_block),
                        "value": encode_block(v_block),
                    }
                )
                channel.next_seq += 1
        self._unwritten_events.extend(events)

    def _flush_locked(self, *, final_status: RunStatus | None, summary: Any) -> None:
        self._take_pending_locked()
        runs = table(RunRow)
        action = f"writing run {self.run_id}"
        try:
            if self._unsettled is not None:
                self._settle_failed_flush()
            blocks = self._unwritten_blocks
            events = self._unwritten_events
            now = utc_now()
            n_blocks, n_events = len(blocks), len(events)
            self._unsettled = (now, n_blocks, n_events)
            with self._backend.connection(action, transaction=True) as conn:
                if blocks:
                    conn.execute(sa.insert(table(SampleBlockRow)), blocks)
                if events:
                    conn.execute(sa.insert(table(EventRow)), events)
                if final_status is not None:
                    conn.execute(
                        sa.update(runs)
                        .where(runs.c.id == self.run_id)
                        .values(
                            status=str(final_status),
                            ended_utc=now,
                            heartbeat_utc=now,
                            summary=summary,
                        )
                    )
                else:
                    self._heartbeat(conn, now)
        except StorageError as error:
            self._last_error = error
            raise
        self._unsettled = None
        self._written(n_blocks, n_events)
        self._last_write = time.monotonic()
        self._last_error = None

    def _written(self, n_blocks: int, n_events: int) -> None:
        """The first rows of the unwritten lists are in the database: drop them."""
        self._samples_written += sum(int(row["n"]) for row in self._unwritten_blocks[:n_blocks])
        del self._unwritten_blocks[:n_blocks]
        del self._unwritten_events[:n_events]

    def _settle_failed_flush(self) -> None:
        """Find out whether the last failed flush was committed after all (its heartbeat is
        in the database) and, if so, drop what it wrote from the rows still to write."""
        assert self._unsettled is not None
        heartbeat, n_blocks, n_events = self._unsettled
        runs = table(RunRow)
        with self._backend.connection(f"checking the last write of run {self.run_id}") as conn:
            stored = conn.execute(
                sa.select(runs.c.heartbeat_utc).where(runs.c.id == self.run_id)
            ).scalar()
        if stored == heartbeat:
            log.warning(
                "run %s: a flush reported as failed had been committed; not writing it again",
                self.run_id,
            )
            self._written(n_blocks, n_events)
        self._unsettled = None

    def _heartbeat(self, conn: sa.Connection, now: datetime) -> None:
        runs = table(RunRow)
        updated = conn.execute(
            sa.update(runs)
            .where(runs.c.id == self.run_id, runs.c.status == str(RunStatus.RUNNING))
            .values(heartbeat_utc=now)
        )
        if updated.rowcount:
            return
        status = conn.execute(sa.select(runs.c.status).where(runs.c.id == self.run_id)).scalar()
        if status == str(RunStatus.INTERRUPTED):
            # Another process judged this run stale while we were alive (stopped,
            # or cut off from the database): take it back and say so.
            conn.execute(
                sa.update(runs)
                .where(runs.c.id == self.run_id)
                .values(status=str(RunStatus.RUNNING), ended_utc=None, heartbeat_utc=now)
            )
            conn.execute(
                sa.insert(table(EventRow)),
                [
                    {
                        "run_id": self.run_id,
                        "t_s": (now - self.started_utc).total_seconds(),
                        "kind": "note",
                        "device": None,
                        "channel": None,
                        "message": (
                            "the run had been marked interrupted by another process "
                            "(stale heartbeat) while its writer was still alive; resumed"
                        ),
                        "data": None,
                    }
                ],
            )
            log.warning(
                "run %s: was marked interrupted while alive; set back to running", self.run_id
            )

    def _flusher_main(self) -> None:
        period_s = self.flush_interval_s / 2
        while not self._stop.wait(period_s):
            with self._lock:
                idle = not self._events and not any(ch.buffer.n for ch in self._channels.values())
            if (
                idle
                and not self._unwritten_blocks
                and time.monotonic() - self._last_write < self.flush_interval_s
            ):
                continue  # nothing to write and the heartbeat is recent
            with self._flush_lock:
                if self._status is not None:
                    return
                try:
                    self._flush_locked(final_status=None, summary=None)
                except StorageError as error:
                    log.warning(
                        "run %s: background flush failed, will retry: %s", self.run_id, error
                    )
                except Exception as error:  # pragma: no cover - never let the thread die
                    log.exception("run %s: unexpected error in the flusher", self.run_id)
                    self._last_error = StorageError(f"run {self.run_id}: flusher: {error}")

    # -- the end ---------------------------------------------------------------------

    def finish(self, status: RunStatus | str, *, summary: Any = None) -> None:
        """Commit everything, set the final status and summary, stop the flusher.

        Parameters
        ----------
        status : {"completed", "aborted", "degraded", "interrupted"}
        summary : JSON-able, optional
            What the runner wants to keep about the run (numbers, verdict counts...).

        Raises
        ------
        StorageError
            Invalid status or summary, the run is already finished, or the database
            refused the write (then nothing is lost: the flusher keeps retrying and
            ``finish`` may be called again).
        """
        try:
            final = RunStatus(status)
        except ValueError:
            final = None
        if final is None or final not in _FINAL_STATUSES:
            raise StorageError(
                f"run {self.run_id}: finish status {status!r}: expected one of "
                + ", ".join(sorted(_FINAL_STATUSES))
            )
        summary_json = to_json(summary, where=f"run {self.run_id} summary")
        with self._flush_lock:
            with self._lock:
                if self._status is not None:
                    raise StorageError(f"run {self.run_id} is already {self._status}")
                self._finishing = True  # no appends may slip in after the final flush
            try:
                self._flush_locked(final_status=final, summary=summary_json)
            except BaseException:
                with self._lock:
                    self._finishing = False
                raise
            with self._lock:
                self._status = final
                self._finishing = False
        self._stop_flusher()

    def abandon(self, reason: str) -> None:
        """Flush and mark the run ``interrupted`` with a ``note`` event giving ``reason``
        (used when the store is closed, or the interpreter exits, with the run open)."""
        if self._status is not None:
            return
        t_s = (utc_now() - self.started_utc).total_seconds()
        with self._lock:
            if not self._finishing:
                self._events.append(
                    {
                        "run_id": self.run_id,
                        "t_s": t_s,
                        "kind": "note",
                        "device": None,
                        "channel": None,
                        "message": f"run not finished: {reason}",
                        "data": None,
                    }
                )
        try:
            self.finish(RunStatus.INTERRUPTED)
        except StorageError:
            if self.status is not RunStatus.RUNNING:
                return  # another thread finished it meanwhile
            raise

    def _stop_flusher(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()
        _OPEN_WRITERS.discard(self)

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._status is not None:
            return
        if exc is None:
            self.finish(RunStatus.COMPLETED)
            return
        with self._lock:
            self._events.append(
                {
                    "run_id": self.run_id,
                    "t_s": (utc_now() - self.started_utc).total_seconds(),
                    "kind": "note",
                    "device": None,
                    "channel": None,
                    "message": f"run aborted by {type(exc).__name__}: {exc}",
                    "data": None,
                }
            )
        self.finish(RunStatus.ABORTED)

    def __repr__(self) -> str:
        return f"<RunWriter run {self.run_id} {self.status}>"


def device_row_fields(device: Mapping[str, Any], index: int) -> dict[str, Any]:
    """Validated columns of one entry of ``start_run(devices=...)``.

    An entry has ``name`` and optionally ``kind``, ``protocol``, ``port`` and either an
    ``identity`` mapping or the identity keys ``model``, ``serial``, ``firmware`` inline.
    """
    where = f"devices[{index}]"
    if not isinstance(device, Mapping):
        raise StorageError(f"{where}: expected a dict, got {type(device).__name__}")
    allowed = {"name", "kind", "protocol", "port", "identity", "model", "serial", "firmware"}
    unknown = sorted(set(device) - allowed)
    if unknown:
        raise StorageError(
            f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; expected "
            + ", ".join(sorted(allowed))
        )
    name = device.get("name")
    if not isinstance(name, str) or not name:
        raise StorageError(f"{where}.name: expected a non-empty string")
    fields: dict[str, Any] = {"name": name}
    for key in ("kind", "protocol", "port"):
        value = device.get(key, "")
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise StorageError(f"{where}.{key}: expected a string, got {type(value).__name__}")
        fields[key] = value
    identity: Any = device.get("identity")
    inline = {k: device[k] for k in ("model", "serial", "firmware") if k in device}
    if identity is not None and inline:
        raise StorageError(f"{where}: give either identity={{...}} or model/serial/firmware")
    if identity is None:
        identity = inline
    if not isinstance(identity, Mapping):
        raise StorageError(f"{where}.identity: expected a dict (model, serial, firmware)")
    fields["identity"] = to_json(dict(identity), where=f"{where}.identity")
    return fields
