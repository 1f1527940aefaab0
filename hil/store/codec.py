"""Encodings of the run store: numpy sample blocks and JSON metadata.

Sample blocks
    A block is ``n`` samples of one channel stored as two BLOBs, ``t_s`` and ``value``,
    each the raw bytes of a float64 array in **little-endian** order (``"<f8"``); the
    dtype string is stored beside them, so a reader on any machine decodes them with
    ``numpy.frombuffer`` and nothing else. Raw IEEE 754 bytes make the round trip
    bit-exact (NaN payloads, -0.0, subnormals, ±inf), which no text format guarantees
    cheaply. numpy's own ``.npy`` format would add a header per block for no gain here.

JSON metadata
    Twin parameters, summaries, event data, device identities and calibrations are JSON
    columns (JSONB on PostgreSQL). Strict JSON has no NaN or infinity, and PostgreSQL
    rejects them, yet a summary value or a standard error can legitimately be NaN or
    infinite. They are therefore stored as the strings ``"NaN"``, ``"Infinity"`` and
    ``"-Infinity"`` (the mapping protobuf's JSON encoding uses) and turned back into
    floats when read. The price: a *string* with exactly one of those three values
    comes back as a float. numpy scalars and arrays, dataclasses, enums and datetimes
    are converted to plain JSON on the way in; anything else is refused with an error
    naming the offending field.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from datetime import date, datetime
from enum import Enum
from typing import Any

import numpy as np
import numpy.typing as npt
from medtwin.drivers.errors import StorageError

__all__ = [
    "BLOCK_DTYPE",
    "decode_block",
    "encode_block",
    "from_json",
    "to_json",
]

#: dtype of every block this store writes (readers accept any float dtype recorded).
BLOCK_DTYPE = "<f8"

_NONFINITE_TO_STR = {math.inf: "Infinity", -math.inf: "-Infinity"}
_STR_TO_NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def encode_block(samples: npt.NDArray[np.float64]) -> bytes:
    """Raw little-endian float64 bytes of a 1-D array (8 bytes per sample)."""
    return np.ascontiguousarray(samples, dtype=BLOCK_DTYPE).tobytes()


def decode_block(blob: bytes, *, dtype: str, n: int, where: str) -> npt.NDArray[np.float64]:
    """Array of ``n`` float64 samples from a block BLOB.

    Parameters
    ----------
    blob : bytes
        The stored bytes.
    dtype : str
        The dtype recorded with the block (``"<f8"`` for everything medtwin writes).
    n : int
        Sample count recorded with the block; a mismatch means the row is corrupt.
    where : str
        Names the block in error messages (run, channel, seq).

    Returns
    -------
    ndarray, shape (n,), native-order float64
        A read-only view of ``blob`` when no byte swap is needed.
    """
    try:
        stored = np.dtype(dtype)
    except (TypeError, ValueError) as exc:
        raise StorageError(f"{where}: unknown sample dtype {dtype!r} in the store") from exc
    if stored.kind != "f":
        raise StorageError(f"{where}: sample dtype {dtype!r} is not a float type")
    if len(blob) != n * stored.itemsize:
        raise StorageError(
            f"{where}: block is corrupt: {len(blob)} bytes for {n} samples of {dtype} "
            f"(expected {n * stored.itemsize})"
        )
    array = np.frombuffer(blob, dtype=stored)
    return array.astype(np.float64, copy=False)


def to_json(value: Any, *, where: str) -> Any:
    """Plain-JSON copy of ``value`` (see the module docstring for the conversions).

    Raises
    ------
    StorageError
        ``value`` holds something JSON cannot represent; the message names the path
        below ``where`` (e.g. ``twin_params.line.compliance``).
    """
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        number = float(value)
        if math.isfinite(number):
            return number
        return "NaN" if math.isnan(number) else _NONFINITE_TO_STR[number]
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, Enum):
        return to_json(value.value, where=where)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise StorageError(f"{where}: cannot store a {value.dtype} array as JSON")
        return to_json(value.tolist(), where=where)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: to_json(getattr(value, f.name), where=f"{where}.{f.name}")
            for f in dataclasses.fields(value)
        }
    if isinstance(value, Mapping):
        result: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise StorageError(
                    f"{where}: JSON object keys must be strings, got {type(key).__name__} {key!r}"
                )
            result[key] = to_json(item, where=f"{where}.{key}")
        return result
    if isinstance(value, list | tuple):
        return [to_json(item, where=f"{where}[{i}]") for i, item in enumerate(value)]
    raise StorageError(
        f"{where}: cannot store a {type(value).__name__} as JSON "
        "(expected numbers, strings, booleans, None, lists, dicts, numpy arrays or dataclasses)"
    )


def from_json(value: Any) -> Any:
    """Inverse of :func:`to_json` for the non-finite floats; everything else unchanged."""
    if isinstance(value, str):
        return _STR_TO_NONFINITE.get(value, value)
    if isinstance(value, list):
        return [from_json(item) for item in value]
    if isinstance(value, dict):
        return {key: from_json(item) for key, item in value.items()}
    return value
