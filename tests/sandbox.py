"""An isolated set of hpcjupyter directories (config, profile path, state) under one tmp dir;
the ``sandbox`` fixture of tests/unit/conftest.py makes one per test."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

from hpcjupyter import paths
from hpcjupyter.profiles import ProfileSet
from hpcjupyter.schema import Profile


@dataclass
class Sandbox:
    """An isolated set of hpcjupyter directories under one tmp dir."""

    root: Path
    config: Path  # $HPCJUPYTER_CONFIG (not created until written)
    group: Path  # the first directory of $HPCJUPYTER_PROFILE_PATH
    group2: Path  # the second one
    state: Path  # $HPCJUPYTER_STATE_DIR

    @property
    def user_sites(self) -> Path:
        return paths.user_profiles_dir()

    def write(self, path: Path, text: str) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
        return path

    def profile(self, name: str, text: str, directory: Path | None = None) -> Path:
        """Write ``name``.toml into ``directory`` (default: the first group dir)."""
        return self.write((directory or self.group) / f"{name}.toml", text)

    def load(self, name: str) -> tuple[Profile, dict[str, str]]:
        return ProfileSet.discover().load(name)

    def personal(self, site: str, overrides: str = "") -> Profile:
        """``site`` with ``overrides`` (the body of its [sites.SITE] table) in the user config."""
        self.write(self.config, f"[sites.{site}]\n" + textwrap.dedent(overrides))
        return self.load(site)[0]
