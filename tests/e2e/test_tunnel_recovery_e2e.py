"""Issue 5: "Killing the tunnel's ssh process while connect runs: the URL answers again within
10 s without user action" -- for openssh `jump` (the ssh to the node) and openssh `forward` (the
forward lives in the ControlMaster: a new master, key login, no prompt, the forward re-added).
The local end of the tunnel binds 127.0.0.1 only, before and after."""

from __future__ import annotations

import os
import signal
import time

import pytest
from clihelpers import port_and_token, read_url, stop
from tbcli import control_sockets, listeners, master_pid, pid_alive, short_cli, ssh_with_local_forward
from tbprofiles import profile_text

from hpcjupyter.probe import api_status

pytestmark = pytest.mark.e2e

RECOVERY_DEADLINE = 10.0
"""The issue's bound, used as the polling deadline (no tighter wall-clock assertion)."""


def only_loopback(port: int) -> list[tuple[str, str]]:
    """The listeners on the tunnel's local port: there is one, on 127.0.0.1, and it is ssh's."""
    found = listeners(port)
    assert found, f"nothing listens on {port}"
    assert all(addr == f"127.0.0.1:{port}" for addr, _ in found), found
    assert all('"ssh"' in proc for _, proc in found), found
    return found


def wait_answering(port: int, token: str, seconds: float) -> float | None:
    """Seconds until GET /api/status with the token answers 200 again; None if not within ``seconds``."""
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        if api_status(port, "/", token, timeout=1.0) == 200:
            return time.monotonic() - start
        time.sleep(0.2)
    return None


@pytest.mark.parametrize("tunnel", ["jump", "forward"])
def test_killed_tunnel_ssh_is_reopened(disruptive, tunnel: str) -> None:
    testbed = disruptive
    with short_cli() as cli:
        site = f"tb-rec-{tunnel}"
        cli.write_profile(site, profile_text(testbed, tunnel=tunnel))
        res = cli.run("submit", "--site", site)
        assert res.returncode == 0, res.stderr
        job = res.stdout.strip().splitlines()[-1]
        connect = cli.start("connect", job, "--no-browser")
        try:
            url = read_url(connect)
            port, token = port_and_token(url)
            assert api_status(port, "/", token) == 200
            only_loopback(port)
            (sock,) = control_sockets(cli)
            master = master_pid(sock)
            assert master is not None

            if tunnel == "jump":
                victims = ssh_with_local_forward(port)
                assert len(victims) == 1, victims  # the ssh to the node, not the master
                assert master not in victims
            else:
                assert ssh_with_local_forward(port) == []  # added with -O forward: it is in the master
                victims = [master]
            (victim,) = victims
            os.kill(victim, signal.SIGKILL)
            killed_at = time.monotonic()
            while pid_alive(victim) and time.monotonic() - killed_at < 5:
                time.sleep(0.05)
            assert api_status(port, "/", token, timeout=1.0) != 200, "the tunnel did not go down"

            took = wait_answering(port, token, RECOVERY_DEADLINE - (time.monotonic() - killed_at))
            took = None if took is None else time.monotonic() - killed_at
            print(f"{tunnel}: the URL answered again {took} s after the kill")
            assert took is not None, f"not answering {RECOVERY_DEADLINE:g} s after the kill"
            assert connect.poll() is None, "connect exited"

            # Same local port (the browser's URL still works), a new ssh behind it, loopback only.
            only_loopback(port)
            if tunnel == "jump":
                assert ssh_with_local_forward(port) not in ([], [victim])
                assert master_pid(sock) == master  # the login was not touched
            else:
                new_master = master_pid(sock)
                assert new_master not in (None, master)
                assert control_sockets(cli) == [sock]
        finally:
            err = stop(connect)
            cli.run("cancel", job)
        assert "re-opening" in err, err
        assert "ssh asked" not in err and "Traceback" not in err, err
