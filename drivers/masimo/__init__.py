"""Masimo pulse oximeters (Radical-7, Rad-8, Root): the ASCII 1 serial output.

:mod:`.codec` is the protocol (bytes ⇄ readings, no I/O; Rad-8 Operator's Manual,
serial interface and trend format) and :mod:`.driver` the :class:`MasimoOximeter` that
reads it over a transport. Both are re-exported here, so
``medtwin.drivers.masimo:MasimoOximeter`` names the driver.
"""

from typing import TYPE_CHECKING

from medtwin.drivers.masimo.codec import *  # noqa: F403 - the codec's __all__ is this package's
from medtwin.drivers.masimo.codec import __all__ as _codec_all

if TYPE_CHECKING:
    from medtwin.drivers.masimo.driver import MasimoOximeter

#: Names of the driver module, imported on first use so that importing the codec (as an
#: emulator does) never loads the driver and its transport.
_DRIVER_NAMES = frozenset({"MasimoOximeter"})

__all__ = [*_codec_all, "MasimoOximeter"]


def __getattr__(name: str) -> object:
    if name in _DRIVER_NAMES:
        from medtwin.drivers.masimo import driver

        return getattr(driver, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
