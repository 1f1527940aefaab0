"""Fluke Biomedical ProSim 8 vital-signs simulator: its remote-control protocol.

:mod:`.codec` is the protocol (bytes ⇄ messages, no I/O; command table, ``OK``/``ERR=nn``
replies, line framer), re-exported here. The simulator is a device kind of its own: it
sets the patient the monitors on the bench see.
"""

from medtwin.drivers.prosim8.codec import *  # noqa: F403 - the codec's __all__ is this package's
from medtwin.drivers.prosim8.codec import __all__ as _codec_all

__all__ = list(_codec_all)
