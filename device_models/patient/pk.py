"""Three-compartment pharmacokinetics with an effect site, exact for piecewise-constant infusion.

The patient's drug disposition is the mamillary model every target-controlled-infusion
pump uses: a central compartment (amount ``A1``, volume ``V1``) exchanging with a fast
(``A2``) and a slow (``A3``) peripheral compartment, eliminating from the centre, plus a
hypothetical effect site of negligible volume that follows the plasma concentration with
the rate constant ``ke0`` (Sheiner et al. 1979, Clin Pharmacol Ther 25:358)::

    dA1/dt = u(t) − (k10 + k12 + k13)·A1 + k21·A2 + k31·A3       (mg/min)
    dA2/dt = k12·A1 − k21·A2
    dA3/dt = k13·A1 − k31·A3
    dCe/dt = ke0·(A1/V1 − Ce)                                      (mg/L/min)

``u`` is the dose rate into the central compartment in mg/min: the pump twin's delivered
flow (mL/h) × the syringe concentration (mg/mL) / 60 (:func:`dose_rate_mg_min`). Rate
constants are per minute as published; times at this module's interface are seconds, as
everywhere in medtwin.

Models (:data:`MODELS`; parameters, covariates and sources in ``docs/pkpd.md``):

* propofol ``marsh`` — Marsh et al. 1991, Br J Anaesth 67:41 (doi:10.1093/bja/67.1.41),
  weight-proportional volumes, with the Diprifusor ke0 0.26 /min;
* propofol ``schnider`` — Schnider et al. 1998, Anesthesiology 88:1170
  (doi:10.1097/00000542-199805000-00006), ke0 0.456 /min from Schnider et al. 1999,
  Anesthesiology 90:1502 (doi:10.1097/00000542-199906000-00003);
* remifentanil ``minto`` — Minto et al. 1997, Anesthesiology 86:10 (PK and ke0,
  doi:10.1097/00000542-199701000-00004) and 86:24 (model development and validation).

The Eleveld models (Eleveld 2018 Br J Anaesth 120:942; Eleveld 2017 Anesthesiology
126:1005) are not implemented: their equations could not be cross-checked exactly.

Concentrations: ``A1/V1`` is in mg/L, which is µg/mL (propofol's customary unit); for
remifentanil it is multiplied by 1000 to give ng/mL. :class:`PKResult` reports ``cp``
and ``ce`` in the drug's unit (:attr:`PKParams.concentration_unit`).

Exactness: the 3×3 disposition matrix is similar to a symmetric matrix (the mamillary
model obeys detailed balance with the effective volumes ``V1·k12/k21`` and
``V1·k13/k31``), so it is diagonalised with ``numpy.linalg.eigh`` for every patient of a
batch at once; the effect site is integrated analytically against each mode with
:func:`scipy.special.exprel`, which stays exact when ``ke0`` equals a disposition rate.
Each interval between two output or rate-change times is then one exact linear update
``x ← Φ(h)·x + Γ(h)·u``, the same update :class:`PKIntegrator` applies live.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from medtwin.device_models.base import ParameterError, param, validate
from medtwin.device_models.patient.demographics import Demographics, lean_body_mass_kg
from numpy.typing import ArrayLike, NDArray
from scipy.special import exprel

__all__ = [
    "DRUGS",
    "MODELS",
    "CovariateRange",
    "PKBatch",
    "PKIntegrator",
    "PKModel",
    "PKParams",
    "PKResult",
    "dose_rate_mg_min",
    "pk_batch",
    "pk_params",
    "simulate",
    "transition",
]

Drug = Literal["propofol", "remifentanil"]

#: Each drug's concentration unit and the factor from mg/L to it.
DRUGS: Mapping[str, tuple[str, float]] = {
    "propofol": ("ug/mL", 1.0),  # mg/L == µg/mL
    "remifentanil": ("ng/mL", 1000.0),  # mg/L × 1000 == ng/mL
}

FloatArray = NDArray[np.float64]
_RATE_NAMES = ("k10_per_min", "k12_per_min", "k13_per_min", "k21_per_min", "k31_per_min")


@dataclass(frozen=True)
class PKParams:
    """One patient's three-compartment parameters for one drug and model.

    Built by :func:`pk_params` from the patient's covariates; can also be written by hand
    (e.g. a fitted individual). Volumes in L, rate constants per minute.
    """

    drug: str = "propofol"
    model: str = "custom"
    v1_l: float = param(4.27, unit="L", doc="central volume", minimum=1e-6)
    v2_l: float = param(18.9, unit="L", doc="fast peripheral volume (as published)", minimum=0.0)
    v3_l: float = param(238.0, unit="L", doc="slow peripheral volume (as published)", minimum=0.0)
    k10_per_min: float = param(0.443, unit="1/min", doc="elimination", minimum=1e-9)
    k12_per_min: float = param(0.302, unit="1/min", doc="central to fast", minimum=1e-9)
    k13_per_min: float = param(0.196, unit="1/min", doc="central to slow", minimum=1e-9)
    k21_per_min: float = param(0.0683, unit="1/min", doc="fast to central", minimum=1e-9)
    k31_per_min: float = param(0.0035, unit="1/min", doc="slow to central", minimum=1e-9)
    ke0_per_min: float = param(0.456, unit="1/min", doc="effect-site equilibration", minimum=1e-9)
    concentration_unit: str = ""

    def __post_init__(self) -> None:
        if self.drug not in DRUGS:
            raise ParameterError(f"drug = {self.drug!r}: expected one of {sorted(DRUGS)}")
        unit = DRUGS[self.drug][0]
        if not self.concentration_unit:
            # The drug fixes the unit; "" (the default) means "the drug's own".
            object.__setattr__(self, "concentration_unit", unit)
        elif self.concentration_unit != unit:
            raise ParameterError(
                f"concentration_unit = {self.concentration_unit!r}: {self.drug} is in {unit}"
            )
        validate(self)

    @property
    def cl1_l_min(self) -> float:
        """Elimination clearance ``k10·V1`` (L/min)."""
        return self.k10_per_min * self.v1_l


@dataclass(frozen=True)
class PKBatch:
    """The parameters of ``B`` patients for one drug, as arrays of shape ``(B,)``.

    Attributes have the units of :class:`PKParams`. Build one with :func:`pk_batch`
    (from covariates) or :meth:`of` (from :class:`PKParams`).
    """

    drug: str
    model: str
    concentration_unit: str
    v1_l: FloatArray
    k10_per_min: FloatArray
    k12_per_min: FloatArray
    k13_per_min: FloatArray
    k21_per_min: FloatArray
    k31_per_min: FloatArray
    ke0_per_min: FloatArray

    @classmethod
    def of(cls, params: PKParams | Sequence[PKParams] | PKBatch) -> PKBatch:
        """A batch from one :class:`PKParams`, a sequence of them (one drug), or a batch."""
        if isinstance(params, PKBatch):
            return params
        items = [params] if isinstance(params, PKParams) else list(params)
        if not items:
            raise ParameterError("params: an empty batch of patients")
        drugs = {p.drug for p in items}
        if len(drugs) != 1:
            raise ParameterError(f"params: one drug per batch, got {sorted(drugs)}")
        models = {p.model for p in items}
        arrays = {
            name: np.array([getattr(p, name) for p in items], dtype=float)
            for name in ("v1_l", *_RATE_NAMES, "ke0_per_min")
        }
        return cls(
            drug=items[0].drug,
            model=items[0].model if len(models) == 1 else "mixed",
            concentration_unit=items[0].concentration_unit,
            **arrays,
        )

    @property
    def size(self) -> int:
        """The number of patients ``B``."""
        return int(self.v1_l.shape[0])

    @property
    def concentration_factor(self) -> float:
        """mg/L to :attr:`concentration_unit` (1 for µg/mL, 1000 for ng/mL)."""
        return DRUGS[self.drug][1]


# --------------------------------------------------------------------------- models


@dataclass(frozen=True)
class CovariateRange:
    """The range of one covariate in a model's study population.

    ``verified`` is False where the range could not be checked against the paper itself
    (then it is a conservative adult range, documented as such in docs/pkpd.md).
    """

    name: str
    minimum: float
    maximum: float
    verified: bool
    source: str


@dataclass(frozen=True)
class PKModel:
    """One registry entry: a drug's covariate model and its published population."""

    drug: str
    model: str
    reference: str
    ranges: tuple[CovariateRange, ...]
    compute: Callable[[Mapping[str, FloatArray]], dict[str, FloatArray]] = field(repr=False)
    needs_lean_body_mass: bool = False


def _marsh(c: Mapping[str, FloatArray]) -> dict[str, FloatArray]:
    wt = c["weight_kg"]
    one = np.ones_like(wt)
    return {
        "v1_l": 0.228 * wt,
        "v2_l": 0.463 * wt,
        "v3_l": 2.893 * wt,
        "k10_per_min": 0.119 * one,
        "k12_per_min": 0.112 * one,
        # k13 0.0419 and k31 0.0033 /min: the values of the Diprifusor implementation of
        # Marsh 1991 (also in opentiva's MarshDiprifusor); PyTCI's k31 0.0031 is an outlier.
        # Not checked against the 1991 paper's table itself (see docs/pkpd.md).
        "k13_per_min": 0.0419 * one,
        "k21_per_min": 0.055 * one,
        "k31_per_min": 0.0033 * one,
        # Marsh 1991 gave no ke0; 0.26 /min is the Diprifusor's (secondary source).
        "ke0_per_min": 0.26 * one,
    }


def _schnider(c: Mapping[str, FloatArray]) -> dict[str, FloatArray]:
    age, wt, ht, lbm = c["age_y"], c["weight_kg"], c["height_cm"], c["lbm_kg"]
    v1 = 4.27 * np.ones_like(age)
    v2 = 18.9 - 0.391 * (age - 53.0)
    v3 = 238.0 * np.ones_like(age)
    cl1 = 1.89 + 0.0456 * (wt - 77.0) - 0.0681 * (lbm - 59.0) + 0.0264 * (ht - 177.0)
    cl2 = 1.29 - 0.024 * (age - 53.0)
    cl3 = 0.836 * np.ones_like(age)
    return {
        "v1_l": v1,
        "v2_l": v2,
        "v3_l": v3,
        "k10_per_min": cl1 / v1,
        "k12_per_min": cl2 / v1,
        "k13_per_min": cl3 / v1,
        # k21 = Cl2/V2 = [1.29 − 0.024·(age − 53)] / [18.9 − 0.391·(age − 53)]: the whole
        # clearance over the whole volume (an open implementation drops the brackets).
        "k21_per_min": cl2 / v2,
        "k31_per_min": cl3 / v3,
        "ke0_per_min": 0.456 * np.ones_like(age),
    }


def _minto(c: Mapping[str, FloatArray]) -> dict[str, FloatArray]:
    age, lbm = c["age_y"], c["lbm_kg"]
    v1 = 5.1 - 0.0201 * (age - 40.0) + 0.072 * (lbm - 55.0)
    v2 = 9.82 - 0.0811 * (age - 40.0) + 0.108 * (lbm - 55.0)
    v3 = 5.42 * np.ones_like(age)
    cl1 = 2.6 - 0.0162 * (age - 40.0) + 0.0191 * (lbm - 55.0)
    cl2 = 2.05 - 0.0301 * (age - 40.0)
    cl3 = 0.076 - 0.00113 * (age - 40.0)
    return {
        "v1_l": v1,
        "v2_l": v2,
        "v3_l": v3,
        "k10_per_min": cl1 / v1,
        "k12_per_min": cl2 / v1,
        "k13_per_min": cl3 / v1,
        "k21_per_min": cl2 / v2,
        "k31_per_min": cl3 / v3,
        "ke0_per_min": 0.595 - 0.007 * (age - 40.0),
    }


_UNVERIFIED = "conservative adult range; not checked against the paper (docs/pkpd.md)"

#: Every (drug, model) the patient twin knows, by ``(drug, model)``.
MODELS: Mapping[tuple[str, str], PKModel] = {
    ("propofol", "marsh"): PKModel(
        drug="propofol",
        model="marsh",
        reference="Marsh et al. 1991, Br J Anaesth 67:41, doi:10.1093/bja/67.1.41",
        ranges=(
            CovariateRange(
                "age_y", 16.0, 100.0, False, "adult use of the Diprifusor; " + _UNVERIFIED
            ),
            CovariateRange("weight_kg", 30.0, 150.0, False, _UNVERIFIED),
        ),
        compute=_marsh,
    ),
    ("propofol", "schnider"): PKModel(
        drug="propofol",
        model="schnider",
        reference=(
            "Schnider et al. 1998, Anesthesiology 88:1170, doi:10.1097/00000542-199805000-00006; "
            "ke0: Schnider et al. 1999, Anesthesiology 90:1502"
        ),
        ranges=(
            CovariateRange(
                "age_y", 25.0, 81.0, True, "volunteers aged 25-81 y (1998/1999 abstracts)"
            ),
            CovariateRange("weight_kg", 44.0, 123.0, False, _UNVERIFIED),
            CovariateRange("height_cm", 150.0, 200.0, False, _UNVERIFIED),
        ),
        compute=_schnider,
        needs_lean_body_mass=True,
    ),
    ("remifentanil", "minto"): PKModel(
        drug="remifentanil",
        model="minto",
        reference=(
            "Minto et al. 1997, Anesthesiology 86:10, doi:10.1097/00000542-199701000-00004; "
            "and 86:24"
        ),
        ranges=(
            CovariateRange("age_y", 20.0, 85.0, True, "65 adults aged 20-85 y (1997 abstract)"),
            CovariateRange("weight_kg", 40.0, 120.0, False, _UNVERIFIED),
            CovariateRange("height_cm", 150.0, 200.0, False, _UNVERIFIED),
        ),
        compute=_minto,
        needs_lean_body_mass=True,
    ),
}


def _model(drug: str, model: str) -> PKModel:
    if drug not in DRUGS:
        raise ParameterError(f"drug = {drug!r}: expected one of {sorted(DRUGS)}")
    entry = MODELS.get((drug, model))
    if entry is None:
        known = sorted(m for d, m in MODELS if d == drug)
        raise ParameterError(f"model = {model!r}: {drug} models are {known}")
    return entry


def _covariates(entry: PKModel, patients: Sequence[Demographics]) -> dict[str, FloatArray]:
    cov = {
        name: np.array([getattr(p, name) for p in patients], dtype=float)
        for name in ("age_y", "weight_kg", "height_cm")
    }
    for rng in entry.ranges:
        values = cov[rng.name]
        bad = np.flatnonzero((values < rng.minimum) | (values > rng.maximum))
        if bad.size:
            i = int(bad[0])
            raise ParameterError(
                f"{rng.name} = {values[i]:g} (patient {i}) is outside the {entry.drug} "
                f"{entry.model} model's range [{rng.minimum:g}, {rng.maximum:g}]"
            )
    if entry.needs_lean_body_mass:
        lbm = np.array([lean_body_mass_kg(p) for p in patients], dtype=float)
        # James's formula peaks at W = a·H²/(2b) and falls beyond it (BMI ≈ 43 male,
        # 36 female): past the peak a heavier patient would get a *smaller* LBM.
        for i, p in enumerate(patients):
            a, b = (1.1, 128.0) if p.sex == "male" else (1.07, 148.0)
            w_peak = a * p.height_cm**2 / (2.0 * b)
            if p.weight_kg > w_peak or lbm[i] <= 0.0:
                raise ParameterError(
                    f"weight_kg = {p.weight_kg:g} (patient {i}) is beyond the James lean body "
                    f"mass formula's maximum at {w_peak:.1f} kg for height_cm = {p.height_cm:g}"
                )
        cov["lbm_kg"] = lbm
    return cov


def pk_batch(drug: str, model: str, patients: Demographics | Sequence[Demographics]) -> PKBatch:
    """The parameters of a batch of patients, vectorised over the batch.

    Parameters
    ----------
    drug : {"propofol", "remifentanil"}
    model : str
        A model of :data:`MODELS` for that drug ("marsh", "schnider", "minto").
    patients : Demographics or sequence of B Demographics

    Raises
    ------
    ParameterError
        For an unknown drug or model, or a covariate outside the model's published range
        (the message names the covariate, the patient's index and the range).
    """
    entry = _model(drug, model)
    group = [patients] if isinstance(patients, Demographics) else list(patients)
    if not group:
        raise ParameterError("patients: an empty batch")
    values = entry.compute(_covariates(entry, group))
    for name, arr in values.items():
        bad = np.flatnonzero(~(arr > 0.0) | ~np.isfinite(arr))
        if bad.size:
            i = int(bad[0])
            raise ParameterError(
                f"{name} = {arr[i]:g} (patient {i}) of the {drug} {model} model is not positive"
            )
    unit = DRUGS[drug][0]
    return PKBatch(
        drug=drug,
        model=model,
        concentration_unit=unit,
        v1_l=values["v1_l"],
        **{name: values[name] for name in (*_RATE_NAMES, "ke0_per_min")},
    )


def pk_params(drug: str, model: str, patient: Demographics) -> PKParams:
    """One patient's :class:`PKParams` for ``drug`` under ``model``.

    Raises
    ------
    ParameterError
        As :func:`pk_batch`.
    """
    entry = _model(drug, model)
    values = entry.compute(_covariates(entry, [patient]))
    scalars = {name: float(arr[0]) for name, arr in values.items()}
    for name, value in scalars.items():
        if not (value > 0.0 and math.isfinite(value)):
            raise ParameterError(f"{name} = {value:g} of the {drug} {model} model is not positive")
    return PKParams(drug=drug, model=model, concentration_unit=DRUGS[drug][0], **scalars)


def dose_rate_mg_min(rate_ml_h: ArrayLike, concentration_mg_ml: float) -> FloatArray:
    """The dose rate into the central compartment (mg/min) from a pump's flow (mL/h)
    and the syringe's drug concentration (mg/mL)."""
    if not (concentration_mg_ml >= 0.0 and math.isfinite(concentration_mg_ml)):
        raise ParameterError(
            f"concentration_mg_ml = {concentration_mg_ml!r} must be a finite number >= 0"
        )
    return np.asarray(rate_ml_h, dtype=float) * (concentration_mg_ml / 60.0)


# ------------------------------------------------------------------- exact update


def _modes(batch: PKBatch) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Eigenvalues ``λ`` (B, 3), eigenvectors ``Q`` (B, 3, 3) of the symmetrised
    disposition matrix, and the effective volumes ``W`` (B, 3) that symmetrise it."""
    k10, k12, k13 = batch.k10_per_min, batch.k12_per_min, batch.k13_per_min
    k21, k31 = batch.k21_per_min, batch.k31_per_min
    s = np.zeros((batch.size, 3, 3))
    s[:, 0, 0] = -(k10 + k12 + k13)
    s[:, 1, 1] = -k21
    s[:, 2, 2] = -k31
    s[:, 0, 1] = s[:, 1, 0] = np.sqrt(k12 * k21)
    s[:, 0, 2] = s[:, 2, 0] = np.sqrt(k13 * k31)
    lam, q = np.linalg.eigh(s)
    w = np.stack([batch.v1_l, batch.v1_l * k12 / k21, batch.v1_l * k13 / k31], axis=1)
    return lam, q, w


def _transitions(batch: PKBatch, h_min: FloatArray) -> tuple[FloatArray, FloatArray]:
    """``Φ`` (U, B, 4, 4) and ``Γ`` (U, B, 4) for each step length ``h_min`` (U,).

    State ``x = [A1, A2, A3 (mg), Ce (mg/L)]``; after a step of ``h`` minutes at the
    constant dose rate ``u`` (mg/min), ``x ← Φ·x + Γ·u``.
    """
    lam, q, w = _modes(batch)
    ke0 = batch.ke0_per_min
    h = np.asarray(h_min, dtype=float)[:, None, None]  # (U, 1, 1)
    lh = lam[None] * h  # (U, B, 3)
    e = np.exp(lh)
    hx = h * exprel(lh)  # (e^{λh} − 1)/λ, exact at λh → 0
    # ∫0^h e^{λs}·e^{−ke0(h−s)} ds, from the larger exponent so that nothing overflows.
    k = -ke0[None, :, None]  # (1, B, 1)
    big = np.maximum(lam[None], k)
    f = h * np.exp(big * h) * exprel(-np.abs(lam[None] - k) * h)
    g = h * exprel(k * h)  # (1 − e^{−ke0 h})/ke0
    ratio = np.sqrt(w[:, :, None] / w[:, None, :])  # (B, 3, 3): sqrt(W_j / W_l)
    q0 = q[:, 0, :]  # (B, 3): first row (central compartment) of Q
    n_u, n_b = h.shape[0], batch.size
    phi = np.zeros((n_u, n_b, 4, 4))
    phi[:, :, :3, :3] = np.einsum("bji,bli,ubi->ubjl", q, q, e) * ratio[None]
    scale = (ke0 / batch.v1_l)[None, :, None]  # (1, B, 1)
    phi[:, :, 3, :3] = scale * np.einsum("bi,bli,ubi->ubl", q0, q, f) * ratio[None, :, 0, :]
    phi[:, :, 3, 3] = np.exp(-ke0[None, :] * h[:, :, 0])
    gamma = np.zeros((n_u, n_b, 4))
    gamma[:, :, :3] = np.einsum("bji,bi,ubi->ubj", q, q0, hx) * ratio[None, :, :, 0]
    gamma[:, :, 3] = scale[:, :, 0] * np.einsum("bi,ubi->ub", q0**2, (f - g) / lam[None])
    return phi, gamma


def transition(
    params: PKParams | Sequence[PKParams] | PKBatch, dt_s: float
) -> tuple[FloatArray, FloatArray]:
    """The exact one-step update over ``dt_s`` seconds at a constant dose rate.

    Returns
    -------
    phi : ndarray, shape (B, 4, 4)
        State transition of ``x = [A1, A2, A3 (mg), Ce (mg/L)]``.
    gamma : ndarray, shape (B, 4)
        Response of ``x`` to 1 mg/min held for ``dt_s``.
    """
    if not (dt_s >= 0.0 and math.isfinite(dt_s)):
        raise ParameterError(f"dt_s = {dt_s!r} must be a finite number >= 0")
    phi, gamma = _transitions(PKBatch.of(params), np.array([dt_s / 60.0]))
    return phi[0], gamma[0]


def _step(phi: FloatArray, gamma: FloatArray, x: FloatArray, u: FloatArray) -> FloatArray:
    """``Φ·x + Γ·u`` for each patient, patients last (contiguous for large batches):
    phi (4, 4, B), gamma (4, B), x (4, B), u (B,)."""
    out: FloatArray = np.einsum("ijb,jb->ib", phi, x) + gamma * u
    return out


def _patients_last(phi: FloatArray, gamma: FloatArray) -> tuple[FloatArray, FloatArray]:
    """(U, B, 4, 4), (U, B, 4) → (U, 4, 4, B), (U, 4, B), contiguous."""
    return (
        np.ascontiguousarray(np.moveaxis(phi, 1, -1)),
        np.ascontiguousarray(np.moveaxis(gamma, 1, -1)),
    )


@dataclass(frozen=True)
class PKResult:
    """A simulated batch.

    Attributes
    ----------
    t_s : ndarray, shape (n,)
        Output times (s).
    amounts_mg : ndarray, shape (B, 3, n), or None
        Drug in the central, fast and slow compartments (mg); None when simulated
        ``with_amounts=False``.
    cp : ndarray, shape (B, n)
        Plasma (central) concentration in :attr:`concentration_unit`.
    ce : ndarray, shape (B, n)
        Effect-site concentration in :attr:`concentration_unit`.
    concentration_unit : str
        "ug/mL" (propofol) or "ng/mL" (remifentanil).
    """

    t_s: FloatArray
    amounts_mg: FloatArray | None
    cp: FloatArray
    ce: FloatArray
    concentration_unit: str


def _rates(rates_mg_min: ArrayLike, n_b: int, m: int) -> FloatArray:
    r = np.asarray(rates_mg_min, dtype=float)
    if r.ndim == 1:
        r = np.broadcast_to(r, (n_b, r.shape[0]))
    if r.shape != (n_b, m):
        raise ParameterError(
            f"rates_mg_min has shape {np.shape(rates_mg_min)}; expected ({m},) or ({n_b}, {m})"
        )
    if not np.all(np.isfinite(r)) or np.any(r < 0.0):
        raise ParameterError("rates_mg_min must be finite and >= 0")
    return r


def _initial(initial_state: ArrayLike | None, n_b: int) -> FloatArray:
    if initial_state is None:
        return np.zeros((n_b, 4))
    x0 = np.asarray(initial_state, dtype=float)
    try:
        x0 = np.broadcast_to(x0, (n_b, 4)).copy()
    except ValueError:
        raise ParameterError(
            f"initial_state has shape {np.shape(initial_state)}; expected (4,) or ({n_b}, 4)"
        ) from None
    if not np.all(np.isfinite(x0)) or np.any(x0 < 0.0):
        raise ParameterError("initial_state must be finite and >= 0")
    return x0


def simulate(
    params: PKParams | Sequence[PKParams] | PKBatch,
    t_s: ArrayLike,
    rate_times_s: ArrayLike = (),
    rates_mg_min: ArrayLike = (),
    *,
    initial_state: ArrayLike | None = None,
    with_amounts: bool = True,
) -> PKResult:
    """Simulate a batch of patients on a piecewise-constant dose-rate schedule, exactly.

    The patients start at ``t = 0`` in ``initial_state`` (default: drug-free) with a dose
    rate of 0; from ``rate_times_s[k]`` on the rate is ``rates_mg_min[..., k]``.

    Parameters
    ----------
    params : PKParams, sequence of B PKParams (one drug) or PKBatch
    t_s : array_like, shape (n,)
        Output times (s), non-decreasing, >= 0.
    rate_times_s : array_like, shape (m,)
        Times (s) at which the dose rate changes, non-decreasing, >= 0.
    rates_mg_min : array_like, shape (m,) or (B, m)
        The dose rate (mg/min) from each change on; shared or per patient.
    initial_state : array_like, shape (4,) or (B, 4), optional
        ``[A1, A2, A3 (mg), Ce (mg/L)]`` at ``t = 0``.
    with_amounts : bool
        Keep the compartment amounts (``PKResult.amounts_mg``); False halves the memory
        of a large batch (``amounts_mg`` is then None).

    Returns
    -------
    PKResult
        Arrays of shape (B, n) (B = 1 for a single PKParams).

    Raises
    ------
    ParameterError
        For unsorted or negative times, or rates of the wrong shape or sign.
    """
    batch = PKBatch.of(params)
    t = np.asarray(t_s, dtype=float).reshape(-1)
    rt = np.asarray(rate_times_s, dtype=float).reshape(-1)
    for name, arr in (("t_s", t), ("rate_times_s", rt)):
        if not np.all(np.isfinite(arr)) or np.any(arr < 0.0) or np.any(np.diff(arr) < 0.0):
            raise ParameterError(f"{name} must be finite, >= 0 and non-decreasing")
    rates = _rates(rates_mg_min, batch.size, rt.shape[0])
    x = _initial(initial_state, batch.size)

    points = np.unique(np.concatenate([[0.0], t, rt]))
    steps_min = np.diff(points) / 60.0
    unique_h, step_kind = np.unique(steps_min, return_inverse=True)
    phi, gamma = _patients_last(*_transitions(batch, unique_h))
    # The rate in force on [points[j], points[j+1]): the last change at or before points[j].
    which = np.searchsorted(rt, points[:-1], side="right") - 1
    levels = np.ascontiguousarray(np.concatenate([np.zeros((batch.size, 1)), rates], axis=1).T)
    level_of_step = which + 1  # row of ``levels`` (m + 1, B) in force on each step

    # Only the states at output times are kept, time-major (each write is contiguous);
    # without amounts only A1 and Ce (half the memory, which dominates for big batches).
    out_t = np.unique(t)
    keep = np.zeros(points.shape[0], dtype=bool)
    keep[np.searchsorted(points, out_t)] = True
    rows = slice(0, 4) if with_amounts else slice(0, 4, 3)
    states = np.empty((out_t.shape[0], 4 if with_amounts else 2, batch.size))
    xt = np.ascontiguousarray(x.T)  # (4, B)
    stored = 0
    if keep[0]:
        states[0] = xt[rows]
        stored = 1
    for j in range(steps_min.shape[0]):
        kind = step_kind[j]
        xt = _step(phi[kind], gamma[kind], xt, levels[level_of_step[j]])
        if keep[j + 1]:
            states[stored] = xt[rows]
            stored += 1

    sel = states if out_t.shape[0] == t.shape[0] else states[np.searchsorted(out_t, t)]
    factor = batch.concentration_factor
    # (B, ...) views of the time-major store; arithmetic on them keeps that memory order.
    amounts = sel[:, :3, :].transpose(2, 1, 0) if with_amounts else None
    cp = sel[:, 0, :].T * (factor / batch.v1_l[:, None])
    ce = sel[:, -1, :].T * factor
    return PKResult(
        t_s=t, amounts_mg=amounts, cp=cp, ce=ce, concentration_unit=batch.concentration_unit
    )


class PKIntegrator:
    """The same exact update advanced live, one interval at a time.

    ``advance(dt_s, dose_mg_min)`` over the intervals between a :func:`simulate` call's
    output and rate-change times gives that call's states (the same arithmetic).

    Parameters
    ----------
    params : PKParams, sequence of B PKParams (one drug) or PKBatch
    initial_state : array_like, shape (4,) or (B, 4), optional
        ``[A1, A2, A3 (mg), Ce (mg/L)]``; default drug-free.
    """

    _CACHE_SIZE = 64

    def __init__(
        self,
        params: PKParams | Sequence[PKParams] | PKBatch,
        *,
        initial_state: ArrayLike | None = None,
    ) -> None:
        self.batch = PKBatch.of(params)
        self._x = np.ascontiguousarray(_initial(initial_state, self.batch.size).T)  # (4, B)
        self._t_s = 0.0
        self._cache: dict[float, tuple[FloatArray, FloatArray]] = {}

    @property
    def t_s(self) -> float:
        """Time advanced so far (s)."""
        return self._t_s

    @property
    def state(self) -> FloatArray:
        """``[A1, A2, A3 (mg), Ce (mg/L)]`` per patient, shape (B, 4) (a copy)."""
        return self._x.T.copy()

    @property
    def amounts_mg(self) -> FloatArray:
        """Compartment amounts (mg), shape (B, 3)."""
        return self._x[:3].T.copy()

    @property
    def cp(self) -> FloatArray:
        """Plasma concentration in the drug's unit, shape (B,)."""
        out: FloatArray = self._x[0] * (self.batch.concentration_factor / self.batch.v1_l)
        return out

    @property
    def ce(self) -> FloatArray:
        """Effect-site concentration in the drug's unit, shape (B,)."""
        out: FloatArray = self._x[3] * self.batch.concentration_factor
        return out

    def advance(self, dt_s: float, dose_mg_min: ArrayLike) -> None:
        """Advance ``dt_s`` seconds at the constant dose rate ``dose_mg_min`` (mg/min,
        scalar or shape (B,))."""
        if not (dt_s >= 0.0 and math.isfinite(dt_s)):
            raise ParameterError(f"dt_s = {dt_s!r} must be a finite number >= 0")
        u = np.broadcast_to(np.asarray(dose_mg_min, dtype=float), (self.batch.size,))
        if not np.all(np.isfinite(u)) or np.any(u < 0.0):
            raise ParameterError("dose_mg_min must be finite and >= 0")
        if dt_s == 0.0:
            return
        h_min = dt_s / 60.0
        pair = self._cache.get(h_min)
        if pair is None:
            phi, gamma = _patients_last(*_transitions(self.batch, np.array([h_min])))
            pair = (phi[0], gamma[0])
            if len(self._cache) >= self._CACHE_SIZE:
                self._cache.pop(next(iter(self._cache)))
            self._cache[h_min] = pair
        self._x = _step(pair[0], pair[1], self._x, u)
        self._t_s += dt_s

    def bolus(self, dose_mg: ArrayLike) -> None:
        """Add ``dose_mg`` (mg, scalar or shape (B,)) to the central compartment now."""
        d = np.broadcast_to(np.asarray(dose_mg, dtype=float), (self.batch.size,))
        if not np.all(np.isfinite(d)) or np.any(d < 0.0):
            raise ParameterError("dose_mg must be finite and >= 0")
        self._x = self._x.copy()
        self._x[0] += d
