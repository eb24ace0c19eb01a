"""Render a merged profile as TOML, optionally with ``# FILE`` after each value saying who set it.

The output is valid TOML, so a user can copy any part of it into a profile of their own.
"""

from __future__ import annotations

import json
import re
from typing import Any

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key)


def _value(value: Any) -> str:
    """A TOML value: JSON's strings, numbers and arrays are TOML too; booleans and tables differ."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }" if value else "{}"
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return json.dumps(value)


def format_profile(data: dict[str, Any], origins: dict[str, str] | None) -> str:
    """Top-level keys first, then one [table] per section; ``# FILE`` when origins are given."""
    lines: list[str] = []

    def emit(prefix: str, key: str, value: Any) -> None:
        if value is None:
            return
        line = f"{_key(key)} = {_value(value)}"
        if origins is None:
            lines.append(line)
            return
        # A table's keys may come from several files (tables merge key by key): name them all.
        sources = (
            [origins[prefix + key]]
            if prefix + key in origins
            else list(dict.fromkeys(v for k, v in origins.items() if k.startswith(prefix + key + ".")))
        )
        lines.append(f"{line:<60} # {', '.join(sources) or 'default'}")

    for key, value in data.items():
        if not isinstance(value, dict):
            emit("", key, value)
    for key, value in data.items():
        if isinstance(value, dict):
            lines.append(f"\n[{key}]")
            for sub, subvalue in value.items():
                emit(f"{key}.", sub, subvalue)
    return "\n".join(lines) + "\n"
