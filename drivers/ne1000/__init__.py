"""New Era NE-1000 syringe pump (also NE-500/NE-1600/NE-4000, WPI Aladdin).

Two layers, as pymodbus separates framers from clients: :mod:`.codec` is the protocol
(bytes ⇄ messages, no I/O; manual 1200-01 §10.2) and :mod:`.driver` the
:class:`NE1000Pump` that speaks it over a transport. Both are re-exported here, so
``medtwin.drivers.ne1000:NE1000Pump`` names the driver.
"""

from typing import TYPE_CHECKING

from medtwin.drivers.ne1000.codec import *  # noqa: F403 - the codec's __all__ is this package's
from medtwin.drivers.ne1000.codec import __all__ as _codec_all

if TYPE_CHECKING:
    from medtwin.drivers.ne1000.driver import DEFAULT_LIMITS, NE1000Pump

#: Names of the driver module, imported on first use so that importing the codec (as an
#: emulator does) never loads the driver and its transport.
_DRIVER_NAMES = frozenset({"DEFAULT_LIMITS", "NE1000Pump"})

__all__ = [*_codec_all, "DEFAULT_LIMITS", "NE1000Pump"]


def __getattr__(name: str) -> object:
    if name in _DRIVER_NAMES:
        from medtwin.drivers.ne1000 import driver

        return getattr(driver, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
