"""The HIL runner: the scenario applied to the real devices and to the twin, side by side.

One run walks a merged timeline of scenario steps and sample ticks on one
:class:`~medtwin.drivers.clock.Clock`:

1. at a step's time, the command goes to the real device, and (once the device accepted
   it) to the twin as well, with whatever the device reported back (a balance's tare), so
   the twin sees exactly what the device saw;
2. at a device's sample tick it is read; the twin is evaluated at the reading's own
   timestamp; both go to the run store and the residual to the live comparator, whose
   drift events are stored as they happen;
3. with a scenario's ``[patient]``, the delivery those readings measure (the balance's
   flow, or the pump's counter) drives the patient's PK/PD model, once for the real
   device and once for the twin (:mod:`medtwin.hil.patient_link`).

Before anything moves, the scenario is planned (:mod:`medtwin.hil.plan`): every step is
checked against the bench's declared limits, and a step the pump would refuse stops the
run before it starts, naming the step. Each step's device call and twin input come from
the action table (:mod:`medtwin.hil.actions`), which the pytest plug-in uses too. A device that
stops answering (after the driver's own retries) is marked *lost*: its channels get gaps
(NaN), the run goes on with the others, the device is retried with a doubling backoff in
scenario time, and the run ends ``degraded``. Stopping the run (Ctrl-C, SIGTERM, or the
``stop`` event) stops the pumps first and closes the run as ``aborted`` with everything
recorded so far.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np
from medtwin.device_models.schedule import CommandKind
from medtwin.drivers.base import Device, PumpStatus
from medtwin.drivers.clock import Clock, VirtualClock
from medtwin.drivers.errors import DeviceError, MedtwinError, ProtocolError
from medtwin.drivers.vital_signs import OximeterReading, PulseOximeter
from medtwin.hil.actions import ACTIONS, PlannedStep
from medtwin.hil.analysis.gravimetry import policy_from_balance_params
from medtwin.hil.comparator import DriftEvent, LiveComparator
from medtwin.hil.config import BenchConfig, ScenarioConfig
from medtwin.hil.measurements import Verdict
from medtwin.hil.monitor_twin import (
    MONITOR_CHANNEL_KINDS,
    UNCOMPARED,
    MonitorTwin,
    channel_defs,
    channel_tags,
    column,
)
from medtwin.hil.patient_link import PatientLink
from medtwin.hil.plan import RunPlan, plan_steps
from medtwin.hil.procedures import (
    ProcedureResult,
    RunSeries,
    analyse,
    pressure_alarm_bits,
)
from medtwin.hil.rig import BenchRig, RigStatus
from medtwin.hil.store import RunStore, RunWriter
from medtwin.hil.twin import (
    SD_SUFFIX,
    Twin,
    build_twin,
    schedule_from_events,
    twin_series,
)

__all__ = ["PlannedStep", "RunPlan", "RunResult", "Runner", "plan_steps", "software_version"]

#: Longest wait (scenario time) between attempts to reach a lost device.
LOST_BACKOFF_MAX_S = 60.0
#: Readings handed to the twin and the comparator in one block, at most ...
FLUSH_SAMPLES = 64
#: ... and at least this often (wall seconds), so that drift shows live on a wall clock.
FLUSH_WALL_S = 0.5
#: On a virtual clock, how long (wall seconds) a sample waits for an oximeter's next
#: reading, and how often it looks.
FRESH_WAIT_S = 3.0
FRESH_POLL_S = 0.005


def software_version() -> str:
    try:
        return f"medtwin {version('medtwin')}"
    except PackageNotFoundError:  # pragma: no cover - bare checkout
        return "medtwin (unknown version)"


# --------------------------------------------------------------------------- results


@dataclass
class RunResult:
    """What a run produced (also returned as the ``--json`` document)."""

    run_id: int
    status: str
    bench: str
    scenario: str
    clock: str
    duration_s: float
    wall_s: float
    samples: dict[str, int]
    channels: dict[str, Any]
    drift_events: list[DriftEvent]
    events: dict[str, int]
    identities: dict[str, dict[str, str]]
    db: str
    lost: list[str] = field(default_factory=list)
    procedures: list[ProcedureResult] = field(default_factory=list)
    #: scenario time of the last tick run (``duration_s`` when the run went to its end).
    scenario_time_s: float = 0.0
    #: ``{"device_key", "version", "id"}`` of the calibration the twin used, or None.
    calibration: dict[str, Any] | None = None

    @property
    def verdicts(self) -> list[Verdict]:
        return [v for p in self.procedures for v in p.verdicts]

    def as_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "status": self.status,
            "bench": self.bench,
            "scenario": self.scenario,
            "clock": self.clock,
            "duration_s": self.duration_s,
            "wall_s": round(self.wall_s, 3),
            "speedup": round(self.duration_s / self.wall_s, 1) if self.wall_s > 0 else None,
            "samples": self.samples,
            "channels": self.channels,
            "drift_events": [e.as_json() for e in self.drift_events],
            "events": self.events,
            "devices": self.identities,
            "lost_devices": self.lost,
            "procedures": [p.as_json() for p in self.procedures],
            "verdicts": [v.as_dict() for v in self.verdicts],
            "db": self.db,
            "scenario_time_s": self.scenario_time_s,
            "calibration": self.calibration,
        }


# --------------------------------------------------------------------------- the runner


@dataclass
class _Channel:
    name: str
    unit: str
    device: str
    twin_key: str
    real_id: int
    twin_id: int
    compared: bool
    sd_id: int | None = None  # the twin's prediction SD (<name>.sd), when it has one


@dataclass
class _Lost:
    since_t_s: float
    retry_at_t_s: float
    backoff_s: float


ProgressHook = Callable[[float, dict[str, int], int], None]


class Runner:
    """Runs one scenario on one bench beside the twin.

    Parameters
    ----------
    bench, scenario : BenchConfig, ScenarioConfig
        Validated files.
    store : RunStore
        Where the run goes.
    clock : Clock
        ``VirtualClock`` for an all-emulated bench, else ``WallClock``.
    progress : callable, optional
        Called after every tick with (scenario time, sample counts, drift event count).
    rig, twin : BenchRig, Twin, optional
        A bench already standing (and its twin), shared by several runs (the pytest
        plugin's session bench). The run then neither starts nor tears the rig down (it
        still stops the pumps at its end), its scenario time starts at the clock's "now",
        and the twin carries on from where the previous run left it, like the bench does.
    plan : RunPlan, optional
        ``RunPlan.of(bench, scenario)`` when the caller already checked the pair.
    """

    def __init__(
        self,
        bench: BenchConfig,
        scenario: ScenarioConfig,
        *,
        store: RunStore,
        clock: Clock,
        progress: ProgressHook | None = None,
        rig: BenchRig | None = None,
        twin: Twin | None = None,
        plan: RunPlan | None = None,
    ) -> None:
        self.bench = bench
        self.scenario = scenario
        self.store = store
        self.clock = clock
        self.progress = progress
        plan = plan or RunPlan.of(bench, scenario)
        self.steps = plan.steps
        self.ticks = plan.ticks
        self._own_rig = rig is None
        self.rig = rig if rig is not None else BenchRig(bench, clock=clock)
        self.twin: Twin | None = twin
        self.calibration_used: dict[str, Any] | None = None
        self._t0 = 0.0  # clock time of scenario time 0
        self.writer: RunWriter | None = None
        self.comparator: LiveComparator | None = None
        self._channels: dict[str, list[_Channel]] = {}
        self._lost: dict[str, _Lost] = {}
        self._ever_lost: set[str] = set()
        self._samples: dict[str, int] = defaultdict(int)
        self._event_counts: dict[str, int] = defaultdict(int)
        self._last_mass: dict[str, tuple[float, float, float]] = {}
        # Readings wait here until the twin and the comparator take them as one block:
        # before every command, every FLUSH_SAMPLES readings and every FLUSH_WALL_S.
        self._pending: list[tuple[str, float, dict[str, float]]] = []
        self._pending_since = time.monotonic()
        self._last_alarms: dict[str, frozenset[str]] = {}
        self._specs = plan.specs
        self.procedures = plan.procedures
        self._reached_s = 0.0  # scenario time of the last tick run
        self.procedure_results: list[ProcedureResult] = []
        # The scenario's [patient], driven by the real and the twin delivery (patient_link).
        self.patient = None if plan.patient is None else PatientLink(plan.patient)
        # The monitors' twin (a bench with oximeters or a simulator) and the simulator's
        # settings as the simulator acknowledged them (NaN until the first is set).
        self.monitor_twin: MonitorTwin | None = None
        self._last_t: dict[str, float] = {}  # scenario time of each device's last reading
        self._sim_settings: dict[str, float] = {
            ch.quantity: math.nan for ch in MONITOR_CHANNEL_KINDS["simulator"]
        }

    # -- set-up -----------------------------------------------------------------------------

    def _open_channels(self, writer: RunWriter) -> None:
        for cfg in self.bench.devices:
            channels = []
            for ch in channel_defs(cfg.kind):
                name = f"{cfg.name}.{ch.quantity}"
                real_id = writer.add_channel(name, unit=ch.unit, source="real", device=cfg.name)
                twin_id = writer.add_channel(name, unit=ch.unit, source="twin", device=cfg.name)
                key = f"{cfg.kind}.{ch.quantity}"
                # the twin's prediction SD is stored where it has one (model noise, or a
                # calibration's covariance): the report draws the band from it
                sd_id = (
                    writer.add_channel(
                        name + SD_SUFFIX, unit=ch.unit, source="twin", device=cfg.name
                    )
                    if self.twin is not None and self.twin.has_sd(key)
                    else None
                )
                compared = key not in UNCOMPARED
                channels.append(
                    _Channel(name, ch.unit, cfg.name, key, real_id, twin_id, compared, sd_id)
                )
            self._channels[cfg.name] = channels
        if self.patient is not None:
            self.patient.open(writer, self.comparator)

    # -- the run ------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event | None = None) -> RunResult:
        """Stand the bench up, run the timeline, take the bench down, close the run."""
        stop = stop or asyncio.Event()
        wall_start = time.perf_counter()
        status = "completed"
        try:
            if self._own_rig:
                await self.rig.start()
            else:
                self.rig.require_ready("Runner.run")
            if self.twin is None:
                self.twin, self.calibration_used = build_twin(
                    self.bench, self.rig.identities, self.store
                )
            self._t0 = self.clock.now()
            if any(d.kind in MONITOR_CHANNEL_KINDS for d in self.bench.devices):
                self.monitor_twin = MonitorTwin(self.bench, t0_s=self._t0)
            self.writer = self.store.start_run(
                bench_name=self.bench.name,
                bench_text=self.bench.text,
                scenario_name=self.scenario.name,
                scenario_text=self.scenario.text,
                software_version=software_version(),
                clock=self.clock if self._t0 == 0.0 else _clock_kind(self.clock),
                twin_params=self.twin.params,
                devices=[
                    {
                        "name": cfg.name,
                        "kind": cfg.kind,
                        "protocol": cfg.protocol,
                        "port": self.rig.ports.get(cfg.name, cfg.port),
                        "identity": {
                            "model": self.rig.identities[cfg.name].model,
                            "serial": self.rig.identities[cfg.name].serial,
                            "firmware": self.rig.identities[cfg.name].firmware,
                            # IEEE 11073-10101 terms of the device's channels (the store's
                            # channel table has no column for them)
                            "mdc": _mdc_tags(cfg.name, cfg.kind),
                        },
                    }
                    for cfg in self.bench.devices
                ],
            )
            self.comparator = LiveComparator(self._specs)
            self._open_channels(self.writer)
            aborted = await self._timeline(stop)
            self._flush_readings()
            # A σ window still open (a short run) is closed with the samples there are.
            for event in self.comparator.finish():
                self._drift(event)
            if self.procedures and not aborted:
                self._analyse_procedures()
            status = "aborted" if aborted else ("degraded" if self._ever_lost else "completed")
        except BaseException:
            # Cancelled (a second Ctrl-C) or failed: what was read so far is kept, and the
            # run is closed as aborted rather than completed.
            status = "aborted"
            if self.writer is not None and self.twin is not None and self.comparator is not None:
                with contextlib.suppress(Exception):
                    self._flush_readings()
            raise
        finally:
            # Pumps first, then everything else; the run is closed whatever happened.
            stopped = await self.rig.stop_pumps() if self.rig.status is RigStatus.READY else None
            if stopped is not None and self.writer is not None and self.writer.status == "running":
                self.writer.add_event(
                    self._now(), "note", message=f"end of run ({status}): {stopped}"
                )
            if self._own_rig:
                await self.rig.stop()
            if self.writer is not None and self.writer.status == "running":
                self.writer.finish(status, summary=self._summary(status))
        return self._result(status, time.perf_counter() - wall_start)

    async def _timeline(self, stop: asyncio.Event) -> bool:
        times = sorted({*self.ticks, *(s.t_s for s in self.steps)})
        steps_at: dict[float, list[PlannedStep]] = defaultdict(list)
        for step in self.steps:
            steps_at[step.t_s].append(step)
        for t in times:
            if stop.is_set():
                return True
            await self.clock.sleep_until(self._t0 + t)
            for step in steps_at.get(t, ()):
                await self._execute(step)
            due = [name for name in self.ticks.get(t, ()) if self._may_sample(name, t)]
            if due:
                await asyncio.gather(*(self._sample(name, t) for name in due))
            if (
                len(self._pending) >= FLUSH_SAMPLES
                or time.monotonic() - self._pending_since >= FLUSH_WALL_S
            ):
                self._flush_readings()
            self._reached_s = t
            if self.progress is not None:
                self.progress(
                    t, dict(self._samples), len(self.comparator.events if self.comparator else ())
                )
        return stop.is_set()

    # -- steps ----------------------------------------------------------------------------------

    async def _execute(self, step: PlannedStep) -> None:
        assert self.writer is not None
        assert self.twin is not None
        writer, twin = self.writer, self.twin
        if step.device is None:  # an action that addresses no device (mark): a note
            writer.add_event(self._now(), "note", message=step.note or step.label)
            return
        # The twin must have seen every reading up to now before its inputs change.
        self._flush_readings()
        device = self.rig.devices[step.device or ""]
        description = step.describe()
        data: dict[str, Any] = {
            "step": step.label,
            "action": step.action,
            "value": _finite(step.value),
        }
        if step.arguments:
            data["arguments"] = {k: _finite(v) for k, v in step.arguments.items()}
        try:
            twin_input = await self._command(device, step)
        except MedtwinError as exc:
            self._count("fault")
            writer.add_event(
                self._now(),
                "fault",
                device=device.name,
                message=f"{step.label}: {description} failed: {exc}",
                data=data,
            )
            return
        t = self._now()
        self._count("command")
        writer.add_event(
            t,
            "command",
            device=device.name,
            message=f"{step.label}: {description}",
            data=data,
        )
        if twin_input is not None:
            twin.command(self._t0 + t, *twin_input)
            if self.patient is not None:
                self.patient.command(device.name, twin_input[0])
        settings = ACTIONS[step.action].settings_input(step.arguments)
        if settings:
            self._sim_settings.update(settings)
            if self.monitor_twin is not None:
                self.monitor_twin.command(self._t0 + t, settings)

    async def _command(self, device: Device, step: PlannedStep) -> tuple[CommandKind, float] | None:
        """Send one step to its device (the action table's device call); return the twin's
        input for it (None when the twin does not see the action)."""
        entry = ACTIONS[step.action]
        await entry.send(device, step)
        return entry.twin_input(step.value)

    # -- sampling -------------------------------------------------------------------------------

    def _may_sample(self, name: str, t: float) -> bool:
        lost = self._lost.get(name)
        if lost is None or t >= lost.retry_at_t_s:
            return True
        self._gap(name, t)
        return False

    def _gap(self, name: str, t: float) -> None:
        assert self.writer is not None
        for ch in self._channels.get(name, ()):
            self.writer.append(ch.real_id, t, math.nan)

    async def _sample(self, name: str, t: float) -> None:
        device = self.rig.devices[name]
        try:
            if name in self._lost and device.status.value != "open":
                await device.close()
                await device.open()
            values = await self._read(name, device)
        except (DeviceError, ProtocolError) as exc:
            self._mark_lost(name, t, exc)
            return
        if name in self._lost:
            lost = self._lost.pop(name)
            assert self.writer is not None
            self.writer.add_event(
                t,
                "note",
                device=name,
                message=f"{name} answers again after {t - lost.since_t_s:g} s",
                data={"recovered": True},
            )
        if values[0] <= self._last_t.get(name, -math.inf):
            return  # no newer reading since the last (a streaming device's newest is older)
        self._last_t[name] = values[0]
        self._record(name, values)

    async def _read(self, name: str, device: Device) -> tuple[float, dict[str, float]]:
        rig = self.rig
        cfg = self.bench.device(name)
        if cfg.kind == "pump":
            assert rig.pump is not None
            status = await rig.pump.read_status()
            self._alarm_events(name, status)
            values = {
                "infused_ml": _num(status.infused_ml),
                "rate_ml_h": _num(status.rate_ml_h),
                "pressure_mmhg": _num(status.pressure_mmhg),
            }
            return status.t_s - self._t0, values
        if cfg.kind == "balance":
            assert rig.balance is not None
            reading = await rig.balance.read(stable=False)
            return reading.t_s - self._t0, {"mass_g": reading.mass_g}
        if cfg.kind == "oximeter":
            oximeter = rig.oximeter(name)
            shown = await self._fresh(oximeter)
            self._oximeter_alarms(name, shown.t_s - self._t0, shown)
            return shown.t_s - self._t0, {
                "spo2_percent": _num(shown.spo2_percent),
                "pulse_rate_bpm": _num(shown.pulse_rate_bpm),
                "pi_percent": _num(shown.pi_percent),
                "link_errors": float(sum(oximeter.link_errors.values())),
            }
        if cfg.kind == "simulator":
            # A simulator is not read: its channels are the settings it acknowledged.
            return self._now(), dict(self._sim_settings)
        assert rig.bench_io is not None
        io = await rig.bench_io.read_status()
        return io.t_s - self._t0, {"pressure_mmhg": io.pressure_mmhg}

    def _alarm_events(self, name: str, status: PumpStatus) -> None:
        assert self.writer is not None
        alarms = frozenset(a.value for a in status.alarms)
        previous = self._last_alarms.get(name, frozenset())
        if alarms != previous:
            raised, cleared = sorted(alarms - previous), sorted(previous - alarms)
            parts = ([f"raised {', '.join(raised)}"] if raised else []) + (
                [f"cleared {', '.join(cleared)}"] if cleared else []
            )
            self._count("alarm")
            self.writer.add_event(
                status.t_s - self._t0,
                "alarm",
                device=name,
                message=f"{name}: " + "; ".join(parts),
                data={"alarms": sorted(alarms), "state": status.state.value},
            )
            self._last_alarms[name] = alarms

    async def _fresh(self, oximeter: PulseOximeter) -> OximeterReading:
        """The oximeter's newest reading; on a virtual clock, the second one decoded at or
        after now. An oximeter streams at its own pace in wall time, so after a jump of
        scenario time the newest reading predates the jump, and the first one after it may
        still carry values sent before it (a Nonin packet spans 25 frames): wait, at most
        FRESH_WAIT_S of wall time, for the one after, which shows the patient at now."""
        shown = await oximeter.read()
        if not isinstance(self.clock, VirtualClock):
            return shown
        now = self.clock.now()
        fresh = 0
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(FRESH_WAIT_S):
                while fresh < 2:
                    await asyncio.sleep(FRESH_POLL_S)
                    newest = await oximeter.read()
                    if newest is not shown:
                        shown = newest
                        fresh += shown.t_s >= now
        return shown

    def _oximeter_alarms(self, name: str, t: float, shown: OximeterReading) -> None:
        """An ``alarm`` event when the oximeter's reported alarms or its sensor-off flag
        change (``sensor_off`` joins the alarm names)."""
        assert self.writer is not None
        alarms = shown.alarms | ({"sensor_off"} if shown.sensor_off else set())
        previous = self._last_alarms.get(name, frozenset())
        if alarms == previous:
            return
        raised, cleared = sorted(alarms - previous), sorted(previous - alarms)
        parts = ([f"raised {', '.join(raised)}"] if raised else []) + (
            [f"cleared {', '.join(cleared)}"] if cleared else []
        )
        self._count("alarm")
        self.writer.add_event(
            t,
            "alarm",
            device=name,
            message=f"{name}: " + "; ".join(parts),
            data={"alarms": sorted(alarms)},
        )
        self._last_alarms[name] = frozenset(alarms)

    def _record(self, name: str, reading: tuple[float, dict[str, float]]) -> None:
        t, real = reading
        self._samples[name] += 1
        self._pending.append((name, t, real))

    def _flush_readings(self) -> None:
        """Evaluate the twin at every pending reading, store both, feed the comparator."""
        self._pending_since = time.monotonic()
        if not self._pending:
            return
        assert self.writer is not None
        assert self.twin is not None
        assert self.comparator is not None
        pending, self._pending = self._pending, []
        times = np.array([t for _, t, _ in pending])
        order = np.argsort(times, kind="stable")
        twin_all, sd_all = self.twin.predict(self._t0 + times[order])
        position = np.empty_like(order)
        position[order] = np.arange(order.size)
        by_device: dict[str, list[int]] = defaultdict(list)
        for i, (name, _, _) in enumerate(pending):
            by_device[name].append(i)
        monitored = [
            i
            for i, (name, _, _) in enumerate(pending)
            if self.bench.device(name).kind in MONITOR_CHANNEL_KINDS
        ]
        monitor: dict[int, dict[str, float]] = {}
        if monitored and self.monitor_twin is not None:
            rows_t = [(pending[i][0], self._t0 + pending[i][1]) for i in monitored]
            monitor = dict(zip(monitored, self.monitor_twin.predict(rows_t), strict=True))
        for name, rows in by_device.items():
            cfg = self.bench.device(name)
            t = times[rows]
            quantities = [ch.name.split(".", 1)[1] for ch in self._channels[name]]
            real = {
                quantity: np.array([pending[i][2].get(quantity, math.nan) for i in rows])
                for quantity in quantities
            }
            if cfg.kind in MONITOR_CHANNEL_KINDS:
                values = [monitor.get(i, {}) for i in rows]
                twin = {f"{cfg.kind}.{q}": column(values, q) for q in quantities}
                twin_sd: dict[str, np.ndarray] = {}
            else:
                twin = {key: values[position[rows]] for key, values in twin_all.items()}
                twin_sd = {key: values[position[rows]] for key, values in sd_all.items()}
            if cfg.kind == "balance":
                self._flows(name, t, real, twin)
            for ch in self._channels[name]:
                quantity = ch.name.split(".", 1)[1]
                r = real[quantity]
                w = twin[ch.twin_key]
                self.writer.append(ch.real_id, t, r)
                self.writer.append(ch.twin_id, t, w)
                sd = twin_sd.get(ch.twin_key) if ch.sd_id is not None else None
                if sd is not None and ch.sd_id is not None:
                    self.writer.append(ch.sd_id, t, sd)
                if not ch.compared:
                    continue  # recorded beside the others, not judged (a link counter)
                if cfg.kind == "pump" and quantity == "pressure_mmhg" and np.all(np.isnan(r)):
                    continue  # the protocol does not report pressure: nothing to compare
                known = np.isfinite(w)  # e.g. no flow before the second balance reading
                band_sd = None if sd is None else sd[known]
                for event in self.comparator.update(ch.name, t[known], r[known], w[known], band_sd):
                    self._drift(event)
            if self.patient is not None:
                for event in self.patient.update(name, t, real, twin):
                    self._drift(event)

    def _flows(
        self, name: str, t: np.ndarray, real: dict[str, np.ndarray], twin: dict[str, np.ndarray]
    ) -> None:
        """Flow from consecutive balance readings, for the real balance and for the twin."""
        assert self.twin is not None
        mass_real = real["mass_g"]
        mass_twin = twin["balance.mass_g"]
        previous = self._last_mass.get(name, (math.nan, math.nan, math.nan))
        t_prev = np.concatenate([[previous[0]], t[:-1]])
        real_prev = np.concatenate([[previous[1]], mass_real[:-1]])
        twin_prev = np.concatenate([[previous[2]], mass_twin[:-1]])
        real["flow_ml_h"] = self.twin.flow_from_mass(mass_real, real_prev, t - t_prev)
        twin["balance.flow_ml_h"] = self.twin.flow_from_mass(mass_twin, twin_prev, t - t_prev)
        self._last_mass[name] = (float(t[-1]), float(mass_real[-1]), float(mass_twin[-1]))

    def _drift(self, event: DriftEvent) -> None:
        assert self.writer is not None
        self._count("drift")
        arrow = "above" if event.direction == "high" else "below"
        self.writer.add_event(
            event.detected_t_s,
            "drift",
            channel=event.channel,
            message=(
                f"{event.channel}: real {arrow} twin by {event.magnitude:+.4g} {event.unit} "
                f"({event.statistic}), onset {event.onset_t_s:.0f} s"
            ),
            data=event.as_json(),
        )

    def _mark_lost(self, name: str, t: float, exc: BaseException) -> None:
        assert self.writer is not None
        lost = self._lost.get(name)
        if lost is None:
            self._ever_lost.add(name)
            self._count("lost")
            self.writer.add_event(
                t, "lost", device=name, message=f"{name} stopped answering: {exc}"
            )
            self._lost[name] = _Lost(since_t_s=t, retry_at_t_s=t + 1.0, backoff_s=1.0)
        else:
            lost.backoff_s = min(lost.backoff_s * 2.0, LOST_BACKOFF_MAX_S)
            lost.retry_at_t_s = t + lost.backoff_s
        self._gap(name, t)

    def _analyse_procedures(self) -> None:
        """Run the procedures' analyses on the recorded data (real and twin) and store the
        verdicts with the run."""
        assert self.writer is not None
        assert self.twin is not None
        self.writer.flush()
        run = self.store.load_run(self.writer.run_id)
        sides = self._series(run)
        self.procedure_results = analyse(self.procedures, sides)
        verdicts = [v for result in self.procedure_results for v in result.verdicts]
        if verdicts:
            self.store.save_verdicts(self.writer.run_id, verdicts)

    def _series(self, run: Any) -> list[RunSeries]:
        assert self.twin is not None
        balance = self.bench.device_of_kind("balance")
        if balance is None:
            return []
        io = self.bench.device_of_kind("bench-io")
        pump = self.bench.device_of_kind("pump")
        # The one gravimetric policy (hil/analysis/gravimetry.py): the bench's water
        # temperature and buoyancy switch, as the twin's balance declares them.
        gravimetry = policy_from_balance_params(self.twin.params.balance)
        pump_kind = self.twin.params.pump_kind
        sides = []
        for source in ("real", "twin"):
            mass = run.channel(f"{balance.name}.mass_g", source=source)
            keep = np.isfinite(mass.values)
            t_mass, v_mass = mass.t_s[keep], mass.values[keep]
            t_p, v_p = np.empty(0), np.empty(0)
            for cfg, quantity in ((io, "pressure_mmhg"), (pump, "pressure_mmhg")):
                if cfg is None:
                    continue
                ch = run.channel(f"{cfg.name}.{quantity}", source=source)
                ok = np.isfinite(ch.values)
                if ok.any():
                    t_p, v_p = ch.t_s[ok], ch.values[ok]
                    break
            if source == "real":
                alarm_events = [
                    e
                    for e in run.events
                    if e.kind == "alarm" and pump is not None and e.device == pump.name
                ]
                t_alarm = np.array([e.t_s for e in alarm_events])
                alarm = np.array(
                    [
                        bool({"occlusion", "motor_stall"} & set(e.data.get("alarms", ())))
                        for e in alarm_events
                    ],
                    dtype=bool,
                )
            else:
                replay = twin_series(self.twin.params, schedule_from_events(run.events), t_mass)
                t_alarm = t_mass
                alarm = (replay["pump.alarms"][0].astype(np.int64) & pressure_alarm_bits()) != 0
            sides.append(
                RunSeries(source, t_mass, v_mass, t_p, v_p, t_alarm, alarm, gravimetry, pump_kind)
            )
        return sides

    def _now(self) -> float:
        """Scenario time of this run."""
        return self.clock.now() - self._t0

    def _count(self, kind: str) -> None:
        self._event_counts[kind] += 1

    # -- summary ----------------------------------------------------------------------------------

    def _summary(self, status: str) -> dict[str, Any]:
        stats = self.comparator.stats() if self.comparator else {}
        events = self.comparator.events if self.comparator else []
        return {
            "status": status,
            "samples": dict(self._samples),
            "channels": {name: s.as_json() for name, s in stats.items()},
            "drift_events": [e.as_json() for e in events],
            "events": dict(self._event_counts),
            "lost_devices": sorted(self._ever_lost),
            "procedures": [p.as_json() for p in self.procedure_results],
            "calibration": self.calibration_used,
            "scenario_time_s": self._reached_s,
            "duration_s": self.scenario.duration,
        }

    def _result(self, status: str, wall_s: float) -> RunResult:
        stats = self.comparator.stats() if self.comparator else {}
        return RunResult(
            run_id=self.writer.run_id if self.writer else -1,
            status=status,
            bench=self.bench.name,
            scenario=self.scenario.name,
            clock=type(self.clock).__name__.replace("Clock", "").lower(),
            duration_s=self.scenario.duration,
            wall_s=wall_s,
            samples=dict(self._samples),
            channels={name: s.as_json() for name, s in stats.items()},
            drift_events=list(self.comparator.events if self.comparator else []),
            events=dict(self._event_counts),
            identities={
                name: {"model": i.model, "serial": i.serial, "firmware": i.firmware}
                for name, i in self.rig.identities.items()
            },
            db=self.store.url,
            lost=sorted(self._ever_lost),
            procedures=list(self.procedure_results),
            scenario_time_s=self._reached_s,
            calibration=self.calibration_used,
        )


def _clock_kind(clock: Clock) -> str:
    return "virtual" if isinstance(clock, VirtualClock) else "wall"


def _num(value: float | None) -> float:
    return math.nan if value is None else float(value)


def _mdc_tags(device: str, kind: str) -> dict[str, dict[str, Any]]:
    """The MDC terms of each channel of a device, by channel name (stored with the run's
    devices, exported with them)."""
    return {f"{device}.{ch.quantity}": channel_tags(kind, ch.quantity) for ch in channel_defs(kind)}


def _finite(value: float) -> float | None:
    return None if math.isnan(value) else value
