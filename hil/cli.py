"""The ``medtwin`` command line.

Each subcommand lives in its own module under :mod:`medtwin.hil.commands` and is imported only
when used (so ``medtwin --help`` stays fast and a broken optional dependency only breaks
its own command). The table below is the one place that lists them.

Conventions every command follows:

* human tables and progress on stdout by default, one JSON document with ``--json``;
* invalid user input (a file, a field, an option) → one line on stderr naming it, exit
  status 2, nothing written;
* any other medtwin error → one line on stderr, exit status 1.
"""

from __future__ import annotations

import functools
import importlib
import logging
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click
from medtwin.drivers.errors import ConfigurationError, MedtwinError

__all__ = ["COMMANDS", "handle_errors", "main", "parse_assignments", "parse_duration_option"]

F = TypeVar("F", bound=Callable[..., Any])

#: command name → "module:attribute" of its click command.
COMMANDS: dict[str, str] = {
    "simulate": "medtwin.hil.commands.simulate:simulate",
    "emulate": "medtwin.hil.commands.emulate:emulate",
    "protocols": "medtwin.hil.commands.protocols:protocols_command",
    "run": "medtwin.hil.commands.run:run",
    "demo": "medtwin.hil.commands.demo:demo",
    "runs": "medtwin.hil.commands.runs:runs",
    "export": "medtwin.hil.commands.export:export",
    "analyze": "medtwin.hil.commands.analyze:analyze",
    "calibrate": "medtwin.hil.commands.calibrate:calibrate",
    "report": "medtwin.hil.commands.report:report",
}


def handle_errors(func: F) -> F:
    """Map medtwin errors to the CLI's exit statuses (2: bad input, 1: anything else)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ConfigurationError as exc:
            click.echo(f"medtwin: error: {exc}", err=True)
            sys.exit(2)
        except MedtwinError as exc:
            click.echo(f"medtwin: error: {exc}", err=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


def parse_assignments(
    values: tuple[str, ...] | list[str], *, option: str = "--set"
) -> dict[str, str]:
    """``("a.b=1", "c=x")`` → ``{"a.b": "1", "c": "x"}``; ConfigurationError naming the option."""
    result: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ConfigurationError(f"expected NAME=VALUE, got {item!r}", source=option)
        result[name.strip()] = value.strip()
    return result


def parse_duration_option(text: str, *, option: str) -> float:
    """A duration typed on the command line, or ConfigurationError naming the option."""
    from medtwin.drivers.units import parse_duration_s

    try:
        return parse_duration_s(text)
    except ValueError as exc:
        raise ConfigurationError(str(exc), source=option) from None


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, _, attr = target.partition(":")
        command = getattr(importlib.import_module(module_name), attr)
        if not isinstance(command, click.Command):  # pragma: no cover - programming error
            raise TypeError(f"{target} is not a click command")
        return command


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("medtwin")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "unknown"


def _configure_logging() -> None:
    """Warnings go to stderr as one line each; library chatter stays out of the way.

    pymodbus logs every failed reconnect attempt; medtwin's drivers report a lost device
    themselves (and the run store records it), so only pymodbus's errors are shown.
    """
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("medtwin: %(levelname)s: %(message)s"))
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(handler)
        root.setLevel(logging.WARNING)
    logging.getLogger("pymodbus").setLevel(logging.ERROR)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(_version(), prog_name="medtwin")
def main() -> None:
    """medtwin: a digital twin for infusion-pump test benches.

    Start with `medtwin demo`; see docs/ for benches, scenarios and protocols.
    """
    _configure_logging()
