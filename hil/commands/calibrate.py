"""``medtwin calibrate``: fit the twin's parameters to a recorded run and store the result.

    medtwin calibrate RUN [--params a,b,...] [--fix NAME=VALUE ...] [--start NAME=VALUE ...]
                          [--db URL] [--validate RUN2] [--json] [--note TEXT]
                          [--max-evaluations N] [--max-correlation R] [--allow-partial]

Fits the named twin parameters (default: the syringe's inner diameter and the lead screw's
wear rate) to the balance mass of run ``RUN`` (see :mod:`medtwin.hil.calibration` for the method),
prints the estimates with standard errors, their correlation and the residual RMS before
and after, and stores the fit as the next calibration version of the pump (``model/serial``
as the pump reported itself in the run). A bench with ``[twin] calibration = "latest"``
uses it from then on.

Pairs of fitted parameters whose estimates are correlated beyond ``--max-correlation``
(default 0.95) are printed as identifiability warnings, naming the experiment that would
separate them, and stored with the calibration.

A run that did not go to its end (``aborted`` by Ctrl-C, ``interrupted`` because its
process died, or still ``running``) is refused unless ``--allow-partial`` is given: a fit to
the first 45 minutes of a 2-hour test would otherwise become the calibration that
``calibration = "latest"`` uses. When the fit leaves residuals far above the noise
(RMS after > :data:`MISFIT_RATIO` × the channel's noise σ) the model cannot describe the
run; a warning names the likely cause (a wear onset held at the twin's value while the
wear rate is fitted) and the option that frees or fixes it.

``--validate RUN2`` replays a second run of the same device with the nominal and with the
calibrated twin and prints both residual RMS values.

Bad input (unknown run, unknown parameter, a run without balance readings, an invalid
``--db``) exits with status 2; a fit that does not converge exits with status 3. Either way
nothing is stored. ``--json`` prints exactly one JSON document.
"""

from __future__ import annotations

import json
import math
from typing import Any

import click
from medtwin.drivers.errors import ConfigurationError, RunNotFound
from medtwin.hil.cli import handle_errors, parse_assignments
from medtwin.hil.commands.runs import db_option, open_store, run_not_found

__all__ = ["MISFIT_RATIO", "calibrate", "misfit_warnings"]

#: Residual RMS after the fit, in units of the channel's noise σ, above which the model is
#: said not to fit: a model that describes the device leaves residuals at the noise (RMS
#: ≈ σ); a systematic misfit shows as an RMS orders of magnitude above it.
MISFIT_RATIO = 10.0

#: Run statuses of a run that went to its end (degraded: a device was lost for a while
#: but the scenario ran through).
_WHOLE_RUN = frozenset({"completed", "degraded"})


def _twin_value(twin_params: Any, dotted: str) -> float | None:
    node = twin_params
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return float(node) if isinstance(node, int | float) else None


def misfit_warnings(doc: dict[str, Any], twin_params: Any = None) -> list[str]:
    """One warning per channel the fit leaves far above its noise, naming the likely cause.

    ``doc`` is the calibration's JSON document; ``twin_params`` the run's twin parameters
    (for the value a held parameter kept).
    """
    warnings = []
    fitted = set(doc["params"])
    held = set(doc["fixed"]) | set(doc["carried"])
    for name, ch in doc["channels"].items():
        sigma, rms = ch.get("sigma"), ch.get("rms_after")
        if not sigma or rms is None or not math.isfinite(rms) or rms <= MISFIT_RATIO * sigma:
            continue
        unit = ch["unit"]
        text = (
            f"the fit leaves {name} at RMS {rms:.4g} {unit}, {rms / sigma:,.0f}× its noise "
            f"σ = {sigma:.3g} {unit}: the model cannot fit this run"
        )
        rates = [p for p in fitted if p.endswith("wear_percent_per_h")]
        onsets = [r.removesuffix("wear_percent_per_h") + "wear_onset_s" for r in rates]
        free = [o for o in onsets if o not in fitted and o not in held]
        if free:
            onset = free[0]
            rate = rates[onsets.index(onset)]
            value = _twin_value(twin_params, onset)
            kept = "" if value is None else f" (held at the twin's {value:g} s)"
            # Fitting the onset from a wear rate of 0 is refused (the onset has no effect
            # there), so the suggestion carries a starting rate when the twin's is 0.
            start = "" if doc["params"][rate]["before"] else f" --start {rate}=0.5"
            text += (
                f". Likely cause: the wear onset {onset}{kept} should be fixed at the device's "
                f"value (--fix {onset}=SECONDS) or fitted (--params "
                f"{','.join(doc['params'])},{onset}{start})"
            )
        else:
            text += (
                ". Likely cause: a parameter held at the twin's value differs on the device: "
                "fit it (--params) or fix it at the device's value (--fix NAME=VALUE)"
            )
        warnings.append(text)
    return warnings


def _refuse_partial(run: Any) -> None:
    """A run that stopped before its end cannot calibrate without --allow-partial."""
    status = str(run.info.status)
    if status in _WHOLE_RUN:
        return
    summary = run.summary if isinstance(run.summary, dict) else {}
    reached, total = summary.get("scenario_time_s"), summary.get("duration_s")
    if reached is None:
        ends = [float(ch.t_s[-1]) for ch in run.channels if len(ch.t_s)]
        reached = max(ends) if ends else None
    where = ""
    if reached is not None:
        where = f" at {_hms(reached)}" + ("" if total is None else f" of {_hms(total)}")
        where += " (scenario time)"
    raise ConfigurationError(
        f"run {run.info.id} is {status}{where}: a calibration from part of a run would be "
        'used by every bench with calibration = "latest"; pass --allow-partial to fit it '
        "anyway",
        source="RUN",
    )


def _hms(t: float) -> str:
    h, rest = divmod(round(t), 3600)
    m, sec = divmod(rest, 60)
    return f"{h:d}:{m:02d}:{sec:02d}"


def _parameter_list(text: str | None) -> list[str] | None:
    if text is None:
        return None
    names = [part.strip() for part in text.split(",")]
    if not any(names):
        raise ConfigurationError(
            "expected comma-separated dotted parameter names, e.g. "
            "pump.syringe.inner_diameter_mm,pump.drive.wear_percent_per_h",
            source="--params",
        )
    return names


def _values(items: tuple[str, ...], option: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, text in parse_assignments(items, option=option).items():
        try:
            out[name] = float(text)
        except ValueError:
            raise ConfigurationError(f"{name}={text!r}: expected a number", source=option) from None
    return out


def _fmt(value: float | None, digits: int = 6) -> str:
    if value is None:
        return "-"
    if not math.isfinite(value):
        return "undetermined"
    return f"{value:.{digits}g}"


def _change(change: float, before: float, unit: str) -> str:
    """``-0.1376 mm (-0.52 %)``: every change with its unit, and relative when it can be."""
    text = f"{change:+.4g} {unit}".strip()
    if before:
        text += f" ({100 * change / abs(before):+.3g} %)"
    return text


def _print_human(doc: dict[str, Any]) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:
        console = Console(width=140)
    fit = doc["fit"]
    console.print(
        f"calibration of [bold]{doc['device_key']}[/] from run [bold]{doc['run_id']}[/]: "
        f"{len(doc['params'])} parameter(s), {fit['nfev']} evaluations "
        f"({fit['model_rows']} parameter sets in {fit['model_calls']} model calls), "
        f"{fit['wall_s']:.2f} s",
        highlight=False,
    )
    table = Table(title="estimates", title_justify="left", box=box.SIMPLE_HEAD)
    for column in ("parameter", "unit", "before", "estimate", "± stderr", "change"):
        # A parameter name is what --params/--fix take: never wrapped or cut.
        table.add_column(
            column,
            justify="left" if column in ("parameter", "unit") else "right",
            no_wrap=column == "parameter",
            overflow="fold",  # a narrow terminal folds a cell, never cuts it with "…"
        )
    for name, p in doc["params"].items():
        change = p["value"] - p["before"]
        flag = " (at bound)" if p["at_bound"] else ""
        table.add_row(
            name,
            p["unit"],
            _fmt(p["before"]),
            _fmt(p["value"], 8) + flag,
            "undetermined" if p["stderr"] is None else _fmt(p["stderr"], 3),
            _change(change, p["before"], p["unit"]),
        )
    console.print(table)
    for key, label in (("fixed", "held fixed"), ("carried", "carried over from the run's twin")):
        if doc[key]:
            console.print(
                f"{label}: " + ", ".join(f"{k} = {v:g}" for k, v in doc[key].items()),
                highlight=False,
            )
    names = doc["correlation"]["names"]
    if len(names) > 1:
        corr = Table(title="correlation", title_justify="left", box=box.SIMPLE_HEAD)
        corr.add_column("", no_wrap=True, overflow="fold")
        for i in range(len(names)):
            corr.add_column(f"[{i + 1}]", justify="right", overflow="fold")
        for i, (name, row) in enumerate(zip(names, doc["correlation"]["matrix"], strict=True)):
            corr.add_row(f"[{i + 1}] {name}", *(_fmt(v, 3) for v in row))
        console.print(corr)
    channels = Table(title="residual real − twin", title_justify="left", box=box.SIMPLE_HEAD)
    for column in ("channel", "unit", "samples", "noise σ", "RMS before", "RMS after"):
        channels.add_column(
            column,
            justify="left" if column in ("channel", "unit") else "right",
            no_wrap=column == "channel",
            overflow="fold",
        )
    for name, ch in doc["channels"].items():
        channels.add_row(
            name,
            ch["unit"],
            str(ch["samples"]),
            _fmt(ch["sigma"], 3),
            _fmt(ch["rms_before"], 4),
            _fmt(ch["rms_after"], 4),
        )
    console.print(channels)
    if fit.get("covariance_method") == "newey-west":
        console.print(
            "standard errors: Newey-West (autocorrelation-robust) sandwich from the Jacobian "
            f"at the optimum, Bartlett bandwidth {fit['bandwidth']:g} samples (Andrews 1991) "
            f"after VAR(1) prewhitening; residual variance s² = "
            f"{_fmt(fit['residual_variance'], 3)} ({fit['dof']} degrees of freedom)",
            highlight=False,
        )
    else:
        console.print(
            f"standard errors: from the Jacobian at the optimum, scaled by the residual "
            f"variance s² = {_fmt(fit['residual_variance'], 3)} ({fit['dof']} degrees of "
            "freedom)",
            highlight=False,
        )
    for warning in doc.get("identifiability", []):
        console.print(
            f"[bold yellow]identifiability warning:[/] {warning['message']}", highlight=False
        )
    for warning in doc.get("warnings", []):
        console.print(f"[bold yellow]fit warning:[/] {warning}", highlight=False)
    validation = doc.get("validation")
    if validation:
        verdict = "[green]better[/]" if validation["improved"] else "[bold red]not better[/]"
        console.print(
            f"validation on run {validation['run_id']}: {validation['residual_channel']} "
            f"residual RMS {_fmt(validation['residual_rms_nominal'], 4)} "
            f"{validation['residual_unit']} nominal → "
            f"{_fmt(validation['residual_rms_calibrated'], 4)} {validation['residual_unit']} "
            f"calibrated ({verdict})"
        )
    cal = doc["calibration"]
    console.print(
        f"stored as calibration version [bold]{cal['version']}[/] of {cal['device_key']}; "
        'a bench with \\[twin] calibration = "latest" uses it.',
        highlight=False,
    )


@click.command("calibrate")
@click.argument("run_id", metavar="RUN", type=int)
@click.option(
    "--params",
    "params_text",
    metavar="A,B,...",
    default=None,
    help="dotted names of the parameters to fit (default, syringe pump: "
    "pump.syringe.inner_diameter_mm,pump.drive.wear_percent_per_h; volumetric pump: "
    "pump.efficiency,pump.wear_percent_per_h)",
)
@click.option(
    "--fix",
    "fix_items",
    multiple=True,
    metavar="NAME=VALUE",
    help="hold a parameter at a value during the fit, e.g. pump.drive.wear_onset_s=1800",
)
@click.option(
    "--start",
    "start_items",
    multiple=True,
    metavar="NAME=VALUE",
    help="start a fitted parameter from this value instead of the run's twin",
)
@db_option
@click.option(
    "--validate",
    "validate_id",
    metavar="RUN2",
    type=int,
    default=None,
    help="replay another run with the nominal and the calibrated twin",
)
@click.option("--json", "as_json", is_flag=True, help="print one JSON document")
@click.option("--note", default="", help="free text stored with the calibration")
@click.option(
    "--max-correlation",
    default=0.95,
    show_default=True,
    type=click.FloatRange(min=0.0, max=1.0, min_open=True, max_open=True),
    help="warn about pairs of parameters correlated beyond this |ρ| (cannot be told apart)",
)
@click.option(
    "--max-evaluations",
    default=100,
    show_default=True,
    type=click.IntRange(min=1),
    help="give up (and store nothing) after this many residual evaluations",
)
@click.option(
    "--allow-partial",
    is_flag=True,
    help="fit a run that did not go to its end (aborted, interrupted, still running)",
)
@handle_errors
def calibrate(
    run_id: int,
    params_text: str | None,
    fix_items: tuple[str, ...],
    start_items: tuple[str, ...],
    db_url: str,
    validate_id: int | None,
    as_json: bool,
    note: str,
    max_correlation: float,
    max_evaluations: int,
    allow_partial: bool,
) -> None:
    """Fit the twin's parameters to recorded run RUN and store them as a calibration."""
    from medtwin.hil import calibration

    names = _parameter_list(params_text)
    fixed = _values(fix_items, "--fix")
    start = _values(start_items, "--start")
    with open_store(db_url, write=True) as store:
        try:
            run = store.load_run(run_id)
        except RunNotFound as error:
            raise run_not_found(error) from None
        if not allow_partial:
            _refuse_partial(run)
        other = None
        if validate_id is not None:
            try:
                other = store.load_run(validate_id)
            except RunNotFound as error:
                raise ConfigurationError(str(error), source="--validate") from None
        result = calibration.calibrate(
            run,
            parameters=names,
            fixed=fixed,
            start=start,
            max_evaluations=max_evaluations,
            correlation_threshold=max_correlation,
        )
        validation = (
            None
            if other is None
            else calibration.validate(other, result.overrides(), channels=list(result.channels))
        )
        # Everything that can fail has run: only now is the calibration stored.
        record = calibration.save_calibration(store, result, note=note)
    doc = result.as_json()
    doc["calibration"] = {
        "id": record.id,
        "device_key": record.device_key,
        "version": record.version,
        "created_utc": record.created_utc.isoformat(),
        "note": record.note,
    }
    doc["warnings"] = misfit_warnings(doc, run.twin_params)
    if as_json:
        for warning in doc["warnings"]:
            click.echo(f"medtwin: warning: {warning}", err=True)
    if validation is not None:
        doc["validation"] = validation.as_json()
        if validation.device_key != result.device_key:
            click.echo(
                f"medtwin: warning: run {validation.run_id} was recorded with "
                f"{validation.device_key}, not {result.device_key}: the validation compares "
                "different devices",
                err=True,
            )
    if as_json:
        click.echo(json.dumps(doc, allow_nan=False))
    else:
        _print_human(doc)
