"""Two-sided CUSUM detector (Page 1954) on the standardised residual ``z = r/σ``.

Each side is the Lindley recursion ``S_n = max(0, S_{n−1} + x_n)`` (``x = z − k`` upwards,
``x = −z − k`` downwards). Both sides use one running sum: with ``i`` the valid-sample index,
the high side's *base* is ``B = Σr/σ − k·i`` and the low side's ``−Σr/σ − k·i``; over a phase
``S = B − min(B₀, running min B)``, evaluated per segment with ``minimum.accumulate``. After
an alarm a side is latched (``cusum_rearm = "latch"``: ``S_n = min(h, S_{n−1} + x_n)`` until
``S`` reaches 0) or restarted at 0 (``"restart"``, the textbook rule). The onset estimate is
the sample after ``S`` was last 0 (the Page/Hinkley change-point estimate).

:meth:`Cusum.block` and :meth:`Cusum.sample` apply the same IEEE operations in the same order,
so their events are bit-identical.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
from medtwin.hil.comparator.block import Block, FloatArray, Mark, Trace, Work, last_true
from medtwin.hil.comparator.events import DriftEvent, drift_event
from medtwin.hil.comparator.spec import ChannelSpec

__all__ = ["Cusum"]

# First CUSUM segment after a phase change; doubled while no alarm is found, so a phase of
# length m costs O(m) and an alarm costs O(_FIRST_CHUNK) extra.
_FIRST_CHUNK: Final = 256
_MAX_CHUNK: Final = 1 << 22


@dataclass(slots=True)
class _Side:
    high: bool
    ext: float  # running min (armed) / max (latched) of the base over the phase, incl. its start
    latched: bool = False
    onset: Mark | None = None  # first sample after the last zero; None = the next sample
    chunk: int = _FIRST_CHUNK


class Cusum:
    """State of both CUSUM sides of one channel."""

    __slots__ = ("min_index", "sides", "spec")

    def __init__(self, spec: ChannelSpec, *, min_index: float) -> None:
        self.spec = spec
        self.min_index = min_index  # no event before this valid-sample index (warm-up)
        # Before the first sample (i = −1, Σr = 0) both bases equal k.
        k = spec.cusum_k
        self.sides = (_Side(high=True, ext=k), _Side(high=False, ext=k))

    # ---------------------------------------------------------------- block update
    def block(self, blk: Block, sigma: float, work: Work, trace: Trace | None) -> list[DriftEvent]:
        """Both sides over one block of valid samples."""
        m = blk.t.shape[0]
        w = work
        events: list[DriftEvent] = []
        high_base = np.divide(blk.P[1:], sigma, out=w.high[:m])
        k_i = np.multiply(blk.g, self.spec.cusum_k, out=w.tmp[:m])
        low_base = np.add(high_base, k_i, out=w.low[:m])
        np.negative(low_base, out=low_base)
        np.subtract(high_base, k_i, out=high_base)
        for side, base in zip(self.sides, (high_base, low_base), strict=True):
            s_trace = None if trace is None else np.empty(m)
            events.extend(self._side_block(side, blk, base, s_trace, work))
            if trace is not None:
                (trace.cusum_pos if side.high else trace.cusum_neg)[blk.raw] = s_trace
        return events

    def _side_block(
        self, side: _Side, blk: Block, base: FloatArray, s_trace: FloatArray | None, work: Work
    ) -> list[DriftEvent]:
        """One CUSUM side over one block, segment by segment (a segment ends at a phase change).

        With ``B`` the side's base array and ``B₀`` its value at the phase's first sample:
        armed, ``S = B − min(B₀, running min B)`` (the Lindley recursion
        ``S_n = max(0, S_{n−1} + x_n)`` in closed form); latched, ``S = h − (max(B₀, running
        max B) − B)``, i.e. ``S_n = min(h, S_{n−1} + x_n)``. A phase ends at an alarm (armed)
        or when ``S`` reaches 0 (latched); that sample starts the next phase.
        """
        h = self.spec.cusum_h
        restart = self.spec.cusum_rearm == "restart"
        n = base.shape[0]
        g = blk.g
        events: list[DriftEvent] = []
        pos = 0
        while pos < n:
            end = min(n, pos + side.chunk)
            X = base[pos:end]
            ext = side.ext
            run = work.run[: end - pos]
            if not side.latched:
                M = np.minimum.accumulate(X, out=run)
                np.minimum(M, ext, out=M)
                stat = np.subtract(X, M, out=work.stat[: end - pos])
                a = -1
                if float(stat.max()) > h:
                    hit = stat > h
                    if g[pos] < self.min_index:
                        hit &= g[pos:end] >= self.min_index
                    if hit.any():
                        a = int(np.argmax(hit))
                if a < 0:
                    if s_trace is not None:
                        s_trace[pos:end] = stat
                    side.ext = float(M[-1])
                    # the last zero of S is the last place B reaches its new minimum
                    p, low = _last_min(X)
                    if low <= ext:
                        j = pos + p + 1
                        side.onset = blk.mark(j) if j < n else None
                    elif side.onset is None:
                        side.onset = blk.mark(pos)
                    pos = end
                    side.chunk = min(2 * side.chunk, _MAX_CHUNK)
                    continue
                q = pos + a
                if s_trace is not None:
                    s_trace[pos : q + 1] = stat[: a + 1]
                onset = side.onset if side.onset is not None else blk.mark(pos)
                if a > 0:
                    p, low = _last_min(X[:a])
                    if low <= ext:
                        onset = blk.mark(pos + p + 1)
                events.append(
                    drift_event(
                        self.spec, "cusum", side.high, onset, blk.here(q), float(stat[a]), h
                    )
                )
                side.latched = not restart
            else:
                Mx = np.maximum.accumulate(X, out=run)
                np.maximum(Mx, ext, out=Mx)
                y = np.subtract(Mx, X, out=work.stat[: end - pos])  # h − S
                if float(y.max()) < h:
                    if s_trace is not None:
                        np.subtract(h, y, out=s_trace[pos:end])
                    side.ext = float(Mx[-1])
                    pos = end
                    side.chunk = min(2 * side.chunk, _MAX_CHUNK)
                    continue
                b = int(np.argmax(y >= h))
                q = pos + b
                if s_trace is not None:
                    np.subtract(h, y[:b], out=s_trace[pos:q])
                    s_trace[q] = 0.0
                side.latched = False
            # the phase ends at sample q, which starts the next one
            side.ext = float(base[q])
            side.onset = None
            side.chunk = _FIRST_CHUNK
            pos = q + 1
        return events

    # ---------------------------------------------------------------- live update
    def sample(
        self,
        p_after: float,
        g: float,
        sigma: float,
        mark: Mark,
        here: Mark,
        ready: bool,
        events: list[DriftEvent],
    ) -> None:
        """One valid sample (``p_after``: Σr through it; ``g``: its valid-sample index)."""
        spec = self.spec
        h = spec.cusum_h
        p_scaled = p_after / sigma
        k_i = g * spec.cusum_k
        low = -(p_scaled + k_i)
        for cside, x in zip(self.sides, (p_scaled - k_i, low), strict=True):
            ext = cside.ext
            if not cside.latched:
                m = x if x < ext else ext
                stat = x - m
                if stat > h and ready:
                    onset = cside.onset if cside.onset is not None else mark
                    events.append(drift_event(spec, "cusum", cside.high, onset, here, stat, h))
                    cside.latched = spec.cusum_rearm != "restart"
                    cside.ext = x
                    cside.onset = None
                    cside.chunk = _FIRST_CHUNK
                else:
                    cside.ext = m
                    if x <= ext:
                        cside.onset = None
                    elif cside.onset is None:
                        cside.onset = mark
                    cside.chunk = min(2 * cside.chunk, _MAX_CHUNK)
            else:
                mx = x if x > ext else ext
                if mx - x < h:
                    cside.ext = mx
                    cside.chunk = min(2 * cside.chunk, _MAX_CHUNK)
                else:
                    cside.latched = False
                    cside.ext = x
                    cside.onset = None
                    cside.chunk = _FIRST_CHUNK


def _last_min(x: FloatArray) -> tuple[int, float]:
    """Index of the last occurrence of the minimum of ``x``, and the minimum."""
    p = int(np.argmin(x))
    v = float(x[p])
    # ties are rare (quantised data), and the tail after the first minimum is usually short
    tail = x[p + 1 :] == v
    if tail.any():
        p = p + 1 + last_true(tail)
    return p, v
