"""What a calibration gives: estimates with standard errors, per-channel fits, validation.

:class:`Calibration` is the outcome of :func:`medtwin.hil.calibration.calibrate` (nothing is
stored until :func:`medtwin.hil.calibration.save_calibration`); :func:`covariance` turns the
weighted Jacobian at the optimum into standard errors and a correlation matrix,
``cov = s²·(JᵀJ)⁻¹`` with ``s² = Σr²/(N − p − k)``, the covariance
:func:`scipy.optimize.curve_fit` reports with ``absolute_sigma=False``. :func:`validate`
replays another run of the same device with the nominal and the calibrated twin, which is
how a calibration is shown to predict rather than merely fit.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from medtwin.device_models.base import ParameterError
from medtwin.drivers.errors import ConfigurationError
from medtwin.hil.calibration.problem import (
    FitChannel,
    Problem,
    run_bench,
    run_device_key,
    select_channels,
)
from medtwin.hil.store import RunData
from medtwin.hil.twin import twin_params
from numpy.typing import NDArray

__all__ = [
    "Calibration",
    "ChannelFit",
    "CovarianceEstimate",
    "ParameterEstimate",
    "Validation",
    "andrews_bandwidth",
    "covariance",
    "identifiability",
    "long_run_covariance",
    "rms",
    "validate",
]

FloatArray = NDArray[np.float64]

#: Singular values of the weighted Jacobian below this fraction of the largest count as 0
#: (a direction in parameter space the data do not constrain).
_RANK_RTOL = 1e-10


@dataclass(frozen=True)
class ParameterEstimate:
    """One fitted parameter.

    ``value`` and ``stderr`` in ``unit``; ``before`` is the run's twin value; ``lower`` /
    ``upper`` the declared range (None: open); ``at_bound`` is True when the optimum sits
    on a bound (its standard error then describes the unconstrained curvature only).
    """

    name: str
    unit: str
    value: float
    stderr: float
    before: float
    lower: float | None
    upper: float | None
    at_bound: bool

    @property
    def change(self) -> float:
        return self.value - self.before


@dataclass(frozen=True)
class ChannelFit:
    """A channel of the fit: samples used, noise σ, residual RMS before and after (plain
    ``real − twin`` in ``unit``, as the comparator sees it)."""

    name: str
    unit: str
    samples: int
    sigma: float
    rms_before: float
    rms_after: float

    def as_json(self) -> dict[str, Any]:
        return {
            "unit": self.unit,
            "samples": self.samples,
            "sigma": _finite(self.sigma),
            "rms_before": _finite(self.rms_before),
            "rms_after": _finite(self.rms_after),
        }


@dataclass(frozen=True)
class Calibration:
    """The outcome of :func:`calibrate` (nothing is stored until :func:`save_calibration`)."""

    run_id: int
    device_key: str
    estimates: dict[str, ParameterEstimate]
    fixed: dict[str, float]
    carried: dict[str, float]
    correlation: FloatArray  # (p, p), NaN where undetermined
    channels: dict[str, ChannelFit]
    offsets: dict[str, list[float]]
    residual_channel: str
    residual_unit: str
    residual_rms_before: float
    residual_rms_after: float
    residual_variance: float
    dof: int
    nfev: int
    njev: int
    model_calls: int
    model_rows: int
    fit_wall_s: float
    status: int
    message: str
    jacobian: str
    #: (p, p) parameter covariance in the parameters' units (:func:`covariance`).
    covariance: FloatArray = dataclasses.field(default_factory=lambda: np.zeros((0, 0)))
    covariance_method: str = "newey-west"
    bandwidth: float = 0.0
    #: White-noise standard errors ``s²·(JᵀJ)⁻¹``, for comparison only.
    stderr_iid: dict[str, float] = dataclasses.field(default_factory=dict)
    #: Pairs of parameters the run cannot tell apart (:func:`identifiability`).
    identifiability: tuple[IdentifiabilityWarning, ...] = ()
    correlation_threshold: float = 0.95

    @property
    def names(self) -> list[str]:
        return list(self.estimates)

    def overrides(self) -> dict[str, float]:
        """Every parameter the calibrated twin sets: fitted, fixed and carried over."""
        return {
            **self.carried,
            **self.fixed,
            **{name: e.value for name, e in self.estimates.items()},
        }

    def stored_params(self) -> dict[str, dict[str, float | None]]:
        """``{name: {"value", "stderr"}}`` for the store: fixed and carried-over
        parameters (not estimated here) have ``stderr`` None."""
        out: dict[str, dict[str, float | None]] = {
            name: {"value": value, "stderr": None}
            for name, value in {**self.carried, **self.fixed}.items()
        }
        for name, e in self.estimates.items():
            out[name] = {"value": e.value, "stderr": e.stderr}
        return out

    def correlation_json(self) -> dict[str, Any]:
        """Correlation, covariance and identifiability warnings as stored with the
        calibration (the twin's prediction band reads ``covariance``)."""
        return {
            "names": self.names,
            "matrix": [[_finite(v) for v in row] for row in self.correlation.tolist()],
            "covariance": [[_finite(v) for v in row] for row in self.covariance.tolist()],
            "method": self.covariance_method,
            "threshold": self.correlation_threshold,
            "warnings": [w.as_json() for w in self.identifiability],
        }

    def as_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "device_key": self.device_key,
            "params": {
                name: {
                    "value": e.value,
                    "stderr": _finite(e.stderr),
                    "before": e.before,
                    "unit": e.unit,
                    "lower": e.lower,
                    "upper": e.upper,
                    "at_bound": e.at_bound,
                }
                for name, e in self.estimates.items()
            },
            "fixed": dict(self.fixed),
            "carried": dict(self.carried),
            "residual_rms_before": _finite(self.residual_rms_before),
            "residual_rms_after": _finite(self.residual_rms_after),
            "residual_channel": self.residual_channel,
            "residual_unit": self.residual_unit,
            "correlation": self.correlation_json(),
            "identifiability": [w.as_json() for w in self.identifiability],
            "channels": {name: ch.as_json() for name, ch in self.channels.items()},
            "offsets": {
                name: [_finite(v) for v in values] for name, values in self.offsets.items()
            },
            "fit": {
                "method": "scipy.optimize.least_squares (trf, x_scale='jac')",
                "jacobian": self.jacobian,
                "stderr": _STDERR_METHODS[self.covariance_method],
                "covariance_method": self.covariance_method,
                "bandwidth": round(self.bandwidth, 3),
                "stderr_iid": {name: _finite(v) for name, v in self.stderr_iid.items()},
                "residual_variance": _finite(self.residual_variance),
                "dof": self.dof,
                "nfev": self.nfev,
                "njev": self.njev,
                "model_calls": self.model_calls,
                "model_rows": self.model_rows,
                "wall_s": round(self.fit_wall_s, 4),
                "status": self.status,
                "message": self.message,
            },
        }


_STDERR_METHODS = {
    "newey-west": "sqrt(diag((JᵀJ)⁻¹·Ω·(JᵀJ)⁻¹·N/dof)), Ω the Newey-West long-run covariance "
    "of the scores J·r (Bartlett kernel, Andrews 1991 bandwidth, VAR(1) prewhitening)",
    "iid": "sqrt(diag(s²·(JᵀJ)⁻¹)), J at the optimum, s² = residual variance",
}


#: What separates two parameters whose effects on the balance mass look alike, by the
#: last part of their dotted names (either order). Wording for the CLI and the report.
_SEPARATING_EXPERIMENTS: dict[frozenset[str], str] = {
    frozenset({"inner_diameter_mm", "lead_mm"}): (
        "both scale the flow per motor step: measure the bore directly (bore gauge) or "
        "repeat the run with a syringe of another diameter"
    ),
    frozenset({"inner_diameter_mm", "wear_percent_per_h"}): (
        "a constant and a growing under-delivery look alike over a short run: a longer "
        "run (well past the wear onset) or a direct measurement of the bore"
    ),
    frozenset({"wear_percent_per_h", "wear_onset_s"}): (
        "a later, steeper wear and an earlier, slower one look alike: a longer run, so "
        "that the wear's slope is seen for longer after its onset"
    ),
    frozenset({"inner_diameter_mm", "temperature_c"}): (
        "the water density and the bore both scale the delivered mass: measure the water "
        "temperature and fix it"
    ),
    frozenset({"barrel_compliance_ul_per_mmhg", "backlash_mm"}): (
        "both delay the start of delivery: a run with a pressure step (a partial "
        "occlusion) separates the compliance, which depends on pressure, from the backlash"
    ),
    frozenset({"efficiency", "wear_percent_per_h"}): (
        "a lower efficiency and a growing wear look alike over a short run: a longer run"
    ),
}

_DEFAULT_EXPERIMENT = (
    "their effects on the fitted channels are nearly proportional: fix one of them (--fix) "
    "at an independently measured value, or add a run at other settings (another rate, "
    "another syringe, a longer run) that moves them differently"
)


@dataclass(frozen=True)
class IdentifiabilityWarning:
    """Two fitted parameters the run cannot tell apart: ``|ρ|`` above the threshold."""

    first: str
    second: str
    rho: float
    experiment: str

    @property
    def message(self) -> str:
        return (
            f"{self.first} and {self.second} are correlated at ρ = {self.rho:+.3f}: this run "
            f"cannot tell them apart; {self.experiment}"
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "parameters": [self.first, self.second],
            "rho": _finite(self.rho),
            "experiment": self.experiment,
            "message": self.message,
        }


def identifiability(
    names: Sequence[str], correlation: FloatArray, *, threshold: float = 0.95
) -> tuple[IdentifiabilityWarning, ...]:
    """Pairs of parameters whose estimates are correlated beyond ``threshold`` (|ρ|), with
    the experiment that would separate them, most correlated first.

    At |ρ| = 0.95 the variance inflation of each estimate is 1/(1 − ρ²) ≈ 10 (Belsley,
    Kuh & Welsch 1980, ch. 3): most of what the run says about one parameter is a trade
    against the other.
    """
    if not 0.0 < threshold < 1.0:
        raise ConfigurationError(
            f"expected a correlation threshold between 0 and 1, got {threshold!r}",
            source="--max-correlation",
        )
    found: list[IdentifiabilityWarning] = []
    for i, j in itertools.combinations(range(len(names)), 2):
        rho = float(correlation[i, j])
        if math.isfinite(rho) and abs(rho) > threshold:
            key = frozenset({names[i].rsplit(".", 1)[-1], names[j].rsplit(".", 1)[-1]})
            found.append(
                IdentifiabilityWarning(
                    names[i], names[j], rho, _SEPARATING_EXPERIMENTS.get(key, _DEFAULT_EXPERIMENT)
                )
            )
    found.sort(key=lambda w: -abs(w.rho))
    return tuple(found)


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def rms(values: FloatArray) -> float:
    return float(np.sqrt(np.mean(np.square(values)))) if values.size else math.nan


#: Largest singular value allowed in the prewhitening VAR(1) matrix (Andrews & Monahan
#: 1992, section 3: near-unit roots make the recolouring ``(I − Â)⁻¹`` explode).
PREWHITEN_CAP = 0.97

#: Largest autoregressive coefficient the bandwidth's AR(1) plug-in takes (the same cap:
#: the plug-in's α̂(1) diverges as ρ → 1).
_RHO_CAP = 0.97


@dataclass(frozen=True)
class CovarianceEstimate:
    """The parameter covariance of a fit and how it was obtained.

    ``cov`` (p, p) in the parameters' units; ``stderr`` (p,) the square roots of its
    diagonal (inf where the data do not determine a parameter); ``correlation`` (p, p),
    NaN where undetermined; ``method`` ``"newey-west"`` or ``"iid"``; ``bandwidth`` the
    Bartlett bandwidth S_T in samples (0 for ``"iid"``); ``stderr_iid`` the textbook
    ``s²·(JᵀJ)⁻¹`` standard errors, kept for comparison (they assume white residuals).
    """

    cov: FloatArray
    stderr: FloatArray
    correlation: FloatArray
    method: str
    bandwidth: float
    stderr_iid: FloatArray


def _bread(J: FloatArray) -> tuple[FloatArray, FloatArray]:
    """(pseudo-inverse of JᵀJ, mask of parameters with a component along an unconstrained
    direction), through the SVD of ``J`` so that a rank-deficient ``J`` is handled."""
    p = J.shape[1]
    _, s, vt = np.linalg.svd(J, full_matrices=False)
    if s.size == 0 or s[0] == 0:
        return np.zeros((p, p)), np.ones(p, dtype=bool)
    keep = s > _RANK_RTOL * s[0]
    v = vt.T
    bread = (v[:, keep] / s[keep] ** 2) @ v[:, keep].T
    free = np.zeros(p, dtype=bool)
    if not np.all(keep):
        free = np.any(np.abs(v[:, ~keep]) > 1e-8, axis=1)
    return bread, free


def _lagged_products(u: FloatArray, blocks: Sequence[tuple[int, int]], lag: int) -> FloatArray:
    """Σ_t u_t u_{t−lag}ᵀ over the pairs that lie inside one block (p, p)."""
    p = u.shape[1]
    out = np.zeros((p, p))
    for a, b in blocks:
        if b - a > lag:
            out += u[a + lag : b].T @ u[a : b - lag]
    return out


def _prewhiten(
    u: FloatArray, blocks: Sequence[tuple[int, int]]
) -> tuple[FloatArray, list[tuple[int, int]], FloatArray]:
    """VAR(1) prewhitening of the scores (Andrews & Monahan 1992): the innovations
    ``e_t = u_t − Â u_{t−1}`` (the first sample of each block has no predecessor and is
    dropped), their blocks, and ``Â`` with its singular values capped at
    :data:`PREWHITEN_CAP`."""
    p = u.shape[1]
    cross = _lagged_products(u, blocks, 1)
    lagged = np.zeros((p, p))
    for a, b in blocks:
        if b - a > 1:
            lagged += u[a : b - 1].T @ u[a : b - 1]
    A = cross @ np.linalg.pinv(lagged)
    uu, s, vt = np.linalg.svd(A)
    A = (uu * np.minimum(s, PREWHITEN_CAP)) @ vt
    parts: list[FloatArray] = []
    new_blocks: list[tuple[int, int]] = []
    start = 0
    for a, b in blocks:
        if b - a < 2:
            continue
        e = u[a + 1 : b] - u[a : b - 1] @ A.T
        parts.append(e)
        new_blocks.append((start, start + e.shape[0]))
        start += e.shape[0]
    e_all = np.vstack(parts) if parts else np.zeros((0, p))
    return e_all, new_blocks, A


def andrews_bandwidth(e: FloatArray, blocks: Sequence[tuple[int, int]]) -> float:
    """Andrews (1991, eq. 6.4 and section 6) automatic bandwidth for the Bartlett kernel,
    ``S_T = 1.1447·(α̂(1)·T)^{1/3}``, with α̂(1) from one AR(1) fitted to each column of
    ``e`` (weights 1):
    ``α̂(1) = Σ 4ρ²σ⁴/((1−ρ)⁶(1+ρ)²) / Σ σ⁴/(1−ρ)⁴``."""
    T = sum(b - a for a, b in blocks)
    num = den = 0.0
    for a_col in range(e.shape[1]):
        x = e[:, a_col]
        xy = sum(float(x[a + 1 : b] @ x[a : b - 1]) for a, b in blocks if b - a > 1)
        xx = sum(float(x[a : b - 1] @ x[a : b - 1]) for a, b in blocks if b - a > 1)
        if not xx > 0:
            continue
        rho = float(np.clip(xy / xx, -_RHO_CAP, _RHO_CAP))
        resid = np.concatenate([x[a + 1 : b] - rho * x[a : b - 1] for a, b in blocks if b - a > 1])
        var = float(resid @ resid) / max(resid.size, 1)
        num += 4.0 * rho**2 * var**2 / ((1.0 - rho) ** 6 * (1.0 + rho) ** 2)
        den += var**2 / (1.0 - rho) ** 4
    if not den > 0 or T == 0:
        return 0.0
    return float(1.1447 * (num / den * T) ** (1.0 / 3.0))


def long_run_covariance(
    u: FloatArray, blocks: Sequence[tuple[int, int]], *, prewhiten: bool = True
) -> tuple[FloatArray, float]:
    """Newey–West (1987) estimate of the long-run covariance ``Σ_l Γ_l`` of the score rows
    ``u`` (N, p): Bartlett weights ``1 − l/S_T`` up to the Andrews (1991) bandwidth
    ``S_T``, after VAR(1) prewhitening (Andrews & Monahan 1992) when ``prewhiten``.
    Autocovariances are summed only within each of ``blocks`` (independent series: the
    channels of a fit). Returns (Ω (p, p), S_T)."""
    if prewhiten:
        e, eblocks, A = _prewhiten(u, blocks)
    else:
        e, eblocks, A = u, list(blocks), np.zeros((u.shape[1], u.shape[1]))
    bandwidth = andrews_bandwidth(e, eblocks)
    longest = max((b - a for a, b in eblocks), default=1)
    omega = _lagged_products(e, eblocks, 0)
    lag = 1
    while lag < bandwidth and lag < longest:
        g = _lagged_products(e, eblocks, lag)
        omega += (1.0 - lag / bandwidth) * (g + g.T)
        lag += 1
    # Back from the innovations to the scores: Ω = (I − Â)⁻¹ Ω* (I − Â)⁻ᵀ.
    recolour = np.linalg.inv(np.eye(u.shape[1]) - A)
    return recolour @ omega @ recolour.T, bandwidth


def covariance(
    J: FloatArray,
    residual: FloatArray,
    *,
    blocks: Sequence[tuple[int, int]] | None = None,
    dof: int | None = None,
    method: str = "newey-west",
) -> CovarianceEstimate:
    """Parameter covariance of a least-squares fit from the weighted Jacobian ``J`` (N, p)
    and the weighted residual ``r`` (N,) at the optimum.

    ``method = "newey-west"`` (the default): the sandwich
    ``(JᵀJ)⁻¹·Ω·(JᵀJ)⁻¹·N/dof`` with Ω the long-run covariance of the scores
    ``u_t = J_t·r_t`` (:func:`long_run_covariance`: Newey & West 1987 Bartlett weights,
    Andrews 1991 automatic bandwidth, Andrews & Monahan 1992 VAR(1) prewhitening),
    consistent when the residuals are autocorrelated, as a balance's are.
    ``method = "iid"``: ``s²·(JᵀJ)⁻¹``, ``s² = Σr²/dof`` (what
    :func:`scipy.optimize.curve_fit` reports with ``absolute_sigma=False``), right only
    for white residuals. ``blocks``: (start, stop) ranges of ``r`` that are separate
    series (default: one); ``dof``: residual degrees of freedom (default N − p).
    """
    n, p = J.shape
    blocks = [(0, n)] if blocks is None else list(blocks)
    dof = n - p if dof is None else dof
    bread, free = _bread(J)
    s2 = float(residual @ residual) / max(dof, 1)
    cov_iid = bread * s2
    bandwidth = 0.0
    if method == "iid":
        cov = cov_iid
    elif method == "newey-west":
        omega, bandwidth = long_run_covariance(J * residual[:, None], blocks)
        cov = bread @ omega @ bread * (n / max(dof, 1))
    else:
        raise ValueError(f"unknown covariance method {method!r}")
    cov = 0.5 * (cov + cov.T)
    stderr = np.sqrt(np.maximum(np.diag(cov), 0.0))
    stderr_iid = np.sqrt(np.maximum(np.diag(cov_iid), 0.0))
    if not np.any(bread):
        stderr[:] = math.inf
        stderr_iid[:] = math.inf
    stderr[free] = math.inf
    stderr_iid[free] = math.inf
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = cov / np.outer(stderr, stderr)
    corr[~np.isfinite(corr)] = math.nan
    np.fill_diagonal(corr, np.where(np.isfinite(stderr) & (stderr > 0), 1.0, math.nan))
    return CovarianceEstimate(cov, stderr, corr, method, bandwidth, stderr_iid)


# --------------------------------------------------------------------------- validation


@dataclass(frozen=True)
class Validation:
    """A calibration replayed on another run: residual RMS of each channel with the
    bench's nominal twin and with the calibrated one (plain ``real − twin``)."""

    run_id: int
    device_key: str
    channel: str
    unit: str
    rms_nominal: float
    rms_calibrated: float
    channels: dict[str, tuple[float, float]]

    @property
    def improved(self) -> bool:
        return self.rms_calibrated < self.rms_nominal

    def as_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "device_key": self.device_key,
            "residual_channel": self.channel,
            "residual_unit": self.unit,
            "residual_rms_nominal": _finite(self.rms_nominal),
            "residual_rms_calibrated": _finite(self.rms_calibrated),
            "improved": self.improved,
            "channels": {
                name: {"rms_nominal": _finite(a), "rms_calibrated": _finite(b)}
                for name, (a, b) in self.channels.items()
            },
        }


def validate(
    run: RunData, calibration: Mapping[str, float], *, channels: Sequence[str] = ()
) -> Validation:
    """Replay ``run`` with the bench's nominal twin and with ``calibration`` applied.

    Parameters
    ----------
    run : RunData
        The run to predict (another run of the same device).
    calibration : mapping
        ``{dotted name: value}``, e.g. :meth:`Calibration.overrides`.
    channels : sequence of str
        Extra channels to report (the balance mass is always reported); channels the run
        does not have are skipped.
    """
    bench = run_bench(run)
    device_key = run_device_key(run, bench, source="--validate")
    nominal = twin_params(bench)
    try:
        calibrated = nominal.with_overrides(dict(calibration))
    except ParameterError as exc:
        raise ConfigurationError(
            f"the calibration does not fit the twin of run {run.info.id}: {exc}",
            source="--validate",
        ) from None
    selected = select_channels(run, bench, (), source="--validate")
    mass_name = selected[0][0]
    wanted = {mass_name, *channels}
    extra = [
        entry
        for entry in select_channels(run, bench, ("line.",), source="--validate")
        if entry[0] in wanted and entry[0] != mass_name
    ]
    fit_channels = [
        FitChannel(n, u, k, t, v, 1.0, ()) for n, u, k, _, t, v, _ in [*selected, *extra]
    ]
    problem = Problem(nominal, run, fit_channels, [])
    before, after = problem.twins(nominal, calibrated)
    table = {
        ch.name: (rms(ch.real - before[ch.name]), rms(ch.real - after[ch.name]))
        for ch in problem.channels
    }
    return Validation(
        run_id=run.info.id,
        device_key=device_key,
        channel=mass_name,
        unit=problem.channels[0].unit,
        rms_nominal=table[mass_name][0],
        rms_calibrated=table[mass_name][1],
        channels=table,
    )
