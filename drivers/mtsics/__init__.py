"""Mettler Toledo MT-SICS balances.

Two layers, as pymodbus separates framers from clients: :mod:`.codec` is the protocol
(bytes ⇄ messages, no I/O; MT-SICS reference manuals 11780711 and 11780447) and
:mod:`.driver` the :class:`MTSICSBalance` that speaks it over a transport. Both are
re-exported here, so ``medtwin.drivers.mtsics:MTSICSBalance`` names the driver.
"""

from typing import TYPE_CHECKING

from medtwin.drivers.mtsics.codec import *  # noqa: F403 - the codec's __all__ is this package's
from medtwin.drivers.mtsics.codec import __all__ as _codec_all

if TYPE_CHECKING:
    from medtwin.drivers.mtsics.driver import BalanceStream, MTSICSBalance

#: Names of the driver module, imported on first use so that importing the codec (as an
#: emulator does) never loads the driver and its transport.
_DRIVER_NAMES = frozenset({"BalanceStream", "MTSICSBalance"})

__all__ = [*_codec_all, "BalanceStream", "MTSICSBalance"]


def __getattr__(name: str) -> object:
    if name in _DRIVER_NAMES:
        from medtwin.drivers.mtsics import driver

        return getattr(driver, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
