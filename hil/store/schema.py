"""The run store's tables (SQLModel), schema version 1.

::

    medtwin_meta   key/value: schema_version, created_utc, created_by
    benches        1 ─┐ name, text, sha256                 (deduplicated by name + sha256)
    runs           * ─┘ status, started/ended/heartbeat UTC, scenario name/text/sha256,
                  1 ─┐  software version, clock kind, twin params, summary,
                     │  pid, hostname, process marker
    devices        * ─┤ name, kind, protocol, port, identity {model, serial, firmware}
    channels     1 * ─┤ name, unit, source real|twin, device
    sample_blocks  *  │ channel, seq, n, t_first_s, t_last_s, dtype, t_s BLOB, value BLOB
    events         * ─┤ t_s, kind, device, channel, message, data
    verdicts       * ─┘ measurement, source, value, units, limits, marginal limits, outcome,
                        description, note
    calibrations      device_key "model/serial", version, created UTC, run, params,
                      correlation, residual_rms_before/after, note

Devices belong to a run (and name its bench): the identity a device reports is read when
the run starts, and the same bench file may see a swapped pump next week.

The tables use their own SQLAlchemy registry and ``MetaData`` instead of SQLModel's
global one, so SQLModel tables defined elsewhere in a process (a user's, a benchmark's)
are never created in a medtwin database and cannot collide with these names.

Column types are chosen to behave the same on SQLite and PostgreSQL: timestamps are
stored as naive UTC (:class:`UTCDateTime` refuses naive input and hands back aware UTC
datetimes), floats are ``DOUBLE PRECISION``, JSON is ``JSONB`` on PostgreSQL, BLOBs are
``BYTEA`` there.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

__all__ = [
    "SCHEMA_VERSION",
    "SQLITE_APPLICATION_ID",
    "BenchRow",
    "CalibrationRow",
    "ChannelRow",
    "DeviceRow",
    "EventRow",
    "MetaRow",
    "RunRow",
    "SampleBlockRow",
    "StoreModel",
    "UTCDateTime",
    "VerdictRow",
    "table",
]

#: Bumped whenever a table or column changes; a store refuses a newer schema.
SCHEMA_VERSION = 1

#: Written to SQLite's ``PRAGMA application_id`` so ``file(1)`` and medtwin can tell a
#: medtwin database from another application's SQLite file ("MTW1" in ASCII).
SQLITE_APPLICATION_ID = 0x4D545731

_JSON = sa.JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
_DOUBLE: sa.Double[float] = sa.Double()


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Timestamps stored as naive UTC, returned as aware UTC.

    SQLite has no time-zone type and PostgreSQL's ``timestamptz`` comes back in the
    session's zone; storing naive UTC everywhere gives the same value on both.
    """

    impl = sa.DateTime(timezone=False)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the store needs an aware (UTC) time")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class StoreModel(SQLModel, registry=registry()):
    """Base of the store's tables (own registry and MetaData, see the module docstring)."""


class MetaRow(StoreModel, table=True):
    """Key/value facts about the database itself (``schema_version``...)."""

    __tablename__ = "medtwin_meta"

    key: str = Field(primary_key=True, max_length=64)
    value: str = Field(max_length=1000)


class BenchRow(StoreModel, table=True):
    """A bench description as the user wrote it (TOML text) and its SHA-256."""

    __tablename__ = "benches"
    __table_args__ = (sa.UniqueConstraint("name", "sha256"),)

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200)
    text: str = Field(sa_type=sa.Text)
    sha256: str = Field(max_length=64, index=True)


class RunRow(StoreModel, table=True):
    """One run: what ran, where, by which process, and how it ended."""

    __tablename__ = "runs"

    id: int | None = Field(default=None, primary_key=True)
    status: str = Field(max_length=16, index=True)
    started_utc: datetime = Field(sa_type=UTCDateTime)
    ended_utc: datetime | None = Field(default=None, sa_type=UTCDateTime)
    heartbeat_utc: datetime = Field(sa_type=UTCDateTime)
    bench_id: int = Field(foreign_key="benches.id", index=True)
    scenario_name: str = Field(max_length=200)
    scenario_text: str = Field(sa_type=sa.Text)
    scenario_sha256: str = Field(max_length=64)
    software_version: str = Field(max_length=64)
    clock_kind: str = Field(max_length=16)
    twin_params: Any = Field(default=None, sa_type=_JSON, nullable=True)
    summary: Any = Field(default=None, sa_type=_JSON, nullable=True)
    pid: int
    hostname: str = Field(max_length=255)
    # "linux:<boot_id>:<pid namespace>:<start time in clock ticks>", or "" elsewhere;
    # see hil.store.liveness.
    process_marker: str = Field(default="", max_length=200)


class DeviceRow(StoreModel, table=True):
    """A device of the bench as connected during one run."""

    __tablename__ = "devices"
    __table_args__ = (sa.UniqueConstraint("run_id", "name"),)

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="runs.id", ondelete="CASCADE")
    bench_id: int = Field(foreign_key="benches.id", index=True)
    name: str = Field(max_length=200)
    kind: str = Field(default="", max_length=64)
    protocol: str = Field(default="", max_length=64)
    port: str = Field(default="", max_length=500)
    identity: Any = Field(default=None, sa_type=_JSON, nullable=True)


class ChannelRow(StoreModel, table=True):
    """A time series of one run: real (measured) or twin (simulated)."""

    __tablename__ = "channels"

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="runs.id", ondelete="CASCADE", index=True)
    name: str = Field(max_length=200)
    unit: str = Field(max_length=32)
    source: str = Field(max_length=8)
    device: str | None = Field(default=None, max_length=200)


class SampleBlockRow(StoreModel, table=True):
    """``n`` consecutive samples of one channel as two little-endian float64 BLOBs."""

    __tablename__ = "sample_blocks"
    __table_args__ = (sa.UniqueConstraint("channel_id", "seq"),)

    id: int | None = Field(default=None, primary_key=True)
    channel_id: int = Field(foreign_key="channels.id", ondelete="CASCADE")
    seq: int
    n: int
    t_first_s: float = Field(sa_type=_DOUBLE)
    t_last_s: float = Field(sa_type=_DOUBLE)
    dtype: str = Field(max_length=8)
    t_s: bytes = Field(sa_type=sa.LargeBinary)
    value: bytes = Field(sa_type=sa.LargeBinary)


class EventRow(StoreModel, table=True):
    """A command, alarm, fault, drift detection, lost sample, note, measurement..."""

    __tablename__ = "events"

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="runs.id", ondelete="CASCADE", index=True)
    t_s: float = Field(sa_type=_DOUBLE)
    kind: str = Field(max_length=32)
    device: str | None = Field(default=None, max_length=200)
    channel: str | None = Field(default=None, max_length=200)
    message: str = Field(default="", sa_type=sa.Text)
    data: Any = Field(default=None, sa_type=_JSON, nullable=True)


class VerdictRow(StoreModel, table=True):
    """A measurement declared with limits, and its outcome, for one source of one run."""

    __tablename__ = "verdicts"
    __table_args__ = (sa.UniqueConstraint("run_id", "measurement", "source"),)

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="runs.id", ondelete="CASCADE")
    measurement: str = Field(max_length=200)
    source: str = Field(max_length=8)
    value: float | None = Field(default=None, sa_type=_DOUBLE)
    units: str = Field(default="", max_length=32)
    lower: float | None = Field(default=None, sa_type=_DOUBLE)
    upper: float | None = Field(default=None, sa_type=_DOUBLE)
    marginal_lower: float | None = Field(default=None, sa_type=_DOUBLE)
    marginal_upper: float | None = Field(default=None, sa_type=_DOUBLE)
    outcome: str = Field(max_length=8)
    description: str = Field(default="", sa_type=sa.Text)
    note: str = Field(default="", sa_type=sa.Text)


class CalibrationRow(StoreModel, table=True):
    """Version ``version`` of the fitted twin parameters of one physical device."""

    __tablename__ = "calibrations"
    __table_args__ = (sa.UniqueConstraint("device_key", "version"),)

    id: int | None = Field(default=None, primary_key=True)
    device_key: str = Field(max_length=400, index=True)
    version: int
    created_utc: datetime = Field(sa_type=UTCDateTime)
    run_id: int | None = Field(default=None, foreign_key="runs.id", ondelete="SET NULL")
    params: Any = Field(default=None, sa_type=_JSON, nullable=True)
    correlation: Any = Field(default=None, sa_type=_JSON, nullable=True)
    residual_rms_before: float | None = Field(default=None, sa_type=_DOUBLE)
    residual_rms_after: float | None = Field(default=None, sa_type=_DOUBLE)
    note: str = Field(default="", sa_type=sa.Text)


def table(model: type[StoreModel]) -> sa.Table:
    """The Core ``Table`` of a model (for bulk inserts and plain selects)."""
    return StoreModel.metadata.tables[str(model.__tablename__)]
