"""Render a merged profile as TOML-like text, optionally with the file behind each value."""

from __future__ import annotations

import json
from typing import Any


def _value(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, bool) else str(value).lower()


def format_profile(data: dict[str, Any], origins: dict[str, str] | None) -> str:
    """Top-level keys first, then one [table] per section; ``# from FILE`` when origins are given."""
    lines: list[str] = []

    def emit(prefix: str, key: str, value: Any) -> None:
        if value is None:
            return
        line = f"{key} = {_value(value)}"
        source = (origins or {}).get(prefix + key)
        if source is None and origins is not None and isinstance(value, dict):
            source = next((v for k, v in origins.items() if k.startswith(prefix + key + ".")), None)
        lines.append(f"{line:<60} # {source or 'default'}" if origins is not None else line)

    for key, value in data.items():
        if not isinstance(value, dict):
            emit("", key, value)
    for key, value in data.items():
        if isinstance(value, dict):
            lines.append(f"\n[{key}]")
            for sub, subvalue in value.items():
                emit(f"{key}.", sub, subvalue)
    return "\n".join(lines) + "\n"
