"""Batch comparison of one channel over a whole run: :func:`compare`.

The arrays go through the channel engine in blocks of :data:`~.block.BATCH_BLOCK` samples,
the same block code :class:`~medtwin.hil.comparator.LiveComparator` runs, so both report the
same events.
"""

from __future__ import annotations

from medtwin.drivers.errors import AnalysisError
from medtwin.hil.comparator.block import BATCH_BLOCK, Trace
from medtwin.hil.comparator.engine import ChannelEngine, as_float_array
from medtwin.hil.comparator.events import ChannelComparison, DriftEvent, event_key
from medtwin.hil.comparator.spec import ChannelSpec
from numpy.typing import ArrayLike

__all__ = ["compare"]


def compare(
    spec: ChannelSpec,
    t_s: ArrayLike,
    real: ArrayLike,
    twin: ArrayLike,
    *,
    traces: bool = True,
    twin_sd: ArrayLike | None = None,
) -> ChannelComparison:
    """Compare one channel of a whole run: residual, detectors, events, statistics, traces.

    Parameters
    ----------
    spec : ChannelSpec
        Tolerances and detector settings of the channel.
    t_s : array_like, shape (n,)
        Sample times, s, finite and strictly increasing.
    real : array_like, shape (n,)
        The device's readings, channel units; NaN where no reading was obtained (a gap).
    twin : array_like, shape (n,)
        The twin evaluated at ``t_s``, channel units; finite.
    twin_sd : array_like, shape (n,), optional
        The twin's prediction standard deviation at each sample, channel units (a
        calibrated twin, :meth:`medtwin.hil.twin.Twin.spread`): the tolerance band's
        half-width becomes ``max(abs_tol + rel_tol·|twin|, band_k·twin_sd)``. None: the
        declared band.
    traces : bool
        Also return the per-sample traces for plotting. They cost seven arrays of 8 bytes
        per sample (560 MB for 10 M samples); ``False`` leaves them ``None`` and keeps the
        memory use independent of the run length.

    Returns
    -------
    ChannelComparison
        Events (sorted by detection time), residual statistics and traces.

    Raises
    ------
    AnalysisError
        Naming the channel and the sample, for arrays of different shapes, non-finite or
        non-increasing times, a non-finite twin or an infinite reading.
    """
    name = spec.name
    t = as_float_array(name, "t_s", t_s)
    re = as_float_array(name, "real", real)
    tw = as_float_array(name, "twin", twin)
    sd = None if twin_sd is None else as_float_array(name, "twin_sd", twin_sd)
    if sd is not None and sd.shape != t.shape:
        raise AnalysisError(
            f"channel {name!r}: twin_sd must have the shape of t_s, got {sd.shape} and {t.shape}"
        )
    if not (t.shape == re.shape == tw.shape) or t.ndim != 1:
        raise AnalysisError(
            f"channel {name!r}: t_s, real and twin must be 1-D arrays of one length, got "
            f"shapes {t.shape}, {re.shape} and {tw.shape}"
        )
    n = t.shape[0]
    trace = Trace.empty(n) if traces else None
    engine = ChannelEngine(spec, trace=trace)
    events: list[DriftEvent] = []
    for start in range(0, n, BATCH_BLOCK):
        stop = start + BATCH_BLOCK
        block_sd = None if sd is None else sd[start:stop]
        events.extend(engine.feed(t[start:stop], re[start:stop], tw[start:stop], block_sd))
    events.extend(engine.finish())
    events.sort(key=event_key)
    return ChannelComparison(
        spec=spec,
        events=tuple(events),
        stats=engine.stats(),
        t_s=t,
        residual=None if trace is None else trace.residual,
        z=None if trace is None else trace.z,
        cusum_pos=None if trace is None else trace.cusum_pos,
        cusum_neg=None if trace is None else trace.cusum_neg,
        ewma=None if trace is None else trace.ewma,
        ewma_limit=None if trace is None else trace.ewma_limit,
        tolerance_band=None if trace is None else trace.band,
    )
