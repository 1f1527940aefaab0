"""The twin: device_models fed exactly the inputs the real devices saw.

The runner hands every command it sends to a real device to :meth:`Twin.command` as well
(at the time the device acknowledged it), including values only the device knows, such
as the tare the real balance took. The twin then answers, for any sample timestamp, the
same channels the real devices report, from the same model the emulators run on.

Channels are named ``<device>.<quantity>`` after the bench's device names
(``pump.infused_ml``, ``balance.mass_g``). :data:`CHANNEL_KINDS` lists, per device kind,
the quantities, their units and the comparator defaults.
"""

from __future__ import annotations

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
from medtwin.hil.config import BenchConfig, EmulationConfig, TwinConfig
from medtwin.hil.store import RunStore
from numpy.typing import NDArray

__all__ = [
    "CHANNEL_KINDS",
    "ChannelDef",
    "Twin",
    "build_twin",
    "calibration_key",
    "emulation_truth",
    "schedule_from_events",
    "twin_params",
    "twin_series",
]


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


class Twin:
    """The model of the bench, advanced alongside the run."""

    def __init__(self, params: SystemParams) -> None:
        self.params = params
        self.sim = SystemSimulator(params)
        self.schedule = Schedule()
        self._grams_per_ml = params.balance.grams_per_ml

    def command(self, t_s: float, kind: CommandKind, value: float = math.nan) -> None:
        """Record and apply a command the real device received at ``t_s``."""
        t_s = max(t_s, self.sim.t_s)
        command = Command(t_s, kind, value)
        self.schedule.add(command)
        self.sim.apply(command)

    def values(
        self, times_s: Sequence[float] | NDArray[np.float64]
    ) -> dict[str, NDArray[np.float64]]:
        """Every quantity of :data:`CHANNEL_KINDS`, keyed ``kind.quantity``, at each of
        ``times_s`` (ascending, not before the last command), as arrays of shape (n,).

        One vectorised pass of the model: the runner calls it for a block of samples at a
        time, always before applying the next command.
        """
        sim = self.sim
        times = np.maximum(np.asarray(times_s, dtype=float), sim.t_s)
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

    def flow_from_mass(
        self,
        mass_g: NDArray[np.float64],
        previous_mass_g: NDArray[np.float64],
        dt_s: NDArray[np.float64],
    ) -> NDArray[np.float64]:
        """Flow (mL/h) between balance readings, with the twin's density and buoyancy."""
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
    return Twin(twin_params(bench, calibration)), used
