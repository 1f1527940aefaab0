"""Is the process that wrote a ``running`` run still alive?

Every run records the writer's hostname, pid and a *process marker*. On Linux the marker is
``linux:<boot_id>:<pid namespace inode>:<start time>``:

* ``boot_id`` (``/proc/sys/kernel/random/boot_id``) changes at every boot, so a run
  written before a reboot is certainly dead even if its pid is in use again;
* the pid namespace (``/proc/self/ns/pid``) tells whether the pid means anything here: a
  container with the same hostname but its own pid namespace cannot be checked by pid;
* the start time (field 22 of ``/proc/<pid>/stat``, clock ticks since boot) guards
  against pid reuse: a pid that is alive but started at another time is another process.

:func:`writer_is_gone` answers ``True`` (certainly gone), ``False`` (certainly the same
process, still alive) or ``None`` (cannot tell from here: another host, another pid
namespace, or no ``/proc``). The store combines it with the heartbeat age; see
:class:`medtwin.hil.store.RunStore`.

Elsewhere than Linux the marker is empty and only ``os.kill(pid, 0)`` is used, which can
prove a process gone but never alive (its pid may have been reused).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ProcessIdentity", "current_process", "writer_is_gone"]

_PROC = Path("/proc")


@dataclass(frozen=True)
class ProcessIdentity:
    """Who writes a run: ``hostname``, ``pid`` and the process marker (may be empty)."""

    hostname: str
    pid: int
    marker: str


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None


def _boot_id() -> str | None:
    return _read_text(_PROC / "sys" / "kernel" / "random" / "boot_id")


def _pid_namespace() -> str | None:
    try:
        link = str((_PROC / "self" / "ns" / "pid").readlink())
    except OSError:
        return None
    # "pid:[4026531836]" -> "4026531836"
    return link.partition("[")[2].rstrip("]") or None


def _stat_fields(pid: int) -> tuple[str, str] | None:
    """(state, start time in clock ticks) of ``pid`` from /proc, or None if it has none."""
    stat = _read_text(_PROC / str(pid) / "stat")
    if stat is None:
        return None
    # The command name (field 2) is in parentheses and may itself hold spaces and ")",
    # so split after the *last* ")": what follows is field 3 (state) onwards.
    rest = stat.rpartition(")")[2].split()
    if len(rest) < 20:
        return None
    return rest[0], rest[19]


def current_process() -> ProcessIdentity:
    """Identity of the calling process (computed each call: pids change across fork)."""
    pid = os.getpid()
    marker = ""
    boot_id = _boot_id()
    pidns = _pid_namespace()
    stat = _stat_fields(pid)
    if boot_id and pidns and stat:
        marker = f"linux:{boot_id}:{pidns}:{stat[1]}"
    return ProcessIdentity(hostname=socket.gethostname(), pid=pid, marker=marker)


def writer_is_gone(writer: ProcessIdentity) -> bool | None:
    """True if the process that wrote a run is certainly gone, False if it certainly
    is alive, None if that cannot be told from this process (see the module docstring)."""
    here = current_process()
    if writer.hostname != here.hostname:
        return None
    parts = writer.marker.split(":")
    mine = here.marker.split(":")
    if len(parts) == 4 and parts[0] == "linux" and len(mine) == 4:
        _, boot_id, pidns, start_ticks = parts
        if boot_id != mine[1]:
            return True  # the machine rebooted since the run was written
        if pidns != mine[2]:
            return None
        stat = _stat_fields(writer.pid)
        if stat is None:
            return True
        state, now_ticks = stat
        # Z (zombie) and X (dead): killed but not yet reaped by its parent.
        if state in ("Z", "X"):
            return True
        return now_ticks != start_ticks
    try:
        os.kill(writer.pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return None  # exists but belongs to someone else (EPERM)
    return None
