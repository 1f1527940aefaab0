"""Pharmacodynamics: effect-site concentrations to BIS, MAP, HR and RR; ventilation to SpO2.

Inputs are the effect-site concentrations of :mod:`medtwin.device_models.patient.pk`
(propofol in µg/mL, remifentanil in ng/mL). Every effect is a sigmoid Emax (Hill)
model, ``E(C) = Emax·C^γ / (C50^γ + C^γ)``, so that at ``C = C50`` the effect is half its
maximum:

* **BIS**: the propofol–remifentanil response surface of Bouillon et al. 2004,
  Anesthesiology 100:1353 (doi:10.1097/00000542-200406000-00006) in the Minto form
  (Minto et al. 2000, Anesthesiology 92:1603) with interaction β = 0:
  ``U = Cp/C50p + Cr/C50r``, ``BIS = E0 − Emax·U^γ/(1 + U^γ)`` with E0 = Emax = 97.4,
  C50p = 4.47 µg/mL, C50r = 19.3 ng/mL, γ = 1.43. These values are as reported by two
  independent open implementations of that paper; the paper's own table was not read.
* **MAP, HR**: multiplicative factors ``Π_d (1 − E_d(C_d))`` on the patient's baseline,
  one Hill model per drug. The parameters are plausible clinical magnitudes, NOT taken
  from a fitted study (unverified): keep them configurable and fit them to your data.
* **RR**: the same form, each drug able to reach apnoea (Emax = 1). Remifentanil's C50
  is of the order of the EC50 1.17 ng/mL that Glass et al. 1999, Anesthesiology 90:1556
  found for the ventilatory response to CO2; the values used for resting RR are unverified.
  Tidal volume is assumed unchanged, so the ventilation fraction equals the RR factor.
* **SpO2**: alveolar ventilation fraction ``f`` → ``PaCO2 = PaCO2_0/f`` (the alveolar
  ventilation equation at constant CO2 production) → ``PAO2 = FiO2·(Pb − PH2O) −
  PaCO2/R`` (the alveolar gas equation) → ``PaO2 = PAO2 − (A–a offset)`` → SpO2 by
  Severinghaus 1979, J Appl Physiol 46:599 (doi:10.1152/jappl.1979.46.3.599):
  ``S = 100 / (1 + 23400/(P³ + 150·P))``. The A–a offset is chosen so that ``f = 1``
  gives the patient's baseline SpO2 exactly. PaO2 follows that target with a first-order
  lag (the lungs' O2 store; time constant unverified, configurable, 120 s), so SpO2 holds
  near baseline for a while after apnoea, then falls along the dissociation curve over
  minutes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from medtwin.device_models.base import ParameterError, param, validate
from numpy.typing import ArrayLike, NDArray
from scipy.signal import lfilter

__all__ = [
    "BISParams",
    "DrugEffects",
    "HillPair",
    "OxygenationIntegrator",
    "PDParams",
    "SpO2Params",
    "alveolar_po2_mmhg",
    "bis_response_surface",
    "drug_effects",
    "hill",
    "pao2_target_mmhg",
    "severinghaus_pao2_mmhg",
    "severinghaus_spo2_percent",
    "spo2_from_ventilation",
    "spo2_target_percent",
]

FloatArray = NDArray[np.float64]

#: The drugs :func:`drug_effects` reads, with the unit their concentrations are in.
PD_DRUGS: Mapping[str, str] = {"propofol": "ug/mL", "remifentanil": "ng/mL"}


def _hill_nonnegative(conc: FloatArray, c50: float, gamma: float, emax: float) -> FloatArray:
    """:func:`hill` for concentrations already known to be >= 0, with one temporary and
    in-place arithmetic (the PD of a large batch is memory-bound)."""
    r = np.empty(np.shape(conc))
    with np.errstate(divide="ignore", over="ignore"):  # (C50/C)^γ → inf: no effect, exactly
        np.divide(c50, conc, out=r)
        np.power(r, gamma, out=r)
    r += 1.0
    np.divide(emax, r, out=r)
    return r


def hill(c: ArrayLike, c50: float, gamma: float, emax: float = 1.0) -> FloatArray:
    """The sigmoid Emax model ``emax·C^γ / (C50^γ + C^γ)``, elementwise.

    Written as ``emax / (1 + (C50/C)^γ)`` so that it is exactly 0 at ``C = 0`` and stays
    finite for any ``C >= 0`` (negative concentrations count as 0).
    """
    conc = np.maximum(np.asarray(c, dtype=float), 0.0)
    return _hill_nonnegative(conc, c50, gamma, emax)


@dataclass(frozen=True)
class BISParams:
    """Bouillon 2004 BIS response surface (values as reported by open implementations)."""

    e0: float = param(97.4, unit="BIS", doc="awake BIS", minimum=0.0, maximum=100.0)
    emax: float = param(97.4, unit="BIS", doc="maximal BIS decrease", minimum=0.0, maximum=100.0)
    c50_propofol_ug_ml: float = param(
        4.47, unit="ug/mL", doc="propofol Ce for half the maximal effect", minimum=1e-6
    )
    c50_remifentanil_ng_ml: float = param(
        19.3, unit="ng/mL", doc="remifentanil Ce for half the maximal effect", minimum=1e-6
    )
    gamma: float = param(1.43, unit="1", doc="steepness", minimum=0.1, maximum=20.0)
    beta: float = param(0.0, unit="1", doc="Minto interaction term (0: additive)")


@dataclass(frozen=True)
class HillPair:
    """One vital sign's fractional decrease by each drug: ``1 − Π_d (1 − E_d)``."""

    propofol_emax: float = param(0.3, unit="1", doc="maximal fraction", minimum=0.0, maximum=1.0)
    propofol_c50_ug_ml: float = param(4.0, unit="ug/mL", doc="C50", minimum=1e-6)
    propofol_gamma: float = param(1.5, unit="1", doc="steepness", minimum=0.1, maximum=20.0)
    remifentanil_emax: float = param(
        0.3, unit="1", doc="maximal fraction", minimum=0.0, maximum=1.0
    )
    remifentanil_c50_ng_ml: float = param(10.0, unit="ng/mL", doc="C50", minimum=1e-6)
    remifentanil_gamma: float = param(1.5, unit="1", doc="steepness", minimum=0.1, maximum=20.0)

    def factor(self, ce_propofol_ug_ml: ArrayLike, ce_remifentanil_ng_ml: ArrayLike) -> FloatArray:
        """The multiplicative factor on the baseline, in (0, 1]."""
        cp = np.maximum(np.asarray(ce_propofol_ug_ml, dtype=float), 0.0)
        cr = np.maximum(np.asarray(ce_remifentanil_ng_ml, dtype=float), 0.0)
        return self._factor(cp, cr)

    def _factor(self, cp: FloatArray, cr: FloatArray) -> FloatArray:
        # (1 − Emax_p·E_p)·(1 − Emax_r·E_r), in place (concentrations known >= 0)
        a = _hill_nonnegative(cp, self.propofol_c50_ug_ml, self.propofol_gamma, -self.propofol_emax)
        a += 1.0
        b = _hill_nonnegative(
            cr, self.remifentanil_c50_ng_ml, self.remifentanil_gamma, -self.remifentanil_emax
        )
        b += 1.0
        if a.shape == np.broadcast_shapes(a.shape, b.shape):
            a *= b
            return a
        if b.shape == np.broadcast_shapes(a.shape, b.shape):
            b *= a
            return b
        out: FloatArray = a * b
        return out


def _map_default() -> HillPair:
    # Unverified magnitudes: propofol lowers MAP by up to ~40 %, remifentanil by ~30 %.
    return HillPair(0.40, 4.0, 1.5, 0.30, 15.0, 1.5)


def _hr_default() -> HillPair:
    # Unverified magnitudes: little HR change with propofol, bradycardia with remifentanil.
    return HillPair(0.15, 5.0, 1.5, 0.30, 10.0, 1.5)


def _rr_default() -> HillPair:
    # Unverified: both drugs can cause apnoea (Emax = 1); remifentanil C50 of the order of
    # Glass 1999's 1.17 ng/mL for the CO2 response, resting RR taken as less sensitive.
    return HillPair(1.0, 4.0, 2.0, 1.0, 3.0, 2.0)


@dataclass(frozen=True)
class PDParams:
    """All drug-effect parameters (dotted names for ``--set``: ``pd.rr_effect.…``)."""

    bis: BISParams = field(default_factory=BISParams)
    map_effect: HillPair = field(default_factory=_map_default)
    hr_effect: HillPair = field(default_factory=_hr_default)
    rr_effect: HillPair = field(default_factory=_rr_default)


@dataclass(frozen=True)
class DrugEffects:
    """Drug effects, each of the broadcast shape of the concentrations (e.g. (B, n)).

    Attributes
    ----------
    bis : ndarray
        Bispectral index (0–100).
    map_factor, hr_factor, rr_factor : ndarray
        Multiplicative factors on the patient's baseline MAP, HR and RR, in [0, 1].
    ventilation_fraction : ndarray
        Alveolar ventilation relative to baseline (tidal volume assumed unchanged, so
        equal to ``rr_factor``): the input of :func:`spo2_from_ventilation`.
    """

    bis: FloatArray
    map_factor: FloatArray
    hr_factor: FloatArray
    rr_factor: FloatArray
    ventilation_fraction: FloatArray


def bis_response_surface(
    ce_propofol_ug_ml: ArrayLike, ce_remifentanil_ng_ml: ArrayLike, params: BISParams
) -> FloatArray:
    """BIS from the two effect-site concentrations (Minto-form response surface)."""
    cp = np.maximum(np.asarray(ce_propofol_ug_ml, dtype=float), 0.0)
    cr = np.maximum(np.asarray(ce_remifentanil_ng_ml, dtype=float), 0.0)
    return _bis(cp, cr, params)


def _bis(cp: FloatArray, cr: FloatArray, params: BISParams) -> FloatArray:
    up = np.divide(cp, params.c50_propofol_ug_ml, out=np.empty(np.shape(cp)))
    total = np.add(up, np.divide(cr, params.c50_remifentanil_ng_ml), dtype=float)
    if params.beta != 0.0:
        with np.errstate(invalid="ignore", divide="ignore"):
            theta = np.where(total > 0.0, up / np.where(total > 0.0, total, 1.0), 0.0)
        total = total / (1.0 - params.beta * theta + params.beta * theta**2)
    out = _hill_nonnegative(np.asarray(total), 1.0, params.gamma, -params.emax)
    out += params.e0
    return out


def drug_effects(
    ce_by_drug: Mapping[str, ArrayLike], params: PDParams | None = None
) -> DrugEffects:
    """The drug effects the vital-sign model applies to its baselines.

    Parameters
    ----------
    ce_by_drug : mapping
        Effect-site concentration by drug: ``"propofol"`` in µg/mL, ``"remifentanil"`` in
        ng/mL (arrays of any broadcastable shapes, e.g. (B, n)); a missing drug is 0.
    params : PDParams, optional

    Raises
    ------
    ParameterError
        For an unknown drug name or negative / non-finite concentrations.
    """
    p = PDParams() if params is None else params
    validate(p)
    unknown = sorted(set(ce_by_drug) - set(PD_DRUGS))
    if unknown:
        raise ParameterError(f"ce_by_drug: unknown drug {unknown[0]!r}; known {sorted(PD_DRUGS)}")
    conc: dict[str, FloatArray] = {}
    for drug in PD_DRUGS:
        c = np.asarray(ce_by_drug.get(drug, 0.0), dtype=float)
        # min/max: no temporaries; a NaN fails the comparison
        if c.size and not (np.min(c) >= 0.0 and np.max(c) < math.inf):
            raise ParameterError(f"ce_by_drug[{drug!r}] must be finite and >= 0")
        conc[drug] = c
    cp, cr = conc["propofol"], conc["remifentanil"]
    shape = np.broadcast_shapes(cp.shape, cr.shape)
    names = ("bis", "map_factor", "hr_factor", "rr_factor")
    out = {name: np.empty(shape) for name in names}
    for rows in _row_blocks(shape):
        cp_b, cr_b = _rows(cp, rows, shape), _rows(cr, rows, shape)
        block = {
            "bis": _bis(cp_b, cr_b, p.bis),
            "map_factor": p.map_effect._factor(cp_b, cr_b),
            "hr_factor": p.hr_effect._factor(cp_b, cr_b),
            "rr_factor": p.rr_effect._factor(cp_b, cr_b),
        }
        for name in names:
            out[name][rows] = block[name]  # broadcasts an absent drug's 0-d result
    return DrugEffects(
        bis=out["bis"],
        map_factor=out["map_factor"],
        hr_factor=out["hr_factor"],
        rr_factor=out["rr_factor"],
        ventilation_fraction=out["rr_factor"].copy(),
    )


#: Elements per block: large batches are evaluated a block of rows at a time so that the
#: element-wise chain stays in cache (it is memory-bound otherwise, ~3× slower).
_BLOCK_ELEMENTS = 1 << 17


def _row_blocks(shape: tuple[int, ...]) -> list[tuple[slice, ...] | tuple[()]]:
    """Index tuples covering ``shape`` in blocks of leading-axis rows ((): the whole)."""
    if len(shape) < 2 or math.prod(shape) <= _BLOCK_ELEMENTS:
        return [()]
    per_row = max(1, math.prod(shape[1:]))
    step = max(1, _BLOCK_ELEMENTS // per_row)
    return [(slice(i, i + step),) for i in range(0, shape[0], step)]


def _rows(a: FloatArray, rows: tuple[slice, ...] | tuple[()], shape: tuple[int, ...]) -> FloatArray:
    """The part of ``a`` (broadcastable to ``shape``) that the block ``rows`` reads."""
    if not rows or a.ndim < len(shape) or a.shape[0] == 1:
        return a  # spans no leading axis of its own: broadcast as is
    return a[rows]


# ------------------------------------------------------------------ ventilation → SpO2


@dataclass(frozen=True)
class SpO2Params:
    """Gas exchange and the SpO2 lag."""

    fio2: float = param(0.21, unit="1", doc="inspired O2 fraction", minimum=0.05, maximum=1.0)
    barometric_pressure_mmhg: float = param(
        760.0, unit="mmHg", doc="barometric pressure", minimum=300.0, maximum=1100.0
    )
    water_vapour_mmhg: float = param(
        47.0, unit="mmHg", doc="water vapour pressure at 37 °C", minimum=0.0, maximum=100.0
    )
    respiratory_quotient: float = param(
        0.8, unit="1", doc="respiratory quotient R", minimum=0.5, maximum=1.5
    )
    paco2_baseline_mmhg: float = param(
        40.0, unit="mmHg", doc="PaCO2 at baseline ventilation", minimum=10.0, maximum=100.0
    )
    min_ventilation_fraction: float = param(
        0.02,
        unit="1",
        doc="floor on the ventilation fraction in PaCO2 = PaCO2_0/f (bounds PaCO2 in apnoea)",
        minimum=1e-6,
        maximum=1.0,
    )
    tau_s: float = param(
        120.0,
        unit="s",
        doc="first-order lag of PaO2 behind its target (lung O2 store; unverified)",
        minimum=1e-3,
        maximum=3600.0,
    )


def severinghaus_spo2_percent(pao2_mmhg: ArrayLike) -> FloatArray:
    """SpO2 (%) from PaO2 (mmHg): ``100 / (1 + 23400/(P³ + 150·P))`` (Severinghaus 1979).

    Non-positive PaO2 gives 0 %.
    """
    p: FloatArray = np.array(pao2_mmhg, dtype=float)
    np.maximum(p, 0.0, out=p)
    # P³ + 150·P = P·(P² + 150), in place (memory-bound for large batches)
    q: FloatArray = np.multiply(p, p, out=np.empty_like(p))
    q += 150.0
    q *= p
    p = np.add(q, 23400.0, out=p)
    q *= 100.0
    q /= p
    return q


def severinghaus_pao2_mmhg(spo2_percent: ArrayLike) -> FloatArray:
    """The inverse of :func:`severinghaus_spo2_percent` for SpO2 in (0, 100) %.

    ``P³ + 150·P = q`` with ``q = 23400·S/(100 − S)`` has one real root (Cardano).
    """
    s = np.asarray(spo2_percent, dtype=float)
    if np.any(~np.isfinite(s)) or np.any(s <= 0.0) or np.any(s >= 100.0):
        raise ParameterError("spo2_percent must lie strictly between 0 and 100")
    q = 23400.0 * s / (100.0 - s)
    disc = np.sqrt(q**2 / 4.0 + 50.0**3)  # (p/3)^3 with p = 150
    out: FloatArray = np.cbrt(q / 2.0 + disc) + np.cbrt(q / 2.0 - disc)
    return out


def alveolar_po2_mmhg(paco2_mmhg: ArrayLike, params: SpO2Params | None = None) -> FloatArray:
    """The alveolar gas equation ``PAO2 = FiO2·(Pb − PH2O) − PaCO2/R`` (mmHg)."""
    p = SpO2Params() if params is None else params
    inspired = p.fio2 * (p.barometric_pressure_mmhg - p.water_vapour_mmhg)
    out: FloatArray = inspired - np.asarray(paco2_mmhg, dtype=float) / p.respiratory_quotient
    return out


def pao2_target_mmhg(
    ventilation_fraction: ArrayLike,
    baseline_spo2_percent: ArrayLike,
    params: SpO2Params | None = None,
) -> FloatArray:
    """The arterial PO2 (mmHg, >= 0) the patient settles to at a ventilation fraction.

    ``ventilation_fraction`` 1 gives the PaO2 of ``baseline_spo2_percent`` (clipped to
    [1, 99.9] %, where the Severinghaus inverse is finite); lower ventilation raises PaCO2
    and lowers PAO2 and PaO2. Shapes broadcast.
    """
    p = SpO2Params() if params is None else params
    f = np.clip(np.asarray(ventilation_fraction, dtype=float), p.min_ventilation_fraction, None)
    base = np.clip(np.asarray(baseline_spo2_percent, dtype=float), 1.0, 99.9)
    # The A-a offset that reproduces the baseline at f = 1 (negative if the baseline is
    # above what the alveolar PO2 allows at this FiO2: an offset, not a physiology).
    offset = alveolar_po2_mmhg(p.paco2_baseline_mmhg, p) - severinghaus_pao2_mmhg(base)
    out: FloatArray = np.maximum(alveolar_po2_mmhg(p.paco2_baseline_mmhg / f, p) - offset, 0.0)
    return out


def spo2_target_percent(
    ventilation_fraction: ArrayLike,
    baseline_spo2_percent: ArrayLike,
    params: SpO2Params | None = None,
) -> FloatArray:
    """The steady-state SpO2 (%) at a ventilation fraction: Severinghaus of
    :func:`pao2_target_mmhg`."""
    return severinghaus_spo2_percent(
        pao2_target_mmhg(ventilation_fraction, baseline_spo2_percent, params)
    )


class OxygenationIntegrator:
    """The live form of :func:`spo2_from_ventilation`: PaO2 lags its target.

    Parameters
    ----------
    baseline_spo2_percent : float or array_like, shape (B,)
    params : SpO2Params, optional
    initial_spo2_percent : float or array_like, shape (B,), optional
        Default: the baseline.
    """

    def __init__(
        self,
        baseline_spo2_percent: ArrayLike,
        *,
        params: SpO2Params | None = None,
        initial_spo2_percent: ArrayLike | None = None,
    ) -> None:
        self.params = SpO2Params() if params is None else params
        validate(self.params)
        self.baseline_spo2_percent = np.asarray(baseline_spo2_percent, dtype=float)
        start = self.baseline_spo2_percent if initial_spo2_percent is None else initial_spo2_percent
        self._pao2 = severinghaus_pao2_mmhg(np.clip(np.asarray(start, dtype=float), 1.0, 99.9))

    @property
    def pao2_mmhg(self) -> FloatArray:
        """Arterial PO2 now (mmHg)."""
        return self._pao2.copy()

    @property
    def spo2_percent(self) -> FloatArray:
        """SpO2 now (%)."""
        return severinghaus_spo2_percent(self._pao2)

    def advance(self, dt_s: float, ventilation_fraction: ArrayLike) -> None:
        """Advance ``dt_s`` seconds with the ventilation fraction held constant."""
        if not (dt_s >= 0.0 and math.isfinite(dt_s)):
            raise ParameterError(f"dt_s = {dt_s!r} must be a finite number >= 0")
        target = pao2_target_mmhg(ventilation_fraction, self.baseline_spo2_percent, self.params)
        a = math.exp(-dt_s / self.params.tau_s)
        self._pao2 = target + (self._pao2 - target) * a


def spo2_from_ventilation(
    t_s: ArrayLike,
    ventilation_fraction: ArrayLike,
    baseline_spo2_percent: ArrayLike,
    *,
    params: SpO2Params | None = None,
    initial_spo2_percent: ArrayLike | None = None,
) -> FloatArray:
    """SpO2 (%) over time from the ventilation fraction.

    PaO2 follows :func:`pao2_target_mmhg` with the first-order lag ``params.tau_s`` (the
    lungs' oxygen store), exactly for a ventilation fraction held from each sample to the
    next; SpO2 is Severinghaus of that PaO2, so it stays near its baseline at first and
    then falls along the dissociation curve.

    Parameters
    ----------
    t_s : array_like, shape (n,)
        Sample times (s), non-decreasing.
    ventilation_fraction : array_like, shape (n,) or (B, n)
        Alveolar ventilation relative to baseline, held constant from each sample to the
        next (zero-order hold, as the PK input).
    baseline_spo2_percent : float or array_like, shape (B,)
        Each patient's SpO2 at ventilation fraction 1.
    params : SpO2Params, optional
    initial_spo2_percent : float or array_like, shape (B,), optional
        SpO2 at ``t_s[0]``; default the baseline.

    Returns
    -------
    ndarray, shape (n,) or (B, n)
    """
    p = SpO2Params() if params is None else params
    validate(p)
    t = np.asarray(t_s, dtype=float).reshape(-1)
    if t.size == 0:
        raise ParameterError("t_s is empty")
    dt = np.diff(t)
    if not np.all(np.isfinite(t)) or np.any(dt < 0.0):
        raise ParameterError("t_s must be finite and non-decreasing")
    vent = np.asarray(ventilation_fraction, dtype=float)
    if vent.ndim == 0 or vent.shape[-1] != t.shape[0]:
        raise ParameterError(
            f"ventilation_fraction has shape {vent.shape}; its last axis must have "
            f"t_s's {t.shape[0]} samples"
        )
    base = np.asarray(baseline_spo2_percent, dtype=float)
    if vent.ndim == 2 and base.ndim == 1:
        base = base.reshape(-1, 1)
    shape = np.broadcast_shapes(vent.shape, base.shape)
    start = base[..., 0] if base.ndim == 2 else base
    if initial_spo2_percent is not None:
        start = np.asarray(initial_spo2_percent, dtype=float)
    x0_all = np.broadcast_to(severinghaus_pao2_mmhg(np.clip(start, 1.0, 99.9)), shape[:-1])
    out = np.empty(shape)
    uniform = t.shape[0] > 1 and bool(np.all(dt == dt[0]))
    for rows in _row_blocks(shape) if uniform else [()]:
        piece = out[rows]
        target = np.broadcast_to(
            pao2_target_mmhg(_rows(vent, rows, shape), _rows(base, rows, shape), p), piece.shape
        )
        x0 = np.array(x0_all[rows], dtype=float)
        pao2 = np.empty(piece.shape)
        pao2[..., 0] = x0
        if uniform:
            # Uniform step: x[k+1] = a·x[k] + (1 − a)·T[k] as a first-order linear filter.
            a = math.exp(-dt[0] / p.tau_s)
            y, _ = lfilter([1.0 - a], [1.0, -a], target[..., :-1], axis=-1, zi=(a * x0)[..., None])
            pao2[..., 1:] = y
        else:
            decay = np.exp(-dt / p.tau_s)
            x = x0
            for k in range(dt.shape[0]):
                x = target[..., k] + (x - target[..., k]) * decay[k]
                pao2[..., k + 1] = x
        out[rows] = severinghaus_spo2_percent(pao2)
    return out
