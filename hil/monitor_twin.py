"""The twin of a bench's patient monitors, and the channels of oximeters and simulators.

A bench with a patient simulator (ProSim 8) and pulse oximeters (Masimo, Nonin) has the
monitors' twin beside the pump's (:mod:`medtwin.hil.twin`): one twin patient that follows
the simulator's settings as the simulator acknowledged them, watched by one monitor model
per oximeter with the parameters the bench *declares* for it (a preset of
:func:`medtwin.device_models.monitor.params.monitor_preset` plus the device's ``monitor``
overrides). The patient is the shared patient of the emulators
(:class:`medtwin.drivers.emulators.patient_world.PatientWorld`), generated with the bench's
emulation seed: on an emulated bench the twin watches the same patient the emulated
oximeters watch, so what remains in the residual is the difference between the declared
monitor and the one on the bench (an SpO2 bias, a slower HR average), which the comparator
flags as drift. On a real bench the twin's patient is a model of the simulator's output
(its rates plus a small variability; ``WorldParams``).

Channels are ``<device>.<quantity>`` as for the pump side; :func:`channel_defs` gives a
kind's channels (the pump-side kinds from :data:`medtwin.hil.twin.CHANNEL_KINDS`, the
oximeter and simulator ones from :data:`MONITOR_CHANNEL_KINDS`) and :func:`channel_tags`
the IEEE 11073-10101 (MDC) metric and unit codes of each
(:mod:`medtwin.drivers.nomenclature`), which the runner stores with the run's devices.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from medtwin.device_models.base import ParameterError
from medtwin.device_models.monitor.params import MonitorParams, monitor_preset
from medtwin.drivers.emulators.mechanisms import OximeterMechanism
from medtwin.drivers.errors import ConfigurationError
from medtwin.drivers.nomenclature import metric, unit
from medtwin.hil.config import BenchConfig, DeviceConfig
from medtwin.hil.twin import CHANNEL_KINDS, ChannelDef
from numpy.typing import NDArray

__all__ = [
    "MONITOR_CHANNEL_KINDS",
    "NOMENCLATURE",
    "UNCOMPARED",
    "MonitorTwin",
    "channel_defs",
    "channel_tags",
    "declared_params",
    "default_preset",
    "truth_params",
]

#: The comparator's defaults for the displayed values. Monitors show integers (bpm, %), so
#: the residual of a monitor that matches its twin is 0 or one count where an update falls
#: between the two; the band is above that count and must hold for a few updates.
#: The band needs no noise estimate, so it may judge from the fifth reading on.
_SPO2 = {"abs_tol": 1.5, "persistence_s": 5.0, "detectors": ("tolerance",), "min_samples": 5}
_PULSE = {"abs_tol": 3.0, "persistence_s": 2.0, "detectors": ("tolerance",), "min_samples": 5}
_PI = {"abs_tol": 0.5, "rel_tol": 0.2, "persistence_s": 30.0, "detectors": ("tolerance",)}
#: Recorded, not judged (the link's health; the simulator's settings are the stimulus).
_RECORDED: Mapping[str, Any] = {"detectors": ("tolerance",)}

#: Per device kind: the channels of oximeters and patient simulators.
MONITOR_CHANNEL_KINDS: dict[str, tuple[ChannelDef, ...]] = {
    "oximeter": (
        ChannelDef("spo2_percent", "%", _SPO2),
        ChannelDef("pulse_rate_bpm", "bpm", _PULSE),
        ChannelDef("pi_percent", "%", _PI),
        ChannelDef("link_errors", "", _RECORDED),
    ),
    "simulator": (
        ChannelDef("heart_rate_bpm", "bpm", _RECORDED),
        ChannelDef("spo2_percent", "%", _RECORDED),
        ChannelDef("resp_rate_min", "1/min", _RECORDED),
        ChannelDef("nibp_sys_mmhg", "mmHg", _RECORDED),
        ChannelDef("nibp_dia_mmhg", "mmHg", _RECORDED),
    ),
}

#: ``kind.quantity`` of the channels the comparator does not judge.
UNCOMPARED: frozenset[str] = frozenset(
    {"oximeter.link_errors"}
    | {f"simulator.{c.quantity}" for c in MONITOR_CHANNEL_KINDS["simulator"]}
)

#: ``kind.quantity`` → (MDC metric reference id or None, MDC unit reference id or None):
#: the IEEE 11073-10101 terms of each channel (codes from medtwin.drivers.nomenclature).
#: A channel with no metric term in that table (a pump's sensed pressure, a balance's mass,
#: the perfusion index, a link counter) carries its unit's code alone, or nothing.
NOMENCLATURE: dict[str, tuple[str | None, str | None]] = {
    "pump.infused_ml": ("MDC_VOL_FLUID_DELIV_TOTAL", "MDC_DIM_MILLI_L"),
    "pump.rate_ml_h": ("MDC_FLOW_FLUID_PUMP", "MDC_DIM_MILLI_L_PER_HR"),
    "pump.pressure_mmhg": (None, "MDC_DIM_MMHG"),
    "balance.mass_g": (None, None),
    "balance.flow_ml_h": (None, "MDC_DIM_MILLI_L_PER_HR"),
    "bench-io.pressure_mmhg": (None, "MDC_DIM_MMHG"),
    "oximeter.spo2_percent": ("MDC_PULS_OXIM_SAT_O2", "MDC_DIM_PERCENT"),
    "oximeter.pulse_rate_bpm": ("MDC_PULS_OXIM_PULS_RATE", "MDC_DIM_BEAT_PER_MIN"),
    "oximeter.pi_percent": (None, "MDC_DIM_PERCENT"),
    "oximeter.link_errors": (None, None),
    "simulator.heart_rate_bpm": ("MDC_ECG_HEART_RATE", "MDC_DIM_BEAT_PER_MIN"),
    "simulator.spo2_percent": ("MDC_PULS_OXIM_SAT_O2", "MDC_DIM_PERCENT"),
    "simulator.resp_rate_min": ("MDC_RESP_RATE", "MDC_DIM_RESP_PER_MIN"),
    "simulator.nibp_sys_mmhg": ("MDC_PRESS_BLD_NONINV_SYS", "MDC_DIM_MMHG"),
    "simulator.nibp_dia_mmhg": ("MDC_PRESS_BLD_NONINV_DIA", "MDC_DIM_MMHG"),
}


def channel_defs(kind: str) -> tuple[ChannelDef, ...]:
    """The channels a device of ``kind`` records (empty for a kind with none)."""
    return CHANNEL_KINDS.get(kind) or MONITOR_CHANNEL_KINDS.get(kind, ())


def channel_tags(kind: str, quantity: str) -> dict[str, Any]:
    """The MDC terms of channel ``quantity`` of a ``kind`` device: ``metric`` and
    ``metric_code`` (the 32-bit context-free code), ``unit`` and ``unit_code``; the keys of
    a term the channel has none of are left out."""
    metric_id, unit_id = NOMENCLATURE.get(f"{kind}.{quantity}", (None, None))
    tags: dict[str, Any] = {}
    if metric_id is not None:
        m = metric(metric_id)
        tags.update(metric=m.ref_id, metric_code=m.code)
        unit_id = unit_id or m.unit_id
    if unit_id is not None:
        u = unit(unit_id)
        tags.update(unit=u.ref_id, unit_code=u.code, ucum=u.ucum)
    return tags


# --------------------------------------------------------------------------- parameters


def default_preset(protocol: str) -> str:
    """The monitor preset an oximeter of ``protocol`` starts from (``masimo``, ``nonin``
    for ``nonin2``/``nonin7``/``nonin8``, else ``generic``)."""
    if protocol.startswith("nonin"):
        return "nonin"
    if protocol.startswith("masimo"):
        return "masimo"
    return "generic"


def _params(
    bench: BenchConfig, cfg: DeviceConfig, overrides: Mapping[str, Any], where: str
) -> MonitorParams:
    given = dict(overrides)
    preset = given.pop("preset", default_preset(cfg.protocol))
    try:
        return monitor_preset(str(preset), given)
    except ParameterError as exc:
        raise ConfigurationError(
            str(exc), source=bench.source, field=f"devices.{cfg.name}.{where}"
        ) from None


def declared_params(bench: BenchConfig, cfg: DeviceConfig) -> MonitorParams:
    """The monitor parameters the bench declares for oximeter ``cfg`` (the twin's): its
    ``monitor`` table, a ``preset`` plus dotted overrides (``"spo2.averaging_s" = 8``)."""
    return _params(bench, cfg, cfg.monitor, "monitor")


def truth_params(bench: BenchConfig, cfg: DeviceConfig) -> MonitorParams:
    """The parameters the emulated oximeter ``cfg`` really has: the declared ones with the
    device's ``truth`` overrides (a drift bench's biased or slower monitor)."""
    declared = dict(cfg.monitor)
    return _params(bench, cfg, {**declared, **cfg.truth}, "truth")


# --------------------------------------------------------------------------- the twin


@dataclass
class _Clock:
    t_s: float = 0.0

    def now(self) -> float:
        return self.t_s


class MonitorTwin:
    """The twin patient and one twin monitor per oximeter of ``bench``.

    Parameters
    ----------
    bench : BenchConfig
    t0_s : float
        Clock time (s) the twin starts at (the run's scenario time 0): its monitors watch
        the patient from then on, as the emulated ones do from the bench's start.

    Time only moves forward: :meth:`command` and :meth:`predict` take clock times in the
    order things happened (the runner hands readings over before each command).
    """

    def __init__(self, bench: BenchConfig, *, t0_s: float = 0.0) -> None:
        from medtwin.drivers.emulators.patient_world import PatientWorld

        self._clock = _Clock(float(t0_s))
        simulator = bench.device_of_kind("simulator")
        limits = None if simulator is None else simulator.limits.simulator_limits()
        self.world = PatientWorld(self._clock.now, seed=bench.emulation.seed, limits=limits)
        self.oximeters: dict[str, OximeterMechanism] = {
            cfg.name: self.world.oximeter(
                declared_params(bench, cfg), model="twin", serial=cfg.name
            )
            for cfg in bench.devices
            if cfg.kind == "oximeter"
        }
        self.simulator = None if simulator is None else simulator.name

    @property
    def t_s(self) -> float:
        return self._clock.t_s

    def _advance(self, t_s: float) -> None:
        self._clock.t_s = max(self._clock.t_s, float(t_s))

    def command(self, t_s: float, settings: Mapping[str, float]) -> None:
        """The simulator acknowledged ``settings`` (SimulatorSettings field → value) at
        clock time ``t_s``; the twin patient follows from then on."""
        self._advance(t_s)
        sim = self.world.simulator
        current = sim.settings()
        for name, value in settings.items():
            if name == "heart_rate_bpm":
                sim.set_heart_rate_bpm(value)
            elif name == "spo2_percent":
                sim.set_spo2_percent(value)
            elif name == "resp_rate_min":
                sim.set_resp_rate_min(value)
            elif name in ("nibp_sys_mmhg", "nibp_dia_mmhg"):
                sys_ = settings.get("nibp_sys_mmhg", current.nibp_sys_mmhg)
                dia = settings.get("nibp_dia_mmhg", current.nibp_dia_mmhg)
                sim.set_nibp_mmhg(sys_, dia)
            else:
                raise ValueError(f"the twin patient has no setting {name!r}")

    def settings(self) -> dict[str, float]:
        """The twin simulator's settings now (the ``simulator`` channels)."""
        s = self.world.simulator.settings()
        return {
            "heart_rate_bpm": s.heart_rate_bpm,
            "spo2_percent": s.spo2_percent,
            "resp_rate_min": s.resp_rate_min,
            "nibp_sys_mmhg": s.nibp_sys_mmhg,
            "nibp_dia_mmhg": s.nibp_dia_mmhg,
        }

    def predict(self, rows: Sequence[tuple[str, float]]) -> list[dict[str, float]]:
        """The twin's channels of device ``name`` at clock time ``t_s`` for each
        ``(name, t_s)`` of ``rows`` (in any order; evaluated in time order), as
        ``{quantity: value}`` (NaN for a value the monitor shows as dashes)."""
        order = sorted(range(len(rows)), key=lambda i: rows[i][1])
        out: list[dict[str, float]] = [{} for _ in rows]
        for i in order:
            name, t = rows[i]
            self._advance(t)
            if name == self.simulator:
                out[i] = self.settings()
                continue
            oximeter = self.oximeters.get(name)
            if oximeter is None:
                continue
            snap = oximeter.snapshot()
            out[i] = {
                "spo2_percent": _nan(snap.spo2_percent),
                "pulse_rate_bpm": _nan(snap.pulse_rate_bpm),
                "pi_percent": _nan(snap.pi_percent),
                "link_errors": 0.0,
            }
        return out


def _nan(value: float | None) -> float:
    return math.nan if value is None else float(value)


def column(values: Sequence[Mapping[str, float]], quantity: str) -> NDArray[np.float64]:
    """One quantity of :meth:`MonitorTwin.predict`'s rows as an array (NaN where absent)."""
    return np.array([v.get(quantity, math.nan) for v in values], dtype=float)
