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

Layout: :mod:`.params` (parameter sets and batches), :mod:`.state` (state and inputs),
:mod:`.kernel` (the closed-form phase update), :mod:`.events` (events inside a phase),
:mod:`.model` (phases, events and commands together), :mod:`.simulator` (:func:`simulate`,
:class:`SystemSimulator`). The public names are re-exported here.
"""

from __future__ import annotations

from medtwin.device_models.system.params import ParameterBatch, SystemParams
from medtwin.device_models.system.simulator import (
    CHANNELS,
    SimulationResult,
    SystemSimulator,
    simulate,
)
from medtwin.device_models.system.state import SystemState

__all__ = [
    "CHANNELS",
    "ParameterBatch",
    "SimulationResult",
    "SystemParams",
    "SystemSimulator",
    "SystemState",
    "simulate",
]
