"""The twin: device_models fed exactly the inputs the real devices saw.

The runner hands every command it sends to a real device to :meth:`Twin.command` as well
(at the time the device acknowledged it), including values only the device knows, such
as the tare the real balance took. The twin then answers, for any sample timestamp, the
same channels the real devices report, from the same model the emulators run on.

Channels are named ``<device>.<quantity>`` after the bench's device names
(``pump.infused_ml``, ``balance.mass_g``). :data:`CHANNEL_KINDS` lists, per device kind,
the quantities, their units and the comparator defaults.

A calibrated twin carries its uncertainty (:class:`TwinUncertainty`): the standard deviation
of each prediction is the delta method's ``sqrt(J·Σ·Jᵀ)`` per channel and sample (``Σ`` the
calibration's parameter covariance, ``J`` the forward-difference sensitivity of the channel
to each calibrated parameter, evaluated by simulators run beside the twin with one parameter
perturbed each, the step of the calibration's own Jacobian) plus the model's own noise
(:func:`model_noise_sd`). The comparator widens its tolerance band to ``band_k`` times it
(:mod:`medtwin.hil.comparator.tolerance`); the report draws it as a band around the twin.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from medtwin.device_models.base import ParameterError
from medtwin.device_models.schedule import Command, CommandKind, Schedule
from medtwin.device_models.syringes import SyringeLibrary, default_library
from medtwin.device_models.system import ParameterBatch, SystemParams, SystemSimulator, simulate
from medtwin.drivers.base import DeviceIdentity
from medtwin.drivers.errors import ConfigurationError
from medtwin.hil.actions import ACTIONS
from medtwin.hil.analysis.gravimetry import policy_from_balance_params
from medtwin.hil.config import BenchConfig, EmulationConfig, TwinConfig
from medtwin.hil.store import RunStore
from numpy.typing import NDArray

__all__ = [
    "CHANNEL_KINDS",
    "SD_SUFFIX",
    "ChannelDef",
    "Twin",
    "TwinUncertainty",
    "build_twin",
    "calibration_key",
    "emulation_truth",
    "model_noise_sd",
    "schedule_from_events",
    "twin_params",
    "twin_prediction_sd",
    "twin_series",
]

#: A twin channel ``<name>`` + this suffix holds the standard deviation of the twin's
#: prediction of ``<name>`` at each sample (stored with a run whose twin is calibrated).
SD_SUFFIX = ".sd"

#: Relative forward-difference step of the prediction's sensitivities, the one the
#: calibration's Jacobian uses (:data:`medtwin.hil.calibration.FD_RELATIVE_STEP`, kept
#: equal here because the calibration package imports this module).
_FD_RELATIVE_STEP = 1e-6


@dataclass(frozen=True)
class ChannelDef:
    """One quantity a device kind reports, with the comparator's default settings."""

    quantity: str
    unit: str
    defaults: Mapping[str, Any]


#: Per device kind: the channels the runner records (real and twin) and the comparator's
#: defaults for them (overridden by a scenario's ``[tolerances.<channel>]``).
#:
#: * Channels a protocol reports with few digits (pump counters, set rates) are judged by
#:   the tolerance band only: their display rounding is deterministic, not noise.
#: * The balance's net mass carries, for the whole run, the noise sample the balance read
#:   when it was tared (a constant offset of about one σ): CUSUM and EWMA would call that
#:   offset a drift, so mass is judged by the tolerance band, and the statistical detectors
#:   watch the flow derived from mass differences, in which the tare offset cancels.
CHANNEL_KINDS: dict[str, tuple[ChannelDef, ...]] = {
    "pump": (
        ChannelDef(
            "infused_ml",
            "mL",
            {
                "abs_tol": 0.002,
                "rel_tol": 0.002,
                "persistence_s": 30.0,
                "detectors": ("tolerance",),
            },
        ),
        ChannelDef(
            "rate_ml_h",
            "mL/h",
            {"abs_tol": 0.01, "rel_tol": 0.002, "persistence_s": 30.0, "detectors": ("tolerance",)},
        ),
        ChannelDef(
            "pressure_mmhg",
            "mmHg",
            {"abs_tol": 20.0, "rel_tol": 0.1, "persistence_s": 30.0, "detectors": ("tolerance",)},
        ),
    ),
    "balance": (
        ChannelDef(
            "mass_g",
            "g",
            {"abs_tol": 0.01, "rel_tol": 0.01, "persistence_s": 60.0, "detectors": ("tolerance",)},
        ),
        ChannelDef("flow_ml_h", "mL/h", {"abs_tol": 0.05, "rel_tol": 0.05, "persistence_s": 300.0}),
    ),
    "bench-io": (
        ChannelDef(
            "pressure_mmhg", "mmHg", {"abs_tol": 20.0, "rel_tol": 0.1, "persistence_s": 30.0}
        ),
    ),
}


def _library(bench: BenchConfig) -> SyringeLibrary:
    library = default_library()
    if bench.syringe_library:
        extended = SyringeLibrary([library.get(n) for n in library.names])
        try:
            extended.load_file(bench.syringe_library)
        except ParameterError as exc:
            raise ConfigurationError(
                str(exc), source=bench.source, field="syringe_library"
            ) from None
        return extended
    return library


def _params(
    kind: str,
    syringe: str | None,
    overrides: Mapping[str, Any],
    library: SyringeLibrary,
    *,
    source: str,
    field: str,
) -> SystemParams:
    try:
        base = SystemParams.nominal(kind)  # type: ignore[arg-type]
        if kind == "syringe" and syringe:
            base = base.with_overrides({"pump.syringe": syringe}, library=library)
        return base.with_overrides(dict(overrides), library=library) if overrides else base
    except ParameterError as exc:
        raise ConfigurationError(str(exc), source=source, field=field) from None


def emulation_truth(bench: BenchConfig) -> SystemParams:
    """The physical truth behind the bench's emulated devices."""
    emulation: EmulationConfig = bench.emulation
    syringe = emulation.syringe or bench.twin.syringe
    return _params(
        emulation.pump,
        syringe,
        emulation.truth,
        _library(bench),
        source=bench.source,
        field="emulation.truth",
    )


def twin_params(bench: BenchConfig, calibration: Mapping[str, float] | None = None) -> SystemParams:
    """The twin's parameters: nominal model + the bench's ``[twin.params]`` + a calibration."""
    twin: TwinConfig = bench.twin
    params = _params(
        twin.pump,
        twin.syringe,
        twin.params,
        _library(bench),
        source=bench.source,
        field="twin.params",
    )
    if calibration:
        try:
            params = params.with_overrides(dict(calibration))
        except ParameterError as exc:
            raise ConfigurationError(
                f"the stored calibration does not fit this twin: {exc}",
                source=bench.source,
                field="twin.calibration",
            ) from None
    return params


@dataclass(frozen=True)
class TwinUncertainty:
    """The parameter covariance of a calibration, which the twin turns into prediction SDs.

    ``names`` are dotted parameter names; ``covariance`` (p, p) in their units.
    """

    names: tuple[str, ...]
    covariance: NDArray[np.float64]

    @classmethod
    def from_calibration(
        cls, params: Mapping[str, Any], correlation: Any
    ) -> TwinUncertainty | None:
        """From a stored calibration (:class:`medtwin.hil.store.CalibrationRecord`'s
        ``params`` and ``correlation``): its ``covariance`` when stored, else the one
        rebuilt from the standard errors and the correlation matrix (calibrations stored
        before the covariance was). Parameters without a finite standard error (held
        fixed) carry none. None when no parameter has one."""
        names: list[str] = []
        stderr: list[float] = []
        for name, entry in params.items():
            value = entry.get("stderr") if isinstance(entry, Mapping) else None
            if isinstance(value, int | float) and math.isfinite(value):
                names.append(str(name))
                stderr.append(float(value))
        if not names:
            return None
        table = correlation if isinstance(correlation, Mapping) else {}
        order = [str(n) for n in table.get("names", [])]
        index = [order.index(n) if n in order else -1 for n in names]
        sd = np.array(stderr)
        cov = np.diag(sd**2)
        for key, scale in (("covariance", None), ("matrix", sd)):
            matrix = table.get(key)
            if not isinstance(matrix, list) or len(matrix) != len(order) or -1 in index:
                continue
            try:
                full = np.array(matrix, dtype=float)[np.ix_(index, index)]
            except (TypeError, ValueError, IndexError):
                continue
            if scale is not None:
                full = full * np.outer(scale, scale)
            if np.all(np.isfinite(full)):
                cov = full
                break
        return cls(tuple(names), 0.5 * (cov + cov.T))


def model_noise_sd(params: SystemParams) -> dict[str, float]:
    """The twin's own noise per channel (``kind.quantity``), channel units: what no parameter
    explains. The balance's net mass carries the reading's noise twice (the reading and
    the tare it is taken against, see :data:`CHANNEL_KINDS`) and its rounding to the
    readability ``d`` (variance ``d²/12`` each); the other channels are deterministic in the
    model (display rounding, not noise)."""
    balance = params.balance
    var = 2.0 * (balance.noise_sd_g**2 + balance.readability_g**2 / 12.0)
    return {"balance.mass_g": math.sqrt(var)}


def _sample_channels(sim: SystemSimulator, times: NDArray[np.float64]) -> dict[str, Any]:
    inputs = sim.inputs
    set_rate = sim.rate_range_ml_h()[1] if inputs.purge else inputs.rate_ml_h
    tare = sim.tare_g()
    out = sim.sample(times)
    return {
        "pump.infused_ml": out["pump_infused_ml"],
        "pump.rate_ml_h": np.where(out["running"], set_rate, 0.0),
        "pump.pressure_mmhg": out["sensed_pressure_mmhg"],
        "balance.mass_g": out["balance_settled_g"] - tare,
        "bench-io.pressure_mmhg": out["line_pressure_mmhg"],
    }


def _perturbed(
    params: SystemParams, uncertainty: TwinUncertainty
) -> list[tuple[SystemParams, float]]:
    """One parameter set per calibrated parameter, moved by the calibration's forward step
    (flipped where the forward one leaves the parameter's range)."""
    out: list[tuple[SystemParams, float]] = []
    for name in uncertainty.names:
        leaf: Any = functools.reduce(getattr, name.split("."), params)
        value = float(leaf)
        h = _FD_RELATIVE_STEP * max(1.0, abs(value))
        held: dict[str, float] = {}
        if name == "pump.syringe.inner_diameter_mm" and params.pump_kind == "syringe":
            # A configured diameter of 0 means "the syringe's": moving the bore would move
            # the pump's setting with it and cancel the effect (as in the calibration).
            configured = float(getattr(params.pump, "configured_inner_diameter_mm", 1.0))
            if not configured:
                held["pump.configured_inner_diameter_mm"] = value
        try:
            out.append((params.with_overrides({**held, name: value + h}), h))
        except ParameterError:
            out.append((params.with_overrides({**held, name: value - h}), -h))
    return out


def _delta_sd(
    base: Mapping[str, NDArray[np.float64]],
    moved: Sequence[Mapping[str, NDArray[np.float64]]],
    steps: Sequence[float],
    uncertainty: TwinUncertainty | None,
    noise: Mapping[str, float],
) -> dict[str, NDArray[np.float64]]:
    """``sqrt(diag(J Σ Jᵀ) + noise²)`` per channel, J (n, p) from forward differences."""
    out: dict[str, NDArray[np.float64]] = {}
    for key, v0 in base.items():
        var = np.full(np.shape(v0), noise.get(key, 0.0) ** 2)
        if uncertainty is not None and moved:
            J = np.stack([(m[key] - v0) / h for m, h in zip(moved, steps, strict=True)], axis=-1)
            var = var + np.einsum("...i,ij,...j->...", J, uncertainty.covariance, J)
        out[key] = np.sqrt(np.maximum(var, 0.0))
    return out


class Twin:
    """The model of the bench, advanced alongside the run.

    With ``uncertainty`` (a calibrated twin) it runs one more simulator per calibrated
    parameter, fed the same commands, for the sensitivities of :meth:`predict`.
    """

    def __init__(self, params: SystemParams, uncertainty: TwinUncertainty | None = None) -> None:
        self.params = params
        self.sim = SystemSimulator(params)
        self.schedule = Schedule()
        self.uncertainty = uncertainty
        self.noise_sd = model_noise_sd(params)
        # d of the one gravimetric policy (hil/analysis/gravimetry.py), as the analyses use it
        self._grams_per_ml = policy_from_balance_params(params.balance).density_g_ml
        moved = [] if uncertainty is None else _perturbed(params, uncertainty)
        self._moved = [(SystemSimulator(p), h) for p, h in moved]

    def command(self, t_s: float, kind: CommandKind, value: float = math.nan) -> None:
        """Record and apply a command the real device received at ``t_s``."""
        t_s = max(t_s, self.sim.t_s)
        command = Command(t_s, kind, value)
        self.schedule.add(command)
        self.sim.apply(command)
        for sim, _ in self._moved:
            sim.apply(command)

    def values(
        self, times_s: Sequence[float] | NDArray[np.float64]
    ) -> dict[str, NDArray[np.float64]]:
        """Every quantity of :data:`CHANNEL_KINDS`, keyed ``kind.quantity``, at each of
        ``times_s`` (ascending, not before the last command), as arrays of shape (n,).

        One vectorised pass of the model: the runner calls it for a block of samples at a
        time, always before applying the next command.
        """
        times = np.maximum(np.asarray(times_s, dtype=float), self.sim.t_s)
        # The perturbed simulators, if any, catch up at the next predict() or command.
        return _sample_channels(self.sim, times)

    def has_sd(self, key: str) -> bool:
        """Whether :meth:`predict` gives channel ``key`` a standard deviation that is not
        identically 0 (the model's noise, or any channel of a calibrated twin)."""
        return self.uncertainty is not None or self.noise_sd.get(key, 0.0) > 0.0

    def predict(
        self, times_s: Sequence[float] | NDArray[np.float64]
    ) -> tuple[dict[str, NDArray[np.float64]], dict[str, NDArray[np.float64]]]:
        """:meth:`values` and the standard deviation of each (same keys and shapes): the
        calibration's parameter uncertainty by the delta method plus the model's noise
        (:func:`model_noise_sd`); only the noise for a twin without a calibration."""
        times = np.maximum(np.asarray(times_s, dtype=float), self.sim.t_s)
        base = _sample_channels(self.sim, times)
        moved = [_sample_channels(sim, times) for sim, _ in self._moved]
        steps = [h for _, h in self._moved]
        return base, _delta_sd(base, moved, steps, self.uncertainty, self.noise_sd)

    def flow_from_mass(
        self,
        mass_g: NDArray[np.float64],
        previous_mass_g: NDArray[np.float64],
        dt_s: NDArray[np.float64],
    ) -> NDArray[np.float64]:
        """Flow (mL/h) between balance readings, with d of the run's gravimetric policy (the
        twin's water temperature and air buoyancy)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            flow = (mass_g - previous_mass_g) / self._grams_per_ml / dt_s * 3600.0
        return np.where(dt_s > 0, flow, np.nan)


def schedule_from_events(events: Sequence[Any]) -> Schedule:
    """The twin's input schedule of a stored run: its ``command`` events, in order.

    Each command event carries ``data = {"action": ..., "value": ...}`` (as the runner
    and the pytest plug-in record it), turned into the twin's input by the action's entry
    in :data:`medtwin.hil.actions.ACTIONS`, as when it was sent. Commands that failed on
    the device are ``fault`` events and are not part of what the device saw.
    """
    schedule = Schedule()
    for event in events:
        if event.kind != "command" or not isinstance(event.data, dict):
            continue
        entry = ACTIONS.get(str(event.data.get("action")))
        twin_input = None if entry is None else entry.twin_input(event.data.get("value"))
        if twin_input is not None:
            schedule.add(Command(float(event.t_s), *twin_input))
    return schedule


def twin_series(
    params: SystemParams | Sequence[SystemParams] | ParameterBatch,
    schedule: Schedule,
    times_s: NDArray[np.float64],
) -> dict[str, NDArray[np.float64]]:
    """The twin's channels (keyed ``kind.quantity``) at ``times_s`` for a whole stored run,
    for one or a batch of parameter sets (arrays of shape (B, n)); used by calibration and
    reports. Same model and same mapping as the live :class:`Twin`."""
    times = np.asarray(times_s, dtype=float)
    result = simulate(params, schedule, times)
    ch = result.channels
    rate = np.where(ch["running"], ch["rate_set_ml_h"][None, :], 0.0)
    return {
        "pump.infused_ml": ch["pump_infused_ml"],
        "pump.rate_ml_h": rate,
        "pump.pressure_mmhg": ch["sensed_pressure_mmhg"],
        "balance.mass_g": ch["balance_settled_g"] - ch["balance_tare_g"],
        "bench-io.pressure_mmhg": ch["line_pressure_mmhg"],
        "pump.alarms": ch["alarms"].astype(float),
    }


def twin_prediction_sd(
    params: SystemParams,
    uncertainty: TwinUncertainty | None,
    schedule: Schedule,
    times_s: NDArray[np.float64],
) -> dict[str, NDArray[np.float64]]:
    """The standard deviation of the twin's channels of a whole stored run (the batch
    counterpart of :meth:`Twin.predict`, for reports): keys and shapes of
    :func:`twin_series` for one parameter set, without ``pump.alarms``."""
    keys = (
        "pump.infused_ml",
        "pump.rate_ml_h",
        "pump.pressure_mmhg",
        "balance.mass_g",
        "bench-io.pressure_mmhg",
    )

    def one(p: SystemParams) -> dict[str, NDArray[np.float64]]:
        series = twin_series(p, schedule, times_s)
        return {key: series[key][0] for key in keys}

    moved = [] if uncertainty is None else _perturbed(params, uncertainty)
    return _delta_sd(
        one(params),
        [one(p) for p, _ in moved],
        [h for _, h in moved],
        uncertainty,
        model_noise_sd(params),
    )


def calibration_key(model: str, serial: str, *, bench: str, device: str) -> str:
    """The key a device's calibrations are filed under in the run store.

    ``model/serial`` when the device reported a serial number; otherwise
    ``model/<bench>:<device>``, the place of a serial-less device on a named bench (the
    store needs both halves, and two pumps of one model must not share a calibration).

    Parameters
    ----------
    model, serial : str
        As the device reported them (``DeviceIdentity``); ``serial`` may be empty.
    bench, device : str
        The bench's name and the device's name on it.
    """
    model = model.strip()
    serial = serial.strip()
    if not model:
        raise ConfigurationError(
            f"device {device!r} on bench {bench!r} reported no model, so its calibration "
            "cannot be filed"
        )
    return f"{model}/{serial}" if serial else f"{model}/{bench}:{device}"


def build_twin(
    bench: BenchConfig, identities: Mapping[str, DeviceIdentity], store: RunStore
) -> tuple[Twin, dict[str, Any] | None]:
    """The twin of ``bench``: its ``[twin]`` parameters plus, when it asks for
    ``calibration = "latest"``, the newest calibration stored for the device's identity.

    Returns the twin and, when a calibration was used, ``{"device_key", "version", "id"}``
    (recorded with the run so its report shows which version was in force).

    Raises
    ------
    ConfigurationError
        The bench asks for the latest calibration and none is stored for the device.
    """
    twin_cfg = bench.twin
    if twin_cfg.calibration != "latest":
        return Twin(twin_params(bench)), None
    device = twin_cfg.device or (bench.device_of_kind("pump") or bench.devices[0]).name
    identity = identities.get(device)
    key = (
        calibration_key(identity.model, identity.serial, bench=bench.name, device=device)
        if identity
        else device
    )
    record = store.latest_calibration(key)
    if record is None:
        raise ConfigurationError(
            f"the twin asks for the latest calibration of {key!r}, and there is none in "
            f"{store.url}; run `medtwin calibrate RUN` first or set "
            'twin.calibration = "none"',
            source=bench.source,
            field="twin.calibration",
        )
    calibration = {name: float(p["value"]) for name, p in record.params.items()}
    used = {"device_key": key, "version": record.version, "id": record.id}
    uncertainty = TwinUncertainty.from_calibration(record.params, record.correlation)
    return Twin(twin_params(bench, calibration), uncertainty), used
