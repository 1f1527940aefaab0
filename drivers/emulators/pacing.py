"""Wire-time pacing: how long bytes occupy a serial line at its configured speed.

A pty or a socket moves bytes at once; a serial line does not. An emulator that paces
holds every reply back so that its last byte reaches the client when it would on the
wire: ``bits_per_char / baud`` seconds per character, where ``bits_per_char`` counts the
start bit, the data bits, the parity bit if any and the stop bits (10 for 8N1, 11 for
8E1, the Modbus serial line default). Modbus RTU adds the silence t3.5 that ends a frame
before and after every reply (3.5 character times, fixed at 1.75 ms above 19200 baud:
MODBUS over Serial Line V1.02, §2.5.1.1). The server
(:mod:`medtwin.drivers.emulators.server`) computes each reply's wire time once, sleeps once
(:func:`sleep_until`) and writes the whole reply; it never sleeps per byte.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from medtwin.drivers.modbus.codec import t35_s

__all__ = ["TIMER_SLACK_S", "Pacing", "sleep_until"]

#: asyncio's epoll timers wake up to 1 ms late (the timeout is rounded up to whole
#: milliseconds); paced writes sleep until this much before their deadline and yield
#: to the loop for the rest, so a reply's last byte leaves on time rather than ~0.5 ms
#: late on average (a 4 % error on a 12.5 ms exchange at 19200 baud).
TIMER_SLACK_S = 1.1e-3


@dataclass(frozen=True)
class Pacing:
    """Wire-time pacing: each byte takes ``bits_per_char / baud`` seconds; Modbus RTU adds
    a 3.5-character silence between frames (1.75 ms above 19200 baud, per the spec).

    Parameters
    ----------
    baud : int
        Line speed in bit/s.
    bits_per_char : int
        Bits on the wire per byte: start + data + parity + stop (10 for 8N1, 11 for 8E1).
    interframe_chars : float
        Silence after each frame, in character times (0 by default; a framing that ends
        frames by silence, Modbus RTU, uses 3.5 unless this says otherwise).
    """

    baud: int
    bits_per_char: int = 10
    interframe_chars: float = 0.0

    def __post_init__(self) -> None:
        if self.baud <= 0 or self.bits_per_char <= 0 or self.interframe_chars < 0:
            raise ValueError(
                f"invalid pacing baud={self.baud}, bits_per_char={self.bits_per_char}, "
                f"interframe_chars={self.interframe_chars}: baud and bits must be > 0"
            )

    def byte_time_s(self) -> float:
        return self.bits_per_char / self.baud

    def wire_time_s(self, n_bytes: int) -> float:
        """Seconds that ``n_bytes`` occupy the line."""
        return n_bytes * self.byte_time_s()

    def interframe_s(self) -> float:
        """Silence after a frame (s). Modbus fixes t3.5 at 1.75 ms above 19200 baud."""
        if self.interframe_chars <= 0:
            return 0.0
        if self.baud > 19200:
            return 1.75e-3 * self.interframe_chars / 3.5
        return self.interframe_chars * self.byte_time_s()

    def frame_gap_s(self, silence_chars: float | None) -> float:
        """The silence around a reply for a framing that ends frames after
        ``silence_chars`` quiet character times (None: :meth:`interframe_s`)."""
        if silence_chars is None:
            return self.interframe_s()
        return t35_s(self.baud, self.bits_per_char, self.interframe_chars or silence_chars)


async def sleep_until(deadline: float) -> None:
    """Sleep until ``time.monotonic()`` reaches ``deadline``, to well under 1 ms."""
    delay = deadline - time.monotonic()
    if delay > TIMER_SLACK_S:
        await asyncio.sleep(delay - TIMER_SLACK_S)
    # Yield-spin for the last ~1 ms: no event marks a deadline finer than the timer.
    while time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0)
