"""Draw docs/figures/startup.png: the twin's start-up against Neff et al. 2001 and 2007.

Run from the repository root: ``python3 docs/figures/startup.py``. Three panels of the
outlet flow (2 min moving average, the window of the steady-flow criterion of
:func:`medtwin.device_models.system.startup.startup_times`), each with the published range
shaded:

1. the default BD Plastipak 50 mL syringe and the 20 mL and 10 mL ones at 1 mL/h, with the
   ranges of the four pumps' mean times to first delivery and to steady flow that Neff et
   al. 2001 (Paediatr Anaesth 11(5):561-5) measured with 50 mL syringes at 1 mL/h;
2. the BD 50 mL at 0.1 mL/h, with Neff et al. 2007's (Eur J Anaesthesiol 24(7):602-8)
   74.5 ± 26.6 min to steady flow;
3. the BD 50 mL restarted at 1 mL/h 9 min after a 2 mL pre-bolus, with Neff et al. 2001's
   ranges after a pre-bolus.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from medtwin.device_models.schedule import Schedule
from medtwin.device_models.system import SystemParams, simulate
from medtwin.device_models.system.startup import (
    NEFF_2001_PREBOLUS_T1_MIN,
    NEFF_2001_PREBOLUS_T2_MIN,
    NEFF_2001_T1_MIN,
    NEFF_2001_T2_MIN,
    NEFF_2007_T2_0P1_MIN,
    startup_times,
)

SYRINGES = ("BD Plastipak 50 mL", "BD Plastipak 20 mL", "BD Plastipak 10 mL")
WINDOW_S = 120


def _flow(t: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """2 min average flow (mL/h), at the end of each window."""
    lag = round(float(WINDOW_S / (t[1] - t[0])))
    return t[lag:], (v[lag:] - v[:-lag]) / (t[lag] - t[0]) * 3600.0


def _panel(ax: Axes, rate: float, title: str) -> None:
    ax.axhspan(0.9 * rate, 1.1 * rate, color="0.85", label="±10 % of set rate")
    ax.set_ylim(0.0, 2.0 * rate)
    ax.set_ylabel("flow, 2 min avg (mL/h)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper right")


def main(path: Path) -> None:
    fig, axes = plt.subplots(3, 1, figsize=(8.0, 9.5))
    ax1, ax2, ax3 = axes
    # 1. at 1 mL/h, three sizes
    t = np.arange(0.0, 90 * 60.0 + 1.0, 1.0)
    ax1.axvspan(*NEFF_2001_T1_MIN, color="tab:orange", alpha=0.12, label="Neff 2001: t1 range")
    ax1.axvspan(*NEFF_2001_T2_MIN, color="tab:green", alpha=0.12, label="Neff 2001: t2 range")
    for name in SYRINGES:
        row = simulate(SystemParams.nominal(syringe=name), Schedule().set_rate(0, 1.0).start(0), t)
        v = row.row(0)["delivered_ml"]
        times = startup_times(t, v, 1.0)
        tf, q = _flow(t, v)
        label = f"{name}: t1 {times.first_delivery_s / 60:.1f}, t2 {times.steady_s / 60:.1f} min"
        (line,) = ax1.plot(tf / 60.0, q, label=label)
        ax1.axvline(times.steady_s / 60.0, color=line.get_color(), ls=":", lw=1)
    _panel(ax1, 1.0, "1 mL/h from rest (Neff et al. 2001: 50 mL syringes, four pumps)")
    # 2. at 0.1 mL/h
    t = np.arange(0.0, 180 * 60.0 + 1.0, 2.0)
    params = SystemParams.nominal()
    v = simulate(params, Schedule().set_rate(0, 0.1).start(0), t).row(0)["delivered_ml"]
    times = startup_times(t, v, 0.1)
    ax2.axvspan(*NEFF_2007_T2_0P1_MIN, color="tab:green", alpha=0.12, label="Neff 2007: t2 ± SD")
    tf, q = _flow(t, v)
    ax2.plot(
        tf / 60.0,
        q,
        label=f"BD Plastipak 50 mL: t1 {times.first_delivery_s / 60:.1f}, "
        f"t2 {times.steady_s / 60:.1f} min",
    )
    ax2.axvline(times.steady_s / 60.0, color="tab:blue", ls=":", lw=1)
    _panel(ax2, 0.1, "0.1 mL/h from rest (Neff et al. 2007)")
    # 3. after a 2 mL pre-bolus
    t = np.arange(0.0, 60 * 60.0 + 1.0, 1.0)
    schedule = Schedule().set_rate(0, 120.0).start(0).stop(60.0)
    schedule.set_rate(600.0, 1.0).start(600.0)
    v = simulate(params, schedule, t).row(0)["delivered_ml"]
    i0 = int(np.searchsorted(t, 600.0))
    after = v[i0:] - v[i0]
    ts = t[i0:] - 600.0
    times = startup_times(ts, after, 1.0)
    ax3.axvspan(
        *NEFF_2001_PREBOLUS_T1_MIN, color="tab:orange", alpha=0.12, label="Neff 2001: t1 range"
    )
    ax3.axvspan(
        *NEFF_2001_PREBOLUS_T2_MIN, color="tab:green", alpha=0.12, label="Neff 2001: t2 range"
    )
    tf, q = _flow(ts, after)
    ax3.plot(
        tf / 60.0,
        q,
        label=f"BD Plastipak 50 mL: t1 {times.first_delivery_s / 60:.2f}, "
        f"t2 {times.steady_s / 60:.1f} min",
    )
    ax3.axvline(times.steady_s / 60.0, color="tab:blue", ls=":", lw=1)
    _panel(ax3, 1.0, "1 mL/h, restarted 9 min after a 2 mL pre-bolus (Neff et al. 2001)")
    ax3.set_xlim(0.0, 30.0)
    for ax in axes:
        ax.set_xlabel("time since start (min)", fontsize=8)
    fig.suptitle("Start-up of the twin's nominal syringes against published measurements")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main(Path(__file__).with_name("startup.png"))
