"""Pump + infusion line + balance as one linear system, solved exactly per constant-input phase.

The coupled model (see :mod:`medtwin.device_models.syringe_pump`,
:mod:`medtwin.device_models.volumetric_pump`, :mod:`medtwin.device_models.line`,
:mod:`medtwin.device_models.balance`):

* the pump's plunger (or fingers) inject volume impulses ``J_k`` at the motor's step
  times ``t_k`` (or a continuous flow when ``quantised_steps`` is off);
* the line: ``C·dP/dt = q(t) − λ·C·(P − P_eq)`` with ``λ = 1/(R·C)`` open, ``λ = 0`` occluded;
  the outlet volume ``V_out = V_plunger − C·(P − P_0)``;
* the balance: gross load ``m = m_vessel + k_b·ρ·V_out − e·t`` and the weighing cell
  ``dM/dt = (m − M)/τ_b``.

Inside a *phase* (no command, no event) every input is constant, so the state at any time
``u`` follows from the state at the phase start ``t_a`` in closed form. With
``S_λ(u) = Σ_{t_k ≤ u} J_k e^{−λ(u − t_k)}`` (one geometric series per uniform impulse
train, with amplitudes linear in time for wear) and ``Δ = u − t_a``::

    P(u)     = P_eq + (P_a − P_eq)·e^{−λΔ} + S_λ/C
    V_out(u) = V_out,a + C(P_a − P_eq)(1 − e^{−λΔ}) + S_0 − S_λ
    M(u)     = M_a e^{−Δ/τ_b} + m_a(1 − e^{−Δ/τ_b})
               + k_bρ[C(P_a − P_eq)h(Δ) + S_0 − (S_λ − λτ_b S_b)/(1 − λτ_b)]
               − e(Δ − τ_b(1 − e^{−Δ/τ_b})),     h(x) = 1 − (e^{−λx} − λτ_b e^{−x/τ_b})/(1 − λτ_b)

(``S_b`` is ``S`` at the balance's rate ``1/τ_b``). These are evaluated on a whole grid of
output times at once, for a whole batch of parameter sets at once (arrays of shape
``(B, n)``). No recurrence, no ODE solver.

Events inside a phase are found exactly and split the phase: the occlusion alarm (sensed
pressure crosses the threshold; the alarm fires after the detection latency, the motor
stops, optional back-off), motor stall (force limit), the volume target reached, the
syringe (container) empty, and the onset of wear. Pressure and volume crossings are located
on the evaluation grid and refined by bisection over step indices (or time, for continuous
motion), each step evaluated with the same closed form.

Numerics: the geometric sums use ``φ0(y) = (1 − e^{−y})/y`` and ``φ1(y) = (1 − e^{−y}(1+y))/y²``
with series near 0, so λ = 0 (occluded) and tiny λ·h lose no precision. If the line's time
constant comes within 0.1 % of the balance's (``λτ_b ≈ 1``, a removable singularity),
``τ_b`` is moved 0.2 % away from it; the effect on the displayed mass is far below any
balance's readability.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from medtwin.device_models.balance import BalanceParams, display
from medtwin.device_models.base import ParameterError, list_parameters, validate, with_overrides
from medtwin.device_models.line import MMHG_PER_CM_WATER, LineParams
from medtwin.device_models.schedule import Alarm, Command, CommandKind, Schedule
from medtwin.device_models.syringe_pump import PA_PER_MMHG, SyringePumpParams
from medtwin.device_models.syringes import SyringeLibrary, default_library
from medtwin.device_models.volumetric_pump import VolumetricPumpParams
from numpy.typing import NDArray

__all__ = [
    "CHANNELS",
    "ParameterBatch",
    "SimulationResult",
    "SystemParams",
    "SystemSimulator",
    "SystemState",
    "simulate",
]

FloatArray = NDArray[np.float64]
_EPS_STEPS = 1e-9  # a step due within 1e-9 of a step period of u counts as done at u

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


# --------------------------------------------------------------------------- parameters


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


def _getter(params: ParamsLike) -> tuple[Any, int, SystemParams]:
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
class _Rows:
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
    friction_n: FloatArray
    friction_comp_n: FloatArray
    sensor_offset_mmhg: FloatArray
    readability_g: FloatArray
    stability_band_g: FloatArray
    capacity_g: FloatArray
    noise_sd_g: FloatArray

    @property
    def size(self) -> int:
        return int(self.C.shape[0])

    def take(self, idx: NDArray[np.intp]) -> _Rows:
        values: dict[str, Any] = {}
        for name, value in self.__dict__.items():
            values[name] = value[idx] if isinstance(value, np.ndarray) else value
        return _Rows(**values)


def _rows_from(params: ParamsLike) -> tuple[_Rows, SystemParams]:
    get, size, rep = _getter(params)
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
            "friction_n": f(drive + "friction_n"),
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
            "friction_comp_n": zeros,
            "sensor_offset_mmhg": f("pump.sensor_offset_mmhg"),
        }
    rows = _Rows(**common, **specific, lam_open=1.0 / (resistance_s * specific["C"]))
    # Keep λτ_b away from 1 (removable singularity of the cascade formula, see module doc).
    near = np.abs(1.0 - rows.lam_open * rows.tau_b) < 1e-3
    rows.tau_b = np.where(near, rows.tau_b * 1.002, rows.tau_b)
    return rows, rep


# --------------------------------------------------------------------------- state


@dataclass
class SystemState:
    """State of every row at one time (arrays of shape (B,)).

    Continuous quantities (volumes, pressure, mass) plus the drive's discrete state: the
    fractional step accumulator, the backlash slack (in steps), the rotor position within
    a finger, the pump's counters and its alarm bits.
    """

    acc: FloatArray
    slack_steps: FloatArray
    rotor: NDArray[np.int64]
    plunger_ml: FloatArray
    pressure_mmhg: FloatArray
    delivered_ml: FloatArray
    settled_g: FloatArray
    infused_ml: FloatArray
    withdrawn_ml: FloatArray
    run_counted_ml: FloatArray
    running: NDArray[np.bool_]
    alarms: NDArray[np.int64]
    pending_alarm_s: FloatArray
    engaged_once: NDArray[np.bool_]

    def take(self, idx: NDArray[np.intp]) -> SystemState:
        return SystemState(**{k: v[idx].copy() for k, v in self.__dict__.items()})

    def put(self, idx: NDArray[np.intp], other: SystemState) -> None:
        for name, value in self.__dict__.items():
            value[idx] = getattr(other, name)

    def copy(self) -> SystemState:
        return SystemState(**{k: v.copy() for k, v in self.__dict__.items()})


def _initial_state(rows: _Rows, backlash_steps: FloatArray, p0: FloatArray) -> SystemState:
    size = rows.size
    zeros = np.zeros(size)
    return SystemState(
        acc=zeros.copy(),
        slack_steps=backlash_steps.copy(),
        rotor=np.zeros(size, dtype=np.int64),
        plunger_ml=zeros.copy(),
        pressure_mmhg=p0.copy(),
        delivered_ml=zeros.copy(),
        settled_g=rows.vessel_g.copy(),
        infused_ml=zeros.copy(),
        withdrawn_ml=zeros.copy(),
        run_counted_ml=zeros.copy(),
        running=np.zeros(size, dtype=bool),
        alarms=np.zeros(size, dtype=np.int64),
        pending_alarm_s=np.full(size, np.inf),
        engaged_once=np.zeros(size, dtype=bool),
    )


@dataclass
class _Inputs:
    """The piecewise-constant inputs (shared by all rows)."""

    rate_ml_h: float = 0.0
    direction: float = 1.0
    purge: bool = False
    occluded: bool = False
    back_pressure_mmhg: float | None = None
    diameter_mm: float | None = None
    target_ml: float = 0.0

    def copy(self) -> _Inputs:
        return _Inputs(**self.__dict__)


# --------------------------------------------------------------------------- numerics


def _phi0(y: FloatArray) -> FloatArray:
    """(1 − e^{−y})/y, 1 at y = 0 (series below |y| < 1e-5)."""
    y = np.asarray(y, dtype=float)
    small = np.abs(y) < 1e-5
    if not small.any():
        return -np.expm1(-y) / y
    safe = np.where(small, 1.0, y)
    series = 1.0 - y / 2.0 + y * y / 6.0
    return np.where(small, series, -np.expm1(-safe) / safe)


def _phi1(y: FloatArray) -> FloatArray:
    """(1 − e^{−y}(1 + y))/y², 1/2 at y = 0 (series below |y| < 1e-3)."""
    y = np.asarray(y, dtype=float)
    small = np.abs(y) < 1e-3
    if not small.any():
        return (-np.expm1(-y) - y * np.exp(-y)) / (y * y)
    safe = np.where(small, 1.0, y)
    series = 0.5 - y / 3.0 + y * y / 8.0 - y**3 / 30.0 + y**4 / 144.0
    exact = (-np.expm1(-safe) - safe * np.exp(-safe)) / (safe * safe)
    return np.where(small, series, exact)


def _train_sum(
    n_members: FloatArray,
    t_last: FloatArray,
    spacing_s: FloatArray,
    alpha: FloatArray,
    beta: FloatArray,
    lam: FloatArray | None,
    u: FloatArray,
) -> FloatArray:
    """Σ_{i<N} (α + β t_i) e^{−λ(u − t_i)} over a uniform impulse train ending at t_last.

    ``t_i = t_last − i·spacing``; ``lam=None`` means λ = 0 (the plain sum). All
    arguments broadcast together.
    """
    n = np.maximum(n_members, 0.0)
    if lam is None:
        return (alpha + beta * t_last) * n - beta * spacing_s * (n * (n - 1.0) * 0.5)
    x = lam * spacing_s
    phi_x = _phi0(x)
    nx = n * x
    phi_nx = _phi0(nx)
    g0 = n * phi_nx / phi_x
    g1 = n * (n * _phi1(nx) * phi_x - phi_nx * _phi1(x)) / (phi_x * phi_x)
    weight = np.exp(-lam * np.maximum(u - t_last, 0.0))
    return weight * ((alpha + beta * t_last) * g0 - beta * spacing_s * g1)


def _flow_integral(
    u0: FloatArray,
    u1: FloatArray,
    alpha: FloatArray,
    beta: FloatArray,
    lam: FloatArray | None,
    u: FloatArray,
) -> FloatArray:
    """∫_{u0}^{u1} (α + β s) e^{−λ(u − s)} ds for u1 ≤ u (zero when u1 ≤ u0); λ = 0 if None."""
    d = np.maximum(u1 - u0, 0.0)
    if lam is None:
        return (alpha + beta * u1) * d - beta * d * d * 0.5
    y = lam * d
    weight = np.exp(-lam * np.maximum(u - u1, 0.0))
    return weight * ((alpha + beta * u1) * d * _phi0(y) - beta * d * d * _phi1(y))


# --------------------------------------------------------------------------- phase kernel


@dataclass
class _Phase:
    """Constants of one (sub)phase for a set of rows, all arrays broadcast as (B, 1)."""

    t_a: FloatArray  # (B,1) phase start
    t_stop: FloatArray  # motor stops (or never started) at this time
    f: FloatArray  # steps/s (0 when not running)
    d: FloatArray  # direction ±1
    alpha: FloatArray  # true volume per step, α + β t (mL)
    beta: FloatArray
    dv_cfg: FloatArray  # pump-counted volume per step (mL)
    sigma: FloatArray  # steps before the plunger engages
    k_full: FloatArray
    k_partial: FloatArray  # index of the partial step (inf: none)
    e_partial: FloatArray
    dip_period: FloatArray  # steps (inf: no dips)
    dip_first: FloatArray
    dip_gain: FloatArray  # dip amplitude / step amplitude (negative)
    mean_gain: FloatArray  # continuous-mode gain (1 + dip_gain/period)
    lam: FloatArray
    p_eq: FloatArray
    quantised: bool


@dataclass
class _Eval:
    """Closed-form state of each row at evaluation times u (arrays (B, m))."""

    u: FloatArray
    n_steps: FloatArray
    acc: FloatArray
    plunger_ml: FloatArray
    pressure_mmhg: FloatArray
    delivered_ml: FloatArray
    settled_g: FloatArray
    load_g: FloatArray
    counted_ml: FloatArray
    peak_pressure_mmhg: FloatArray


def _col(a: NDArray[Any]) -> NDArray[Any]:
    return np.asarray(a)[:, None]


def _evaluate(rows: _Rows, st: SystemState, ph: _Phase, u: FloatArray) -> _Eval:
    """State at times ``u`` (shape (B, m), each ≥ the row's t_a) in closed form."""
    u = np.maximum(u, ph.t_a)
    u_run = np.minimum(u, ph.t_stop)
    tau_run = np.maximum(u_run - ph.t_a, 0.0)
    lam_b = _col(1.0 / rows.tau_b)
    lam = ph.lam
    f = ph.f
    safe_f = np.where(f > 0, f, 1.0)
    h = 1.0 / safe_f

    if ph.quantised:
        x = _col(st.acc) + f * tau_run
        n = np.floor(x + _EPS_STEPS)
        acc = x - n
        # main train: steps k_full..n
        n_main = np.maximum(n - ph.k_full + 1.0, 0.0)
        t_last = ph.t_a + (n - _col(st.acc)) * h
        sums = []
        has_p = ph.k_partial <= n
        any_partial = bool(np.any(has_p))
        t_p = ph.t_a + (np.where(np.isfinite(ph.k_partial), ph.k_partial, 0.0) - _col(st.acc)) * h
        j_p = ph.e_partial * (ph.alpha + ph.beta * t_p)
        lam_line = None if not np.any(lam) else lam
        for lam_i in (None, lam_line, lam_b):
            s = _train_sum(n_main, t_last, h, ph.alpha, ph.beta, lam_i, u)
            # the partial step where the slack runs out
            if any_partial:
                decay = 1.0 if lam_i is None else np.exp(-lam_i * np.maximum(u - t_p, 0.0))
                s = s + np.where(has_p, j_p * decay, 0.0)
            # finger hand-over draw-backs (volumetric)
            if np.any(np.isfinite(ph.dip_period)):
                period = np.where(np.isfinite(ph.dip_period), ph.dip_period, 1.0)
                n_dip = np.where(
                    np.isfinite(ph.dip_period) & (n >= ph.dip_first),
                    np.floor((n - ph.dip_first) / period + _EPS_STEPS) + 1.0,
                    0.0,
                )
                k_dip_last = ph.dip_first + (n_dip - 1.0) * period
                t_dip_last = ph.t_a + (k_dip_last - _col(st.acc)) * h
                s = s + ph.dip_gain * _train_sum(
                    n_dip, t_dip_last, h * period, ph.alpha, ph.beta, lam_i, u
                )
            sums.append(ph.d * np.where(f > 0, s, 0.0))
        s0, s_line, s_bal = sums
        steps_done = n
        last_step_t = np.where(n >= 1, t_last, -np.inf)
    else:
        steps_cont = f * tau_run
        u_engage = ph.t_a + ph.sigma * h
        start = np.minimum(np.maximum(u_engage, ph.t_a), u_run)
        sums = []
        lam_line = None if not np.any(lam) else lam
        for lam_i in (None, lam_line, lam_b):
            s = _flow_integral(start, u_run, ph.alpha, ph.beta, lam_i, u)
            sums.append(ph.d * np.where(f > 0, f * ph.mean_gain * s, 0.0))
        s0, s_line, s_bal = sums
        steps_done = steps_cont
        acc = np.broadcast_to(_col(st.acc), steps_done.shape)
        last_step_t = np.full_like(steps_done, -np.inf)

    delta = u - ph.t_a
    C = _col(rows.C)
    p_a = _col(st.pressure_mmhg)
    a = np.exp(-lam * delta)
    pressure = ph.p_eq + (p_a - ph.p_eq) * a + s_line / C
    stored = C * (p_a - ph.p_eq)
    delivered = _col(st.delivered_ml) + stored * (1.0 - a) + s0 - s_line
    plunger = _col(st.plunger_ml) + s0
    kb = _col(rows.kb_rho)
    evap = _col(rows.evap_g_s)
    tau_b = _col(rows.tau_b)
    vessel = _col(rows.vessel_g)
    load_a = vessel + kb * _col(st.delivered_ml) - evap * ph.t_a
    eb = np.exp(-delta / tau_b)
    denom = 1.0 - lam * tau_b
    h_delta = 1.0 - (a - lam * tau_b * eb) / denom
    settled = (
        _col(st.settled_g) * eb
        + load_a * (1.0 - eb)
        + kb * (stored * h_delta + s0 - (s_line - lam * tau_b * s_bal) / denom)
        - evap * (delta - tau_b * (1.0 - eb))
    )
    load = vessel + kb * delivered - evap * u
    counted = ph.dv_cfg * steps_done
    # Pressure right after the last step (the peak between evaluation points, open line).
    if ph.quantised and np.any(lam):
        since_last = np.where(np.isfinite(last_step_t), np.maximum(u - last_step_t, 0.0), 0.0)
        peak = ph.p_eq + (pressure - ph.p_eq) * np.exp(np.minimum(lam * since_last, 50.0))
    else:
        peak = pressure
    return _Eval(
        u=u,
        n_steps=steps_done,
        acc=acc,
        plunger_ml=plunger,
        pressure_mmhg=pressure,
        delivered_ml=delivered,
        settled_g=settled,
        load_g=load,
        counted_ml=counted,
        peak_pressure_mmhg=np.maximum(peak, pressure),
    )


class _Model:
    """Batch simulation machinery shared by :func:`simulate` and :class:`SystemSimulator`."""

    def __init__(self, params: ParamsLike) -> None:
        self.rows, self.rep = _rows_from(params)
        r = self.rows
        if r.kind == "syringe":
            self.backlash_steps = r.backlash_mm / r.travel_mm
        else:
            self.backlash_steps = r.dead_ml / r.dv_cfg_volumetric
        self.inputs = _Inputs()
        p_eq0 = r.back_pressure_mmhg - r.head_mmhg
        self.state = _initial_state(r, self.backlash_steps, p_eq0)
        self.t = 0.0
        self.tare_g = np.zeros(r.size)
        # Incremental use: the phase start (time, state, constants) every later time of the
        # same phase is evaluated from, in closed form. Reset by commands and events.
        self._origin: tuple[float, SystemState, _Phase] | None = None

    def advance_incremental(self, u: float) -> None:
        """Move the (single-row or batch) state to ``u`` by evaluating the closed form from
        the current phase's start: no per-call phase set-up, events split as usual."""
        idx = np.arange(self.rows.size)
        zeros = np.zeros(idx.size, dtype=np.intp)
        while True:
            if self._origin is None:
                start = self.state.copy()
                phase = self._phase(idx, start, np.full(idx.size, self.t), math.inf)
                self._origin = (self.t, start, phase)
            t_a, start, phase = self._origin
            ev = _evaluate(self.rows, start, phase, np.full((idx.size, 1), u))
            t_event, kind = self._find_events(
                idx, start, phase, ev, np.full(idx.size, t_a), float(np.nextafter(u, math.inf))
            )
            if not np.any(np.isfinite(t_event)):
                self.state = self._state_at(idx, start, phase, ev, zeros)
                self.t = u
                return
            # Rows are advanced together: stop everyone at the earliest event.
            t_e = float(np.min(t_event))
            ev_e = _evaluate(self.rows, start, phase, np.full((idx.size, 1), t_e))
            new = self._state_at(idx, start, phase, ev_e, zeros)
            hit = t_event == t_e
            self._apply_events(idx, new, np.where(hit, kind, 0), np.full(idx.size, t_e))
            self.state = new
            self.t = t_e
            self._origin = None

    # -- per-phase constants --------------------------------------------------------------

    def _dv_cfg(self, idx: NDArray[np.intp]) -> FloatArray:
        r = self.rows
        if r.kind == "syringe":
            diameter = (
                np.full(idx.shape, self.inputs.diameter_mm)
                if self.inputs.diameter_mm is not None
                else r.default_diameter_mm[idx]
            )
            return np.pi * diameter**2 / 4.0 * r.travel_mm[idx] / 1000.0
        return r.dv_cfg_volumetric[idx]

    def p_eq(self, idx: NDArray[np.intp]) -> FloatArray:
        r = self.rows
        bp = (
            np.full(idx.shape, self.inputs.back_pressure_mmhg)
            if self.inputs.back_pressure_mmhg is not None
            else r.back_pressure_mmhg[idx]
        )
        return bp - r.head_mmhg[idx]

    def sensed_gain_offset(
        self, idx: NDArray[np.intp]
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        """(gain, offset while running, offset while stopped) of the sensed pressure."""
        r = self.rows
        if r.kind == "syringe":
            dv = self._dv_cfg(idx)
            area_cfg = dv * 1000.0 / r.travel_mm[idx]  # mm²
            gain = r.area_true_mm2[idx] / area_cfg
            offset = (r.friction_n[idx] - r.friction_comp_n[idx]) / (PA_PER_MMHG * area_cfg * 1e-6)
            return gain, offset, np.zeros_like(gain)
        off = r.sensor_offset_mmhg[idx]
        return np.ones_like(off), off, off

    def thresholds(self, idx: NDArray[np.intp]) -> tuple[FloatArray, FloatArray]:
        """True line pressures at which the occlusion alarm arms and the motor stalls."""
        r = self.rows
        gain, offset, _ = self.sensed_gain_offset(idx)
        alarm = (r.threshold_mmhg[idx] - offset) / gain
        if r.kind == "syringe":
            stall = (r.max_force_n[idx] - r.friction_n[idx]) / (
                PA_PER_MMHG * r.area_true_mm2[idx] * 1e-6
            )
        else:
            stall = np.full(idx.shape, np.inf)
        return alarm, stall

    def _step_rate(self, idx: NDArray[np.intp], dv_cfg: FloatArray) -> FloatArray:
        r = self.rows
        if self.inputs.purge:
            return r.max_step_hz[idx].copy()
        return self.inputs.rate_ml_h / 3600.0 / dv_cfg

    def _phase(self, idx: NDArray[np.intp], st: SystemState, t_a: FloatArray, t_b: float) -> _Phase:
        r = self.rows
        dv_cfg = self._dv_cfg(idx)
        p_eq = self.p_eq(idx)
        running = st.running
        f = np.where(running, self._step_rate(idx, dv_cfg), 0.0)
        t_stop = np.where(running, np.minimum(st.pending_alarm_s, t_b), t_a)
        d = np.full(idx.shape, self.inputs.direction)
        # True volume per step, linear in time (wear) within the phase.
        if r.kind == "syringe":
            dv0 = r.area_true_mm2[idx] * r.travel_mm[idx] / 1000.0
            dip_period = np.full(idx.shape, np.inf)
            dip_gain = np.zeros(idx.shape)
        else:
            eff = r.efficiency[idx] * (1.0 - r.eff_drop[idx] * np.maximum(p_eq, 0.0))
            ripple = r.ripple[idx]
            dv0 = r.dv_true_vol[idx] * eff * (1.0 + ripple)
            period = r.dip_period[idx].astype(float)
            dip_period = np.where(ripple > 0, period, np.inf)
            dip_gain = -period * ripple / (1.0 + ripple)
        w = r.wear_per_s[idx]
        worn = (w > 0) & (t_a >= r.wear_onset_s[idx])
        alpha = np.where(worn, dv0 * (1.0 + w * r.wear_onset_s[idx]), dv0)
        beta = np.where(worn, -dv0 * w, 0.0)
        # Backlash: forward consumes the slack, reverse re-opens it.
        b = self.backlash_steps[idx]
        sigma = np.where(d > 0, st.slack_steps, b - st.slack_steps)
        sigma = np.maximum(sigma, 0.0)
        frac = sigma - np.floor(sigma)
        k_full = np.floor(sigma) + 1.0 + (frac > 1e-12)
        k_partial = np.where(frac > 1e-12, np.floor(sigma) + 1.0, np.inf)
        e_partial = np.where(frac > 1e-12, 1.0 - frac, 0.0)
        k0 = np.maximum(1.0, np.ceil(sigma - 1e-12))
        safe_period = np.where(np.isfinite(dip_period), dip_period, 1.0)
        dip_first = k0 + np.mod(-(st.rotor.astype(float) + k0), safe_period)
        mean_gain = np.where(np.isfinite(dip_period), 1.0 + dip_gain / safe_period, 1.0)
        lam = np.zeros(idx.shape) if self.inputs.occluded else r.lam_open[idx]
        return _Phase(
            t_a=_col(t_a),
            t_stop=_col(t_stop),
            f=_col(f),
            d=_col(d),
            alpha=_col(alpha),
            beta=_col(beta),
            dv_cfg=_col(dv_cfg),
            sigma=_col(sigma),
            k_full=_col(k_full),
            k_partial=_col(k_partial),
            e_partial=_col(e_partial),
            dip_period=_col(dip_period),
            dip_first=_col(dip_first),
            dip_gain=_col(dip_gain),
            mean_gain=_col(mean_gain),
            lam=_col(lam),
            p_eq=_col(p_eq),
            quantised=r.quantised,
        )

    # -- state after an evaluation -----------------------------------------------------------

    def _state_at(
        self, idx: NDArray[np.intp], st: SystemState, ph: _Phase, ev: _Eval, j: NDArray[np.intp]
    ) -> SystemState:
        """The state of each row at its evaluation column ``j`` (one column per row)."""
        rows_i = np.arange(len(idx))
        n = ev.n_steps[rows_i, j]
        new = st.copy()
        new.acc = ev.acc[rows_i, j] if self.rows.quantised else st.acc.copy()
        d = ph.d[:, 0]
        b = self.backlash_steps[idx]
        new.slack_steps = np.where(
            d > 0, np.maximum(st.slack_steps - n, 0.0), np.minimum(st.slack_steps + n, b)
        )
        period = self.rows.dip_period[idx]
        new.rotor = np.where(
            period > 0, (st.rotor + np.floor(n).astype(np.int64)) % np.maximum(period, 1), 0
        )
        new.plunger_ml = ev.plunger_ml[rows_i, j]
        new.pressure_mmhg = ev.pressure_mmhg[rows_i, j]
        new.delivered_ml = ev.delivered_ml[rows_i, j]
        new.settled_g = ev.settled_g[rows_i, j]
        counted = ev.counted_ml[rows_i, j]
        new.infused_ml = st.infused_ml + np.where(d > 0, counted, 0.0)
        new.withdrawn_ml = st.withdrawn_ml + np.where(d < 0, counted, 0.0)
        new.run_counted_ml = st.run_counted_ml + counted
        # The motor's running flag changes only through commands and events (the phase
        # end is not a stop).
        return new

    # -- one phase with events ---------------------------------------------------------------

    def run_phase(
        self,
        t_a: float,
        t_b: float,
        grid: FloatArray,
        out: dict[str, NDArray[Any]] | None,
        grid_offset: int,
    ) -> None:
        """Advance every row from ``t_a`` to ``t_b`` under the current inputs, writing the
        outputs for the grid points in ``[t_a, t_b)`` (``grid``) into ``out`` at columns
        ``grid_offset + i``. Events split the phase per row."""
        r = self.rows
        active = np.arange(r.size)
        starts = np.full(r.size, t_a)
        guard = 0
        while active.size:
            guard += 1
            if guard > 10_000:  # pragma: no cover - would mean an event loop bug
                raise RuntimeError("event handling did not converge")
            st = self.state.take(active)
            t_start = starts[active]
            ph = self._phase(active, st, t_start, t_b)
            points = np.concatenate([grid, [t_b]]) if grid.size else np.array([t_b])
            u = np.broadcast_to(points, (active.size, points.size))
            rows_active = r if active.size == r.size else r.take(active)
            ev = _evaluate(rows_active, st, ph, u)
            t_event, kind = self._find_events(active, st, ph, ev, t_start, t_b)
            has_event = np.isfinite(t_event)
            if out is not None and grid.size:
                self._write(out, active, st, ph, ev, grid, grid_offset, t_start, t_event)
            # rows without events: state at t_b
            done = ~has_event
            if np.any(done):
                last = np.full(int(done.sum()), points.size - 1, dtype=np.intp)
                sub = np.flatnonzero(done)
                st_done = self._state_at(
                    active[sub], st.take(sub), _sub_phase(ph, sub), _sub_eval(ev, sub), last
                )
                self.state.put(active[sub], st_done)
            if not np.any(has_event):
                break
            sub = np.flatnonzero(has_event)
            rows_e = active[sub]
            st_e = st.take(sub)
            ph_e = _sub_phase(ph, sub)
            ev_e = _evaluate(r.take(rows_e), st_e, ph_e, t_event[sub][:, None])
            st_new = self._state_at(rows_e, st_e, ph_e, ev_e, np.zeros(sub.size, dtype=np.intp))
            self._apply_events(rows_e, st_new, kind[sub], t_event[sub])
            self.state.put(rows_e, st_new)
            starts[rows_e] = t_event[sub]
            active = rows_e

    def _find_events(
        self,
        idx: NDArray[np.intp],
        st: SystemState,
        ph: _Phase,
        ev: _Eval,
        t_a: FloatArray,
        t_b: float,
    ) -> tuple[FloatArray, NDArray[np.int64]]:
        """Earliest event per row in (t_a, t_b) (inf: none) and its kind code."""
        r = self.rows
        size = idx.size
        t_event = np.full(size, np.inf)
        kind = np.zeros(size, dtype=np.int64)
        running = st.running & (ph.f[:, 0] > 0)
        if not np.any(running):
            return t_event, kind
        f = ph.f[:, 0]
        safe_f = np.where(f > 0, f, 1.0)
        t_stop = ph.t_stop[:, 0]

        def consider(t: FloatArray, code: int) -> None:
            better = running & (t < t_event) & (t <= t_stop) & (t >= t_a) & (t < t_b)
            t_event[better] = t[better]
            kind[better] = code

        # 1. the pending occlusion alarm fires (motor stops at that time)
        fire = np.where(np.isfinite(st.pending_alarm_s), st.pending_alarm_s, np.inf)
        consider(fire, _EV_FIRE)
        # 2. wear onset (re-linearise the step volume)
        onset = r.wear_onset_s[idx]
        wear_split = (r.wear_per_s[idx] > 0) & (onset > t_a)
        consider(np.where(wear_split, onset, np.inf), _EV_WEAR)
        # 3. volume target (pump-counted volume since start)
        target = self.inputs.target_ml
        if target > 0 and self.inputs.direction > 0:
            remaining = target - st.run_counted_ml
            dv = ph.dv_cfg[:, 0]
            if r.quantised:
                k = np.maximum(np.ceil(remaining / dv - 1e-9), 1.0)
                t_target = t_a + (k - st.acc) / safe_f
            else:
                t_target = t_a + np.maximum(remaining, 0.0) / (dv * safe_f)
            consider(np.where(remaining > 0, t_target, t_a), _EV_TARGET)
        # 4. crossings: pressure alarm, stall, empty (infusing only)
        if self.inputs.direction > 0:
            alarm_p, stall_p = self.thresholds(idx)
            armed = ~np.isfinite(st.pending_alarm_s) & ((st.alarms & int(Alarm.OCCLUSION)) == 0)
            fill = r.fill_ml[idx]
            crossing = np.zeros(ev.u.shape, dtype=bool)
            crossing |= armed[:, None] & (ev.peak_pressure_mmhg >= alarm_p[:, None])
            crossing |= ev.peak_pressure_mmhg >= stall_p[:, None]
            crossing |= ev.plunger_ml >= fill[:, None] - 1e-12
            crossing &= ev.u <= ph.t_stop
            crossing &= ev.n_steps > 0 if r.quantised else ev.u > t_a[:, None]
            rows_c = np.flatnonzero(crossing.any(axis=1) & running)
            if rows_c.size:
                t_c, code_c = self._refine_crossing(
                    idx, st, ph, ev, crossing, rows_c, alarm_p, stall_p, fill, armed
                )
                candidate = np.full(size, np.inf)
                codes = np.zeros(size, dtype=np.int64)
                candidate[rows_c] = t_c
                codes[rows_c] = code_c
                better = running & (candidate < t_event) & (candidate < t_b)
                # a crossing at the same instant as another event still happens
                t_event[better] = candidate[better]
                kind[better] = codes[better]
        return t_event, kind

    def _refine_crossing(
        self,
        idx: NDArray[np.intp],
        st: SystemState,
        ph: _Phase,
        ev: _Eval,
        crossing: NDArray[np.bool_],
        rows_c: NDArray[np.intp],
        alarm_p: FloatArray,
        stall_p: FloatArray,
        fill: FloatArray,
        armed: NDArray[np.bool_],
    ) -> tuple[FloatArray, NDArray[np.int64]]:
        """Exact time of the first crossing for ``rows_c`` (bisection on step index/time)."""
        r = self.rows
        j = np.argmax(crossing[rows_c], axis=1)
        st_c = st.take(rows_c)
        ph_c = _sub_phase(ph, rows_c)
        rows_c_consts = r.take(idx[rows_c])
        t_a = ph_c.t_a[:, 0]
        f = ph_c.f[:, 0]
        u_hi = ev.u[rows_c, j]
        u_lo = np.where(j > 0, ev.u[rows_c, np.maximum(j - 1, 0)], t_a)

        def crossed(u_val: FloatArray) -> NDArray[np.bool_]:
            e = _evaluate(rows_c_consts, st_c, ph_c, u_val[:, None])
            p = e.pressure_mmhg[:, 0]
            c = (armed[rows_c] & (p >= alarm_p[rows_c])) | (p >= stall_p[rows_c])
            c |= e.plunger_ml[:, 0] >= fill[rows_c] - 1e-12
            return np.asarray(c & (u_val > t_a) if not r.quantised else c & (e.n_steps[:, 0] > 0))

        if r.quantised:
            acc = st_c.acc
            k_lo = np.floor(acc + f * (u_lo - t_a) + _EPS_STEPS)
            k_hi = np.floor(acc + f * (np.minimum(u_hi, ph_c.t_stop[:, 0]) - t_a) + _EPS_STEPS)
            # smallest k in (k_lo, k_hi] whose post-step state has crossed
            lo, hi = k_lo.copy(), k_hi.copy()
            lo_crossed = crossed(t_a + (np.maximum(lo, 0.0) - acc) / f) & (lo >= 1)
            # if already crossed at lo (e.g. start of phase), the crossing is at lo
            hi = np.where(lo_crossed, lo, hi)
            lo = np.where(lo_crossed, lo - 1, lo)
            while np.any(hi - lo > 1):
                mid = np.floor((lo + hi) / 2.0)
                c = crossed(t_a + (mid - acc) / f)
                busy = hi - lo > 1
                hi = np.where(busy & c, mid, hi)
                lo = np.where(busy & ~c, mid, lo)
            t_cross = t_a + (hi - acc) / f
        else:
            lo, hi = u_lo.copy(), u_hi.copy()
            for _ in range(200):
                if np.all(hi - lo <= 1e-12 * np.maximum(1.0, np.abs(hi))):
                    break
                mid = 0.5 * (lo + hi)
                c = crossed(mid)
                hi = np.where(c, mid, hi)
                lo = np.where(c, lo, mid)
            t_cross = hi
        e = _evaluate(rows_c_consts, st_c, ph_c, t_cross[:, None])
        p = e.pressure_mmhg[:, 0]
        code = np.where(
            p >= stall_p[rows_c],
            _EV_STALL,
            np.where(e.plunger_ml[:, 0] >= fill[rows_c] - 1e-12, _EV_EMPTY, _EV_CROSS),
        )
        return t_cross, code.astype(np.int64)

    def _apply_events(
        self, idx: NDArray[np.intp], st: SystemState, kind: NDArray[np.int64], t: FloatArray
    ) -> None:
        r = self.rows
        latency = r.latency_s[idx]
        fire_now = (kind == _EV_FIRE) | ((kind == _EV_CROSS) & (latency <= 0))
        pend = (kind == _EV_CROSS) & (latency > 0)
        st.pending_alarm_s = np.where(pend, t + latency, st.pending_alarm_s)
        if np.any(fire_now):
            st.running = np.where(fire_now, False, st.running)
            st.alarms = np.where(fire_now, st.alarms | int(Alarm.OCCLUSION), st.alarms)
            st.pending_alarm_s = np.where(fire_now, np.inf, st.pending_alarm_s)
            p_eq = self.p_eq(idx)
            stored = r.C[idx] * np.maximum(st.pressure_mmhg - p_eq, 0.0)
            back = np.where(fire_now, np.minimum(r.backoff_ml[idx], stored), 0.0)
            st.plunger_ml = st.plunger_ml - back
            st.pressure_mmhg = st.pressure_mmhg - back / r.C[idx]
        stall = kind == _EV_STALL
        st.running = np.where(stall, False, st.running)
        st.alarms = np.where(stall, st.alarms | int(Alarm.MOTOR_STALL), st.alarms)
        st.pending_alarm_s = np.where(stall, np.inf, st.pending_alarm_s)
        empty = kind == _EV_EMPTY
        st.running = np.where(empty, False, st.running)
        st.alarms = np.where(empty, st.alarms | int(Alarm.EMPTY | Alarm.END_OF_INFUSION), st.alarms)
        st.pending_alarm_s = np.where(empty, np.inf, st.pending_alarm_s)
        target = kind == _EV_TARGET
        st.running = np.where(target, False, st.running)
        st.alarms = np.where(target, st.alarms | int(Alarm.END_OF_INFUSION), st.alarms)
        st.pending_alarm_s = np.where(target, np.inf, st.pending_alarm_s)

    def _write(
        self,
        out: dict[str, NDArray[Any]],
        idx: NDArray[np.intp],
        st: SystemState,
        ph: _Phase,
        ev: _Eval,
        grid: FloatArray,
        offset: int,
        t_start: FloatArray,
        t_event: FloatArray,
    ) -> None:
        m = grid.size
        mask = (grid[None, :] >= t_start[:, None]) & (grid[None, :] < t_event[:, None])
        full = bool(mask.all())
        contiguous = idx.size > 0 and int(idx[-1]) - int(idx[0]) + 1 == idx.size
        sel: Any = (
            (slice(int(idx[0]), int(idx[-1]) + 1), slice(offset, offset + m))
            if contiguous
            else np.ix_(idx, offset + np.arange(m))
        )

        def put(name: str, values: NDArray[Any]) -> None:
            target = out[name]
            if full:
                target[sel] = values
            else:
                target[sel] = np.where(mask, values, target[sel])

        running = st.running[:, None] & (grid[None, :] < ph.t_stop)
        gain, off_run, off_stop = self.sensed_gain_offset(idx)
        p = ev.pressure_mmhg[:, :m]
        sensed = gain[:, None] * p + np.where(running, off_run[:, None], off_stop[:, None])
        d = ph.d[:, 0]
        counted = ev.counted_ml[:, :m]
        put("running", running)
        put("delivered_ml", ev.delivered_ml[:, :m])
        put("plunger_ml", ev.plunger_ml[:, :m])
        put("pump_infused_ml", st.infused_ml[:, None] + np.where(d[:, None] > 0, counted, 0.0))
        put("pump_withdrawn_ml", st.withdrawn_ml[:, None] + np.where(d[:, None] < 0, counted, 0.0))
        put("line_pressure_mmhg", p)
        put("sensed_pressure_mmhg", sensed)
        remaining = self.rows.fill_ml[idx][:, None] - ev.plunger_ml[:, :m]
        near = remaining <= self.rows.near_empty_ml[idx][:, None]
        alarms = st.alarms[:, None] | np.where(near, int(Alarm.NEAR_EMPTY), 0)
        put("alarms", np.broadcast_to(alarms, (idx.size, m)))
        put("balance_load_g", ev.load_g[:, :m])
        put("balance_settled_g", ev.settled_g[:, :m])

    # -- commands ---------------------------------------------------------------------------

    def apply(self, command: Command) -> None:
        """Apply a command at the current time (state must have been advanced to it)."""
        self._origin = None
        st = self.state
        kind = command.kind
        value = command.value
        inp = self.inputs
        if kind is CommandKind.SET_RATE:
            inp.rate_ml_h = value
            self._check_rate()
        elif kind is CommandKind.SET_DIRECTION:
            inp.direction = value
        elif kind is CommandKind.SET_DIAMETER:
            inp.diameter_mm = value
            self._check_rate()
        elif kind is CommandKind.SET_TARGET:
            inp.target_ml = value
        elif kind in (CommandKind.START, CommandKind.PURGE):
            inp.purge = kind is CommandKind.PURGE
            blocked = (st.alarms & int(Alarm.blocking())) != 0
            was_running = st.running.copy()
            st.running = ~blocked
            # A fresh start counts the target from here and clears "end of infusion".
            fresh = st.running & ~was_running
            st.run_counted_ml = np.where(fresh, 0.0, st.run_counted_ml)
            st.alarms = np.where(fresh, st.alarms & ~int(Alarm.END_OF_INFUSION), st.alarms)
        elif kind is CommandKind.STOP:
            st.running[:] = False
            inp.purge = False
            st.pending_alarm_s[:] = np.inf
        elif kind is CommandKind.CLEAR_ALARMS:
            st.alarms[:] = 0
            st.pending_alarm_s[:] = np.inf
        elif kind is CommandKind.CLEAR_VOLUME:
            # value: 0 or NaN both counters, 1 the infused one, 2 the withdrawn one
            which = 0 if math.isnan(value) else int(value)
            if which in (0, 1):
                st.infused_ml[:] = 0.0
            if which in (0, 2):
                st.withdrawn_ml[:] = 0.0
        elif kind is CommandKind.RAISE_ALARM:
            bit = int(value)
            st.alarms |= bit
            if bit & int(Alarm.blocking()):
                st.running[:] = False
                st.pending_alarm_s[:] = np.inf
        elif kind is CommandKind.OCCLUDE:
            inp.occluded = True
        elif kind is CommandKind.RELEASE:
            inp.occluded = False
        elif kind is CommandKind.SET_BACK_PRESSURE:
            inp.back_pressure_mmhg = value
        elif kind is CommandKind.TARE:
            self.tare_g = (
                np.full(self.rows.size, value) if math.isfinite(value) else st.settled_g.copy()
            )

    def _check_rate(self) -> None:
        rate = self.inputs.rate_ml_h
        if rate <= 0:
            return
        idx = np.arange(self.rows.size)
        f = rate / 3600.0 / self._dv_cfg(idx)
        over = f > self.rows.max_step_hz * (1 + 1e-12)
        if np.any(over):
            top = float(np.min(self.rows.max_step_hz * self._dv_cfg(idx) * 3600.0))
            raise ParameterError(
                f"rate {rate:g} mL/h exceeds the drive's maximum of {top:.6g} mL/h "
                "for the configured syringe"
            )


_EV_FIRE, _EV_WEAR, _EV_TARGET, _EV_CROSS, _EV_STALL, _EV_EMPTY = 1, 2, 3, 4, 5, 6


def _sub_phase(ph: _Phase, sub: NDArray[np.intp]) -> _Phase:
    values: dict[str, Any] = {
        k: (v[sub] if isinstance(v, np.ndarray) else v) for k, v in ph.__dict__.items()
    }
    return _Phase(**values)


def _sub_eval(ev: _Eval, sub: NDArray[np.intp]) -> _Eval:
    return _Eval(**{k: v[sub] for k, v in ev.__dict__.items()})


# --------------------------------------------------------------------------- public API


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
    _, size, _ = _getter(params)
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
) -> tuple[_Rows, dict[str, NDArray[Any]]]:
    """Run one chunk of rows, writing into ``out`` (views of the full arrays); returns the
    chunk's row constants and the (shared) input channels."""
    model = _Model(params)
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
        self._model = _Model([params])
        self._noise: np.random.Generator | None = None

    @property
    def t_s(self) -> float:
        return self._model.t

    @property
    def state(self) -> SystemState:
        return self._model.state

    @property
    def inputs(self) -> _Inputs:
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
        model = _Model([params])
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
