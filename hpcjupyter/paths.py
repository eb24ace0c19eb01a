"""Where hpcjupyter keeps things: user config, session records, sockets, and its own data files."""

from __future__ import annotations

import os
from pathlib import Path

APP = "hpcjupyter"
_PACKAGE_DIR = Path(__file__).resolve().parent


def _data_dir(name: str) -> Path:
    """A data directory shipped in the wheel (inside the package) or, in a source tree, beside it."""
    inside = _PACKAGE_DIR / name
    return inside if inside.is_dir() else _PACKAGE_DIR.parent / name


def templates_dir() -> Path:
    return _data_dir("templates")


def builtin_profiles_dir() -> Path:
    return _data_dir("site-profiles")


def config_dir() -> Path:
    from platformdirs import user_config_dir

    return Path(user_config_dir(APP))


def config_file() -> Path:
    """The user config: ``$HPCJUPYTER_CONFIG`` or ``config.toml`` in the user config dir."""
    override = os.environ.get("HPCJUPYTER_CONFIG")
    return Path(override) if override else config_dir() / "config.toml"


def user_profiles_dir() -> Path:
    return config_dir() / "sites"


def state_dir() -> Path:
    """Session records live here (``$HPCJUPYTER_STATE_DIR`` overrides)."""
    override = os.environ.get("HPCJUPYTER_STATE_DIR")
    if override:
        return Path(override)
    from platformdirs import user_state_dir

    return Path(user_state_dir(APP))


def data_dir() -> Path:
    """Cloned group profile repositories live here."""
    override = os.environ.get("HPCJUPYTER_DATA_DIR")
    if override:
        return Path(override)
    from platformdirs import user_data_dir

    return Path(user_data_dir(APP))
