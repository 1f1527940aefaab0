"""Run life cycle: start a run (its writer takes it from there), mark dead runs interrupted.

A run is ``running`` from :meth:`RunLifecycle.start_run` until its
:class:`~medtwin.hil.store.RunWriter` finishes it. A writer that died (killed process,
power cut) cannot finish it; :meth:`RunLifecycle.mark_stale_runs`, run whenever a store is
opened, marks such runs ``interrupted`` (see ``docs/storage.md``, "Durability").
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from medtwin.drivers.clock import Clock, VirtualClock, WallClock
from medtwin.drivers.errors import StorageError
from medtwin.hil.store.codec import to_json
from medtwin.hil.store.core import INSERT_RETRIES, StoreCore, check_text
from medtwin.hil.store.engine import db_errors
from medtwin.hil.store.liveness import ProcessIdentity, current_process, writer_is_gone
from medtwin.hil.store.records import RunStatus
from medtwin.hil.store.schema import BenchRow, DeviceRow, EventRow, RunRow, table
from medtwin.hil.store.writer import RunWriter, device_row_fields, utc_now
from sqlalchemy import exc
from sqlmodel import select

__all__ = ["RunLifecycle"]


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _clock_info(clock: object) -> tuple[str, datetime]:
    """(clock kind, UTC of scenario time 0) from a Clock or the words wall / virtual."""
    if isinstance(clock, str):
        if clock not in ("wall", "virtual"):
            raise StorageError(f"clock {clock!r}: expected 'wall' or 'virtual'")
        return clock, utc_now()
    if isinstance(clock, VirtualClock):
        return "virtual", clock.started_utc
    if isinstance(clock, WallClock):
        return "wall", clock.started_utc
    if isinstance(clock, Clock):
        raise StorageError(
            f"clock: cannot tell whether {type(clock).__name__} is wall or virtual time; "
            "pass clock='wall' or clock='virtual'"
        )
    raise StorageError(
        f"clock: expected 'wall', 'virtual', a WallClock or a VirtualClock, "
        f"got {type(clock).__name__}"
    )


class RunLifecycle(StoreCore):
    """Starting runs and marking the ones whose writer is gone (a part of ``RunStore``)."""

    def mark_stale_runs(self) -> list[int]:
        """Mark ``interrupted`` every ``running`` run whose writer is gone (see class notes).

        Returns
        -------
        list of int
            Ids of the runs marked now.
        """
        self._check_open()
        now = utc_now()
        me = current_process()
        runs = table(RunRow)
        marked: list[int] = []
        with self._backend.lock, db_errors(self._backend, "checking for stale runs"):
            with self._backend.engine.connect() as conn:
                rows = conn.execute(
                    sa.select(
                        runs.c.id,
                        runs.c.started_utc,
                        runs.c.heartbeat_utc,
                        runs.c.hostname,
                        runs.c.pid,
                        runs.c.process_marker,
                    ).where(runs.c.status == str(RunStatus.RUNNING))
                ).all()
            for run_id, started, heartbeat, hostname, pid, marker in rows:
                writer = ProcessIdentity(hostname=hostname, pid=pid, marker=marker)
                gone = writer_is_gone(writer)
                age_s = (now - heartbeat).total_seconds()
                if gone:
                    reason = f"its writer (pid {pid} on {hostname}) is gone"
                elif age_s > self.stale_after_s:
                    reason = f"its heartbeat is {age_s:.0f} s old (limit {self.stale_after_s:g} s)"
                else:
                    continue
                with self._backend.engine.begin() as conn:
                    # Match the heartbeat read above: a writer that beat meanwhile is alive.
                    updated = conn.execute(
                        sa.update(runs)
                        .where(
                            runs.c.id == run_id,
                            runs.c.status == str(RunStatus.RUNNING),
                            runs.c.heartbeat_utc == heartbeat,
                        )
                        .values(status=str(RunStatus.INTERRUPTED), ended_utc=heartbeat)
                    )
                    if not updated.rowcount:
                        continue
                    conn.execute(
                        sa.insert(table(EventRow)),
                        [
                            {
                                "run_id": run_id,
                                "t_s": (heartbeat - started).total_seconds(),
                                "kind": "note",
                                "device": None,
                                "channel": None,
                                "message": f"marked interrupted: {reason}",
                                "data": {
                                    "marked_by_hostname": me.hostname,
                                    "marked_by_pid": me.pid,
                                    "marked_utc": now.isoformat(),
                                    "heartbeat_age_s": age_s,
                                },
                            }
                        ],
                    )
                marked.append(int(run_id))
        return marked

    def start_run(
        self,
        *,
        bench_name: str,
        bench_text: str,
        scenario_name: str,
        scenario_text: str,
        software_version: str,
        clock: str | Clock,
        twin_params: Any,
        devices: Sequence[Mapping[str, Any]],
    ) -> RunWriter:
        """Record a new ``running`` run and return its writer.

        Parameters
        ----------
        bench_name, bench_text : str
            The bench description (TOML text) as the user wrote it; stored once per
            distinct (name, SHA-256) and shared by the runs that used it.
        scenario_name, scenario_text : str
            The scenario (TOML text); its SHA-256 is stored with the run.
        software_version : str
            medtwin version (and anything else the runner wants, ≤ 64 characters).
        clock : {"wall", "virtual"} or WallClock or VirtualClock
            The run's time base. Given a clock, its ``started_utc`` (the UTC time of
            scenario time 0) is the run's start; given a word, now is.
        twin_params : JSON-able
            The twin's parameters (dataclasses and numpy values are converted).
        devices : list of dict
            One entry per bench device: ``name``, ``kind``, ``protocol``, ``port`` and an
            ``identity`` dict (``model``, ``serial``, ``firmware``) or those keys inline.

        Raises
        ------
        StorageError
            Invalid argument (nothing is written) or a database error.
        """
        self._check_open()
        check_text(bench_name, field="bench_name", max_len=200)
        check_text(bench_text, field="bench_text")
        check_text(scenario_name, field="scenario_name", max_len=200)
        check_text(scenario_text, field="scenario_text")
        check_text(software_version, field="software_version", max_len=64)
        if not bench_name or not scenario_name:
            raise StorageError("bench_name and scenario_name must not be empty")
        clock_kind, started_utc = _clock_info(clock)
        twin_json = to_json(twin_params, where="twin_params")
        if not isinstance(devices, Sequence) or isinstance(devices, str | bytes):  # type: ignore[unreachable]
            raise StorageError(f"devices: expected a list of dicts, got {type(devices).__name__}")
        device_fields = [device_row_fields(d, i) for i, d in enumerate(devices)]
        names = [d["name"] for d in device_fields]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise StorageError(f"devices: duplicate name(s) {', '.join(duplicates)}")

        me = current_process()
        bench_id = self._bench_id(bench_name, bench_text)
        now = utc_now()
        with self._backend.session("starting a run") as session:
            run = RunRow(
                status=str(RunStatus.RUNNING),
                started_utc=started_utc,
                heartbeat_utc=now,
                bench_id=bench_id,
                scenario_name=scenario_name,
                scenario_text=scenario_text,
                scenario_sha256=_sha256(scenario_text),
                software_version=software_version,
                clock_kind=clock_kind,
                twin_params=twin_json,
                pid=me.pid,
                hostname=me.hostname,
                process_marker=me.marker,
            )
            session.add(run)
            session.flush()
            run_id = int(run.id or 0)
            for fields in device_fields:
                session.add(DeviceRow(run_id=run_id, bench_id=bench_id, **fields))
            session.commit()
        writer = RunWriter(
            self._backend,
            run_id=run_id,
            started_utc=started_utc,
            flush_interval_s=self.flush_interval_s,
            max_block_samples=self.max_block_samples,
        )
        self._writers.add(writer)
        return writer

    def _bench_id(self, name: str, text: str) -> int:
        digest = _sha256(text)
        query = select(BenchRow.id).where(BenchRow.name == name, BenchRow.sha256 == digest)
        for _ in range(INSERT_RETRIES):
            with self._backend.session(f"storing bench {name!r}") as session:
                found = session.exec(query).first()
                if found is not None:
                    return int(found)
                row = BenchRow(name=name, text=text, sha256=digest)
                session.add(row)
                try:
                    session.commit()
                except exc.IntegrityError:
                    continue  # stored by another process meanwhile: read theirs
                return int(row.id or 0)
        raise StorageError(f"storing bench {name!r} in {self.url} kept conflicting; try again")
