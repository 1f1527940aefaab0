"""The infusion line between the pump and the collecting vessel (or patient).

A lumped model: the line's compliance ``C`` (tubing; the syringe's barrel compliance is
added by the pump model) stores volume as pressure rises, and the outlet resistance ``R``
(extension set, filter, cannula) drains it towards the equilibrium pressure
``P_eq = back_pressure − ρ·g·head_height``::

    C·dP/dt = q_pump(t) − (P − P_eq)/R          (line open)
    C·dP/dt = q_pump(t)                          (downstream occluded)

so the line is a first-order filter with time constant τ = R·C while open, and an
integrator (``dP/dt = Q/C``) while occluded: the occlusion pressure build-up of
IEC 60601-2-24's occlusion test. The outlet volume follows from mass balance,
``V_out = V_pump − C·(P − P_0)``. Pressures are gauge pressures in mmHg at the pump.
"""

from __future__ import annotations

from dataclasses import dataclass

from medtwin.device_models.base import param

__all__ = ["MMHG_PER_CM_WATER", "LineParams"]

#: Hydrostatic pressure of 1 cm of water (ρ = 1 g/mL, g = 9.80665 m/s²) in mmHg.
MMHG_PER_CM_WATER = 0.73556


@dataclass(frozen=True)
class LineParams:
    """Compliance, resistance and static back-pressure of the infusion line.

    Defaults are nominal for a 150 cm extension set with a needle into a collecting vessel
    (τ = R·C ≈ 20 s with a 50 mL syringe); measure or calibrate them for a real bench.
    """

    tubing_compliance_ul_per_mmhg: float = param(
        0.3, unit="µL/mmHg", doc="tubing + connector compliance (nominal)", minimum=0.0
    )
    resistance_mmhg_per_ml_h: float = param(
        2.0,
        unit="mmHg/(mL/h)",
        doc="outlet resistance: pressure drop per mL/h of flow (nominal)",
        minimum=1e-6,
    )
    back_pressure_mmhg: float = param(
        0.0, unit="mmHg", doc="pressure at the outlet (venous / back-pressure test)"
    )
    head_height_cm: float = param(
        0.0, unit="cm", doc="height of the pump above the outlet (siphon when positive)"
    )

    @property
    def equilibrium_pressure_mmhg(self) -> float:
        """Pressure at the pump with no flow: back-pressure minus the hydrostatic head."""
        return self.back_pressure_mmhg - MMHG_PER_CM_WATER * self.head_height_cm
