"""`hpcjupyter config get|set|unset|edit`: change the user config with tomlkit, which keeps the
user's comments and layout, and check the result like a profile before it is written."""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.exceptions import TOMLKitError

from hpcjupyter import paths
from hpcjupyter.errors import HpcJupyterError, ProfileError


def _parts(key: str) -> list[str]:
    parts = [p.strip() for p in key.split(".")]
    if not key.strip() or any(not p for p in parts):
        raise HpcJupyterError(f"{key!r} is not a dotted key.", "For example: sites.cirrus.job.account")
    return parts


def _load() -> tuple[Path, tomlkit.TOMLDocument]:
    path = paths.config_file()
    text = path.read_text() if path.is_file() else ""
    try:
        return path, tomlkit.parse(text)
    except TOMLKitError as exc:
        raise ProfileError(f"{path}: not valid TOML: {exc}.", "Fix it with 'hpcjupyter config edit'.") from None


def parse_value(text: str) -> Any:
    """A TOML value (8, 1.5, true, ["a", "b"], "quoted"), else the text as a string."""
    try:
        return tomlkit.parse(f"value = {text}")["value"]
    except TOMLKitError:
        return text


def get_value(key: str | None) -> str:
    path, doc = _load()
    if key is None:
        return doc.as_string().rstrip("\n") or f"(no settings: {path} is empty or missing)"
    node: Any = doc
    for part in _parts(key):
        if not isinstance(node, dict) or part not in node:
            raise HpcJupyterError(f"{key} is not set in {path}.", f"Set it with 'hpcjupyter config set {key} VALUE'.")
        node = node[part]
    if isinstance(node, dict):
        return tomlkit.dumps(node).rstrip("\n")
    value = node.unwrap() if hasattr(node, "unwrap") else node
    return value if isinstance(value, str) else tomlkit.item(value).as_string()


def set_value(key: str, text: str) -> Path:
    path, doc = _load()
    parts = _parts(key)
    node: Any = doc
    for i, part in enumerate(parts[:-1]):
        if part not in node:
            # sites.NAME is a [sites.NAME] table; deeper keys become its sub-tables
            node[part] = tomlkit.table(is_super_table=(i == 0 and part == "sites"))
        node = node[part]
        if not isinstance(node, dict):
            raise HpcJupyterError(f"{'.'.join(parts[: i + 1])} is a value in {path}, not a table.")
    node[parts[-1]] = parse_value(text)
    _write_checked(path, doc, parts)
    return path


def unset_value(key: str) -> Path:
    path, doc = _load()
    parts = _parts(key)
    node: Any = doc
    for part in parts[:-1]:
        if not isinstance(node, dict) or part not in node:
            raise HpcJupyterError(f"{key} is not set in {path}.")
        node = node[part]
    if not isinstance(node, dict) or parts[-1] not in node:
        raise HpcJupyterError(f"{key} is not set in {path}.")
    del node[parts[-1]]
    _write_checked(path, doc, parts)
    return path


def check_text(text: str, path: Path, parts: list[str] | None = None) -> None:
    """The config validates, and so does every site it has personal values for (or the one changed)."""
    from hpcjupyter.profiles import ProfileSet, load_user_config

    with tempfile.TemporaryDirectory() as tmp:
        candidate = Path(tmp) / "config.toml"
        candidate.write_text(text)
        config = load_user_config(candidate)
    found = ProfileSet.discover_with(config, path)
    names = [parts[1]] if parts and len(parts) > 1 and parts[0] == "sites" else list(config.sites)
    if config.default_site:
        names.append(config.default_site)
    for name in dict.fromkeys(names):
        if name in config.sites or name == config.default_site:
            found.load(name)


def _write_checked(path: Path, doc: tomlkit.TOMLDocument, parts: list[str]) -> None:
    text = doc.as_string()
    check_text(text, path, parts)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(dir=path.parent, prefix=".config-", suffix=".toml")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(partial, path)


def edit() -> Path:
    """Open the config in the user's editor; check it afterwards (the file is kept either way)."""
    path = paths.config_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_text("# hpcjupyter settings: see 'hpcjupyter config --help'\n")
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    try:
        subprocess.run([*shlex.split(editor), str(path)], check=False)
    except OSError as exc:
        raise HpcJupyterError(f"could not start the editor {editor!r}: {exc}.", "Set $EDITOR.") from None
    try:
        check_text(path.read_text(), path)
    except HpcJupyterError as exc:
        raise HpcJupyterError(
            f"{path} was saved but is not valid:\n{exc.message}", "Run 'hpcjupyter config edit' again to fix it."
        ) from None
    return path
