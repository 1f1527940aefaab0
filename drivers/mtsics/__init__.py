"""Mettler Toledo MT-SICS balances.

Two layers, as pymodbus separates framers from clients: :mod:`.codec` is the protocol
(bytes ⇄ messages, no I/O; MT-SICS reference manuals 11780711 and 11780447) and
:mod:`.driver` the :class:`MTSICSBalance` that speaks it over a transport. Both are
re-exported here, so ``medtwin.drivers.mtsics:MTSICSBalance`` names the driver.
"""

from medtwin.drivers.mtsics.codec import *  # noqa: F403 - the codec's __all__ is this package's
from medtwin.drivers.mtsics.codec import __all__ as _codec_all
from medtwin.drivers.mtsics.driver import BalanceStream, MTSICSBalance

__all__ = [*_codec_all, "BalanceStream", "MTSICSBalance"]
