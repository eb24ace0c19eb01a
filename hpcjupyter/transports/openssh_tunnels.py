"""The OpenSSH transport's tunnels: both shapes ride the site's ControlMaster, so no new login.

- ``forward``: the forward is added to the running master (``ssh -O forward``). A forward added by
  a mux client lives in the master process, not in the client: it survives the client's exit and
  stays until ``-O cancel`` or the master's exit.
- ``jump``: an ssh connection to the node itself with ``-L 127.0.0.1:LPORT:127.0.0.1:RPORT``
  (Jupyter listens on the node's loopback only). The hop is
  ``ProxyCommand=ssh -S <master> -W %h:%p login``, a mux client of the master, so the login node
  is not logged into again (``-J login`` would open a second login: it ignores the master).

argv building is pure; the two `Tunnel` classes are the thin layer that runs it.
"""

from __future__ import annotations

import dataclasses
import os
import select
import shlex
import threading
from typing import TYPE_CHECKING, Any

from hpcjupyter.transports.base import CONNECT_TIMEOUT, SshTarget
from hpcjupyter.transports.openssh import base_argv, classify_ssh_error, control_argv, mux_argv
from hpcjupyter.tunnel import LOOPBACK, Tunnel, bindable, forward_failed, local_spec, port_open, wait_listening

if TYPE_CHECKING:
    from hpcjupyter.transports.openssh import OpensshRemote

KEEPALIVE = 15
"""ServerAliveInterval of the jump connection: a dead path is noticed within ~45 s."""


# --- argv builders (pure) ---------------------------------------------------------------------


def forward_argv(
    target: SshTarget, ctl: str, node: str, remote_port: int, local_port: int, *, op: str = "forward", ssh: str = "ssh"
) -> list[str]:
    """Add (``op="forward"``) or remove (``op="cancel"``) the forward in the running master."""
    return control_argv(target, ctl, op, "-L", local_spec(local_port, node, remote_port), ssh=ssh)


def proxy_command(target: SshTarget, ctl: str, ssh: str = "ssh") -> str:
    """The jump's hop: a mux client of the login master carrying stdio to %h:%p (no new login)."""
    # ssh expands % in ProxyCommand: escape ours, leave %h:%p to it.
    words = [w.replace("%", "%%") for w in mux_argv(target, ctl, ssh)]
    return f"{shlex.join(words)} -W %h:%p {shlex.quote(target.host.replace('%', '%%'))}"


def jump_argv(
    target: SshTarget,
    ctl: str,
    node: str,
    remote_port: int,
    local_port: int,
    *,
    user: str | None = None,
    ssh: str = "ssh",
) -> list[str]:
    """A connection to the compute node through the login master, forwarding to its loopback.

    ``user`` is the login node's effective user (the same account on the node); the node's own
    ssh port is the default one (the login node's ``port`` does not apply to it).
    """
    node_target = dataclasses.replace(target, host=node, user=user or target.user, port=None)
    return base_argv(node_target, ssh) + [
        "-o", "ControlMaster=no",
        "-o", "ControlPath=none",
        "-o", f"ProxyCommand={proxy_command(target, ctl, ssh)}",
        "-o", "ExitOnForwardFailure=yes",
        "-o", f"ServerAliveInterval={KEEPALIVE}",
        "-o", "ServerAliveCountMax=3",
        "-N",
        "-L", local_spec(local_port, LOOPBACK, remote_port),
        node,
    ]  # fmt: skip


# --- tunnels ----------------------------------------------------------------------------------


class MasterForward(Tunnel):
    """forward shape: a forward inside the site's ControlMaster (no new login, no process of ours)."""

    def __init__(self, remote: OpensshRemote, node: str, remote_port: int, local_port: int) -> None:
        self.remote, self.node, self.remote_port, self.local_port = remote, node, remote_port, local_port

    def _spec(self) -> str:
        return local_spec(self.local_port, self.node, self.remote_port)

    def open(self) -> None:
        self.remote.connect()  # no-op while the master runs
        self.remote.start_session()  # else sshd sends small responses with Nagle (see there)
        res = self.remote.control("forward", "-L", self._spec())
        if not res.ok:
            raise forward_failed(self.local_port, res.stderr)
        wait_listening(self.local_port, 5, lambda: "the ControlMaster did not open the local port")

    def alive(self) -> bool:
        return self.remote.master_alive() and port_open(self.local_port)

    def reopen(self) -> None:
        """A dead master took the forward with it: log in again; a live one gets it re-added."""
        if not self.remote.master_alive():
            self.remote.connect()
        else:
            self.close()
        self.open()

    def close(self) -> None:
        if self.remote.master_alive():
            # The forward lives in the master, not in any client process: only -O cancel ends
            # it. (ssh -O cancel exits 0 even when the master refuses, so the status is moot.)
            self.remote.control("cancel", "-L", self._spec())

    @property
    def pid(self) -> int | None:
        return self.remote.master_pid()


class JumpProcess(Tunnel):
    """jump shape: an ssh to the node (hop through the master) owned by this process.

    Spawned under pexpect so a first-time node host key or a passphrase is relayed to the user,
    and so that it dies with us (the pty hangs up). Once the forward listens, a thread drains
    its output (so a chatty ssh never blocks on a full pty); only the caller's thread touches the
    pexpect object.
    """

    def __init__(self, remote: OpensshRemote, node: str, remote_port: int, local_port: int) -> None:
        self.remote, self.node, self.remote_port, self.local_port = remote, node, remote_port, local_port
        self._child: Any = None  # a pexpect.spawn: pexpect is imported only when a jump opens
        self._drain: threading.Thread | None = None
        self._stop = threading.Event()

    def argv(self) -> list[str]:
        r = self.remote
        user = r.effective_user()
        return jump_argv(r.target, r.control_path, self.node, self.remote_port, self.local_port, user=user, ssh=r.ssh)

    def open(self) -> None:
        import pexpect

        from hpcjupyter.transports.prompts import relay_prompts

        if not bindable(self.local_port):  # else "ready" below would see the other listener
            raise forward_failed(self.local_port, "in use")
        self.remote.connect()
        argv = self.argv()
        label = f"{self.node} (through {self.remote.target.label})"
        child = pexpect.spawn(argv[0], argv[1:], encoding="utf-8", codec_errors="replace", timeout=None)
        try:
            out = relay_prompts(
                child, self.remote.prompter, ready=lambda: child.isalive() and port_open(self.local_port),
                idle_timeout=CONNECT_TIMEOUT * 4, what=f"ssh to {label}",
            )  # fmt: skip
        except BaseException:
            child.terminate(force=True)
            raise
        if not out.ready:
            child.close(force=True)
            if "Address already in use" in out.transcript:
                raise forward_failed(self.local_port, out.transcript)
            raise classify_ssh_error(out.transcript, label)
        self._child = child
        self._stop.clear()
        self._drain = threading.Thread(target=self._drain_output, args=(child.child_fd,), daemon=True)
        self._drain.start()

    def _drain_output(self, fd: int) -> None:
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([fd], [], [], 0.2)
                if ready and not os.read(fd, 4096):
                    return
            except OSError:
                return

    def alive(self) -> bool:
        return self._child is not None and self._child.isalive() and port_open(self.local_port)

    def close(self) -> None:
        child, self._child = self._child, None
        if child is None:
            return
        child.terminate(force=True)
        self._stop.set()
        if self._drain is not None:
            self._drain.join(2)
        child.close(force=True)

    @property
    def pid(self) -> int | None:
        return self._child.pid if self._child is not None else None
