"""The batch model: runs phases with their events, writes the outputs, applies commands.

:class:`Model` is the machinery :func:`~medtwin.device_models.system.simulate` (a whole
schedule at once) and :class:`~medtwin.device_models.system.SystemSimulator` (incremental)
share: the phase kernel (:mod:`.kernel`) and the events (:mod:`.events`) composed, plus the
loop that splits a phase at its events and the commands that change the inputs between
phases.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from medtwin.device_models.base import ParameterError
from medtwin.device_models.schedule import Alarm, Command, CommandKind
from medtwin.device_models.system.events import EventHandling
from medtwin.device_models.system.kernel import (
    Eval,
    Phase,
    evaluate,
    sub_eval,
    sub_phase,
)
from medtwin.device_models.system.params import (
    FloatArray,
)
from medtwin.device_models.system.state import SystemState
from numpy.typing import NDArray

__all__ = ["Model"]


class Model(EventHandling):
    """Batch simulation machinery shared by :func:`simulate` and :class:`SystemSimulator`."""

    def advance_incremental(self, u: float) -> None:
        """Move the (single-row or batch) state to ``u`` by evaluating the closed form from
        the current phase's start: no per-call phase set-up, events split as usual."""
        idx = np.arange(self.rows.size)
        zeros = np.zeros(idx.size, dtype=np.intp)
        while True:
            if self._origin is None:
                start = self.state.copy()
                phase = self._phase(idx, start, np.full(idx.size, self.t), math.inf)
                self._origin = (self.t, start, phase)
            t_a, start, phase = self._origin
            ev = evaluate(self.rows, start, phase, np.full((idx.size, 1), u))
            t_event, kind = self._find_events(
                idx, start, phase, ev, np.full(idx.size, t_a), float(np.nextafter(u, math.inf))
            )
            if not np.any(np.isfinite(t_event)):
                self.state = self._state_at(idx, start, phase, ev, zeros)
                self.t = u
                return
            # Rows are advanced together: stop everyone at the earliest event.
            t_e = float(np.min(t_event))
            ev_e = evaluate(self.rows, start, phase, np.full((idx.size, 1), t_e))
            new = self._state_at(idx, start, phase, ev_e, zeros)
            hit = t_event == t_e
            self._apply_events(idx, new, np.where(hit, kind, 0), np.full(idx.size, t_e))
            self.state = new
            self.t = t_e
            self._origin = None

    # -- one phase with events ---------------------------------------------------------------

    def run_phase(
        self,
        t_a: float,
        t_b: float,
        grid: FloatArray,
        out: dict[str, NDArray[Any]] | None,
        grid_offset: int,
    ) -> None:
        """Advance every row from ``t_a`` to ``t_b`` under the current inputs, writing the
        outputs for the grid points in ``[t_a, t_b)`` (``grid``) into ``out`` at columns
        ``grid_offset + i``. Events split the phase per row."""
        r = self.rows
        active = np.arange(r.size)
        starts = np.full(r.size, t_a)
        guard = 0
        while active.size:
            guard += 1
            if guard > 10_000:  # pragma: no cover - would mean an event loop bug
                raise RuntimeError("event handling did not converge")
            st = self.state.take(active)
            t_start = starts[active]
            ph = self._phase(active, st, t_start, t_b)
            points = np.concatenate([grid, [t_b]]) if grid.size else np.array([t_b])
            u = np.broadcast_to(points, (active.size, points.size))
            rows_active = r if active.size == r.size else r.take(active)
            ev = evaluate(rows_active, st, ph, u)
            t_event, kind = self._find_events(active, st, ph, ev, t_start, t_b)
            has_event = np.isfinite(t_event)
            if out is not None and grid.size:
                self._write(out, active, st, ph, ev, grid, grid_offset, t_start, t_event)
            # rows without events: state at t_b
            done = ~has_event
            if np.any(done):
                last = np.full(int(done.sum()), points.size - 1, dtype=np.intp)
                sub = np.flatnonzero(done)
                st_done = self._state_at(
                    active[sub], st.take(sub), sub_phase(ph, sub), sub_eval(ev, sub), last
                )
                self.state.put(active[sub], st_done)
            if not np.any(has_event):
                break
            sub = np.flatnonzero(has_event)
            rows_e = active[sub]
            st_e = st.take(sub)
            ph_e = sub_phase(ph, sub)
            ev_e = evaluate(r.take(rows_e), st_e, ph_e, t_event[sub][:, None])
            st_new = self._state_at(rows_e, st_e, ph_e, ev_e, np.zeros(sub.size, dtype=np.intp))
            self._apply_events(rows_e, st_new, kind[sub], t_event[sub])
            self.state.put(rows_e, st_new)
            starts[rows_e] = t_event[sub]
            active = rows_e
            # the rest of the phase starts at the earliest event: the grid points before
            # it are written already
            skip = int(np.searchsorted(grid, float(np.min(starts[active])), side="left"))
            grid = grid[skip:]
            grid_offset += skip

    def _write(
        self,
        out: dict[str, NDArray[Any]],
        idx: NDArray[np.intp],
        st: SystemState,
        ph: Phase,
        ev: Eval,
        grid: FloatArray,
        offset: int,
        t_start: FloatArray,
        t_event: FloatArray,
    ) -> None:
        m = grid.size
        mask = (grid[None, :] >= t_start[:, None]) & (grid[None, :] < t_event[:, None])
        full = bool(mask.all())
        contiguous = idx.size > 0 and int(idx[-1]) - int(idx[0]) + 1 == idx.size
        sel: Any = (
            (slice(int(idx[0]), int(idx[-1]) + 1), slice(offset, offset + m))
            if contiguous
            else np.ix_(idx, offset + np.arange(m))
        )

        def put(name: str, values: NDArray[Any]) -> None:
            target = out[name]
            if full:
                target[sel] = values
            else:
                target[sel] = np.where(mask, values, target[sel])

        running = st.running[:, None] & (grid[None, :] < ph.t_stop)
        gain, off_run, off_stop = self.sensed_gain_offset(idx)
        p = ev.pressure_mmhg[:, :m]
        sensed = gain[:, None] * p + np.where(running, off_run[:, None], off_stop[:, None])
        d = ph.d[:, 0]
        counted = ev.counted_ml[:, :m]
        put("running", running)
        put("delivered_ml", ev.delivered_ml[:, :m])
        put("plunger_ml", ev.plunger_ml[:, :m])
        put("pump_infused_ml", st.infused_ml[:, None] + np.where(d[:, None] > 0, counted, 0.0))
        put("pump_withdrawn_ml", st.withdrawn_ml[:, None] + np.where(d[:, None] < 0, counted, 0.0))
        put("line_pressure_mmhg", p)
        put("sensed_pressure_mmhg", sensed)
        remaining = self.rows.fill_ml[idx][:, None] - ev.plunger_ml[:, :m]
        near = remaining <= self.rows.near_empty_ml[idx][:, None]
        alarms = st.alarms[:, None] | np.where(near, int(Alarm.NEAR_EMPTY), 0)
        put("alarms", np.broadcast_to(alarms, (idx.size, m)))
        put("balance_load_g", ev.load_g[:, :m])
        put("balance_settled_g", ev.settled_g[:, :m])

    # -- commands ---------------------------------------------------------------------------

    def apply(self, command: Command) -> None:
        """Apply a command at the current time (state must have been advanced to it)."""
        self._origin = None
        st = self.state
        kind = command.kind
        value = command.value
        inp = self.inputs
        if kind is CommandKind.SET_RATE:
            inp.rate_ml_h = value
            self._check_rate()
        elif kind is CommandKind.SET_DIRECTION:
            if value != inp.direction:
                st.sliding[:] = False  # reversing: the friction must break away the other way
            inp.direction = value
        elif kind is CommandKind.SET_DIAMETER:
            inp.diameter_mm = value
            self._check_rate()
        elif kind is CommandKind.SET_TARGET:
            inp.target_ml = value
        elif kind in (CommandKind.START, CommandKind.PURGE):
            inp.purge = kind is CommandKind.PURGE
            blocked = (st.alarms & int(Alarm.blocking())) != 0
            was_running = st.running.copy()
            st.running = ~blocked
            # A fresh start counts the target from here and clears "end of infusion".
            fresh = st.running & ~was_running
            st.run_counted_ml = np.where(fresh, 0.0, st.run_counted_ml)
            st.creep_held &= ~st.running
            st.alarms = np.where(fresh, st.alarms & ~int(Alarm.END_OF_INFUSION), st.alarms)
        elif kind is CommandKind.STOP:
            st.running[:] = False
            inp.purge = False
            st.pending_alarm_s[:] = np.inf
        elif kind is CommandKind.CLEAR_ALARMS:
            st.alarms[:] = 0
            st.pending_alarm_s[:] = np.inf
        elif kind is CommandKind.CLEAR_VOLUME:
            # value: 0 or NaN both counters, 1 the infused one, 2 the withdrawn one
            which = 0 if math.isnan(value) else int(value)
            if which in (0, 1):
                st.infused_ml[:] = 0.0
            if which in (0, 2):
                st.withdrawn_ml[:] = 0.0
        elif kind is CommandKind.RAISE_ALARM:
            bit = int(value)
            st.alarms |= bit
            if bit & int(Alarm.blocking()):
                st.running[:] = False
                st.pending_alarm_s[:] = np.inf
        elif kind is CommandKind.OCCLUDE:
            inp.occluded = True
        elif kind is CommandKind.RELEASE:
            inp.occluded = False
        elif kind is CommandKind.SET_BACK_PRESSURE:
            inp.back_pressure_mmhg = value
        elif kind is CommandKind.TARE:
            self.tare_g = (
                np.full(self.rows.size, value) if math.isfinite(value) else st.settled_g.copy()
            )
        # The stopper's rim slides only while the motor drives it: any stop (command or
        # alarm) lets static friction hold it again.
        st.sliding &= st.running

    def _check_rate(self) -> None:
        rate = self.inputs.rate_ml_h
        if rate <= 0:
            return
        idx = np.arange(self.rows.size)
        f = rate / 3600.0 / self._dv_cfg(idx)
        over = f > self.rows.max_step_hz * (1 + 1e-12)
        if np.any(over):
            top = float(np.min(self.rows.max_step_hz * self._dv_cfg(idx) * 3600.0))
            raise ParameterError(
                f"rate {rate:g} mL/h exceeds the drive's maximum of {top:.6g} mL/h "
                "for the configured syringe"
            )
