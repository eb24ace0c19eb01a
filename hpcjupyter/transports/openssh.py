"""The system ``ssh`` with one ControlMaster per site, so one login serves a whole session.

The master is opened once under pexpect (prompts relayed to the user) and left running in the
background with ControlPersist; every command, file transfer and the tunnel are mux clients of
it, across separate hpcjupyter invocations. argv building and error classification are pure
functions; `OpensshRemote` is the thin layer that runs them. The tunnels are in openssh_tunnels.py.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from hpcjupyter.errors import RemoteError
from hpcjupyter.locks import exclusive
from hpcjupyter.transports.base import (
    CONNECT_TIMEOUT,
    Prompter,
    Result,
    SshTarget,
    auth_error,
    check_shape,
    host_key_changed_error,
    host_key_unknown_error,
    read_file_via,
    run_process,
    ssh_not_found_error,
    unreachable_error,
    unresolved_error,
    write_file_via,
)

if TYPE_CHECKING:
    from hpcjupyter.tunnel import Tunnel

CONTROL_PERSIST = "4h"
"""How long the master outlives its last client: a working day of separate invocations."""

SERVER_ALIVE_INTERVAL = 30
"""Seconds between keep-alives, so NAT boxes keep the connection and a dead one is noticed."""

SOCKET_PATH_BUDGET = 104 - 1 - 17
"""Longest ControlPath: macOS's 104-byte sun_path, the NUL, and the ``.XXXXXXXXXXXXXXXX`` suffix
ssh adds to the path while it creates the socket."""

MUX_ONLY = ["-o", "ControlMaster=no", "-o", "ProxyCommand=false", "-o", "BatchMode=yes"]
"""Options of a mux client: it must never log in on its own. With ``ProxyCommand=false`` (taking
precedence over the user's ProxyCommand/ProxyJump) a missing master makes the client fail at once
instead of silently opening a second login; BatchMode is safe because there is nothing to ask."""


# --- ControlPath -----------------------------------------------------------------------------


def control_name(target: SshTarget) -> str:
    """A short, stable socket name: the site (readable) and a hash of everything that matters."""
    key = "\0".join([target.site, target.host, target.user or "", str(target.port or ""), target.config or ""])
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    site = re.sub(r"[^A-Za-z0-9]", "", target.site)[:12] or "site"
    return f"{site}-{digest}"


def _usable(path: str) -> bool:
    # ssh reads ControlPath with its config tokenizer and expands % and ~ in it: keep it plain.
    return len(os.fsencode(path)) <= SOCKET_PATH_BUDGET and not re.search(r"[\s%~\"']", path)


def socket_dir() -> Path:
    """Where sockets live by default: the state dir when ``HPCJUPYTER_STATE_DIR`` isolates a run
    (tests), else the user's runtime dir (tmpfs, short, private) if there is one, else the
    state dir."""
    from hpcjupyter.paths import state_dir

    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if not os.environ.get("HPCJUPYTER_STATE_DIR") and runtime and os.path.isdir(runtime):
        return Path(runtime) / "hpcjupyter"
    return state_dir() / "cm"


def control_path(target: SshTarget, base: Path | None = None) -> str:
    """The per-site socket path: ``<socket dir>/<name>`` (``base/cm/<name>`` if ``base`` is
    given), or ``/tmp/hpcj-<uid>/<name>`` when that path is too long (or awkward) for a socket."""
    name = control_name(target)
    path = str((Path(base) / "cm" if base is not None else socket_dir()) / name)
    if _usable(path):
        return path
    return str(Path(f"/tmp/hpcj-{os.getuid()}") / name)


def ensure_control_dir(path: str) -> None:
    """Create the socket's directory 0700; refuse one that someone else could tamper with."""
    directory = Path(path).parent
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = directory.lstat()
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise RemoteError(
            f"The ssh control directory {directory} is not a directory owned by you.",
            "Remove it (it may have been created by someone else) and try again.",
        )
    if info.st_mode & 0o077:
        os.chmod(directory, 0o700)


# --- argv builders (pure) ---------------------------------------------------------------------


def base_argv(target: SshTarget, ssh: str = "ssh") -> list[str]:
    """ssh, the profile's config file, user and port, and a bounded connect time."""
    argv = [ssh]
    if target.config:
        argv += ["-F", os.path.expanduser(target.config)]
    if target.user:
        argv += ["-l", target.user]
    if target.port:
        argv += ["-p", str(target.port)]
    argv += ["-o", f"ConnectTimeout={CONNECT_TIMEOUT}"]
    return argv


def master_argv(target: SshTarget, ctl: str, ssh: str = "ssh") -> list[str]:
    """Open the master: authenticate (interactively), then background it with ControlPersist."""
    return base_argv(target, ssh) + [
        "-S", ctl,
        "-M", "-N", "-f",
        "-o", "ControlMaster=yes",
        "-o", f"ControlPersist={CONTROL_PERSIST}",
        "-o", f"ServerAliveInterval={SERVER_ALIVE_INTERVAL}",
        "-o", "ServerAliveCountMax=3",
        target.host,
    ]  # fmt: skip


def mux_argv(target: SshTarget, ctl: str, ssh: str = "ssh") -> list[str]:
    """The prefix of every mux client (commands, ``-W`` hops): only ever through the master."""
    return base_argv(target, ssh) + ["-S", ctl] + MUX_ONLY


def run_argv(target: SshTarget, ctl: str, argv: Sequence[str], ssh: str = "ssh") -> list[str]:
    """Run ``argv`` (quoted with shlex.join) in the remote login shell, over the master."""
    return mux_argv(target, ctl, ssh) + ["-T", target.host, shlex.join(argv)]


def control_argv(target: SshTarget, ctl: str, op: str, *extra: str, ssh: str = "ssh") -> list[str]:
    """Ask the master itself: ``check``, ``exit``, ``forward`` or ``cancel`` (with ``-L spec``)."""
    return base_argv(target, ssh) + ["-S", ctl, "-o", "ControlMaster=no", *extra, "-O", op, target.host]


def parse_master_pid(text: str) -> int | None:
    """``Master running (pid=1234)`` from ``ssh -O check``."""
    m = re.search(r"Master running \(pid=(\d+)\)", text)
    return int(m.group(1)) if m else None


def parse_config_dump(text: str) -> dict[str, str]:
    """``ssh -G`` output (``key value`` lines) to a dict of the first value of each key."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.strip().partition(" ")
        if key and key not in out:
            out[key.lower()] = value
    return out


# --- error classification (pure) --------------------------------------------------------------

_UNREACHABLE = re.compile(
    r"connect to host .*?: (?P<why>[^\n]+)"
    r"|(?P<why2>Connection refused|No route to host|Connection timed out|Operation timed out"
    r"|Network is unreachable|Connection reset by peer|Connection closed by [^\n]+"
    r"|Connection to [^\n]+ timed out"
    r"|kex_exchange_identification: [^\n]+|banner exchange: [^\n]+)"
)


def classify_ssh_error(text: str, label: str) -> RemoteError:
    """The one clear error for what ssh printed when it failed to log in."""
    if "REMOTE HOST IDENTIFICATION HAS CHANGED" in text or "POSSIBLE DNS SPOOFING" in text:
        fp = re.search(r"fingerprint for the \S+ key sent by the remote host is\s*\n?\s*(\S+)", text)
        rm = re.search(r"remove with:\s*\n\s*(ssh-keygen [^\n]+)", text)
        return host_key_changed_error(
            label, f"the server now shows {fp.group(1)}" if fp else "", rm.group(1).strip() if rm else ""
        )
    if "Host key verification failed" in text:
        return host_key_unknown_error(label)
    m = re.search(r"Unable to negotiate with [^\n]*", text)
    if m:
        return RemoteError(
            f"ssh and {label} share no common algorithm: {m.group(0).strip()}",
            "The site's documentation usually gives the ssh_config lines it needs (e.g. "
            "HostKeyAlgorithms +ssh-rsa for an old server); add them for this host.",
        )
    m = re.search(r"Could not resolve hostname [^:\n]+: ([^\n]+)", text)
    if m:
        return unresolved_error(label, m.group(1).strip())
    m = re.search(r"Permission denied \(([^)]*)\)|Too many authentication failures|Authentication failed", text)
    if m:
        if m.group(0).startswith("Too many"):
            return auth_error(
                label,
                "too many authentication failures: your ssh agent offered many keys; set "
                "IdentitiesOnly yes and IdentityFile for this host in ssh_config",
            )
        return auth_error(label, f"permission denied, tried {m.group(1)}" if m.group(1) else "")
    m = _UNREACHABLE.search(text)
    if m:
        return unreachable_error(label, (m.group("why") or m.group("why2")).strip())
    m = re.search(r"(Bad configuration option[^\n]*|[^\n]*line \d+: [^\n]*|Can't open user config file[^\n]*)", text)
    if m:
        return RemoteError(
            f"ssh rejected its configuration: {m.group(1).strip()}",
            "Fix the ssh_config file named (the site profile's ssh.config, or ~/.ssh/config).",
        )
    last = [ln for ln in text.strip().splitlines() if ln.strip()][-3:]
    return RemoteError(
        f"ssh to {label} failed: {' / '.join(last) or 'no message'}.",
        f"Run `ssh -v {label.split(' ')[0]}` in a terminal to see why.",
    )


# --- the remote -------------------------------------------------------------------------------


def find_ssh() -> str:
    ssh = shutil.which("ssh")
    if ssh is None:
        raise ssh_not_found_error()
    return ssh


def _ignore_sighup() -> None:
    # Under pexpect ssh leads its own session, and when it exits after forking the master into
    # the background, the kernel hangs up its process group: that kills a ProxyCommand/ProxyJump
    # helper the master still needs. ssh keeps an inherited SIG_IGN for SIGHUP (clientloop.c).
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


class OpensshRemote:
    """A login node reached through the system ssh and a persistent per-site ControlMaster."""

    def __init__(
        self,
        target: SshTarget,
        prompter: Prompter | None = None,
        *,
        ssh: str | None = None,
        control_dir: Path | None = None,
    ) -> None:
        from hpcjupyter.transports.prompts import TerminalPrompter

        self.target = target
        self.prompter: Prompter = prompter or TerminalPrompter()
        self.ssh = ssh or find_ssh()
        self.control_path = control_path(target, control_dir)
        self._connected = False
        self._idle_login = False  # a master this object opened that has carried no session yet

    # master lifecycle

    def control(self, op: str, *extra: str, timeout: float = 30) -> Result:
        """Run ``ssh -O op`` against the master (check, exit, forward, cancel)."""
        argv = control_argv(self.target, self.control_path, op, *extra, ssh=self.ssh)
        return _run(argv, None, timeout, self.target.label)

    def master_pid(self) -> int | None:
        """The pid of the running master, or None (no socket, or a stale one)."""
        if not os.path.exists(self.control_path):
            return None
        res = self.control("check", timeout=10)
        return parse_master_pid(res.stderr + res.stdout) if res.ok else None

    def master_alive(self) -> bool:
        return self.master_pid() is not None

    def connect(self) -> int:
        """Open the master unless one is running; returns how many prompts the user answered."""
        ensure_control_dir(self.control_path)
        # One login even when two invocations start together: the second waits, then reuses.
        with exclusive(self.control_path + ".lock"):
            if self.master_alive():
                self._connected = True
                return 0
            if os.path.lexists(self.control_path):
                os.unlink(self.control_path)  # stale socket of a killed master: ssh won't replace it
            answered = self._open_master()
            self._idle_login = True
        self._connected = True
        return answered

    def start_session(self) -> None:
        """Run one no-op command on a login that has carried none yet. sshd turns TCP_NODELAY on
        for its end of a connection only when a session starts there; until then small
        responses through a forward leave it in two parts and the second waits for the laptop's
        delayed ACK (~40 ms, on most requests). `connect` runs commands before opening its
        tunnel anyway; this covers a master opened just for the tunnel (`reopen`)."""
        if self._idle_login:
            self.run(["true"])

    def _open_master(self) -> int:
        import pexpect

        from hpcjupyter.transports.prompts import relay_prompts

        argv = master_argv(self.target, self.control_path, ssh=self.ssh)
        try:
            child = pexpect.spawn(
                argv[0], argv[1:], encoding="utf-8", codec_errors="replace", timeout=None,
                preexec_fn=_ignore_sighup,
            )  # fmt: skip
        except pexpect.ExceptionPexpect as exc:
            raise ssh_not_found_error() from exc
        try:
            out = relay_prompts(child, self.prompter, what=f"ssh to {self.target.label}")
        except BaseException:
            child.terminate(force=True)
            raise
        if out.exitstatus == 0 and self.master_alive():
            return out.answered
        if out.exitstatus == 0:
            raise RemoteError(
                f"ssh logged in to {self.target.label} but its control socket {self.control_path} is not answering.",
                f"ssh said: {out.transcript.strip()[-300:] or '(nothing)'}",
            )
        raise classify_ssh_error(out.transcript, self.target.label)

    def disconnect(self) -> None:
        """Stop the persistent master (the next command logs in again)."""
        if os.path.exists(self.control_path):
            self.control("exit", timeout=10)
        self._connected = False

    def close(self) -> None:
        """Nothing to release: the master is meant to outlive this process (see `disconnect`)."""

    # commands and files

    def run(self, argv: Sequence[str], stdin: str | None = None, timeout: float | None = None) -> Result:
        if not self._connected:
            self.connect()
        cmd = run_argv(self.target, self.control_path, argv, ssh=self.ssh)
        self._idle_login = False
        res = _run(cmd, stdin, timeout, self.target.label)
        if res.returncode == 255 and not self.master_alive():
            # The master died (ControlPersist expired, laptop slept): nothing reached the server,
            # as a mux client cannot log in on its own, so log in again and retry once.
            self._connected = False
            self.connect()
            res = _run(cmd, stdin, timeout, self.target.label)
        return res

    def read_file(self, path: str) -> str | None:
        return read_file_via(self, path, self.target.label)

    def write_file(self, path: str, text: str, mode: int = 0o600) -> None:
        write_file_via(self, path, text, mode, self.target.label)

    # tunnels

    def open_tunnel(self, shape: str, node: str, remote_port: int, local_port: int) -> Tunnel:
        """``forward``: a forward added to the master; ``jump``: an ssh to the node hopping
        through the master. Neither logs in to the login node again."""
        from hpcjupyter.transports.openssh_tunnels import JumpProcess, MasterForward

        kind = MasterForward if check_shape(shape) == "forward" else JumpProcess
        tunnel = kind(self, node, remote_port, local_port)
        tunnel.open()
        return tunnel

    def effective_user(self) -> str | None:
        """The user ssh logs in as after the user's ssh_config (``ssh -G``), for the jump hop."""
        if self.target.user:
            return self.target.user
        argv = base_argv(self.target, self.ssh) + ["-G", self.target.host]
        res = _run(argv, None, 10, self.target.label)
        return parse_config_dump(res.stdout).get("user") if res.ok else None


def _run(argv: list[str], stdin: str | None, timeout: float | None, label: str) -> Result:
    try:
        return run_process(argv, stdin, timeout)
    except FileNotFoundError as exc:
        raise ssh_not_found_error() from exc
    except subprocess.TimeoutExpired as exc:
        raise RemoteError(
            f"A command on {label} did not finish within {timeout:g} s: {argv[-1][:120]}",
            "The login node may be overloaded or the connection stalled; try again.",
        ) from exc
