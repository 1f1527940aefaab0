"""Writing user-visible files so that nobody ever sees half of one.

Every output medtwin writes (a simulation CSV, an export, a report and its figures) is
written to a temporary file beside its target, flushed to disk, then renamed over it; a
failure removes the temporary file and leaves any old file untouched. Temporary files are
opened with mode 0o666 so the user's umask applies, as for any file they create
(:func:`tempfile.mkstemp` would make them owner-only).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from medtwin.drivers.errors import ConfigurationError

__all__ = ["FileBatch", "StagedFile", "stage", "write_atomically"]

Writer = Callable[[BinaryIO], None]


@dataclass
class StagedFile:
    target: Path
    temp: Path


def stage(target: Path, data: bytes | Writer, *, source: str | None = None) -> StagedFile:
    """Write ``data`` (bytes, or a function writing to a binary stream) to a new temporary
    file beside ``target``, flushed to disk; errors name ``source`` (default: the target).
    """
    where = source or str(target)
    directory = target.parent
    for _ in range(100):
        temp = directory / f".{target.name}.{secrets.token_hex(6)}.partial"
        try:
            handle = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        except OSError as exc:
            raise ConfigurationError(
                f"cannot write in {directory}: {exc.strerror or exc}", source=where
            ) from exc
        break
    else:  # pragma: no cover - 100 collisions of 48 random bits
        raise ConfigurationError(f"cannot create a temporary file in {directory}")
    try:
        with os.fdopen(handle, "wb") as stream:
            if isinstance(data, bytes):
                stream.write(data)
            else:
                data(stream)
            stream.flush()
            os.fsync(stream.fileno())
    except OSError as exc:
        temp.unlink(missing_ok=True)
        raise ConfigurationError(
            f"cannot write {temp}: {exc.strerror or exc}", source=where
        ) from exc
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return StagedFile(target, temp)


@dataclass
class FileBatch:
    """Files written all-or-nothing as far as a file system allows: every file is staged
    under a temporary name first; only when all are complete are they renamed into place
    (each rename is atomic, so no reader ever sees half a file)."""

    staged: list[StagedFile] = field(default_factory=list)
    created_dirs: list[Path] = field(default_factory=list)

    def mkdir(self, directory: Path) -> None:
        missing = []
        for parent in (directory, *directory.parents):
            if parent.exists():
                break
            missing.append(parent)
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot create the directory {directory}: {exc.strerror or exc}",
                source=str(directory),
            ) from exc
        self.created_dirs += missing

    def add(self, target: Path, data: bytes | Writer, *, source: str | None = None) -> None:
        self.staged.append(stage(target, data, source=source))

    def commit(self) -> None:
        try:
            for item in self.staged:
                item.temp.replace(item.target)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot write {item.target}: {exc.strerror or exc}", source=str(item.target)
            ) from exc

    def discard(self) -> None:
        for item in self.staged:
            item.temp.unlink(missing_ok=True)
        for directory in self.created_dirs:  # innermost first
            try:
                directory.rmdir()
            except OSError:
                break


def write_atomically(target: Path, data: bytes | Writer, *, source: str | None = None) -> None:
    """Write one file all-or-nothing (see the module docstring)."""
    batch = FileBatch()
    try:
        batch.add(Path(target), data, source=source)
        batch.commit()
    except BaseException:
        batch.discard()
        raise
