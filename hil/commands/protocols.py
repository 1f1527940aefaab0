"""``medtwin protocols``: every protocol a bench file may name, and who registered it.

    medtwin protocols [--json]

One row per protocol registered in the ``medtwin.protocols`` entry-point group
(:mod:`medtwin.drivers.registry`): its device kind, driver, emulator (or none), line kind
and source, ``built in`` or the distribution (name and version) that registered it. A
plug-in that cannot be loaded is reported on stderr with its distribution, the others are
still listed, and the exit status is 3 (a runtime failure: the installation, not the
command line, is at fault; see :class:`medtwin.hil.cli.ExitCode`). ``--json`` prints one
JSON list, one object per protocol, with the option names of both ends and the line
settings a bench may give.
"""

from __future__ import annotations

import json
from typing import Any

import click
from medtwin.drivers.errors import ConfigurationError
from medtwin.drivers.protocol import ProtocolDescriptor
from medtwin.drivers.registry import descriptor, distribution, protocols
from medtwin.hil.cli import ExitCode, exit_with, handle_errors

__all__ = ["protocols_command"]


def _as_json(found: ProtocolDescriptor) -> dict[str, Any]:
    dist, version = distribution(found.name)
    return {
        "name": found.name,
        "kind": found.kind,
        "driver": found.driver,
        "emulator": found.emulator,
        "mechanism": found.mechanism,
        "line": found.line.kind,
        "line_settings": list(found.line.settings),
        "options": sorted(found.options.model_fields),
        "emulator_options": sorted(found.emulator_options.model_fields),
        "description": found.description,
        "source": found.source,
        "distribution": dist,
        "version": version,
    }


def _print_table(found: list[ProtocolDescriptor]) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:
        # Piped or captured: rich would assume 80 columns and fold the class paths.
        console = Console(width=200)
    table = Table(title="registered protocols", title_justify="left", box=box.SIMPLE_HEAD)
    for column in ("protocol", "kind", "driver", "emulator", "line", "source"):
        table.add_column(column, no_wrap=column != "source", overflow="fold")
    for item in found:
        table.add_row(
            item.name,
            item.kind or "any",
            item.driver,
            item.emulator or "none",
            item.line.kind,
            item.source,
        )
    console.print(table, markup=False, highlight=False)


@click.command("protocols")
@click.option("--json", "as_json", is_flag=True, help="print one JSON document")
@handle_errors
def protocols_command(as_json: bool) -> None:
    """List every registered protocol (kind, driver, emulator, line, source)."""
    found: list[ProtocolDescriptor] = []
    broken: list[str] = []
    for name in protocols():
        try:
            found.append(descriptor(name))
        except ConfigurationError as exc:
            broken.append(str(exc).removeprefix("protocol: "))
    if as_json:
        click.echo(json.dumps([_as_json(item) for item in found], indent=2))
    else:
        _print_table(found)
    for message in broken:
        click.echo(f"medtwin: error: {message}", err=True)
    if broken:
        exit_with(ExitCode.RUNTIME)
