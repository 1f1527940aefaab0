"""The calibration problem: which parameters, which channels, and their weighted residuals.

Everything a fit needs before it starts (see :mod:`medtwin.hil.calibration` for the method):

* the device the calibration belongs to (:func:`run_device_key`, filed by
  :func:`medtwin.hil.twin.calibration_key`);
* the parameters: which leaves of the twin can vary (:func:`fittable_parameters`), the
  names a user asked for, values held fixed, and the twin the run actually used
  (:func:`twins_of_run`: the stored twin parameters are authoritative);
* the channels: the balance's net mass (gravimetry, the method of IEC 60601-2-24's flow
  test), split at each tare into segments that carry their own nuisance offset, and the
  line pressure when a line or compliance parameter is fitted;
* :class:`Problem`: the weighted, offset-projected residuals ``(real − twin)/σ`` for a
  batch of parameter values, evaluated in one vectorised model call
  (:class:`medtwin.device_models.system.ParameterBatch`).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from medtwin.device_models.base import ParameterError, ParameterInfo, list_parameters
from medtwin.device_models.system import ParameterBatch, SystemParams
from medtwin.drivers.errors import ConfigurationError
from medtwin.hil.config import BenchConfig, bench_from_text
from medtwin.hil.store import RunData
from medtwin.hil.twin import (
    CHANNEL_KINDS,
    calibration_key,
    schedule_from_events,
    twin_params,
    twin_series,
)
from numpy.typing import NDArray

__all__ = [
    "DEFAULT_PARAMETERS",
    "FD_RELATIVE_STEP",
    "MIN_CHANNEL_SAMPLES",
    "FitChannel",
    "Problem",
    "fittable_parameters",
    "fixed_parameters",
    "get_parameter",
    "leaf_values",
    "resolve_names",
    "run_bench",
    "run_device_key",
    "select_channels",
    "twins_of_run",
    "wear_names",
]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]

#: What ``medtwin calibrate`` fits when ``--params`` is not given, per pump kind: the
#: two parameters behind a pump that delivers more or less than it counts.
DEFAULT_PARAMETERS: dict[str, tuple[str, ...]] = {
    "syringe": ("pump.syringe.inner_diameter_mm", "pump.drive.wear_percent_per_h"),
    "volumetric": ("pump.efficiency", "pump.wear_percent_per_h"),
}

#: Relative forward-difference step, as scipy's ``2-point`` scheme applies it:
#: ``h = step·max(1, |x|)`` in the parameter's unit. 1e-6 rather than √ε ≈ 1.5e-8: the
#: closed-form model loses a few digits to cancellation over a 2-hour run (derivatives
#: from steps of 1e-4, 1e-6 and 1.5e-8 agree to ~5e-7 on the drift bench's run), and a
#: truncation error of that order is far below any standard error.
FD_RELATIVE_STEP = 1e-6

#: Fewest valid samples a channel needs to take part in a fit.
MIN_CHANNEL_SAMPLES = 10

#: A parameter whose name matches one of these also fits the line pressure channels
#: (line resistance and compliance show in the pressure first; the mass sees them only in
#: transients).
_PRESSURE_INFORMED = ("line.", "compliance")


# --------------------------------------------------------------------------- identity


def _calibrated_device(bench: BenchConfig) -> str:
    """The device whose calibration the twin uses (the runner's rule)."""
    if bench.twin.device:
        return bench.twin.device
    pump = bench.device_of_kind("pump")
    return (pump or bench.devices[0]).name


def run_device_key(run: RunData, bench: BenchConfig | None = None, *, source: str = "RUN") -> str:
    """The calibration key of the run's calibrated device (the pump unless the bench's
    ``[twin] device`` names another), from the identity it reported in the run."""
    bench = bench or run_bench(run)
    name = _calibrated_device(bench)
    for info in run.devices:
        if info.name == name:
            identity = info.identity if isinstance(info.identity, Mapping) else {}
            return calibration_key(
                str(identity.get("model") or ""),
                str(identity.get("serial") or ""),
                bench=bench.name,
                device=name,
            )
    raise ConfigurationError(
        f"run {run.info.id} recorded no identity for device {name!r}, so a calibration "
        "cannot be tied to it",
        source=source,
    )


# --------------------------------------------------------------------------- parameters


def _float_parameter(info: ParameterInfo) -> bool:
    return isinstance(info.value, float) and not isinstance(info.value, bool)


def fittable_parameters(params: SystemParams) -> list[ParameterInfo]:
    """The parameters a fit can vary: every real-valued (float) leaf of ``params``.

    Integer, boolean and text parameters (step counts, flags, names) are not continuous
    and are left out.
    """
    return [info for info in list_parameters(params) if _float_parameter(info)]


def get_parameter(params: SystemParams, name: str) -> Any:
    return functools.reduce(getattr, name.split("."), params)


def resolve_names(
    names: Sequence[str], params: SystemParams, *, source: str
) -> list[ParameterInfo]:
    by_name = {info.name: info for info in list_parameters(params)}
    fittable = [info.name for info in fittable_parameters(params)]
    seen: set[str] = set()
    out: list[ParameterInfo] = []
    for raw in names:
        name = raw.strip()
        if not name:
            raise ConfigurationError(
                "empty parameter name; expected comma-separated dotted names such as "
                "pump.syringe.inner_diameter_mm",
                source=source,
            )
        if name in seen:
            raise ConfigurationError(f"parameter {name!r} is named twice", source=source)
        seen.add(name)
        info = by_name.get(name)
        if info is None:
            raise ConfigurationError(
                f"unknown parameter {name!r}; the fittable parameters of this twin are: "
                + ", ".join(fittable),
                source=source,
            )
        if not _float_parameter(info):
            raise ConfigurationError(
                f"parameter {name!r} is not a real number ({type(info.value).__name__}) and "
                "cannot be fitted; the fittable parameters of this twin are: "
                + ", ".join(fittable),
                source=source,
            )
        out.append(info)
    if not out:
        raise ConfigurationError("no parameters to fit", source=source)
    return out


def leaf_values(params: SystemParams) -> dict[str, Any]:
    return {info.name: info.value for info in list_parameters(params)}


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(tree, Mapping):
        for key, value in tree.items():
            out.update(_flatten(value, f"{prefix}{key}."))
    else:
        out[prefix[:-1]] = tree
    return out


def run_bench(run: RunData) -> BenchConfig:
    return bench_from_text(run.bench_text, source=f"run {run.info.id}: bench")


def twins_of_run(run: RunData, bench: BenchConfig) -> tuple[SystemParams, SystemParams]:
    """(the bench's nominal twin, the twin exactly as the run used it).

    They differ when the run's twin carried a calibration (``calibration = "latest"``);
    the stored twin parameters are authoritative.
    """
    nominal = twin_params(bench)
    stored = _flatten(run.twin_params) if isinstance(run.twin_params, Mapping) else {}
    current = leaf_values(nominal)
    overrides = {
        name: value
        for name, value in stored.items()
        if name in current
        and isinstance(value, int | float)
        and not isinstance(value, bool)
        and not isinstance(current[name], bool | str)
        and value != current[name]
    }
    if not overrides:
        return nominal, nominal
    try:
        return nominal, nominal.with_overrides(overrides)
    except ParameterError as exc:
        raise ConfigurationError(
            f"the twin parameters stored with run {run.info.id} do not fit its bench: {exc}",
            source="RUN",
        ) from None


def fixed_parameters(
    params: SystemParams, names: list[str], fixed: Mapping[str, float]
) -> dict[str, float]:
    by_name = {info.name: info for info in list_parameters(params)}
    out: dict[str, float] = {}
    for name, value in fixed.items():
        info = by_name.get(name)
        if info is None or not _float_parameter(info):
            raise ConfigurationError(
                f"unknown parameter {name!r}; the fittable parameters of this twin are: "
                + ", ".join(i.name for i in fittable_parameters(params)),
                source="--fix",
            )
        if name in names:
            raise ConfigurationError(
                f"parameter {name!r} cannot be both fitted and fixed", source="--fix"
            )
        try:
            out[name] = float(value)
        except (TypeError, ValueError):
            raise ConfigurationError(
                f"{name} = {value!r}: expected a number in {info.unit or 'its unit'}",
                source="--fix",
            ) from None
    configured = "pump.configured_inner_diameter_mm"
    if (
        "pump.syringe.inner_diameter_mm" in names
        and configured not in out
        and configured in by_name
        and not by_name[configured].value
    ):
        # 0 means "the syringe's diameter": fitting the bore would move the pump's own
        # setting with it and cancel the effect being measured.
        out[configured] = float(get_parameter(params, "pump.syringe.inner_diameter_mm"))
    return out


# --------------------------------------------------------------------------- channels


@dataclass(frozen=True)
class FitChannel:
    """One recorded channel taking part in the fit (valid samples only)."""

    name: str  # as recorded, e.g. "balance.mass_g"
    unit: str
    twin_key: str  # kind.quantity, e.g. "balance.mass_g"
    t_s: FloatArray
    real: FloatArray
    sigma: float
    # (start, stop) sample ranges that each carry their own constant offset
    segments: tuple[tuple[int, int], ...]
    columns: IntArray = field(default_factory=lambda: np.empty(0, dtype=np.intp))


def _real_series(run: RunData, name: str) -> tuple[FloatArray, FloatArray] | None:
    matches = [ch for ch in run.channels if ch.name == name and str(ch.source) == "real"]
    if len(matches) != 1:
        return None
    ch = matches[0]
    keep = np.isfinite(ch.values) & np.isfinite(ch.t_s)
    if int(keep.sum()) < MIN_CHANNEL_SAMPLES:
        return None
    return np.asarray(ch.t_s[keep], dtype=float), np.asarray(ch.values[keep], dtype=float)


def _tare_segments(run: RunData, device: str, t_s: FloatArray) -> tuple[tuple[int, int], ...]:
    tares = sorted(
        float(e.t_s)
        for e in run.events
        if e.kind == "command"
        and e.device == device
        and isinstance(e.data, Mapping)
        and e.data.get("action") in ("tare", "zero")
    )
    bounds = [0, *(int(np.searchsorted(t_s, t, side="left")) for t in tares), t_s.size]
    pairs = sorted({(a, b) for a, b in itertools.pairwise(bounds) if b > a})
    return tuple(pairs)


def select_channels(
    run: RunData, bench: BenchConfig, names: Sequence[str], *, source: str = "RUN"
) -> list[tuple[str, str, str, str, FloatArray, FloatArray, tuple[tuple[int, int], ...]]]:
    """(name, unit, twin key, device, t, real, segments) of every channel to fit."""
    balance = bench.device_of_kind("balance")
    mass = None if balance is None else _real_series(run, f"{balance.name}.mass_g")
    if balance is None or mass is None:
        why = (
            f"bench {bench.name!r} has no balance"
            if balance is None
            else f"it holds fewer than {MIN_CHANNEL_SAMPLES} valid readings of "
            f"{balance.name}.mass_g"
        )
        raise ConfigurationError(
            f"run {run.info.id} has no balance data to calibrate against ({why}); "
            "calibration fits the twin to the gravimetric mass, so pick a run with a balance",
            source=source,
        )
    t_mass, v_mass = mass
    chosen = [
        (
            f"{balance.name}.mass_g",
            "g",
            "balance.mass_g",
            balance.name,
            t_mass,
            v_mass,
            _tare_segments(run, balance.name, t_mass),
        )
    ]
    if any(token in name for name in names for token in _PRESSURE_INFORMED):
        for kind in ("bench-io", "pump"):
            cfg = bench.device_of_kind(kind)
            if cfg is None:
                continue
            series = _real_series(run, f"{cfg.name}.pressure_mmhg")
            if series is None:
                continue  # e.g. the NE-1000 reports no pressure
            unit = next(c.unit for c in CHANNEL_KINDS[kind] if c.quantity == "pressure_mmhg")
            chosen.append(
                (
                    f"{cfg.name}.pressure_mmhg",
                    unit,
                    f"{kind}.pressure_mmhg",
                    cfg.name,
                    series[0],
                    series[1],
                    (),
                )
            )
    return chosen


# --------------------------------------------------------------------------- the problem


class Problem:
    """Weighted residuals of a run for a batch of values of the fitted parameters."""

    def __init__(
        self,
        base: SystemParams,
        run: RunData,
        channels: list[FitChannel],
        names: list[str],
    ) -> None:
        self.base = base
        self.schedule = schedule_from_events(run.events)
        self.names = names
        self.grid = np.unique(np.concatenate([ch.t_s for ch in channels]))
        self.channels = [
            dataclasses.replace(ch, columns=np.searchsorted(self.grid, ch.t_s).astype(np.intp))
            for ch in channels
        ]
        self.size = sum(ch.t_s.size for ch in self.channels)
        self.n_offsets = sum(len(ch.segments) for ch in self.channels)
        self.model_calls = 0
        self.model_rows = 0
        # device_models' batch path evaluates a sub-batch of rows that meet an event with
        # the constants of the whole batch, which fails when rows differ in whether they
        # meet it. The one event a fit varies is the wear onset (an event only while the
        # wear rate is > 0, at the onset time), so rows are grouped by both.
        self._wear = wear_names(base)
        self._rate_columns = [j for j, n in enumerate(names) if n == self._wear[0]]
        self._onset_columns = [j for j, n in enumerate(names) if n == self._wear[1]]

    def _groups(self, keys: list[tuple[Any, ...]]) -> list[IntArray]:
        order: dict[tuple[Any, ...], list[int]] = {}
        for row, key in enumerate(keys):
            order.setdefault(key, []).append(row)
        return [np.array(rows, dtype=np.intp) for rows in order.values()]

    # -- model --------------------------------------------------------------------------

    def twins(self, *params: SystemParams) -> list[dict[str, FloatArray]]:
        """Whole parameter sets, batched: for each, the twin of each channel at its
        samples (arrays of shape (n_c,))."""
        rate, onset = self._wear
        keys = [
            (get_parameter(p, rate) / 100.0 / 3600.0 > 0, get_parameter(p, onset)) for p in params
        ]
        result: list[dict[str, FloatArray]] = [{} for _ in params]
        for rows in self._groups(keys):
            self.model_calls += 1
            self.model_rows += int(rows.size)
            out = twin_series([params[i] for i in rows], self.schedule, self.grid)
            for k, i in enumerate(rows):
                result[i] = {ch.name: out[ch.twin_key][k, ch.columns] for ch in self.channels}
        return result

    def _simulate(self, X: FloatArray) -> dict[str, FloatArray]:
        """Every twin channel for each row of ``X`` (shape (B, p)), shape (B, n_grid)."""
        worn = X[:, self._rate_columns] / 100.0 / 3600.0 > 0
        onsets = X[:, self._onset_columns]
        keys = [(*worn[i].tolist(), *onsets[i].tolist()) for i in range(X.shape[0])]
        result: dict[str, FloatArray] = {}
        for rows in self._groups(keys):
            batch = ParameterBatch(self.base, {n: X[rows, j] for j, n in enumerate(self.names)})
            self.model_calls += 1
            self.model_rows += int(rows.size)
            out = twin_series(batch, self.schedule, self.grid)
            for ch in self.channels:
                block = result.setdefault(ch.twin_key, np.empty((X.shape[0], self.grid.size)))
                block[rows] = out[ch.twin_key]
        return result

    def residuals(self, X: FloatArray) -> FloatArray:
        """Weighted, offset-projected residuals for each row of ``X``: shape (B, N)."""
        out = self._simulate(np.atleast_2d(X))
        res = np.empty((out[self.channels[0].twin_key].shape[0], self.size))
        start = 0
        for ch in self.channels:
            r = (ch.real[None, :] - out[ch.twin_key][:, ch.columns]) / ch.sigma
            for a, b in ch.segments:
                r[:, a:b] -= r[:, a:b].mean(axis=1, keepdims=True)
            res[:, start : start + r.shape[1]] = r
            start += r.shape[1]
        return res

    def offsets(self, twin: Mapping[str, FloatArray]) -> dict[str, list[float]]:
        """The nuisance offsets (channel units) of each channel's segments, given the
        twin's values (:meth:`twins`)."""
        out: dict[str, list[float]] = {}
        for ch in self.channels:
            if ch.segments:
                r = ch.real - twin[ch.name]
                out[ch.name] = [float(np.mean(r[a:b])) for a, b in ch.segments]
        return out


def wear_names(params: SystemParams) -> tuple[str, str]:
    """Dotted names of the wear rate and the wear onset of the twin's pump."""
    prefix = "pump.drive." if params.pump_kind == "syringe" else "pump."
    return prefix + "wear_percent_per_h", prefix + "wear_onset_s"
