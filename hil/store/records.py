"""Plain, immutable records the run store hands out.

The tables live in :mod:`medtwin.hil.store.schema`; callers never see ORM rows (which are tied
to a session and a thread). Everything here is a frozen dataclass or a string enum, safe
to pass between threads and to keep after the store is closed.

The vocabularies: run status and data source are defined here; a verdict's outcome is the
one :class:`medtwin.hil.outcomes.Outcome` that measurements, reports and the command line
share (re-exported here; its values are the words the ``verdicts`` table stores).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, TypedDict

import numpy as np
import numpy.typing as npt
from medtwin.drivers.errors import StorageError
from medtwin.hil.outcomes import Outcome

__all__ = [
    "EVENT_KINDS",
    "CalibrationParam",
    "CalibrationRecord",
    "ChannelData",
    "DeviceInfo",
    "EventRecord",
    "Outcome",
    "RunData",
    "RunInfo",
    "RunStatus",
    "Source",
    "VerdictRecord",
]

FloatArray = npt.NDArray[np.float64]


class RunStatus(StrEnum):
    """Life cycle of a run.

    ``running`` until the writer finishes it; ``completed`` / ``aborted`` / ``degraded``
    are set by the runner; ``interrupted`` is set by the store when the process that
    wrote a ``running`` run is gone (or its heartbeat is too old), or when a store is
    closed with the run still open.
    """

    RUNNING = "running"
    COMPLETED = "completed"
    ABORTED = "aborted"
    DEGRADED = "degraded"
    INTERRUPTED = "interrupted"


class Source(StrEnum):
    """Where a channel's samples or a verdict's value come from."""

    REAL = "real"
    TWIN = "twin"


#: Event kinds the runner, comparator and store use. Other lower-case words are accepted:
#: the list documents the vocabulary, it does not close it.
EVENT_KINDS: tuple[str, ...] = (
    "command",
    "alarm",
    "fault",
    "drift",
    "lost",
    "note",
    "measurement",
)


@dataclass(frozen=True)
class RunInfo:
    """One row of ``medtwin runs``: a run's metadata without its data.

    ``duration_s`` is wall time from ``started_utc`` to ``ended_utc`` or, while a run is
    still running (or was interrupted), to its last heartbeat.
    """

    id: int
    status: RunStatus
    started_utc: datetime
    ended_utc: datetime | None
    heartbeat_utc: datetime
    duration_s: float
    bench_name: str
    bench_sha256: str
    scenario_name: str
    scenario_sha256: str
    software_version: str
    clock_kind: str
    hostname: str
    pid: int
    channel_count: int
    sample_count: int

    def as_json(self) -> dict[str, Any]:
        """JSON-ready dict (timestamps as ISO 8601 with offset)."""
        return {
            "id": self.id,
            "status": str(self.status),
            "started_utc": self.started_utc.isoformat(),
            "ended_utc": None if self.ended_utc is None else self.ended_utc.isoformat(),
            "heartbeat_utc": self.heartbeat_utc.isoformat(),
            "duration_s": self.duration_s,
            "bench_name": self.bench_name,
            "bench_sha256": self.bench_sha256,
            "scenario_name": self.scenario_name,
            "scenario_sha256": self.scenario_sha256,
            "software_version": self.software_version,
            "clock_kind": self.clock_kind,
            "hostname": self.hostname,
            "pid": self.pid,
            "channel_count": self.channel_count,
            "sample_count": self.sample_count,
        }


@dataclass(frozen=True)
class DeviceInfo:
    """A device as connected during one run.

    ``identity`` holds what the device reported (``model``, ``serial``, ``firmware``).
    """

    name: str
    kind: str
    protocol: str
    port: str
    identity: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        """JSON-ready dict, as exports and report summaries list the devices."""
        return {
            "name": self.name,
            "kind": self.kind,
            "protocol": self.protocol,
            "port": self.port,
            "identity": self.identity,
        }


@dataclass(frozen=True, eq=False)
class ChannelData:
    """One channel's samples, concatenated over all its blocks in append order.

    Attributes
    ----------
    t_s : ndarray, shape (n,), float64
        Scenario time of each sample, s.
    values : ndarray, shape (n,), float64
        Sample values in ``unit``.
    """

    id: int
    name: str
    unit: str
    source: Source
    device: str | None
    t_s: FloatArray
    values: FloatArray

    def __len__(self) -> int:
        return int(self.t_s.shape[0])


@dataclass(frozen=True)
class EventRecord:
    """Something that happened at scenario time ``t_s`` (s)."""

    t_s: float
    kind: str
    device: str | None
    channel: str | None
    message: str
    data: Any


@dataclass(frozen=True)
class VerdictRecord:
    """A declared measurement and its outcome (limits in ``units``; None = open)."""

    measurement: str
    source: Source
    value: float | None
    units: str
    lower: float | None
    upper: float | None
    marginal_lower: float | None
    marginal_upper: float | None
    outcome: Outcome
    description: str = ""
    note: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "measurement": self.measurement,
            "source": str(self.source),
            "value": self.value,
            "units": self.units,
            "lower": self.lower,
            "upper": self.upper,
            "marginal_lower": self.marginal_lower,
            "marginal_upper": self.marginal_upper,
            "outcome": str(self.outcome),
            "description": self.description,
            "note": self.note,
        }


class CalibrationParam(TypedDict):
    """One fitted parameter: its value (always finite) and standard error (None, inf or
    NaN when the fit could not determine it)."""

    value: float
    stderr: float | None


@dataclass(frozen=True)
class CalibrationRecord:
    """One fitted parameter set of one physical device.

    ``device_key`` is ``"model/serial"``; ``version`` counts from 1 per device key.
    ``params`` maps a parameter name to a :class:`CalibrationParam`;
    ``residual_rms_before`` / ``residual_rms_after`` are in the unit of the fitted channel.
    """

    id: int
    device_key: str
    version: int
    created_utc: datetime
    run_id: int | None
    params: dict[str, CalibrationParam]
    correlation: Any
    residual_rms_before: float | None
    residual_rms_after: float | None
    note: str


@dataclass(frozen=True, eq=False)
class RunData:
    """Everything stored about one run: metadata, devices, channels, events, verdicts."""

    info: RunInfo
    bench_text: str
    scenario_text: str
    twin_params: Any
    summary: Any
    devices: list[DeviceInfo] = field(default_factory=list)
    channels: list[ChannelData] = field(default_factory=list)
    events: list[EventRecord] = field(default_factory=list)
    verdicts: list[VerdictRecord] = field(default_factory=list)

    def channel(
        self, name: str, *, source: Source | str = Source.REAL, device: str | None = None
    ) -> ChannelData:
        """The channel called ``name`` from ``source`` (and ``device``, when given).

        Raises
        ------
        StorageError
            No such channel, or the name is ambiguous without ``device``.
        """
        matches = [
            ch
            for ch in self.channels
            if ch.name == name and ch.source == source and (device is None or ch.device == device)
        ]
        if len(matches) == 1:
            return matches[0]
        known = ", ".join(
            f"{ch.source}:{ch.device + '/' if ch.device else ''}{ch.name}" for ch in self.channels
        )
        what = f"{source} channel {name!r}" + (f" of device {device!r}" if device else "")
        if not matches:
            raise StorageError(f"run {self.info.id} has no {what} (channels: {known or 'none'})")
        raise StorageError(
            f"run {self.info.id} has {len(matches)} {what}s on different devices; "
            f"pass device= (channels: {known})"
        )
