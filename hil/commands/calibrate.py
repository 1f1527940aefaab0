"""``medtwin calibrate``: fit the twin's parameters to a recorded run and store the result.

    medtwin calibrate RUN [--params a,b,...] [--fix NAME=VALUE ...] [--start NAME=VALUE ...]
                          [--db URL] [--validate RUN2] [--json] [--note TEXT]
                          [--max-evaluations N] [--max-correlation R]

Fits the named twin parameters (default: the syringe's inner diameter and the lead screw's
wear rate) to the balance mass of run ``RUN`` (see :mod:`medtwin.hil.calibration` for the method),
prints the estimates with standard errors, their correlation and the residual RMS before
and after, and stores the fit as the next calibration version of the pump (``model/serial``
as the pump reported itself in the run). A bench with ``[twin] calibration = "latest"``
uses it from then on.

Pairs of fitted parameters whose estimates are correlated beyond ``--max-correlation``
(default 0.95) are printed as identifiability warnings, naming the experiment that would
separate them, and stored with the calibration.

``--validate RUN2`` replays a second run of the same device with the nominal and with the
calibrated twin and prints both residual RMS values.

Bad input (unknown run, unknown parameter, a run without balance readings, an invalid
``--db``) exits with status 2; a fit that does not converge exits with status 1. Either way
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

__all__ = ["calibrate"]


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
            f"{change:+.4g}",
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
        corr.add_column("", no_wrap=True)
        for i in range(len(names)):
            corr.add_column(f"[{i + 1}]", justify="right")
        for i, (name, row) in enumerate(zip(names, doc["correlation"]["matrix"], strict=True)):
            corr.add_row(f"[{i + 1}] {name}", *(_fmt(v, 3) for v in row))
        console.print(corr)
    channels = Table(title="residual real − twin", title_justify="left", box=box.SIMPLE_HEAD)
    for column in ("channel", "unit", "samples", "noise σ", "RMS before", "RMS after"):
        channels.add_column(
            column,
            justify="left" if column in ("channel", "unit") else "right",
            no_wrap=column == "channel",
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
