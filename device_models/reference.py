"""The reference solution: the syringe system written as an ODE for ``solve_ivp``.

This is the *test* reference (docs/models.md, "How it is solved"), not the model: the same
equations as :mod:`medtwin.device_models.system` with continuous plunger motion (a staircase
of microsteps is no input for an ODE solver), integrated by ``scipy.integrate.solve_ivp``
(RK45, tight tolerances) and restarted at every discontinuity (rate changes, the end of the
backlash, the stopper's breakaway — located by ``solve_ivp``'s event finder on the spring's
force — where the rim's jump enters the line as an impulse, the wear onset) rather than
stepping across it. The tests and the benchmark compare the closed-form model against it.

State: drive travel in steps ``n``, the drive's travel ahead of the stopper's rim ``L`` (as
true volume, mL; the assembly's spring carries ``k·L``), line pressure ``P`` (mmHg), outlet
volume ``V`` (mL), weighing-cell output ``M`` (g). While the rim sticks it creeps at
``κ·L`` (κ = stiffness/creep resistance) and ``dL/dt = q_drive − κL``; once the force
reaches the breakaway friction the rim jumps to the sliding friction's ``L`` and then
follows the drive. Line open throughout.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from medtwin.device_models.syringe_pump import SyringePumpParams
from medtwin.device_models.system import SystemParams
from numpy.typing import NDArray
from scipy.integrate import solve_ivp

__all__ = ["reference_constants", "solve_reference"]


def reference_constants(p: SystemParams) -> dict[str, float]:
    """The constants of the syringe system in SI-ish units (s, mL, mmHg, g)."""
    pump = p.pump
    if not isinstance(pump, SyringePumpParams):
        raise TypeError("the ODE reference covers the syringe pump")
    travel = pump.drive.travel_per_step_mm
    C = (pump.syringe.barrel_compliance_ul_per_mmhg + p.line.tubing_compliance_ul_per_mmhg) * 1e-3
    R = p.line.resistance_mmhg_per_ml_h * 3600.0
    return {
        "dv": pump.syringe.area_mm2 * travel / 1000.0,
        "dv_cfg": pump.volume_per_step_ml(),
        "sigma": pump.drive.backlash_mm / travel,
        "bolus": pump.syringe.breakaway_bolus_ml,
        "kappa": pump.syringe.assembly_stiffness_n_per_mm
        / pump.syringe.creep_resistance_n_s_per_mm,
        "n_per_ml": pump.syringe.assembly_stiffness_n_per_mm * 1000.0 / pump.syringe.area_mm2,
        "f_static": pump.syringe.breakaway_force_n,
        "f_sliding": pump.syringe.stopper_friction_n,
        "C": C,
        "lam": 1.0 / (R * C),
        "p_eq": p.line.equilibrium_pressure_mmhg,
        "kb": p.balance.grams_per_ml,
        "tau_b": p.balance.settling_time_constant_s,
        "evap": p.balance.evaporation_g_per_h / 3600.0,
        "vessel": p.balance.vessel_mass_g,
        "wear": pump.drive.wear_percent_per_h / 100.0 / 3600.0,
        "wear_on": pump.drive.wear_onset_s,
    }


def solve_reference(
    params: SystemParams,
    rates: Sequence[tuple[float, float]],
    t_out: NDArray[np.float64],
    *,
    rtol: float = 1e-11,
    atol: float = 1e-13,
) -> dict[str, NDArray[np.float64]]:
    """Pressure, outlet volume and settled balance mass at ``t_out`` for a piecewise
    constant rate schedule ``[(t_s, rate_ml_h), ...]`` started at t = 0.

    Returns a dict with ``pressure_mmhg``, ``delivered_ml`` and ``settled_g`` (shape (n,)).
    """
    k = reference_constants(params)
    t_end = float(t_out[-1])
    breaks = sorted({float(t) for t, _ in rates if 0.0 < t < t_end} | {t_end})

    def rate_at(t: float) -> float:
        value = 0.0
        for t_r, r in rates:
            if t_r <= t:
                value = r
        return value

    def rhs(
        t: float, y: NDArray[np.float64], f: float, engaged: bool, sliding: bool
    ) -> NDArray[np.float64]:
        _, lag, P, V, M = y
        dv = k["dv"] * (1.0 - k["wear"] * max(0.0, t - k["wear_on"]))
        drive = f * dv if engaged else 0.0
        q = drive if sliding else k["kappa"] * lag
        load = k["vessel"] + k["kb"] * V - k["evap"] * t
        return np.array(
            [
                f,
                0.0 if sliding else drive - k["kappa"] * lag,
                q / k["C"] - k["lam"] * (P - k["p_eq"]),
                k["lam"] * k["C"] * (P - k["p_eq"]),
                (load - M) / k["tau_b"],
            ]
        )

    def breakaway(
        t: float, y: NDArray[np.float64], f: float, engaged: bool, sliding: bool
    ) -> float:
        return float(k["n_per_ml"] * y[1] - k["f_static"])

    breakaway.terminal = True  # type: ignore[attr-defined]
    breakaway.direction = 1.0  # type: ignore[attr-defined]

    y = np.array([0.0, 0.0, k["p_eq"], 0.0, k["vessel"]])
    out = np.zeros((5, t_out.size))
    out[:, t_out <= 0.0] = y[:, None]
    t = 0.0
    sliding = False
    for t_next in breaks:
        f = rate_at(t) / 3600.0 / k["dv_cfg"]
        if f == 0.0:
            sliding = False  # a stopped motor lets static friction hold the rim
        cuts = {t_next}
        if f > 0 and y[0] < k["sigma"]:
            t_engage = t + (k["sigma"] - y[0]) / f
            if t_engage < t_next:
                cuts.add(t_engage)
        if k["wear"] > 0 and t < k["wear_on"] < t_next:
            cuts.add(k["wear_on"])
        for t_cut in sorted(cuts):
            while t < t_cut:
                engaged = y[0] >= k["sigma"] - 1e-9
                events: list[Any] = [] if sliding or f == 0 else [breakaway]
                sol = solve_ivp(
                    rhs,
                    (t, t_cut),
                    y,
                    args=(f, engaged, sliding),
                    method="RK45",
                    rtol=rtol,
                    atol=atol,
                    dense_output=True,
                    events=events,
                )
                if not sol.success:  # pragma: no cover
                    raise RuntimeError(sol.message)
                t_end_seg = float(sol.t[-1])
                mask = (t_out > t) & (t_out <= t_end_seg)
                if mask.any():
                    dense = sol.sol
                    assert dense is not None  # dense_output=True
                    out[:, mask] = dense(t_out[mask])
                y = sol.y[:, -1].copy()
                if sol.status == 1:  # the stopper breaks away: its rim jumps
                    jump = y[1] - k["f_sliding"] / k["n_per_ml"]
                    y[1] = k["f_sliding"] / k["n_per_ml"]
                    y[2] += jump / k["C"]
                    sliding = True
                t = t_end_seg
                if engaged is False and abs(y[0] - k["sigma"]) < 1e-6:
                    y[0] = k["sigma"]
    return {"pressure_mmhg": out[2], "delivered_ml": out[3], "settled_g": out[4]}
