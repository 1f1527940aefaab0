"""``medtwin analyze``: IEC 60601-2-24 analyses of logs users bring from any tool.

``medtwin analyze trumpet --csv FILE --rate R`` reads a gravimetric balance log (time in s,
mass in g) and prints the mean flow error A and the trumpet curve (Ep(max)/Ep(min) per
observation window) of IEC 60601-2-24:1998 clause 50.102 (2012: 201.12.1), computed by
:mod:`medtwin.hil.analysis.iec60601_2_24`.

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
from medtwin.hil.analysis.iec60601_2_24 import (
    DEFAULT_WATER_DENSITY_G_ML,
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
    path: str | Path, *, time_column: str = "t_s", mass_column: str = "balance_g"
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Time (s) and mass (g) columns of a balance log in CSV.

    Parameters
    ----------
    path : str or Path
        The CSV file.
    time_column, mass_column : str
        Header names of the time (s) and mass (g) columns.

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
    source = str(file)
    lines = _read_text(file).splitlines()
    header_index = next(
        (i for i, line in enumerate(lines) if line.strip() and not line.lstrip().startswith("#")),
        None,
    )
    if header_index is None:
        raise ConfigurationError("the file is empty; expected a header line", source=source)
    header_line = lines[header_index]
    wanted = (time_column, mass_column)
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
        option = "--time-column" if missing == time_column else "--mass-column"
        raise ConfigurationError(
            f"line {header_index + 1}: no column {missing!r} in the header; found "
            f"{', '.join(repr(name) for name in best)} (choose one with {option})",
            source=source,
        )
    delimiter, fields = chosen
    time_index = fields.index(time_column)
    mass_index = fields.index(mass_column)
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
                source=source,
            ) from None
        if not any(cell.strip() for cell in row):
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
                    source=source,
                )
            try:
                value = _cell(row[index], decimal_comma=decimal_comma)
            except ValueError:
                value = math.nan
            if not math.isfinite(value):
                raise ConfigurationError(
                    f"line {line_no}: column {column!r} is {row[index]!r}, expected a finite "
                    f"number in {unit}",
                    source=source,
                )
            values.append(value)
        times.append(values[0])
        masses.append(values[1])
    if not times:
        raise ConfigurationError(
            f"no data rows after the header on line {header_index + 1}", source=source
        )
    return np.asarray(times, dtype=np.float64), np.asarray(masses, dtype=np.float64)


@click.group()
def analyze() -> None:
    """IEC 60601-2-24 analyses of balance logs."""


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
    "--density",
    default=str(DEFAULT_WATER_DENSITY_G_ML),
    show_default=True,
    help="Density d of the test liquid, g/mL.",
)
@click.option(
    "--analysis-period",
    default="60min-120min",
    show_default=True,
    help="START-END after the first sample (bare numbers are seconds).",
)
@click.option(
    "--evaporation",
    default="0",
    show_default=True,
    help="Evaporation loss measured with the pump stopped, g/h (added back).",
)
@click.option("--time-column", default="t_s", show_default=True, help="Header of the time column.")
@click.option(
    "--mass-column", default="balance_g", show_default=True, help="Header of the mass column."
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@handle_errors
def trumpet(
    csv_path: str,
    rate: str,
    interval: str,
    density: str,
    analysis_period: str,
    evaporation: str,
    time_column: str,
    mass_column: str,
    as_json: bool,
) -> None:
    """Mean flow error A and the trumpet curve (IEC 60601-2-24 50.102) of a balance log.

    Time zero is the first row of the log. Windows P = 1, 2, 5, 11, 19, 31 min.
    """
    rate_ml_h = _number_option(rate, "--rate", "mL/h")
    density_g_ml = _number_option(density, "--density", "g/mL")
    evaporation_g_h = _number_option(evaporation, "--evaporation", "g/h", allow_zero=True)
    interval_min = _duration_min(interval, "--interval")
    if interval_min <= 0:
        raise ConfigurationError(f"{interval!r} must be longer than 0 s", source="--interval")
    period_min = _analysis_period(analysis_period)
    t_s, mass_g = read_balance_csv(csv_path, time_column=time_column, mass_column=mass_column)
    try:
        curve = trumpet_curve(
            t_s,
            mass_g,
            rate_ml_h=rate_ml_h,
            sample_interval_min=interval_min,
            density_g_ml=density_g_ml,
            evaporation_loss_g_h=evaporation_g_h,
            analysis_period_min=period_min,
            windows_min=DEFAULT_WINDOWS_MIN,
        )
    except AnalysisError as exc:
        # The data cannot support the analysis the user asked for: bad input, status 2.
        raise ConfigurationError(str(exc), source=csv_path) from exc
    if as_json:
        document: dict[str, Any] = curve.as_dict()
        document["source_file"] = csv_path
        document["samples"] = int(t_s.size)
        click.echo(json.dumps(document))
    else:
        _print_table(curve, csv_path)


def _print_table(curve: TrumpetCurve, csv_path: str) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    start_min, end_min = curve.analysis_period_min
    # markup=False: a file name such as "run[3].csv" must print as it is.
    console.print(f"balance log: {csv_path}", markup=False)
    console.print(
        f"r = {curve.rate_ml_h:g} mL/h, S = {curve.sample_interval_min:g} min, "
        f"d = {curve.density_g_ml:g} g/mL, analysis period {start_min:g}–{end_min:g} min",
        markup=False,
    )
    if curve.evaporation_loss_g_h:
        console.print(f"evaporation correction: {curve.evaporation_loss_g_h:g} g/h added back")
    if curve.resampled:
        console.print(f"note: {curve.note}", markup=False)
    console.print(
        f"mean flow {curve.mean_flow_ml_h:.4f} mL/h, mean flow error A = "
        f"{curve.mean_error_percent:+.3f} %",
        markup=False,
    )
    table = Table(title="Trumpet curve (IEC 60601-2-24 50.102)")
    table.add_column("P (min)", justify="right")
    table.add_column("P/S", justify="right")
    table.add_column("m", justify="right")
    table.add_column("Ep(max) %", justify="right")
    table.add_column("Ep(min) %", justify="right")
    for window in curve.windows:
        table.add_row(
            f"{window.window_min:g}",
            str(window.samples_per_window),
            str(window.window_count),
            f"{window.ep_max_percent:+.3f}",
            f"{window.ep_min_percent:+.3f}",
        )
    console.print(table)
