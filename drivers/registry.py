"""Protocol name → :class:`~medtwin.drivers.protocol.ProtocolDescriptor`, from entry points.

Like python-can's ``BACKENDS`` table extended by its ``can.interface`` entry points, but with
one source: every protocol, medtwin's own included, is an entry point of the
``medtwin.protocols`` group whose object is a descriptor. medtwin declares its built-ins in
its own pyproject.toml; a lab's distribution declares its protocols the same way and needs
no change to medtwin (docs/adding-a-device.md)::

    [project.entry-points."medtwin.protocols"]
    acme-pump = "acme_medtwin:ACME_PUMP"

Names are listed without importing anything; a descriptor is imported when first asked
for, and a driver or emulator class only when a device is built. A protocol name that two
distributions register is an error naming both, except that medtwin's own entry wins (a
plug-in cannot silently replace a built-in protocol; the shadowing entry is logged).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import logging
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from medtwin.drivers.base import Device
from medtwin.drivers.errors import ConfigurationError
from medtwin.drivers.protocol import ProtocolDescriptor

__all__ = [
    "BUILT_IN",
    "GROUP",
    "descriptor",
    "descriptors",
    "distribution",
    "driver_class",
    "emulator_class",
    "protocols",
]

log = logging.getLogger(__name__)

#: The entry-point group every protocol is registered in.
GROUP = "medtwin.protocols"
#: ``source`` of the protocols medtwin itself registers.
BUILT_IN = "built in"
_OWN_DISTRIBUTION = "medtwin"


def _distribution(ep: EntryPoint) -> tuple[str, str]:
    """(name, version) of the distribution that declared ``ep``."""
    dist = ep.dist
    if dist is None:  # pragma: no cover - entry points always come from a distribution here
        return "an unknown distribution", ""
    return dist.metadata["Name"] or "an unnamed distribution", dist.version


def _source(ep: EntryPoint) -> str:
    name, version = _distribution(ep)
    if name.lower() == _OWN_DISTRIBUTION:
        return BUILT_IN
    return f"{name} {version}".strip()


@functools.cache
def _entry_points() -> tuple[dict[str, EntryPoint], dict[str, list[str]]]:
    """The entry point of each protocol name, and the names two plug-ins both register
    (with their sources). Read once: scanning the installed distributions takes milliseconds."""
    chosen: dict[str, EntryPoint] = {}
    clashes: dict[str, list[str]] = {}
    for ep in entry_points(group=GROUP):
        held = chosen.get(ep.name)
        if held is None:
            chosen[ep.name] = ep
            continue
        if held.value == ep.value and _source(held) == _source(ep):
            continue  # one distribution seen twice (an editable install and a build dir)
        if _source(ep) == BUILT_IN or _source(held) == BUILT_IN:
            own, other = (ep, held) if _source(ep) == BUILT_IN else (held, ep)
            log.warning(
                "protocol %r of %s is ignored: medtwin has a built-in protocol of that name",
                ep.name,
                _source(other),
            )
            chosen[ep.name] = own
            continue
        clashes.setdefault(ep.name, [_source(held)]).append(_source(ep))
    return chosen, clashes


def protocols() -> list[str]:
    """Every protocol name a bench file may use (no descriptor is imported)."""
    return sorted(_entry_points()[0])


def _unknown(name: str) -> ConfigurationError:
    known = protocols()
    if not known:
        return ConfigurationError(
            f"unknown protocol {name!r}: no protocol is registered at all; medtwin's entry "
            "points are missing, reinstall it (pip install medtwin, or pip install -e . in a "
            "checkout)",
            field="protocol",
        )
    return ConfigurationError(
        f"unknown protocol {name!r}; expected one of {', '.join(known)}", field="protocol"
    )


@functools.cache
def descriptor(name: str) -> ProtocolDescriptor:
    """The descriptor of protocol ``name``.

    Raises
    ------
    ConfigurationError
        If no distribution registers ``name``, or the plug-in registering it is broken
        (cannot be imported, is not a descriptor, or names another protocol); the message
        names the distribution.
    """
    chosen, clashes = _entry_points()
    if name in clashes:
        raise ConfigurationError(
            f"protocol {name!r} is registered by both {' and '.join(clashes[name])}; "
            "uninstall one of them",
            field="protocol",
        )
    ep = chosen.get(name)
    if ep is None:
        raise _unknown(name)
    where = f"protocol {name!r} registered by {_source(ep)} ({ep.value})"
    try:
        found = ep.load()
    except Exception as exc:
        raise ConfigurationError(
            f"{where} cannot be loaded: {type(exc).__name__}: {exc}; fix or uninstall that "
            "distribution",
            field="protocol",
        ) from exc
    if not isinstance(found, ProtocolDescriptor):
        raise ConfigurationError(
            f"{where} is a {type(found).__name__}, not a "
            "medtwin.drivers.protocol.ProtocolDescriptor",
            field="protocol",
        )
    if found.name != name:
        raise ConfigurationError(
            f"{where} describes protocol {found.name!r}: the entry point's name and the "
            "descriptor's name must agree",
            field="protocol",
        )
    return dataclasses.replace(found, source=_source(ep))


def distribution(name: str) -> tuple[str, str]:
    """(name, version) of the distribution that registers protocol ``name``."""
    ep = _entry_points()[0].get(name)
    if ep is None:
        raise _unknown(name)
    return _distribution(ep)


def descriptors() -> dict[str, ProtocolDescriptor]:
    """Every registered protocol's descriptor, by name (imports each descriptor module)."""
    return {name: descriptor(name) for name in protocols()}


def _import(target: str, protocol: str, what: str) -> Any:
    module, _, attr = target.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(
            f"the {what} of protocol {protocol!r} ({target}, {descriptor(protocol).source}) "
            f"cannot be imported: {exc}",
            field="protocol",
        ) from exc


def driver_class(protocol: str) -> type[Device]:
    """The driver class for ``protocol`` (imported on first use)."""
    cls = _import(descriptor(protocol).driver, protocol, "driver")
    if not (isinstance(cls, type) and issubclass(cls, Device)):
        raise ConfigurationError(
            f"the driver of protocol {protocol!r} ({descriptor(protocol).driver}) is not a "
            "medtwin.drivers.base.Device",
            field="protocol",
        )
    return cls


def emulator_class(protocol: str) -> type:
    """The emulator class serving ``protocol``; ConfigurationError if it has none."""
    target = descriptor(protocol).emulator
    if target is None:
        raise ConfigurationError(f"no emulator for protocol {protocol!r}", field="protocol")
    cls = _import(target, protocol, "emulator")
    if not isinstance(cls, type):
        raise ConfigurationError(
            f"the emulator of protocol {protocol!r} ({target}) is not a class", field="protocol"
        )
    return cls
