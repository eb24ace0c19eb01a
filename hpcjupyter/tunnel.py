"""The browser's way in: a local port on 127.0.0.1 forwarded to Jupyter on the compute node.

Two shapes (chosen by the site profile):

- ``forward``: the login node connects to ``NODE:RPORT`` (Jupyter listens on the node's name).
  With openssh the forward is added to the running ControlMaster (``ssh -O forward``), so no new
  login happens. A forward added by a mux client lives in the master process, not in the client:
  it survives the client's exit and stays until ``-O cancel`` or the master's exit.
- ``jump``: an ssh connection to the node itself, hopping through the login node, with
  ``-L 127.0.0.1:LPORT:127.0.0.1:RPORT`` (Jupyter listens on the node's loopback only). The hop
  is ``ProxyCommand=ssh -S <master> -W %h:%p login``, a mux client of the master, so the login
  node is not logged into again (``-J login`` would open a second login: it ignores the master).

With fabric both shapes are a listener thread on 127.0.0.1 feeding ``direct-tcpip`` channels of
the paramiko connection (for jump, of a second connection carried inside the first).
"""

from __future__ import annotations

import collections
import dataclasses
import os
import select
import socket
import threading
import time
from typing import Any, Callable

from hpcjupyter.errors import RemoteError
from hpcjupyter.remote.base import CONNECT_TIMEOUT, SshTarget

SHAPES = ("forward", "jump")
LOOPBACK = "127.0.0.1"
KEEPALIVE = 15
"""ServerAliveInterval of the jump connection: a dead path is noticed within ~45 s."""


# --- ports ------------------------------------------------------------------------------------


def check_local_port(port: int) -> None:
    """A port the user asked for (``--local-port``): in range and free now, or one clear error."""
    if not 1024 <= port <= 65535:
        raise RemoteError(
            f"Local port {port} cannot be used for the tunnel.",
            "Choose a port between 1024 and 65535 (ports below 1024 need administrator rights).",
        )
    if not _bindable(port):
        raise _forward_failed(port, "in use")


def free_local_port(preferred: int | None = None, strict: bool = False) -> int:
    """``preferred`` if it can be bound on 127.0.0.1, else a free port the OS picks; with
    ``strict`` (the user named the port) a port that is taken is an error instead."""
    if preferred is not None:
        if strict:
            check_local_port(preferred)
            return preferred
        if not 1024 <= preferred <= 65535:
            check_local_port(preferred)
        if _bindable(preferred):
            return preferred
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def _listener_socket() -> socket.socket:
    """A TCP socket set up the way ssh sets up its forward listeners."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if os.name == "posix":
        # As ssh does: a port whose old connections linger in TIME_WAIT can be bound again (a
        # listening port still cannot).
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    elif hasattr(socket, "SO_EXCLUSIVEADDRUSE"):  # Windows: SO_REUSEADDR would allow port theft
        s.setsockopt(socket.SOL_SOCKET, socket.SO_EXCLUSIVEADDRUSE, 1)
    return s


def _bindable(port: int) -> bool:
    with _listener_socket() as s:
        try:
            s.bind((LOOPBACK, port))
        except OSError:
            return False
        return True


def port_open(port: int, host: str = LOOPBACK, timeout: float = 0.5) -> bool:
    """Something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


# --- argv builders (pure) ---------------------------------------------------------------------


def _addr(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def local_spec(local_port: int, dest_host: str, dest_port: int) -> str:
    """``-L`` argument; the local end is always 127.0.0.1, never all interfaces."""
    return f"{LOOPBACK}:{local_port}:{_addr(dest_host)}:{dest_port}"


def forward_argv(
    target: SshTarget, ctl: str, node: str, remote_port: int, local_port: int, *, op: str = "forward", ssh: str = "ssh"
) -> list[str]:
    """Add (``op="forward"``) or remove (``op="cancel"``) the forward in the running master."""
    from hpcjupyter.remote.openssh import control_argv

    return control_argv(target, ctl, op, "-L", local_spec(local_port, node, remote_port), ssh=ssh)


def proxy_command(target: SshTarget, ctl: str, ssh: str = "ssh") -> str:
    """The jump's hop: a mux client of the login master carrying stdio to %h:%p (no new login)."""
    import shlex

    from hpcjupyter.remote.openssh import mux_argv

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
    from hpcjupyter.remote.openssh import base_argv

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


class Tunnel:
    """A forward from 127.0.0.1:local_port to Jupyter; a health loop calls alive()/reopen()."""

    local_port: int

    def open(self) -> None:
        raise NotImplementedError

    def alive(self) -> bool:
        raise NotImplementedError

    def reopen(self) -> None:
        """Restore a dropped tunnel on the same local port (browser tabs keep working)."""
        self.close()
        self.open()

    def close(self) -> None:
        raise NotImplementedError

    @property
    def pid(self) -> int | None:
        """The ssh process that carries the forward (None when it is this process)."""
        return None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.local_port}"


class MasterForward(Tunnel):
    """openssh, forward shape: a forward inside the site's ControlMaster (no new login)."""

    def __init__(self, remote: Any, node: str, remote_port: int, local_port: int) -> None:
        self.remote, self.node, self.remote_port, self.local_port = remote, node, remote_port, local_port

    def _argv(self, op: str) -> list[str]:
        r = self.remote
        return forward_argv(r.target, r.control_path, self.node, self.remote_port, self.local_port, op=op, ssh=r.ssh)

    def _control(self, op: str) -> Any:
        from hpcjupyter.remote.openssh import _run

        return _run(self._argv(op), None, 30, self.remote.target.label)

    def open(self) -> None:
        self.remote.connect()  # no-op while the master runs
        res = self._control("forward")
        if not res.ok:
            raise _forward_failed(self.local_port, res.stderr)
        _wait_listening(self.local_port, 5, lambda: "the ControlMaster did not open the local port")

    def alive(self) -> bool:
        return self.remote.master_alive() and port_open(self.local_port)

    def reopen(self) -> None:
        if not self.remote.master_alive():
            self.remote.connect()  # a new login; the dead master took the forward with it
        else:
            self.close()
        self.open()

    def close(self) -> None:
        if self.remote.master_alive():
            # The forward lives in the master, not in any client process: only -O cancel ends
            # it. (ssh -O cancel exits 0 even when the master refuses, so the status is moot.)
            self._control("cancel")

    @property
    def pid(self) -> int | None:
        return self.remote.master_pid()


class JumpProcess(Tunnel):
    """openssh, jump shape: an ssh to the node (hop through the master) owned by this process.

    Spawned under pexpect so a first-time node host key or a passphrase is relayed to the user,
    and so that it dies with us (the pty hangs up). Once the forward listens, a thread drains
    its output; only the caller's thread touches the pexpect object.
    """

    def __init__(self, remote: Any, node: str, remote_port: int, local_port: int) -> None:
        self.remote, self.node, self.remote_port, self.local_port = remote, node, remote_port, local_port
        self._child: Any = None
        self._drain: threading.Thread | None = None
        self._stop = threading.Event()
        self.output: collections.deque[str] = collections.deque(maxlen=50)

    def argv(self) -> list[str]:
        r = self.remote
        user = r.effective_user()
        return jump_argv(r.target, r.control_path, self.node, self.remote_port, self.local_port, user=user, ssh=r.ssh)

    def open(self) -> None:
        import pexpect

        from hpcjupyter.remote.openssh import classify_ssh_error
        from hpcjupyter.remote.prompts import relay_prompts

        if not _bindable(self.local_port):  # else "ready" below would see the other listener
            raise _forward_failed(self.local_port, "in use")
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
                raise _forward_failed(self.local_port, out.transcript)
            raise classify_ssh_error(out.transcript, label)
        self._child = child
        self._stop.clear()
        self._drain = threading.Thread(target=self._drain_output, args=(child.child_fd,), daemon=True)
        self._drain.start()

    def _drain_output(self, fd: int) -> None:
        # Keep reading so a chatty ssh never blocks on a full pty; keep the tail for diagnostics.
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([fd], [], [], 0.2)
                if ready:
                    data = os.read(fd, 4096)
                    if not data:
                        return
                    self.output.extend(data.decode("utf-8", "replace").splitlines())
            except OSError:
                return

    def alive(self) -> bool:
        return self._child is not None and self._child.isalive() and port_open(self.local_port)

    def reopen(self) -> None:
        self.close()
        self.open()

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


class Relay(Tunnel):
    """A listener thread on 127.0.0.1 that pipes each accepted connection to a fresh upstream
    (a paramiko ``direct-tcpip`` channel for fabric, a plain socket for the local site)."""

    def __init__(
        self,
        local_port: int,
        opener: Callable[[], Any],
        healthy: Callable[[], bool] = lambda: True,
        reconnect: Callable[[], None] = lambda: None,
    ) -> None:
        self.local_port = local_port
        self._opener, self._healthy, self._reconnect = opener, healthy, reconnect
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._conns: set[Any] = set()
        self._lock = threading.Lock()

    def open(self) -> None:
        s = _listener_socket()
        try:
            s.bind((LOOPBACK, self.local_port))
        except OSError as exc:
            s.close()
            raise _forward_failed(self.local_port, str(exc)) from None
        s.listen(16)
        s.settimeout(0.5)
        self._listener = s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, args=(s, self._stop), daemon=True)
        self._thread.start()

    def _accept(self, listener: socket.socket, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client, stop), daemon=True).start()

    def _serve(self, client: socket.socket, stop: threading.Event) -> None:
        try:
            upstream = self._opener()
        except Exception:
            client.close()
            return
        with self._lock:
            self._conns.update((client, upstream))
        try:
            _pump(client, upstream, stop)
        finally:
            with self._lock:
                self._conns.difference_update((client, upstream))
            for end in (client, upstream):
                try:
                    end.close()
                except Exception:
                    pass

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self._healthy()

    def reopen(self) -> None:
        self.close()
        self._reconnect()
        self.open()

    def close(self) -> None:
        self._stop.set()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if self._thread is not None:
            self._thread.join(2)
            self._thread = None
        with self._lock:
            conns, self._conns = list(self._conns), set()
        for end in conns:
            try:
                end.close()
            except Exception:
                pass


def _pump(a: Any, b: Any, stop: threading.Event) -> None:
    """Copy bytes both ways until either side closes (sockets and paramiko channels both select)."""
    try:
        while not stop.is_set():
            readable, _, _ = select.select([a, b], [], [], 0.5)
            for src in readable:
                data = src.recv(65536)
                if not data:
                    return
                (b if src is a else a).sendall(data)
    except Exception:
        return


def _wait_listening(port: int, seconds: float, why: Callable[[], str]) -> None:
    deadline = time.monotonic() + seconds
    while not port_open(port):
        if time.monotonic() > deadline:
            raise RemoteError(f"The tunnel on 127.0.0.1:{port} did not start: {why()}.")
        time.sleep(0.1)


def _forward_failed(port: int, said: str) -> RemoteError:
    if "in use" in said or "forwarding failed" in said.lower() or "Could not request" in said:
        return RemoteError(
            f"Local port {port} could not be used for the tunnel: something else is listening on it.",
            "Choose another local port, or stop the program that uses this one.",
        )
    return RemoteError(f"The tunnel on 127.0.0.1:{port} could not be opened: {said.strip()[-300:]}")


# --- entry point ------------------------------------------------------------------------------


def open_tunnel(remote: Any, shape: str, node: str, remote_port: int, local_port: int) -> Tunnel:
    """Open the tunnel for a session on ``remote``; the caller picks ``local_port`` with
    `free_local_port` and probes readiness (``GET /api/status``) through it."""
    from hpcjupyter.remote.fabric_remote import FabricRemote
    from hpcjupyter.remote.local import LocalRemote
    from hpcjupyter.remote.openssh import OpensshRemote

    if shape not in SHAPES:
        raise RemoteError(f"Unknown tunnel shape {shape!r}.", f"Use one of: {', '.join(SHAPES)}.")
    tunnel: Tunnel
    if isinstance(remote, OpensshRemote):
        tunnel = (MasterForward if shape == "forward" else JumpProcess)(remote, node, remote_port, local_port)
    elif isinstance(remote, FabricRemote):
        tunnel = _fabric_relay(remote, shape, node, remote_port, local_port)
    elif isinstance(remote, LocalRemote):
        dest = node if shape == "forward" else LOOPBACK
        tunnel = Relay(local_port, lambda: socket.create_connection((dest, remote_port), timeout=CONNECT_TIMEOUT))
    else:
        raise RemoteError(f"No tunnel for a remote of type {type(remote).__name__}.")
    tunnel.open()
    return tunnel


def _fabric_relay(remote: Any, shape: str, node: str, remote_port: int, local_port: int) -> Relay:
    if shape == "forward":
        dest = (node, remote_port)
        get_transport: Callable[[], Any] = lambda: remote.connection.transport  # noqa: E731
        reconnect: Callable[[], Any] = remote.connect
    else:
        dest = (LOOPBACK, remote_port)
        remote.hop_transport(node)  # log in to the node now, in the caller's thread (prompts)
        get_transport = lambda: remote.hop_transport(node, reconnect=False)  # noqa: E731
        reconnect = lambda: remote.hop_transport(node)  # noqa: E731

    def opener() -> Any:
        chan = get_transport().open_channel("direct-tcpip", dest, (LOOPBACK, local_port), timeout=CONNECT_TIMEOUT)
        return chan

    def healthy() -> bool:
        t = get_transport()
        return t is not None and t.is_active()

    return Relay(local_port, opener, healthy, reconnect)
