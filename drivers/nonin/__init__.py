"""Nonin pulse oximeters: serial data formats #2, #7 and #8 and the format-switch command.

:mod:`.codec` is the protocol (bytes ⇄ values, no I/O; Nonin 9560 OEM specification),
re-exported here. The driver and the emulator build on it.
"""

from medtwin.drivers.nonin.codec import *  # noqa: F403 - the codec's __all__ is this package's
from medtwin.drivers.nonin.codec import __all__ as _codec_all

__all__ = [*_codec_all]
