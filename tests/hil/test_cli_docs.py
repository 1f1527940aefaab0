"""docs/cli.md documents every command and every option, and the exit-status table as
:class:`medtwin.hil.cli.ExitCode` defines it: a new option without a line there fails here."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import click
from medtwin.hil.cli import COMMANDS, ExitCode, main

PAGE = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def _commands() -> Iterator[tuple[str, click.Command]]:
    ctx = click.Context(main)
    for name in COMMANDS:
        command = main.get_command(ctx, name)
        assert command is not None
        yield name, command
        if isinstance(command, click.Group):
            for sub in command.list_commands(ctx):
                found = command.get_command(ctx, sub)
                assert found is not None
                yield f"{name} {sub}", found


def _sections(text: str) -> dict[str, str]:
    """``### `medtwin NAME ...` `` heading → the section's text (up to the next heading)."""
    parts = re.split(r"^### `(medtwin [^`]*)`[^\n]*$", text, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def _section_of(sections: dict[str, str], name: str) -> str | None:
    top, _, sub = name.partition(" ")
    for heading, body in sections.items():
        words = heading.split()
        if words[1] != top:
            continue
        if not sub or (len(words) > 2 and sub in words[2].split("|")):
            return body
    return None


def test_every_command_and_option_is_documented_in_its_section() -> None:
    sections = _sections(PAGE.read_text(encoding="utf-8"))
    missing = []
    for name, command in _commands():
        if isinstance(command, click.Group):
            continue  # documented through its subcommands
        body = _section_of(sections, name)
        if body is None:
            missing.append(f"a section for medtwin {name}")
            continue
        for param in command.params:
            if not isinstance(param, click.Option) or "--help" in param.opts:
                continue
            for opt in (*param.opts, *param.secondary_opts):
                pattern = rf"(?<![\w-]){re.escape(opt)}(?![\w-])"
                if opt.startswith("--") and not re.search(pattern, body):
                    missing.append(f"medtwin {name} {opt}")
    assert not missing, f"not in {PAGE.name}: {', '.join(missing)}"


def test_the_exit_status_table_is_the_documented_one() -> None:
    text = PAGE.read_text(encoding="utf-8")
    rows = re.findall(r"^\|\s*(\d+)\s*\|", text, flags=re.MULTILINE)
    assert [int(r) for r in rows] == [int(code) for code in ExitCode]
