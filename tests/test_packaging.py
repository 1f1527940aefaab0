"""The wheel installs beside the ``fixtures`` testing library and holds everything it needs.

Before medtwin installed as one ``medtwin`` package, the wheel put four generic top-level
packages into site-packages; ``fixtures`` (the testing library behind testtools and stestr)
was overwritten by ours, and ``from fixtures import Fixture`` failed. This test does what a
new user does: a fresh virtual environment, ``pip install fixtures`` first, then the medtwin
wheel built from this checkout, and checks that both import.

It also checks the wheel against the source folders, so a subpackage left out of
``[tool.setuptools] packages`` in pyproject.toml, or a data file left out of
``[tool.setuptools.package-data]``, fails here instead of on a user's machine: every module
of the checkout is in the wheel and imports from the installed copy, every data file is
there, nothing but ``medtwin`` lands as a top-level name, and the console script and the
pytest11 entry point work.

The wheel is built from a copy of the checkout (setuptools writes ``build/`` and
``*.egg-info`` beside the sources). To stay fast, medtwin itself is installed with
``--no-deps`` and its dependencies are made importable from the running interpreter's
site-packages by a path file appended last; ``fixtures`` is genuinely installed with pip,
before medtwin, which is the collision the test is about. Needs the package index (or pip's
cache) for ``fixtures`` and for the isolated build's setuptools.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[1]

#: Source folder → the package it installs as (pyproject.toml [tool.setuptools.package-dir]).
FOLDERS = {
    "hil": "medtwin.hil",
    "drivers": "medtwin.drivers",
    "device_models": "medtwin.device_models",
    "fixtures": "medtwin.fixtures",
}

#: Files the code opens at run time; named here so that losing one is reported by name.
PACKAGE_DATA = [
    "medtwin/device_models/data/syringes.toml",
    "medtwin/drivers/register_maps/*.toml",
    "medtwin/hil/data/benches/*.toml",
    "medtwin/hil/data/scenarios/*.toml",
    "medtwin/hil/data/traces/*.csv",
]

#: What the build leaves behind and what the wheel is not built from.
IGNORED = shutil.ignore_patterns(
    ".git", "__pycache__", "*.pyc", "*.egg-info", "build", "dist", ".tox", ".venv",
    ".mypy_cache", ".ruff_cache", ".pytest_cache", ".hypothesis", "medtwin.db*", "out",
)  # fmt: skip


def _run(command: list[str], *, cwd: Path, timeout: float = 600.0) -> str:
    """Run ``command``; on a non-zero exit fail the test with its whole output."""
    proc = subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        pytest.fail(
            f"{' '.join(command)} exited with {proc.returncode}\n"
            f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}",
            pytrace=False,
        )
    return proc.stdout


@dataclass(frozen=True)
class Installed:
    """The wheel and the environment it was installed into."""

    source: Path  # the copy of the checkout the wheel was built from
    wheel: Path
    names: list[str]  # every file in the wheel
    python: Path  # the environment's interpreter
    bin_dir: Path
    site_packages: Path
    added: list[str]  # what installing the wheel added to site-packages
    workdir: Path  # a neutral working directory (no hil/, fixtures/ ... to shadow anything)

    def python_json(self, code: str) -> object:
        """Run ``code`` in the environment's interpreter; it prints one JSON document."""
        out = _run([str(self.python), "-c", textwrap.dedent(code)], cwd=self.workdir)
        return json.loads(out)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """Build the wheel, make a fresh venv, ``pip install fixtures``, then install medtwin."""
    root = tmp_path_factory.mktemp("packaging")
    source = root / "src"
    shutil.copytree(REPO, source, ignore=IGNORED, symlinks=True)
    wheels = root / "wheels"
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(wheels), "."],
        cwd=source,
    )
    (wheel,) = wheels.glob("medtwin-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()

    env = root / "venv"
    # No --system-site-packages: the environment starts empty, as a user's does.
    _run([sys.executable, "-m", "venv", str(env)], cwd=root)
    bin_dir = env / ("Scripts" if sys.platform == "win32" else "bin")
    python = bin_dir / ("python.exe" if sys.platform == "win32" else "python")
    pip = [str(python), "-m", "pip", "--disable-pip-version-check", "--quiet"]
    # The order of the defect: the testing library first, medtwin second.
    site_packages = Path(
        _run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            cwd=root,
        ).strip()
    )
    _run([*pip, "install", "fixtures"], cwd=root)
    before = {path.name for path in site_packages.iterdir()}
    _run([*pip, "install", "--no-deps", str(wheel)], cwd=root)
    added = sorted({path.name for path in site_packages.iterdir()} - before)
    # medtwin's dependencies (numpy, pydantic, pytest, ...) from this interpreter, appended
    # after the environment's own site-packages so the installed fixtures and medtwin win.
    # Path files inside that directory are not processed, so this checkout's editable
    # install hook does not come along.
    (site_packages / "zz_host_dependencies.pth").write_text(
        sysconfig.get_path("purelib") + "\n", encoding="utf-8"
    )
    workdir = root / "work"
    workdir.mkdir()
    return Installed(source, wheel, names, python, bin_dir, site_packages, added, workdir)


def _wheel_modules(names: list[str]) -> list[str]:
    modules = []
    for name in names:
        if name.endswith(".py"):
            parts = name[: -len(".py")].split("/")
            if parts[-1] == "__init__":
                parts.pop()
            modules.append(".".join(parts))
    return sorted(modules)


def _source_files(checkout: Path) -> dict[str, Path]:
    """Every file of the four folders of ``checkout``, by its path inside the wheel."""
    files = {}
    for folder, package in FOLDERS.items():
        prefix = package.replace(".", "/")
        for path in sorted((checkout / folder).rglob("*")):
            relative = path.relative_to(checkout / folder)
            if (
                path.is_file()
                and "__pycache__" not in relative.parts
                and path.suffix not in {".pyc", ".pyo"}
            ):
                files[f"{prefix}/{relative.as_posix()}"] = path
    return files


def test_fixtures_library_still_imports(installed: Installed) -> None:
    result = installed.python_json(
        """
        import json, fixtures
        from fixtures import Fixture, TempDir
        print(json.dumps({"file": fixtures.__file__, "fixture": Fixture.__module__}))
        """
    )
    assert isinstance(result, dict)
    # The library's own package, not medtwin's plug-in folder.
    assert Path(result["file"]).parent == installed.site_packages / "fixtures"
    assert result["fixture"].startswith("fixtures.")


def test_plugin_imports_beside_fixtures(installed: Installed) -> None:
    result = installed.python_json(
        """
        import json
        import fixtures
        import medtwin.fixtures.plugin as plugin
        print(json.dumps({"plugin": plugin.__file__, "fixtures": fixtures.__file__}))
        """
    )
    assert isinstance(result, dict)
    assert Path(result["plugin"]).is_relative_to(installed.site_packages / "medtwin")
    assert Path(result["fixtures"]).is_relative_to(installed.site_packages / "fixtures")


def test_wheel_holds_every_file_of_the_checkout(installed: Installed) -> None:
    """A folder missing from ``packages`` or a data file missing from ``package-data``."""
    missing = sorted(set(_source_files(installed.source)) - set(installed.names))
    assert not missing, (
        "files of the checkout missing from the wheel (add the subpackage to "
        "[tool.setuptools] packages or the pattern to [tool.setuptools.package-data] in "
        f"pyproject.toml): {missing}"
    )


def test_package_data_is_installed(installed: Installed) -> None:
    for pattern in PACKAGE_DATA:
        found = list(installed.site_packages.glob(pattern))
        assert found, f"no installed file matches {pattern}"
        assert all(path.stat().st_size > 0 for path in found), found


def test_every_module_imports_from_the_installed_copy(installed: Installed) -> None:
    modules = _wheel_modules(installed.names)
    assert {"medtwin.hil.cli", "medtwin.fixtures.plugin", "medtwin.drivers.registry"} <= set(
        modules
    )
    result = installed.python_json(
        f"""
        import importlib, json, traceback
        failures, files = {{}}, {{}}
        for name in {modules!r}:
            try:
                files[name] = importlib.import_module(name).__file__
            except BaseException:
                failures[name] = traceback.format_exc()
        print(json.dumps({{"failures": failures, "files": files}}))
        """
    )
    assert isinstance(result, dict)
    assert result["failures"] == {}, "\n".join(result["failures"].values())
    outside = {
        name: file
        for name, file in result["files"].items()
        if not Path(file).is_relative_to(installed.site_packages / "medtwin")
    }
    assert not outside, f"modules imported from outside the installed wheel: {outside}"


def test_only_medtwin_is_a_top_level_name(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as archive:
        (dist_info,) = {name.split("/")[0] for name in installed.names if ".dist-info/" in name}
        record = archive.read(f"{dist_info}/RECORD").decode()
        top_level = archive.read(f"{dist_info}/top_level.txt").decode().split()
    assert top_level == ["medtwin"]
    roots = {line.split(",")[0].split("/")[0] for line in record.splitlines() if line}
    assert roots == {"medtwin", dist_info}
    # medtwin is a namespace package (PEP 420): no __init__.py of its own to clash over.
    assert "medtwin/__init__.py" not in installed.names
    # What pip actually put into site-packages, next to the fixtures library.
    assert installed.added == sorted(["medtwin", dist_info])


def test_console_script_runs(installed: Installed) -> None:
    script = installed.bin_dir / ("medtwin.exe" if sys.platform == "win32" else "medtwin")
    out = _run([str(script), "--help"], cwd=installed.workdir)
    assert "Usage:" in out
    for command in ("demo", "run", "emulate", "report"):
        assert command in out


def test_pytest_plugin_entry_point(installed: Installed) -> None:
    result = installed.python_json(
        """
        import json
        from importlib.metadata import distribution
        dist = distribution("medtwin")
        print(json.dumps({
            "where": str(dist.locate_file("")),
            "pytest11": {ep.name: ep.value for ep in dist.entry_points.select(group="pytest11")},
            "scripts": {
                ep.name: ep.value for ep in dist.entry_points.select(group="console_scripts")
            },
        }))
        """
    )
    assert isinstance(result, dict)
    assert Path(result["where"]) == installed.site_packages  # the wheel's, not this checkout's
    assert result["pytest11"] == {"medtwin": "medtwin.fixtures.plugin"}
    assert result["scripts"] == {"medtwin": "medtwin.hil.cli:main"}
