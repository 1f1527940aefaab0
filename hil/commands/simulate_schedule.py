"""The rate schedule ``medtwin simulate patient`` infuses: constant, or a scenario's steps.

A scenario file (the one ``medtwin run`` reads, :mod:`medtwin.hil.config`) is planned as a
run plans it (:func:`medtwin.hil.plan.plan_steps`: procedures, boluses and Pumping Programs
expanded through the action table), on a bench that declares no limits, and the pump's
planned commands are played on an *ideal* pump: it delivers exactly the set rate while it
runs, and a volume target stops it once it has delivered that volume since it was last
started (as the twin's pump counts a target). ``set_rate``, ``start``, ``stop`` and
``set_target`` (with what ``bolus`` and ``program`` expand into) move the rate; the other
actions (the balance's tare, the bench's occlusion, marks) do not reach the patient here:
this is the drug the pump was *told* to give. ``medtwin run`` with a ``[patient]`` table
drives the patient with the *measured* delivery instead (:mod:`medtwin.hil.patient_link`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from medtwin.hil.actions import ACTIONS, PlannedStep
from medtwin.hil.config import (
    BenchConfig,
    DeviceConfig,
    DeviceKind,
    ScenarioConfig,
    load_scenario,
)
from medtwin.hil.plan import plan_steps
from numpy.typing import NDArray

__all__ = ["RateSchedule", "constant_schedule", "pump_commands", "schedule_from_scenario"]

_KINDS: tuple[DeviceKind, ...] = ("pump", "balance", "bench-io")


@dataclass(frozen=True)
class RateSchedule:
    """A piecewise-constant infusion rate.

    Attributes
    ----------
    start_s : ndarray, shape (k,)
        Start of each segment (s), strictly increasing, ``start_s[0] == 0``.
    rate_ml_h : ndarray, shape (k,)
        The rate (mL/h) from ``start_s[i]`` to ``start_s[i + 1]`` (the last one to the end).
    duration_s : float
        The end of the schedule (s).
    """

    start_s: NDArray[np.float64]
    rate_ml_h: NDArray[np.float64]
    duration_s: float

    def at(self, t_s: NDArray[np.float64]) -> NDArray[np.float64]:
        """The rate in force at each time (mL/h): the segment that starts at or before it."""
        index = np.searchsorted(self.start_s, t_s, side="right") - 1
        return self.rate_ml_h[np.clip(index, 0, None)]

    def volume_ml(self) -> float:
        """Volume the schedule delivers up to ``duration_s`` (mL)."""
        ends = np.append(self.start_s[1:], self.duration_s)
        return float(np.sum(self.rate_ml_h * (ends - self.start_s)) / 3600.0)


def constant_schedule(rate_ml_h: float, duration_s: float) -> RateSchedule:
    """``rate_ml_h`` from 0 to ``duration_s``."""
    return RateSchedule(np.zeros(1), np.array([float(rate_ml_h)]), float(duration_s))


def _bench_for(scenario: ScenarioConfig) -> BenchConfig:
    """A bench with one device of each kind, named as the scenario's steps name them, and
    no declared limits: what the steps are planned against.

    Built with pydantic's ``model_construct``: these devices are never opened, and their
    protocol and port (which validation would check against the registry) are never read.
    """
    names: dict[str, str] = {kind: kind for kind in _KINDS}
    for step in scenario.steps:
        kind = ACTIONS[step.action].kind
        if kind is not None and step.device is not None:
            names[kind] = step.device
    if scenario.patient is not None and scenario.patient.pump is not None:
        names["pump"] = scenario.patient.pump
    devices = [
        DeviceConfig.model_construct(name=names[k], kind=k, protocol="", port="unused")
        for k in _KINDS
    ]
    return BenchConfig.model_construct(name="simulate", devices=devices)


def _play(planned: list[PlannedStep], duration_s: float) -> RateSchedule:
    """The ideal pump's rate under the planned commands (see the module docstring)."""
    starts: list[float] = [0.0]
    rates: list[float] = [0.0]
    rate = 0.0
    running = False
    target_ml = 0.0
    run_start_s = 0.0
    run_counted_ml = 0.0  # volume delivered since the last start, up to run_start_s

    def emit(t_s: float) -> None:
        value = rate if running else 0.0
        if t_s == starts[-1]:
            rates[-1] = value
        elif value != rates[-1]:
            starts.append(t_s)
            rates.append(value)

    def advance(t_s: float) -> None:
        """Let the pump run to ``t_s``, stopping it where it reaches its target."""
        nonlocal running, run_counted_ml, run_start_s
        if running and rate > 0 and target_ml > 0:
            reached_s = run_start_s + (target_ml - run_counted_ml) / rate * 3600.0
            if reached_s <= t_s:
                running = False
                emit(max(reached_s, starts[-1]))
                run_start_s = t_s
                return
        if running:
            run_counted_ml += rate * (t_s - run_start_s) / 3600.0
        run_start_s = t_s

    for step in planned:
        t_s = min(step.t_s, duration_s)
        advance(t_s)
        if step.action == "set_rate":
            rate = float(step.value)
        elif step.action == "start":
            if not running:
                run_counted_ml = 0.0
            running = True
        elif step.action == "stop":
            running = False
        elif step.action == "set_target":
            target_ml = 0.0 if math.isnan(step.value) else float(step.value)
        else:
            continue
        emit(t_s)
    advance(duration_s)
    return RateSchedule(np.array(starts), np.array(rates), float(duration_s))


def pump_commands(scenario: ScenarioConfig) -> list[PlannedStep]:
    """The pump's planned commands of a scenario, in time order (what :func:`_play` plays).

    Raises
    ------
    ConfigurationError
        A step that cannot be planned (naming ``file:steps[i].field``).
    """
    bench = _bench_for(scenario)
    pump = bench.device_of_kind("pump")
    assert pump is not None
    return [s for s in plan_steps(bench, scenario) if s.device == pump.name]


def schedule_from_scenario(scenario: ScenarioConfig | str | Path) -> RateSchedule:
    """The pump's rate over a scenario (its steps and procedures), on an ideal pump.

    Raises
    ------
    ConfigurationError
        The scenario file is malformed or a step cannot be planned (naming file:field).
    """
    if not isinstance(scenario, ScenarioConfig):
        scenario = load_scenario(scenario)
    return _play(pump_commands(scenario), float(scenario.duration))
