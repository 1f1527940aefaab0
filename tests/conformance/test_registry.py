"""The suites see every protocol: the pairs come from the registry, not from a list here.

A protocol of a known device class whose driver is not that class's interface, or that has
no emulator and no real device named, would silently drop out of the conformance suites;
these checks make that visible.
"""

from __future__ import annotations

import pytest
from medtwin.drivers.base import Balance, BenchIO, InfusionPump
from medtwin.drivers.registry import descriptors, driver_class, emulator_class


def test_every_device_class_has_pairs(suite_protocols: dict[str, list[str]]) -> None:
    # The built-in protocols: at least these are in the suites.
    assert {"ne1000", "modbus-pump"} <= set(suite_protocols["pump"])
    assert "mt-sics" in suite_protocols["balance"]
    assert "modbus-bench-io" in suite_protocols["bench-io"]


def test_every_protocol_with_an_emulator_is_in_a_suite(
    suite_protocols: dict[str, list[str]],
) -> None:
    in_suites = {name for names in suite_protocols.values() for name in names}
    for name, found in descriptors().items():
        if found.emulator is None:
            continue  # a generic device without an emulator (the plain Modbus map)
        assert name in in_suites, (
            f"protocol {name!r} ({found.kind}) has an emulator but no conformance suite"
        )
        assert isinstance(emulator_class(name), type)


@pytest.mark.parametrize(
    ("kind", "interface"),
    [("pump", InfusionPump), ("balance", Balance), ("bench-io", BenchIO)],
)
def test_the_suites_drivers_implement_the_interface(
    suite_protocols: dict[str, list[str]], kind: str, interface: type
) -> None:
    for name in suite_protocols[kind]:
        assert issubclass(driver_class(name), interface), name
