"""Water density and air buoyancy for the gravimetric measurement chain.

Density of air-free pure water at 101.325 kPa from Tanaka et al., "Recommended table for
the density of water between 0 °C and 40 °C based on recent experimental reports",
Metrologia 38 (2001) 301–309, eq. (1) with the published constants a1..a5 (valid
0–40 °C, ~1 ppm). The IEC 60601-2-24 flow formula uses a density d; 0.998 g/mL is the
20 °C value the domain notes quote.

A balance calibrated with steel weights reads water low by the air-buoyancy factor
``(1 − ρ_air/ρ_water) / (1 − ρ_air/ρ_cal)`` (about 0.99894 at 20 °C with ρ_air 1.2 kg/m³
and ρ_cal 8000 kg/m³, the OIML R 111 conventional density of weights).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "AIR_DENSITY_G_ML",
    "CALIBRATION_WEIGHT_DENSITY_G_ML",
    "buoyancy_factor",
    "water_density_g_ml",
]

# Tanaka et al. 2001, Table/eq. (1): t in °C, result in kg/m³.
_A1_C = -3.983035
_A2_C = 301.797
_A3_C2 = 522528.9
_A4_C = 69.34881
_A5_KG_M3 = 999.974950

AIR_DENSITY_G_ML = 0.0012
CALIBRATION_WEIGHT_DENSITY_G_ML = 8.0


def water_density_g_ml(temperature_c: ArrayLike) -> NDArray[np.float64] | float:
    """Density of pure water in g/mL at ``temperature_c`` (0–40 °C).

    Raises
    ------
    ValueError
        Outside 0–40 °C, where the formula is not valid.
    """
    t = np.asarray(temperature_c, dtype=float)
    if np.any((t < 0.0) | (t > 40.0)) or not np.all(np.isfinite(t)):
        raise ValueError(
            f"water temperature {temperature_c!r} °C is outside 0–40 °C, "
            "the range of the Tanaka (2001) density formula"
        )
    rho_kg_m3 = _A5_KG_M3 * (1.0 - (t + _A1_C) ** 2 * (t + _A2_C) / (_A3_C2 * (t + _A4_C)))
    result = rho_kg_m3 / 1000.0
    return float(result) if result.ndim == 0 else result


def buoyancy_factor(
    water_density: float,
    *,
    air_density_g_ml: float = AIR_DENSITY_G_ML,
    weight_density_g_ml: float = CALIBRATION_WEIGHT_DENSITY_G_ML,
) -> float:
    """Balance reading / true mass for water weighed in air on a balance calibrated
    with weights of density ``weight_density_g_ml``."""
    return (1.0 - air_density_g_ml / water_density) / (1.0 - air_density_g_ml / weight_density_g_ml)
