"""The comparator fed during a run: :class:`LiveComparator`, the incremental wrapper.

One :class:`~.engine.ChannelEngine` per channel. A single sample (scalars) or a short block
goes through the engine's per-sample path once σ is settled; longer blocks, and every block
while the σ window is open, through the block code :func:`~medtwin.hil.comparator.compare`
uses. Both paths give bit-identical events.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

import numpy as np
from medtwin.drivers.errors import ConfigurationError
from medtwin.hil.comparator.engine import ChannelEngine, as_float_array
from medtwin.hil.comparator.events import DriftEvent, ResidualStats, event_key
from medtwin.hil.comparator.spec import ChannelSpec
from numpy.typing import ArrayLike

__all__ = ["LiveComparator"]

# Live blocks up to this length go through the per-sample path (cheaper than numpy below it).
_SCALAR_BLOCK: Final = 32


class LiveComparator:
    """The comparator fed sample by sample (or in small blocks) during a run.

    Its events are identical to :func:`compare` on the same data, whatever the block sizes,
    once :meth:`finish` has been called at the end of the run. When σ is estimated, CUSUM and
    EWMA events are only produced once the estimation window is complete (the samples seen
    so far are then caught up): such an event is *reported* later than its
    ``detected_t_s``. Memory and time per sample are O(1) (the window's samples are the only
    ones buffered); one sample costs a few microseconds.

    Parameters
    ----------
    specs : iterable of ChannelSpec, or mapping of name to ChannelSpec
        One spec per channel; names must be unique.
    """

    def __init__(self, specs: Iterable[ChannelSpec] | Mapping[str, ChannelSpec]) -> None:
        items = list(specs.values()) if isinstance(specs, Mapping) else list(specs)
        self._engines: dict[str, ChannelEngine] = {}
        for spec in items:
            if not isinstance(spec, ChannelSpec):
                raise ConfigurationError(
                    f"expected ChannelSpec objects, got {type(spec).__name__}",
                    field="tolerances",
                )
            if spec.name in self._engines:
                raise ConfigurationError("channel declared twice", field=f"tolerances.{spec.name}")
            self._engines[spec.name] = ChannelEngine(spec, trace=None)
        self._events: list[DriftEvent] = []

    @property
    def channels(self) -> tuple[str, ...]:
        """The channel names, in declaration order."""
        return tuple(self._engines)

    @property
    def events(self) -> list[DriftEvent]:
        """Every event so far, in the order they were reported."""
        return list(self._events)

    def update(
        self,
        channel: str,
        t_s: ArrayLike,
        real: ArrayLike,
        twin: ArrayLike,
        twin_sd: ArrayLike | None = None,
    ) -> list[DriftEvent]:
        """Feed one sample (scalars) or a block (1-D arrays) of one channel.

        ``twin_sd`` (optional, like ``twin``): the twin's prediction standard deviation,
        which widens the tolerance band as in :func:`~medtwin.hil.comparator.compare`.

        Returns the events this call produced, sorted by detection time. On bad input an
        :class:`AnalysisError` is raised and the channel's state is left untouched.
        """
        engine = self._engines.get(channel)
        if engine is None:
            raise ConfigurationError(
                f"no tolerances declared for channel {channel!r}; declared: {list(self._engines)}",
                field=f"tolerances.{channel}",
            )
        t_f, real_f, twin_f = _scalar(t_s), _scalar(real), _scalar(twin)
        sd_f = None if twin_sd is None else _scalar(twin_sd)
        if (
            engine.scalar_ok
            and t_f is not None
            and real_f is not None
            and twin_f is not None
            and (twin_sd is None or sd_f is not None)
        ):
            new = engine.feed_scalar(t_f, real_f, twin_f, sd_f)
        else:
            t = np.atleast_1d(as_float_array(channel, "t_s", t_s))
            re = np.atleast_1d(as_float_array(channel, "real", real))
            tw = np.atleast_1d(as_float_array(channel, "twin", twin))
            sd = (
                None
                if twin_sd is None
                else np.atleast_1d(as_float_array(channel, "twin_sd", twin_sd))
            )
            if engine.scalar_ok and t.shape[0] <= _SCALAR_BLOCK:
                new = engine.feed_samples(t, re, tw, sd)
            else:
                new = engine.feed(t, re, tw, sd)
        self._events.extend(new)
        return new

    def finish(self) -> list[DriftEvent]:
        """Call once at the end of the run; returns the events this still produces.

        A channel whose σ estimation window never completed (a run shorter than
        ``noise_window_s``) gets σ from the samples there are, as :func:`compare` does at
        the end of its data, and its buffered samples go through the CUSUM and EWMA. Later
        updates of such a channel are not expected; they would be processed with that σ.
        """
        new: list[DriftEvent] = []
        for engine in self._engines.values():
            new.extend(engine.finish())
        new.sort(key=event_key)
        self._events.extend(new)
        return new

    def stats(self) -> dict[str, ResidualStats]:
        """Residual statistics per channel so far."""
        return {name: engine.stats() for name, engine in self._engines.items()}

    def sigma(self, channel: str) -> float | None:
        """The σ in use for ``channel`` (None until estimated, or if it cannot be)."""
        engine = self._engines.get(channel)
        if engine is None:
            raise ConfigurationError(
                f"no tolerances declared for channel {channel!r}; declared: {list(self._engines)}",
                field=f"tolerances.{channel}",
            )
        return engine.sigma


def _scalar(value: object) -> float | None:
    """``value`` as a float if it is a plain real number (Python or numpy scalar), else None."""
    if isinstance(value, float | int | np.floating | np.integer):
        return float(value)
    return None
