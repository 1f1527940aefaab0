"""Tolerance band detector: ``|r| > abs_tol + rel_tol·|twin|`` held for ``persistence_s``.

The band is the spec limit in channel units (IEC 60601-2-24 states pump accuracy that way).
When the twin carries its prediction uncertainty (a calibrated twin: the standard deviation
``sd`` of its prediction at each sample, from the calibration's covariance and the model's
noise, :meth:`medtwin.hil.twin.Twin.spread`), the half-width at that sample is
``max(abs_tol + rel_tol·|twin|, band_k·sd)``: a drift is then a reading outside what the
twin predicts, not merely one that differs from a point. Without ``sd`` the band is the
declared one.
It must be exceeded continuously for ``persistence_s`` before it fires and, once fired, be
respected again for ``persistence_s`` before it can fire again; high and low excursions are
latched separately. Time inside data gaps does not count: the persistence clock
``τ = t − (time spent in gaps)`` pauses from the last valid sample before a gap to the first
one after it.

:meth:`ToleranceBand.block` (whole arrays, run by run) and :meth:`ToleranceBand.sample` (one
sample in Python floats) are the same rule; their events are bit-identical.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from medtwin.hil.comparator.block import Block, BoolArray, FloatArray, Mark, Trace
from medtwin.hil.comparator.events import DriftEvent, drift_event
from medtwin.hil.comparator.spec import ChannelSpec

__all__ = ["ToleranceBand"]


@dataclass(slots=True)
class _Side:
    high: bool
    armed: bool = True
    cur_out: bool | None = None  # category of the current run; None before the first sample
    run_tau: float = 0.0
    run_mark: Mark | None = None


class ToleranceBand:
    """State of the band of one channel (both directions and the persistence clock)."""

    __slots__ = ("gap_s", "last_tau", "min_index", "sides", "spec")

    def __init__(self, spec: ChannelSpec, *, min_index: float) -> None:
        self.spec = spec
        self.min_index = min_index  # no event before this valid-sample index (warm-up)
        self.sides = (_Side(high=True), _Side(high=False))
        self.gap_s = 0.0  # time spent in gaps so far, s
        self.last_tau = -math.inf

    @staticmethod
    def enabled(spec: ChannelSpec) -> bool:
        """Whether ``spec`` declares a band (the defaults, ``abs_tol = inf``, do not)."""
        return "tolerance" in spec.detectors and not (
            math.isinf(spec.abs_tol) and spec.rel_tol == 0.0
        )

    # ---------------------------------------------------------------- block update
    def clock(
        self,
        vt: FloatArray,
        gap_follow: BoolArray | None,
        gap_first: bool,
        last_valid_t: float,
        out: FloatArray,
    ) -> FloatArray:
        """The persistence clock τ at the valid samples ``vt`` of one block, written to ``out``.

        ``gap_follow[j]`` says valid sample ``j`` follows a gap (None: none does, except the
        first one if ``gap_first``); ``last_valid_t`` is the last valid sample before the block.
        """
        m = vt.shape[0]
        # The persistence clock τ = t − (time spent in gaps so far). A gap spans from the
        # last valid sample before it to the first one after it.
        # Rounding can make t − gaps step back by an ulp at a gap; τ is kept
        # non-decreasing (a running max), which the run logic relies on.
        if gap_follow is None or not gap_follow.any():
            if gap_first:
                self.gap_s += float(vt[0]) - last_valid_t
            tau = np.subtract(vt, self.gap_s, out=out)
        else:
            prev_t = np.empty(m)
            prev_t[0] = last_valid_t
            prev_t[1:] = vt[:-1]
            gaps = np.empty(m + 1)
            gaps[0] = self.gap_s
            gaps[1:] = np.where(gap_follow, vt - prev_t, 0.0)
            np.cumsum(gaps, out=gaps)
            tau = np.subtract(vt, gaps[1:], out=out)
            self.gap_s = float(gaps[-1])
        if tau[0] < self.last_tau:
            tau[0] = self.last_tau
            np.maximum.accumulate(tau, out=tau)
        elif gap_follow is not None and gap_follow.any():
            np.maximum.accumulate(tau, out=tau)
        self.last_tau = float(tau[-1])
        return tau

    def block(self, blk: Block, rmax: float, rmin: float, trace: Trace | None) -> list[DriftEvent]:
        """Both directions over one block (``rmax``/``rmin``: the block's residual extremes)."""
        spec = self.spec
        band: FloatArray | float
        if spec.rel_tol == 0.0:
            band = spec.abs_tol
        else:
            band = spec.abs_tol + spec.rel_tol * np.abs(blk.twin)
        if blk.sd is not None:
            band = np.maximum(band, spec.band_k * blk.sd)
        if trace is not None:
            trace.band[blk.raw] = band
        events: list[DriftEvent] = []
        for side in self.sides:
            out: BoolArray | None
            if isinstance(band, float):
                quiet = rmax <= band if side.high else rmin >= -band
                out = None if quiet else (blk.r > band if side.high else blk.r < -band)
            else:
                out = blk.r > band if side.high else blk.r < -band
                if not out.any():
                    out = None
            events.extend(self._side_block(side, blk, out, band))
        return events

    def _side_block(
        self, side: _Side, blk: Block, out: BoolArray | None, band: FloatArray | float
    ) -> list[DriftEvent]:
        """Debounced band of one direction: fire when out for ``persistence_s``, re-arm when in.

        Works on runs (maximal stretches of samples out of / inside the band), so the cost
        beyond one comparison per sample grows with the number of excursions, not samples.
        A run *qualifies* once ``τ − τ(run start) ≥ persistence_s`` (and, for an out-run,
        the warm-up is over); an out-run that qualifies while armed fires and disarms, an
        in-run that qualifies re-arms. τ never decreases, so an in-run qualifies iff its last
        sample does.
        """
        persistence = self.spec.persistence_s
        tau = blk.tau
        assert tau is not None
        n = tau.shape[0]
        if out is None:  # the whole block is inside the band in this direction
            if side.cur_out is not False:
                side.cur_out = False
                side.run_tau = float(tau[0])
                side.run_mark = blk.mark(0)
            if not side.armed:
                side.armed = bool(tau[-1] - side.run_tau >= persistence)
            return []
        pos = np.flatnonzero(out)
        breaks = np.flatnonzero(pos[1:] - pos[:-1] > 1) + 1
        first_i = np.concatenate(([0], breaks))
        last_i = np.concatenate((breaks - 1, [pos.shape[0] - 1]))
        out_start, out_end = pos[first_i], pos[last_i]
        runs = out_start.shape[0]
        # elapsed time at every out sample since the start of its run
        start_tau = tau[out_start]
        continues_out = side.cur_out is True and out_start[0] == 0
        if continues_out:
            start_tau[0] = side.run_tau
        run_of = np.repeat(np.arange(runs), last_i - first_i + 1)
        qualified = tau[pos] - start_tau[run_of] >= persistence
        if blk.g[0] < self.min_index:
            qualified &= blk.g[pos] >= self.min_index
        fire_at = np.full(runs, -1)
        hits = np.flatnonzero(qualified)
        if hits.size:
            ids, first = np.unique(run_of[hits], return_index=True)
            fire_at[ids] = pos[hits[first]]
        # the in-run before each out-run, and the one after the last
        in_start = np.concatenate(([0], out_end + 1))
        in_end = np.concatenate((out_start - 1, [n - 1]))
        present = in_end >= in_start
        in_tau = tau[np.minimum(in_start, n - 1)]
        if side.cur_out is False and present[0]:
            in_tau[0] = side.run_tau  # continues the carried in-run
        in_ok = present & (tau[np.maximum(in_end, 0)] - in_tau >= persistence)
        # assertions in time order: in-run k, out-run k, …, the trailing in-run
        kinds = np.zeros(2 * runs + 1, dtype=bool)
        kinds[1::2] = True
        asserted = np.empty(2 * runs + 1, dtype=bool)
        asserted[0::2] = in_ok
        asserted[1::2] = fire_at >= 0
        order = np.flatnonzero(asserted)
        events: list[DriftEvent] = []
        if order.size:
            kind = kinds[order]
            before = np.empty_like(kind)
            before[0] = not side.armed
            before[1:] = kind[:-1]
            for k in (order[kind & ~before] // 2).tolist():
                f = int(fire_at[k])
                carried = k == 0 and continues_out
                onset = side.run_mark if carried else blk.mark(int(out_start[k]))
                assert onset is not None
                threshold = band if isinstance(band, float) else float(band[f])
                events.append(
                    drift_event(
                        self.spec,
                        "tolerance",
                        side.high,
                        onset,
                        blk.here(f),
                        float(blk.r[f]),
                        threshold,
                    )
                )
            side.armed = not bool(kind[-1])
        # carry the run the block ends in
        if out_end[-1] == n - 1:
            if not (runs == 1 and continues_out):
                side.run_tau = float(start_tau[-1])
                side.run_mark = blk.mark(int(out_start[-1]))
            side.cur_out = True
        else:
            j = int(out_end[-1]) + 1
            side.run_tau = float(tau[j])
            side.run_mark = blk.mark(j)
            side.cur_out = False
        return events

    # ---------------------------------------------------------------- live update
    def sample(
        self,
        t: float,
        r: float,
        twin: float,
        gap: bool,
        last_valid_t: float,
        mark: Mark,
        here: Mark,
        ready: bool,
        events: list[DriftEvent],
        sd: float | None = None,
    ) -> None:
        """One valid sample; mirrors :meth:`clock` and :meth:`block` operation for operation."""
        spec = self.spec
        if gap:
            self.gap_s += t - last_valid_t
        tau = t - self.gap_s
        if tau < self.last_tau:
            tau = self.last_tau
        self.last_tau = tau
        band = spec.abs_tol if spec.rel_tol == 0.0 else spec.abs_tol + spec.rel_tol * abs(twin)
        if sd is not None:
            band = max(band, spec.band_k * sd)
        persistence = spec.persistence_s
        for side in self.sides:
            out = r > band if side.high else r < -band
            if side.cur_out is not out:
                side.cur_out = out
                side.run_tau = tau
                side.run_mark = mark
            qualified = tau - side.run_tau >= persistence
            if not out:
                if qualified:
                    side.armed = True
            elif qualified and ready:
                if side.armed:
                    onset = side.run_mark
                    assert onset is not None
                    events.append(drift_event(spec, "tolerance", side.high, onset, here, r, band))
                side.armed = False
