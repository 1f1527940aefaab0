"""The patient covariates the PK, PD and vital-sign models read.

Units are those of the published covariate models (Schnider et al. 1998, Anesthesiology
88(5):1170; Minto et al. 1997, Anesthesiology 86(1):10): age in years, total body weight in
kg, height in cm. Lean body mass follows James (1976), *Research on obesity*, HMSO London,
as both papers use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from medtwin.device_models.base import ParameterError

__all__ = ["Demographics", "Sex", "lean_body_mass_kg"]

Sex = Literal["male", "female"]


@dataclass(frozen=True)
class Demographics:
    """One patient's covariates.

    Attributes
    ----------
    age_y : float
        Age (years).
    weight_kg : float
        Total body weight (kg).
    height_cm : float
        Height (cm).
    sex : {"male", "female"}
    """

    age_y: float = 40.0
    weight_kg: float = 70.0
    height_cm: float = 170.0
    sex: Sex = "male"

    def __post_init__(self) -> None:
        for name, low, high in (
            ("age_y", 0.0, 120.0),
            ("weight_kg", 0.5, 300.0),
            ("height_cm", 30.0, 250.0),
        ):
            value = getattr(self, name)
            if not (low <= value <= high):
                raise ParameterError(f"{name} = {value} is outside [{low}, {high}]")
        if self.sex not in ("male", "female"):
            raise ParameterError(f"sex = {self.sex!r}: expected 'male' or 'female'")


def lean_body_mass_kg(patient: Demographics) -> float:
    """James's lean body mass (kg): ``1.1·W − 128·(W/H)²`` (male), ``1.07·W − 148·(W/H)²``
    (female), W in kg and H in cm."""
    w, h = patient.weight_kg, patient.height_cm
    if patient.sex == "male":
        return 1.1 * w - 128.0 * (w / h) ** 2
    return 1.07 * w - 148.0 * (w / h) ** 2
