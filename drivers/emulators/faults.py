"""Fault plans: what an emulated device does wrong, and when.

A fault plan is a list of :class:`Fault` s. Reply faults (``garbage``, ``bad-checksum``,
``drop``, ``late``, ``disconnect``) are applied by the emulator server to the replies it
sends, the same way whatever the framing (:func:`apply_reply_fault`; a ``bad-checksum``
asks the framer how its checksum breaks); device faults (``stall``, ``drift``) act on the
physical bench behind it.

Spec strings (``medtwin emulate --fault SPEC``, bench files) read ``KIND[:key=value,...]``::

    drop:p=0.1                  drop 10 % of replies (seeded)
    late:delay=2s,every=5       every 5th reply is sent 2 s late
    garbage:p=0.05              5 % of replies get random bytes in front
    bad-checksum:after=10min    every reply after 10 min of device time has a broken CRC
    disconnect:at=30s,for=5s    the port vanishes at 30 s and comes back 5 s later
    stall:at=1h                 the motor stalls at 1 h (stall alarm)
    lost-sync:every=100         a streaming monitor's every 100th frame is out of step
    sensor-off:at=2min,for=30s  the oximeter probe is off the finger for 30 s
    drift:param=pump.drive.lead_mm,rate=-1%/h,start=30min
                                a truth parameter drifts linearly from 30 min on

A streaming monitor (Masimo, Nonin) has no requests: its reply faults select from the
frames, lines or records it streams (``drop`` loses one, ``bad-checksum`` breaks its
checksum, ``garbage`` puts bytes in front, ``late`` holds the stream ``delay_s`` wall
seconds, ``disconnect`` drops the port), and ``lost-sync`` puts one out of step (a Nonin
frame with its SYNC bit wrong, a Masimo line that loses its CR LF); see
:func:`apply_reply_fault`'s ``break_sync``. Patient faults (``sensor-off``,
``low-perfusion``, ``motion``) act on the patient the oximeter observes from ``at`` for
``for`` (device time), like the bench's ``stall`` and ``drift``.

Selection keys, for reply faults: ``p`` (probability per reply), ``every`` (every n-th
reply), ``at``/``after``/``until`` (device-time window), ``count`` (at most n times).
Without any of them a reply fault hits every reply. Times accept ``90s``, ``30min``,
``2h``, ``1h30m`` or plain seconds.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, get_args

import numpy as np
from medtwin.drivers.errors import ConfigurationError
from medtwin.drivers.units import parse_duration_s

__all__ = [
    "PATIENT_FAULTS",
    "REPLY_FAULTS",
    "Fault",
    "FaultKind",
    "FaultPlan",
    "ReplyOutcome",
    "apply_reply_fault",
    "parse_duration_s",
    "parse_fault",
]

FaultKind = Literal[
    "garbage",
    "bad-checksum",
    "drop",
    "late",
    "disconnect",
    "lost-sync",
    "stall",
    "drift",
    "sensor-off",
    "low-perfusion",
    "motion",
]
REPLY_FAULTS: frozenset[str] = frozenset(
    {"garbage", "bad-checksum", "drop", "late", "disconnect", "lost-sync"}
)
#: Faults of the patient an oximeter observes (device faults, windows ``at`` + ``for``).
PATIENT_FAULTS: frozenset[str] = frozenset({"sensor-off", "low-perfusion", "motion"})


@dataclass(frozen=True)
class Fault:
    """One entry of a fault plan. See the module docstring for the spec syntax."""

    kind: FaultKind
    probability: float | None = None
    every: int | None = None
    after_s: float = 0.0
    until_s: float = math.inf
    count: int | None = None
    delay_s: float = 1.0  # late: how late; disconnect: how long the port stays away
    param: str | None = None  # drift: dotted truth-parameter name
    rate_per_h: float = 0.0  # drift: change per hour (absolute, or relative if relative=True)
    relative: bool = False  # drift: rate given in %/h of the starting value
    spec: str = ""

    def active(self, t_s: float) -> bool:
        return self.after_s <= t_s < self.until_s


@dataclass
class FaultPlan:
    """The faults of one emulated device, with the seeded randomness and counters they use.

    Call :meth:`reply_fault` once per reply; it returns the reply fault to apply (or
    ``None``). Randomness comes from ``numpy.random.default_rng(seed)`` so a plan with the
    same seed misbehaves the same way on every run.
    """

    faults: list[Fault] = field(default_factory=list)
    seed: int = 0

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng(self.seed)
        self._replies = 0
        self._hits = [0] * len(self.faults)

    @classmethod
    def parse(cls, specs: list[str] | tuple[str, ...], *, seed: int = 0) -> FaultPlan:
        return cls([parse_fault(spec) for spec in specs], seed=seed)

    def device_faults(self) -> list[Fault]:
        """``stall`` and ``drift`` entries, for the physical bench."""
        return [f for f in self.faults if f.kind not in REPLY_FAULTS]

    def reply_fault(self, t_s: float) -> Fault | None:
        """Decide the fault (if any) for the next reply, sent at device time ``t_s``."""
        self._replies += 1
        for index, fault in enumerate(self.faults):
            if fault.kind not in REPLY_FAULTS or not fault.active(t_s):
                continue
            if fault.count is not None and self._hits[index] >= fault.count:
                continue
            if fault.every is not None and self._replies % fault.every != 0:
                continue
            # Draw for every probabilistic fault so the sequence does not depend on the others.
            if fault.probability is not None and self._rng.random() >= fault.probability:
                continue
            self._hits[index] += 1
            return fault
        return None

    def garbage(self, n: int = 4) -> bytes:
        """Random bytes for a ``garbage`` fault (from the plan's seeded generator)."""
        return bytes(self._rng.integers(0, 256, size=n, dtype=np.uint8).tolist())


def _parse_rate(text: str) -> tuple[float, bool]:
    value = text.strip().lower()
    if value.endswith("/h"):
        value = value[:-2]
    relative = value.endswith("%")
    if relative:
        value = value[:-1]
    return float(value), relative


def parse_fault(spec: str) -> Fault:
    """Parse one ``KIND[:key=value,...]`` spec.

    Raises
    ------
    ConfigurationError
        Naming the spec and what was expected.
    """
    kind, _, rest = spec.strip().partition(":")
    kind = kind.strip().lower()
    if kind in ("bad-crc", "bad-checksum"):
        kind = "bad-checksum"
    if kind not in get_args(FaultKind):
        raise ConfigurationError(
            f"unknown fault kind {kind!r} in {spec!r}; expected one of "
            + ", ".join(get_args(FaultKind)),
            source="--fault",
        )
    options: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigurationError(
                f"malformed option {item!r} in {spec!r}; expected key=value", source="--fault"
            )
        options[key.strip().lower()] = value.strip()
    values: dict[str, object] = {"kind": kind, "spec": spec.strip()}
    try:
        for key, value in options.items():
            if key == "p":
                p = float(value)
                if not 0.0 <= p <= 1.0:
                    raise ValueError(f"p={value} is not a probability in [0, 1]")
                values["probability"] = p
            elif key == "every":
                values["every"] = max(1, int(value))
            elif key in ("at", "after", "start"):
                values["after_s"] = parse_duration_s(value)
            elif key == "until":
                values["until_s"] = parse_duration_s(value)
            elif key == "count":
                values["count"] = int(value)
            elif key in ("delay", "for"):
                values["delay_s"] = parse_duration_s(value)
            elif key == "param":
                values["param"] = value
            elif key == "rate":
                values["rate_per_h"], values["relative"] = _parse_rate(value)
            else:
                raise ValueError(f"unknown option {key!r}")
    except ValueError as exc:
        raise ConfigurationError(f"{exc} in fault spec {spec!r}", source="--fault") from None
    if kind == "drift" and not values.get("param"):
        raise ConfigurationError(
            f"drift fault {spec!r} needs param=NAME and rate=VALUE[%]/h", source="--fault"
        )
    if kind in ("disconnect", "stall") and "count" not in values and "every" not in values:
        # A disconnect or stall happens once unless asked otherwise.
        values["count"] = 1
    if kind in PATIENT_FAULTS and "delay_s" in values:
        # A patient fault lasts ``for``: its window ends then (device time).
        values["until_s"] = float(values.get("after_s", 0.0)) + float(values["delay_s"])  # type: ignore[arg-type]
    return Fault(**values)  # type: ignore[arg-type]


@dataclass(frozen=True)
class ReplyOutcome:
    """What the fault layer made of one reply (see :func:`apply_reply_fault`).

    ``data`` is what to send (None: nothing); ``late_s`` how long to hold it back first;
    ``disconnect_s`` set means the port must vanish for that long instead.
    """

    fault: Fault | None
    data: bytes | None
    late_s: float = 0.0
    disconnect_s: float | None = None


def apply_reply_fault(
    plan: FaultPlan | None,
    reply: bytes,
    *,
    t_s: float,
    break_checksum: Callable[[bytes], bytes],
    break_sync: Callable[[bytes], bytes] | None = None,
) -> ReplyOutcome:
    """Run one reply through the plan, the same way for every framing.

    ``garbage`` puts random bytes from the plan's seeded generator in front,
    ``bad-checksum`` sends ``break_checksum(reply)`` (the framer knows how its checksum
    breaks), ``drop`` sends nothing, ``late`` holds the reply ``delay_s`` wall seconds,
    ``disconnect`` sends nothing and asks for the port to vanish for ``delay_s``.
    ``lost-sync`` sends ``break_sync(reply)`` (a streamed frame out of step); a reply
    without ``break_sync`` (a solicited one) is sent as it is.
    """
    fault = plan.reply_fault(t_s) if plan is not None else None
    if fault is None or plan is None:
        return ReplyOutcome(None, reply)
    if fault.kind == "garbage":
        return ReplyOutcome(fault, plan.garbage() + reply)
    if fault.kind == "bad-checksum":
        return ReplyOutcome(fault, break_checksum(reply))
    if fault.kind == "drop":
        return ReplyOutcome(fault, None)
    if fault.kind == "late":
        return ReplyOutcome(fault, reply, late_s=fault.delay_s)
    if fault.kind == "disconnect":
        return ReplyOutcome(fault, None, disconnect_s=fault.delay_s)
    if fault.kind == "lost-sync":
        return ReplyOutcome(fault, reply if break_sync is None else break_sync(reply))
    return ReplyOutcome(None, reply)  # pragma: no cover - reply_fault returns reply faults
