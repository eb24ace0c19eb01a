"""The browser's way in: a local port on 127.0.0.1 forwarded to Jupyter on the compute node.

What every tunnel shares lives here: the `Tunnel` interface the health loop drives, the `Relay`
pump (a listener thread for transports that carry connections themselves), and local ports.
Each transport builds its own tunnels (``Remote.open_tunnel``), of two shapes chosen by the
site profile (``forward``: the login node connects to ``NODE:RPORT``; ``jump``: a connection to
the node itself, on to its loopback):

- openssh (remote/openssh_tunnels.py): a forward inside the site's ControlMaster, or an ssh to
  the node hopping through it;
- fabric (remote/fabric_remote.py): a `Relay` feeding ``direct-tcpip`` channels of the paramiko
  connection (for jump, of a second connection carried inside the first);
- local (remote/local.py): a `Relay` feeding plain sockets.
"""

from __future__ import annotations

import abc
import contextlib
import os
import select
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from hpcjupyter.errors import RemoteError

LOOPBACK = "127.0.0.1"


# --- ports ------------------------------------------------------------------------------------


def check_local_port(port: int) -> None:
    """A port the user asked for (``--local-port``): in range and free now, or one clear error."""
    if not 1024 <= port <= 65535:
        raise RemoteError(
            f"Local port {port} cannot be used for the tunnel.",
            "Choose a port between 1024 and 65535 (ports below 1024 need administrator rights).",
        )
    if not bindable(port):
        raise forward_failed(port, "in use")


def free_local_port(preferred: int | None = None, strict: bool = False) -> int:
    """``preferred`` if it can be bound on 127.0.0.1, else a free port the OS picks; with
    ``strict`` (the user named the port) a port that is taken is an error instead."""
    if preferred is not None:
        if strict:
            check_local_port(preferred)
            return preferred
        if not 1024 <= preferred <= 65535:
            check_local_port(preferred)
        if bindable(preferred):
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


def bindable(port: int) -> bool:
    """Nothing listens on 127.0.0.1:port now (so a listener that appears there is ours)."""
    with _listener_socket() as s:
        try:
            s.bind((LOOPBACK, port))
        except OSError:
            return False
        return True


def no_delay(sock: Any) -> None:
    """Send small writes at once (TCP_NODELAY), as ssh does for its forwards' sockets: else a
    write queued behind an unacknowledged one waits for the peer's delayed ACK (40 ms)."""
    if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):  # a socket the peer already closed
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def port_open(port: int, host: str = LOOPBACK, timeout: float = 0.5) -> bool:
    """Something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


# --- the -L spec (pure) ------------------------------------------------------------------------


def _addr(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def local_spec(local_port: int, dest_host: str, dest_port: int) -> str:
    """``-L`` argument; the local end is always 127.0.0.1, never all interfaces."""
    return f"{LOOPBACK}:{local_port}:{_addr(dest_host)}:{dest_port}"


# --- tunnels ----------------------------------------------------------------------------------


class Tunnel(abc.ABC):
    """A forward from 127.0.0.1:local_port to Jupyter; a health loop calls alive()/reopen().

    Each transport builds its own kinds (``Remote.open_tunnel``); callers see only this."""

    local_port: int

    @abc.abstractmethod
    def open(self) -> None:
        """Start forwarding; raise a RemoteError that says why if it cannot."""

    @abc.abstractmethod
    def alive(self) -> bool:
        """The tunnel still carries connections (cheap: the health loop asks often)."""

    def reopen(self) -> None:
        """Restore a dropped tunnel on the same local port (browser tabs keep working)."""
        self.close()
        self.open()

    @abc.abstractmethod
    def close(self) -> None:
        """Stop forwarding; safe to call twice."""

    @property
    def pid(self) -> int | None:
        """The ssh process that carries the forward (None when it is this process)."""
        return None


class Relay(Tunnel):
    """A listener thread on 127.0.0.1 that pipes each accepted connection to a fresh upstream
    (a paramiko ``direct-tcpip`` channel for fabric, a plain socket for the local site)."""

    def __init__(
        self,
        local_port: int,
        opener: Callable[[], Any],
        healthy: Callable[[], bool] = lambda: True,
        reconnect: Callable[[], object] = lambda: None,
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
            raise forward_failed(self.local_port, str(exc)) from None
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
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client, stop), daemon=True).start()

    def _serve(self, client: socket.socket, stop: threading.Event) -> None:
        no_delay(client)  # a response arriving in pieces must not wait on the browser's ACKs
        try:
            upstream = self._opener()
        except Exception:
            client.close()
            return
        no_delay(upstream)  # a plain socket (local site); paramiko channels are not sockets
        with self._lock:
            self._conns.update((client, upstream))
        try:
            _pump(client, upstream, stop)
        finally:
            with self._lock:
                self._conns.difference_update((client, upstream))
            for end in (client, upstream):
                with contextlib.suppress(Exception):
                    end.close()

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
            with contextlib.suppress(Exception):
                end.close()


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


def wait_listening(port: int, seconds: float, why: Callable[[], str]) -> None:
    """Wait until something accepts on 127.0.0.1:port, or raise saying ``why()`` it did not."""
    deadline = time.monotonic() + seconds
    while not port_open(port):
        if time.monotonic() > deadline:
            raise RemoteError(f"The tunnel on 127.0.0.1:{port} did not start: {why()}.")
        time.sleep(0.1)


def forward_failed(port: int, said: str) -> RemoteError:
    """The one error for a local end that could not be opened; a taken port says so plainly."""
    if "in use" in said or "forwarding failed" in said.lower() or "Could not request" in said:
        return RemoteError(
            f"Local port {port} could not be used for the tunnel: something else is listening on it.",
            "Choose another local port, or stop the program that uses this one.",
        )
    return RemoteError(f"The tunnel on 127.0.0.1:{port} could not be opened: {said.strip()[-300:]}")
