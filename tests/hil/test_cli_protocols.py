"""``medtwin protocols``: every registered protocol, its kind, driver, emulator and source."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
from click.testing import CliRunner
from medtwin.drivers import registry
from medtwin.drivers.descriptors import MTSICS
from medtwin.hil.cli import main


def test_table_lists_every_built_in_protocol() -> None:
    result = CliRunner().invoke(main, ["protocols"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    header = next(line for line in lines if "protocol" in line and "driver" in line)
    assert header.split() == ["protocol", "kind", "driver", "emulator", "line", "source"]
    row = next(line for line in lines if line.split()[:1] == ["ne1000"])
    assert row.split() == [
        "ne1000",
        "pump",
        "medtwin.drivers.ne1000:NE1000Pump",
        "medtwin.drivers.emulators.ne1000:NE1000Emulator",
        "serial",
        "built",
        "in",
    ]
    generic = next(line for line in lines if line.split()[:1] == ["modbus"])
    assert generic.split()[1] == "any"
    assert generic.split()[3] == "none"


def test_json_is_one_document_with_the_descriptor_facts() -> None:
    result = CliRunner().invoke(main, ["protocols", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    by_name = {entry["name"]: entry for entry in doc}
    assert {"ne1000", "mt-sics", "modbus-pump", "modbus-bench-io", "modbus"} <= set(by_name)
    balance = by_name["mt-sics"]
    assert balance == {
        "name": "mt-sics",
        "kind": "balance",
        "driver": "medtwin.drivers.mtsics:MTSICSBalance",
        "emulator": "medtwin.drivers.emulators.mtsics:MTSICSEmulator",
        "mechanism": "balance",
        "line": "serial",
        "line_settings": ["baudrate", "bytesize", "parity", "stopbits", "handshake"],
        "options": [],
        "emulator_options": sorted(MTSICS.emulator_options.model_fields),
        "description": MTSICS.description,
        "source": "built in",
        "distribution": "medtwin",
        "version": balance["version"],
    }
    assert by_name["modbus"]["emulator"] is None
    assert by_name["modbus"]["kind"] is None


class _Dist:
    metadata: ClassVar[dict[str, str]] = {"Name": "acme-medtwin"}
    version = "0.3"


class _Broken:
    name, value, group, dist = "acme-pump", "acme_medtwin:PUMP", registry.GROUP, _Dist()

    def load(self) -> Any:
        raise ImportError("No module named 'acme_medtwin'")


@pytest.fixture
def broken_plug_in(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    real = list(registry.entry_points(group=registry.GROUP))
    monkeypatch.setattr(registry, "entry_points", lambda group: [*real, _Broken()])
    registry._entry_points.cache_clear()
    registry.descriptor.cache_clear()
    yield
    registry._entry_points.cache_clear()
    registry.descriptor.cache_clear()


@pytest.mark.usefixtures("broken_plug_in")
def test_a_broken_plug_in_is_named_and_the_others_still_listed() -> None:
    result = CliRunner().invoke(main, ["protocols", "--json"])
    assert result.exit_code == 3  # a runtime failure: the installation (ExitCode.RUNTIME)
    assert "ne1000" in {entry["name"] for entry in json.loads(result.stdout)}
    assert "registered by acme-medtwin 0.3 (acme_medtwin:PUMP) cannot be loaded" in result.stderr
