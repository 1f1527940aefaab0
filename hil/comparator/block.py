"""The unit of work of the comparator: one block of valid samples, scratch space, traces.

Every detector module (:mod:`.tolerance`, :mod:`.cusum`, :mod:`.ewma`) has a *block* update
that takes a :class:`Block` (arrays of the valid samples of one input block, with the running
sums and indices the detectors need) and a *live* update that takes the same quantities for a
single sample as Python floats. A :data:`Mark` is what an event needs to know about one sample
(its onset or its detection sample).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, TypeAlias

import numpy as np
from numpy.typing import NDArray

FloatArray: TypeAlias = NDArray[np.float64]
BoolArray: TypeAlias = NDArray[np.bool_]
IntArray: TypeAlias = NDArray[np.intp]

# (t_s, valid-sample index, Σr before the sample, twin at the sample): what an event needs
# to know about its onset sample (Σr *through* the sample for the detection sample).
Mark: TypeAlias = tuple[float, int, float, float]

# Batch block length: 64 k float64 = 512 kB per array, so the dozen arrays one block touches
# stay in L2/L3 cache; chosen by measurement (bench_comparator), not critical.
BATCH_BLOCK: Final = 1 << 16

INDEX_BASE: Final = np.arange(BATCH_BLOCK, dtype=np.float64)


class Work:
    """Scratch arrays reused from block to block.

    Large temporaries are not free: once a few hundred kB are alive at once, the allocator
    maps fresh pages for every block, and on a VM a first touch costs far more than the
    arithmetic (measured: three live 512 kB temporaries made a 30 µs expression take 1.6 ms).
    """

    def __init__(self) -> None:
        self.cap = -1
        self.ensure(0)

    def ensure(self, n: int) -> None:
        if n <= self.cap:
            return
        self.cap = n
        self.r, self.P, self.g, self.tau, self.tmp = (np.empty(n + 1) for _ in range(5))
        self.high, self.low, self.run, self.stat, self.z = (np.empty(n + 1) for _ in range(5))
        self.mask, self.mask2 = (np.empty(n + 1, dtype=bool) for _ in range(2))


@dataclass(slots=True)
class Block:
    """The valid samples of one input block, with what every detector needs.

    In batch use the arrays are views of the engine's scratch space, valid until the next
    block; :meth:`keep` makes an independent copy for blocks that wait for σ.
    """

    t: FloatArray  # (m,) s
    r: FloatArray  # (m,) residual
    twin: FloatArray  # (m,)
    g: FloatArray  # (m,) index among the channel's valid samples, as float
    P: FloatArray  # (m+1,) P[j] = Σ r over the channel's valid samples before sample j
    tau: FloatArray | None  # (m,) s, clock that pauses across gaps (tolerance band only)
    offset: int  # valid-sample index of the first sample
    raw: slice | IntArray  # where the samples sit in the traces
    sd: FloatArray | None = None  # (m,) the twin's prediction SD (None: not given)

    def mark(self, j: int) -> Mark:
        return (float(self.t[j]), self.offset + j, float(self.P[j]), float(self.twin[j]))

    def here(self, j: int) -> Mark:
        """Like :meth:`mark` but with Σr *through* sample ``j``."""
        return (float(self.t[j]), self.offset + j, float(self.P[j + 1]), float(self.twin[j]))

    def keep(self) -> Block:
        tau = None if self.tau is None else self.tau.copy()
        raw = self.raw if isinstance(self.raw, slice) else self.raw.copy()
        sd = None if self.sd is None else self.sd.copy()
        return Block(
            self.t.copy(),
            self.r.copy(),
            self.twin.copy(),
            self.g.copy(),
            self.P.copy(),
            tau,
            self.offset,
            raw,
            sd,
        )


@dataclass(slots=True)
class Trace:
    """Full-length trace arrays that compare() returns (None in live use)."""

    residual: FloatArray
    z: FloatArray
    cusum_pos: FloatArray
    cusum_neg: FloatArray
    ewma: FloatArray
    ewma_limit: FloatArray
    band: FloatArray

    @classmethod
    def empty(cls, n: int) -> Trace:
        return cls(*(np.full(n, np.nan) for _ in range(7)))


def last_true(mask: BoolArray) -> int:
    """Index of the last True in ``mask`` (−1 if none); searches backwards in growing steps."""
    hi = int(mask.shape[0])
    step = 256
    while hi > 0:
        lo = max(0, hi - step)
        seg = mask[lo:hi]
        if seg.any():
            return hi - 1 - int(np.argmax(seg[::-1]))
        hi = lo
        step *= 8
    return -1
