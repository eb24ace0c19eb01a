"""Local port choice and the relay tunnel (fabric/local) on loopback, driven through the local
transport's ``open_tunnel``. The openssh tunnels' argv is tested in test_remote_openssh.py."""

from __future__ import annotations

import socket
from typing import Iterator

import pytest
from webserver import get, http_server

from hpcjupyter.errors import RemoteError
from hpcjupyter.transports.local import LocalRemote
from hpcjupyter.tunnel import LOOPBACK, Relay, free_local_port, local_spec, port_open


def test_local_spec_binds_loopback_only() -> None:
    assert local_spec(8888, "nid001234", 34567) == "127.0.0.1:8888:nid001234:34567"
    assert local_spec(8888, "fe80::1", 1) == "127.0.0.1:8888:[fe80::1]:1"


# --- local ports ---


def test_free_local_port_prefers_the_given_port() -> None:
    port = free_local_port()
    assert 1024 <= port <= 65535
    assert free_local_port(port) == port


def test_free_local_port_moves_when_busy() -> None:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        s.listen()
        busy = s.getsockname()[1]
        other = free_local_port(busy)
        assert other != busy


@pytest.mark.parametrize("port", [0, 80, 1023, 70000])
def test_free_local_port_refuses_privileged(port: int) -> None:
    with pytest.raises(RemoteError, match="between 1024 and 65535"):
        free_local_port(port)


# --- relay tunnel (what fabric and the local site use), against a local HTTP server ---


@pytest.fixture
def web() -> Iterator[int]:
    with http_server() as port:
        yield port


def test_local_tunnel_forwards_closes_and_reopens(web: int) -> None:
    lp = free_local_port()
    tunnel = LocalRemote().open_tunnel("forward", LOOPBACK, web, lp)
    try:
        assert tunnel.alive() and get(lp) == 200 and tunnel.local_port == lp
        tunnel.close()
        assert not tunnel.alive() and not port_open(lp)
        tunnel.reopen()
        assert tunnel.alive() and get(lp) == 200
    finally:
        tunnel.close()


def test_relay_listens_on_loopback_only(web: int) -> None:
    lp = free_local_port()
    tunnel = LocalRemote().open_tunnel("jump", "ignored-node", web, lp)
    try:
        assert tunnel._listener is not None  # type: ignore[attr-defined]
        assert tunnel._listener.getsockname()[0] == "127.0.0.1"  # type: ignore[attr-defined]
    finally:
        tunnel.close()


def test_relay_reports_unhealthy_upstream(web: int) -> None:
    healthy = [True]
    tunnel = Relay(free_local_port(), lambda: socket.create_connection((LOOPBACK, web)), lambda: healthy[0])
    tunnel.open()
    try:
        assert tunnel.alive()
        healthy[0] = False
        assert not tunnel.alive()
    finally:
        tunnel.close()


def test_relay_sends_small_writes_at_once() -> None:
    """Both ends the relay writes to have TCP_NODELAY (as ssh's forwards): a response relayed in
    two pieces must not wait ~40 ms for the browser's delayed ACK of the first."""
    with socket.create_server((LOOPBACK, 0)) as upstream:  # an upstream that keeps its end open
        port = upstream.getsockname()[1]
        tunnel = Relay(free_local_port(), lambda: socket.create_connection((LOOPBACK, port)))
        tunnel.open()
        try:
            with socket.create_connection((LOOPBACK, tunnel.local_port)) as browser:
                server, _ = upstream.accept()
                with server:
                    browser.sendall(b"ping")
                    assert server.recv(4) == b"ping"  # relayed: the relay holds both ends now
                    ends = list(tunnel._conns)  # type: ignore[attr-defined]
                    assert len(ends) == 2
                    assert all(end.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) for end in ends)
        finally:
            tunnel.close()


def test_busy_local_port_is_a_clear_error(web: int) -> None:
    with pytest.raises(RemoteError, match="something else is listening"):
        LocalRemote().open_tunnel("forward", LOOPBACK, web, web)


def test_unknown_shape() -> None:
    with pytest.raises(RemoteError, match="Unknown tunnel shape"):
        LocalRemote().open_tunnel("sideways", "n", 1, 2)
