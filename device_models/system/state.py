"""State of the coupled model (per row) and the piecewise-constant inputs (shared by all rows).

Inputs are constant between commands, which is what lets :mod:`.kernel` advance the state in
closed form per phase.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from medtwin.device_models.system.params import (
    FloatArray,
    Rows,
)
from numpy.typing import NDArray

__all__ = ["Inputs", "SystemState", "initial_state"]


@dataclass
class SystemState:
    """State of every row at one time (arrays of shape (B,)).

    Continuous quantities (volumes, pressure, mass) plus the drive's discrete state: the
    fractional step accumulator, the backlash slack (in steps), the rotor position within
    a finger, the pump's counters and its alarm bits; and the stopper's: the friction force
    the syringe assembly carries (``chain_n``, signed, + pushes the stopper forward) and
    whether the rim is sliding (after breakaway, until the motor stops or reverses), and
    whether an alarm stopped the motor (``creep_held``: the line's pressure, not the rim's
    friction, then holds the stopper, so the rim does not creep until the next start).
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
    chain_n: FloatArray
    sliding: NDArray[np.bool_]
    creep_held: NDArray[np.bool_]

    def take(self, idx: NDArray[np.intp]) -> SystemState:
        return SystemState(**{k: v[idx].copy() for k, v in self.__dict__.items()})

    def put(self, idx: NDArray[np.intp], other: SystemState) -> None:
        for name, value in self.__dict__.items():
            value[idx] = getattr(other, name)

    def copy(self) -> SystemState:
        return SystemState(**{k: v.copy() for k, v in self.__dict__.items()})


def initial_state(rows: Rows, backlash_steps: FloatArray, p0: FloatArray) -> SystemState:
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
        chain_n=zeros.copy(),
        sliding=np.zeros(size, dtype=bool),
        creep_held=np.zeros(size, dtype=bool),
    )


@dataclass
class Inputs:
    """The piecewise-constant inputs (shared by all rows)."""

    rate_ml_h: float = 0.0
    direction: float = 1.0
    purge: bool = False
    occluded: bool = False
    back_pressure_mmhg: float | None = None
    diameter_mm: float | None = None
    target_ml: float = 0.0

    def copy(self) -> Inputs:
        return Inputs(**self.__dict__)
