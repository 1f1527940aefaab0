"""The one mass-to-volume policy of every gravimetric analysis: how a balance reading in g
becomes a delivered volume in mL.

IEC 60601-2-24 (1998 clause 50.102; 2012 201.12.1) turns balance readings W into flow with a
density d: ``Q_i = 60·(W_i − W_{i−1})/(S·d)``. What d must stand for is the balance
*reading* per mL delivered, and a balance adjusted with steel weights reads water low by the
air buoyancy of the water less that of the weights. :class:`GravimetricPolicy` states every
choice that goes into d, in one frozen value that the run's procedures, the report and
``medtwin analyze trumpet`` all build d from, and that is stored beside every analysis:

* **water temperature** (default 20 °C: the test conditions of IEC 60601-2-24, 20 ± 2 °C, as
  the AS 60601.2.24:2018 summary and the B. Braun Perfusor IFU state them);
* **density table**: Tanaka M., Girard G., Davis R., Peuto A., Bignell N., "Recommended
  table for the density of water between 0 °C and 40 °C based on recent experimental
  reports", *Metrologia* 38 (2001) 301–309, eq. (1), air-free water at 101.325 kPa
  (:func:`medtwin.device_models.water.water_density_g_ml`, the twin's own formula, so analysis
  and physics never disagree);
* **air-buoyancy correction** (default on), the gravimetric convention of ISO 4787:2010
  and ISO 8655-6:2002 (the volume is the reading times
  ``Z = (1/(ρ_W − ρ_A))·(1 − ρ_A/ρ_B)``). With it,

      d = ρ_W · (1 − ρ_A/ρ_W) / (1 − ρ_A/ρ_B) = (ρ_W − ρ_A)/(1 − ρ_A/ρ_B)

  where ρ_A is the air density (default 1.2 kg/m³, the conventional value of OIML R 111-1
  and OIML D 28, air at about 20 °C, 101 kPa, 50 % RH) and ρ_B the density of the weights
  the balance was adjusted with (default 8000 kg/m³, the OIML R 111-1 conventional density
  of weights). The formula is the standard gravimetric one; the tables of the ISO texts
  themselves were not checked. At 20 °C this gives d = 0.997160 g/mL instead of 0.998207; without
  the correction every volume, and so A, reads 0.105 % low;
* **evaporation correction**: a loss rate e in g/h measured with the pump stopped and the
  outlet in place, added back (``Q_i + e/d``; standard gravimetric practice, not a figure
  from the IEC text); default 0;
* an explicit **density override** d (e.g. the 0.998 g/mL many IFUs and analysers quote),
  which replaces all of the above except the evaporation correction.

What is not verified: whether IEC 60601-2-24 itself prescribes a fixed d (0.998 g/mL is the
value commonly quoted with the formula) or a buoyancy correction; its licensed text has not
been seen. Every figure is therefore a field of the policy, and the CLI has options for them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from medtwin.device_models.water import (
    AIR_DENSITY_G_ML,
    CALIBRATION_WEIGHT_DENSITY_G_ML,
    buoyancy_factor,
)
from medtwin.device_models.water import water_density_g_ml as _water_density
from medtwin.drivers.errors import AnalysisError

__all__ = [
    "DEFAULT_AIR_DENSITY_G_ML",
    "DEFAULT_DENSITY_G_ML",
    "DEFAULT_WATER_TEMPERATURE_C",
    "DEFAULT_WEIGHT_DENSITY_G_ML",
    "GravimetricPolicy",
    "policy_from_balance_params",
]

#: IEC 60601-2-24 test conditions: water at 20 ± 2 °C.
DEFAULT_WATER_TEMPERATURE_C = 20.0
#: ρ_A, conventional air density (OIML R 111-1), g/mL (1.2 kg/m³).
DEFAULT_AIR_DENSITY_G_ML = AIR_DENSITY_G_ML
#: ρ_B, conventional density of the adjustment weights (OIML R 111-1), g/mL (8000 kg/m³).
DEFAULT_WEIGHT_DENSITY_G_ML = CALIBRATION_WEIGHT_DENSITY_G_ML


def _finite(value: Any, name: str, unit: str, *, minimum: float, strict: bool) -> float:
    if isinstance(value, bool):
        raise AnalysisError(f"{name} must be a number in {unit}, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise AnalysisError(f"{name} must be a number in {unit}, got {value!r}") from None
    if not math.isfinite(number) or number < minimum or (strict and number == minimum):
        relation = ">" if strict else ">="
        raise AnalysisError(
            f"{name} must be a finite number {relation} {minimum:g} {unit}, got {value!r}"
        )
    return number


@dataclass(frozen=True)
class GravimetricPolicy:
    """How balance readings become volumes (see the module docstring for the formulas).

    Attributes
    ----------
    water_temperature_c : float
        Water temperature, °C (0–40, the range of the Tanaka formula).
    air_buoyancy : bool
        Apply the air-buoyancy correction (ISO 4787 / ISO 8655-6).
    air_density_g_ml : float
        ρ_A, g/mL.
    weight_density_g_ml : float
        ρ_B, density of the weights the balance was adjusted with, g/mL.
    evaporation_g_h : float
        Evaporation loss added back, g/h (>= 0).
    density_override_g_ml : float or None
        An explicit d in g/mL that replaces the temperature and buoyancy terms.

    Raises
    ------
    AnalysisError
        A field out of range (temperature outside 0–40 °C, a density <= 0, a negative
        evaporation, air denser than the weights or the water).
    """

    water_temperature_c: float = DEFAULT_WATER_TEMPERATURE_C
    air_buoyancy: bool = True
    air_density_g_ml: float = DEFAULT_AIR_DENSITY_G_ML
    weight_density_g_ml: float = DEFAULT_WEIGHT_DENSITY_G_ML
    evaporation_g_h: float = 0.0
    density_override_g_ml: float | None = None

    def __post_init__(self) -> None:
        temperature = _finite(
            self.water_temperature_c, "the water temperature", "°C", minimum=0.0, strict=False
        )
        if temperature > 40.0:
            raise AnalysisError(
                f"the water temperature must be within 0–40 °C (the range of the Tanaka 2001 "
                f"density formula), got {self.water_temperature_c!r}"
            )
        air = _finite(self.air_density_g_ml, "the air density", "g/mL", minimum=0.0, strict=False)
        weights = _finite(
            self.weight_density_g_ml, "the density of the weights", "g/mL", minimum=0.0, strict=True
        )
        if air >= weights or air >= 0.5:
            raise AnalysisError(
                f"the air density {air:g} g/mL must be far below the densities of the water "
                f"and of the weights ({weights:g} g/mL); 0.0012 g/mL is usual"
            )
        evaporation = _finite(
            self.evaporation_g_h, "the evaporation loss", "g/h", minimum=0.0, strict=False
        )
        override = self.density_override_g_ml
        if override is not None:
            override = _finite(override, "the density d", "g/mL", minimum=0.0, strict=True)
        object.__setattr__(self, "water_temperature_c", temperature)
        object.__setattr__(self, "air_buoyancy", bool(self.air_buoyancy))
        object.__setattr__(self, "air_density_g_ml", air)
        object.__setattr__(self, "weight_density_g_ml", weights)
        object.__setattr__(self, "evaporation_g_h", evaporation)
        object.__setattr__(self, "density_override_g_ml", override)

    @property
    def water_density_g_ml(self) -> float:
        """ρ_W at the water temperature (Tanaka et al. 2001), g/mL."""
        return float(_water_density(self.water_temperature_c))

    @property
    def buoyancy_factor(self) -> float:
        """Reading / true mass of water: ``(1 − ρ_A/ρ_W)/(1 − ρ_A/ρ_B)``, 1 when off."""
        if not self.air_buoyancy:
            return 1.0
        return float(
            buoyancy_factor(
                self.water_density_g_ml,
                air_density_g_ml=self.air_density_g_ml,
                weight_density_g_ml=self.weight_density_g_ml,
            )
        )

    @property
    def density_g_ml(self) -> float:
        """d: balance reading in g per mL delivered, the divisor of every analysis."""
        if self.density_override_g_ml is not None:
            return self.density_override_g_ml
        return self.water_density_g_ml * self.buoyancy_factor

    def describe(self) -> str:
        """One line that says which d was used and why, for tables and reports."""
        d = f"d = {self.density_g_ml:.6f} g/mL"
        evaporation = (
            f"; evaporation {self.evaporation_g_h:g} g/h added back" if self.evaporation_g_h else ""
        )
        if self.density_override_g_ml is not None:
            return f"{d} (given explicitly){evaporation}"
        if self.air_buoyancy:
            how = (
                f"water at {self.water_temperature_c:g} °C (Tanaka 2001, "
                f"{self.water_density_g_ml:.6f}) × air buoyancy {self.buoyancy_factor:.6f} "
                f"(air {self.air_density_g_ml * 1000:g} kg/m³, weights "
                f"{self.weight_density_g_ml * 1000:g} kg/m³)"
            )
        else:
            how = f"water at {self.water_temperature_c:g} °C (Tanaka 2001), no buoyancy correction"
        return f"{d}: {how}{evaporation}"

    def label(self) -> str:
        """Short form for a verdict's note: ``d = 0.997160 g/mL (20 °C, air buoyancy)``."""
        if self.density_override_g_ml is not None:
            how = "given"
        else:
            buoyancy = "air buoyancy" if self.air_buoyancy else "no buoyancy correction"
            how = f"{self.water_temperature_c:g} °C, {buoyancy}"
        if self.evaporation_g_h:
            how += f", evaporation {self.evaporation_g_h:g} g/h"
        return f"d = {self.density_g_ml:.6f} g/mL ({how})"

    def as_dict(self) -> dict[str, Any]:
        """JSON-able: every field, plus the resulting ``density_g_ml`` and its ``basis``
        ("policy" or "override"). :meth:`from_dict` reads it back."""
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        out["density_g_ml"] = self.density_g_ml
        out["basis"] = "override" if self.density_override_g_ml is not None else "policy"
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GravimetricPolicy:
        """The policy a stored :meth:`as_dict` describes (derived keys are ignored).

        Raises
        ------
        AnalysisError
            A stored field out of range.
        """
        names = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in names})


def policy_from_balance_params(
    balance: Mapping[str, Any] | Any, *, evaporation_g_h: float = 0.0
) -> GravimetricPolicy:
    """The policy of a run: the water temperature and the buoyancy switch of the twin's
    balance (:class:`medtwin.device_models.balance.BalanceParams`, or its stored dict), with
    the model's defaults for what is missing.

    The twin's own evaporation rate is *not* added back: a correction must come from a
    measurement with the pump stopped, so it is passed explicitly (default 0).

    Raises
    ------
    AnalysisError
        A temperature outside 0–40 °C.
    """
    if isinstance(balance, Mapping):
        temperature = balance.get("temperature_c", DEFAULT_WATER_TEMPERATURE_C)
        buoyancy = balance.get("air_buoyancy", True)
    else:
        temperature = getattr(balance, "temperature_c", DEFAULT_WATER_TEMPERATURE_C)
        buoyancy = getattr(balance, "air_buoyancy", True)
    return GravimetricPolicy(
        water_temperature_c=temperature,
        air_buoyancy=bool(buoyancy),
        evaporation_g_h=evaporation_g_h,
    )


#: d of the default policy: water at 20 °C with the air-buoyancy correction, 0.997156 g/mL;
#: the default of every analysis function in this package.
DEFAULT_DENSITY_G_ML = GravimetricPolicy().density_g_ml
