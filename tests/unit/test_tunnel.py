"""Tunnel argv (both shapes), local port choice, and the relay tunnel (fabric/local) on loopback."""

from __future__ import annotations

import http.server
import shlex
import socket
import threading
import urllib.request
from typing import Iterator

import pytest

from hpcjupyter.errors import RemoteError
from hpcjupyter.remote.base import SshTarget
from hpcjupyter.remote.local import LocalRemote
from hpcjupyter.tunnel import (
    LOOPBACK,
    Relay,
    forward_argv,
    free_local_port,
    jump_argv,
    local_spec,
    open_tunnel,
    port_open,
    proxy_command,
)

T = SshTarget(site="imperial", host="login.cx3.hpc.ic.ac.uk", user="jdoe", port=2222, config="/p/ssh_config")
CTL = "/home/jdoe/.local/state/hpcjupyter/cm/imperial-0123456789ab"


def opt(argv: list[str], name: str) -> str | None:
    for i, word in enumerate(argv[:-1]):
        if word == "-o" and argv[i + 1].startswith(name + "="):
            return argv[i + 1].split("=", 1)[1]
    return None


def test_local_spec_binds_loopback_only() -> None:
    assert local_spec(8888, "nid001234", 34567) == "127.0.0.1:8888:nid001234:34567"
    assert local_spec(8888, "fe80::1", 1) == "127.0.0.1:8888:[fe80::1]:1"


def test_forward_argv_adds_the_forward_to_the_master() -> None:
    argv = forward_argv(T, CTL, "nid001234", 34567, 8888)
    assert argv[0] == "ssh" and argv[argv.index("-F") + 1] == "/p/ssh_config"
    assert argv[argv.index("-S") + 1] == CTL
    assert argv[-5:] == ["-L", "127.0.0.1:8888:nid001234:34567", "-O", "forward", T.host]
    assert opt(argv, "ControlMaster") == "no"
    cancel = forward_argv(T, CTL, "nid001234", 34567, 8888, op="cancel")
    assert cancel[-5:] == ["-L", "127.0.0.1:8888:nid001234:34567", "-O", "cancel", T.host]


def test_jump_argv_goes_through_the_master_to_the_node_loopback() -> None:
    argv = jump_argv(T, CTL, "cx3-12-3", 40001, 9999, user="jdoe")
    assert argv[-1] == "cx3-12-3"
    assert argv[argv.index("-L") + 1] == "127.0.0.1:9999:127.0.0.1:40001"
    assert "-N" in argv
    assert argv[argv.index("-l") + 1] == "jdoe"
    assert "-p" not in argv  # the login node's port is not the compute node's
    assert argv[argv.index("-F") + 1] == "/p/ssh_config"
    assert opt(argv, "ExitOnForwardFailure") == "yes"
    assert opt(argv, "ServerAliveInterval") == "15"
    assert opt(argv, "ControlPath") == "none"  # the node connection is not itself multiplexed
    assert opt(argv, "StrictHostKeyChecking") is None and opt(argv, "BatchMode") is None
    hop = shlex.split(opt(argv, "ProxyCommand") or "")
    assert hop[hop.index("-S") + 1] == CTL  # the hop to the login node reuses the master
    assert hop[-3:] == ["-W", "%h:%p", T.host]
    assert hop[hop.index("-p") + 1] == "2222" and hop[hop.index("-l") + 1] == "jdoe"
    assert "ControlMaster=no" in hop and "ProxyCommand=false" in hop  # never a second login


def test_jump_argv_takes_the_login_user() -> None:
    argv = jump_argv(SshTarget(site="s", host="alias"), "/c", "node1", 1, 2, user="fromconfig")
    assert argv[argv.index("-l") + 1] == "fromconfig"


def test_proxy_command_escapes_percent() -> None:
    cmd = proxy_command(SshTarget(site="s", host="h", config="/odd%dir/cfg"), "/c%x")
    assert "/odd%%dir/cfg" in cmd and "/c%%x" in cmd and cmd.endswith("-W %h:%p h")


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
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer((LOOPBACK, 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def get(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
        return int(r.status)


def test_local_tunnel_forwards_closes_and_reopens(web: int) -> None:
    lp = free_local_port()
    tunnel = open_tunnel(LocalRemote(), "forward", LOOPBACK, web, lp)
    try:
        assert tunnel.alive() and get(lp) == 200 and tunnel.url == f"http://127.0.0.1:{lp}"
        tunnel.close()
        assert not tunnel.alive() and not port_open(lp)
        tunnel.reopen()
        assert tunnel.alive() and get(lp) == 200
    finally:
        tunnel.close()


def test_relay_listens_on_loopback_only(web: int) -> None:
    lp = free_local_port()
    tunnel = open_tunnel(LocalRemote(), "jump", "ignored-node", web, lp)
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


def test_busy_local_port_is_a_clear_error(web: int) -> None:
    with pytest.raises(RemoteError, match="something else is listening"):
        open_tunnel(LocalRemote(), "forward", LOOPBACK, web, web)


def test_unknown_shape() -> None:
    with pytest.raises(RemoteError, match="Unknown tunnel shape"):
        open_tunnel(LocalRemote(), "sideways", "n", 1, 2)
