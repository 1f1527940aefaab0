"""Parsing of the quantities users type: durations (``90s``, ``30min``, ``2h``, ``1h30m``).

Shared by the CLI, bench/scenario files and fault specs so that every place accepts the
same spellings and rejects the same mistakes.
"""

from __future__ import annotations

import math
import re

__all__ = ["format_duration", "parse_duration_s"]

_DURATION = re.compile(
    r"^\s*(?:(?P<h>\d+(?:\.\d+)?)\s*h)?\s*(?:(?P<m>\d+(?:\.\d+)?)\s*(?:min|m))?"
    r"\s*(?:(?P<s>\d+(?:\.\d+)?)\s*s)?\s*$"
)


def parse_duration_s(text: str | float | int) -> float:
    """Seconds from ``"90s"``, ``"30min"``, ``"2h"``, ``"1h30m"``, ``"1.5h"`` or a number.

    Raises
    ------
    ValueError
        Naming the text, if it is not a finite, non-negative duration.
    """
    if isinstance(text, bool):
        raise ValueError(f"malformed duration {text!r}: expected e.g. 90s, 30min, 2h, 1h30m")
    if isinstance(text, int | float):
        value = float(text)
    else:
        stripped = text.strip()
        try:
            value = float(stripped)
        except ValueError:
            match = _DURATION.match(stripped)
            if not stripped or match is None or not any(match.groupdict().values()):
                raise ValueError(
                    f"malformed duration {text!r}: expected e.g. 90s, 30min, 2h, 1h30m"
                ) from None
            parts = match.groupdict()
            value = (
                float(parts["h"] or 0) * 3600 + float(parts["m"] or 0) * 60 + float(parts["s"] or 0)
            )
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"malformed duration {text!r}: must be a finite, non-negative time")
    return value


def format_duration(seconds: float) -> str:
    """``5400`` → ``"1h30m"``; fractional seconds are kept (``"0.5s"``)."""
    if seconds < 0 or not math.isfinite(seconds):
        return f"{seconds}s"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    out = ""
    if hours:
        out += f"{int(hours)}h"
    if minutes:
        out += f"{int(minutes)}m"
    if secs or not out:
        out += f"{secs:g}s"
    return out
