"""Reading runs back: the run list, one run's metadata, and a whole run as numpy arrays.

Samples are stored as blocks of raw little-endian float64 (:mod:`.codec`); a run is read
back with one query per table and the blocks of each channel concatenated in append order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import sqlalchemy as sa
from medtwin.hil.store.codec import decode_block, from_json
from medtwin.hil.store.core import StoreCore
from medtwin.hil.store.records import (
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
from medtwin.hil.store.schema import (
    BenchRow,
    ChannelRow,
    DeviceRow,
    EventRow,
    RunRow,
    SampleBlockRow,
    VerdictRow,
    table,
)

__all__ = ["RunReader"]


def _fetch_blocks(conn: sa.Connection, query: sa.Select[Any]) -> Sequence[Any]:
    """Rows of a sample-block query.

    On PostgreSQL with psycopg the query runs on a *binary* cursor: BYTEA then travels as
    raw bytes instead of hex text, which reads blocks 4-5 times faster (measured:
    160 MB of blocks in 0.10 s instead of 0.45 s). The rows are plain tuples either way.
    """
    dialect = conn.dialect
    if dialect.name == "postgresql" and dialect.driver == "psycopg":
        compiled = query.compile(dialect=dialect)
        driver_connection: Any = conn.connection.driver_connection
        with driver_connection.cursor(binary=True) as cursor:
            cursor.execute(str(compiled), compiled.params)
            rows: list[Any] = cursor.fetchall()
            return rows
    return conn.execute(query).all()


class RunReader(StoreCore):
    """Queries over stored runs (a part of ``RunStore``)."""

    def _infos(self, conn: sa.Connection, run_id: int | None) -> list[RunInfo]:
        runs, benches = table(RunRow), table(BenchRow)
        channels, blocks = table(ChannelRow), table(SampleBlockRow)
        counts = (
            sa.select(
                channels.c.run_id.label("run_id"),
                sa.func.count(sa.distinct(channels.c.id)).label("channel_count"),
                sa.func.coalesce(sa.func.sum(blocks.c.n), 0).label("sample_count"),
            )
            .select_from(channels.outerjoin(blocks, blocks.c.channel_id == channels.c.id))
            .group_by(channels.c.run_id)
        )
        if run_id is not None:
            counts = counts.where(channels.c.run_id == run_id)
        sub = counts.subquery()
        query = (
            sa.select(
                runs.c.id,
                runs.c.status,
                runs.c.started_utc,
                runs.c.ended_utc,
                runs.c.heartbeat_utc,
                benches.c.name,
                benches.c.sha256,
                runs.c.scenario_name,
                runs.c.scenario_sha256,
                runs.c.software_version,
                runs.c.clock_kind,
                runs.c.hostname,
                runs.c.pid,
                sa.func.coalesce(sub.c.channel_count, 0),
                sa.func.coalesce(sub.c.sample_count, 0),
            )
            .select_from(
                runs.join(benches, benches.c.id == runs.c.bench_id).outerjoin(
                    sub, sub.c.run_id == runs.c.id
                )
            )
            .order_by(runs.c.id)
        )
        if run_id is not None:
            query = query.where(runs.c.id == run_id)
        infos = []
        for row in conn.execute(query):
            end = row.ended_utc or row.heartbeat_utc
            infos.append(
                RunInfo(
                    id=int(row.id),
                    status=RunStatus(row.status),
                    started_utc=row.started_utc,
                    ended_utc=row.ended_utc,
                    heartbeat_utc=row.heartbeat_utc,
                    duration_s=max(0.0, (end - row.started_utc).total_seconds()),
                    bench_name=row.name,
                    bench_sha256=row.sha256,
                    scenario_name=row.scenario_name,
                    scenario_sha256=row.scenario_sha256,
                    software_version=row.software_version,
                    clock_kind=row.clock_kind,
                    hostname=row.hostname,
                    pid=int(row.pid),
                    channel_count=int(row[13]),
                    sample_count=int(row[14]),
                )
            )
        return infos

    def list_runs(self) -> list[RunInfo]:
        """Every run, oldest first, with channel and sample counts."""
        self._check_open()
        with self._backend.connection("listing runs") as conn:
            return self._infos(conn, None)

    def run_summaries(self) -> dict[int, tuple[Any, float | None]]:
        """Every run's stored summary (None for a run whose writer died) and the time of
        its last recorded sample (None without samples), by run id; for ``medtwin runs``,
        without loading any sample block."""
        self._check_open()
        runs, channels, blocks = table(RunRow), table(ChannelRow), table(SampleBlockRow)
        last = (
            sa.select(channels.c.run_id, sa.func.max(blocks.c.t_last_s).label("t_last_s"))
            .select_from(channels.join(blocks, blocks.c.channel_id == channels.c.id))
            .group_by(channels.c.run_id)
            .subquery()
        )
        query = sa.select(runs.c.id, runs.c.summary, last.c.t_last_s).select_from(
            runs.outerjoin(last, last.c.run_id == runs.c.id)
        )
        with self._backend.connection("reading run summaries") as conn:
            return {
                int(row.id): (
                    from_json(row.summary),
                    None if row.t_last_s is None else float(row.t_last_s),
                )
                for row in conn.execute(query)
            }

    def run_info(self, run_id: int) -> RunInfo:
        """Metadata of one run. Raises :class:`~medtwin.drivers.errors.RunNotFound`."""
        self._check_open()
        with self._backend.connection(f"reading run {run_id}") as conn:
            infos = self._infos(conn, int(run_id))
        if not infos:
            raise self._not_found(run_id)
        return infos[0]

    def load_run(self, run_id: int) -> RunData:
        """Everything about one run, with each channel's samples as numpy arrays.

        Channels come in the order they were added; each holds all its blocks
        concatenated in append order (``t_s`` and ``values``, float64, shape (n,)).
        Events come in the order they were recorded. A run still being written is read
        as far as it has been flushed.

        Raises
        ------
        RunNotFound
            No run ``run_id``.
        StorageError
            Database error, or a corrupt sample block.
        """
        self._check_open()
        run_id = int(run_id)
        runs, benches = table(RunRow), table(BenchRow)
        channels, blocks = table(ChannelRow), table(SampleBlockRow)
        with self._backend.connection(f"reading run {run_id}") as conn:
            infos = self._infos(conn, run_id)
            if not infos:
                raise self._not_found(run_id)
            head = conn.execute(
                sa.select(
                    benches.c.text,
                    runs.c.scenario_text,
                    runs.c.twin_params,
                    runs.c.summary,
                )
                .select_from(runs.join(benches, benches.c.id == runs.c.bench_id))
                .where(runs.c.id == run_id)
            ).one()
            device_rows = conn.execute(
                sa.select(table(DeviceRow))
                .where(table(DeviceRow).c.run_id == run_id)
                .order_by(table(DeviceRow).c.id)
            ).all()
            channel_rows = conn.execute(
                sa.select(channels).where(channels.c.run_id == run_id).order_by(channels.c.id)
            ).all()
            block_rows = _fetch_blocks(
                conn,
                sa.select(
                    blocks.c.channel_id,
                    blocks.c.seq,
                    blocks.c.n,
                    blocks.c.dtype,
                    blocks.c.t_s,
                    blocks.c.value,
                )
                .where(
                    blocks.c.channel_id.in_(
                        sa.select(channels.c.id).where(channels.c.run_id == run_id)
                    )
                )
                .order_by(blocks.c.channel_id, blocks.c.seq),
            )
            event_rows = conn.execute(
                sa.select(table(EventRow))
                .where(table(EventRow).c.run_id == run_id)
                .order_by(table(EventRow).c.id)
            ).all()
            verdict_rows = conn.execute(
                sa.select(table(VerdictRow))
                .where(table(VerdictRow).c.run_id == run_id)
                .order_by(table(VerdictRow).c.id)
            ).all()

        per_channel: dict[int, tuple[list[Any], list[Any]]] = {
            int(ch.id): ([], []) for ch in channel_rows
        }
        for channel_id, seq, n, dtype, t_blob, v_blob in block_rows:
            where = f"run {run_id} channel {channel_id} block {seq}"
            t_list, v_list = per_channel[int(channel_id)]
            t_list.append(decode_block(t_blob, dtype=dtype, n=n, where=where))
            v_list.append(decode_block(v_blob, dtype=dtype, n=n, where=where))

        def joined(parts: list[Any]) -> Any:
            if not parts:
                return np.empty(0, dtype=np.float64)
            # concatenate copies, so the result owns writable memory (not the BLOBs).
            return np.concatenate(parts) if len(parts) > 1 else parts[0].copy()

        return RunData(
            info=infos[0],
            bench_text=head.text,
            scenario_text=head.scenario_text,
            twin_params=from_json(head.twin_params),
            summary=from_json(head.summary),
            devices=[
                DeviceInfo(
                    name=d.name,
                    kind=d.kind,
                    protocol=d.protocol,
                    port=d.port,
                    identity=from_json(d.identity) or {},
                )
                for d in device_rows
            ],
            channels=[
                ChannelData(
                    id=int(ch.id),
                    name=ch.name,
                    unit=ch.unit,
                    source=Source(ch.source),
                    device=ch.device,
                    t_s=joined(per_channel[int(ch.id)][0]),
                    values=joined(per_channel[int(ch.id)][1]),
                )
                for ch in channel_rows
            ],
            events=[
                EventRecord(
                    t_s=float(e.t_s),
                    kind=e.kind,
                    device=e.device,
                    channel=e.channel,
                    message=e.message,
                    data=from_json(e.data),
                )
                for e in event_rows
            ],
            verdicts=[
                VerdictRecord(
                    measurement=v.measurement,
                    source=Source(v.source),
                    value=v.value,
                    units=v.units,
                    lower=v.lower,
                    upper=v.upper,
                    marginal_lower=v.marginal_lower,
                    marginal_upper=v.marginal_upper,
                    outcome=Outcome(v.outcome),
                    description=v.description,
                    note=v.note,
                )
                for v in verdict_rows
            ],
        )
