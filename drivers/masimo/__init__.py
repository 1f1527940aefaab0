"""Masimo pulse oximeters (Radical-7, Rad-8, Root): the ASCII 1 serial output.

:mod:`.codec` is the protocol (bytes ⇄ readings, no I/O; Rad-8 Operator's Manual,
serial interface and trend format), re-exported here. The driver and the emulator build
on it.
"""

from medtwin.drivers.masimo.codec import *  # noqa: F403 - the codec's __all__ is this package's
from medtwin.drivers.masimo.codec import __all__ as _codec_all

__all__ = [*_codec_all]
