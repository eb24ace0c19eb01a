"""Render a merged profile as TOML, optionally with ``# FILE`` after each value saying who set it.

The output is valid TOML, so a user can copy any part of it into a profile of their own.
"""

from __future__ import annotations

import json
import re
from typing import Any

from hpcjupyter.schema import project_code

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key)


def _value(value: Any) -> str:
    """A TOML value: JSON's strings, numbers and arrays are TOML too; booleans and tables differ."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict):
        value = {k: v for k, v in value.items() if v is not None}
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
            # A table of tables (e.g. job.qos_rules) follows as [key.sub.NAME] tables, after the plain keys.
            nested = {s: v for s, v in value.items() if _is_table_of_tables(v)}
            for sub, subvalue in value.items():
                if sub not in nested:
                    emit(f"{key}.", sub, subvalue)
                if sub == "remote_dir" and isinstance(subvalue, str) and "{project}" in subvalue:
                    lines.append(_project_note(data))
            for sub, tables in nested.items():
                for name, table in tables.items():
                    lines.append(f"\n[{key}.{sub}.{_key(name)}]")
                    for item, itemvalue in table.items():
                        emit(f"{key}.{sub}.{name}.", item, itemvalue)
    return "\n".join(lines) + "\n"


def _is_table_of_tables(value: Any) -> bool:
    return isinstance(value, dict) and bool(value) and all(isinstance(v, dict) for v in value.values())


def _project_note(data: dict[str, Any]) -> str:
    """How the {project} placeholder is filled, as a TOML comment under remote_dir."""
    job = data.get("job", {})
    project, account = job.get("project"), job.get("account")
    if project:
        return f"# {{project}} = {json.dumps(project)}: set by job.project"
    if account:
        derived = project_code(None, account)
        how = "the whole account" if derived == account else "job.account up to its first '-'"
        return f"# {{project}} = {json.dumps(derived)}: {how} ({json.dumps(account)}); set job.project if it differs"
    return "# {project} = job.account up to its first '-' (no account set yet); or set job.project"
