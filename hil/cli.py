"""The ``medtwin`` command line.

Each subcommand lives in its own module under :mod:`medtwin.hil.commands` and is imported only
when used (so ``medtwin --help`` stays fast and a broken optional dependency only breaks
its own command). The table below is the one place that lists them.

Conventions every command follows:

* human tables on stdout by default, one JSON document with ``--json``;
* an error → one line on stderr naming the file, option or device, and the exit status of
  :class:`ExitCode` that :func:`exit_code_for` gives the error: the one table a CI pipeline
  gates on, the same for every command (documented in docs/cli.md).
"""

from __future__ import annotations

import enum
import functools
import importlib
import logging
import sys
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import click
from medtwin.drivers.errors import ConfigurationError, MedtwinError, RunNotFound

__all__ = [
    "COMMANDS",
    "ExitCode",
    "exit_code_for",
    "exit_with",
    "handle_errors",
    "main",
    "parse_assignments",
    "parse_duration_option",
]

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


class ExitCode(enum.IntEnum):
    """The exit status of every ``medtwin`` command: what a CI pipeline gates on.

    ``OK`` and ``FAILED`` are the answer to the question the command was asked (did the
    device pass?); ``BAD_INPUT`` means the question was malformed (fix the command line or
    the files), ``RUNTIME`` that the bench or the store let the command down (a retry, or a
    look at the hardware, may help). ``BAD_INPUT`` is also what click gives its own usage
    errors, and ``INTERRUPTED`` is 128 + SIGINT (2): POSIX asks only that a command ended
    by a signal report a status above 128 (POSIX.1-2017, XCU §2.8.2), and 128 + the signal
    number is what bash reports for one (Bash Reference Manual, "Exit Status").
    """

    #: the command did what was asked; ``medtwin run``: no verdict failed.
    OK = 0
    #: ``medtwin run``: a verdict failed (or, with ``--fail-on drift``, drift was flagged).
    FAILED = 1
    #: bad input: an argument, option, bench, scenario, sweep or trace file, an unknown
    #: run, a ``--db`` that names no run store.
    BAD_INPUT = 2
    #: a runtime failure: a port that cannot be opened, a device lost or misbehaving, a
    #: store that fails while in use, a plug-in that cannot be loaded, a fit or analysis
    #: that could not be carried out (did not converge).
    RUNTIME = 3
    #: stopped by Ctrl-C or SIGTERM (whatever was recorded is stored as ``aborted``).
    INTERRUPTED = 130


def exit_code_for(error: BaseException) -> ExitCode:
    """The exit status of an error: the one mapping of the exception tree to :class:`ExitCode`.

    Bad input is what the user can fix in what they typed or wrote: a configuration error,
    an unknown run (commands turn input data that cannot support an analysis, such as a
    trace too short, into a :class:`ConfigurationError` naming it). Everything else medtwin
    raises on purpose (device, protocol, port and storage errors, an :class:`AnalysisError`
    such as a fit that did not converge) is a runtime failure.
    """
    if isinstance(error, KeyboardInterrupt):
        return ExitCode.INTERRUPTED
    if isinstance(error, ConfigurationError | RunNotFound):
        return ExitCode.BAD_INPUT
    return ExitCode.RUNTIME


def exit_with(code: ExitCode) -> NoReturn:
    """Leave the command with ``code`` (``sys.exit`` with the table's value)."""
    sys.exit(int(code))


def handle_errors(func: F) -> F:
    """Turn a medtwin error into one line on stderr and its :func:`exit_code_for` status;
    Ctrl-C outside a run into ``interrupted`` and status 130 (not a traceback)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except MedtwinError as exc:
            click.echo(f"medtwin: error: {exc}", err=True)
            exit_with(exit_code_for(exc))
        except KeyboardInterrupt:
            click.echo("medtwin: interrupted", err=True)
            exit_with(ExitCode.INTERRUPTED)

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
    def invoke(self, ctx: click.Context) -> Any:
        # Ctrl-C before a command's own handling (importing it, parsing): 130, as inside
        # it, rather than click's "Aborted!" with status 1.
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            click.echo("medtwin: interrupted", err=True)
            ctx.exit(int(ExitCode.INTERRUPTED))

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
