"""The commented starter profile that ``sites init`` writes.

Every key and its explanation are read off the schema (field descriptions, choices, defaults,
and which keys are required), so the starter cannot drift from what the loader accepts.
"""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from hpcjupyter import paths
from hpcjupyter.errors import ProfileError
from hpcjupyter.schema import Choices, Profile, semantic_problems
from hpcjupyter.showprofile import _value as toml_value

# Set by the loader (from the file name) or by `init` itself, never by the user in the body.
_NOT_LISTED = ("name", "extends")


def required_keys() -> list[str]:
    """Dotted keys a profile must set: those without a default, and those whose default is empty.

    Found by validating the smallest profile and asking which keys the cross-key rules miss.
    """
    keys = [k for k, f in Profile.model_fields.items() if f.is_required() and k not in _NOT_LISTED]
    smallest = Profile.model_validate({"name": "starter", "scheduler": "slurm"})
    return keys + [key for key, _ in semantic_problems(smallest)]


def _sample(annotation: Any) -> Any:
    """A placeholder of the key's type, for keys whose default is "not set"."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, typing.Annotated):
        return _sample(next(a for a in typing.get_args(annotation) if a is not type(None)))
    return {int: 0, float: 0.0, bool: False}.get(annotation, "")


def _explain(field: Any, required: bool) -> str:
    """One comment line: the description, the allowed values, and whether the key is required."""
    parts = [field.description or ""]
    choices = next((m for m in field.metadata if isinstance(m, Choices)), None)
    if typing.get_origin(field.annotation) is typing.Literal:
        parts.append("one of: " + ", ".join(map(str, typing.get_args(field.annotation))))
    elif choices is not None:
        parts.append("one of: " + ", ".join(choices.names()))
    if required:
        parts.append("REQUIRED")
    return "# " + "; ".join(p for p in parts if p) if any(parts) else ""


def _section(field: Any) -> type[BaseModel] | None:
    """The model of a ``[table]`` field (ssh, job, env), else None."""
    model = field.annotation
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _key_lines(model: type[BaseModel], prefix: str, shown: dict[str, Any] | None, required: list[str]) -> list[str]:
    """Each key's explanation and its line: commented, except a required key with nothing to inherit."""
    lines = []
    for key, field in model.model_fields.items():
        if key in _NOT_LISTED or _section(field):
            continue
        dotted = prefix + key
        must = dotted in required and shown is None
        value = shown.get(key) if shown is not None else field.get_default(call_default_factory=True)
        if value is None or value is PydanticUndefined or must:
            value = _sample(field.annotation)
        comment = _explain(field, dotted in required)
        text = f"{key} = {toml_value(value)}"
        lines += ([comment] if comment else []) + [text if must else "# " + text]
    return lines


def starter_text(name: str, shown: dict[str, Any] | None = None, extends: str | None = None) -> str:
    """The whole starter file.

    ``shown`` is the merged profile to show as commented values (the one extended, or the
    existing profile this file layers over); without it, required keys are left to fill in.
    """
    required = required_keys()
    head = [f"# Site profile '{name}', written by 'hpcjupyter sites init'. A line starting with # is not read."]
    if extends:
        head.append(f"# It extends '{extends}': every key left commented keeps {extends}'s value (shown).")
    elif shown is not None:
        head.append(f"# It is layered over the existing profile '{name}': commented keys keep the values shown.")
    else:
        head.append("# Fill in the keys marked REQUIRED; uncomment any other key to change its default.")
    head += [
        "# Personal values (ssh.user, job.account) belong in your config.toml instead:",
        f"#   [sites.{name}]",
        '#   ssh.user = "you"',
        '#   job.account = "CODE"',
        f"# Then: hpcjupyter sites check {name}   and   hpcjupyter doctor --site {name}",
        "",
    ]
    body = [f"extends = {toml_value(extends)}"] if extends else []
    body += _key_lines(Profile, "", shown, required)
    for section, field in Profile.model_fields.items():
        model = _section(field)
        if model is not None:
            doc = (model.__doc__ or "").strip().splitlines()[0]
            body += ["", f"[{section}]", f"# {doc}"]
            body += _key_lines(model, section + ".", shown.get(section, {}) if shown else None, required)
    return "\n".join(head + body) + "\n"


def write_starter(name: str, base: str | None = None, force: bool = False) -> Path:
    """Write ``<user profiles dir>/NAME.toml``; refuse to overwrite unless ``force``."""
    from hpcjupyter.profiles import ProfileSet
    from hpcjupyter.sharing import NAME

    if not NAME.match(name):
        raise ProfileError(f"{name!r} cannot name a site: use letters, digits and _ . - only.")
    if base == name:
        raise ProfileError(
            f"a profile cannot extend itself ('{name}').",
            f"Files named {name}.toml are layered over each other already: leave out --from.",
        )
    target = paths.user_profiles_dir() / f"{name}.toml"
    if target.exists() and not force:
        raise ProfileError(f"{target} exists already.", "Edit it, or give --force to replace it with a starter.")
    found = ProfileSet.discover()
    # With no --from, a name that exists elsewhere is layered over, never blanked out.
    layered = base is None and any(f != target for f in found.files_for(name))
    shown_site = base or (name if layered else None)
    shown = found.load(shown_site, personal=False)[0].shown() if shown_site else None
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(starter_text(name, shown, base), encoding="utf-8")
    return target
