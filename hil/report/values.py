"""Plain values of a stored run, as the report reads them.

Stored JSON (summaries, analyses, bench and scenario text) may come from an older or an
interrupted run, so every reader here is forgiving: a missing or malformed entry becomes
None, an empty dict or list, NaN, never an exception. Also the channel look-ups the sections
share and the real − twin residual of a channel.
"""

from __future__ import annotations

import hashlib
import math
import tomllib
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt
from medtwin.drivers.errors import StorageError
from medtwin.hil.store import ChannelData, RunData

FloatArray = npt.NDArray[np.float64]


_SOURCES = ("real", "twin")


def _finite(value: Any) -> float | None:
    """``value`` as a finite float, or None (None, NaN, infinities, non-numbers)."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _plain(value: Any) -> Any:
    """Strict-JSON copy: numpy scalars and arrays unwrapped, non-finite floats → None."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return _finite(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return str(value)


def _floats(values: Any) -> FloatArray:
    """A stored JSON list of numbers as float64 (None and non-numbers become NaN)."""
    return np.array([_finite(v) if _finite(v) is not None else np.nan for v in _list(values)])


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _toml(text: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return {}


def _generator() -> str:
    """``medtwin <version>``: what wrote the report (the run records what wrote the run)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"medtwin {version('medtwin')}"
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "medtwin (unknown version)"


def _channel(run: RunData, name: str, source: str) -> ChannelData | None:
    try:
        return run.channel(name, source=source)
    except StorageError:
        return None


def _has_data(channel: ChannelData | None) -> bool:
    return channel is not None and bool(np.isfinite(channel.values).any())


def _residual(run: RunData, name: str) -> tuple[FloatArray, FloatArray] | None:
    """(t_s, real − twin) at the real samples' times; NaN where either side has none."""
    real, twin = _channel(run, name, "real"), _channel(run, name, "twin")
    if real is None or twin is None or len(real) == 0 or len(twin) == 0:
        return None
    if real.t_s.shape == twin.t_s.shape and np.array_equal(real.t_s, twin.t_s):
        twin_at = twin.values
    else:
        # The runner stores both sides at the same timestamps; a run written by other
        # tools may not, so the twin is interpolated onto the real times.
        ok = np.isfinite(twin.values)
        if not ok.any():
            return None
        twin_at = np.interp(real.t_s, twin.t_s[ok], twin.values[ok], left=np.nan, right=np.nan)
    return real.t_s, real.values - twin_at
