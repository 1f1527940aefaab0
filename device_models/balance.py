"""The gravimetric measurement chain: a laboratory balance weighing the delivered water.

What the balance displays is built in two stages:

1. **Physics (exact, inside the system model)**: the gross mass on the pan,
   ``m(t) = m_vessel + k_b·ρ(T)·V_out(t) − e·t`` (ρ water density at the recorded
   temperature, k_b the air-buoyancy factor of a steel-calibrated balance, e the
   evaporation rate), and the weighing cell's settling, a first-order lag
   ``dM/dt = (m − M)/τ_settle``. The system model solves both exactly with the line.
2. **Display (this module)**: seeded noise, tare, quantisation to the readability and
   the stability detector (stable while the cell has settled to within
   ``stability_band_g`` of the load), overload/underload.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from medtwin.device_models.base import param
from medtwin.device_models.water import buoyancy_factor, water_density_g_ml
from numpy.typing import NDArray

__all__ = ["BalanceDisplay", "BalanceParams", "display"]


@dataclass(frozen=True)
class BalanceParams:
    """A 220 g / 0.1 mg analytical balance by default: the Metron sizing rule asks for
    ≤ 2 % of the volume delivered per 30 s sample (0.83 mg at 5 mL/h)."""

    readability_g: float = param(0.0001, unit="g", doc="display resolution (d)", minimum=0.0)
    capacity_g: float = param(220.0, unit="g", doc="maximum load", minimum=0.0)
    temperature_c: float = param(
        20.0, unit="°C", doc="water temperature (density)", minimum=0.0, maximum=40.0
    )
    evaporation_g_per_h: float = param(
        0.0, unit="g/h", doc="evaporation loss from the vessel", minimum=0.0
    )
    settling_time_constant_s: float = param(
        0.3, unit="s", doc="weighing-cell settling time constant", minimum=1e-3
    )
    stability_band_g: float = param(
        0.0005, unit="g", doc="stable when settled to within this band", minimum=0.0
    )
    noise_sd_g: float = param(0.0001, unit="g", doc="reading noise (1 σ)", minimum=0.0)
    vessel_mass_g: float = param(
        50.0, unit="g", doc="vessel (and oil film) on the pan", minimum=0.0
    )
    air_buoyancy: bool = param(True, unit="", doc="apply the air-buoyancy factor")

    @property
    def water_density_g_ml(self) -> float:
        return float(water_density_g_ml(self.temperature_c))

    @property
    def grams_per_ml(self) -> float:
        """Displayed grams per mL of water delivered (density × buoyancy factor)."""
        density = self.water_density_g_ml
        return density * (buoyancy_factor(density) if self.air_buoyancy else 1.0)


@dataclass(frozen=True)
class BalanceDisplay:
    """Displayed values, arrays of the same shape as the inputs."""

    net_g: NDArray[np.float64]
    stable: NDArray[np.bool_]
    overload: NDArray[np.bool_]
    underload: NDArray[np.bool_]


def display(
    settled_g: NDArray[np.float64],
    load_g: NDArray[np.float64],
    *,
    readability_g: NDArray[np.float64] | float,
    stability_band_g: NDArray[np.float64] | float,
    capacity_g: NDArray[np.float64] | float,
    noise_sd_g: NDArray[np.float64] | float,
    tare_g: NDArray[np.float64] | float = 0.0,
    rng: np.random.Generator | None = None,
) -> BalanceDisplay:
    """What the balance shows for a settled cell reading and the true load.

    Parameters
    ----------
    settled_g : ndarray
        Weighing-cell output M (g), any shape.
    load_g : ndarray
        True gross load m (g), same shape; stability compares it with ``settled_g``.
    readability_g, stability_band_g, capacity_g, noise_sd_g : float or ndarray
        Broadcastable against the leading axes (per balance).
    tare_g : float or ndarray
        Subtracted before quantisation.
    rng : numpy.random.Generator, optional
        Source of the reading noise; without it the display is noise-free.
    """
    gross = np.asarray(settled_g, dtype=float)
    if rng is not None and np.any(np.asarray(noise_sd_g) > 0):
        gross = gross + rng.standard_normal(gross.shape) * noise_sd_g
    net = gross - tare_g
    d = np.asarray(readability_g, dtype=float)
    quantised = np.where(d > 0, np.round(net / np.where(d > 0, d, 1.0)) * d, net)
    stable = np.abs(np.asarray(load_g) - np.asarray(settled_g)) <= stability_band_g
    return BalanceDisplay(
        net_g=quantised,
        stable=stable,
        overload=gross > capacity_g,
        # Below the zero range (taken as -0.5 % of capacity) the cell reports underload.
        underload=gross < -0.005 * np.asarray(capacity_g),
    )
