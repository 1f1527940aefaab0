"""The fit: :func:`calibrate`, trust-region least squares with a batched Jacobian.

:func:`scipy.optimize.least_squares` (trust-region reflective, bounds from each parameter's
declared range, ``x_scale="jac"``) minimises the weighted residuals of
:class:`medtwin.hil.calibration.problem.Problem`. The Jacobian is a forward difference
evaluated for all parameters in **one** vectorised model call (the base point plus one
perturbed row per parameter) instead of one simulation per parameter;
``benchmarks/bench_calibration.py`` measures it against scipy's default ``2-point`` scheme.
Standard errors are the Newey–West sandwich of
:func:`medtwin.hil.calibration.results.covariance` (autocorrelated residuals), and pairs of
parameters correlated beyond a threshold are reported by
:func:`medtwin.hil.calibration.results.identifiability`. Before the fit the Jacobian at
the start is checked, so that a parameter the channels do not depend on, or parameters
whose effects are proportional, are refused rather than fitted to a meaningless value.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
from medtwin.device_models.base import ParameterError
from medtwin.drivers.errors import AnalysisError, ConfigurationError
from medtwin.hil.calibration.problem import (
    DEFAULT_PARAMETERS,
    FD_RELATIVE_STEP,
    FitChannel,
    Problem,
    fixed_parameters,
    get_parameter,
    leaf_values,
    resolve_names,
    run_bench,
    run_device_key,
    select_channels,
    twins_of_run,
    wear_names,
)
from medtwin.hil.calibration.results import (
    Calibration,
    ChannelFit,
    ParameterEstimate,
    covariance,
    identifiability,
    rms,
)
from medtwin.hil.comparator import robust_noise_sd
from medtwin.hil.store import RunData
from numpy.typing import NDArray

__all__ = ["calibrate"]

FloatArray = NDArray[np.float64]


def _steps(x: FloatArray, lb: FloatArray, ub: FloatArray) -> FloatArray:
    """Forward-difference steps (scipy's 2-point rule), flipped to stay inside bounds."""
    h = FD_RELATIVE_STEP * np.maximum(1.0, np.abs(x))
    return np.where(x + h > ub, -h, h)


_IDENTIFIABLE_RTOL = 1e-6


def _check_identifiable(J: FloatArray, names: list[str], run_id: int) -> None:
    """Refuse a fit the run cannot support, before fitting (nothing to store).

    A parameter the fitted channels do not depend on at all, or a set of parameters whose
    effects are proportional, would wander along a flat valley of the cost and be stored
    with a meaningless value.
    """
    norms = np.linalg.norm(J, axis=0)
    dead = [n for n, norm in zip(names, norms, strict=True) if not norm > 0]
    if dead:
        raise ConfigurationError(
            f"run {run_id} carries no information about {', '.join(dead)}: the fitted "
            "channels do not depend on it; leave it out of --params",
            source="--params",
        )
    if len(names) < 2:
        return
    _, s, vt = np.linalg.svd(J / norms, full_matrices=False)
    if s[-1] < _IDENTIFIABLE_RTOL * s[0]:
        null = np.abs(vt[-1])
        tied = [n for n, weight in zip(names, null, strict=True) if weight > 0.1]
        raise ConfigurationError(
            f"run {run_id} cannot tell {', '.join(tied)} apart (their effects on the fitted "
            "channels are proportional); fit one of them and fix the others with --fix",
            source="--params",
        )


def calibrate(
    run: RunData,
    *,
    parameters: Sequence[str] | None = None,
    fixed: Mapping[str, float] | None = None,
    jacobian: Literal["batched", "2-point"] = "batched",
    max_evaluations: int = 100,
    start: Mapping[str, float] | None = None,
    covariance_method: Literal["newey-west", "iid"] = "newey-west",
    correlation_threshold: float = 0.95,
) -> Calibration:
    """Fit twin parameters to a recorded run.

    Parameters
    ----------
    run : RunData
        A stored run (:meth:`medtwin.hil.store.RunStore.load_run`) with balance readings.
    parameters : sequence of str, optional
        Dotted names of the parameters to fit (default: :data:`DEFAULT_PARAMETERS` for the
        twin's pump kind).
    fixed : mapping, optional
        Parameters held at given values during the fit (and stored with the result), e.g.
        ``{"pump.drive.wear_onset_s": 1800.0}``. When the syringe's inner diameter is
        fitted and the twin's ``pump.configured_inner_diameter_mm`` is 0 ("the syringe's"),
        it is fixed at the twin's syringe diameter: the pump is programmed with the
        library diameter, the fit estimates the real bore.
    jacobian : {"batched", "2-point"}
        ``"batched"``: forward differences for all parameters in one vectorised model
        call. ``"2-point"``: scipy's own scheme, one model call per parameter (the
        benchmark's baseline).
    max_evaluations : int
        Largest number of residual evaluations (``max_nfev``) before giving up.
    start : mapping, optional
        Starting values of fitted parameters (default: the run's twin). Needed where the
        twin's value is a degenerate start, e.g. a wear onset fitted while the twin's wear
        rate is 0 (the onset has no effect there, so the fit cannot tell where to move it).

    covariance_method : {"newey-west", "iid"}
        How standard errors are computed (:func:`~medtwin.hil.calibration.results.covariance`):
        ``"newey-west"`` (default) holds for autocorrelated residuals; ``"iid"`` is the
        textbook ``s²·(JᵀJ)⁻¹``, right only for white residuals.
    correlation_threshold : float
        Pairs of fitted parameters correlated beyond this |ρ| are reported in
        :attr:`Calibration.identifiability` with the experiment that would separate them.

    Returns
    -------
    Calibration

    Raises
    ------
    ConfigurationError
        Unknown or non-real parameter names, fixed values outside their ranges, a run
        without balance data or whose stored bench no longer validates.
    AnalysisError
        The fit did not converge, or the model cannot be evaluated.
    """
    from scipy.optimize import least_squares

    identifiability([], np.zeros((0, 0)), threshold=correlation_threshold)  # checks it
    bench = run_bench(run)
    device_key = run_device_key(run, bench)
    nominal, run_twin = twins_of_run(run, bench)
    kind = run_twin.pump_kind
    infos = resolve_names(
        list(parameters) if parameters else list(DEFAULT_PARAMETERS[kind]),
        run_twin,
        source="--params",
    )
    names = [info.name for info in infos]
    fixed_values = fixed_parameters(run_twin, names, fixed or {})
    try:
        base = run_twin.with_overrides(fixed_values) if fixed_values else run_twin
    except ParameterError as exc:
        raise ConfigurationError(str(exc), source="--fix") from None
    current = leaf_values(run_twin)
    nominal_values = leaf_values(nominal)
    carried = {
        name: float(value)
        for name, value in current.items()
        if name not in names
        and name not in fixed_values
        and isinstance(value, int | float)
        and not isinstance(value, bool)
        and value != nominal_values.get(name)
    }

    selected = select_channels(run, bench, names)
    # The same samples, unweighted: the run's own twin (for "before") and the starting
    # point (for the noise estimate) evaluated once each.
    plain = Problem(
        run_twin, run, [FitChannel(n, u, k, t, v, 1.0, ()) for n, u, k, _, t, v, _ in selected], []
    )
    if base is run_twin:
        (twin_before,) = plain.twins(run_twin)
        start_twin = twin_before
    else:
        twin_before, start_twin = plain.twins(run_twin, base)
    channels: list[FitChannel] = []
    for name, unit, key, _, t, real, segments in selected:
        sigma = robust_noise_sd(real - start_twin[name])
        if sigma is None or not sigma > 0:
            if name.endswith(".mass_g"):
                raise AnalysisError(
                    f"run {run.info.id}: cannot estimate the noise of {name} from its "
                    f"{t.size} readings (they do not vary); nothing to weight the fit by"
                )
            continue
        channels.append(FitChannel(name, unit, key, t, real, sigma, segments))

    problem = Problem(base, run, channels, names)
    lb = np.array([-math.inf if i.minimum is None else float(i.minimum) for i in infos])
    ub = np.array([math.inf if i.maximum is None else float(i.maximum) for i in infos])
    # trf starts strictly inside the bounds; nudging a start on a bound (wear 0) here, by
    # trf's own margin, lets the Jacobian computed for the check below be reused.
    margin = 1e-10 * np.maximum(1.0, np.abs(np.where(np.isfinite(lb), lb, ub)))
    x0 = np.array([float(get_parameter(base, n)) for n in names])
    for name, value in (start or {}).items():
        if name not in names:
            raise ConfigurationError(
                f"{name!r} is not among the fitted parameters ({', '.join(names)})",
                source="--start",
            )
        j = names.index(name)
        if not (math.isfinite(value) and lb[j] <= value <= ub[j]):
            raise ConfigurationError(
                f"{name} = {value!r} is outside its range [{lb[j]:g}, {ub[j]:g}]",
                source="--start",
            )
        x0[j] = value
    rate, onset = wear_names(base)
    if (
        onset in names
        and (x0[names.index(rate)] if rate in names else get_parameter(base, rate)) == 0
    ):
        raise ConfigurationError(
            f"{onset} is fitted while the wear rate {rate} starts at 0, where the onset has "
            f"no effect; give a starting wear rate (--start {rate}=0.5) or fix the onset",
            source="--start",
        )
    x0 = np.where(x0 <= lb, lb + margin, np.where(x0 >= ub, ub - margin, x0))
    dof = problem.size - len(names) - problem.n_offsets
    if dof <= 0:
        raise AnalysisError(
            f"run {run.info.id}: {problem.size} samples cannot determine {len(names)} "
            f"parameters and {problem.n_offsets} tare offsets"
        )

    # One entry each: scipy asks for the residual and then the Jacobian at the same point.
    cache: dict[bytes, FloatArray] = {}
    jac_cache: dict[bytes, FloatArray] = {}

    def fun(x: FloatArray) -> FloatArray:
        key = np.asarray(x, dtype=float).tobytes()
        hit = cache.get(key)
        if hit is not None:
            return hit
        r: FloatArray
        try:
            r = problem.residuals(np.asarray(x, dtype=float)[None, :])[0]
        except ParameterError:
            # A trial point the model refuses: trf answers a non-finite residual by
            # shrinking its trust region.
            r = np.full(problem.size, math.inf)
        cache.clear()
        cache[key] = r
        return r

    def jac(x: FloatArray) -> FloatArray:
        x = np.asarray(x, dtype=float)
        known = jac_cache.get(x.tobytes())
        if known is not None:
            return known
        h = _steps(x, lb, ub)
        rows = x[None, :] + np.diag(h)
        f0 = cache.get(x.tobytes())
        if f0 is None:
            rows = np.vstack([x[None, :], rows])
        try:
            res = problem.residuals(rows)
        except ParameterError as exc:
            raise AnalysisError(
                f"run {run.info.id}: the model cannot be evaluated next to "
                f"{dict(zip(names, x.tolist(), strict=True))}: {exc}"
            ) from None
        if f0 is None:
            f0, res = res[0], res[1:]
        J = np.asarray(((res - f0[None, :]) / h[:, None]).T)
        jac_cache.clear()
        jac_cache[x.tobytes()] = J
        return J

    _check_identifiable(jac(x0), names, run.info.id)
    started = time.perf_counter()
    try:
        result = least_squares(
            fun,
            x0,
            jac=jac if jacobian == "batched" else "2-point",
            bounds=(lb, ub),
            method="trf",
            x_scale="jac",
            max_nfev=max_evaluations,
        )
    except ValueError as exc:
        raise AnalysisError(f"run {run.info.id}: the fit could not start: {exc}") from None
    fit_wall_s = time.perf_counter() - started
    if not result.success:
        raise AnalysisError(
            f"run {run.info.id}: the fit of {', '.join(names)} did not converge "
            f"({result.message.rstrip('.')}; {result.nfev} evaluations); nothing was stored"
        )
    x = np.asarray(result.x, dtype=float)
    # trf re-evaluates the Jacobian after every accepted step, so result.jac is the one at
    # result.x (unmodified: the loss is linear).
    J = np.asarray(result.jac, dtype=float)
    residual = fun(x)
    residual_variance = float(residual @ residual) / dof
    # Each channel is its own series: autocovariances are not summed across channels.
    bounds = np.cumsum([0, *(ch.t_s.size for ch in problem.channels)])
    blocks = [(int(a), int(b)) for a, b in itertools.pairwise(bounds)]
    estimate = covariance(J, residual, blocks=blocks, dof=dof, method=covariance_method)
    stderr, corr = estimate.stderr, estimate.correlation
    if not np.all(np.isfinite(stderr)):
        lost = [n for n, e in zip(names, stderr, strict=True) if not math.isfinite(e)]
        raise AnalysisError(
            f"run {run.info.id}: the fit ended where the run no longer determines "
            f"{', '.join(lost)} (at {dict(zip(names, x.tolist(), strict=True))}); fix it with "
            "--fix or start elsewhere with --start; nothing was stored"
        )
    fitted = base.with_overrides(dict(zip(names, x.tolist(), strict=True)))
    (twin_after,) = problem.twins(fitted)
    channel_fits = {
        ch.name: ChannelFit(
            ch.name,
            ch.unit,
            int(ch.t_s.size),
            ch.sigma,
            rms(ch.real - twin_before[ch.name]),
            rms(ch.real - twin_after[ch.name]),
        )
        for ch in problem.channels
    }
    mass = problem.channels[0]
    active = np.asarray(result.active_mask)
    estimates = {
        info.name: ParameterEstimate(
            name=info.name,
            unit=info.unit,
            value=float(x[j]),
            stderr=float(stderr[j]),
            before=float(get_parameter(run_twin, info.name)),
            lower=None if info.minimum is None else float(info.minimum),
            upper=None if info.maximum is None else float(info.maximum),
            at_bound=bool(active[j] != 0),
        )
        for j, info in enumerate(infos)
    }
    return Calibration(
        run_id=run.info.id,
        device_key=device_key,
        estimates=estimates,
        fixed={name: float(get_parameter(base, name)) for name in fixed_values},
        carried=carried,
        correlation=corr,
        channels=channel_fits,
        offsets=problem.offsets(twin_after),
        residual_channel=mass.name,
        residual_unit=mass.unit,
        residual_rms_before=channel_fits[mass.name].rms_before,
        residual_rms_after=channel_fits[mass.name].rms_after,
        residual_variance=residual_variance,
        dof=dof,
        nfev=int(result.nfev),
        njev=int(result.njev or 0),
        model_calls=problem.model_calls,
        model_rows=problem.model_rows,
        fit_wall_s=fit_wall_s,
        status=int(result.status),
        message=str(result.message),
        jacobian=jacobian,
        covariance=estimate.cov,
        covariance_method=estimate.method,
        bandwidth=estimate.bandwidth,
        stderr_iid=dict(zip(names, estimate.stderr_iid.tolist(), strict=True)),
        identifiability=identifiability(names, corr, threshold=correlation_threshold),
        correlation_threshold=correlation_threshold,
    )
