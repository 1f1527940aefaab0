"""Simulating the bench: :func:`simulate` (a whole schedule, batched) and SystemSimulator.

:func:`simulate` runs a whole schedule for a batch of parameter sets (in row chunks that
bound memory) and adds what the balance displays; :class:`SystemSimulator` advances one
parameter set incrementally for the emulators and the live twin. Both drive the same
:class:`~.model.Model`, so they agree exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from medtwin.device_models.balance import display
from medtwin.device_models.base import validate
from medtwin.device_models.schedule import Alarm, Command, Schedule
from medtwin.device_models.system.model import Model
from medtwin.device_models.system.params import (
    FloatArray,
    ParameterBatch,
    ParamsLike,
    Rows,
    SystemParams,
    batch_getter,
)
from medtwin.device_models.system.state import Inputs, SystemState
from numpy.typing import NDArray

__all__ = ["CHANNELS", "SimulationResult", "SystemSimulator", "simulate"]


#: The output channels of :func:`simulate`, with units.
CHANNELS: dict[str, str] = {
    "rate_set_ml_h": "mL/h",
    "running": "",
    "delivered_ml": "mL",
    "plunger_ml": "mL",
    "pump_infused_ml": "mL",
    "pump_withdrawn_ml": "mL",
    "line_pressure_mmhg": "mmHg",
    "sensed_pressure_mmhg": "mmHg",
    "occluded": "",
    "alarms": "",
    "balance_load_g": "g",
    "balance_settled_g": "g",
    "balance_tare_g": "g",
}


@dataclass(frozen=True)
class SimulationResult:
    """Outputs of :func:`simulate` on the output grid ``t_s``.

    Per-row channels have shape ``(B, n)``; ``rate_set_ml_h`` and ``occluded`` (inputs)
    have shape ``(n,)``. ``flow_ml_h`` is the outlet flow averaged over the preceding
    output interval (NaN at the first point). ``balance_g``/``balance_stable`` are what
    the balance displays (with noise when an ``rng`` was given).
    """

    t_s: FloatArray
    channels: dict[str, NDArray[Any]]

    def __getitem__(self, name: str) -> NDArray[Any]:
        return self.channels[name]

    @property
    def batch_size(self) -> int:
        return int(self.channels["delivered_ml"].shape[0])

    def row(self, index: int) -> dict[str, NDArray[Any]]:
        """All channels of one row as 1-D arrays."""
        return {
            name: (value[index] if value.ndim == 2 else value)
            for name, value in self.channels.items()
        }


#: The per-row channels the phase kernel writes (name, dtype).
_KERNEL_OUTPUTS: tuple[tuple[str, Any], ...] = (
    ("running", bool),
    ("delivered_ml", float),
    ("plunger_ml", float),
    ("pump_infused_ml", float),
    ("pump_withdrawn_ml", float),
    ("line_pressure_mmhg", float),
    ("sensed_pressure_mmhg", float),
    ("alarms", np.int64),
    ("balance_load_g", float),
    ("balance_settled_g", float),
)


def _allocate_outputs(rows: int, n: int) -> dict[str, NDArray[Any]]:
    return {name: np.zeros((rows, n), dtype=dtype) for name, dtype in _KERNEL_OUTPUTS}


def _prepare_grid(t_out: Sequence[float] | FloatArray) -> FloatArray:
    grid = np.asarray(t_out, dtype=float)
    if grid.ndim != 1 or grid.size == 0:
        raise ValueError("t_out must be a non-empty 1-D array of times")
    if not np.all(np.isfinite(grid)) or np.any(grid < 0) or np.any(np.diff(grid) <= 0):
        raise ValueError("t_out must be finite, >= 0 and strictly increasing")
    return grid


def simulate(
    params: ParamsLike,
    schedule: Schedule,
    t_out: Sequence[float] | FloatArray,
    *,
    rng: np.random.Generator | None = None,
    max_elements: int = 250_000,
) -> SimulationResult:
    """Simulate pump + line + balance for one schedule and a batch of parameter sets.

    Parameters
    ----------
    params : SystemParams, sequence of SystemParams or ParameterBatch
        ``B`` parameter sets (one pump kind).
    schedule : Schedule
        The commands; inputs are constant between command times.
    t_out : array_like, shape (n,)
        Output times in s, strictly increasing, >= 0. Commands at exactly an output time
        are applied before that output (outputs are right-continuous).
    rng : numpy.random.Generator, optional
        Source of the balance's reading noise; without it ``balance_g`` is noise-free.
        Noise is drawn for the whole ``(B, n)`` block at once, row-major.
    max_elements : int
        Rows are processed in chunks of at most this many (row × time) elements, to bound
        memory; results do not depend on it.

    Returns
    -------
    SimulationResult
    """
    grid = _prepare_grid(t_out)
    _, size, _ = batch_getter(params)
    n = grid.size
    out = _allocate_outputs(size, n)
    out["_tare_g"] = np.zeros((size, n))
    per_row: dict[str, FloatArray] = {}
    inputs: dict[str, NDArray[Any]] = {}
    if isinstance(params, SystemParams):
        params = [params]
    chunk = max(1, max_elements // n)
    for start in range(0, size, chunk):
        stop = min(size, start + chunk)
        sub: ParamsLike
        if isinstance(params, ParameterBatch):
            columns = {k: np.asarray(v)[start:stop] for k, v in params.columns.items()}
            sub = ParameterBatch(params.base, columns) if columns else params
        else:
            sub = list(params)[start:stop]
        # Views into the full arrays: each chunk writes its rows in place.
        views = {name: array[start:stop] for name, array in out.items()}
        chunk_rows, inputs = _simulate_chunk(sub, schedule, grid, views)
        for name in ("readability_g", "stability_band_g", "capacity_g", "noise_sd_g"):
            per_row.setdefault(name, np.empty(size))[start:stop] = getattr(chunk_rows, name)
    tare = out.pop("_tare_g")
    channels: dict[str, NDArray[Any]] = {**inputs, **out, "balance_tare_g": tare}
    delivered = out["delivered_ml"]
    flow = np.full(delivered.shape, np.nan)
    flow[:, 1:] = np.diff(delivered, axis=1) / np.diff(grid) * 3600.0
    channels["flow_ml_h"] = flow
    channels["occlusion_alarm"] = (out["alarms"] & int(Alarm.OCCLUSION)) != 0
    shown = display(
        out["balance_settled_g"],
        out["balance_load_g"],
        readability_g=per_row["readability_g"][:, None],
        stability_band_g=per_row["stability_band_g"][:, None],
        capacity_g=per_row["capacity_g"][:, None],
        noise_sd_g=per_row["noise_sd_g"][:, None],
        tare_g=tare,
        rng=rng,
    )
    channels["balance_g"] = shown.net_g
    channels["balance_stable"] = shown.stable
    channels["balance_overload"] = shown.overload
    return SimulationResult(grid, channels)


def _simulate_chunk(
    params: ParamsLike, schedule: Schedule, grid: FloatArray, out: dict[str, NDArray[Any]]
) -> tuple[Rows, dict[str, NDArray[Any]]]:
    """Run one chunk of rows, writing into ``out`` (views of the full arrays); returns the
    chunk's row constants and the (shared) input channels."""
    model = Model(params)
    n = grid.size
    rate = np.zeros(n)
    occluded = np.zeros(n, dtype=bool)
    commands = list(schedule)
    ci = 0
    phase_starts = [0.0, *[t for t in schedule.times_s if 0.0 < t <= grid[-1]]]
    for pi, t_phase in enumerate(phase_starts):
        while ci < len(commands) and commands[ci].t_s <= t_phase:
            model.apply(commands[ci])
            ci += 1
        t_end = phase_starts[pi + 1] if pi + 1 < len(phase_starts) else float(grid[-1]) + 1.0
        lo = int(np.searchsorted(grid, t_phase, side="left"))
        hi = int(np.searchsorted(grid, t_end, side="left"))
        rate[lo:hi] = model.inputs.rate_ml_h
        occluded[lo:hi] = model.inputs.occluded
        out["_tare_g"][:, lo:hi] = model.tare_g[:, None]
        model.run_phase(t_phase, t_end, grid[lo:hi], out, lo)
    return model.rows, {"rate_set_ml_h": rate, "occluded": occluded}


class SystemSimulator:
    """The same model, advanced incrementally (emulators and the live twin).

    ``advance_to(t)`` moves the state to ``t`` exactly as :func:`simulate` would;
    ``apply(command)`` takes effect at the current time. One parameter set.
    """

    def __init__(self, params: SystemParams) -> None:
        validate(params)
        self.params = params
        self._model = Model([params])
        self._noise: np.random.Generator | None = None

    @property
    def t_s(self) -> float:
        return self._model.t

    @property
    def state(self) -> SystemState:
        return self._model.state

    @property
    def inputs(self) -> Inputs:
        return self._model.inputs

    def advance_to(self, t_s: float) -> None:
        if t_s < self._model.t - 1e-12:
            raise ValueError(f"time goes backwards: {t_s} < {self._model.t}")
        if t_s > self._model.t:
            self._model.advance_incremental(t_s)

    def sample(self, times: Sequence[float] | FloatArray) -> dict[str, NDArray[Any]]:
        """Advance through ``times`` (ascending, ≥ now) and return every channel of
        :data:`CHANNELS` at each of them (arrays of shape (n,)), in one vectorised pass.

        Inputs are those in force now: apply the next command after sampling up to it.
        """
        model = self._model
        grid = np.asarray(times, dtype=float)
        if grid.size == 0:
            return {}
        if grid[0] < model.t - 1e-12 or np.any(np.diff(grid) < 0):
            raise ValueError("sample times must be ascending and not before now")
        grid = np.maximum(grid, model.t)
        n = grid.size
        out = _allocate_outputs(1, n)
        end = float(np.nextafter(grid[-1], math.inf))
        model._origin = None
        # Equal sample times (several devices at one tick) are evaluated once.
        unique, inverse = np.unique(grid, return_inverse=True)
        if unique.size < n:
            sub = {name: np.zeros((1, unique.size), dtype=a.dtype) for name, a in out.items()}
            model.run_phase(model.t, end, unique, sub, 0)
            out = {name: a[:, inverse] for name, a in sub.items()}
        else:
            model.run_phase(model.t, end, grid, out, 0)
        model.t = end
        return {name: a[0] for name, a in out.items()}

    def apply(self, command: Command) -> None:
        """Apply ``command`` at its time (advancing to it first)."""
        self.advance_to(command.t_s)
        self._model.apply(command)

    def replace_params(self, params: SystemParams) -> None:
        """Change the truth parameters from now on (parameter drift), keeping the state."""
        validate(params)
        model = Model([params])
        model.state = self._model.state
        model.inputs = self._model.inputs
        model.t = self._model.t
        model.tare_g = self._model.tare_g
        self.params = params
        self._model = model

    # -- derived readings ------------------------------------------------------------------------

    def pump_dv_cfg_ml(self) -> float:
        return float(self._model._dv_cfg(np.arange(1))[0])

    def rate_range_ml_h(self) -> tuple[float, float]:
        dv = self.pump_dv_cfg_ml()
        return (0.0, float(self._model.rows.max_step_hz[0]) * dv * 3600.0)

    def sensed_pressure_mmhg(self) -> float:
        gain, off_run, off_stop = self._model.sensed_gain_offset(np.arange(1))
        running = bool(self.state.running[0])
        p = float(self.state.pressure_mmhg[0])
        return float(gain[0] * p + (off_run[0] if running else off_stop[0]))

    def load_g(self) -> float:
        r = self._model.rows
        return float(
            r.vessel_g[0] + r.kb_rho[0] * self.state.delivered_ml[0] - r.evap_g_s[0] * self.t_s
        )

    def alarms(self) -> Alarm:
        st = self.state
        bits = int(st.alarms[0])
        remaining = float(self._model.rows.fill_ml[0] - st.plunger_ml[0])
        if remaining <= float(self._model.rows.near_empty_ml[0]):
            bits |= int(Alarm.NEAR_EMPTY)
        return Alarm(bits)

    def tare_g(self) -> float:
        return float(self._model.tare_g[0])
