"""fabric transport: known_hosts and key discovery, OpenSSH-like authentication, error mapping."""

from __future__ import annotations

import errno
import os
import socket

import pytest
from fakes import FakePrompter
from paramiko.ssh_exception import (
    AuthenticationException,
    BadAuthenticationType,
    BadHostKeyException,
    NoValidConnectionsError,
    SSHException,
)

from hpcjupyter.errors import RemoteError
from hpcjupyter.transports import fabric_remote as fr


class FakeTransport:
    """A server wanting publickey, then a TOTP by keyboard-interactive (partial auth)."""

    def __init__(self, first: list[str], code: str = "123456", key_ok: bool = True) -> None:
        self.first, self.code, self.key_ok = first, code, key_ok
        self.stage = 0
        self.authenticated = False
        self.calls: list[str] = []

    def getpeername(self) -> tuple[str, int]:
        return ("192.0.2.7", 22)

    def is_authenticated(self) -> bool:
        return self.authenticated

    def auth_none(self, user: str) -> list[str]:
        self.calls.append("none")
        raise BadAuthenticationType("no", self.first)

    def auth_publickey(self, user: str, key: object) -> list[str]:
        self.calls.append("publickey")
        if "publickey" not in self.first:
            raise BadAuthenticationType("no", self.first)
        if not self.key_ok:
            raise AuthenticationException("no")
        return ["keyboard-interactive"]

    def auth_interactive(self, user: str, handler, submethods: str = "") -> list[str]:  # type: ignore[no-untyped-def]
        self.calls.append("keyboard-interactive")
        answers = handler("", "Google Authenticator", [("Verification code: ", False)])
        if answers == [self.code]:
            self.authenticated = True
            return []
        raise AuthenticationException("no")

    def auth_password(self, user: str, password: str, fallback: bool = True) -> list[str]:
        self.calls.append("password")
        assert fallback is False
        if password == "pw":
            self.authenticated = True
            return []
        raise AuthenticationException("no")


@pytest.fixture
def one_key(mocker):  # type: ignore[no-untyped-def]
    return mocker.patch.object(fr, "_keys", return_value=iter(["KEY"]))


def test_publickey_then_totp(one_key) -> None:  # type: ignore[no-untyped-def]
    t = FakeTransport(["publickey"])
    p = FakePrompter("000000", "123456")
    asker = fr._Asker(p)
    fr._authenticate(t, "jdoe", {}, asker)
    assert t.authenticated
    assert t.calls == ["none", "publickey", "keyboard-interactive", "keyboard-interactive"]
    assert p.asked == [("Verification code: ", True)] * 2  # echo False in the request: secret
    assert p.shown == ["Google Authenticator", "Permission denied, please try again.", "Google Authenticator"]
    assert asker.answered == 2


def test_password_when_keys_fail(mocker) -> None:  # type: ignore[no-untyped-def]
    mocker.patch.object(fr, "_keys", return_value=iter([]))
    t = FakeTransport(["publickey", "password"])
    p = FakePrompter("bad", "pw")
    fr._authenticate(t, "jdoe", {"hostname": "login.example.org"}, p)
    assert t.authenticated
    assert p.asked == [("jdoe@login.example.org's password: ", True)] * 2


def test_gives_up_after_three_wrong_answers(mocker) -> None:  # type: ignore[no-untyped-def]
    mocker.patch.object(fr, "_keys", return_value=iter([]))
    t = FakeTransport(["password"])
    with pytest.raises(AuthenticationException, match="permission denied"):
        fr._authenticate(t, "jdoe", {}, FakePrompter("a", "b", "c"))
    assert t.calls.count("password") == 3


def test_load_key_asks_passphrase_again_when_wrong(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import subprocess

    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "s3cret", "-f", str(key)], check=True)
    p = FakePrompter("wrong", "s3cret")
    loaded = fr._load_key(str(key), p)
    assert loaded is not None
    assert p.asked == [(f"Enter passphrase for key '{key}': ", True)] * 2
    assert fr._load_key(str(key), FakePrompter("")) is None  # empty answer skips


def test_known_hosts_files_follow_openssh() -> None:
    home = os.path.expanduser("~")
    assert fr.known_hosts_files({}) == [
        f"{home}/.ssh/known_hosts",
        f"{home}/.ssh/known_hosts2",
        "/etc/ssh/ssh_known_hosts",
        "/etc/ssh/ssh_known_hosts2",
    ]
    assert fr.known_hosts_files({"userknownhostsfile": "/a /b", "globalknownhostsfile": "/dev/null"}) == ["/a", "/b", "/dev/null"]


def test_identity_files() -> None:
    assert fr.identity_files({"identityfile": ["~/k1"]}) == [os.path.expanduser("~/k1")]
    assert os.path.expanduser("~/.ssh/id_ed25519") in fr.identity_files({})


def test_next_method_order() -> None:
    assert fr.next_method(["password", "keyboard-interactive", "publickey"], set()) == "publickey"
    assert fr.next_method(["password", "keyboard-interactive"], {"keyboard-interactive"}) == "password"
    assert fr.next_method(["gssapi-with-mic"], set()) is None


class _Key:
    fingerprint = "SHA256:abc"

    def get_name(self) -> str:
        return "ssh-ed25519"


@pytest.mark.parametrize(
    ("exc", "words"),
    [
        (socket.gaierror(-2, "Name or service not known"), "could not be resolved"),
        (NoValidConnectionsError({("127.0.0.1", 22): OSError(errno.ECONNREFUSED, "refused")}), "connection refused"),
        (socket.timeout("timed out"), "timed out"),
        (OSError(errno.ENETUNREACH, "Network is unreachable"), "Network is unreachable"),
        (AuthenticationException("permission denied (publickey)"), "refused"),
        (SSHException("Error reading SSH protocol banner"), "ssh greeting"),
        (fr.UnknownHostKey("[127.0.0.1]:22990", "SHA256:abc"), "could not be verified"),
    ],
)
def test_classify_exception(exc: BaseException, words: str) -> None:
    err = fr.classify_exception(exc, "login.example.org")
    assert isinstance(err, RemoteError) and words in err.message and err.hint


def test_changed_host_key() -> None:
    err = fr.classify_exception(BadHostKeyException("127.0.0.1", _Key(), _Key()), "h", 22990)
    assert "CHANGED" in err.message and "SHA256:abc" in err.message
    assert "ssh-keygen -R '[127.0.0.1]:22990'" in err.hint and "Do not turn off" in err.hint


def test_reject_policy_never_adds() -> None:
    policy = fr._reject_policy()
    with pytest.raises(fr.UnknownHostKey) as info:
        policy.missing_host_key(None, "h", _Key())
    assert info.value.fingerprint == "SHA256:abc"


def test_connection_is_hardened(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "ssh_config"
    kh = tmp_path / "kh"
    kh.write_text("[127.0.0.1]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOEPCXbv7AS5+GtRkmLDe0vU2o/zBi/eti2ifLziKdhG\n")
    cfg.write_text(
        f"Host jump\n  HostName 127.0.0.2\nHost login\n  HostName 127.0.0.1\n  Port 2222\n  User jdoe\n"
        f"  ProxyJump jump\nHost *\n  UserKnownHostsFile {kh}\n  GlobalKnownHostsFile /dev/null\n"
    )
    target = fr.SshTarget(site="s", host="login", config=str(cfg), transport="fabric")
    remote = fr.FabricRemote(target, FakePrompter())
    conn = remote.connection
    try:
        assert (conn.host, conn.port, conn.user) == ("127.0.0.1", 2222, "jdoe")
        assert conn.connect_timeout == 15
        for c in (conn, conn.gateway):  # the ProxyJump hop too
            assert type(c.client._policy).__name__ == "Reject"
        assert conn.client.get_host_keys() is not None
        assert "[127.0.0.1]:2222" in conn.client._system_host_keys
    finally:
        remote.close()


def test_missing_config_file_is_clear() -> None:
    remote = fr.FabricRemote(fr.SshTarget(site="s", host="h", config="/nonexistent/cfg", transport="fabric"), FakePrompter())
    with pytest.raises(RemoteError, match="does not exist"):
        remote.connection  # noqa: B018


def test_fabric_unknown_shape_fails_before_any_login(mocker) -> None:  # type: ignore[no-untyped-def]
    from hpcjupyter.transports.base import SshTarget

    remote = fr.FabricRemote(SshTarget(site="s", host="h", transport="fabric"), FakePrompter())
    connect = mocker.patch.object(fr.FabricRemote, "connect")
    hop = mocker.patch.object(fr.FabricRemote, "hop_transport")
    with pytest.raises(RemoteError, match="Unknown tunnel shape 'sideways'"):
        remote.open_tunnel("sideways", "n", 1, 2)
    assert not connect.called and not hop.called


def test_fabric_path_imports_nothing_posix_only() -> None:
    """Windows uses the fabric transport: importing it (and what it uses: tunnels, prompts, the
    lock helper) must work where fcntl, termios and pty do not exist."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "for m in ('fcntl', 'termios', 'pty', 'tty', 'resource', 'pwd', 'grp'): sys.modules[m] = None\n"
        "import hpcjupyter.transports, hpcjupyter.transports.fabric_remote, hpcjupyter.transports.prompts\n"
        "import hpcjupyter.transports.local, hpcjupyter.tunnel, hpcjupyter.locks\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr
