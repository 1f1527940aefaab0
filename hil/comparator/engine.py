"""One channel's comparator engine: input checks, gaps, σ, statistics, and the detectors.

:class:`ChannelEngine` is what :func:`~medtwin.hil.comparator.compare` (whole arrays, in
blocks) and :class:`~medtwin.hil.comparator.LiveComparator` (sample by sample) both drive.
It validates the input, drops gaps (NaN readings) while keeping the detectors' state across
them, keeps the running sum of the residual and the residual statistics, runs the σ
estimation window (:mod:`.noise`) and hands each block, or each sample, to the enabled
detectors (:mod:`.tolerance`, :mod:`.cusum`, :mod:`.ewma`).

Bit-identical results for any split of the input into blocks rest on three rules: running
sums are continued from the carried value (``cumsum`` of ``[carry, x…]``, ``lfilter`` with
the carried ``zi``), element-wise formulas never depend on where a block starts, and every
search (phase ends, last zero) is exact. The per-sample path (:meth:`ChannelEngine.feed_scalar`)
applies, in plain Python floats (IEEE doubles like numpy's), the operations the block code
applies element-wise, in the same order.
"""

from __future__ import annotations

import logging
import math

import numpy as np
from medtwin.drivers.errors import AnalysisError
from medtwin.hil.comparator.block import (
    INDEX_BASE,
    Block,
    BoolArray,
    FloatArray,
    IntArray,
    Mark,
    Trace,
    Work,
)
from medtwin.hil.comparator.cusum import Cusum
from medtwin.hil.comparator.events import DriftEvent, ResidualStats, SigmaSource, event_key
from medtwin.hil.comparator.ewma import Ewma
from medtwin.hil.comparator.noise import MIN_NOISE_PAIRS, NoiseWindow
from medtwin.hil.comparator.spec import ChannelSpec
from medtwin.hil.comparator.tolerance import ToleranceBand
from numpy.typing import ArrayLike

__all__ = ["ChannelEngine", "as_float_array"]

# The package's logger name (users filter on "medtwin.hil.comparator"), not this module's.
_log = logging.getLogger("medtwin.hil.comparator")


class ChannelEngine:
    """All state of one channel; :meth:`feed` processes one block of raw samples."""

    def __init__(self, spec: ChannelSpec, *, trace: Trace | None) -> None:
        self.spec = spec
        self.trace = trace
        # input bookkeeping
        self.n_raw = 0
        self.n_valid = 0
        self.last_t: float | None = None
        self.t_first: float | None = None
        self.last_valid = False
        self.last_r = math.nan
        self.last_valid_t = math.nan
        self.p_sum = 0.0
        # σ
        self.sigma: float | None = spec.noise_sd
        self.sigma_source: SigmaSource = "declared" if spec.noise_sd is not None else "pending"
        self.window_open = spec.noise_sd is None
        self.window = NoiseWindow(spec.noise_window_s)
        self.pending: list[Block] = []
        # detectors (None: disabled)
        self.min_index = float(max(spec.min_samples - 1, 0))
        self.band = (
            ToleranceBand(spec, min_index=self.min_index) if ToleranceBand.enabled(spec) else None
        )
        self.cusum = Cusum(spec, min_index=self.min_index) if "cusum" in spec.detectors else None
        self.ewma = Ewma(spec, min_index=self.min_index) if "ewma" in spec.detectors else None
        # residual statistics (pairwise update of mean and M2, Chan, Golub & LeVeque 1979)
        self.stat_n = 0
        self.stat_mean = 0.0
        self.stat_m2 = 0.0
        self.stat_max_abs = math.nan
        self.work = Work()

    # ---------------------------------------------------------------- input
    def feed(
        self, t: FloatArray, real: FloatArray, twin: FloatArray, sd: FloatArray | None = None
    ) -> list[DriftEvent]:
        """Validate, then process one block of raw samples; return its events in time order.

        ``sd`` (optional, shape of ``t``): the twin's prediction standard deviation at each
        sample, which widens the tolerance band (:mod:`.tolerance`).
        """
        if not (t.shape == real.shape == twin.shape) or t.ndim != 1:
            raise AnalysisError(
                f"channel {self.spec.name!r}: t_s, real and twin must be 1-D arrays of one "
                f"length, got shapes {t.shape}, {real.shape} and {twin.shape}"
            )
        n = t.shape[0]
        if n == 0:
            return []
        self._validate_sd(t, sd)
        w = self.work
        w.ensure(n)
        r = np.subtract(real, twin, out=w.r[:n])
        all_valid = bool(np.isfinite(r, out=w.mask[:n]).all())
        self._validate(t, real, twin, all_valid)
        # -- from here on the block is accepted and the state changes
        valid = None if all_valid else ~np.isnan(r)
        raw_offset = self.n_raw
        if self.t_first is None:
            self.t_first = float(t[0])
        if self.trace is not None:
            self.trace.residual[raw_offset : raw_offset + n] = r
        blk = self._prepare(t, r, twin, valid, raw_offset)
        if blk is not None and sd is not None:
            blk.sd = sd if valid is None else sd[valid]
        events: list[DriftEvent] = []
        if blk is not None:
            rmax, rmin = self._update_stats(blk.r)
            if self.band is not None:
                events.extend(self.band.block(blk, rmax, rmin, self.trace))
        if self.window_open:
            self._noise_window(t, r, valid, blk, events)
        elif blk is not None and self.sigma is not None and self.spec.needs_sigma:
            events.extend(self._statistical(blk))
        # carried input state (after the window search, which reads the previous values)
        self.n_raw += n
        self.last_t = float(t[-1])
        self.last_valid = True if valid is None else bool(valid[-1])
        if blk is not None:
            self.last_r = float(blk.r[-1])
            self.last_valid_t = float(blk.t[-1])
        if len(events) > 1:
            events.sort(key=event_key)
        return events

    def _validate_sd(self, t: FloatArray, sd: FloatArray | None) -> None:
        if sd is None:
            return
        if sd.shape != t.shape:
            raise AnalysisError(
                f"channel {self.spec.name!r}: twin_sd must have the shape of t_s, got "
                f"{sd.shape} and {t.shape}"
            )
        bad = ~(np.isfinite(sd) & (sd >= 0.0))
        if bad.any():
            i = int(np.argmax(bad))
            raise AnalysisError(
                f"channel {self.spec.name!r}: twin_sd[{self.n_raw + i}] = {float(sd[i])!r} at "
                f"t = {float(t[i])!r} s; a prediction standard deviation is a finite number ≥ 0"
            )

    def _validate(self, t: FloatArray, real: FloatArray, twin: FloatArray, all_valid: bool) -> None:
        name = self.spec.name
        n = t.shape[0]
        first, last = float(t[0]), float(t[-1])
        increasing = math.isfinite(first) and math.isfinite(last)
        if increasing and n > 1:
            w = self.work
            steps = np.subtract(t[1:], t[:-1], out=w.tmp[: n - 1])
            increasing = bool(np.greater(steps, 0.0, out=w.mask2[: n - 1]).all())
        if increasing and self.last_t is not None:
            increasing = first > self.last_t
        if not increasing:
            bad = ~np.isfinite(t)
            if bad.any():
                i = int(np.argmax(bad))
                raise AnalysisError(
                    f"channel {name!r}: t_s[{self.n_raw + i}] = {float(t[i])!r} is not a finite "
                    "time; every sample needs a timestamp (mark a lost reading with real = NaN)"
                )
            if self.last_t is not None and not first > self.last_t:
                raise AnalysisError(
                    f"channel {name!r}: t_s[{self.n_raw}] = {first!r} s does not come after the "
                    f"previous sample at {self.last_t!r} s; timestamps must strictly increase"
                )
            i = int(np.argmax(~(np.diff(t) > 0))) + 1
            raise AnalysisError(
                f"channel {name!r}: t_s[{self.n_raw + i}] = {float(t[i])!r} s does not come "
                f"after t_s[{self.n_raw + i - 1}] = {float(t[i - 1])!r} s; timestamps must "
                "strictly increase"
            )
        if all_valid:
            return
        bad = ~np.isfinite(twin)
        if bad.any():
            i = int(np.argmax(bad))
            raise AnalysisError(
                f"channel {name!r}: twin[{self.n_raw + i}] = {float(twin[i])!r} at "
                f"t = {float(t[i])!r} s is not finite; the twin must be evaluated at every sample"
            )
        bad = np.isinf(real)
        if bad.any():
            i = int(np.argmax(bad))
            raise AnalysisError(
                f"channel {name!r}: real[{self.n_raw + i}] = {float(real[i])!r} at "
                f"t = {float(t[i])!r} s is infinite; a lost reading is NaN, anything else must be "
                "a finite number"
            )

    def _prepare(
        self,
        t: FloatArray,
        r: FloatArray,
        twin: FloatArray,
        valid: BoolArray | None,
        raw_offset: int,
    ) -> Block | None:
        n = t.shape[0]
        w = self.work
        raw: slice | IntArray
        gap_follow: BoolArray | None = None
        if valid is None:
            m = n
            vt, vr, vtwin = t, r, twin
            raw = slice(raw_offset, raw_offset + n)
            # a gap can only end at the first sample (the previous block ended invalid)
            gap_first = not self.last_valid and self.n_valid > 0
        else:
            idx = np.flatnonzero(valid)
            m = idx.shape[0]
            if m == 0:
                return None
            vt, vr, vtwin = t[idx], r[idx], twin[idx]
            raw = idx + raw_offset
            prev_valid = np.empty(n, dtype=bool)
            prev_valid[0] = self.last_valid
            prev_valid[1:] = valid[:-1]
            gap_follow = ~prev_valid[idx]
            if self.n_valid == 0:
                gap_follow[0] = False  # the channel's first sample follows nothing
            gap_first = False
        tau: FloatArray | None = None
        if self.band is not None:
            tau = self.band.clock(vt, gap_follow, gap_first, self.last_valid_t, w.tau[:m])
        P = w.P[: m + 1]
        P[0] = self.p_sum
        P[1:] = vr
        np.cumsum(P, out=P)
        self.p_sum = float(P[-1])
        g = w.g[:m]
        if m <= INDEX_BASE.shape[0]:
            np.add(INDEX_BASE[:m], float(self.n_valid), out=g)
        else:
            g[:] = np.arange(self.n_valid, self.n_valid + m, dtype=np.float64)
        blk = Block(vt, vr, vtwin, g, P, tau, self.n_valid, raw)
        self.n_valid += m
        return blk

    def _update_stats(self, r: FloatArray) -> tuple[float, float]:
        nb = r.shape[0]
        rmax, rmin = float(r.max()), float(r.min())
        mean_b = float(r.mean())
        dev = np.subtract(r, mean_b, out=self.work.tmp[:nb])
        np.square(dev, out=dev)
        m2_b = float(dev.sum())
        max_b = max(abs(rmax), abs(rmin))
        na = self.stat_n
        if na == 0:
            self.stat_mean, self.stat_m2, self.stat_max_abs = mean_b, m2_b, max_b
        else:
            n = na + nb
            delta = mean_b - self.stat_mean
            self.stat_mean += delta * nb / n
            self.stat_m2 += m2_b + delta * delta * na * nb / n
            self.stat_max_abs = max(self.stat_max_abs, max_b)
        self.stat_n = na + nb
        return rmax, rmin

    def stats(self) -> ResidualStats:
        n = self.stat_n
        mean = self.stat_mean if n else math.nan
        sd = math.sqrt(self.stat_m2 / (n - 1)) if n > 1 else math.nan
        rms = math.sqrt(self.stat_m2 / n + mean * mean) if n else math.nan
        return ResidualStats(
            channel=self.spec.name,
            unit=self.spec.unit,
            n=n,
            n_missing=self.n_raw - self.n_valid,
            mean=mean,
            sd=sd,
            rms=rms,
            max_abs=self.stat_max_abs if n else math.nan,
            sigma=self.sigma,
            sigma_source=self.sigma_source,
        )

    # ---------------------------------------------------------------- σ window

    # ---------------------------------------------------------------- σ window
    def _noise_window(
        self,
        t: FloatArray,
        r: FloatArray,
        valid: BoolArray | None,
        blk: Block | None,
        events: list[DriftEvent],
    ) -> None:
        """Collect first differences until the window is complete, then estimate σ.

        Blocks that arrive while the window is open wait in :attr:`pending` for σ.
        """
        assert self.t_first is not None
        closes = self.window.collect(
            t, r, valid, t_first=self.t_first, last_valid=self.last_valid, last_r=self.last_r
        )
        if blk is not None and self.spec.needs_sigma:
            self.pending.append(blk.keep())
        if closes:
            events.extend(self._close_window(complete=True))

    def _close_window(self, *, complete: bool) -> list[DriftEvent]:
        """Estimate σ from the collected differences and catch up on the buffered samples."""
        self.window_open = False
        self.sigma, n_pairs = self.window.estimate()
        pending, self.pending = self.pending, []
        if self.sigma is None:
            self.sigma_source = "unavailable"
            if not self.spec.needs_sigma:
                return []
            reason = (
                f"the residual did not vary over the first {self.spec.noise_window_s:g} s"
                if complete
                else f"the run ended with {n_pairs} pairs of adjacent readings, fewer "
                f"than the {MIN_NOISE_PAIRS} needed"
            )
            _log.warning(
                "channel %r: %s; no σ, so the CUSUM and EWMA detectors did not run "
                "(declare noise_sd to enable them)",
                self.spec.name,
                reason,
            )
            return []
        self.sigma_source = "estimated"
        events: list[DriftEvent] = []
        if self.spec.needs_sigma:
            for old in pending:
                events.extend(self._statistical(old))
        return events

    def finish(self) -> list[DriftEvent]:
        """End of the run: a σ window still open is closed with the samples there are."""
        if not self.window_open:
            return []
        events = self._close_window(complete=False)
        events.sort(key=event_key)
        return events

    # ---------------------------------------------------------------- CUSUM and EWMA
    def _statistical(self, blk: Block) -> list[DriftEvent]:
        sigma = self.sigma
        assert sigma is not None
        trace = self.trace
        events: list[DriftEvent] = []
        if self.cusum is not None:
            events.extend(self.cusum.block(blk, sigma, self.work, trace))
        if self.ewma is not None or trace is not None:
            m = blk.t.shape[0]
            z = np.divide(blk.r, sigma, out=self.work.z[:m])
            if trace is not None:
                trace.z[blk.raw] = z
            if self.ewma is not None:
                events.extend(self.ewma.block(blk, z, trace))
        return events

    # ---------------------------------------------------------------- one sample at a time
    @property
    def scalar_ok(self) -> bool:
        """Whether the per-sample path may be used (live use, σ settled)."""
        return self.trace is None and not self.window_open

    def feed_samples(
        self, t: FloatArray, real: FloatArray, twin: FloatArray, sd: FloatArray | None = None
    ) -> list[DriftEvent]:
        """:meth:`feed` for a few samples, processed one at a time in plain Python floats.

        Python floats are IEEE doubles like numpy's, and each operation below is the one the
        block code applies element-wise, in the same order, so the results are bit-identical
        (the live-versus-batch tests check it) at a fraction of the ~50 numpy calls a block
        costs.
        """
        if not (t.shape == real.shape == twin.shape) or t.ndim != 1:
            raise AnalysisError(
                f"channel {self.spec.name!r}: t_s, real and twin must be 1-D arrays of one "
                f"length, got shapes {t.shape}, {real.shape} and {twin.shape}"
            )
        n = t.shape[0]
        self.work.ensure(n)
        self._validate_sd(t, sd)
        r = real - twin
        self._validate(t, real, twin, bool(np.isfinite(r).all()))
        events: list[DriftEvent] = []
        if sd is None:
            for t_i, r_i, twin_i in zip(t.tolist(), r.tolist(), twin.tolist(), strict=True):
                events.extend(self._one(t_i, r_i, twin_i))
        else:
            for t_i, r_i, twin_i, sd_i in zip(
                t.tolist(), r.tolist(), twin.tolist(), sd.tolist(), strict=True
            ):
                events.extend(self._one(t_i, r_i, twin_i, sd_i))
        return events

    def feed_scalar(
        self, t: float, real: float, twin: float, sd: float | None = None
    ) -> list[DriftEvent]:
        """One sample given as Python floats (validated here)."""
        name = self.spec.name
        i = self.n_raw
        if sd is not None and not (math.isfinite(sd) and sd >= 0.0):
            raise AnalysisError(
                f"channel {name!r}: twin_sd[{i}] = {sd!r} at t = {t!r} s; a prediction "
                "standard deviation is a finite number ≥ 0"
            )
        if not math.isfinite(t):
            raise AnalysisError(
                f"channel {name!r}: t_s[{i}] = {t!r} is not a finite time; every sample "
                "needs a timestamp (mark a lost reading with real = NaN)"
            )
        if self.last_t is not None and not t > self.last_t:
            raise AnalysisError(
                f"channel {name!r}: t_s[{i}] = {t!r} s does not come after the previous "
                f"sample at {self.last_t!r} s; timestamps must strictly increase"
            )
        if not math.isfinite(twin):
            raise AnalysisError(
                f"channel {name!r}: twin[{i}] = {twin!r} at t = {t!r} s is not finite; the "
                "twin must be evaluated at every sample"
            )
        if math.isinf(real):
            raise AnalysisError(
                f"channel {name!r}: real[{i}] = {real!r} at t = {t!r} s is infinite; a lost "
                "reading is NaN, anything else must be a finite number"
            )
        return self._one(t, real - twin, twin, sd)

    def _one(self, t: float, r: float, twin: float, sd: float | None = None) -> list[DriftEvent]:
        """One validated sample; mirrors feed() → _prepare, the detectors' block updates."""
        self.n_raw += 1
        if math.isnan(r):
            self.last_t = t
            self.last_valid = False
            return []
        spec = self.spec
        gap = not self.last_valid and self.n_valid > 0
        self.last_t = t
        self.last_valid = True
        self.last_r = r
        p_before = self.p_sum
        p_after = p_before + r
        self.p_sum = p_after
        g_int = self.n_valid
        g = float(g_int)
        self.n_valid += 1
        mark: Mark = (t, g_int, p_before, twin)
        here = (t, g_int, p_after, twin)
        # residual statistics: a one-sample block has mean r and M2 0
        max_b = abs(r)
        na = self.stat_n
        if na == 0:
            self.stat_mean, self.stat_m2, self.stat_max_abs = r, 0.0, max_b
        else:
            n = na + 1
            delta = r - self.stat_mean
            self.stat_mean += delta * 1 / n
            self.stat_m2 += 0.0 + delta * delta * na * 1 / n
            self.stat_max_abs = max(self.stat_max_abs, max_b)
        self.stat_n = na + 1
        events: list[DriftEvent] = []
        ready = g >= self.min_index
        if self.band is not None:
            # positional arguments: this runs once per sample, keywords cost measurably more
            self.band.sample(t, r, twin, gap, self.last_valid_t, mark, here, ready, events, sd)
        self.last_valid_t = t
        sigma = self.sigma
        if sigma is None or not spec.needs_sigma:
            return events
        if self.cusum is not None:
            self.cusum.sample(p_after, g, sigma, mark, here, ready, events)
        if self.ewma is not None:
            self.ewma.sample(r, sigma, mark, here, ready, events)
        return events


def as_float_array(channel: str, label: str, value: ArrayLike) -> FloatArray:
    """``value`` as a float64 array; an :class:`AnalysisError` naming the channel if it is not."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise AnalysisError(
            f"channel {channel!r}: {label} must be numbers, got {type(value).__name__} ({exc})"
        ) from None
    return arr
