"""Draw docs/figures/startup.png: the twin's start-up at 1 mL/h against Neff et al. 2001.

Run from the repository root: ``python3 docs/figures/startup.py``. The figure shows the
outlet flow (2 min moving average, the window of the steady-flow criterion) of the default
BD Plastipak 50 mL syringe and of the 10 mL and 20 mL ones at 1 mL/h, with the ranges of
the four pumps' mean times to first delivery and to steady flow that Neff et al. 2001
(Paediatr Anaesth 11(5):561-5) measured with 50 mL syringes at 1 mL/h shaded.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt
import numpy as np
from medtwin.device_models.schedule import Schedule
from medtwin.device_models.system import SystemParams, simulate
from medtwin.device_models.system.startup import (
    NEFF_2001_T1_MIN,
    NEFF_2001_T2_MIN,
    startup_times,
)

RATE_ML_H = 1.0
SYRINGES = ("BD Plastipak 50 mL", "BD Plastipak 20 mL", "BD Plastipak 10 mL")


def main(path: Path) -> None:
    t = np.arange(0.0, 90 * 60.0 + 1.0, 1.0)
    fig, (ax_v, ax_q) = plt.subplots(2, 1, figsize=(8.0, 6.5), sharex=True)
    ax_v.axvspan(*NEFF_2001_T1_MIN, color="tab:orange", alpha=0.15, label="Neff 2001: t1 range")
    ax_q.axvspan(*NEFF_2001_T2_MIN, color="tab:green", alpha=0.15, label="Neff 2001: t2 range")
    lag = 120
    for name in SYRINGES:
        params = SystemParams.nominal(syringe=name)
        row = simulate(params, Schedule().set_rate(0, RATE_ML_H).start(0), t).row(0)
        v = row["delivered_ml"]
        times = startup_times(t, v, RATE_ML_H)
        label = (
            f"{name}: t1 {times.first_delivery_s / 60:.1f} min, t2 {times.steady_s / 60:.1f} min"
        )
        (line,) = ax_v.plot(t / 60.0, v, label=label)
        flow = (v[lag:] - v[:-lag]) / lag * 3600.0
        ax_q.plot(t[lag:] / 60.0, flow, color=line.get_color())
        ax_q.axvline(times.steady_s / 60.0, color=line.get_color(), ls=":", lw=1)
    ax_v.plot(t / 60.0, RATE_ML_H * t / 3600.0, "k--", lw=0.8, label="set rate × time")
    ax_v.set_ylabel("delivered volume (mL)")
    ax_v.legend(fontsize=8, loc="upper left")
    ax_q.axhspan(0.9 * RATE_ML_H, 1.1 * RATE_ML_H, color="0.85", label="±10 % of set rate")
    ax_q.set_ylim(0.0, 2.0 * RATE_ML_H)
    ax_q.set_ylabel("flow, 2 min average (mL/h)")
    ax_q.set_xlabel("time since start (min)")
    ax_q.legend(fontsize=8, loc="upper right")
    fig.suptitle("Start-up at 1 mL/h: the twin's nominal syringes against Neff et al. 2001")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main(Path(__file__).with_name("startup.png"))
