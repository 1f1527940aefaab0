"""examples/ holds real files (they survive ``cp -r``) that cannot drift from the packaged ones.

The bench, scenario and trace files that ``medtwin demo`` and the pytest plug-in use are
package data of :mod:`medtwin.hil` (``hil/data/``, read by :mod:`medtwin.hil.packaged`);
examples/ carries copies for a user to start from. A copy that differs from its packaged
twin would teach one thing and run another, so every packaged file must have an identical
copy, and every example must be a regular file, not a link that dangles once copied.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from medtwin.hil.config import load_bench, load_scenario

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
PACKAGED = ROOT / "hil" / "data"
KINDS = ("benches", "scenarios", "traces")


def _files(base: Path) -> list[Path]:
    return sorted(p for kind in KINDS for p in (base / kind).iterdir())


@pytest.mark.parametrize("packaged", _files(PACKAGED), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_packaged_file_has_an_identical_copy_in_examples(packaged: Path) -> None:
    copy = EXAMPLES / packaged.parent.name / packaged.name
    assert copy.is_file(), f"{copy} is missing"
    assert copy.read_bytes() == packaged.read_bytes(), f"{copy} differs from {packaged}"


@pytest.mark.parametrize("example", _files(EXAMPLES), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_examples_are_regular_files_that_load(example: Path) -> None:
    assert not example.is_symlink(), f"{example} is a symlink (it dangles when copied)"
    assert example.is_file()
    if example.parent.name == "benches":
        load_bench(example)
    elif example.parent.name == "scenarios":
        load_scenario(example)


def test_examples_survive_cp_r(tmp_path: Path) -> None:
    copied = tmp_path / "examples"
    shutil.copytree(EXAMPLES, copied, symlinks=True)  # what `cp -r` does with links
    for example in _files(EXAMPLES):
        twin = copied / example.parent.name / example.name
        assert twin.is_file()
        assert not twin.is_symlink()
        assert twin.read_bytes() == example.read_bytes()
