"""EWMA chart (Roberts 1959; Lucas & Saccucci 1990) on the standardised residual ``z = r/σ``.

``E_n = (1−λ)E_{n−1} + λ z_n`` (:func:`scipy.signal.lfilter` in a block), against the *exact*
time-varying limits ``±L·sqrt(λ/(2−λ)·(1 − (1−λ)^{2n}))``: within 1 % of the asymptotic ones
after ~2/λ samples, they keep the chart's false-alarm rate right from the start of a run.
After an alarm a direction is latched until ``E`` is back on the target side (``E ≤ 0``
after a high alarm); the onset estimate is the sample after ``E`` was last on that side.

:meth:`Ewma.block` and :meth:`Ewma.sample` are the same chart; :meth:`Ewma.sample` performs
lfilter's direct-form-II-transposed step in plain floats, so their events are bit-identical.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final, cast

import numpy as np
from medtwin.hil.comparator.block import Block, BoolArray, FloatArray, Mark, Trace, last_true
from medtwin.hil.comparator.events import DriftEvent, drift_event
from medtwin.hil.comparator.spec import ChannelSpec
from scipy.signal import lfilter

__all__ = ["Ewma"]

# The exact EWMA limits are computed this many samples at a time until (1 − λ)^(2n) no
# longer changes them; stopping there also keeps the product out of the (slow) subnormals.
_LIMIT_SPAN: Final = 4096


@dataclass(slots=True)
class _State:
    zi: float = 0.0  # lfilter's internal state, (1 − λ)·E of the last sample
    q: float = 1.0  # (1 − λ)^(2n) of the exact limits; 0.0 once it no longer matters
    armed_high: bool = True
    armed_low: bool = True
    onset_high: Mark | None = None
    onset_low: Mark | None = None


class Ewma:
    """State and coefficients of the EWMA chart of one channel."""

    __slots__ = (
        "ewma_a",
        "ewma_a1",
        "ewma_b",
        "ewma_b0",
        "ewma_c",
        "ewma_lim_inf",
        "ewma_q_step",
        "min_index",
        "spec",
        "state",
    )

    def __init__(self, spec: ChannelSpec, *, min_index: float) -> None:
        self.spec = spec
        self.min_index = min_index  # no event before this valid-sample index (warm-up)
        self.state = _State()
        lam = spec.ewma_lambda
        self.ewma_b = np.array([lam])
        self.ewma_a = np.array([1.0, -(1.0 - lam)])
        self.ewma_b0 = float(self.ewma_b[0])
        self.ewma_a1 = float(self.ewma_a[1])
        self.ewma_q_step = (1.0 - lam) * (1.0 - lam)
        self.ewma_c = lam / (2.0 - lam)
        self.ewma_lim_inf = spec.ewma_l * math.sqrt(self.ewma_c * (1.0 - 0.0))

    # ---------------------------------------------------------------- block update
    def limits(self, n: int) -> FloatArray | float:
        """Exact limits ``L·sqrt(λ/(2−λ)·(1 − (1−λ)^{2i}))`` for the next ``n`` samples."""
        st = self.state
        if st.q == 0.0:
            return self.ewma_lim_inf
        parts: list[FloatArray] = []
        done = 0
        while done < n and st.q != 0.0:
            span = min(n - done, _LIMIT_SPAN)
            q = np.full(span + 1, self.ewma_q_step)
            q[0] = st.q
            np.cumprod(q, out=q)
            parts.append(self.spec.ewma_l * np.sqrt(self.ewma_c * (1.0 - q[1:])))
            # once 1 − q rounds to 1 the limits are the asymptotic ones, exactly
            st.q = 0.0 if 1.0 - q[-1] == 1.0 else float(q[-1])
            done += span
        if done < n:
            parts.append(np.full(n - done, self.ewma_lim_inf))
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def block(self, blk: Block, z: FloatArray, trace: Trace | None) -> list[DriftEvent]:
        """The chart over one block of standardised residuals ``z``."""
        st = self.state
        filtered = lfilter(self.ewma_b, self.ewma_a, z, zi=np.array([st.zi]))
        ewma = cast(FloatArray, filtered[0])
        st.zi = float(filtered[1][0])
        n = ewma.shape[0]
        lim = self.limits(n)
        if trace is not None:
            trace.ewma[blk.raw] = ewma
            trace.ewma_limit[blk.raw] = lim
        emax, emin = float(ewma.max()), float(ewma.min())
        gated = blk.g[0] < self.min_index
        events: list[DriftEvent] = []
        for is_high in (True, False):
            armed = st.armed_high if is_high else st.armed_low
            onset = st.onset_high if is_high else st.onset_low
            # quiet: the limit is nowhere crossed in this direction
            if isinstance(lim, float):
                quiet = emax <= lim if is_high else emin >= -lim
                out_assert = None if quiet else (ewma > lim if is_high else ewma < -lim)
            else:
                out_assert = ewma > lim if is_high else ewma < -lim
            if out_assert is not None and gated:
                out_assert &= blk.g >= self.min_index
            reaches_target = emin <= 0.0 if is_high else emax >= 0.0
            if out_assert is not None and out_assert.any():
                at_target = ewma <= 0.0 if is_high else ewma >= 0.0
                fires, armed = _latch(out_assert, at_target, armed)
                if fires:
                    last_target = np.maximum.accumulate(np.where(at_target, np.arange(n), -1))
                    for f in fires:
                        lt = int(last_target[f])
                        if lt >= 0:
                            mark = blk.mark(lt + 1)
                        else:
                            mark = onset if onset is not None else blk.mark(0)
                        threshold = lim if isinstance(lim, float) else float(lim[f])
                        events.append(
                            drift_event(
                                self.spec,
                                "ewma",
                                is_high,
                                mark,
                                blk.here(f),
                                float(ewma[f]),
                                threshold,
                            )
                        )
            elif reaches_target:
                armed = True
            # onset candidate: the sample after the last one on the target side
            if reaches_target:
                last_on_target = ewma[-1] <= 0.0 if is_high else ewma[-1] >= 0.0
                if last_on_target:
                    onset = None
                else:
                    at_target = ewma <= 0.0 if is_high else ewma >= 0.0
                    onset = blk.mark(last_true(at_target) + 1)
            elif onset is None:
                onset = blk.mark(0)
            if is_high:
                st.armed_high, st.onset_high = armed, onset
            else:
                st.armed_low, st.onset_low = armed, onset
        return events

    # ---------------------------------------------------------------- one sample at a time

    # ---------------------------------------------------------------- live update
    def sample(
        self,
        r: float,
        sigma: float,
        mark: Mark,
        here: Mark,
        ready: bool,
        events: list[DriftEvent],
    ) -> None:
        """One valid sample with residual ``r``."""
        spec = self.spec
        st = self.state
        z = r / sigma
        # lfilter's direct form II transposed: y = zi + b0·x; zi ← b1·x − a1·y (b1 = 0)
        e = st.zi + self.ewma_b0 * z
        st.zi = 0.0 * z - self.ewma_a1 * e
        if st.q == 0.0:
            lim = self.ewma_lim_inf
        else:
            q = st.q * self.ewma_q_step
            lim = spec.ewma_l * math.sqrt(self.ewma_c * (1.0 - q))
            st.q = 0.0 if 1.0 - q == 1.0 else q
        for is_high in (True, False):
            armed = st.armed_high if is_high else st.armed_low
            onset_e = st.onset_high if is_high else st.onset_low
            out = (e > lim if is_high else e < -lim) and ready
            at_target = e <= 0.0 if is_high else e >= 0.0
            if out:
                if armed:
                    start = onset_e if onset_e is not None else mark
                    events.append(drift_event(spec, "ewma", is_high, start, here, e, lim))
                armed = False
            elif at_target:
                armed = True
            if at_target:
                onset_e = None
            elif onset_e is None:
                onset_e = mark
            if is_high:
                st.armed_high, st.onset_high = armed, onset_e
            else:
                st.armed_low, st.onset_low = armed, onset_e


def _latch(out_assert: BoolArray, in_assert: BoolArray, armed: bool) -> tuple[list[int], bool]:
    """Fire positions of a latching alarm, and whether it is armed after the block.

    ``out_assert`` marks samples where the alarm condition holds, ``in_assert`` samples that
    re-arm it (the two never overlap). Armed, the first ``out`` sample fires and disarms;
    disarmed, the first ``in`` sample re-arms. Each step is one forward search, so the cost
    is one pass over the block plus a few calls per state change.
    """
    fires: list[int] = []
    n = out_assert.shape[0]
    pos = 0
    while pos < n:
        mask = out_assert if armed else in_assert
        j = pos + int(np.argmax(mask[pos:]))
        if not mask[j]:
            break
        if armed:
            fires.append(j)
        armed = not armed
        pos = j + 1
    return fires, armed
