"""Drift comparator: residuals between the real device and its twin, and three drift detectors.

For every channel the runner hands over aligned arrays ``t_s``, ``real`` and ``twin`` (the twin
evaluated at the real samples' timestamps). The residual ``r = real − twin`` is watched by

1. a **tolerance band** ``|r| > abs_tol + rel_tol·|twin|`` that must persist for
   ``persistence_s`` (and, once fired, be respected again for ``persistence_s`` before it can
   fire again); when the twin gives the standard deviation ``sd`` of its prediction
   (``twin_sd``: a calibrated twin's uncertainty plus the model's noise), the half-width is
   ``max(abs_tol + rel_tol·|twin|, band_k·sd)``, so a drift is a reading outside what the
   twin predicts;
2. a **two-sided CUSUM** (Page 1954) on ``z = r/σ`` with reference value ``k`` and decision
   interval ``h`` in σ units. Each side is the Lindley recursion ``S_n = max(0, S_{n−1} + x_n)``
   (``x = z − k`` upwards, ``x = −z − k`` downwards), evaluated in closed form per segment as
   ``S = C − minimum.accumulate(min(C, 0))`` with ``C = cumsum(x)``;
3. an **EWMA chart** (Roberts 1959; Lucas & Saccucci 1990) ``E_n = (1−λ)E_{n−1} + λ z_n``
   computed with :func:`scipy.signal.lfilter`, against the *exact* time-varying limits
   ``±L·sqrt(λ/(2−λ)·(1 − (1−λ)^{2n}))`` (within 1 % of the asymptotic ones after ~2/λ
   samples; they keep the chart's false-alarm rate right from the start of a run).

σ is the channel's declared ``noise_sd`` or, when that is ``None``, a robust estimate from the
first ``noise_window_s`` of the run (:func:`robust_noise_sd`: MAD of the first differences,
one 3σ-rejection step, divided by √2). Differencing removes a linear drift exactly and the
rejection ignores the odd step or spike, so a drift already under way in the window does not
inflate σ.

Alarm semantics (what one :class:`DriftEvent` means)
----------------------------------------------------
Every detector reports **one event per drift episode**. After it fires in one direction it is
*latched* in that direction until its statistic is back at target, and only then re-armed:

* tolerance: the band must be respected again for ``persistence_s``;
* EWMA: ``E`` must come back to the target side (``E ≤ 0`` after a high alarm);
* CUSUM (``cusum_rearm = "latch"``, the default): the alarming side is reset to ``h`` and then
  runs as ``S_n = min(h, S_{n−1} + x_n)``; it is re-armed (reset to 0) when ``S`` reaches 0,
  i.e. when the evidence accumulated for the drift is used up (about ``h/k`` in-control
  samples). With ``cusum_rearm = "restart"`` the classic textbook rule applies instead: reset
  to 0 after every alarm, so a drift that persists fires again every ``≈ h/(δ − k)`` samples.

The classic restart rule turns one persistent drift into thousands of events per day, which is
noise for the QA engineer and makes the batch cost grow with the number of alarms; latching
keeps alarms rare, so the segment-wise recomputation after each alarm stays cheap.

Gaps (``real`` = NaN, e.g. while a device was lost) neither fire nor reset: NaN samples are
dropped before the detectors, whose state is held across the gap; the persistence clock of the
tolerance band pauses from the last sample before the gap to the first one after it; σ's
first differences never span a gap.

Onset estimates: the first sample after the detector's statistic was last at target (CUSUM:
after ``S`` was last 0, the classic Page/Hinkley change-point estimate; EWMA: after ``E`` was
last on the target side; tolerance: the first out-of-band sample of the episode). Magnitude:
mean residual from onset to detection, in channel units, and relative to the twin's mean over
the same span (taken as the mean of its values at onset and detection) when that is
meaningfully away from zero.

Why hand-written: river's detectors (``PageHinkley``, ``ADWIN``) are per-sample, do not
standardise by a channel's noise level and report neither onset nor magnitude; ruptures is
offline only. The detectors here are a few numpy/scipy primitives (``cumsum``,
``minimum.accumulate``, ``lfilter``) arranged so that the batch :func:`compare` and the live
:class:`LiveComparator` run the *same* block code (plus, for single samples, a plain-float
path doing the identical IEEE operations), which makes their events bit-identical whatever
the block sizes. Both CUSUM sides use one running sum: ``C`` of a phase is ``B − B₀`` with
``B = Σr/σ − k·i`` (high side) or ``−Σr/σ − k·i`` (low side), ``i`` the sample index.

Defaults (see ``docs/comparator.md``): ``k = 0.5`` (optimal for a 1σ shift) with ``h = 18``,
and ``λ = 0.01, L = 6.3``. The literature's ``h = 4–5`` (in-control ARL 170–470 samples)
would raise hundreds of false events per day at 1 Hz; with these values the in-control
average run lengths (Brook & Evans 1972 Markov chain / integral equation) are 2.1×10⁸
(CUSUM) and 1.3×10¹⁰ (EWMA) samples, and still 1.4×10⁷ and 1.2×10⁷ under a constant model
error of 0.1σ: under 1.5 % chance of any false event in 24 h at 1 Hz even then. The EWMA is
the small-shift detector (0.25σ found after ~6 k samples, CUSUM ~116 k), the CUSUM the fast
one (1σ after ~36 samples, 2σ after ~13).

Layout: one module per detector, holding its block update (arrays in, events out) and its
live update (one sample in plain floats) side by side: :mod:`.tolerance`, :mod:`.cusum`,
:mod:`.ewma`. Shared parts: :mod:`.spec` (:class:`ChannelSpec`, defaults, validation),
:mod:`.noise` (:func:`robust_noise_sd`, the σ window), :mod:`.events` (:class:`DriftEvent`,
statistics, results), :mod:`.block` (the block of valid samples, scratch space, traces),
:mod:`.engine` (one channel: input checks, gaps, statistics, dispatch to the detectors),
:mod:`.batch` (:func:`compare`) and :mod:`.live` (:class:`LiveComparator`). The names below
are the public API; the modules are the package's inside.
"""

from __future__ import annotations

from medtwin.hil.comparator.batch import compare
from medtwin.hil.comparator.events import ChannelComparison, DriftEvent, ResidualStats
from medtwin.hil.comparator.live import LiveComparator
from medtwin.hil.comparator.noise import MIN_NOISE_PAIRS, robust_noise_sd
from medtwin.hil.comparator.spec import DETECTORS, ChannelSpec, Detector, Direction

__all__ = [
    "DETECTORS",
    "MIN_NOISE_PAIRS",
    "ChannelComparison",
    "ChannelSpec",
    "Detector",
    "Direction",
    "DriftEvent",
    "LiveComparator",
    "ResidualStats",
    "compare",
    "robust_noise_sd",
]
