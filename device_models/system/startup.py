"""Start-up metrics of a delivery curve: time to first delivery and time to steady flow.

Neff et al. 2001 (Paediatr Anaesth 11(5):561-5, doi:10.1046/j.1460-9592.2001.00730.x)
measured gravimetrically, at 1 mL/h, the time from starting the pump to the first fluid
delivery (``t1``: 6.75 ± 4.4 to 57.2 ± 28.6 min over four pumps) and to steady-state
delivery (``t2``: 19.6 ± 9.3 to 76.3 ± 29.0 min), and after a 2 mL pre-bolus 0.3-1.1 and
6.0-11.1 min; Neff et al. 2007 (Eur J Anaesthesiol 24(7):602-8) give 3.6 ± 0.9 min to
steady flow for a BD 10 mL syringe at 1 mL/h and 74.5 ± 26.6 min for a 50 mL syringe at
0.1 mL/h. The
abstracts do not state the exact criteria, so the ones here are this module's, stated in
:func:`startup_times` and used the same way by the tests and by docs/models.md's figure:
first delivery is the first time the outlet volume exceeds ``first_ml`` (1 µL, 1 mg of
water: what a 0.1 mg balance resolves beyond its noise); steady flow is the earliest time
after which the flow averaged over ``window_s`` (2 min, the shortest observation window of
IEC 60601-2-24's trumpet curve) stays within ``tolerance`` (±10 %) of the set rate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "NEFF_2001_PREBOLUS_T1_MIN",
    "NEFF_2001_PREBOLUS_T2_MIN",
    "NEFF_2001_T1_MIN",
    "NEFF_2001_T2_MIN",
    "NEFF_2007_T2_0P1_MIN",
    "StartupTimes",
    "startup_times",
]

#: Range of the pumps' mean time to first delivery at 1 mL/h (min), Neff et al. 2001.
NEFF_2001_T1_MIN = (6.75, 57.2)
#: Range of the pumps' mean time to steady-state delivery at 1 mL/h (min), Neff et al. 2001.
NEFF_2001_T2_MIN = (19.6, 76.3)
#: After a 2 mL pre-bolus, at 1 mL/h: first delivery and steady state (min), Neff et al. 2001.
NEFF_2001_PREBOLUS_T1_MIN = (0.3, 1.1)
NEFF_2001_PREBOLUS_T2_MIN = (6.0, 11.1)
#: Steady flow at 0.1 mL/h with a 50 mL syringe, 74.5 ± 26.6 min (mean ± SD), Neff et al. 2007.
NEFF_2007_T2_0P1_MIN = (74.5 - 26.6, 74.5 + 26.6)


@dataclass(frozen=True)
class StartupTimes:
    """``first_delivery_s`` and ``steady_s`` (NaN when not reached in the record)."""

    first_delivery_s: float
    steady_s: float


def startup_times(
    t_s: NDArray[np.float64],
    delivered_ml: NDArray[np.float64],
    rate_ml_h: float,
    *,
    first_ml: float = 1e-3,
    window_s: float = 120.0,
    tolerance: float = 0.10,
) -> StartupTimes:
    """Start-up times of one delivery curve started at ``t_s[0]`` at ``rate_ml_h``.

    Parameters
    ----------
    t_s : ndarray, shape (n,)
        Uniformly spaced times (s), starting at the pump's start.
    delivered_ml : ndarray, shape (n,)
        Outlet volume (mL) at ``t_s``.
    rate_ml_h : float
        The set rate.
    first_ml, window_s, tolerance
        The criteria (module docstring).
    """
    t = np.asarray(t_s, dtype=float)
    v = np.asarray(delivered_ml, dtype=float)
    dt = float(t[1] - t[0])
    over = np.flatnonzero(v > first_ml)
    first = float(t[over[0]] - t[0]) if over.size else float("nan")
    lag = max(1, round(window_s / dt))
    flow = (v[lag:] - v[:-lag]) / (lag * dt) * 3600.0
    bad = np.flatnonzero(np.abs(flow / rate_ml_h - 1.0) > tolerance)
    if bad.size == 0:
        steady = float(t[lag] - t[0])
    elif bad[-1] + 1 < flow.size:
        steady = float(t[bad[-1] + 1 + lag] - t[0])
    else:
        steady = float("nan")
    return StartupTimes(first, steady)
