"""Parameters of the coupled pump + line + balance model, one set or a batch.

:class:`SystemParams` gathers the pump (with its syringe), the line and the balance;
:class:`ParameterBatch` is one base set plus per-row overrides (Monte Carlo, calibration
Jacobians). :func:`rows_from` turns either into the per-row constant arrays (:class:`Rows`,
SI-style units the kernel uses) that the closed-form phase solution reads.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from medtwin.device_models.balance import BalanceParams
from medtwin.device_models.base import ParameterError, list_parameters, validate, with_overrides
from medtwin.device_models.line import MMHG_PER_CM_WATER, LineParams
from medtwin.device_models.syringe_pump import SyringePumpParams
from medtwin.device_models.syringes import SyringeLibrary, default_library
from medtwin.device_models.volumetric_pump import VolumetricPumpParams
from numpy.typing import NDArray

__all__ = [
    "FloatArray",
    "ParameterBatch",
    "ParamsLike",
    "Rows",
    "SystemParams",
    "batch_getter",
    "rows_from",
]


FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class SystemParams:
    """Everything on the bench: the pump (with its syringe), the line and the balance."""

    pump: SyringePumpParams | VolumetricPumpParams = field(default_factory=SyringePumpParams)
    line: LineParams = field(default_factory=LineParams)
    balance: BalanceParams = field(default_factory=BalanceParams)

    @property
    def pump_kind(self) -> Literal["syringe", "volumetric"]:
        return "syringe" if isinstance(self.pump, SyringePumpParams) else "volumetric"

    @classmethod
    def nominal(
        cls, pump: Literal["syringe", "volumetric"] = "syringe", *, syringe: str | None = None
    ) -> SystemParams:
        """Nominal parameters; ``syringe`` picks a syringe from the library by name."""
        if pump == "volumetric":
            return cls(pump=VolumetricPumpParams())
        spec = default_library().get(syringe or "BD Plastipak 50 mL")
        return cls(pump=SyringePumpParams(syringe=spec))

    def with_overrides(
        self, overrides: Mapping[str, Any], *, library: SyringeLibrary | None = None
    ) -> SystemParams:
        """A copy with dotted-name overrides; ``pump.syringe`` accepts a syringe name
        (looked up in ``library``, default: the shipped library)."""
        lookup = (library or default_library()).get
        return with_overrides(self, overrides, resolvers={"pump.syringe": lookup})

    def parameters(self) -> list[Any]:
        return list_parameters(self)

    def rate_range_ml_h(self, diameter_mm: float | None = None) -> tuple[float, float]:
        if isinstance(self.pump, SyringePumpParams):
            return self.pump.rate_range_ml_h(diameter_mm)
        return self.pump.rate_range_ml_h()


@dataclass(frozen=True)
class ParameterBatch:
    """A batch of parameter sets as a base plus per-row columns (fast Monte Carlo path).

    ``columns`` maps dotted parameter names to arrays of shape ``(B,)``; every other
    parameter takes the base value.
    """

    base: SystemParams
    columns: Mapping[str, NDArray[Any]]

    def __post_init__(self) -> None:
        known = {p.name for p in list_parameters(self.base)}
        sizes = set()
        for name, column in self.columns.items():
            if name not in known:
                raise ParameterError(f"unknown parameter {name!r} in batch columns")
            sizes.add(np.asarray(column).shape)
        if len(sizes) > 1:
            raise ParameterError(f"batch columns have different shapes: {sorted(sizes)}")
        if sizes and len(next(iter(sizes))) != 1:
            raise ParameterError("batch columns must be one-dimensional")

    def __len__(self) -> int:
        for column in self.columns.values():
            return int(np.asarray(column).shape[0])
        return 1

    def row(self, index: int) -> SystemParams:
        """Row ``index`` as an ordinary :class:`SystemParams`."""
        return self.base.with_overrides(
            {name: np.asarray(col)[index].item() for name, col in self.columns.items()}
        )


ParamsLike = SystemParams | Sequence[SystemParams] | ParameterBatch


def batch_getter(params: ParamsLike) -> tuple[Any, int, SystemParams]:
    """A function name → array (B,) over the batch, the batch size and a representative."""
    if isinstance(params, SystemParams):
        params = [params]
    if isinstance(params, ParameterBatch):
        batch = params
        size = len(batch)

        def get_batch(name: str) -> NDArray[Any]:
            if name in batch.columns:
                return np.asarray(batch.columns[name])
            return np.full(size, functools.reduce(getattr, name.split("."), batch.base))

        return get_batch, size, batch.base
    rows = list(params)
    if not rows:
        raise ParameterError("no parameter sets given")
    kinds = {p.pump_kind for p in rows}
    if len(kinds) > 1:
        raise ParameterError("a batch must not mix syringe and volumetric pumps")
    for p in rows:
        validate(p)

    def get_rows(name: str) -> NDArray[Any]:
        parts = name.split(".")
        return np.array([functools.reduce(getattr, parts, p) for p in rows])

    return get_rows, len(rows), rows[0]


@dataclass
class Rows:
    """Per-row constants of the batch (arrays of shape (B,)), derived from the parameters."""

    kind: str
    quantised: bool
    C: FloatArray  # total compliance, mL/mmHg
    lam_open: FloatArray  # 1/(R·C), 1/s
    head_mmhg: FloatArray  # hydrostatic head subtracted from the back-pressure
    back_pressure_mmhg: FloatArray  # line default
    kb_rho: FloatArray  # displayed g per mL
    tau_b: FloatArray
    evap_g_s: FloatArray
    vessel_g: FloatArray
    travel_mm: FloatArray  # syringe: plunger travel per step (mm); volumetric: 0
    area_true_mm2: FloatArray  # syringe only
    dv_true_vol: FloatArray  # volumetric: true volume per step before efficiency/ripple
    eff_drop: FloatArray  # volumetric: fraction per mmHg
    efficiency: FloatArray
    ripple: FloatArray
    dip_period: NDArray[np.int64]  # steps per finger (0: no dips)
    default_diameter_mm: FloatArray  # syringe: configured diameter; volumetric: 0
    dv_cfg_volumetric: FloatArray
    backlash_mm: FloatArray  # syringe (mm); volumetric dead volume handled via dead_ml
    dead_ml: FloatArray
    max_step_hz: FloatArray
    wear_per_s: FloatArray
    wear_onset_s: FloatArray
    threshold_mmhg: FloatArray
    latency_s: FloatArray
    backoff_ml: FloatArray
    fill_ml: FloatArray  # inf: unlimited
    near_empty_ml: FloatArray
    max_force_n: FloatArray
    friction_n: FloatArray  # syringe: stopper sliding friction (N); volumetric: 0
    breakaway_n: FloatArray  # syringe: stopper breakaway friction (N); volumetric: 0
    stiffness_n_per_mm: FloatArray  # syringe: assembly stiffness; volumetric: inf
    kappa: FloatArray  # syringe: rim creep rate stiffness/creep resistance (1/s); volumetric: 0
    friction_comp_n: FloatArray
    sensor_offset_mmhg: FloatArray
    readability_g: FloatArray
    stability_band_g: FloatArray
    capacity_g: FloatArray
    noise_sd_g: FloatArray

    @property
    def size(self) -> int:
        return int(self.C.shape[0])

    def take(self, idx: NDArray[np.intp]) -> Rows:
        values: dict[str, Any] = {}
        for name, value in self.__dict__.items():
            values[name] = value[idx] if isinstance(value, np.ndarray) else value
        return Rows(**values)


def rows_from(params: ParamsLike) -> tuple[Rows, SystemParams]:
    get, size, rep = batch_getter(params)
    f = lambda name: np.asarray(get(name), dtype=float)  # noqa: E731 - local shorthand
    line_c = f("line.tubing_compliance_ul_per_mmhg") * 1e-3
    resistance_s = f("line.resistance_mmhg_per_ml_h") * 3600.0
    gpm = np.array([0.0])
    # Water density and buoyancy per row (scalar formula, cheap relative to the run).
    temperature = f("balance.temperature_c")
    air = get("balance.air_buoyancy").astype(bool)
    kb_rho = np.empty(size)
    unique_t = np.unique(np.stack([temperature, air.astype(float)], axis=1), axis=0)
    for t_c, a in unique_t:
        b = BalanceParams(temperature_c=float(t_c), air_buoyancy=bool(a))
        gpm = np.array([b.grams_per_ml])
        kb_rho[(temperature == t_c) & (air == bool(a))] = gpm[0]
    zeros = np.zeros(size)
    quantised = bool(np.all(get("pump.quantised_steps")))
    if bool(np.any(get("pump.quantised_steps"))) != quantised:
        raise ParameterError("pump.quantised_steps must be the same for the whole batch")
    # Line, balance and the pump parameters both kinds share.
    common: dict[str, Any] = {
        "kind": rep.pump_kind,
        "quantised": quantised,
        "head_mmhg": MMHG_PER_CM_WATER * f("line.head_height_cm"),
        "back_pressure_mmhg": f("line.back_pressure_mmhg"),
        "kb_rho": kb_rho,
        "tau_b": f("balance.settling_time_constant_s"),
        "evap_g_s": f("balance.evaporation_g_per_h") / 3600.0,
        "vessel_g": f("balance.vessel_mass_g"),
        "threshold_mmhg": f("pump.occlusion_threshold_mmhg"),
        "latency_s": f("pump.occlusion_latency_s"),
        "backoff_ml": f("pump.backoff_ml"),
        "near_empty_ml": f("pump.near_empty_ml"),
        "readability_g": f("balance.readability_g"),
        "stability_band_g": f("balance.stability_band_g"),
        "capacity_g": f("balance.capacity_g"),
        "noise_sd_g": f("balance.noise_sd_g"),
    }
    if rep.pump_kind == "syringe":
        drive = "pump.drive."
        travel = f(drive + "lead_mm") / (f(drive + "steps_per_rev") * f(drive + "microsteps"))
        diameter = f("pump.syringe.inner_diameter_mm")
        configured = f("pump.configured_inner_diameter_mm")
        fill = f("pump.fill_ml")
        specific: dict[str, Any] = {
            "C": f("pump.syringe.barrel_compliance_ul_per_mmhg") * 1e-3 + line_c,
            "travel_mm": travel,
            "area_true_mm2": np.pi * diameter**2 / 4.0,
            "dv_true_vol": zeros,
            "eff_drop": zeros,
            "efficiency": np.ones(size),
            "ripple": zeros,
            "dip_period": np.zeros(size, dtype=np.int64),
            "default_diameter_mm": np.where(configured > 0, configured, diameter),
            "dv_cfg_volumetric": zeros,
            "backlash_mm": f(drive + "backlash_mm"),
            "dead_ml": zeros,
            "max_step_hz": f(drive + "max_step_rate_hz"),
            "wear_per_s": f(drive + "wear_percent_per_h") / 100.0 / 3600.0,
            "wear_onset_s": f(drive + "wear_onset_s"),
            "fill_ml": np.where(fill > 0, fill, f("pump.syringe.nominal_volume_ml")),
            "max_force_n": f(drive + "max_force_n"),
            "friction_n": f("pump.syringe.stopper_friction_n"),
            "breakaway_n": f("pump.syringe.breakaway_force_n"),
            "stiffness_n_per_mm": f("pump.syringe.assembly_stiffness_n_per_mm"),
            "kappa": f("pump.syringe.assembly_stiffness_n_per_mm")
            / f("pump.syringe.creep_resistance_n_s_per_mm"),
            "friction_comp_n": f(drive + "friction_compensation_n"),
            "sensor_offset_mmhg": zeros,
        }
    else:
        fingers = get("pump.fingers").astype(np.int64)
        steps_int = get("pump.rotor_steps_per_rev").astype(np.int64)
        if np.any(steps_int % fingers):
            raise ParameterError(
                "pump.rotor_steps_per_rev must be a multiple of pump.fingers "
                "(each finger hand-over falls on a rotor step)"
            )
        dv_cfg = f("pump.volume_per_rev_ml") / f("pump.rotor_steps_per_rev")
        container = f("pump.container_ml")
        specific = {
            "C": f("pump.set_compliance_ul_per_mmhg") * 1e-3 + line_c,
            "travel_mm": zeros,
            "area_true_mm2": zeros,
            "dv_true_vol": dv_cfg,
            "eff_drop": f("pump.efficiency_drop_percent_per_100_mmhg") / 100.0 / 100.0,
            "efficiency": f("pump.efficiency"),
            "ripple": f("pump.ripple_fraction"),
            "dip_period": steps_int // fingers,
            "default_diameter_mm": zeros,
            "dv_cfg_volumetric": dv_cfg,
            "backlash_mm": zeros,
            "dead_ml": f("pump.startup_dead_volume_ml"),
            "max_step_hz": f("pump.max_step_rate_hz"),
            "wear_per_s": f("pump.wear_percent_per_h") / 100.0 / 3600.0,
            "wear_onset_s": f("pump.wear_onset_s"),
            "fill_ml": np.where(container > 0, container, np.inf),
            "max_force_n": np.full(size, np.inf),
            "friction_n": zeros,
            "breakaway_n": zeros,
            "stiffness_n_per_mm": np.full(size, np.inf),
            "kappa": zeros,
            "friction_comp_n": zeros,
            "sensor_offset_mmhg": f("pump.sensor_offset_mmhg"),
        }
    if np.any(specific["friction_n"] > specific["breakaway_n"]):
        raise ParameterError(
            "pump.syringe.stopper_friction_n must not exceed pump.syringe.breakaway_force_n "
            "(static friction is at least the sliding friction)"
        )
    if rep.pump_kind == "syringe":
        # A syringe pump without a force sensor (the NE-1000) has no pressure alarm: the
        # occlusion shows only as the motor stall at the drive's force limit.
        sensor = get("pump.pressure_sensor").astype(bool)
        common["threshold_mmhg"] = np.where(sensor, common["threshold_mmhg"], np.inf)
    rows = Rows(**common, **specific, lam_open=1.0 / (resistance_s * specific["C"]))
    # Keep λτ_b away from 1 (removable singularity of the cascade formula, see module doc).
    near = np.abs(1.0 - rows.lam_open * rows.tau_b) < 1e-3
    rows.tau_b = np.where(near, rows.tau_b * 1.002, rows.tau_b)
    # Likewise keep the rim's creep rate away from the line's and the balance's rates (the
    # filtered-source formula divides by their difference).
    for other in (rows.lam_open, 1.0 / rows.tau_b):
        close = (rows.kappa > 0) & (np.abs(rows.kappa - other) < 1e-3 * other)
        rows.kappa = np.where(close, rows.kappa * 1.002, rows.kappa)
    return rows, rep
