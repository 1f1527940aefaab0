"""Fluke Biomedical ProSim 8 vital-signs simulator: its remote-control protocol.

:mod:`.codec` is the protocol (bytes ⇄ messages, no I/O; command table, ``OK``/``ERR=nn``
replies, line framer), re-exported here; :mod:`.driver` the :class:`ProSim8Simulator` that
speaks it over a transport (``medtwin.drivers.prosim8:ProSim8Simulator``). The simulator
is a device kind of its own: it sets the patient the monitors on the bench see.
"""

from typing import TYPE_CHECKING

from medtwin.drivers.prosim8.codec import *  # noqa: F403 - the codec's __all__ is this package's
from medtwin.drivers.prosim8.codec import __all__ as _codec_all

if TYPE_CHECKING:
    from medtwin.drivers.prosim8.driver import ProSim8Simulator

#: Names of the driver module, imported on first use so that importing the codec (as the
#: emulator does) never loads the driver and its transport.
_DRIVER_NAMES = frozenset({"ProSim8Simulator"})

__all__ = [*_codec_all, "ProSim8Simulator"]


def __getattr__(name: str) -> object:
    if name in _DRIVER_NAMES:
        from medtwin.drivers.prosim8 import driver

        return getattr(driver, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
