"""Builders for monitor inputs: exact R-peaks and sample-and-hold vital signs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from medtwin.device_models.monitor.monitor import MonitorInput

Builder = Callable[..., MonitorInput]


def build_input(
    t_s: Any,
    spo2: Any = 97.0,
    *,
    pi: Any = 2.0,
    sensor_off: Any = False,
    motion: Any = False,
    r_peaks: Any = None,
    acknowledge: Any = (),
) -> MonitorInput:
    """A record on grid ``t_s``; scalars are broadcast; R-peaks at 60 bpm by default."""
    t = np.asarray(t_s, dtype=float)
    n = t.size

    def full(x: Any, dtype: Any) -> Any:
        return np.broadcast_to(np.asarray(x, dtype=dtype), (n,)).copy()

    r = np.arange(t[0], t[-1], 1.0) if r_peaks is None else np.asarray(r_peaks, dtype=float)
    return MonitorInput(
        t_s=t,
        spo2_true_percent=full(spo2, float),
        pi_percent=full(pi, float),
        sensor_off=full(sensor_off, bool),
        motion=full(motion, bool),
        r_peak_times_s=r,
        acknowledge_s=np.asarray(acknowledge, dtype=float),
    )


def step_beats(old_bpm: float, new_bpm: float, *, t_change_s: float, end_s: float) -> Any:
    """R-peaks at exactly ``old_bpm`` up to ``t_change_s`` (a beat), then ``new_bpm``.

    Returns the peaks and the time of the first beat at the new rate (the step).
    """
    old = 60.0 / old_bpm
    new = 60.0 / new_bpm
    r_old = t_change_s - old * np.arange(int(t_change_s / old), -1, -1)
    r_new = t_change_s + new * np.arange(1, int((end_s - t_change_s) / new) + 1)
    return np.concatenate([r_old, r_new]), float(r_new[0])


@pytest.fixture
def make_input() -> Builder:
    return build_input


@pytest.fixture
def beats_with_step() -> Callable[..., Any]:
    return step_beats
