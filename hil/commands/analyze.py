"""``medtwin analyze``: IEC 60601-2-24 analyses of logs users bring from any tool.

``medtwin analyze trumpet --csv FILE --rate R`` reads a gravimetric balance log (time in s,
mass in g) and prints the mean flow error A and the trumpet curve (Ep(max)/Ep(min) per
observation window) of IEC 60601-2-24:1998 clause 50.102 (2012: 201.12.1), computed by
:mod:`medtwin.hil.analysis.iec60601_2_24`. Mass becomes volume through the one
gravimetric policy of :mod:`medtwin.hil.analysis.gravimetry` (water temperature, Tanaka
density, air buoyancy, evaporation), the same one a run's procedures use, so the CLI on a
run's exported balance channel (``medtwin export RUN --format csv``, then ``--channel
balance.mass_g``) gives the run's own A and Ep.

The CSV reader is hand-written on :mod:`csv` because balance software writes many
dialects: it strips a UTF-8 byte-order mark, picks the separator (``,``, ``;`` or tab) by
which one makes the header contain the requested columns (a robust test, unlike guessing
from character counts), accepts decimal commas when the separator is not a comma, skips
blank lines and ``#`` comment lines before the header, ignores extra columns, and names
the line and column of any cell that is not a finite number. It reads only; nothing is
ever written.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import click
import numpy as np
import numpy.typing as npt
from medtwin.drivers.errors import AnalysisError, ConfigurationError
from medtwin.drivers.units import parse_duration_s
from medtwin.hil.analysis.gravimetry import DEFAULT_WATER_TEMPERATURE_C, GravimetricPolicy
from medtwin.hil.analysis.iec60601_2_24 import (
    DEFAULT_WINDOWS_MIN,
    TrumpetCurve,
    trumpet_curve,
)
from medtwin.hil.cli import handle_errors

__all__ = ["analyze", "read_balance_csv", "trumpet"]

_DELIMITERS = (",", ";", "\t")


def _number_option(text: str, option: str, unit: str, *, allow_zero: bool = False) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigurationError(
            f"{text!r} is not a number; expected a value in {unit}", source=option
        ) from None
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        expected = ">= 0" if allow_zero else "> 0"
        raise ConfigurationError(
            f"{text!r} must be a finite number {expected} {unit}", source=option
        )
    return value


def _duration_min(text: str, option: str) -> float:
    try:
        return parse_duration_s(text) / 60.0
    except ValueError as exc:
        raise ConfigurationError(str(exc), source=option) from None


def _analysis_period(text: str) -> tuple[float, float]:
    parts = text.split("-")
    if len(parts) != 2 or not all(part.strip() for part in parts):
        raise ConfigurationError(
            f"malformed analysis period {text!r}: expected START-END, e.g. 60min-120min",
            source="--analysis-period",
        )
    start_min, end_min = (_duration_min(part, "--analysis-period") for part in parts)
    if end_min <= start_min:
        raise ConfigurationError(
            f"analysis period {text!r} ends ({end_min:g} min) before it starts ({start_min:g} min)",
            source="--analysis-period",
        )
    return start_min, end_min


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigurationError("no such file", source=str(path)) from None
    except IsADirectoryError:
        raise ConfigurationError("is a directory, expected a CSV file", source=str(path)) from None
    except OSError as exc:
        raise ConfigurationError(f"cannot read: {exc.strerror}", source=str(path)) from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        # Windows balance software writes ANSI code pages; the header and the numbers are
        # ASCII either way, so Latin-1 (which decodes any byte) loses nothing we read.
        return raw.decode("latin-1")


def _cell(text: str, *, decimal_comma: bool) -> float:
    stripped = text.strip()
    try:
        return float(stripped)
    except ValueError:
        if decimal_comma and stripped.count(",") == 1:
            return float(stripped.replace(",", "."))
        raise


def read_balance_csv(
    path: str | Path,
    *,
    time_column: str = "t_s",
    mass_column: str = "balance_g",
    channel: str | None = None,
    source: str | None = None,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Time (s) and mass (g) columns of a balance log in CSV.

    Parameters
    ----------
    path : str or Path
        The CSV file.
    time_column, mass_column : str
        Header names of the time (s) and mass (g) columns.
    channel, source : str, optional
        For a long-format file (``medtwin export``: one row per sample with ``channel`` and
        ``source`` columns), keep only the rows of this channel (e.g. ``balance.mass_g``)
        and, if given, this source (``real`` or ``twin``).

    Returns
    -------
    t_s, mass_g : ndarray, shape (n,)

    Raises
    ------
    ConfigurationError
        Naming the file (and line) when it is missing or unreadable, has no header with
        both columns, or a cell is not a finite number.
    """
    file = Path(path)
    where = str(file)
    lines = _read_text(file).splitlines()
    header_index = next(
        (i for i, line in enumerate(lines) if line.strip() and not line.lstrip().startswith("#")),
        None,
    )
    if header_index is None:
        raise ConfigurationError("the file is empty; expected a header line", source=where)
    header_line = lines[header_index]
    wanted: tuple[str, ...] = (time_column, mass_column)
    if channel is not None:
        wanted += ("channel",) + (("source",) if source is not None else ())
    best: list[str] = []
    chosen: tuple[str, list[str]] | None = None
    for delimiter in _DELIMITERS:
        fields = [name.strip() for name in next(csv.reader([header_line], delimiter=delimiter))]
        if all(name in fields for name in wanted):
            chosen = (delimiter, fields)
            break
        if len(fields) > len(best):
            best = fields
    if chosen is None:
        missing = next(name for name in wanted if name not in best)
        option = {time_column: "--time-column", mass_column: "--mass-column"}.get(
            missing, "--channel (a long-format export)"
        )
        raise ConfigurationError(
            f"line {header_index + 1}: no column {missing!r} in the header; found "
            f"{', '.join(repr(name) for name in best)} (choose one with {option})",
            source=where,
        )
    delimiter, fields = chosen
    time_index = fields.index(time_column)
    mass_index = fields.index(mass_column)
    # Long format: which rows belong to the wanted channel (and source).
    selectors = [(fields.index("channel"), channel)] if channel is not None else []
    if channel is not None and source is not None:
        selectors.append((fields.index("source"), source))
    decimal_comma = delimiter != ","
    reader = csv.reader(io.StringIO("\n".join(lines[header_index + 1 :])), delimiter=delimiter)
    times: list[float] = []
    masses: list[float] = []
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            # e.g. an unbalanced quote that swallows the rest of the file into one cell
            raise ConfigurationError(
                f"line {header_index + 1 + reader.line_num}: not a valid CSV row ({exc})",
                source=where,
            ) from None
        if not any(cell.strip() for cell in row):
            continue
        if selectors and any(
            index >= len(row) or row[index].strip() != wanted_value
            for index, wanted_value in selectors
        ):
            continue
        line_no = header_index + 1 + reader.line_num
        values = []
        for column, index, unit in (
            (time_column, time_index, "s"),
            (mass_column, mass_index, "g"),
        ):
            if index >= len(row):
                raise ConfigurationError(
                    f"line {line_no}: has {len(row)} fields, so no value for column "
                    f"{column!r} (field {index + 1})",
                    source=where,
                )
            try:
                value = _cell(row[index], decimal_comma=decimal_comma)
            except ValueError:
                value = math.nan
            if not math.isfinite(value):
                raise ConfigurationError(
                    f"line {line_no}: column {column!r} is {row[index]!r}, expected a finite "
                    f"number in {unit}",
                    source=where,
                )
            values.append(value)
        times.append(values[0])
        masses.append(values[1])
    if not times:
        which = (
            ""
            if channel is None
            else f" of channel {channel!r}" + ("" if source is None else f" (source {source!r})")
        )
        raise ConfigurationError(
            f"no data rows{which} after the header on line {header_index + 1}", source=where
        )
    return np.asarray(times, dtype=np.float64), np.asarray(masses, dtype=np.float64)


@click.group()
def analyze() -> None:
    """IEC 60601-2-24 analyses of balance logs."""


def _windows(text: str) -> tuple[float, ...]:
    """``--windows 2,5,11,19,31``: observation windows P in min, each > 0, no repeats."""
    windows: list[float] = []
    for part in text.split(","):
        if not part.strip():
            raise ConfigurationError(
                f"malformed window list {text!r}: expected minutes separated by commas, "
                "e.g. 2,5,11,19,31",
                source="--windows",
            )
        value = _number_option(part.strip(), "--windows", "min")
        if value in windows:
            raise ConfigurationError(f"window {value:g} min is listed twice", source="--windows")
        windows.append(value)
    return tuple(windows)


def _policy(
    water_temperature: str, buoyancy: bool, density: str | None, evaporation: str
) -> GravimetricPolicy:
    temperature_c = _number_option(water_temperature, "--water-temperature", "°C", allow_zero=True)
    override = None if density is None else _number_option(density, "--density", "g/mL")
    evaporation_g_h = _number_option(evaporation, "--evaporation", "g/h", allow_zero=True)
    try:
        return GravimetricPolicy(
            water_temperature_c=temperature_c,
            air_buoyancy=buoyancy,
            evaporation_g_h=evaporation_g_h,
            density_override_g_ml=override,
        )
    except AnalysisError as exc:
        raise ConfigurationError(str(exc), source="--water-temperature") from None


@analyze.command()
@click.option(
    "--csv",
    "csv_path",
    required=True,
    metavar="FILE",
    help="Balance log: a CSV with a header; time in s, mass in g. Extra columns, a BOM and "
    "';' or tab separators are fine.",
)
@click.option("--rate", required=True, metavar="R", help="Set rate r in mL/h.")
@click.option(
    "--interval",
    default="30s",
    show_default=True,
    help="Sample interval S (the log is resampled onto it when needed).",
)
@click.option(
    "--water-temperature",
    default=f"{DEFAULT_WATER_TEMPERATURE_C:g}",
    show_default=True,
    help="Water temperature, °C: d from the Tanaka (2001) density table.",
)
@click.option(
    "--buoyancy/--no-buoyancy",
    default=True,
    show_default=True,
    help="Correct the balance reading for air buoyancy (ISO 4787 / ISO 8655-6; air "
    "1.2 kg/m³, weights 8000 kg/m³).",
)
@click.option(
    "--density",
    default=None,
    help="An explicit d of the test liquid, g/mL, replacing the temperature and buoyancy "
    "terms (e.g. 0.998, the value many IFUs quote).",
)
@click.option(
    "--analysis-period",
    default="60min-120min",
    show_default=True,
    help="START-END after the test start (bare numbers are seconds).",
)
@click.option(
    "--windows",
    default=",".join(f"{w:g}" for w in DEFAULT_WINDOWS_MIN),
    show_default=True,
    help="Observation windows P in min, comma-separated (add 1 for the 1-min window of "
    "GB 9706.27).",
)
@click.option(
    "--start",
    default=None,
    help="Test start in the log's time base (e.g. 0s); default: the first row.",
)
@click.option(
    "--evaporation",
    default="0",
    show_default=True,
    help="Evaporation loss measured with the pump stopped, g/h (added back).",
)
@click.option("--time-column", default="t_s", show_default=True, help="Header of the time column.")
@click.option(
    "--mass-column",
    default=None,
    help="Header of the mass column [default: balance_g; value with --channel].",
)
@click.option(
    "--channel",
    default=None,
    metavar="NAME",
    help="Long-format file (medtwin export): analyse the rows of this channel, e.g. "
    "balance.mass_g.",
)
@click.option(
    "--source",
    "source_name",
    type=click.Choice(["real", "twin"]),
    default="real",
    show_default=True,
    help="With --channel: the real device's rows or the twin's.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@handle_errors
def trumpet(
    csv_path: str,
    rate: str,
    interval: str,
    water_temperature: str,
    buoyancy: bool,
    density: str | None,
    analysis_period: str,
    windows: str,
    start: str | None,
    evaporation: str,
    time_column: str,
    mass_column: str | None,
    channel: str | None,
    source_name: str,
    as_json: bool,
) -> None:
    """Mean flow error A and the trumpet curve (IEC 60601-2-24 50.102) of a balance log.

    Time zero is the first row of the log unless --start says otherwise. Windows
    P = 2, 5, 11, 19, 31 min unless --windows lists others. d comes from the gravimetric
    policy (water temperature, air buoyancy) unless --density gives it.
    """
    rate_ml_h = _number_option(rate, "--rate", "mL/h")
    policy = _policy(water_temperature, buoyancy, density, evaporation)
    windows_min = _windows(windows)
    interval_min = _duration_min(interval, "--interval")
    if interval_min <= 0:
        raise ConfigurationError(f"{interval!r} must be longer than 0 s", source="--interval")
    period_min = _analysis_period(analysis_period)
    start_s = None
    if start is not None:
        try:
            start_s = parse_duration_s(start)
        except ValueError as exc:
            raise ConfigurationError(str(exc), source="--start") from None
    t_s, mass_g = read_balance_csv(
        csv_path,
        time_column=time_column,
        mass_column=mass_column or ("value" if channel is not None else "balance_g"),
        channel=channel,
        source=source_name if channel is not None else None,
    )
    try:
        curve = trumpet_curve(
            t_s,
            mass_g,
            rate_ml_h=rate_ml_h,
            sample_interval_min=interval_min,
            density_g_ml=policy.density_g_ml,
            evaporation_loss_g_h=policy.evaporation_g_h,
            analysis_period_min=period_min,
            windows_min=windows_min,
            start_s=start_s,
        )
    except AnalysisError as exc:
        # The data cannot support the analysis the user asked for: bad input, status 2.
        raise ConfigurationError(str(exc), source=csv_path) from exc
    if as_json:
        document: dict[str, Any] = curve.as_dict()
        document["gravimetry"] = policy.as_dict()
        document["source_file"] = csv_path
        document["samples"] = int(t_s.size)
        click.echo(json.dumps(document))
    else:
        _print_table(curve, csv_path, policy)


def _print_table(curve: TrumpetCurve, csv_path: str, policy: GravimetricPolicy) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    start_min, end_min = curve.analysis_period_min
    # markup=False: a file name such as "run[3].csv" must print as it is.
    console.print(f"balance log: {csv_path}", markup=False)
    console.print(
        f"r = {curve.rate_ml_h:g} mL/h, S = {curve.sample_interval_min:g} min, "
        f"d = {curve.density_g_ml:.6g} g/mL, analysis period {start_min:g}–{end_min:g} min",
        markup=False,
    )
    console.print(f"gravimetry: {policy.describe()}", markup=False)
    if curve.resampled:
        console.print(f"note: {curve.note}", markup=False)
    console.print(
        f"mean flow {curve.mean_flow_ml_h:.4f} mL/h, mean flow error A = "
        f"{curve.mean_error_percent:+.3f} % (d = {curve.density_g_ml:.6f} g/mL)",
        markup=False,
    )
    table = Table(title="Trumpet curve (IEC 60601-2-24 50.102)")
    for column in ("P (min)", "P/S", "m", "Ep(max) %", "Ep(min) %"):
        table.add_column(column, justify="right", overflow="fold")
    for window in curve.windows:
        table.add_row(
            f"{window.window_min:g}",
            str(window.samples_per_window),
            str(window.window_count),
            f"{window.ep_max_percent:+.3f}",
            f"{window.ep_min_percent:+.3f}",
        )
    console.print(table)
