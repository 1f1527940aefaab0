"""``medtwin simulate``: the models alone, for a design engineer's what-if.

Two subcommands, nothing touches hardware:

* ``medtwin simulate pump`` runs the device model (pump + line + balance) on a
  constant-rate schedule, optionally with an occlusion, and writes one CSV row per output
  interval. It is also what ``medtwin simulate`` runs when no subcommand is named
  (``medtwin simulate --rate 5 --duration 2h --out sim.csv``), the form the command had
  before it had subcommands;
* ``medtwin simulate patient`` runs the patient (PK/PD, vital signs) and optionally a
  monitor's view of it (:mod:`medtwin.hil.commands.simulate_patient`).

``--list-params`` lists every parameter name ``--set`` accepts (the same names calibration's
``--params``/``--fix`` take): a table on a terminal, whose name column is never cut, and
plain tab-separated lines (``name, unit, default, description``) when piped.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, BinaryIO

import click
import numpy as np
from medtwin.device_models.base import ParameterError, list_parameters
from medtwin.device_models.schedule import Schedule
from medtwin.device_models.syringe_pump import SyringePumpParams
from medtwin.device_models.syringes import SyringeLibrary, default_library
from medtwin.device_models.system import SystemParams
from medtwin.device_models.system import simulate as run_model
from medtwin.drivers.errors import ConfigurationError
from medtwin.hil.cli import handle_errors, parse_assignments, parse_duration_option
from medtwin.hil.files import write_atomically

#: CSV columns, in order, with units (the first eight are the documented interface).
COLUMNS: tuple[tuple[str, str], ...] = (
    ("t_s", "s"),
    ("rate_set_ml_h", "mL/h"),
    ("delivered_ml", "mL"),
    ("flow_ml_h", "mL/h"),
    ("line_pressure_mmhg", "mmHg"),
    ("occlusion_alarm", "0/1"),
    ("balance_g", "g"),
    ("balance_stable", "0/1"),
    ("pump_infused_ml", "mL"),
    ("sensed_pressure_mmhg", "mmHg"),
    ("running", "0/1"),
    ("alarms", "bits"),
)


def _params(
    pump: str, syringe: str | None, syringes_file: str | None, sets: dict[str, str]
) -> SystemParams:
    library = default_library()
    if syringes_file:
        library = SyringeLibrary([library.get(n) for n in library.names])
        try:
            library.load_file(syringes_file)
        except ParameterError as exc:
            raise ConfigurationError(str(exc), source="--syringes") from None
    try:
        if pump == "syringe":
            spec = library.get(syringe or "BD Plastipak 50 mL")
            base = SystemParams(pump=SyringePumpParams(syringe=spec))
        else:
            if syringe:
                raise ConfigurationError("a volumetric pump takes no syringe", source="--syringe")
            base = SystemParams.nominal("volumetric")
    except ParameterError as exc:
        raise ConfigurationError(str(exc), source="--syringe") from None
    try:
        return base.with_overrides(sets, library=library) if sets else base
    except ParameterError as exc:
        raise ConfigurationError(str(exc), source="--set") from None


def _format(value: Any) -> str:
    if isinstance(value, bool | np.bool_):
        return "1" if value else "0"
    if isinstance(value, int | np.integer):
        return str(int(value))
    value = float(value)
    return "nan" if np.isnan(value) else repr(value)


class _DefaultPumpGroup(click.Group):
    """A group whose arguments go to ``pump`` when they do not start with a subcommand's
    name: ``medtwin simulate --rate 5 ...`` is ``medtwin simulate pump --rate 5 ...``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = ["pump", *args]
        return super().parse_args(ctx, args)


@click.group("simulate", cls=_DefaultPumpGroup)
def simulate() -> None:
    """Simulate the models alone: the pump twin (`pump`, also what options without a
    subcommand run) or the patient and a monitor (`patient`)."""


@simulate.command("pump")
@click.option(
    "--pump", type=click.Choice(["syringe", "volumetric"]), default="syringe", show_default=True
)
@click.option("--syringe", default=None, help='syringe by library name, e.g. "BD Plastipak 50 mL"')
@click.option("--syringes", "syringes_file", default=None, help="extra syringe table (TOML)")
@click.option("--rate", type=float, default=None, help="infusion rate, mL/h")
@click.option("--duration", default=None, help="e.g. 90s, 30min, 2h, 1h30m")
@click.option("--interval", default="30s", show_default=True, help="output interval")
@click.option("--occlude-at", default=None, help="close the line downstream at this time")
@click.option("--release-at", default=None, help="open it again at this time")
@click.option(
    "--set", "sets", multiple=True, metavar="NAME=VALUE", help="override a model parameter"
)
@click.option("--seed", type=int, default=0, show_default=True, help="seed of the balance noise")
@click.option("--out", default=None, help="CSV file to write")
@click.option("--list-params", is_flag=True, help="list parameter names, units and defaults")
@click.option("--json", "as_json", is_flag=True, help="print one JSON document")
@handle_errors
def simulate_pump(
    pump: str,
    syringe: str | None,
    syringes_file: str | None,
    rate: float | None,
    duration: str | None,
    interval: str,
    occlude_at: str | None,
    release_at: str | None,
    sets: tuple[str, ...],
    seed: int,
    out: str | None,
    list_params: bool,
    as_json: bool,
) -> None:
    """Simulate the twin alone (pump + line + balance) and write a CSV.

    `medtwin simulate --rate ...` (no subcommand) is the same command."""
    params = _params(pump, syringe, syringes_file, parse_assignments(sets))
    if list_params:
        _list(params, as_json)
        return
    missing = [
        name
        for name, value in (("--rate", rate), ("--duration", duration), ("--out", out))
        if value is None
    ]
    if missing:
        raise ConfigurationError(f"missing {', '.join(missing)} (or use --list-params)")
    assert rate is not None
    assert duration is not None
    assert out is not None
    total_s = parse_duration_option(duration, option="--duration")
    step_s = parse_duration_option(interval, option="--interval")
    if step_s <= 0 or total_s <= 0:
        raise ConfigurationError("duration and interval must be > 0", source="--interval")
    if rate < 0:
        raise ConfigurationError(f"rate {rate:g} mL/h must be >= 0", source="--rate")
    _low, high = params.rate_range_ml_h()
    if rate > high:
        raise ConfigurationError(
            f"rate {rate:g} mL/h exceeds this pump's maximum {high:.6g} mL/h", source="--rate"
        )
    schedule = Schedule().set_rate(0.0, rate).start(0.0)
    t_occ = parse_duration_option(occlude_at, option="--occlude-at") if occlude_at else None
    t_rel = parse_duration_option(release_at, option="--release-at") if release_at else None
    if t_rel is not None and t_occ is None:
        raise ConfigurationError("--release-at needs --occlude-at", source="--release-at")
    if t_occ is not None:
        schedule.occlude(t_occ)
        if t_rel is not None:
            if t_rel <= t_occ:
                raise ConfigurationError("must be after --occlude-at", source="--release-at")
            schedule.release(t_rel)
    t = np.arange(0.0, total_s + step_s * 1e-9, step_s)
    try:
        result = run_model(params, schedule, t, rng=np.random.default_rng(seed))
    except ParameterError as exc:
        raise ConfigurationError(str(exc), source="--set") from None
    row = result.row(0)
    _write_csv(Path(out), t, row)
    _summary(Path(out), t, row, rate, as_json)


def _write_csv(path: Path, t: np.ndarray, row: dict[str, np.ndarray]) -> None:
    if not (path.parent if str(path.parent) else Path()).is_dir():
        raise ConfigurationError(f"directory {path.parent} does not exist", source="--out")

    def write(stream: BinaryIO) -> None:
        text = io.TextIOWrapper(stream, encoding="utf-8", newline="")
        writer = csv.writer(text)
        writer.writerow([name for name, _ in COLUMNS])
        columns = [t if name == "t_s" else row[name] for name, _ in COLUMNS]
        for i in range(t.size):
            writer.writerow([_format(column[i]) for column in columns])
        text.flush()
        text.detach()

    write_atomically(path, write, source="--out")


def _summary(
    path: Path, t: np.ndarray, row: dict[str, np.ndarray], rate: float, as_json: bool
) -> None:
    alarm = row["occlusion_alarm"]
    alarm_t = float(t[int(np.argmax(alarm))]) if alarm.any() else None
    doc = {
        "out": str(path),
        "rows": int(t.size),
        "duration_s": float(t[-1]),
        "rate_ml_h": rate,
        "delivered_ml": float(row["delivered_ml"][-1]),
        "pump_infused_ml": float(row["pump_infused_ml"][-1]),
        "final_flow_ml_h": float(row["flow_ml_h"][-1]) if t.size > 1 else None,
        "max_line_pressure_mmhg": float(np.max(row["line_pressure_mmhg"])),
        "occlusion_alarm_t_s": alarm_t,
        "columns": dict(COLUMNS),
    }
    if as_json:
        click.echo(json.dumps(doc))
        return
    click.echo(f"wrote {doc['rows']} rows to {path}")
    click.echo(
        f"delivered {doc['delivered_ml']:.4f} mL in {t[-1]:g} s "
        f"(pump counted {doc['pump_infused_ml']:.4f} mL); peak line pressure "
        f"{doc['max_line_pressure_mmhg']:.1f} mmHg"
    )
    if alarm_t is not None:
        click.echo(f"occlusion alarm at t = {alarm_t:g} s")


def _list(params: SystemParams, as_json: bool) -> None:
    infos = list_parameters(params)
    if as_json:
        click.echo(
            json.dumps(
                [
                    {"name": i.name, "unit": i.unit, "default": i.value, "description": i.doc}
                    for i in infos
                ]
            )
        )
        return
    from medtwin.hil.commands._render import Column, fitted_table
    from rich.console import Console

    console = Console()
    if not console.is_terminal:
        # Piped (`| grep`, a CI log): one plain tab-separated line per parameter, so that
        # no name is cut to the 80 columns rich assumes; these are the names --set,
        # --params and --fix expect.
        click.echo("\t".join(("name", "unit", "default", "description")))
        for i in infos:
            click.echo("\t".join((i.name, i.unit, str(i.value), " ".join(i.doc.split()))))
        return
    table = fitted_table(
        (
            Column("name", name=True),
            Column("unit"),
            Column("default", justify="right", drop=2),
            Column("description", drop=1, wrap=True),
        ),
        ((i.name, i.unit, str(i.value), i.doc) for i in infos),
        width=console.width,
        title=f"parameters ({params.pump_kind} pump); set with --set NAME=VALUE",
    )
    console.print(table)


# The patient subcommand lives in its own module; registered here so that `simulate` is the
# one entry of the command table (medtwin.hil.cli.COMMANDS).
from medtwin.hil.commands.simulate_patient import simulate_patient  # noqa: E402

simulate.add_command(simulate_patient)
