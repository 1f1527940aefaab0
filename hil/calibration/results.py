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
    "ParameterEstimate",
    "Validation",
    "covariance",
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
        return {
            "names": self.names,
            "matrix": [[_finite(v) for v in row] for row in self.correlation.tolist()],
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
            "channels": {name: ch.as_json() for name, ch in self.channels.items()},
            "offsets": {
                name: [_finite(v) for v in values] for name, values in self.offsets.items()
            },
            "fit": {
                "method": "scipy.optimize.least_squares (trf, x_scale='jac')",
                "jacobian": self.jacobian,
                "stderr": "sqrt(diag(s²·(JᵀJ)⁻¹)), J at the optimum, s² = residual variance",
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


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def rms(values: FloatArray) -> float:
    return float(np.sqrt(np.mean(np.square(values)))) if values.size else math.nan


def covariance(J: FloatArray, residual_variance: float) -> tuple[FloatArray, FloatArray]:
    """(standard errors (p,), correlation (p, p)) from the weighted Jacobian ``J``."""
    p = J.shape[1]
    _, s, vt = np.linalg.svd(J, full_matrices=False)
    if s.size == 0 or s[0] == 0:
        return np.full(p, math.inf), np.full((p, p), math.nan)
    keep = s > _RANK_RTOL * s[0]
    v = vt.T
    cov = (v[:, keep] / s[keep] ** 2) @ v[:, keep].T * residual_variance
    stderr = np.sqrt(np.maximum(np.diag(cov), 0.0))
    if not np.all(keep):
        # A parameter with a component along an unconstrained direction is undetermined.
        free = np.any(np.abs(v[:, ~keep]) > 1e-8, axis=1)
        stderr[free] = math.inf
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = cov / np.outer(stderr, stderr)
    corr[~np.isfinite(corr)] = math.nan
    np.fill_diagonal(corr, np.where(np.isfinite(stderr) & (stderr > 0), 1.0, math.nan))
    return stderr, corr


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
