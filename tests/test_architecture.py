"""The import rules of docs/development.md, checked on the source instead of by review.

Imports flow one way, ``medtwin.hil`` → ``medtwin.drivers`` → ``medtwin.device_models``:

* ``device_models`` is pure physics: it imports neither ``drivers``, ``hil`` nor
  ``fixtures``, and of the outside world only numpy, scipy and the standard library, without
  the standard library's I/O and concurrency (no asyncio, sockets, threads, SQL, serial).
* Within ``drivers``, only ``drivers/emulators/`` imports ``device_models`` (an emulator is
  backed by the physics; a driver talks to whatever is on the port).
* ``drivers`` never imports ``hil`` or ``fixtures``.
* Nothing outside ``fixtures`` imports ``medtwin.fixtures`` (the pytest plug-in sits on top).
* Nothing imports the bare top-level names ``hil``, ``drivers``, ``device_models`` or
  ``fixtures``: the folders install as ``medtwin.*``, and ``fixtures`` is another
  distribution's name (the testing library).

Every ``.py`` file is parsed with :mod:`ast`, so an import inside a function or under
``TYPE_CHECKING`` counts too, and so does a lazy import: a call to ``import_module`` with a
literal name, or a string literal that is a full ``medtwin.<package>.<module>`` name (the
protocol registry's and the CLI's tables).

Finally, the repository speaks of itself alone: no file points at notes outside the
repository (``../shared``, ``shared/domain``, the design and style notes); the facts such
notes held belong in docs/ or in a docstring citing the primary source.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

#: The folders that install as ``medtwin.<folder>``.
PACKAGES = ("hil", "drivers", "device_models", "fixtures")

#: Other Python code of the repository, held to the no-bare-names rule.
OTHER_CODE = ("tests", "examples", "benchmarks")

#: Third-party distributions device_models may use.
MODELS_THIRD_PARTY = {"numpy", "scipy"}

#: Standard-library modules that would bring I/O, concurrency or storage into the physics.
MODELS_FORBIDDEN_STDLIB = {
    "asyncio", "concurrent", "fcntl", "http", "multiprocessing", "pty", "select",
    "selectors", "signal", "socket", "socketserver", "sqlite3", "ssl", "subprocess",
    "termios", "threading", "tty", "urllib",
}  # fmt: skip

#: A string literal naming a medtwin module (optionally ``:attribute``), as lazy tables do.
LAZY_NAME = re.compile(r"medtwin\.(?:hil|drivers|device_models|fixtures)(?:\.\w+)*(?::[\w.]+)?")

#: Where the repository must not point outside itself, and the pointers that do.
SELF_CONTAINED = (
    "hil", "drivers", "device_models", "fixtures", "docs", "examples", "benchmarks", "tests",
    "README.md", "pyproject.toml", "tox.ini", ".ci",
)  # fmt: skip
OUTSIDE_POINTERS = re.compile(
    r"\.\./shared|shared/domain|DESIGN\.md|STYLE\.md|domain/(?:pumps|monitors)\.md"
    r"|python-stack\.md"
)
TEXT_SUFFIXES = {"", ".py", ".md", ".toml", ".ini", ".cfg", ".txt", ".rst", ".yml", ".yaml"}


@dataclass(frozen=True)
class Import:
    """One imported module, absolute, where it is imported."""

    file: str  # relative to the repository, POSIX
    line: int
    module: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.module}"


def _python_files(folder: str) -> list[Path]:
    return sorted(path for path in (REPO / folder).rglob("*.py") if "__pycache__" not in path.parts)


def _package_of(relative: Path) -> str | None:
    """The dotted package a file of one of the four folders belongs to, for relative
    imports (``hil/store/x.py`` → ``medtwin.hil.store``)."""
    if relative.parts[0] not in PACKAGES:
        return None
    return ".".join(("medtwin", *relative.parts[:-1]))


def _resolve(package: str | None, module: str | None, level: int) -> str | None:
    if level == 0:
        return module
    if package is None:
        return None  # a relative import outside the packages: not ours to judge
    parts = package.split(".")
    base = parts[: len(parts) - (level - 1)]
    return ".".join([*base, module] if module else base)


def imports_of(path: Path) -> Iterator[Import]:
    """Every module the file ``path`` imports, statically or lazily."""
    return imports_in(path.read_text(encoding="utf-8"), path.relative_to(REPO))


def imports_in(code: str, relative: Path) -> Iterator[Import]:
    """Every module ``code`` imports, read as the repository's file ``relative``."""
    tree = ast.parse(code, filename=str(relative))
    file = relative.as_posix()
    package = _package_of(relative)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(file, node.lineno, alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(package, node.module, node.level)
            if base is None:
                continue
            # ``from medtwin import hil`` imports medtwin.hil: name every alias as a possible
            # submodule; the rules below match by prefix, so an attribute does no harm.
            for alias in node.names:
                yield Import(file, node.lineno, f"{base}.{alias.name}")
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if (
                name in {"import_module", "__import__"}
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                yield Import(file, node.lineno, node.args[0].value)
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and LAZY_NAME.fullmatch(node.value)
        ):
            yield Import(file, node.lineno, node.value.partition(":")[0])


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _imports(folder: str, *, under: str = "") -> list[Import]:
    root = REPO / folder / under if under else REPO / folder
    return [
        found
        for path in _python_files(folder)
        if path.is_relative_to(root)
        for found in imports_of(path)
    ]


def _report(violations: list[Import], rule: str) -> None:
    assert not violations, rule + ":\n  " + "\n  ".join(map(str, violations))


# --------------------------------------------------------------------------- the rules


def test_device_models_imports_no_other_layer() -> None:
    bad = [
        found
        for found in _imports("device_models")
        if any(_within(found.module, f"medtwin.{layer}") for layer in ("drivers", "hil"))
        or _within(found.module, "medtwin.fixtures")
    ]
    _report(bad, "device_models imports drivers, hil or fixtures")


def test_device_models_uses_numpy_scipy_and_the_pure_standard_library() -> None:
    bad = []
    for found in _imports("device_models"):
        top = found.module.split(".")[0]
        if top in {"medtwin", "__future__"}:
            continue
        if top in sys.stdlib_module_names:
            if top in MODELS_FORBIDDEN_STDLIB:
                bad.append(found)
        elif top not in MODELS_THIRD_PARTY:
            bad.append(found)
    _report(bad, "device_models imports I/O, concurrency, storage or a third-party library")


def test_only_emulators_import_device_models_within_drivers() -> None:
    emulators = REPO / "drivers" / "emulators"
    bad = [
        found
        for found in _imports("drivers")
        if _within(found.module, "medtwin.device_models")
        and not (REPO / found.file).is_relative_to(emulators)
    ]
    _report(bad, "a driver (not an emulator) imports device_models")


def test_drivers_import_neither_hil_nor_fixtures() -> None:
    bad = [
        found
        for found in _imports("drivers")
        if _within(found.module, "medtwin.hil") or _within(found.module, "medtwin.fixtures")
    ]
    _report(bad, "drivers imports hil or fixtures")


def test_nothing_outside_fixtures_imports_the_plugin_package() -> None:
    bad = [
        found
        for folder in PACKAGES
        if folder != "fixtures"
        for found in _imports(folder)
        if _within(found.module, "medtwin.fixtures")
    ]
    _report(bad, "medtwin.fixtures imported outside fixtures/")


@pytest.mark.parametrize("folder", PACKAGES + OTHER_CODE)
def test_no_bare_top_level_names(folder: str) -> None:
    bad = [found for found in _imports(folder) if found.module.split(".")[0] in PACKAGES]
    _report(bad, f"{folder}/ imports a bare top-level name (use medtwin.<package>)")


def test_repository_points_nowhere_outside_itself() -> None:
    this_file = Path(__file__).resolve()
    hits = []
    for entry in SELF_CONTAINED:
        root = REPO / entry
        if not root.exists():
            continue
        files = [root] if root.is_file() else sorted(root.rglob("*"))
        for path in files:
            if (
                not path.is_file()
                or path.resolve() == this_file
                or "__pycache__" in path.parts
                or path.suffix not in TEXT_SUFFIXES
            ):
                continue
            text = path.read_text(encoding="utf-8", errors="replace")
            for number, line in enumerate(text.splitlines(), start=1):
                if OUTSIDE_POINTERS.search(line):
                    hits.append(f"{path.relative_to(REPO).as_posix()}:{number}: {line.strip()}")
    assert not hits, (
        "the repository points at notes outside itself; carry the fact into docs/ or a "
        "docstring with its primary source:\n  " + "\n  ".join(hits)
    )


# --------------------------------------------------------------------------- the checker


def test_checker_sees_relative_lazy_and_nested_imports() -> None:
    """The rules are only as good as :func:`imports_in`: it must see every form."""
    code = (
        "from .. import transport\n"
        "from ...device_models import balance\n"
        "def f():\n"
        "    import medtwin.hil.cli\n"
        "    importlib.import_module('fixtures')\n"
        "TABLE = {'x': 'medtwin.hil.commands.run:run'}\n"
    )
    found = {
        (item.line, item.module) for item in imports_in(code, Path("drivers/emulators/probe.py"))
    }
    assert found == {
        (1, "medtwin.drivers.transport"),
        (2, "medtwin.device_models.balance"),
        (4, "medtwin.hil.cli"),
        (5, "fixtures"),
        (6, "medtwin.hil.commands.run"),
    }
