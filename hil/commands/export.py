"""``medtwin export``: write one run's channels to a CSV or NPZ file.

    medtwin export RUN [--db URL] --format csv|npz [--out FILE] [--force]

CSV (long format, one row per sample, RFC 4180 via :mod:`csv`)::

    run_id,channel,source,device,unit,t_s,value
    7,rate_ml_h,real,pump1,mL/h,0.0,5.0

Channels follow one another in the order they were added; an empty ``device`` means the
channel belongs to no device. Numbers are written with Python's shortest round-trip
representation (``repr``), so parsing them back gives the stored float64 bit for bit
(except NaN payloads: every NaN reads back as the same quiet NaN); non-finite values are
written ``nan``, ``inf``, ``-inf``, which numpy, pandas and R all read. The long layout
needs no assumption that channels share a time base, which they do not (real and twin
samples, devices polled at different rates).

NPZ (``numpy.load``, no pickle needed): for the i-th channel the arrays ``ch{i}_t_s`` and
``ch{i}_values`` (float64, shape (n,)); plus ``metadata``, a 0-d string array holding one
JSON document: format name and version, the run (as ``medtwin runs --json``), bench and
scenario text, twin parameters, summary, devices, and ``channels`` (key, name, unit,
source, device, samples), events and verdicts. Keys are indexed rather than named because
channel names need not be unique (one per source and device) and need not be valid file
names inside the zip. Non-finite floats in the JSON are the strings ``"NaN"``,
``"Infinity"``, ``"-Infinity"``, as in the store.

Nothing is written unless the whole export succeeds: the file is written under a
temporary name beside ``--out`` and renamed into place. An existing ``--out`` is kept
unless ``--force`` is given. ``--out -`` writes CSV to standard output.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Iterator
from itertools import repeat
from pathlib import Path
from typing import IO, Any, BinaryIO

import click
import numpy as np
from medtwin.drivers.errors import ConfigurationError, RunNotFound
from medtwin.hil.cli import handle_errors
from medtwin.hil.commands.runs import db_option, open_store, run_not_found
from medtwin.hil.files import write_atomically
from medtwin.hil.store import RunData
from medtwin.hil.store.codec import to_json

__all__ = ["NPZ_FORMAT", "NPZ_FORMAT_VERSION", "export", "npz_metadata", "write_csv", "write_npz"]

NPZ_FORMAT = "medtwin-run"
NPZ_FORMAT_VERSION = 1
CSV_HEADER = ("run_id", "channel", "source", "device", "unit", "t_s", "value")


def _csv_rows(run: RunData) -> Iterator[tuple[Any, ...]]:
    for ch in run.channels:
        yield from zip(
            repeat(run.info.id),
            repeat(ch.name),
            repeat(str(ch.source)),
            repeat(ch.device or ""),
            repeat(ch.unit),
            map(repr, ch.t_s.tolist()),
            map(repr, ch.values.tolist()),
            strict=False,
        )


def write_csv(run: RunData, stream: IO[str]) -> int:
    """Write the run's samples as long-format CSV to a text stream; returns the row count."""
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    writer.writerows(_csv_rows(run))
    return sum(len(ch) for ch in run.channels)


def npz_metadata(run: RunData) -> dict[str, Any]:
    """The JSON document stored under ``metadata`` in an NPZ export."""
    document = {
        "format": NPZ_FORMAT,
        "format_version": NPZ_FORMAT_VERSION,
        "run": run.info.as_json(),
        "bench": {
            "name": run.info.bench_name,
            "sha256": run.info.bench_sha256,
            "text": run.bench_text,
        },
        "scenario": {
            "name": run.info.scenario_name,
            "sha256": run.info.scenario_sha256,
            "text": run.scenario_text,
        },
        "twin_params": run.twin_params,
        "summary": run.summary,
        "devices": [d.as_json() for d in run.devices],
        "channels": [
            {
                "key": f"ch{i}",
                "name": ch.name,
                "unit": ch.unit,
                "source": str(ch.source),
                "device": ch.device,
                "samples": len(ch),
            }
            for i, ch in enumerate(run.channels)
        ],
        "events": [
            {
                "t_s": e.t_s,
                "kind": e.kind,
                "device": e.device,
                "channel": e.channel,
                "message": e.message,
                "data": e.data,
            }
            for e in run.events
        ],
        "verdicts": [v.as_json() for v in run.verdicts],
    }
    plain: dict[str, Any] = to_json(document, where="metadata")
    return plain


def write_npz(run: RunData, stream: IO[bytes]) -> None:
    """Write the run as an uncompressed NPZ archive to a binary stream."""
    arrays: dict[str, Any] = {}
    for i, ch in enumerate(run.channels):
        arrays[f"ch{i}_t_s"] = ch.t_s
        arrays[f"ch{i}_values"] = ch.values
    arrays["metadata"] = np.array(json.dumps(npz_metadata(run), allow_nan=False))
    np.savez(stream, **arrays)


def _write_atomically(path: Path, fmt: str, run: RunData) -> None:
    def write(stream: BinaryIO) -> None:
        if fmt == "csv":
            text = io.TextIOWrapper(stream, encoding="utf-8", newline="")
            write_csv(run, text)
            text.flush()
            text.detach()
        else:
            write_npz(run, stream)

    write_atomically(path, write, source="--out")


@click.command()
@click.argument("run_id", metavar="RUN", type=click.IntRange(min=1))
@db_option
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "npz"]),
    required=True,
    help="csv: one row per sample (long format); npz: numpy arrays + JSON metadata",
)
@click.option(
    "--out",
    "out",
    metavar="FILE",
    default=None,
    help="output file [default: run-RUN.csv / run-RUN.npz]; - for stdout (csv only)",
)
@click.option("--force", is_flag=True, help="overwrite --out if it exists")
@handle_errors
def export(run_id: int, db_url: str, fmt: str, out: str | None, force: bool) -> None:
    """Write the channels of run RUN to a CSV or NPZ file."""
    to_stdout = out == "-"
    if to_stdout and fmt != "csv":
        raise ConfigurationError("only --format csv can be written to stdout", source="--out")
    path = Path(out) if out and not to_stdout else Path(f"run-{run_id}.{fmt}")
    if not to_stdout:
        if path.is_dir():
            raise ConfigurationError(f"{path} is a directory; name a file", source="--out")
        if path.exists() and not force:
            raise ConfigurationError(f"{path} exists; pass --force to overwrite it", source="--out")
    with open_store(db_url) as store:
        try:
            run = store.load_run(run_id)
        except RunNotFound as error:
            raise run_not_found(error) from error
    samples = sum(len(ch) for ch in run.channels)
    if to_stdout:
        # Everything is in memory before the first byte goes out, so an error cannot
        # leave half a file on stdout.
        buffer = io.StringIO()
        write_csv(run, buffer)
        sys.stdout.write(buffer.getvalue())
        sys.stdout.flush()
        return
    _write_atomically(path, fmt, run)
    click.echo(
        f"run {run_id}: {len(run.channels)} channel(s), {samples:,} sample(s) -> {path} ({fmt})"
    )
