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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from pydantic import BaseModel, ValidationError

from hpcjupyter import paths
from hpcjupyter.errors import ProfileError
from hpcjupyter.schema import Profile, UserConfig

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
        if isinstance(value, dict) and isinstance(base.get(key), dict) and key != "variables":
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
    if isinstance(value, dict) and value and not dotted.endswith("variables"):
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
    def discover(cls) -> "ProfileSet":
        config_path = paths.config_file()
        config = load_user_config(config_path)
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
        return found

    def names(self) -> list[str]:
        """Every site name defined anywhere on the search path, sorted."""
        found = {p.stem for d in self.dirs if d.is_dir() for p in d.glob("*.toml")}
        return sorted(found)

    def files_for(self, name: str) -> list[Path]:
        """The files defining ``name``, lowest precedence first."""
        return [d / f"{name}.toml" for d in self.dirs if (d / f"{name}.toml").is_file()]

    def load(self, name: str, personal: bool = True) -> tuple[Profile, Origins]:
        """The merged, validated profile ``name`` and the origin of each of its values."""
        raw, origins = self._raw(name, [])
        if personal and name in self.config.sites:
            merge(raw, self.config.sites[name], f"{self.config_path} [sites.{name}]", origins)
        raw["name"] = name
        origins["name"] = origins.get("name", "site name")
        return validate(raw, origins), origins

    def _raw(self, name: str, chain: list[str]) -> tuple[dict[str, Any], Origins]:
        if name in chain:
            cycle = " -> ".join(chain + [name])
            raise ProfileError(
                f"{self.files_for(chain[-1])[-1]}: key 'extends': profiles extend each other in a cycle: {cycle}.",
                "Remove 'extends' from one of them.",
            )
        files = self.files_for(name)
        if not files:
            raise unknown_site(name, self.names(), chain and self.files_for(chain[-1])[-1])
        layers = [(f, read_toml(f)) for f in files]
        base_name = next((data["extends"] for _, data in reversed(layers) if "extends" in data), None)
        raw: dict[str, Any] = {}
        origins: Origins = {}
        if base_name is not None:
            if not isinstance(base_name, str):
                raise ProfileError(f"{files[-1]}: key 'extends' must be a site name in quotes.")
            raw, origins = self._raw(base_name, chain + [name])
            raw.pop("description", None)
        for path, data in layers:
            merge(raw, data, str(path), origins)
        return raw, origins


def unknown_site(name: str, known: Iterable[str], referrer: Any = None) -> ProfileError:
    """The error for a site that no profile defines, listing the ones that exist."""
    known = list(known)
    close = difflib.get_close_matches(name, known, n=1)
    where = f"{referrer}: key 'extends': " if referrer else ""
    hint = f"Did you mean '{close[0]}'? " if close else ""
    return ProfileError(
        f"{where}no site profile named '{name}'. Known sites: {', '.join(known) or '(none)'}.",
        hint + "Run 'hpcjupyter sites list' to see them, or 'hpcjupyter sites init NAME' to write one.",
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
        raise _explain(exc, UserConfig, {k.lstrip("."): v for k, v in origins.items()}, str(path)) from None


def validate(raw: dict[str, Any], origins: Origins) -> Profile:
    """Validate merged data; an error names the file that set the bad key."""
    try:
        profile = Profile.model_validate(raw)
    except ValidationError as exc:
        raise _explain(exc, Profile, origins, origins.get("scheduler", "profile")) from None
    problems = semantic_problems(profile)
    if problems:
        lines = [f"{origins.get(key) or _nearest_origin(origins, key) or 'profile'}: {text}" for key, text in problems]
        raise ProfileError("\n".join(lines), "Fix the profile, then check it with 'hpcjupyter sites check'.")
    return profile


_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
PLACEHOLDERS = ("user", "account", "state_dir")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def semantic_problems(profile: Profile) -> list[tuple[str, str]]:
    """Rules that span keys, as (dotted key, what is wrong and how to fix it)."""
    problems: list[tuple[str, str]] = []
    remote = profile.scheduler != "local" and profile.ssh.transport != "local"
    if remote and not profile.ssh.host:
        problems.append(("ssh.host", "required key 'ssh.host' is missing; set the login node's host name."))
    remote_dir = profile.env.remote_dir
    if not remote_dir:
        problems.append(("env.remote_dir", "required key 'env.remote_dir' is missing; set a directory the compute nodes see."))
    for name in _PLACEHOLDER.findall(remote_dir):
        if name not in PLACEHOLDERS:
            problems.append(("env.remote_dir", f"key 'env.remote_dir': unknown placeholder '{{{name}}}'; use one of {', '.join('{' + p + '}' for p in PLACEHOLDERS)}."))
    if remote_dir and not (remote_dir.startswith("/") or remote_dir.startswith("{state_dir}")):
        problems.append(("env.remote_dir", f"key 'env.remote_dir' must be an absolute path (got {remote_dir!r})."))
    for var in profile.env.variables:
        if not _IDENTIFIER.match(var):
            problems.append((f"env.variables.{var}", f"key 'env.variables.{var}': not a valid environment variable name."))
    if profile.env.conda_env and not profile.env.conda:
        problems.append(("env.conda_env", "key 'env.conda_env' needs 'env.conda', the conda install prefix (e.g. ~/miniforge3 spelled out in full)."))
    return problems


def _explain(exc: ValidationError, model: type[BaseModel], origins: Origins, fallback: str) -> ProfileError:
    """Turn pydantic's first error into one sentence: file, key, problem, fix."""
    lines = []
    for err in exc.errors():
        loc = [str(part) for part in err["loc"]]
        dotted = ".".join(loc)
        source = origins.get(dotted) or _nearest_origin(origins, dotted) or fallback
        if err["type"] == "extra_forbidden":
            hint = _did_you_mean(model, loc)
            lines.append(f"{source}: unknown key '{dotted}'.{hint}")
        elif err["type"] == "missing":
            lines.append(f"{source}: required key '{dotted}' is missing; add it to the profile.")
        else:
            got = repr(err.get("input"))
            lines.append(f"{source}: key '{dotted}': {err['msg'].lower()} (got {got}).")
    return ProfileError("\n".join(lines), "Fix the profile, then check it with 'hpcjupyter sites check'.")


def _nearest_origin(origins: Origins, dotted: str) -> str | None:
    parts = dotted.split(".")
    while parts:
        parts.pop()
        prefix = ".".join(parts)
        hits = [v for k, v in origins.items() if k.startswith(prefix + ".")] if prefix else []
        if hits:
            return hits[-1]
    return None


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
