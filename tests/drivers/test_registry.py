"""The protocol registry: one descriptor per protocol, built-ins and plug-ins alike."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from medtwin.drivers import registry
from medtwin.drivers.base import Device
from medtwin.drivers.descriptors import NE1000
from medtwin.drivers.errors import ConfigurationError
from medtwin.drivers.protocol import LineSpec, ProtocolDescriptor

BUILT_INS = {"ne1000", "mt-sics", "modbus-pump", "modbus-bench-io", "modbus"}


def test_every_built_in_protocol_comes_from_our_own_entry_points() -> None:
    found = registry.descriptors()
    assert set(found) >= BUILT_INS
    for name in BUILT_INS:
        descriptor = found[name]
        assert descriptor.name == name
        assert descriptor.source == registry.BUILT_IN
        assert registry.distribution(name)[0] == "medtwin"
        assert issubclass(registry.driver_class(name), Device)
        if descriptor.emulator is not None:
            assert isinstance(registry.emulator_class(name), type)
    assert registry.protocols() == sorted(found)


def test_kinds_mechanisms_and_lines_of_the_built_ins() -> None:
    facts = {
        name: (d.kind, d.mechanism, d.line.kind)
        for name, d in registry.descriptors().items()
        if name in BUILT_INS
    }
    assert facts == {
        "ne1000": ("pump", "pump", "serial"),
        "mt-sics": ("balance", "balance", "serial"),
        "modbus-pump": ("pump", "pump", "modbus"),
        "modbus-bench-io": ("bench-io", "bench_io", "modbus"),
        "modbus": (None, None, "modbus"),
    }
    # the NE-1000's framing is fixed at 8N1; MT-SICS takes every serial setting
    assert registry.descriptor("ne1000").line.settings == ("baudrate",)
    assert "handshake" in registry.descriptor("mt-sics").line.settings
    assert "handshake" not in registry.descriptor("modbus-pump").line.settings
    # options both ends take reach the emulator too
    assert registry.descriptor("ne1000").shared_options == {"address", "safe_mode_timeout_s"}
    assert registry.descriptor("modbus-pump").shared_options == {"device_id", "register_map"}


def test_unknown_protocol_lists_the_known_ones() -> None:
    with pytest.raises(ConfigurationError, match=r"unknown protocol 'ne9999'; expected one of"):
        registry.descriptor("ne9999")
    with pytest.raises(ConfigurationError, match="unknown protocol"):
        registry.driver_class("ne9999")
    with pytest.raises(ConfigurationError, match="no emulator for protocol 'modbus'"):
        registry.emulator_class("modbus")


# -- plug-ins, as the entry-point machinery hands them over --------------------------------


class _Metadata(dict[str, str]):
    pass


class _Dist:
    def __init__(self, name: str, version: str) -> None:
        self.metadata = _Metadata(Name=name)
        self.version = version


class _EntryPoint:
    """What ``importlib.metadata.entry_points`` yields: name, value, dist, load()."""

    def __init__(self, name: str, value: str, dist: _Dist, loaded: Any) -> None:
        self.name, self.value, self.dist, self._loaded = name, value, dist, loaded
        self.group = registry.GROUP

    def load(self) -> Any:
        if isinstance(self._loaded, Exception):
            raise self._loaded
        return self._loaded


@pytest.fixture
def installed(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[_EntryPoint]]:
    """The entry points the registry sees: append to the list, then ask the registry."""
    eps: list[_EntryPoint] = []
    monkeypatch.setattr(registry, "entry_points", lambda group: list(eps))
    registry._entry_points.cache_clear()
    registry.descriptor.cache_clear()
    yield eps
    registry._entry_points.cache_clear()
    registry.descriptor.cache_clear()


ACME = _Dist("acme-medtwin", "1.2.0")
OURS = _Dist("medtwin", "0.1.0")


def _renamed(name: str) -> ProtocolDescriptor:
    return ProtocolDescriptor(
        name=name,
        kind="pump",
        driver=NE1000.driver,
        emulator=NE1000.emulator,
        mechanism="pump",
        line=NE1000.line,
        options=NE1000.options,
        emulator_options=NE1000.emulator_options,
        description="an NE-1000 under another name",
    )


def test_a_plug_in_is_registered_like_a_built_in(installed: list[_EntryPoint]) -> None:
    installed.append(_EntryPoint("ne1000", "x:NE1000", OURS, NE1000))
    installed.append(_EntryPoint("acme-pump", "acme:PUMP", ACME, _renamed("acme-pump")))
    assert registry.protocols() == ["acme-pump", "ne1000"]
    assert registry.descriptor("acme-pump").source == "acme-medtwin 1.2.0"
    assert registry.descriptor("ne1000").source == "built in"
    assert registry.driver_class("acme-pump") is registry.driver_class("ne1000")


@pytest.mark.parametrize(
    ("loaded", "message"),
    [
        (ImportError("No module named 'acme'"), "cannot be loaded: ImportError: No module"),
        ("not a descriptor", "is a str, not a medtwin.drivers.protocol.ProtocolDescriptor"),
        (_renamed("other-name"), "describes protocol 'other-name'"),
    ],
    ids=["import-error", "not-a-descriptor", "wrong-name"],
)
def test_a_broken_plug_in_names_its_distribution(
    installed: list[_EntryPoint], loaded: Any, message: str
) -> None:
    installed.append(_EntryPoint("acme-pump", "acme:PUMP", ACME, loaded))
    with pytest.raises(ConfigurationError) as info:
        registry.descriptor("acme-pump")
    assert "registered by acme-medtwin 1.2.0 (acme:PUMP)" in str(info.value)
    assert message in str(info.value)


def test_a_plug_in_cannot_replace_a_built_in_and_two_plug_ins_cannot_share_a_name(
    installed: list[_EntryPoint], caplog: pytest.LogCaptureFixture
) -> None:
    installed.append(_EntryPoint("ne1000", "acme:FAKE", ACME, _renamed("ne1000")))
    installed.append(_EntryPoint("ne1000", "x:NE1000", OURS, NE1000))
    installed.append(_EntryPoint("twin", "acme:TWIN", ACME, _renamed("twin")))
    installed.append(_EntryPoint("twin", "b:TWIN", _Dist("b-medtwin", "3"), _renamed("twin")))
    assert registry.descriptor("ne1000").source == "built in"
    assert "protocol 'ne1000' of acme-medtwin 1.2.0 is ignored" in caplog.text
    with pytest.raises(ConfigurationError, match=r"registered by both acme-medtwin 1\.2\.0 and b-"):
        registry.descriptor("twin")


def test_no_protocols_at_all_says_to_reinstall(installed: list[_EntryPoint]) -> None:
    with pytest.raises(ConfigurationError, match="reinstall"):
        registry.descriptor("ne1000")


def test_a_driver_that_is_not_a_device_is_refused(installed: list[_EntryPoint]) -> None:
    bad = ProtocolDescriptor(name="bad", kind="pump", driver="medtwin.drivers.errors:LimitError")
    gone = ProtocolDescriptor(name="gone", kind="pump", driver="acme_nowhere:Pump")
    installed.append(_EntryPoint("bad", "acme:BAD", ACME, bad))
    installed.append(_EntryPoint("gone", "acme:GONE", ACME, gone))
    with pytest.raises(ConfigurationError, match=r"is not a medtwin\.drivers\.base\.Device"):
        registry.driver_class("bad")
    with pytest.raises(ConfigurationError, match=r"acme-medtwin 1\.2\.0.*cannot be imported"):
        registry.driver_class("gone")


# -- the descriptor checks itself --------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"driver": "medtwin.drivers.ne1000.NE1000Pump"}, "is not 'module:Class'"),
        ({"emulator": "a.b:Emulator"}, "an emulator needs the mechanism"),
        ({"mechanism": "pump"}, "an emulator needs the mechanism"),
        ({"options": dict}, "options is not a pydantic model"),
    ],
)
def test_descriptor_refuses_inconsistent_facts(kwargs: dict[str, Any], message: str) -> None:
    fields: dict[str, Any] = {"name": "x", "kind": "pump", "driver": "a.b:Driver"}
    with pytest.raises(ValueError, match=message):
        ProtocolDescriptor(**{**fields, **kwargs})


def test_line_spec_knows_the_settings_of_its_kind() -> None:
    assert LineSpec("modbus", ("baudrate", "parity")).settings == ("baudrate", "parity")
    with pytest.raises(ValueError, match="a modbus line has no setting"):
        LineSpec("modbus", ("handshake",))
