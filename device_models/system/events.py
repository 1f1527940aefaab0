"""Events inside a phase, found exactly: occlusion alarm, stall, volume target, empty, wear.

An event splits the phase it falls in (:meth:`EventHandling._find_events`): the pending
occlusion alarm fires (after the pump's detection latency; the motor stops, optional
back-off), the onset of wear re-linearises the step volume, the volume target is reached,
and crossings of the occlusion threshold, the stall force or the end of the syringe
(container) are located on the evaluation grid and refined by bisection over step indices
(or over time, for continuous motion), each candidate evaluated with the same closed form.
:meth:`EventHandling._apply_events` then changes the state as the pump would.
"""

from __future__ import annotations

import numpy as np
from medtwin.device_models.schedule import Alarm
from medtwin.device_models.system.kernel import (
    EPS_STEPS,
    Eval,
    Phase,
    PhaseKernel,
    evaluate,
    sub_phase,
)
from medtwin.device_models.system.params import (
    FloatArray,
)
from medtwin.device_models.system.state import SystemState
from numpy.typing import NDArray

__all__ = ["EventHandling"]


_EV_FIRE, _EV_WEAR, _EV_TARGET, _EV_CROSS, _EV_STALL, _EV_EMPTY, _EV_BREAK = 1, 2, 3, 4, 5, 6, 7


class EventHandling(PhaseKernel):
    """Finding and applying the events of a phase (a part of :class:`~.model.Model`)."""

    def _find_events(
        self,
        idx: NDArray[np.intp],
        st: SystemState,
        ph: Phase,
        ev: Eval,
        t_a: FloatArray,
        t_b: float,
    ) -> tuple[FloatArray, NDArray[np.int64]]:
        """Earliest event per row in (t_a, t_b) (inf: none) and its kind code."""
        r = self.rows
        size = idx.size
        t_event = np.full(size, np.inf)
        kind = np.zeros(size, dtype=np.int64)
        running = st.running & (ph.f[:, 0] > 0)
        if not np.any(running):
            return t_event, kind
        f = ph.f[:, 0]
        safe_f = np.where(f > 0, f, 1.0)
        t_stop = ph.t_stop[:, 0]

        def consider(t: FloatArray, code: int) -> None:
            better = running & (t < t_event) & (t <= t_stop) & (t >= t_a) & (t < t_b)
            t_event[better] = t[better]
            kind[better] = code

        # 1. the pending occlusion alarm fires (motor stops at that time)
        fire = np.where(np.isfinite(st.pending_alarm_s), st.pending_alarm_s, np.inf)
        consider(fire, _EV_FIRE)
        # 2. wear onset (re-linearise the step volume)
        onset = r.wear_onset_s[idx]
        wear_split = (r.wear_per_s[idx] > 0) & (onset > t_a)
        consider(np.where(wear_split, onset, np.inf), _EV_WEAR)
        # 3. volume target (pump-counted volume since start)
        target = self.inputs.target_ml
        if target > 0 and self.inputs.direction > 0:
            remaining = target - st.run_counted_ml
            dv = ph.dv_cfg[:, 0]
            if r.quantised:
                k = np.maximum(np.ceil(remaining / dv - 1e-9), 1.0)
                t_target = t_a + (k - st.acc) / safe_f
            else:
                t_target = t_a + np.maximum(remaining, 0.0) / (dv * safe_f)
            consider(np.where(remaining > 0, t_target, t_a), _EV_TARGET)
        # 4. the stopper's breakaway (the spring's force reaches the static friction)
        if r.kind == "syringe" and np.any(ph.creep[:, 0] & running):
            consider(self._find_breakaway(idx, st, ph, ev, t_a), _EV_BREAK)
        # 5. crossings: pressure alarm, stall, empty (infusing only)
        if self.inputs.direction > 0:
            alarm_p, stall_p = self.thresholds(idx)
            armed = ~np.isfinite(st.pending_alarm_s) & ((st.alarms & int(Alarm.OCCLUSION)) == 0)
            fill = r.fill_ml[idx]
            crossing = np.zeros(ev.u.shape, dtype=bool)
            crossing |= armed[:, None] & (ev.peak_pressure_mmhg >= alarm_p[:, None])
            crossing |= ev.peak_pressure_mmhg >= stall_p[:, None]
            crossing |= ev.plunger_ml >= fill[:, None] - 1e-12
            crossing &= ev.u <= ph.t_stop
            crossing &= ev.n_steps > 0 if r.quantised else ev.u > t_a[:, None]
            rows_c = np.flatnonzero(crossing.any(axis=1) & running)
            if rows_c.size:
                t_c, code_c = self._refine_crossing(
                    idx, st, ph, ev, crossing, rows_c, alarm_p, stall_p, fill, armed
                )
                candidate = np.full(size, np.inf)
                codes = np.zeros(size, dtype=np.int64)
                candidate[rows_c] = t_c
                codes[rows_c] = code_c
                better = running & (candidate < t_event) & (candidate < t_b)
                # a crossing at the same instant as another event still happens
                t_event[better] = candidate[better]
                kind[better] = codes[better]
        return t_event, kind

    def _find_breakaway(
        self, idx: NDArray[np.intp], st: SystemState, ph: Phase, ev: Eval, t_a: FloatArray
    ) -> FloatArray:
        """Instant of the breakaway per row (inf: not in this phase).

        While the rim sticks the spring's force jumps up with each microstep and relaxes by
        creep between steps, so it first reaches the breakaway force at a step: bisection
        over step indices on the closed form finds that step; the instant is the fraction of
        the step's travel that was needed (a step's motion spreads over its period, which
        keeps the outputs continuous in the parameters). That fraction is kept for
        :meth:`_apply_events` (the rest of the step is delivered by the next step). With
        continuous motion the force is continuous and the instant is found by bisection.
        """
        r = self.rows
        size = idx.size
        t_break = np.full(size, np.inf)
        if not hasattr(self, "_break_frac"):
            self._break_frac = np.zeros(r.size)
            self._break_df = np.zeros(r.size)
        f = ph.f[:, 0]
        static = r.breakaway_n[idx]
        d = ph.d[:, 0]
        over = (d[:, None] * ev.chain_n >= static[:, None]) & (ev.u <= ph.t_stop)
        rows_c = np.flatnonzero(over.any(axis=1) & ph.creep[:, 0] & (f > 0) & st.running)
        if rows_c.size == 0:
            return t_break
        j = np.argmax(over[rows_c], axis=1)
        st_c = st.take(rows_c)
        ph_c = sub_phase(ph, rows_c)
        consts = r.take(idx[rows_c])
        ta = ph_c.t_a[:, 0]
        fc = ph_c.f[:, 0]
        dc = d[rows_c]
        fs = static[rows_c]
        u_hi = ev.u[rows_c, j]
        u_lo = np.where(j > 0, ev.u[rows_c, np.maximum(j - 1, 0)], ta)

        def force(u_val: FloatArray) -> FloatArray:
            e = evaluate(consts, st_c, ph_c, u_val[:, None])
            return np.asarray(dc * e.chain_n[:, 0])

        if r.quantised:
            acc = st_c.acc
            lo = np.floor(acc + fc * (u_lo - ta) + EPS_STEPS)
            hi = np.floor(acc + fc * (np.minimum(u_hi, ph_c.t_stop[:, 0]) - ta) + EPS_STEPS)
            lo = np.where(force(ta + (np.maximum(lo, 0.0) - acc) / fc) >= fs, lo - 1.0, lo)
            lo = np.maximum(lo, 0.0)
            while np.any(hi - lo > 1):
                mid = np.floor((lo + hi) / 2.0)
                c = force(ta + (mid - acc) / fc) >= fs
                busy = hi - lo > 1
                hi = np.where(busy & c, mid, hi)
                lo = np.where(busy & ~c, mid, lo)
            t_step = ta + (hi - acc) / fc
            # the force this step adds: its volume times the spring's force per mL
            partial = hi == ph_c.k_partial[:, 0]
            vol = (ph_c.alpha[:, 0] + ph_c.beta[:, 0] * t_step) * np.where(
                partial, ph_c.e_partial[:, 0], np.where(hi >= ph_c.k_full[:, 0], 1.0, 0.0)
            )
            df = ph_c.n_per_ml[:, 0] * vol
            # During the step's period the force is the previous step's, relaxing by
            # creep, plus the step's travel so far: F_b·e^{−κhe} + e·ΔF. It is below the
            # breakaway at e = 0 and reaches it by e = 1; convex in e, so Newton's method
            # from e = 1 converges monotonically to the crossing.
            f_b = force(t_step - 1.0 / fc)
            decay = ph_c.kappa[:, 0] / fc
            frac = np.ones_like(f_b)
            for _ in range(30):
                g = f_b * np.exp(-decay * frac) + frac * df - fs
                slope = df - decay * f_b * np.exp(-decay * frac)
                step = np.where(slope > 0, g / np.where(slope > 0, slope, 1.0), 0.0)
                frac = np.clip(frac - step, 0.0, 1.0)
                if np.all(np.abs(step) < 1e-15):
                    break
            frac = np.where(df > 0, frac, 1.0)
            t_cross = np.maximum(t_step - (1.0 - frac) / fc, ta)
            self._break_frac[idx[rows_c]] = frac
            self._break_df[idx[rows_c]] = df
        else:
            # the force is continuous and rising here: regula falsi with the Illinois
            # modification on g = F − F_s, bracketed by the grid (a few evaluations where
            # bisection needs fifty)
            lo, hi = u_lo.copy(), u_hi.copy()
            g_lo, g_hi = force(lo) - fs, force(hi) - fs
            side = np.zeros(lo.shape)
            for _ in range(100):
                width = hi - lo
                if np.all((width <= 1e-12 * np.maximum(1.0, np.abs(hi))) | (g_hi <= 1e-12)):
                    break
                denom = g_hi - g_lo
                mid = np.where(denom > 0, hi - g_hi * width / np.where(denom > 0, denom, 1.0), lo)
                mid = np.clip(mid, lo, hi)
                mid = np.where((mid <= lo) | (mid >= hi), 0.5 * (lo + hi), mid)
                g_mid = force(mid) - fs
                up = g_mid >= 0.0
                hi, g_hi = np.where(up, mid, hi), np.where(up, g_mid, g_hi)
                lo, g_lo = np.where(up, lo, mid), np.where(up, g_lo, g_mid)
                # Illinois: halve the stale end's value when the same end moves twice
                g_lo = np.where(up & (side > 0), 0.5 * g_lo, g_lo)
                g_hi = np.where(~up & (side < 0), 0.5 * g_hi, g_hi)
                side = np.where(up, 1.0, -1.0)
            t_cross = hi
            self._break_frac[idx[rows_c]] = 0.0
            self._break_df[idx[rows_c]] = 0.0
        t_break[rows_c] = t_cross
        return t_break

    def _refine_crossing(
        self,
        idx: NDArray[np.intp],
        st: SystemState,
        ph: Phase,
        ev: Eval,
        crossing: NDArray[np.bool_],
        rows_c: NDArray[np.intp],
        alarm_p: FloatArray,
        stall_p: FloatArray,
        fill: FloatArray,
        armed: NDArray[np.bool_],
    ) -> tuple[FloatArray, NDArray[np.int64]]:
        """Exact time of the first crossing for ``rows_c`` (bisection on step index/time)."""
        r = self.rows
        j = np.argmax(crossing[rows_c], axis=1)
        st_c = st.take(rows_c)
        ph_c = sub_phase(ph, rows_c)
        rows_c_consts = r.take(idx[rows_c])
        t_a = ph_c.t_a[:, 0]
        f = ph_c.f[:, 0]
        u_hi = ev.u[rows_c, j]
        u_lo = np.where(j > 0, ev.u[rows_c, np.maximum(j - 1, 0)], t_a)

        def crossed(u_val: FloatArray) -> NDArray[np.bool_]:
            e = evaluate(rows_c_consts, st_c, ph_c, u_val[:, None])
            p = e.pressure_mmhg[:, 0]
            c = (armed[rows_c] & (p >= alarm_p[rows_c])) | (p >= stall_p[rows_c])
            c |= e.plunger_ml[:, 0] >= fill[rows_c] - 1e-12
            return np.asarray(c & (u_val > t_a) if not r.quantised else c & (e.n_steps[:, 0] > 0))

        if r.quantised:
            acc = st_c.acc
            k_lo = np.floor(acc + f * (u_lo - t_a) + EPS_STEPS)
            k_hi = np.floor(acc + f * (np.minimum(u_hi, ph_c.t_stop[:, 0]) - t_a) + EPS_STEPS)
            # smallest k in (k_lo, k_hi] whose post-step state has crossed
            lo, hi = k_lo.copy(), k_hi.copy()
            lo_crossed = crossed(t_a + (np.maximum(lo, 0.0) - acc) / f) & (lo >= 1)
            # if already crossed at lo (e.g. start of phase), the crossing is at lo
            hi = np.where(lo_crossed, lo, hi)
            lo = np.where(lo_crossed, lo - 1, lo)
            while np.any(hi - lo > 1):
                mid = np.floor((lo + hi) / 2.0)
                c = crossed(t_a + (mid - acc) / f)
                busy = hi - lo > 1
                hi = np.where(busy & c, mid, hi)
                lo = np.where(busy & ~c, mid, lo)
            t_cross = t_a + (hi - acc) / f
        else:
            lo, hi = u_lo.copy(), u_hi.copy()
            for _ in range(200):
                if np.all(hi - lo <= 1e-12 * np.maximum(1.0, np.abs(hi))):
                    break
                mid = 0.5 * (lo + hi)
                c = crossed(mid)
                hi = np.where(c, mid, hi)
                lo = np.where(c, lo, mid)
            t_cross = hi
        e = evaluate(rows_c_consts, st_c, ph_c, t_cross[:, None])
        p = e.pressure_mmhg[:, 0]
        code = np.where(
            p >= stall_p[rows_c],
            _EV_STALL,
            np.where(e.plunger_ml[:, 0] >= fill[rows_c] - 1e-12, _EV_EMPTY, _EV_CROSS),
        )
        return t_cross, code.astype(np.int64)

    def _apply_events(
        self, idx: NDArray[np.intp], st: SystemState, kind: NDArray[np.int64], t: FloatArray
    ) -> None:
        r = self.rows
        latency = r.latency_s[idx]
        fire_now = (kind == _EV_FIRE) | ((kind == _EV_CROSS) & (latency <= 0))
        pend = (kind == _EV_CROSS) & (latency > 0)
        st.pending_alarm_s = np.where(pend, t + latency, st.pending_alarm_s)
        if np.any(fire_now):
            st.running = np.where(fire_now, False, st.running)
            st.alarms = np.where(fire_now, st.alarms | int(Alarm.OCCLUSION), st.alarms)
            st.pending_alarm_s = np.where(fire_now, np.inf, st.pending_alarm_s)
            p_eq = self.p_eq(idx)
            stored = r.C[idx] * np.maximum(st.pressure_mmhg - p_eq, 0.0)
            back = np.where(fire_now, np.minimum(r.backoff_ml[idx], stored), 0.0)
            st.plunger_ml = st.plunger_ml - back
            st.pressure_mmhg = st.pressure_mmhg - back / r.C[idx]
        stall = kind == _EV_STALL
        st.running = np.where(stall, False, st.running)
        st.alarms = np.where(stall, st.alarms | int(Alarm.MOTOR_STALL), st.alarms)
        st.pending_alarm_s = np.where(stall, np.inf, st.pending_alarm_s)
        empty = kind == _EV_EMPTY
        st.running = np.where(empty, False, st.running)
        st.alarms = np.where(empty, st.alarms | int(Alarm.EMPTY | Alarm.END_OF_INFUSION), st.alarms)
        st.pending_alarm_s = np.where(empty, np.inf, st.pending_alarm_s)
        target = kind == _EV_TARGET
        st.running = np.where(target, False, st.running)
        st.alarms = np.where(target, st.alarms | int(Alarm.END_OF_INFUSION), st.alarms)
        st.pending_alarm_s = np.where(target, np.inf, st.pending_alarm_s)
        broke = kind == _EV_BREAK
        if np.any(broke) and r.kind == "syringe":
            # The rim breaks away: the spring relaxes from the breakaway force to the
            # sliding friction and the rim jumps forward by that travel (an impulse into
            # the line); then it slides. In a microstep, the part of the step's travel the
            # force needed counts as done and the rest carries over as free travel, so the
            # next step delivers only that rest.
            frac = self._break_frac[idx]
            d = self.inputs.direction
            held = d * st.chain_n + np.where(broke, frac * self._break_df[idx], 0.0)
            per_ml = r.stiffness_n_per_mm[idx] * 1000.0 / r.area_true_mm2[idx]
            jump = d * np.maximum(held - r.friction_n[idx], 0.0) / per_ml
            jump = np.where(broke, jump, 0.0)
            st.plunger_ml = st.plunger_ml + jump
            st.pressure_mmhg = st.pressure_mmhg + jump / r.C[idx]
            st.chain_n = np.where(broke, d * r.friction_n[idx], st.chain_n)
            st.sliding = st.sliding | broke
            if r.quantised:
                rest = np.where(frac < 1.0, frac, 0.0)
                b = self.backlash_steps[idx]
                free = rest if d > 0 else b - rest
                st.slack_steps = np.where(broke & (rest > 0), free, st.slack_steps)
        # An alarm stop (occlusion, stall, empty) leaves the stopper held by the line's
        # pressure (or the barrel's end), not by the rim's friction: no creep until the
        # next start, so the released bolus is what the line stored.
        alarm_stop = fire_now | stall | empty
        st.creep_held = st.creep_held | alarm_stop
        # a stopped motor lets the stopper's rim stick again (static friction holds the
        # force the assembly carries)
        st.sliding &= st.running
