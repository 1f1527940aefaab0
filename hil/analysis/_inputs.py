"""Input checks shared by the IEC 60601-2-24 analyses: every bad argument raises an
:class:`~medtwin.drivers.errors.AnalysisError` that names the argument, the offending value
and, for arrays, the index (docs/analysis.md, "Errors")."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from medtwin.drivers.errors import AnalysisError

FloatArray = npt.NDArray[np.float64]


def _positive(value: float, name: str, unit: str) -> float:
    number = float(value)
    if not math.isfinite(number) or number <= 0:
        raise AnalysisError(f"{name} must be a finite number > 0 {unit}, got {value!r}")
    return number


def _non_negative(value: float, name: str, unit: str, hint: str = "") -> float:
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise AnalysisError(f"{name} must be a finite number >= 0 {unit}, got {value!r}{hint}")
    return number


def _array(values: npt.ArrayLike, name: str) -> FloatArray:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise AnalysisError(f"{name} must be numeric: {exc}") from None
    if array.ndim != 1:
        raise AnalysisError(f"{name} must be one-dimensional, got shape {array.shape}")
    finite = np.isfinite(array)
    if not finite.all():
        index = int(np.flatnonzero(~finite)[0])
        raise AnalysisError(
            f"{name} has a non-finite value ({float(array[index])!r}) at index {index}; "
            f"{int((~finite).sum())} of {array.size} values are NaN or infinite"
        )
    return array


def _time_and_values(
    t_s: npt.ArrayLike, values: npt.ArrayLike, name: str, *, min_samples: int = 2
) -> tuple[FloatArray, FloatArray]:
    t = _array(t_s, "t_s")
    v = _array(values, name)
    if t.shape != v.shape:
        raise AnalysisError(f"t_s has {t.size} samples but {name} has {v.size}")
    if t.size < min_samples:
        raise AnalysisError(f"the log has {t.size} samples; at least {min_samples} are needed")
    steps = np.diff(t)
    if (steps <= 0).any():
        index = int(np.flatnonzero(steps <= 0)[0]) + 1
        raise AnalysisError(
            f"t_s is not strictly increasing: sample {index} is at {float(t[index])!r} s, "
            f"sample {index - 1} at {float(t[index - 1])!r} s"
        )
    return t, v
