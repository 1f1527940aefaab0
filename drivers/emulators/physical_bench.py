"""The virtual hardware: one physical bench (pump → line → pinch valve → balance).

A :class:`PhysicalBench` holds ``device_models`` *truth* parameters (which may differ from
the twin's nominal ones: that is how a mis-sized syringe or a worn drive is injected) and
one :class:`~medtwin.device_models.system.SystemSimulator`. Whenever a mechanism is touched it
first advances the physics to ``clock.now()``, then acts, so an NE-1000 emulator, an
MT-SICS emulator and a Modbus bench-I/O emulator built on the same bench see the same pump
moving the plunger, the same line building pressure while the valve is closed, and the
same balance weighing what the line delivers.

The three mechanisms (:mod:`medtwin.drivers.emulators.mechanisms`):

* ``bench.pump``: :class:`~medtwin.drivers.emulators.mechanisms.PumpMechanism`
* ``bench.balance``: :class:`~medtwin.drivers.emulators.mechanisms.BalanceMechanism`
* ``bench.bench_io``: :class:`~medtwin.drivers.emulators.mechanisms.BenchIOMechanism`
* ``bench.simulator``: :class:`~medtwin.drivers.emulators.mechanisms.PatientSimulatorMechanism`
  of ``bench.patient``, the shared
  :class:`~medtwin.drivers.emulators.patient_world.PatientWorld` (created on first use;
  its ``oximeter(params, ...)`` gives each oximeter its own monitor model)

Device faults from a fault plan act here: ``stall:at=T`` raises the motor-stall alarm at
T; ``drift:param=NAME,rate=R[%]/h,start=T`` changes a truth parameter linearly from T on.
Drift is applied in steps of at most ``drift_step_s`` of device time (the parameter is
held constant over each step), so the result does not depend on how often a client
polls.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
from medtwin.device_models.balance import display
from medtwin.device_models.base import ParameterError, list_parameters
from medtwin.device_models.schedule import Alarm, Command, CommandKind
from medtwin.device_models.system import SystemParams, SystemSimulator
from medtwin.drivers.base import PumpAlarm, PumpState
from medtwin.drivers.clock import Clock
from medtwin.drivers.emulators.faults import Fault
from medtwin.drivers.emulators.mechanisms import (
    BalanceSnapshot,
    PatientSimulatorMechanism,
    PumpSnapshot,
)
from medtwin.drivers.errors import ConfigurationError

if TYPE_CHECKING:
    from medtwin.drivers.emulators.patient_world import PatientWorld

__all__ = ["PhysicalBench"]

_ALARM_MAP: dict[Alarm, PumpAlarm] = {
    Alarm.OCCLUSION: PumpAlarm.OCCLUSION,
    Alarm.END_OF_INFUSION: PumpAlarm.END_OF_INFUSION,
    Alarm.NEAR_EMPTY: PumpAlarm.NEAR_EMPTY,
    Alarm.MOTOR_STALL: PumpAlarm.MOTOR_STALL,
    Alarm.COMMUNICATION_TIMEOUT: PumpAlarm.COMMUNICATION_TIMEOUT,
    Alarm.EMPTY: PumpAlarm.END_OF_INFUSION,
}
_PUMP_ALARM_BITS: dict[PumpAlarm, Alarm] = {
    PumpAlarm.OCCLUSION: Alarm.OCCLUSION,
    PumpAlarm.END_OF_INFUSION: Alarm.END_OF_INFUSION,
    PumpAlarm.NEAR_EMPTY: Alarm.NEAR_EMPTY,
    PumpAlarm.MOTOR_STALL: Alarm.MOTOR_STALL,
    PumpAlarm.COMMUNICATION_TIMEOUT: Alarm.COMMUNICATION_TIMEOUT,
}


class PhysicalBench:
    """Truth physics behind every emulated device of one bench.

    Parameters
    ----------
    truth : SystemParams
        The bench as it really is.
    clock : Clock
        Shared time base; the physics is evaluated at ``clock.now()``.
    seed : int
        Seeds the balance and transducer noise (``numpy.random.default_rng(seed)``).
    device_faults : sequence of Fault
        ``stall`` and ``drift`` faults (reply faults are ignored here).
    transducer_noise_mmhg : float
        1-σ noise of the bench I/O module's inline pressure transducer.
    drift_step_s : float
        Longest stretch of device time over which a drifting parameter is held constant.
    """

    def __init__(
        self,
        truth: SystemParams,
        *,
        clock: Clock,
        seed: int = 0,
        device_faults: Sequence[Fault] = (),
        transducer_noise_mmhg: float = 0.1,
        drift_step_s: float = 10.0,
    ) -> None:
        self.truth0 = truth
        self.clock = clock
        self.sim = SystemSimulator(truth)
        self.rng = np.random.default_rng(seed)
        self.transducer_noise_mmhg = transducer_noise_mmhg
        self.drift_step_s = drift_step_s
        self._t0 = clock.now()
        known = {p.name: p for p in list_parameters(truth)}
        self._drifts: list[tuple[Fault, float]] = []
        self._stalls: list[float] = []
        for fault in device_faults:
            if fault.kind == "drift":
                info = known.get(fault.param or "")
                if info is None or isinstance(info.value, bool | str):
                    raise ConfigurationError(
                        f"drift fault {fault.spec!r}: {fault.param!r} is not a numeric "
                        "truth parameter",
                        field="faults",
                    )
                self._drifts.append((fault, float(info.value)))
            elif fault.kind == "stall":
                self._stalls.append(fault.after_s)
        self._stalls.sort()
        # Device-time call-backs (a pump's firmware acting at an exact instant, e.g. the
        # NE-1000 starting its next program phase): (t_s, sequence, callback).
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._timer_seq = 0
        self._hold: float | None = None
        self.pump = _Pump(self, seed)
        self.balance = _Balance(self, seed)
        self.bench_io = _BenchIO(self, seed)
        self.seed = seed
        self._patient: PatientWorld | None = None

    @property
    def patient(self) -> PatientWorld:
        """The bench's patient (created on first use, on the bench's device time and
        seed): the simulator sets it, every oximeter of the bench watches it."""
        if self._patient is None:
            from medtwin.drivers.emulators.patient_world import PatientWorld

            self._patient = PatientWorld(self.now, seed=self.seed)
        return self._patient

    @property
    def simulator(self) -> PatientSimulatorMechanism:
        """The patient simulator's mechanism (``descriptor.mechanism == "simulator"``)."""
        return self.patient.simulator

    @classmethod
    def default(
        cls,
        *,
        pump: Literal["syringe", "volumetric"] = "syringe",
        clock: Clock,
        seed: int = 0,
        overrides: Mapping[str, float | str] | None = None,
        device_faults: Sequence[Fault] = (),
    ) -> PhysicalBench:
        """A bench with nominal truth parameters (BD Plastipak 50 mL syringe on a syringe
        pump, or a volumetric pump), optionally overridden by dotted parameter names
        (``{"pump.syringe.inner_diameter_mm": 26.4}``)."""
        truth = SystemParams.nominal(pump)
        if overrides:
            try:
                truth = truth.with_overrides(dict(overrides))
            except ParameterError as exc:
                raise ConfigurationError(str(exc), field="truth") from None
        return cls(truth, clock=clock, seed=seed, device_faults=device_faults)

    # -- time ---------------------------------------------------------------------------

    def now(self) -> float:
        """Device time: seconds since the bench was built (while a call-back runs: its
        instant)."""
        if self._hold is not None:
            return self._hold
        return max(self.clock.now() - self._t0, self.sim.t_s)

    def call_at(self, t_s: float, callback: Callable[[], None]) -> Callable[[], None]:
        """Run ``callback`` with the physics at device time ``t_s`` exactly (mechanism calls
        it makes act at ``t_s``); returns a function that cancels it."""
        entry = (t_s, self._timer_seq, callback)
        self._timer_seq += 1
        heapq.heappush(self._timers, entry)

        def cancel() -> None:
            if entry in self._timers:
                self._timers.remove(entry)
                heapq.heapify(self._timers)

        return cancel

    def sync(self) -> float:
        """Advance the physics to the clock's now (applying device faults and call-backs
        in time order); return it."""
        if self._hold is not None:
            self._advance(self._hold)
            return self._hold
        target = self.now()
        while True:
            t_stall = self._stalls[0] if self._stalls else math.inf
            t_timer = self._timers[0][0] if self._timers else math.inf
            if min(t_stall, t_timer) > target:
                break
            if t_stall <= t_timer:
                t_stall = max(self._stalls.pop(0), self.sim.t_s)
                self._advance(t_stall)
                self.sim.apply(Command(t_stall, CommandKind.RAISE_ALARM, float(Alarm.MOTOR_STALL)))
            else:
                t_cb, _, callback = heapq.heappop(self._timers)
                t_cb = max(t_cb, self.sim.t_s)
                self._advance(t_cb)
                self._hold = t_cb
                try:
                    callback()
                finally:
                    self._hold = None
        self._advance(target)
        return target

    def _advance(self, target: float) -> None:
        if not self._drifts:
            self.sim.advance_to(target)
            return
        t = self.sim.t_s
        while t < target:
            step_end = min(target, t + self.drift_step_s)
            mid = 0.5 * (t + step_end)
            self._apply_drift(mid)
            self.sim.advance_to(step_end)
            t = step_end

    def _apply_drift(self, t: float) -> None:
        overrides: dict[str, float] = {}
        for fault, start_value in self._drifts:
            hours = max(0.0, min(t, fault.until_s) - fault.after_s) / 3600.0
            change = fault.rate_per_h * hours
            overrides[fault.param or ""] = (
                start_value * (1.0 + change / 100.0) if fault.relative else start_value + change
            )
        params = self.truth0.with_overrides(overrides)
        if params != self.sim.params:
            self.sim.replace_params(params)

    def set_truth(self, overrides: Mapping[str, float | str | bool]) -> None:
        """Change truth parameters from now on (dotted names), as a device's own design
        dictates them (e.g. an emulator whose pump has no pressure sensor)."""
        self.sync()
        try:
            self.truth0 = self.truth0.with_overrides(dict(overrides))
            params = self.sim.params.with_overrides(dict(overrides))
        except ParameterError as exc:
            raise ConfigurationError(str(exc), field="truth") from None
        if params != self.sim.params:
            self.sim.replace_params(params)

    def command(self, kind: CommandKind, value: float = math.nan) -> None:
        t = self.sync()
        self.sim.apply(Command(t, kind, value))


class _Pump:
    """PumpMechanism over the bench's simulator."""

    firmware = "NE1000V3.928"

    def __init__(self, bench: PhysicalBench, seed: int) -> None:
        self._b = bench
        self.model = "NE-1000" if bench.truth0.pump_kind == "syringe" else "MTV-100"
        self.serial = f"MT{seed:06d}"
        self._target: float | None = None

    def _dv_range(self) -> tuple[float, float]:
        return self._b.sim.rate_range_ml_h()

    def rate_range_ml_h(self) -> tuple[float, float]:
        self._b.sync()
        return self._dv_range()

    def snapshot(self) -> PumpSnapshot:
        b = self._b
        t = b.sync()
        sim = b.sim
        st = sim.state
        alarms = sim.alarms()
        running = bool(st.running[0])
        inp = sim.inputs
        pump_alarms = frozenset(_ALARM_MAP[a] for a in _ALARM_MAP if a in alarms)
        if running:
            if inp.purge:
                state = PumpState.PURGING
            else:
                state = PumpState.INFUSING if inp.direction > 0 else PumpState.WITHDRAWING
        elif int(alarms) & int(Alarm.blocking()):
            state = PumpState.ALARM
        else:
            state = PumpState.STOPPED
        rate = 0.0
        if running:
            rate = self._dv_range()[1] if inp.purge else inp.rate_ml_h
        return PumpSnapshot(
            t_s=t,
            state=state,
            alarms=pump_alarms,
            rate_ml_h=rate,
            rate_setpoint_ml_h=inp.rate_ml_h,
            infusing=inp.direction > 0,
            infused_ml=float(st.infused_ml[0]),
            withdrawn_ml=float(st.withdrawn_ml[0]),
            volume_target_ml=self._target,
            diameter_mm=self.diameter_mm(),
            pressure_mmhg=sim.sensed_pressure_mmhg(),
            uptime_s=t,
            syringe_empty=bool(alarms & Alarm.EMPTY),
        )

    def diameter_mm(self) -> float:
        sim = self._b.sim
        if sim.inputs.diameter_mm is not None:
            return sim.inputs.diameter_mm
        pump = sim.params.pump
        return float(getattr(pump, "configured_diameter_mm", 0.0))

    def call_at(self, t_s: float, callback: Callable[[], None]) -> Callable[[], None]:
        return self._b.call_at(t_s, callback)

    def set_pressure_sensor(self, present: bool) -> None:
        if self._b.truth0.pump_kind != "syringe":
            return  # a volumetric pump's pressure sensing is part of its set
        self._b.set_truth({"pump.pressure_sensor": present})

    def set_diameter_mm(self, diameter_mm: float) -> None:
        if self._b.truth0.pump_kind != "syringe":
            raise ValueError("a volumetric pump has no syringe diameter")
        if not (math.isfinite(diameter_mm) and 0.1 <= diameter_mm <= 60.0):
            raise ValueError(f"syringe diameter {diameter_mm!r} mm is outside 0.1–60 mm")
        self._b.command(CommandKind.SET_DIAMETER, diameter_mm)

    def set_rate_ml_h(self, rate_ml_h: float) -> None:
        low, high = self.rate_range_ml_h()
        if not (math.isfinite(rate_ml_h) and low <= rate_ml_h <= high):
            raise ValueError(f"rate {rate_ml_h!r} mL/h is outside {low:g}–{high:.6g} mL/h")
        self._b.command(CommandKind.SET_RATE, rate_ml_h)

    def set_direction(self, infuse: bool) -> None:
        self._b.command(CommandKind.SET_DIRECTION, 1.0 if infuse else -1.0)

    def set_volume_target_ml(self, volume_ml: float | None) -> None:
        if volume_ml is not None and not (math.isfinite(volume_ml) and volume_ml >= 0):
            raise ValueError(f"volume target {volume_ml!r} mL must be >= 0")
        self._target = volume_ml or None
        self._b.command(CommandKind.SET_TARGET, volume_ml or 0.0)

    def _check_startable(self) -> None:
        blocking = int(self._b.sim.alarms()) & int(Alarm.blocking())
        if blocking:
            names = ", ".join(_ALARM_MAP[a].value for a in _ALARM_MAP if int(a) & blocking)
            raise RuntimeError(f"pump alarm active ({names}); clear it first")

    def start(self) -> None:
        self._b.sync()
        self._check_startable()
        self._b.command(CommandKind.START)

    def purge(self) -> None:
        self._b.sync()
        self._check_startable()
        self._b.command(CommandKind.PURGE)

    def stop(self) -> None:
        self._b.command(CommandKind.STOP)

    def clear_alarms(self) -> None:
        self._b.command(CommandKind.CLEAR_ALARMS)

    def clear_volume(self, which: Literal["infused", "withdrawn", "both"] = "both") -> None:
        code = {"both": 0.0, "infused": 1.0, "withdrawn": 2.0}[which]
        self._b.command(CommandKind.CLEAR_VOLUME, code)

    def raise_alarm(self, alarm: PumpAlarm) -> None:
        bit = _PUMP_ALARM_BITS.get(alarm)
        if bit is None:
            raise ValueError(f"alarm {alarm} cannot be raised on this pump")
        self._b.command(CommandKind.RAISE_ALARM, float(int(bit)))


class _Balance:
    """BalanceMechanism over the bench's simulator (weighing cell + display)."""

    firmware = "MT-EMU 1.0"

    def __init__(self, bench: PhysicalBench, seed: int) -> None:
        self._b = bench
        p = bench.truth0.balance
        self.model = "MT-EMU220"
        self.serial = f"B{seed:07d}"
        self.capacity_g = p.capacity_g
        self.readability_g = p.readability_g
        self._zero_g = 0.0
        self._tare_g = 0.0
        # The balance's noise has its own stream so that adding pump traffic does not
        # change the balance's readings for a given seed.
        self._rng = np.random.default_rng([seed, 1])

    def _settled_and_load(self) -> tuple[float, float, float]:
        t = self._b.sync()
        sim = self._b.sim
        return t, float(sim.state.settled_g[0]), sim.load_g()

    def snapshot(self) -> BalanceSnapshot:
        t, settled, load = self._settled_and_load()
        p = self._b.sim.params.balance
        shown = display(
            np.array([settled - self._zero_g]),
            np.array([load - self._zero_g]),
            readability_g=p.readability_g,
            stability_band_g=p.stability_band_g,
            capacity_g=p.capacity_g,
            noise_sd_g=p.noise_sd_g,
            tare_g=self._tare_g,
            rng=self._rng,
        )
        net = float(shown.net_g[0])
        return BalanceSnapshot(
            t_s=t,
            net_g=net,
            gross_g=net + self._tare_g,
            tare_g=self._tare_g,
            stable=bool(shown.stable[0]),
            overload=bool(shown.overload[0]),
            underload=bool(shown.underload[0]),
        )

    def tare(self) -> float:
        _, settled, _ = self._settled_and_load()
        d = self.readability_g
        gross = settled - self._zero_g
        self._tare_g = round(gross / d) * d if d > 0 else gross
        return self._tare_g

    def zero(self) -> None:
        _, settled, _ = self._settled_and_load()
        self._zero_g = settled
        self._tare_g = 0.0

    def clear_tare(self) -> None:
        self._b.sync()
        self._tare_g = 0.0


class _BenchIO:
    """BenchIOMechanism: the pinch valve and the inline pressure transducer."""

    def __init__(self, bench: PhysicalBench, seed: int) -> None:
        self._b = bench
        self.model = "MT-BIO-8"
        self.serial = f"IO{seed:06d}"
        self._rng = np.random.default_rng([seed, 2])

    def set_occluded(self, occluded: bool) -> None:
        self._b.command(CommandKind.OCCLUDE if occluded else CommandKind.RELEASE)

    def occluded(self) -> bool:
        self._b.sync()
        return bool(self._b.sim.inputs.occluded)

    def pressure_mmhg(self) -> float:
        self._b.sync()
        p = float(self._b.sim.state.pressure_mmhg[0])
        noise = self._b.transducer_noise_mmhg
        return p + (float(self._rng.standard_normal()) * noise if noise > 0 else 0.0)
