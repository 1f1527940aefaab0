"""Calibration: fit the twin's parameters to a recorded run, and keep the fit per device.

A stored run holds what the real devices did and the commands they received. Replaying
those commands through the twin (:func:`medtwin.hil.twin.twin_series`) with candidate parameters
and comparing with the recorded readings turns drift into numbers: the true bore of the
syringe, the wear rate of the lead screw, the compliance of the line. This module

1. rebuilds the run's twin from the stored bench file and twin parameters, and its input
   schedule from the stored command events;
2. fits the named parameters with :func:`scipy.optimize.least_squares` (trust-region
   reflective, bounds from each parameter's declared range, ``x_scale="jac"``) to the
   residual ``real − twin`` of the balance's net mass (gravimetry, the method of
   IEC 60601-2-24's flow test) and, when a fitted parameter is a line or compliance
   parameter, of the line pressure as well;
3. reports estimates with standard errors and their correlation matrix, and the residual
   RMS before and after;
4. stores the result as a new version of the device's calibration
   (:meth:`medtwin.hil.store.RunStore.save_calibration`), which a bench with
   ``[twin] calibration = "latest"`` then uses, and finds for a stored run the version its
   twin used (:func:`calibration_in_force`).

The package is split by job: :mod:`~medtwin.hil.calibration.problem` (the device, the
parameters, the channels and the weighted residuals), :mod:`~medtwin.hil.calibration.fit`
(:func:`calibrate`: least squares and the batched Jacobian),
:mod:`~medtwin.hil.calibration.results` (estimates, standard errors, :func:`validate`) and
:mod:`~medtwin.hil.calibration.stored` (versions in the run store, the calibration in
force).

Statistics
----------
Each channel's residual is divided by its noise level σ, estimated robustly from the first
differences of the residual against the starting twin
(:func:`medtwin.hil.comparator.robust_noise_sd`, the comparator's estimator), so channels in
different units combine and a noisy channel counts less. Samples that are NaN (gaps of a lost
device) are skipped.

The balance's net mass carries, from each tare to the next, the noise sample the real
balance read when it was tared (see :data:`medtwin.hil.twin.CHANNEL_KINDS`): a constant offset of
about one σ that no twin parameter explains. One offset per tare segment is therefore a
nuisance parameter. It enters linearly, so it is eliminated exactly (variable projection):
the residual of each segment is taken about its mean, and its degree of freedom is
subtracted.

Standard errors come from the Jacobian ``J`` of the weighted residuals at the optimum.
Balance residuals are autocorrelated (the balance's settling filter, the model's own
slowly varying error), so the textbook ``s²·(JᵀJ)⁻¹`` understates the uncertainty; the
default is the Newey–West sandwich ``(JᵀJ)⁻¹·Ω·(JᵀJ)⁻¹`` with Ω the long-run covariance
of the scores ``J·r`` (Newey & West 1987, Bartlett kernel; bandwidth chosen from the data
by Andrews 1991's AR(1) plug-in; VAR(1) prewhitening after Andrews & Monahan 1992), see
:func:`~medtwin.hil.calibration.results.covariance` and ``docs/calibration.md``. Pairs of
parameters correlated beyond a threshold (0.95) are reported as identifiability warnings
naming the experiment that would separate them. Before the fit, the Jacobian at the start
is checked: a parameter the channels do not depend on, or parameters whose effects are
proportional, are refused rather than fitted to a meaningless value; a fit that ends
where a parameter is undetermined (a zero singular value of ``J``) is refused too.

The Jacobian is a forward difference evaluated for all parameters in **one** vectorised
model call (:class:`medtwin.device_models.system.ParameterBatch`: the base point plus one
perturbed row per parameter) instead of one simulation per parameter; the benchmark
``benchmarks/bench_calibration.py`` measures the difference against scipy's default
``2-point`` scheme.

Devices are identified by ``model/serial`` as they reported themselves in the run
(:func:`calibration_key`). A device whose protocol reports no serial number (the NE-1000's
``VER`` gives model and firmware only) is filed under its place on the bench instead:
``model/<bench name>:<device name>``.
"""

from __future__ import annotations

from medtwin.hil.calibration.fit import calibrate
from medtwin.hil.calibration.problem import (
    DEFAULT_PARAMETERS,
    FD_RELATIVE_STEP,
    fittable_parameters,
    run_device_key,
)
from medtwin.hil.calibration.results import (
    Calibration,
    ChannelFit,
    CovarianceEstimate,
    IdentifiabilityWarning,
    ParameterEstimate,
    Validation,
    covariance,
    identifiability,
    validate,
)
from medtwin.hil.calibration.stored import calibration_in_force, save_calibration
from medtwin.hil.twin import calibration_key

__all__ = [
    "DEFAULT_PARAMETERS",
    "FD_RELATIVE_STEP",
    "Calibration",
    "ChannelFit",
    "CovarianceEstimate",
    "IdentifiabilityWarning",
    "ParameterEstimate",
    "Validation",
    "calibrate",
    "calibration_in_force",
    "calibration_key",
    "covariance",
    "fittable_parameters",
    "identifiability",
    "run_device_key",
    "save_calibration",
    "validate",
]
