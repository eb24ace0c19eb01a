"""Load, layer and validate site profiles, remembering which file set each value.

Layers, lowest first: built-in ``site-profiles/``, each directory of ``HPCJUPYTER_PROFILE_PATH``
and of the user config's ``profile_path``, the user's own profile directory, then the user
config's ``[sites.NAME]`` table. A profile's ``extends`` puts another profile beneath it.
"""

from __future__ import annotations

import difflib
import os
import re
import stat
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from hpcjupyter import paths
from hpcjupyter.errors import ProfileError
from hpcjupyter.schema import Profile, UserConfig, semantic_problems

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

Origins = dict[str, str]


def read_toml(path: Path) -> dict[str, Any]:
    """Parse one TOML file; a syntax error names the file, line and column."""
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(
            f"{path}: not valid TOML: {exc}.",
            "Fix the syntax at that line (strings need quotes, tables are [name]).",
        ) from None
    except OSError as exc:
        raise ProfileError(f"{path}: cannot be read: {exc.strerror}.") from None


def merge(base: dict[str, Any], top: dict[str, Any], source: str, origins: Origins, prefix: str = "") -> None:
    """Merge ``top`` into ``base`` key by key (tables recursively), recording ``source`` per key."""
    for key, value in top.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value, source, origins, dotted + ".")
            continue
        base[key] = _copy(value)
        for old in [k for k in origins if k.startswith(dotted + ".")]:
            del origins[old]
        _record(value, source, origins, dotted)


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    return list(value) if isinstance(value, list) else value


def _record(value: Any, source: str, origins: Origins, dotted: str) -> None:
    if isinstance(value, dict) and value:
        for key, sub in value.items():
            _record(sub, source, origins, f"{dotted}.{key}")
    else:
        origins[dotted] = source


def _writable_by_others(path: Path) -> bool:
    try:
        return bool(path.stat().st_mode & (stat.S_IWGRP | stat.S_IWOTH))
    except OSError:
        return False


@dataclass
class ProfileSet:
    """Every profile directory and the user config, as found on this machine."""

    dirs: list[Path]
    config: UserConfig
    config_path: Path
    warnings: list[str] = field(default_factory=list)

    @classmethod
    def discover(cls) -> ProfileSet:
        config_path = paths.config_file()
        return cls.discover_with(load_user_config(config_path), config_path)

    @classmethod
    def discover_with(cls, config: UserConfig, config_path: Path) -> ProfileSet:
        """The profile directories for ``config`` (read from ``config_path``), with warnings."""
        dirs = [paths.builtin_profiles_dir()]
        env_path = os.environ.get("HPCJUPYTER_PROFILE_PATH", "")
        dirs += [Path(p).expanduser() for p in env_path.split(os.pathsep) if p]
        dirs += [Path(p).expanduser() for p in config.profile_path]
        dirs.append(paths.user_profiles_dir())
        found = cls(dirs=dirs, config=config, config_path=config_path)
        for directory in dirs[1:]:
            if directory.is_dir() and _writable_by_others(directory):
                found.warnings.append(
                    f"warning: profile directory {directory} is writable by group or others; "
                    "anyone who can write there can change where your jobs run (chmod go-w)."
                )
        found.warnings += [f"warning: {text}" for text in found.config_problems()]
        return found

    def config_problems(self) -> list[str]:
        """Personal tables (and default_site) in the config naming no known site: likely typos."""
        known = self.names()
        problems = []
        for name in self.config.sites:
            if name not in known:
                close = difflib.get_close_matches(name, known, n=1)
                problems.append(
                    f"{self.config_path}: [sites.{name}]: no site '{name}'"
                    + (f"; did you mean '{close[0]}'?" if close else f" (known sites: {', '.join(known)}).")
                )
        chosen = self.config.default_site
        if chosen and chosen not in known:
            close = difflib.get_close_matches(chosen, known, n=1)
            problems.append(
                f"{self.config_path}: default_site: no site '{chosen}'"
                + (f"; did you mean '{close[0]}'?" if close else f" (known sites: {', '.join(known)}).")
            )
        return problems

    def layer_label(self, source: str) -> str:
        """Where a value came from, in words: built-in, group NAME, personal, config, default."""
        if source in ("default", "site name"):
            return source
        if source.startswith(str(self.config_path)):
            return "config"
        path = Path(source)
        if path.parent == paths.builtin_profiles_dir():
            return "built-in"
        if path.parent == paths.user_profiles_dir():
            return "personal"
        return f"group {path.parent.name}"

    def names(self) -> list[str]:
        """Every site name defined anywhere on the search path, sorted."""
        found = {p.stem for d in self.dirs if d.is_dir() for p in d.glob("*.toml")}
        return sorted(found)

    def files_for(self, name: str) -> list[Path]:
        """The files defining ``name``, lowest precedence first."""
        return [d / f"{name}.toml" for d in self.dirs if (d / f"{name}.toml").is_file()]

    def load(self, name: str, personal: bool = True) -> tuple[Profile, Origins]:
        """The merged, validated profile ``name`` and the origin of each of its values.

        Origins map dotted keys to the file that set them, or "default" for schema defaults.
        """
        raw, origins = self._raw(name)
        if personal and name in self.config.sites:
            table = f"{self.config_path} [sites.{name}]"
            for key in ("name", "extends"):
                if key in self.config.sites[name]:
                    raise ProfileError(
                        f"{table}: key '{key}' cannot be set in the user config.",
                        f"Write a profile file instead, e.g. {paths.user_profiles_dir() / (name + '.toml')}.",
                    )
            merge(raw, self.config.sites[name], table, origins)
        raw["name"] = name
        origins["name"] = "site name"  # always the file's name, whatever a file says
        profile = validate(raw, origins, str(self.files_for(name)[-1]))
        _fill_defaults(profile, origins)
        return profile, origins

    def _raw(
        self, name: str, chain: tuple[str, ...] = (), referrer: Path | None = None
    ) -> tuple[dict[str, Any], Origins]:
        """Layer every file of ``name`` over the profile it extends; ``chain`` detects cycles."""
        known = self.names()
        if name not in known:
            raise unknown_site(name, known, referrer)
        files = self.files_for(name)
        layers = [(f, read_toml(f)) for f in files]
        raw: dict[str, Any] = {}
        origins: Origins = {}
        extending = next(((f, data["extends"]) for f, data in reversed(layers) if "extends" in data), None)
        if extending is not None:
            source, base = extending
            if not isinstance(base, str):
                raise ProfileError(f"{source}: key 'extends' must be a site name in quotes (got {base!r}).")
            if base == name:
                raise ProfileError(
                    f"{source}: key 'extends': profile '{name}' extends itself.",
                    f"Files named {name}.toml are layered on each other already, lowest first "
                    f"({', '.join(map(str, files))}): remove 'extends'.",
                )
            if base in chain + (name,):
                cycle = " -> ".join(chain + (name, base))
                raise ProfileError(
                    f"{source}: key 'extends': profiles extend each other in a cycle: {cycle}.",
                    "Remove 'extends' from one of them.",
                )
            raw, origins = self._raw(base, chain + (name,), source)
            # A derived site describes itself; the base's description would mislabel it.
            raw.pop("description", None)
            origins.pop("description", None)
        for path, data in layers:
            merge(raw, data, str(path), origins)
        return raw, origins


def _fill_defaults(model: BaseModel, origins: Origins, prefix: str = "") -> None:
    """Mark every value that no file set as coming from the schema's "default"."""
    for key in type(model).model_fields:
        dotted = prefix + key
        value = getattr(model, key)
        if isinstance(value, BaseModel):
            _fill_defaults(value, origins, dotted + ".")
        elif not any(k == dotted or k.startswith(dotted + ".") for k in origins):
            origins[dotted] = "default"


def unknown_site(name: str, known: Iterable[str], referrer: Any = None) -> ProfileError:
    """The error for a site that no profile defines, listing the ones that exist."""
    known = list(known)
    close = difflib.get_close_matches(name, known, n=1)
    where = f"{referrer}: key 'extends': " if referrer else ""
    hint = f"Did you mean '{close[0]}'? " if close else ""
    return ProfileError(
        f"{where}no site profile named '{name}'. Known sites: {', '.join(known) or '(none)'}.",
        hint + "Run 'hpcjupyter sites list' to see them ('sites list --json' shows their files).",
    )


def load_user_config(path: Path) -> UserConfig:
    """The user config, or an empty one if the file does not exist."""
    if not path.is_file():
        return UserConfig()
    data = read_toml(path)
    origins: Origins = {}
    _record(data, str(path), origins, "")
    try:
        return UserConfig.model_validate(data)
    except ValidationError as exc:
        raise _explain(exc, UserConfig, {k.lstrip("."): v for k, v in origins.items()}, str(path), "config") from None


def validate(raw: dict[str, Any], origins: Origins, fallback: str = "profile") -> Profile:
    """Validate merged data; an error names the file that set the bad key (else ``fallback``)."""
    try:
        profile = Profile.model_validate(raw)
    except ValidationError as exc:
        error = _explain(exc, Profile, origins, fallback)
        # Report every problem at once: the rules that span keys too, on the profile without the bad keys.
        bad = {tuple(str(p) for p in err["loc"]) for err in exc.errors()}
        try:
            # a scheduler stands in for a bad one, so the rules for a remote site still run
            rest = semantic_problems(Profile.model_validate({"scheduler": "slurm", **_without(raw, bad)}))
        except ValidationError:
            rest = []
        reported = {".".join(b) for b in bad}
        more = [_problem_line(origins, k, t, fallback) for k, t in rest if k not in reported]
        raise ProfileError("\n".join([error.message, *more]), error.hint) from None
    problems = semantic_problems(profile)
    if problems:
        lines = [_problem_line(origins, key, text, fallback) for key, text in problems]
        raise ProfileError("\n".join(lines), "Fix the profile, then check it with 'hpcjupyter sites check'.")
    return profile


def _problem_line(origins: Origins, key: str, text: str, fallback: str) -> str:
    """One rule's problem, naming the file; a required key that is there but empty is called empty."""
    if text.startswith(f"required key '{key}' is missing") and key in origins:
        text = f"key '{key}' is empty" + text.split("is missing", 1)[1]
    return f"{_source(origins, key, fallback)}: {text}"


def _without(raw: dict[str, Any], locs: set[tuple[str, ...]]) -> dict[str, Any]:
    """``raw`` without the keys at ``locs`` (so the rest can be validated on its own)."""
    copy = _copy(raw)
    for loc in locs:
        node = copy
        for part in loc[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
            if node is None:
                break
        if isinstance(node, dict) and loc:
            node.pop(loc[-1], None)
    return copy


def _explain(
    exc: ValidationError, model: type[BaseModel], origins: Origins, fallback: str, what: str = "profile"
) -> ProfileError:
    """Turn pydantic's errors into one sentence each: file, key, problem, fix."""
    lines = []
    for err in exc.errors():
        loc = [str(part) for part in err["loc"]]
        dotted = ".".join(loc)
        source = _source(origins, dotted, fallback)
        if err["type"] == "extra_forbidden":
            lines.append(f"{source}: unknown key '{dotted}'.{_did_you_mean(model, loc)}")
        elif err["type"] == "missing":
            lines.append(f"{source}: required key '{dotted}' is missing; add it to the profile.")
        else:
            if err["type"] == "value_error":  # our own validators: the message shows the value
                problem = err["msg"].removeprefix("Value error, ")
            else:
                problem = f"{err['msg'][:1].lower()}{err['msg'][1:]} (got {err.get('input')!r})"
            lines.append(f"{source}: key '{dotted}': {problem}.{_closest_choice(err)}")
    return ProfileError("\n".join(lines), f"Fix the {what}, then check it with 'hpcjupyter sites check'.")


def _source(origins: Origins, dotted: str, fallback: str) -> str:
    """The file that set ``dotted``, else the file that set its nearest neighbour, else ``fallback``."""
    if dotted in origins:
        return origins[dotted]
    parts = dotted.split(".")
    while len(parts) > 1:
        parts.pop()
        prefix = ".".join(parts) + "."
        hits = [v for k, v in origins.items() if k.startswith(prefix)]
        if hits:
            return hits[-1]
    return fallback


def _closest_choice(err: Any) -> str:
    """For a value outside a fixed set ('slrum'), the choice it was probably meant to be."""
    if err["type"] != "literal_error" or not isinstance(err.get("input"), str):
        return ""
    choices = re.findall(r"'([^']*)'", err.get("ctx", {}).get("expected", ""))
    close = difflib.get_close_matches(err["input"], choices, n=1, cutoff=0.5)
    return f" Did you mean '{close[0]}'?" if close else ""


def _did_you_mean(model: type[BaseModel], loc: list[str]) -> str:
    """Suggest the closest field name at the same level of the schema."""
    current: Any = model
    for part in loc[:-1]:
        fields = getattr(current, "model_fields", {})
        if part not in fields:
            return ""
        current = fields[part].annotation
    names = list(getattr(current, "model_fields", {}))
    close = difflib.get_close_matches(loc[-1], names, n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else f" Known keys here: {', '.join(names)}."
