"""Nonin pulse oximeters: serial data formats #2, #7 and #8 and the format-switch command.

:mod:`.codec` is the protocol (bytes ⇄ values, no I/O; Nonin 9560 OEM specification) and
:mod:`.driver` the :class:`NoninOximeter` that reads it over a transport. Both are
re-exported here, so ``medtwin.drivers.nonin:Nonin2Oximeter`` names a driver.
"""

from typing import TYPE_CHECKING

from medtwin.drivers.nonin.codec import *  # noqa: F403 - the codec's __all__ is this package's
from medtwin.drivers.nonin.codec import __all__ as _codec_all

if TYPE_CHECKING:
    from medtwin.drivers.nonin.driver import (
        Nonin2Oximeter,
        Nonin7Oximeter,
        Nonin8Oximeter,
        NoninOximeter,
    )

#: Names of the driver module, imported on first use so that importing the codec (as an
#: emulator does) never loads the driver and its transport.
_DRIVER_NAMES = frozenset({"Nonin2Oximeter", "Nonin7Oximeter", "Nonin8Oximeter", "NoninOximeter"})

__all__ = [*_codec_all, "Nonin2Oximeter", "Nonin7Oximeter", "Nonin8Oximeter", "NoninOximeter"]


def __getattr__(name: str) -> object:
    if name in _DRIVER_NAMES:
        from medtwin.drivers.nonin import driver

        return getattr(driver, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
