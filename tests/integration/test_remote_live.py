"""Both ssh transports and both tunnel shapes against a real, throwaway sshd on 127.0.0.1.

The sshd runs as root (CI runs as root) on a high loopback port with its own host key, config,
authorized keys and known_hosts under a pytest tmp dir; nothing else on the machine is touched.
"Accepted" lines in its log count logins: one login must serve a whole session.

An integration test (a root daemon), not a unit test: it skips where it cannot run (not root, no
sshd), except under ``HPCJ_REQUIRE_TESTBED=1`` (CI), where anything that keeps it from running is
a failure -- a broken sshd start must not turn into a row of skips.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from fakes import FakePrompter
from webserver import get, http_server

from hpcjupyter.errors import RemoteError
from hpcjupyter.transports import SshTarget, make_remote
from hpcjupyter.tunnel import Tunnel, free_local_port, port_open

# One root sshd for the module (module-scoped fixture, a port near 22990): under pytest -n its
# tests must share one worker, or a second worker's sshd loses the port race and its clients
# meet the first one's host key.
pytestmark = pytest.mark.xdist_group("root-sshd")

SSHD = shutil.which("sshd") or next((p for p in ("/usr/sbin/sshd", "/usr/local/sbin/sshd") if os.path.exists(p)), None)

REQUIRED = os.environ.get("HPCJ_REQUIRE_TESTBED") == "1"


def unavailable(reason: str) -> None:
    """Skip -- or fail where the run must be complete (CI sets HPCJ_REQUIRE_TESTBED=1)."""
    if REQUIRED:
        pytest.fail(f"throwaway sshd required (HPCJ_REQUIRE_TESTBED=1) but unavailable: {reason}", pytrace=False)
    pytest.skip(reason)


def missing() -> str | None:
    """Why this machine cannot run a throwaway sshd, or None."""
    if os.name != "posix" or os.geteuid() != 0:
        return "needs root to run a throwaway sshd (CI runs as root)"
    if SSHD is None:
        return "no sshd binary (install openssh-server)"
    if shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
        return "no ssh client"
    return None


@dataclass
class Sshd:
    dir: Path
    port: int
    log: Path
    host_pub: str

    def accepted(self) -> int:
        return self.log.read_text().count("Accepted ")

    def logins_since(self, before: int, expect: int, wait: float = 3.0) -> int:
        """Logins after ``before``. sshd logs "Accepted" before it runs anything for the client, so
        every login that served an operation the caller has seen complete is already in the log:
        waiting up to ``wait`` only covers the log write itself, never an extra login."""
        deadline = time.monotonic() + wait
        while self.accepted() - before < expect and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.accepted() - before

    def config(self, name: str, *, known_hosts: str | None = None, key: str = "userkey") -> str:
        """A client ssh_config with aliases ``login``, ``node`` and ``login-via-proxy``."""
        kh = known_hosts if known_hosts is not None else f"[127.0.0.1]:{self.port} {self.host_pub}\n"
        (self.dir / f"{name}.known_hosts").write_text(kh)
        path = self.dir / f"{name}.ssh_config"
        path.write_text(
            f"""\
Host login node
  HostName 127.0.0.1
  Port {self.port}
  User root
Host login-via-proxy
  HostName 127.0.0.1
  Port {self.port}
  User root
  ProxyCommand ssh -F {path} -o ControlPath=none -W %h:%p login
Host *
  IdentityFile {self.dir / key}
  IdentitiesOnly yes
  UserKnownHostsFile {self.dir / f"{name}.known_hosts"}
  GlobalKnownHostsFile /dev/null
"""
        )
        return str(path)


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    why = missing()
    if why:
        unavailable(why)
    d = tmp_path_factory.mktemp("sshd")
    keygen = lambda name, phrase="": subprocess.run(  # noqa: E731
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", phrase, "-C", name, "-f", str(d / name)], check=True
    )
    keygen("hostkey")
    keygen("userkey")
    keygen("passkey", "sekrit")
    (d / "authorized_keys").write_text((d / "userkey.pub").read_text() + (d / "passkey.pub").read_text())
    port = free_local_port(22990)
    (d / "sshd_config").write_text(
        f"""\
ListenAddress 127.0.0.1
Port {port}
HostKey {d / "hostkey"}
PidFile {d / "sshd.pid"}
AuthorizedKeysFile {d / "authorized_keys"}
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
AllowTcpForwarding yes
MaxSessions 50
LogLevel INFO
SetEnv HOME={d / "home"}
"""
    )
    # The login's shell reads $HOME/.bashrc (bash does under sshd): root's own (pyenv init, ...) must
    # not run in every test command; a command killed mid-`pyenv rehash` leaves its lock behind.
    (d / "home").mkdir()
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
    log = d / "sshd.log"
    with open(log, "w") as logf:
        proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(d / "sshd_config")], stderr=logf, stdout=logf)
    try:
        deadline = time.monotonic() + 10
        while not port_open(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                unavailable(f"sshd did not start: {log.read_text()[-500:]}")
            time.sleep(0.05)
        host_pub = " ".join((d / "hostkey.pub").read_text().split()[:2])
        yield Sshd(d, port, log, host_pub)
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A short private state dir (ControlPath lives there) and no ssh agent."""
    state = tempfile.mkdtemp(prefix="hj", dir="/tmp")
    monkeypatch.setenv("HPCJUPYTER_STATE_DIR", state)
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    yield state
    shutil.rmtree(state, ignore_errors=True)


@pytest.fixture
def cleanup() -> Iterator[Callable[[Any], Any]]:
    """Register remotes and tunnels; tunnels are closed and masters stopped after the test."""
    things: list[Any] = []
    yield lambda thing: (things.append(thing), thing)[1]
    for thing in reversed(things):
        try:
            if isinstance(thing, Tunnel):
                thing.close()
            else:
                getattr(thing, "disconnect", thing.close)()
        except Exception:
            pass


@pytest.fixture(scope="module")
def web() -> Iterator[int]:
    """Stands in for Jupyter: an HTTP server on 127.0.0.1."""
    with http_server() as port:
        yield port


def get_within(port: int, seconds: float) -> float:
    """Seconds until the URL answers 200 (fails after ``seconds``)."""
    t0 = time.monotonic()
    while True:
        try:
            if get(port) == 200:
                return time.monotonic() - t0
        except OSError:
            pass
        assert time.monotonic() - t0 < seconds, f"no answer on 127.0.0.1:{port} within {seconds} s"
        time.sleep(0.1)


def listening_addresses(port: int) -> list[str]:
    out = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True).stdout
    return [line.split()[3].rsplit(":", 1)[0] for line in out.splitlines() if line.strip()]


def wait_dead(tunnel: Tunnel, seconds: float = 5) -> None:
    deadline = time.monotonic() + seconds
    while tunnel.alive():
        assert time.monotonic() < deadline, "tunnel still alive"
        time.sleep(0.1)


def gone(pid: int, seconds: float = 5) -> None:
    """Wait until process ``pid`` no longer exists (a zombie of another parent counts as gone)."""
    deadline = time.monotonic() + seconds
    while Path(f"/proc/{pid}").exists() and "State:\tZ" not in _read(f"/proc/{pid}/status"):
        assert time.monotonic() < deadline, f"process {pid} still there"
        time.sleep(0.02)


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def processes() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def cmdline(pid: int) -> list[str]:
    return _read(f"/proc/{pid}/cmdline").split("\0")


def ignores_sighup(pid: int) -> bool:
    status = _read(f"/proc/{pid}/status").splitlines()
    mask = next((line.split()[1] for line in status if line.startswith("SigIgn:")), "0")
    return bool(int(mask, 16) & (1 << (signal.SIGHUP - 1)))


def target(sshd: Sshd, name: str, transport: str, host: str = "login", **kw: Any) -> SshTarget:
    return SshTarget(site=name, host=host, config=sshd.config(name, **kw), transport=transport)


# --- openssh --------------------------------------------------------------------------------


def test_openssh_one_login_serves_commands_files_and_other_processes(sshd: Sshd, env: str, cleanup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    t = target(sshd, "one", "openssh")
    before = sshd.accepted()
    r = cleanup(make_remote(t, FakePrompter()))
    assert r.connect() == 0
    assert r.control_path.startswith(env)  # short state dir: no /tmp fallback needed
    for i in range(5):
        res = r.run(["echo", f"run {i}", "$HOME"])
        assert res.ok and res.stdout == f"run {i} $HOME\n"
    assert r.run(["sh", "-c", "exit 7"]).returncode == 7
    assert r.run(["cat"], stdin="over stdin").stdout == "over stdin"

    f = tmp_path / "job dir" / "connection.json"
    f.parent.mkdir()
    assert r.read_file(str(f)) is None
    r.write_file(str(f), '{"token": "t"}', 0o600)
    assert r.read_file(str(f)) == '{"token": "t"}' and f.stat().st_mode & 0o777 == 0o600

    again = make_remote(t, FakePrompter())  # a second Remote in this process
    assert again.connect() == 0 and again.run(["true"]).ok
    code = (
        "from hpcjupyter.transports import make_remote, SshTarget;"
        f"r = make_remote(SshTarget(site={t.site!r}, host={t.host!r}, config={t.config!r}, transport='openssh'));"
        "print(r.connect(), r.run(['echo', 'other process']).stdout.strip())"
    )
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert other.stdout.strip() == "0 other process", other.stderr
    assert sshd.logins_since(before, 1) == 1


def test_openssh_forward_tunnel_lives_in_the_master_and_cancels(sshd: Sshd, env: str, cleanup, web: int) -> None:  # type: ignore[no-untyped-def]
    r = cleanup(make_remote(target(sshd, "fwd", "openssh"), FakePrompter()))
    before = sshd.accepted()
    r.connect()
    lp = free_local_port()
    tunnel = cleanup(r.open_tunnel("forward", "127.0.0.1", web, lp))
    assert tunnel.alive() and get(lp) == 200
    assert tunnel.pid == r.master_pid()  # the forward is held by the master: no second login
    if shutil.which("ss"):
        assert listening_addresses(lp) == ["127.0.0.1"]
    assert sshd.logins_since(before, 1) == 1
    tunnel.close()  # ssh -O cancel
    assert not port_open(lp) and r.master_alive()
    tunnel.reopen()
    assert get(lp) == 200


def test_openssh_forward_reopens_after_the_master_is_killed(sshd: Sshd, env: str, cleanup, web: int) -> None:  # type: ignore[no-untyped-def]
    r = cleanup(make_remote(target(sshd, "kill", "openssh"), FakePrompter()))
    lp = free_local_port()
    tunnel = cleanup(r.open_tunnel("forward", "127.0.0.1", web, lp))
    assert get(lp) == 200
    pid = tunnel.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)  # leaves a stale socket behind
    wait_dead(tunnel)
    before = sshd.accepted()
    tunnel.reopen()  # what the health loop does
    assert get_within(lp, 10) < 10
    assert tunnel.pid != pid and sshd.logins_since(before, 1) == 1


def test_openssh_run_logs_in_again_when_the_master_died(sshd: Sshd, env: str, cleanup) -> None:  # type: ignore[no-untyped-def]
    r = cleanup(make_remote(target(sshd, "died", "openssh"), FakePrompter()))
    r.connect()
    pid = r.master_pid()
    os.kill(pid, signal.SIGKILL)
    gone(pid)
    assert r.run(["echo", "back"]).stdout == "back\n"
    assert r.master_alive()


def test_openssh_jump_tunnel_hops_through_the_master(sshd: Sshd, env: str, cleanup, web: int) -> None:  # type: ignore[no-untyped-def]
    r = cleanup(make_remote(target(sshd, "jump", "openssh"), FakePrompter()))
    r.connect()
    before = sshd.accepted()
    lp = free_local_port()
    tunnel = cleanup(r.open_tunnel("jump", "node", web, lp))
    assert tunnel.alive() and get(lp) == 200
    # only the node login is new: the hop to the login node went through the master
    assert sshd.logins_since(before, 1) == 1
    if shutil.which("ss"):
        assert listening_addresses(lp) == ["127.0.0.1"]
    pid = tunnel.pid
    os.kill(pid, signal.SIGTERM)  # "kill the tunnel's ssh process"
    wait_dead(tunnel)
    tunnel.reopen()
    assert get_within(lp, 10) < 10 and tunnel.pid != pid
    tunnel.close()
    assert not port_open(lp)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_openssh_master_behind_proxycommand_survives_the_opening_terminal(sshd: Sshd, env: str, cleanup) -> None:  # type: ignore[no-untyped-def]
    # Without SIGHUP ignored, the ProxyCommand helper dies with ssh's pty session and so does the master.
    # The condition itself, not a pause to see whether it dies: once connect() returned (the
    # opening ssh and its pty are gone), the helper the master reads from must ignore SIGHUP.
    r = cleanup(make_remote(target(sshd, "proxy", "openssh", host="login-via-proxy"), FakePrompter()))
    assert r.connect() == 0
    config = r.target.config
    helpers = [pid for pid in processes() if "-W" in cmdline(pid) and config in cmdline(pid)]
    assert helpers, "no ProxyCommand helper (ssh -W) running for the master"
    for pid in helpers:
        assert ignores_sighup(pid), f"ProxyCommand helper {pid} ({cmdline(pid)}) would die with the terminal"
    assert r.master_alive() and r.run(["echo", "ok"]).stdout == "ok\n"


def test_openssh_relays_host_key_question(sshd: Sshd, env: str, cleanup) -> None:  # type: ignore[no-untyped-def]
    t = target(sshd, "newhost", "openssh", known_hosts="")
    p = FakePrompter("yes")
    r = cleanup(make_remote(t, p))
    assert r.connect() == 1
    assert p.asked == [("Are you sure you want to continue connecting (yes/no/[fingerprint])? ", False)]
    assert "can't be established" in p.shown[0]
    assert sshd.host_pub.split()[1] in (sshd.dir / "newhost.known_hosts").read_text()


def test_openssh_relays_passphrase_and_asks_again_when_wrong(sshd: Sshd, env: str, cleanup) -> None:  # type: ignore[no-untyped-def]
    p = FakePrompter("wrong", "sekrit")
    r = cleanup(make_remote(target(sshd, "phrase", "openssh", key="passkey"), p))
    assert r.connect() == 2
    assert [secret for _, secret in p.asked] == [True, True]
    assert all(q.startswith("Enter passphrase for key") for q, _ in p.asked)
    assert make_remote(r.target, FakePrompter()).connect() == 0  # reused: no second prompt


def test_openssh_changed_host_key_is_refused_clearly(sshd: Sshd, env: str, cleanup) -> None:  # type: ignore[no-untyped-def]
    wrong = " ".join((sshd.dir / "userkey.pub").read_text().split()[:2])
    p = FakePrompter()
    r = cleanup(make_remote(target(sshd, "changed", "openssh", known_hosts=f"[127.0.0.1]:{sshd.port} {wrong}\n"), p))
    with pytest.raises(RemoteError) as info:
        r.connect()
    assert "CHANGED" in info.value.message and "Do not turn off host key checking" in info.value.hint
    assert p.asked == []


def test_openssh_unreachable_is_quick_and_clear(sshd: Sshd, env: str, cleanup) -> None:  # type: ignore[no-untyped-def]
    t = SshTarget(site="down", host="login", port=free_local_port(), config=sshd.config("down"), transport="openssh")
    r = cleanup(make_remote(t, FakePrompter()))
    t0 = time.monotonic()
    with pytest.raises(RemoteError, match="Cannot reach .*Connection refused"):
        r.connect()
    assert time.monotonic() - t0 < 10


def test_openssh_disconnect_stops_the_master(sshd: Sshd, env: str, cleanup) -> None:  # type: ignore[no-untyped-def]
    r = cleanup(make_remote(target(sshd, "bye", "openssh"), FakePrompter()))
    r.connect()
    pid = r.master_pid()
    r.close()
    assert r.master_pid() == pid  # close keeps it for the next invocation
    r.disconnect()
    assert not r.master_alive()


# --- fabric ---------------------------------------------------------------------------------


def test_fabric_one_connection_for_commands_files_and_both_tunnels(sshd: Sshd, env: str, cleanup, tmp_path: Path, web: int) -> None:  # type: ignore[no-untyped-def]
    t = target(sshd, "fab", "fabric")
    before = sshd.accepted()
    r = cleanup(make_remote(t, FakePrompter()))
    assert r.connect() == 0
    assert r.run(["echo", "a b", "$HOME"]).stdout == "a b $HOME\n"
    assert r.run(["sh", "-c", "echo e >&2; exit 3"]).stderr == "e\n"
    assert r.run(["cat"], stdin="x" * 200_000).stdout == "x" * 200_000
    f = tmp_path / "c.json"
    assert r.read_file(str(f)) is None
    r.write_file(str(f), "{}", 0o600)
    assert r.read_file(str(f)) == "{}"
    assert make_remote(t, FakePrompter()).connect() == 0  # same process: same connection
    assert sshd.logins_since(before, 1) == 1

    lp = free_local_port()
    fwd = cleanup(r.open_tunnel("forward", "127.0.0.1", web, lp))
    assert fwd.alive() and get(lp) == 200
    if shutil.which("ss"):
        assert listening_addresses(lp) == ["127.0.0.1"]
    r.connection.transport.close()  # the connection drops
    wait_dead(fwd)
    fwd.reopen()
    assert get_within(lp, 10) < 10

    before = sshd.accepted()
    jp = free_local_port()
    jump = cleanup(r.open_tunnel("jump", "node", web, jp))
    assert jump.alive() and get(jp) == 200
    assert sshd.logins_since(before, 1) == 1  # the node login, inside the existing connection
    jump.close()
    assert not port_open(jp)


def test_fabric_relays_passphrase(sshd: Sshd, env: str, cleanup) -> None:  # type: ignore[no-untyped-def]
    p = FakePrompter("wrong", "sekrit")
    r = cleanup(make_remote(target(sshd, "fabphrase", "fabric", key="passkey"), p))
    assert r.connect() == 2 and r.run(["true"]).ok


def test_fabric_refuses_unknown_and_changed_host_keys(sshd: Sshd, env: str, cleanup) -> None:  # type: ignore[no-untyped-def]
    r = cleanup(make_remote(target(sshd, "fabnew", "fabric", known_hosts=""), FakePrompter()))
    with pytest.raises(RemoteError, match="could not be verified") as info:
        r.connect()
    assert "SHA256:" in info.value.message
    wrong = " ".join((sshd.dir / "userkey.pub").read_text().split()[:2])
    r = cleanup(make_remote(target(sshd, "fabchg", "fabric", known_hosts=f"[127.0.0.1]:{sshd.port} {wrong}\n"), FakePrompter()))
    with pytest.raises(RemoteError, match="CHANGED"):
        r.connect()


def test_fabric_unreachable_is_clear(sshd: Sshd, env: str, cleanup) -> None:  # type: ignore[no-untyped-def]
    t = SshTarget(site="fabdown", host="login", port=free_local_port(), config=sshd.config("fabdown"), transport="fabric")
    r = cleanup(make_remote(t, FakePrompter()))
    with pytest.raises(RemoteError, match="Cannot reach .*connection refused"):
        r.connect()


@pytest.mark.parametrize("shape", ["forward", "jump"])
def test_openssh_busy_local_port_is_a_clear_error(sshd: Sshd, env: str, cleanup, web: int, shape: str) -> None:  # type: ignore[no-untyped-def]
    r = cleanup(make_remote(target(sshd, f"busy{shape}", "openssh"), FakePrompter()))
    with pytest.raises(RemoteError, match="something else is listening"):
        r.open_tunnel(shape, "127.0.0.1" if shape == "forward" else "node", web, web)


def test_a_throwaway_sshd_that_cannot_run_fails_a_complete_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under HPCJ_REQUIRE_TESTBED=1 a missing or failed sshd is a failure; elsewhere a skip."""
    monkeypatch.setattr(sys.modules[__name__], "REQUIRED", True)
    with pytest.raises(pytest.fail.Exception, match="sshd did not start"):
        unavailable("sshd did not start: boom")
    monkeypatch.setattr(sys.modules[__name__], "REQUIRED", False)
    with pytest.raises(pytest.skip.Exception):
        unavailable("sshd did not start: boom")
