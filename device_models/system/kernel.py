"""The exact discrete-time update of pump + line + balance over one constant-input phase.

Inside a phase every input is constant, so the state at any time ``u`` follows from the
state at the phase start in closed form (the formulas are in the package docstring):
:func:`evaluate` computes it on a whole grid of output times for a whole batch of parameter
sets at once (arrays of shape ``(B, n)``), with the numerically safe ``φ0``/``φ1`` geometric
sums. :class:`PhaseKernel` holds the model's rows, inputs and state and builds each phase's
constants (:meth:`PhaseKernel._phase`) and the state at an evaluated time
(:meth:`PhaseKernel._state_at`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from medtwin.device_models.syringe_pump import PA_PER_MMHG
from medtwin.device_models.system.params import (
    FloatArray,
    ParamsLike,
    Rows,
    rows_from,
)
from medtwin.device_models.system.state import Inputs, SystemState, initial_state
from numpy.typing import NDArray

__all__ = ["EPS_STEPS", "Eval", "Phase", "PhaseKernel", "col", "evaluate", "sub_eval", "sub_phase"]


EPS_STEPS = 1e-9  # a step due within 1e-9 of a step period of u counts as done at u


def _phi0(y: FloatArray) -> FloatArray:
    """(1 − e^{−y})/y, 1 at y = 0 (series below |y| < 1e-5)."""
    y = np.asarray(y, dtype=float)
    small = np.abs(y) < 1e-5
    if not small.any():
        return -np.expm1(-y) / y
    safe = np.where(small, 1.0, y)
    series = 1.0 - y / 2.0 + y * y / 6.0
    return np.where(small, series, -np.expm1(-safe) / safe)


def _phi1(y: FloatArray) -> FloatArray:
    """(1 − e^{−y}(1 + y))/y², 1/2 at y = 0 (series below |y| < 1e-3)."""
    y = np.asarray(y, dtype=float)
    small = np.abs(y) < 1e-3
    if not small.any():
        return (-np.expm1(-y) - y * np.exp(-y)) / (y * y)
    safe = np.where(small, 1.0, y)
    series = 0.5 - y / 3.0 + y * y / 8.0 - y**3 / 30.0 + y**4 / 144.0
    exact = (-np.expm1(-safe) - safe * np.exp(-safe)) / (safe * safe)
    return np.where(small, series, exact)


def _train_sum(
    n_members: FloatArray,
    t_last: FloatArray,
    spacing_s: FloatArray,
    alpha: FloatArray,
    beta: FloatArray,
    lam: FloatArray | None,
    u: FloatArray,
) -> FloatArray:
    """Σ_{i<N} (α + β t_i) e^{−λ(u − t_i)} over a uniform impulse train ending at t_last.

    ``t_i = t_last − i·spacing``; ``lam=None`` means λ = 0 (the plain sum). All
    arguments broadcast together.
    """
    n = np.maximum(n_members, 0.0)
    if lam is None:
        return (alpha + beta * t_last) * n - beta * spacing_s * (n * (n - 1.0) * 0.5)
    x = lam * spacing_s
    phi_x = _phi0(x)
    nx = n * x
    phi_nx = _phi0(nx)
    g0 = n * phi_nx / phi_x
    g1 = n * (n * _phi1(nx) * phi_x - phi_nx * _phi1(x)) / (phi_x * phi_x)
    weight = np.exp(-lam * np.maximum(u - t_last, 0.0))
    return weight * ((alpha + beta * t_last) * g0 - beta * spacing_s * g1)


def _flow_integral(
    u0: FloatArray,
    u1: FloatArray,
    alpha: FloatArray,
    beta: FloatArray,
    lam: FloatArray | None,
    u: FloatArray,
) -> FloatArray:
    """∫_{u0}^{u1} (α + β s) e^{−λ(u − s)} ds for u1 ≤ u (zero when u1 ≤ u0); λ = 0 if None."""
    d = np.maximum(u1 - u0, 0.0)
    if lam is None:
        return (alpha + beta * u1) * d - beta * d * d * 0.5
    y = lam * d
    weight = np.exp(-lam * np.maximum(u - u1, 0.0))
    return weight * ((alpha + beta * u1) * d * _phi0(y) - beta * d * d * _phi1(y))


# --------------------------------------------------------------------------- phase kernel


@dataclass
class Phase:
    """Constants of one (sub)phase for a set of rows, all arrays broadcast as (B, 1)."""

    t_a: FloatArray  # (B,1) phase start
    t_stop: FloatArray  # motor stops (or never started) at this time
    f: FloatArray  # steps/s (0 when not running)
    d: FloatArray  # direction ±1
    alpha: FloatArray  # true volume per step, α + β t (mL)
    beta: FloatArray
    dv_cfg: FloatArray  # pump-counted volume per step (mL)
    sigma: FloatArray  # steps of free travel before the drive reaches the stopper (backlash)
    creep: NDArray[np.bool_]  # syringe: the rim sticks (creeps) in this phase
    kappa: FloatArray  # the rim's creep rate k/η (1/s; 0 when not creeping)
    v_ic: FloatArray  # volume the force held at the phase start lets out by creep (mL)
    chain_a: FloatArray  # force the assembly carries at the phase start (N, signed)
    n_per_ml: FloatArray  # spring force per mL of drive travel ahead of the rim (N/mL)
    k_full: FloatArray
    k_partial: FloatArray  # index of the partial step (inf: none)
    e_partial: FloatArray
    dip_period: FloatArray  # steps (inf: no dips)
    dip_first: FloatArray
    dip_gain: FloatArray  # dip amplitude / step amplitude (negative)
    mean_gain: FloatArray  # continuous-mode gain (1 + dip_gain/period)
    lam: FloatArray
    p_eq: FloatArray
    quantised: bool


@dataclass
class Eval:
    """Closed-form state of each row at evaluation times u (arrays (B, m))."""

    u: FloatArray
    n_steps: FloatArray
    acc: FloatArray
    plunger_ml: FloatArray
    pressure_mmhg: FloatArray
    delivered_ml: FloatArray
    settled_g: FloatArray
    load_g: FloatArray
    counted_ml: FloatArray
    peak_pressure_mmhg: FloatArray
    chain_n: FloatArray  # force the syringe assembly carries (N, signed)


def col(a: NDArray[Any]) -> NDArray[Any]:
    return np.asarray(a)[:, None]


def evaluate(rows: Rows, st: SystemState, ph: Phase, u: FloatArray) -> Eval:
    """State at times ``u`` (shape (B, m), each ≥ the row's t_a) in closed form."""
    u = np.maximum(u, ph.t_a)
    u_run = np.minimum(u, ph.t_stop)
    tau_run = np.maximum(u_run - ph.t_a, 0.0)
    lam_b = col(1.0 / rows.tau_b)
    lam = ph.lam
    f = ph.f
    safe_f = np.where(f > 0, f, 1.0)
    h = 1.0 / safe_f

    lam_line = None if not np.any(lam) else lam
    creep = ph.creep
    any_creep = bool(np.any(creep))
    # The drive's source at each rate: raw sums T_r = Σ J_i e^{−r(u − t_i)} (impulses) or the
    # same integral of a continuous flow; rates: 0 (None), the line's, the balance's and,
    # for rows whose rim sticks, its creep rate κ.
    rates: list[FloatArray | None] = [None, lam_line, lam_b]
    if any_creep:
        rates.append(ph.kappa)
    if ph.quantised:
        x = col(st.acc) + f * tau_run
        n = np.floor(x + EPS_STEPS)
        acc = x - n
        # main train: steps k_full..n
        n_main = np.maximum(n - ph.k_full + 1.0, 0.0)
        t_last = ph.t_a + (n - col(st.acc)) * h
        has_p = ph.k_partial <= n
        any_partial = bool(np.any(has_p))
        t_p = ph.t_a + (np.where(np.isfinite(ph.k_partial), ph.k_partial, 0.0) - col(st.acc)) * h
        j_p = ph.e_partial * (ph.alpha + ph.beta * t_p)
        raw = []
        for lam_i in rates:
            s = _train_sum(n_main, t_last, h, ph.alpha, ph.beta, lam_i, u)
            # the partial step where the slack runs out
            if any_partial:
                decay = 1.0 if lam_i is None else np.exp(-lam_i * np.maximum(u - t_p, 0.0))
                s = s + np.where(has_p, j_p * decay, 0.0)
            # finger hand-over draw-backs (volumetric)
            if np.any(np.isfinite(ph.dip_period)):
                period = np.where(np.isfinite(ph.dip_period), ph.dip_period, 1.0)
                n_dip = np.where(
                    np.isfinite(ph.dip_period) & (n >= ph.dip_first),
                    np.floor((n - ph.dip_first) / period + EPS_STEPS) + 1.0,
                    0.0,
                )
                k_dip_last = ph.dip_first + (n_dip - 1.0) * period
                t_dip_last = ph.t_a + (k_dip_last - col(st.acc)) * h
                s = s + ph.dip_gain * _train_sum(
                    n_dip, t_dip_last, h * period, ph.alpha, ph.beta, lam_i, u
                )
            raw.append(ph.d * np.where(f > 0, s, 0.0))
        steps_done = n
        last_step_t = np.where((n >= 1) & ~creep, t_last, -np.inf)
    else:
        steps_cont = f * tau_run
        u_engage = ph.t_a + ph.sigma * h
        start = np.minimum(np.maximum(u_engage, ph.t_a), u_run)
        raw = []
        for lam_i in rates:
            s = f * ph.mean_gain * _flow_integral(start, u_run, ph.alpha, ph.beta, lam_i, u)
            raw.append(ph.d * np.where(f > 0, s, 0.0))
        steps_done = steps_cont
        acc = np.broadcast_to(col(st.acc), steps_done.shape)
        last_step_t = np.full_like(steps_done, -np.inf)
    sums = raw[:3]
    chain = np.broadcast_to(col(st.chain_n), u.shape)
    if any_creep:
        # The rim sticks and creeps: it follows the drive's travel through a first-order
        # lag of rate κ (spring k against the creep resistance η, κ = k/η), and lets out
        # the force the spring holds at the phase start (volume v_ic = F_a/k · A). A source
        # through that lag reaches rate r as κ/(κ − r)·(T_r − T_κ); the start-up force as
        # v_ic·κ(e^{−rΔ} − e^{−κΔ})/(κ − r).
        kappa = np.where(creep, ph.kappa, 1.0)
        t_kappa = raw[3]
        e_kappa = np.exp(-kappa * (u - ph.t_a))
        filtered = []
        for lam_i, s in zip(rates[:3], sums, strict=True):
            r = 0.0 if lam_i is None else lam_i
            gain = kappa / (kappa - r)
            e_r = 1.0 if lam_i is None else np.exp(-r * (u - ph.t_a))
            s_creep = gain * (s - t_kappa) + ph.v_ic * gain * (e_r - e_kappa)
            filtered.append(np.where(creep, s_creep, s))
        sums = filtered
        chain = np.where(creep, ph.chain_a * e_kappa + ph.n_per_ml * t_kappa, chain)
    s0, s_line, s_bal = sums

    delta = u - ph.t_a
    C = col(rows.C)
    p_a = col(st.pressure_mmhg)
    a = np.exp(-lam * delta)
    pressure = ph.p_eq + (p_a - ph.p_eq) * a + s_line / C
    stored = C * (p_a - ph.p_eq)
    delivered = col(st.delivered_ml) + stored * (1.0 - a) + s0 - s_line
    plunger = col(st.plunger_ml) + s0
    kb = col(rows.kb_rho)
    evap = col(rows.evap_g_s)
    tau_b = col(rows.tau_b)
    vessel = col(rows.vessel_g)
    load_a = vessel + kb * col(st.delivered_ml) - evap * ph.t_a
    eb = np.exp(-delta / tau_b)
    denom = 1.0 - lam * tau_b
    h_delta = 1.0 - (a - lam * tau_b * eb) / denom
    settled = (
        col(st.settled_g) * eb
        + load_a * (1.0 - eb)
        + kb * (stored * h_delta + s0 - (s_line - lam * tau_b * s_bal) / denom)
        - evap * (delta - tau_b * (1.0 - eb))
    )
    load = vessel + kb * delivered - evap * u
    counted = ph.dv_cfg * steps_done
    # Pressure right after the last step (the peak between evaluation points, open line).
    if ph.quantised and np.any(lam):
        since_last = np.where(np.isfinite(last_step_t), np.maximum(u - last_step_t, 0.0), 0.0)
        peak = ph.p_eq + (pressure - ph.p_eq) * np.exp(np.minimum(lam * since_last, 50.0))
    else:
        peak = pressure
    return Eval(
        u=u,
        n_steps=steps_done,
        acc=acc,
        plunger_ml=plunger,
        pressure_mmhg=pressure,
        delivered_ml=delivered,
        settled_g=settled,
        load_g=load,
        counted_ml=counted,
        peak_pressure_mmhg=np.maximum(peak, pressure),
        chain_n=chain,
    )


class PhaseKernel:
    """The model's rows, inputs and state, and what one phase is made of."""

    def __init__(self, params: ParamsLike) -> None:
        self.rows, self.rep = rows_from(params)
        r = self.rows
        if r.kind == "syringe":
            self.backlash_steps = r.backlash_mm / r.travel_mm
        else:
            self.backlash_steps = r.dead_ml / r.dv_cfg_volumetric
        self.inputs = Inputs()
        p_eq0 = r.back_pressure_mmhg - r.head_mmhg
        self.state = initial_state(r, self.backlash_steps, p_eq0)
        self.t = 0.0
        self.tare_g = np.zeros(r.size)
        # Incremental use: the phase start (time, state, constants) every later time of the
        # same phase is evaluated from, in closed form. Reset by commands and events.
        self._origin: tuple[float, SystemState, Phase] | None = None

    # -- per-phase constants --------------------------------------------------------------

    def _dv_cfg(self, idx: NDArray[np.intp]) -> FloatArray:
        r = self.rows
        if r.kind == "syringe":
            diameter = (
                np.full(idx.shape, self.inputs.diameter_mm)
                if self.inputs.diameter_mm is not None
                else r.default_diameter_mm[idx]
            )
            return np.pi * diameter**2 / 4.0 * r.travel_mm[idx] / 1000.0
        return r.dv_cfg_volumetric[idx]

    def p_eq(self, idx: NDArray[np.intp]) -> FloatArray:
        r = self.rows
        bp = (
            np.full(idx.shape, self.inputs.back_pressure_mmhg)
            if self.inputs.back_pressure_mmhg is not None
            else r.back_pressure_mmhg[idx]
        )
        return bp - r.head_mmhg[idx]

    def sensed_gain_offset(
        self, idx: NDArray[np.intp]
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        """(gain, offset while running, offset while stopped) of the sensed pressure."""
        r = self.rows
        if r.kind == "syringe":
            dv = self._dv_cfg(idx)
            area_cfg = dv * 1000.0 / r.travel_mm[idx]  # mm²
            gain = r.area_true_mm2[idx] / area_cfg
            offset = (r.friction_n[idx] - r.friction_comp_n[idx]) / (PA_PER_MMHG * area_cfg * 1e-6)
            return gain, offset, np.zeros_like(gain)
        off = r.sensor_offset_mmhg[idx]
        return np.ones_like(off), off, off

    def thresholds(self, idx: NDArray[np.intp]) -> tuple[FloatArray, FloatArray]:
        """True line pressures at which the occlusion alarm arms and the motor stalls."""
        r = self.rows
        gain, offset, _ = self.sensed_gain_offset(idx)
        alarm = (r.threshold_mmhg[idx] - offset) / gain
        if r.kind == "syringe":
            stall = (r.max_force_n[idx] - r.friction_n[idx]) / (
                PA_PER_MMHG * r.area_true_mm2[idx] * 1e-6
            )
        else:
            stall = np.full(idx.shape, np.inf)
        return alarm, stall

    def _step_rate(self, idx: NDArray[np.intp], dv_cfg: FloatArray) -> FloatArray:
        r = self.rows
        if self.inputs.purge:
            return r.max_step_hz[idx].copy()
        return self.inputs.rate_ml_h / 3600.0 / dv_cfg

    def _phase(self, idx: NDArray[np.intp], st: SystemState, t_a: FloatArray, t_b: float) -> Phase:
        r = self.rows
        dv_cfg = self._dv_cfg(idx)
        p_eq = self.p_eq(idx)
        running = st.running
        f = np.where(running, self._step_rate(idx, dv_cfg), 0.0)
        t_stop = np.where(running, np.minimum(st.pending_alarm_s, t_b), t_a)
        d = np.full(idx.shape, self.inputs.direction)
        # True volume per step, linear in time (wear) within the phase.
        if r.kind == "syringe":
            dv0 = r.area_true_mm2[idx] * r.travel_mm[idx] / 1000.0
            dip_period = np.full(idx.shape, np.inf)
            dip_gain = np.zeros(idx.shape)
        else:
            eff = r.efficiency[idx] * (1.0 - r.eff_drop[idx] * np.maximum(p_eq, 0.0))
            ripple = r.ripple[idx]
            dv0 = r.dv_true_vol[idx] * eff * (1.0 + ripple)
            period = r.dip_period[idx].astype(float)
            dip_period = np.where(ripple > 0, period, np.inf)
            dip_gain = -period * ripple / (1.0 + ripple)
        w = r.wear_per_s[idx]
        worn = (w > 0) & (t_a >= r.wear_onset_s[idx])
        alpha = np.where(worn, dv0 * (1.0 + w * r.wear_onset_s[idx]), dv0)
        beta = np.where(worn, -dv0 * w, 0.0)
        # Backlash: forward consumes the slack, reverse re-opens it.
        b = self.backlash_steps[idx]
        sigma = np.where(d > 0, st.slack_steps, b - st.slack_steps)
        sigma = np.maximum(sigma, 0.0)
        # Stopper: unless its rim is sliding (broken away, motor running the same way), it
        # sticks and creeps: the drive's travel beyond the backlash loads the assembly's
        # spring and the rim follows through the creep lag; the breakaway, when the
        # spring's force reaches the static friction, is an event (.events).
        if r.kind == "syringe":
            creep = ~(st.sliding & running) & ~(st.creep_held & ~running)
            kappa = np.where(creep, r.kappa[idx], 0.0)
            area = r.area_true_mm2[idx]
            n_per_ml = r.stiffness_n_per_mm[idx] * 1000.0 / area
            v_ic = np.where(creep, st.chain_n / n_per_ml, 0.0)
        else:
            creep = np.zeros(idx.shape, dtype=bool)
            kappa = np.zeros(idx.shape)
            n_per_ml = np.zeros(idx.shape)
            v_ic = np.zeros(idx.shape)
        frac = sigma - np.floor(sigma)
        k_full = np.floor(sigma) + 1.0 + (frac > 1e-12)
        k_partial = np.where(frac > 1e-12, np.floor(sigma) + 1.0, np.inf)
        e_partial = np.where(frac > 1e-12, 1.0 - frac, 0.0)
        k0 = np.maximum(1.0, np.ceil(sigma - 1e-12))
        safe_period = np.where(np.isfinite(dip_period), dip_period, 1.0)
        dip_first = k0 + np.mod(-(st.rotor.astype(float) + k0), safe_period)
        mean_gain = np.where(np.isfinite(dip_period), 1.0 + dip_gain / safe_period, 1.0)
        lam = np.zeros(idx.shape) if self.inputs.occluded else r.lam_open[idx]
        return Phase(
            t_a=col(t_a),
            t_stop=col(t_stop),
            f=col(f),
            d=col(d),
            alpha=col(alpha),
            beta=col(beta),
            dv_cfg=col(dv_cfg),
            sigma=col(sigma),
            creep=col(creep),
            kappa=col(kappa),
            v_ic=col(v_ic),
            chain_a=col(st.chain_n),
            n_per_ml=col(n_per_ml),
            k_full=col(k_full),
            k_partial=col(k_partial),
            e_partial=col(e_partial),
            dip_period=col(dip_period),
            dip_first=col(dip_first),
            dip_gain=col(dip_gain),
            mean_gain=col(mean_gain),
            lam=col(lam),
            p_eq=col(p_eq),
            quantised=r.quantised,
        )

    # -- state after an evaluation -----------------------------------------------------------

    def _state_at(
        self, idx: NDArray[np.intp], st: SystemState, ph: Phase, ev: Eval, j: NDArray[np.intp]
    ) -> SystemState:
        """The state of each row at its evaluation column ``j`` (one column per row)."""
        rows_i = np.arange(len(idx))
        n = ev.n_steps[rows_i, j]
        new = st.copy()
        new.acc = ev.acc[rows_i, j] if self.rows.quantised else st.acc.copy()
        d = ph.d[:, 0]
        b = self.backlash_steps[idx]
        new.slack_steps = np.where(
            d > 0, np.maximum(st.slack_steps - n, 0.0), np.minimum(st.slack_steps + n, b)
        )
        if self.rows.kind == "syringe":
            # the force the assembly carries: the creep's closed form while the rim sticks,
            # unchanged while it slides (the breakaway is applied by .events)
            new.chain_n = np.where(ph.creep[:, 0], ev.chain_n[rows_i, j], st.chain_n)
        period = self.rows.dip_period[idx]
        new.rotor = np.where(
            period > 0, (st.rotor + np.floor(n).astype(np.int64)) % np.maximum(period, 1), 0
        )
        new.plunger_ml = ev.plunger_ml[rows_i, j]
        new.pressure_mmhg = ev.pressure_mmhg[rows_i, j]
        new.delivered_ml = ev.delivered_ml[rows_i, j]
        new.settled_g = ev.settled_g[rows_i, j]
        counted = ev.counted_ml[rows_i, j]
        new.infused_ml = st.infused_ml + np.where(d > 0, counted, 0.0)
        new.withdrawn_ml = st.withdrawn_ml + np.where(d < 0, counted, 0.0)
        new.run_counted_ml = st.run_counted_ml + counted
        # The motor's running flag changes only through commands and events (the phase
        # end is not a stop).
        return new


def sub_phase(ph: Phase, sub: NDArray[np.intp]) -> Phase:
    values: dict[str, Any] = {
        k: (v[sub] if isinstance(v, np.ndarray) else v) for k, v in ph.__dict__.items()
    }
    return Phase(**values)


def sub_eval(ev: Eval, sub: NDArray[np.intp]) -> Eval:
    return Eval(**{k: v[sub] for k, v in ev.__dict__.items()})
