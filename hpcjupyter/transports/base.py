"""The one interface every way of reaching the login node implements."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from hpcjupyter.errors import LoginRefusedError, RemoteError

if TYPE_CHECKING:  # tunnel.py is not needed to run commands: keep it out of start-up
    from hpcjupyter.tunnel import Tunnel


@dataclass(frozen=True)
class Result:
    """What a command printed and how it exited."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def run_process(argv: Sequence[str], stdin: str | None, timeout: float | None) -> Result:
    """Run a local process to completion, text in and out; FileNotFoundError and
    subprocess.TimeoutExpired are left to the caller, who knows what they mean there."""
    proc = subprocess.run(
        list(argv),
        check=False,
        input=stdin,
        stdin=subprocess.DEVNULL if stdin is None else None,
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        timeout=timeout,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


class Runner(Protocol):
    """Anything that can run an argv on the login node (a Remote, or a fake in unit tests)."""

    def run(self, argv: Sequence[str], stdin: str | None = None, timeout: float | None = None) -> Result: ...


SHAPES = ("forward", "jump")
"""Tunnel shapes (see tunnel.py): ``forward`` through the login node to NODE:PORT, ``jump`` to the
node itself and on to its loopback."""

CONNECT_TIMEOUT = 15
"""Seconds ssh may take to reach the login node before it gives up (ssh's ConnectTimeout)."""

READ_MISSING = 44
"""Exit status of the read script when the file does not exist (distinct from cat's 1 and ssh's 255)."""


@dataclass(frozen=True)
class SshTarget:
    """How to reach one site's login node: the profile's ``[ssh]`` table plus the site name."""

    site: str
    host: str
    user: str | None = None
    port: int | None = None
    config: str | None = None
    transport: str = "auto"

    def __post_init__(self) -> None:
        from hpcjupyter.transports import TRANSPORTS

        if self.transport != "auto" and self.transport not in TRANSPORTS:
            raise RemoteError(
                f"Unknown ssh transport {self.transport!r} for site {self.site!r}.",
                f"Use one of: auto, {', '.join(TRANSPORTS)}.",
            )

    @property
    def label(self) -> str:
        """How the user would name this host in an ssh command (for messages)."""
        who = f"{self.user}@" if self.user else ""
        port = f" (port {self.port})" if self.port else ""
        return f"{who}{self.host}{port}"


class Prompter(Protocol):
    """Shows what ssh asks and returns the user's answer (the terminal, or a fake in tests)."""

    def ask(self, prompt_text: str, secret: bool) -> str: ...

    def info(self, text: str) -> None: ...


class Remote(Runner, Protocol):
    """Runs commands, moves small files and opens tunnels on a login node; one login serves the
    whole session. Each transport opens its own tunnels: only it knows how its connection carries
    them (inside the ControlMaster, as paramiko channels, or as plain sockets)."""

    def connect(self) -> int: ...

    def read_file(self, path: str) -> str | None: ...

    def write_file(self, path: str, text: str, mode: int = 0o600) -> None: ...

    def open_tunnel(self, shape: str, node: str, remote_port: int, local_port: int) -> Tunnel:
        """An open tunnel of ``shape`` from 127.0.0.1:``local_port`` to Jupyter on ``node``:``remote_port``
        (the caller picks the port with `free_local_port` and probes readiness through it)."""
        ...

    def close(self) -> None: ...


def check_shape(shape: str) -> str:
    """``shape`` if it is a known tunnel shape, else the one clear error (every transport asks here)."""
    if shape not in SHAPES:
        raise RemoteError(f"Unknown tunnel shape {shape!r}.", f"Use one of: {', '.join(SHAPES)}.")
    return shape


_HOME = 'case "$1" in "~/"*) set -- "$HOME/${1#"~/"}";; esac; '
"""A leading ``~/`` means the remote home, as it would be typed in a shell (the path is quoted)."""


def read_file_argv(path: str) -> list[str]:
    """One remote round trip that prints a file, or exits `READ_MISSING` if it is absent.

    Listing the directory first refreshes the NFS attribute cache, so a file just written on a
    compute node is seen from the login node (Open OnDemand does the same). ``sh -c`` keeps the
    script POSIX whatever the user's login shell is (csh users exist).
    """
    script = (
        _HOME + 'ls -- "$(dirname -- "$1")" >/dev/null 2>&1; ' + f'[ -e "$1" ] || exit {READ_MISSING}; exec cat -- "$1"'
    )
    return ["sh", "-c", script, "hpcj-read", path]


def write_file_argv(path: str, mode: int = 0o600) -> list[str]:
    """One remote round trip that writes stdin to ``path`` atomically with ``mode``.

    The umask keeps the temporary file private before chmod; mv makes a reader never see half a
    file (the job script is submitted right after it is written).
    """
    script = (
        _HOME
        + 'umask 077; t="$1.hpcj-tmp.$$"; '
        + f'cat > "$t" && chmod {mode:o} "$t" && mv -f "$t" "$1" || {{ rm -f "$t"; exit 1; }}'
    )
    return ["sh", "-c", script, "hpcj-write", path]


def interpret_read(result: Result, path: str, where: str) -> str | None:
    """Turn the read script's result into the file text, None (absent), or a RemoteError."""
    if result.returncode == 0:
        return result.stdout
    if result.returncode == READ_MISSING:
        return None
    raise RemoteError(
        f"Could not read {path} on {where}: {result.stderr.strip() or f'exit status {result.returncode}'}.",
        "Check that the file is readable by you on the login node.",
    )


def interpret_write(result: Result, path: str, where: str) -> None:
    """Raise a RemoteError if the write script failed."""
    if result.returncode != 0:
        raise RemoteError(
            f"Could not write {path} on {where}: {result.stderr.strip() or f'exit status {result.returncode}'}.",
            "Check that the directory exists and that you may write to it (and your quota).",
        )


FILE_TIMEOUT = 60
"""Seconds one small-file round trip may take on the login node."""


def read_file_via(runner: Runner, path: str, where: str) -> str | None:
    """Read a small remote file with one command on ``runner`` (the shell transports share this:
    no sftp, so it works wherever a command does); None if it does not exist."""
    return interpret_read(runner.run(read_file_argv(path), timeout=FILE_TIMEOUT), path, where)


def write_file_via(runner: Runner, path: str, text: str, mode: int, where: str) -> None:
    """Write a small remote file atomically with ``mode`` with one command on ``runner``."""
    interpret_write(runner.run(write_file_argv(path, mode), stdin=text, timeout=FILE_TIMEOUT), path, where)


# Errors the user reads: what happened and what to do, shared by the openssh and fabric transports.


def ssh_not_found_error() -> LoginRefusedError:
    return LoginRefusedError(
        "The `ssh` command was not found on this machine.",
        'Install the OpenSSH client (it ships with macOS, Linux and Windows 10+), or set transport = "fabric" '
        "in the site profile's [ssh] table to use the built-in client.",
    )


def unresolved_error(label: str, detail: str = "") -> RemoteError:
    return RemoteError(
        f"Cannot reach {label}: the host name could not be resolved{_detail(detail)}.",
        "Check the host in the site profile (or your ssh_config alias) for typos, that you are online, "
        "and that you are on the site's VPN if it needs one.",
    )


def unreachable_error(label: str, detail: str = "") -> RemoteError:
    return RemoteError(
        f"Cannot reach {label}{_detail(detail)}.",
        "Check that you are online and on a network the site accepts (some need a VPN or a registered "
        "IP address); the login node may be down or blocking you after failed attempts: check the "
        "site's status page and try again in a few minutes.",
    )


def auth_error(label: str, detail: str = "") -> LoginRefusedError:
    return LoginRefusedError(
        f"Login to {label} was refused{_detail(detail)}.",
        "Check the username (user in your config's [sites.NAME] table or User in ssh_config), that your "
        "ssh key is registered with the site (and IdentityFile points at it), and the password or "
        f"one-time code you typed. `ssh {label.split(' ')[0]}` in a terminal shows the whole exchange.",
    )


def host_key_changed_error(label: str, detail: str = "", remove: str = "") -> LoginRefusedError:
    return LoginRefusedError(
        f"The host key of {label} has CHANGED since you last connected{_detail(detail)}. "
        "This happens when a site re-installs its login nodes, but it is also what an attacker "
        "intercepting the connection would look like.",
        "Compare the new fingerprint with the ones the site publishes in its documentation. Only if "
        f"they match, remove the old entry (`{remove or 'ssh-keygen -R HOST'}`) and connect again. "
        "Do not turn off host key checking.",
    )


def host_key_unknown_error(label: str, detail: str = "") -> LoginRefusedError:
    return LoginRefusedError(
        f"The host key of {label} could not be verified{_detail(detail)}.",
        f"Connect once with `ssh {label.split(' ')[0]}` in a terminal, compare the fingerprint it shows "
        "with the ones the site publishes, and answer yes only if they match. Do not turn off host "
        "key checking.",
    )


def _detail(detail: str) -> str:
    detail = detail.strip().rstrip(".")
    return f" ({detail})" if detail else ""
