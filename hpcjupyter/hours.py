"""Walltime as the user types it: ``2``, ``1.5`` (hours), ``1:30``, ``1:30:00``, ``90m``, ``2h``, ``1h30m``."""

from __future__ import annotations

import re

from hpcjupyter.errors import RequestError

_CLOCK = re.compile(r"^(\d+):([0-5]\d)(?::([0-5]\d))?$")
_UNITS = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?:in)?)?$")
HINT = "Give hours (2, 1.5), H:MM (1:30), H:MM:SS (1:30:00), minutes (90m) or hours with a unit (2h, 1h30m)."


def parse_hours(text: str | float | int) -> float:
    """Hours as a float; anything else is one error with the accepted spellings."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text)
    value = str(text).strip().lower()
    try:
        return float(value)
    except ValueError:
        pass
    clock = _CLOCK.match(value)
    if clock:
        hours, minutes, seconds = (int(g or 0) for g in clock.groups())
        return hours + minutes / 60 + seconds / 3600
    units = _UNITS.match(value)
    if value and units and any(units.groups()):
        hours_part, minutes_part = units.groups()
        return float(hours_part or 0) + float(minutes_part or 0) / 60
    raise RequestError(f"--hours {text!r} is not a walltime.", HINT)
