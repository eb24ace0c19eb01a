"""local transport, and the shared read/write scripts run by a real sh (as the login shell would)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from hpcjupyter.errors import RemoteError
from hpcjupyter.transports import choose_transport, make_remote
from hpcjupyter.transports.base import READ_MISSING, Result, SshTarget, interpret_read, read_file_argv, write_file_argv
from hpcjupyter.transports.local import LocalRemote


@pytest.fixture
def local() -> LocalRemote:
    return LocalRemote()


def test_run_uses_argv_without_a_shell(local: LocalRemote) -> None:
    res = local.run(["printf", "%s|", "a b", "$HOME", "`x`"])
    assert res.ok and res.stdout == "a b|$HOME|`x`|"


def test_run_feeds_stdin_and_reports_exit_status(local: LocalRemote) -> None:
    assert local.run(["cat"], stdin="hello").stdout == "hello"
    assert local.run(["sh", "-c", "echo oops >&2; exit 3"]) == Result(3, "", "oops\n")


def test_missing_command_is_127(local: LocalRemote) -> None:
    assert local.run(["hpcj-no-such-command"]).returncode == 127


def test_timeout(local: LocalRemote) -> None:
    with pytest.raises(RemoteError, match="did not finish"):
        local.run(["sleep", "5"], timeout=0.2)


def test_read_write(local: LocalRemote, tmp_path: Path) -> None:
    p = tmp_path / "connection.json"
    assert local.read_file(str(p)) is None
    local.write_file(str(p), '{"port": 1}', 0o600)
    assert local.read_file(str(p)) == '{"port": 1}'
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    local.write_file(str(p), "#!/bin/sh\n", 0o700)
    assert stat.S_IMODE(p.stat().st_mode) == 0o700
    assert [f.name for f in tmp_path.iterdir()] == ["connection.json"]  # no temporary left


def test_write_into_missing_dir_is_clear(local: LocalRemote, tmp_path: Path) -> None:
    with pytest.raises(RemoteError, match="Could not write"):
        local.write_file(str(tmp_path / "nope" / "f"), "x")


# the scripts the ssh transports send, run here by a real sh


def test_read_script(local: LocalRemote, tmp_path: Path) -> None:
    p = tmp_path / "dir with space" / "job.log"
    p.parent.mkdir()
    assert local.run(read_file_argv(str(p))).returncode == READ_MISSING
    p.write_text("READY host=nid001 port=8888\n")
    res = local.run(read_file_argv(str(p)))
    assert res.ok and res.stdout == "READY host=nid001 port=8888\n"
    assert interpret_read(res, str(p), "here") == res.stdout
    with pytest.raises(RemoteError, match="Could not read"):
        interpret_read(Result(1, "", "cat: x: Permission denied"), "x", "here")


def test_write_script_is_atomic_private_and_moded(local: LocalRemote, tmp_path: Path) -> None:
    p = tmp_path / "job dir" / "job.sh"
    p.parent.mkdir()
    res = local.run(write_file_argv(str(p), 0o700), stdin="#!/bin/bash\necho 'hi'\n")
    assert res.ok, res.stderr
    assert p.read_text() == "#!/bin/bash\necho 'hi'\n"
    assert stat.S_IMODE(p.stat().st_mode) == 0o700
    assert os.listdir(p.parent) == ["job.sh"]
    bad = local.run(write_file_argv(str(tmp_path / "missing" / "f")), stdin="x")
    assert not bad.ok


# transport choice


def test_make_remote_picks_by_transport(mocker) -> None:  # type: ignore[no-untyped-def]
    assert isinstance(make_remote(SshTarget(site="local", host="localhost", transport="local")), LocalRemote)
    mocker.patch("shutil.which", return_value="/usr/bin/ssh")
    assert choose_transport(SshTarget(site="s", host="h")) == ("openssh" if os.name == "posix" else "fabric")
    mocker.patch("shutil.which", return_value=None)
    assert choose_transport(SshTarget(site="s", host="h")) == "fabric"
    assert choose_transport(SshTarget(site="s", host="h", transport="openssh")) == "openssh"


def test_auto_without_ssh_gives_fabric(mocker) -> None:  # type: ignore[no-untyped-def]
    from hpcjupyter.transports.fabric_remote import FabricRemote

    mocker.patch("shutil.which", return_value=None)
    assert isinstance(make_remote(SshTarget(site="s", host="h")), FabricRemote)


def test_unknown_transport_is_a_clear_error() -> None:
    with pytest.raises(RemoteError, match="Unknown ssh transport 'telnet'"):
        SshTarget(site="s", host="h", transport="telnet")


def test_importing_remote_stays_light() -> None:
    import subprocess
    import sys

    code = (
        "import sys, hpcjupyter.transports, hpcjupyter.transports.openssh, hpcjupyter.transports.fabric_remote, hpcjupyter.tunnel;"
        "print([m for m in ('paramiko', 'fabric', 'pexpect', 'invoke') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_scripts_expand_a_leading_tilde(local: LocalRemote, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert local.run(write_file_argv("~/f.txt"), stdin="home").ok
    assert (tmp_path / "f.txt").read_text() == "home"
    assert local.run(read_file_argv("~/f.txt")).stdout == "home"
    assert local.run(read_file_argv("~/missing")).returncode == READ_MISSING
