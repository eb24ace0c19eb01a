"""Group profile directories: add, update and remove the entries of ``profile_path``.

A research group shares profiles as a directory (added by path, never copied, so the group's
edits reach everyone) or as a git repository (cloned under the user's data dir and pulled on
``sites update``). Only the ``profile_path`` assignment of the user config is rewritten: the
rest of the file, comments included, is kept byte for byte, and the result is re-parsed before
it is written so an edit can never silently change anything else.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from hpcjupyter import paths
from hpcjupyter.errors import HpcJupyterError, ProfileError
from hpcjupyter.profiles import ProfileSet, load_user_config, read_toml

# scheme://... (https, ssh, git, file) or scp-like user@host:path
_GIT_URL = re.compile(r"^(?:[A-Za-z][A-Za-z0-9+.-]*://|[\w.-]+@[\w.-]+:)")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_ASSIGNMENT = re.compile(r"^[ \t]*profile_path[ \t]*=", re.MULTILINE)
_TABLE_HEADER = re.compile(r"^[ \t]*\[", re.MULTILINE)
_FILE_HEADER = re.compile(r"(?:[ \t]*#[^\n]*\n)+[ \t]*\n")


class SharingError(HpcJupyterError):
    """A group source could not be added, updated or removed."""


# ---- what a source is (pure) -----------------------------------------------------------------


def is_bare_repo(path: Path) -> bool:
    """A bare git repository: HEAD, objects/ and refs/ at its top (no working tree)."""
    return (path / "HEAD").is_file() and (path / "objects").is_dir() and (path / "refs").is_dir()


def is_git_source(source: str) -> bool:
    """A URL, an scp-like address, a ``*.git`` path or a bare repository: cloned, not linked."""
    if _GIT_URL.match(source) or source.rstrip("/").endswith(".git"):
        return True
    path = Path(source).expanduser()
    return path.is_dir() and is_bare_repo(path)


def source_name(source: str) -> str:
    """The clone's name from its source: ``git@host:grp/hpc-profiles.git`` → ``hpc-profiles``."""
    last = re.split(r"[/:]", source.rstrip("/"))[-1].removesuffix(".git")
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "-", last).lstrip(".-_")
    return cleaned or "profiles"


# ---- the config file's profile_path (pure text editing) --------------------------------------


def toml_array(entries: list[str]) -> str:
    """A TOML array of strings, one per line (JSON strings are TOML basic strings)."""
    if not entries:
        return "[]"
    return "[\n" + "".join(f"  {json.dumps(e, ensure_ascii=False)},\n" for e in entries) + "]"


def _value_end(text: str, pos: int) -> int:
    """Index just past the array value that starts after ``pos`` (strings and comments skipped)."""
    depth, i, quote = 0, pos, ""
    while i < len(text):
        char = text[i]
        if quote:
            if char == "\\" and quote == '"':
                i += 1
            elif char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif char == "#":
            newline = text.find("\n", i)
            i = len(text) if newline < 0 else newline
            continue
        elif char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
            if depth == 0:
                return i + 1
        elif char == "\n" and depth == 0:
            return i
        i += 1
    return len(text)


def set_profile_path(text: str, entries: list[str]) -> str:
    """``text`` with its top-level ``profile_path`` set to ``entries``; nothing else changes.

    An existing assignment is replaced in place (a comment after it stays); otherwise one is
    inserted after the file's header comment, before any table.
    """
    assignment = "profile_path = " + toml_array(entries)
    header = _TABLE_HEADER.search(text)
    top_end = header.start() if header else len(text)
    found = _ASSIGNMENT.search(text, 0, top_end)
    if found:
        return text[: found.start()] + assignment + text[_value_end(text, found.end()) :]
    file_header = _FILE_HEADER.match(text)
    at = file_header.end() if file_header else 0
    rest = text[at:]
    return text[:at] + assignment + "\n" + ("\n" if rest.strip() else "") + rest


# ---- entries of profile_path -----------------------------------------------------------------


def clones_dir() -> Path:
    """Where git sources are cloned, one directory per name."""
    return paths.data_dir() / "profiles"


@dataclass(frozen=True)
class Entry:
    """One directory of ``profile_path``, as written in the config."""

    raw: str

    @property
    def path(self) -> Path:
        return Path(self.raw).expanduser()

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def cloned(self) -> bool:
        """Ours: cloned by `add`, so `update` pulls it and `remove` deletes it."""
        return _same(self.path.parent, clones_dir())


def _same(a: Path, b: Path) -> bool:
    return os.path.abspath(a) == os.path.abspath(b)


def entries() -> list[Entry]:
    """The config's ``profile_path``, in order."""
    return [Entry(raw) for raw in load_user_config(paths.config_file()).profile_path]


def write_entries(new: list[Entry]) -> None:
    """Rewrite only ``profile_path`` in the user config (created if missing), atomically.

    The edited text is parsed back before it replaces the file: if anything but profile_path
    would change (a layout the text edit did not foresee), nothing is written.
    """
    config = paths.config_file()
    exists = config.is_file()
    text = config.read_text(encoding="utf-8") if exists else ""
    before = read_toml(config) if exists else {}
    before.pop("profile_path", None)
    wanted = [e.raw for e in new]
    config.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=config.parent, prefix=f".{config.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(set_profile_path(text, wanted))
        try:
            after = read_toml(Path(tmp))
        except ProfileError:
            after = {}
        if after.pop("profile_path", None) != wanted or after != before:
            raise SharingError(
                f"could not change profile_path in {config} without touching the rest of the file.",
                f"Set it by hand in that file (before any [table]):\nprofile_path = {toml_array(wanted)}",
            )
        if exists:
            os.chmod(tmp, config.stat().st_mode & 0o7777)
        os.replace(tmp, config)
    except BaseException:
        os.unlink(tmp)
        raise


# ---- git -------------------------------------------------------------------------------------


def _git(args: list[str], what: str) -> str:
    """Run git; its own message is the error, since it says best what went wrong."""
    git = shutil.which("git")
    if git is None:
        raise SharingError(
            f"git is not installed, and {what} needs it.",
            "Install git (https://git-scm.com/downloads), or add a checkout made some other way with "
            "'hpcjupyter sites add DIRECTORY'.",
        )
    env = dict(os.environ)
    if not sys.stdin.isatty():  # no one to type a password: fail instead of hanging
        env["GIT_TERMINAL_PROMPT"] = "0"
    proc = subprocess.run([git, *args], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        message = (proc.stderr or proc.stdout).strip() or f"exit status {proc.returncode}"
        raise SharingError(f"{what} failed; git said:\n{message}")
    return (proc.stdout + proc.stderr).strip()


# ---- add, update, remove ---------------------------------------------------------------------


def add(source: str, name: str | None = None) -> Entry:
    """Add a directory by path, or clone a git source and add the clone; returns the new entry."""
    current = entries()
    if not is_git_source(source):
        directory = Path(source).expanduser()
        if not directory.is_dir():
            raise SharingError(
                f"{source} is not a directory, nor a git URL.",
                "Give a directory of *.toml profiles, or a git URL (https://..., git@host:repo.git, file://...).",
            )
        if name is not None:
            raise SharingError(
                "--name applies to git sources; a directory is added by its path and known by its own name "
                f"('{directory.resolve().name}').",
            )
        entry = Entry(str(directory.resolve()))
        if any(_same(e.path, entry.path) for e in current):
            raise SharingError(f"{entry.raw} is in profile_path already.", "See 'hpcjupyter sites list'.")
        write_entries(current + [entry])
        return entry
    name = name or source_name(source)
    if not NAME.match(name):
        raise SharingError(f"{name!r} cannot name a clone: use letters, digits and _ . - only.")
    target = clones_dir() / name
    taken = [e for e in current if e.name == name]
    if target.exists() or taken:
        holder = taken[0].raw if taken else str(target)
        raise SharingError(
            f"the name '{name}' is taken ({holder}).",
            "Choose another with --name NAME, or 'hpcjupyter sites remove' the old one first.",
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    _git(["clone", "--depth", "1", "--quiet", "--", source, str(target)], f"git clone of {source}")
    entry = Entry(str(target))
    try:
        write_entries(current + [entry])
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)  # not listed anywhere: it would only block the name
        raise
    return entry


def find(name: str, among: list[Entry]) -> Entry:
    """The entry called ``name`` (its directory's name) or at path ``name``."""
    matches = [e for e in among if e.name == name or _same(e.path, Path(name).expanduser())]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        known = ", ".join(e.name for e in among) or "(none)"
        raise SharingError(
            f"no group profile source named '{name}'. Added ones: {known}.",
            "Add one with 'hpcjupyter sites add SOURCE'.",
        )
    raise SharingError(
        f"several profile_path entries are named '{name}': {', '.join(e.raw for e in matches)}.",
        "Give the full path instead.",
    )


@dataclass(frozen=True)
class Pulled:
    """What `update` did to one clone: git's summary, or its error."""

    entry: Entry
    ok: bool
    message: str


def update(name: str | None = None) -> list[Pulled]:
    """``git pull --ff-only`` in every clone (or the one named); a failure does not stop the rest."""
    current = entries()
    if name is not None:
        chosen = [find(name, current)]
        if not chosen[0].cloned:
            raise SharingError(
                f"{chosen[0].raw} was added as a directory, not cloned: there is nothing to pull.",
                "Update it the way your group shares it (it is read in place).",
            )
    else:
        chosen = [e for e in current if e.cloned]
    results = []
    for entry in chosen:
        try:
            said = _git(["-C", str(entry.path), "pull", "--ff-only"], f"git pull in {entry.path}")
            head = _git(["-C", str(entry.path), "log", "-1", "--format=%h %s"], f"git log in {entry.path}")
            state = "already up to date" if re.search(r"up.to.date", said, re.IGNORECASE) else "updated"
            results.append(Pulled(entry, True, f"{state}, at {head}"))
        except SharingError as exc:
            results.append(Pulled(entry, False, str(exc)))
    return results


def remove(name: str) -> Entry:
    """Take an entry out of profile_path; a clone of ours is deleted too."""
    current = entries()
    entry = find(name, current)
    write_entries([e for e in current if e != entry])
    if entry.cloned and entry.path.is_dir():
        shutil.rmtree(entry.path)
    return entry


# ---- what a source brought -------------------------------------------------------------------


def site_names(directory: Path) -> list[str]:
    """The sites a profile directory defines (or layers over), by file name."""
    return sorted(p.stem for p in directory.glob("*.toml"))


def problems(found: ProfileSet, names: list[str]) -> dict[str, str]:
    """Each name's validation error ("" when it loads), every profile tried: all problems at once."""
    result = {}
    for name in names:
        try:
            found.load(name)
            result[name] = ""
        except HpcJupyterError as exc:
            result[name] = str(exc)
    return result
