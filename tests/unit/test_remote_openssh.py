"""openssh transport: argv building, ControlPath, error classification, and the thin runner."""

from __future__ import annotations

import os
import shlex

import pytest

from hpcjupyter.errors import RemoteError
from hpcjupyter.transports import openssh
from hpcjupyter.transports.base import Result, SshTarget
from hpcjupyter.transports.openssh import (
    SOCKET_PATH_BUDGET,
    OpensshRemote,
    base_argv,
    classify_ssh_error,
    control_argv,
    control_path,
    master_argv,
    parse_config_dump,
    parse_master_pid,
    run_argv,
)
from hpcjupyter.transports.openssh_tunnels import forward_argv, jump_argv, proxy_command

T = SshTarget(site="archer2", host="login.archer2.ac.uk", user="jdoe", port=2222, config="/etc/hpcj/ssh_config")
PLAIN = SshTarget(site="cirrus", host="cirrus")


def opt(argv: list[str], name: str) -> str | None:
    """The value of ``-o Name=value`` in argv."""
    for i, word in enumerate(argv[:-1]):
        if word == "-o" and argv[i + 1].startswith(name + "="):
            return argv[i + 1].split("=", 1)[1]
    return None


# --- argv ---


def test_base_argv_passes_config_user_port_and_bounds_connect_time() -> None:
    argv = base_argv(T)
    assert argv[:7] == ["ssh", "-F", "/etc/hpcj/ssh_config", "-l", "jdoe", "-p", "2222"]
    assert opt(argv, "ConnectTimeout") == "15"


def test_base_argv_leaves_user_config_alone_when_profile_has_none() -> None:
    argv = base_argv(PLAIN)
    assert "-F" not in argv and "-l" not in argv and "-p" not in argv


def test_base_argv_expands_tilde_in_config() -> None:
    argv = base_argv(SshTarget(site="s", host="h", config="~/x/ssh_config"))
    assert argv[2] == os.path.expanduser("~/x/ssh_config")


def test_master_argv_opens_a_persistent_background_master() -> None:
    argv = master_argv(T, "/s/ctl")
    assert argv[-1] == T.host
    for flag in ("-M", "-N", "-f"):
        assert flag in argv
    assert argv[argv.index("-S") + 1] == "/s/ctl"
    assert opt(argv, "ControlMaster") == "yes"
    assert opt(argv, "ControlPersist") == "4h"
    assert opt(argv, "ServerAliveInterval") == "30"
    # the first connection may ask: never batch mode, never host key checking off
    assert opt(argv, "BatchMode") is None
    assert opt(argv, "StrictHostKeyChecking") is None
    assert opt(argv, "UserKnownHostsFile") is None


def test_run_argv_is_a_mux_client_that_cannot_log_in_by_itself() -> None:
    argv = run_argv(T, "/s/ctl", ["sbatch", "--parsable", "/work/x y/job.sh"])
    assert argv[argv.index("-S") + 1] == "/s/ctl"
    assert opt(argv, "ControlMaster") == "no"
    assert opt(argv, "ProxyCommand") == "false"
    assert opt(argv, "BatchMode") == "yes"
    assert argv[-2:] == [T.host, "sbatch --parsable '/work/x y/job.sh'"]
    assert shlex.split(argv[-1]) == ["sbatch", "--parsable", "/work/x y/job.sh"]
    assert "-T" in argv


def test_control_argv() -> None:
    argv = control_argv(T, "/s/ctl", "forward", "-L", "127.0.0.1:1:n:2")
    assert argv[-5:] == ["-L", "127.0.0.1:1:n:2", "-O", "forward", T.host]
    assert opt(argv, "ControlMaster") == "no"


def test_parse_master_pid() -> None:
    assert parse_master_pid("Master running (pid=8819)\r\n") == 8819
    assert parse_master_pid("Control socket connect(/x): No such file or directory\n") is None


def test_parse_config_dump_reads_ssh_G() -> None:
    text = "user jdoe\nhostname login.archer2.ac.uk\nport 22\nidentityfile ~/.ssh/id_ed25519\nidentityfile ~/.ssh/id_rsa\n"
    dump = parse_config_dump(text)
    assert dump["user"] == "jdoe" and dump["identityfile"] == "~/.ssh/id_ed25519"


# --- ControlPath ---


def test_control_path_is_short_stable_and_per_site(tmp_path: os.PathLike[str]) -> None:
    a = control_path(T, tmp_path)
    assert a == control_path(T, tmp_path)
    assert a != control_path(PLAIN, tmp_path)
    assert a != control_path(SshTarget(site="archer2", host="login.archer2.ac.uk", user="other"), tmp_path)
    assert os.path.basename(a).startswith("archer2-")
    assert len(os.fsencode(a)) <= SOCKET_PATH_BUDGET


def test_control_path_budget_leaves_room_for_ssh_temp_suffix() -> None:
    # ssh binds "<ControlPath>.<16 random chars>" first; macOS allows 104 bytes with the NUL.
    assert SOCKET_PATH_BUDGET + len(".0123456789abcdef") + 1 <= 104


def test_control_path_falls_back_to_tmp_when_state_dir_is_long() -> None:
    long_base = "/Users/" + "a" * 40 + "/Library/Application Support/hpcjupyter"
    path = control_path(T, long_base)  # type: ignore[arg-type]
    assert path.startswith(f"/tmp/hpcj-{os.getuid()}/")
    assert len(os.fsencode(path)) <= SOCKET_PATH_BUDGET


def test_control_path_avoids_spaces_even_when_short() -> None:
    path = control_path(T, "/Users/me/App Support")  # type: ignore[arg-type]
    assert " " not in path and path.startswith("/tmp/hpcj-")


def test_control_path_uses_state_dir_env(tmp_path: os.PathLike[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HPCJUPYTER_STATE_DIR", "/tmp/s")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert control_path(T).startswith("/tmp/s/cm/archer2-")


def test_control_path_prefers_runtime_dir(tmp_path: os.PathLike[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HPCJUPYTER_STATE_DIR", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/tmp")
    assert control_path(T).startswith("/tmp/hpcjupyter/archer2-")


def test_control_name_sanitises_site() -> None:
    name = openssh.control_name(SshTarget(site="Imperial CX3/../x", host="h"))
    assert "/" not in name and " " not in name


def test_ensure_control_dir_is_private(tmp_path: os.PathLike[str]) -> None:
    d = os.path.join(tmp_path, "cm")
    os.makedirs(d, mode=0o755)
    os.chmod(d, 0o755)
    openssh.ensure_control_dir(os.path.join(d, "sock"))
    assert os.stat(d).st_mode & 0o777 == 0o700


# --- error classification (real OpenSSH 9.2 stderr) ---

HOST_KEY_CHANGED = """\
@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @
@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!
Someone could be eavesdropping on you right now (man-in-the-middle attack)!
It is also possible that a host key has just been changed.
The fingerprint for the ED25519 key sent by the remote host is
SHA256:ixDia2wb2ISCwFG6OzXBmnsa3yi3QxaUXSWzhjBpozs.
Please contact your system administrator.
Add correct host key in /home/jdoe/.ssh/known_hosts to get rid of this message.
Offending ED25519 key in /home/jdoe/.ssh/known_hosts:1
  remove with:
  ssh-keygen -f "/home/jdoe/.ssh/known_hosts" -R "login.archer2.ac.uk"
Host key for login.archer2.ac.uk has changed and you have requested strict checking.
Host key verification failed.
"""


@pytest.mark.parametrize(
    ("stderr", "expect"),
    [
        ("ssh: connect to host login.archer2.ac.uk port 22: Connection refused\r\n", "Connection refused"),
        ("ssh: connect to host 10.0.0.1 port 22: No route to host\n", "No route to host"),
        ("ssh: connect to host 10.255.255.1 port 22: Connection timed out\n", "Connection timed out"),
        ("Connection timed out during banner exchange\nConnection to 10.255.255.1 port 22 timed out\n", "timed out"),
        ("ssh: connect to host x port 22: Network is unreachable\n", "Network is unreachable"),
        ("kex_exchange_identification: read: Connection reset by peer\n", "Connection reset by peer"),
        ("kex_exchange_identification: Connection closed by remote host\n", "Connection closed by remote host"),
    ],
)
def test_unreachable(stderr: str, expect: str) -> None:
    err = classify_ssh_error(stderr, "login.archer2.ac.uk")
    assert err.message.startswith("Cannot reach login.archer2.ac.uk")
    assert expect in err.message
    assert "online" in err.hint and "VPN" in err.hint


def test_name_not_resolved() -> None:
    err = classify_ssh_error("ssh: Could not resolve hostname nosuchhost.invalid: Name or service not known\n", "nosuchhost.invalid")
    assert "could not be resolved" in err.message and "Name or service not known" in err.message
    assert "typos" in err.hint


@pytest.mark.parametrize(
    "stderr",
    [
        "root@127.0.0.1: Permission denied (publickey).\r\n",
        "jdoe@login.archer2.ac.uk: Permission denied (publickey,keyboard-interactive).\n",
        "Permission denied, please try again.\nPermission denied, please try again.\njdoe@h: Permission denied (password).\n",
    ],
)
def test_auth_failure(stderr: str) -> None:
    err = classify_ssh_error(stderr, "login.archer2.ac.uk")
    assert "refused" in err.message and "permission denied" in err.message
    assert "username" in err.hint and "key" in err.hint


def test_auth_methods_named() -> None:
    err = classify_ssh_error("jdoe@h: Permission denied (publickey,keyboard-interactive).\n", "h")
    assert "publickey,keyboard-interactive" in err.message


def test_too_many_auth_failures_points_at_identities_only() -> None:
    err = classify_ssh_error("Received disconnect from 1.2.3.4 port 22:2: Too many authentication failures\n", "h")
    assert "IdentitiesOnly" in err.message


def test_host_key_changed_says_check_fingerprints_and_not_bypass() -> None:
    err = classify_ssh_error(HOST_KEY_CHANGED, "login.archer2.ac.uk")
    assert "CHANGED" in err.message
    assert "SHA256:ixDia2wb2ISCwFG6OzXBmnsa3yi3QxaUXSWzhjBpozs" in err.message
    assert "fingerprints the site publishes" in err.hint or "ones the site publishes" in err.hint
    assert "Do not turn off host key checking" in err.hint
    assert 'ssh-keygen -f "/home/jdoe/.ssh/known_hosts" -R "login.archer2.ac.uk"' in err.hint


def test_host_key_verification_failed_alone() -> None:
    err = classify_ssh_error("Host key verification failed.\r\n", "h")
    assert "could not be verified" in err.message and "CHANGED" not in err.message
    assert "Do not turn off host key checking" in err.hint


def test_no_common_algorithm() -> None:
    text = "Unable to negotiate with 192.0.2.7 port 22: no matching host key type found. Their offer: ssh-rsa,ssh-dss\n"
    err = classify_ssh_error(text, "h")
    assert "no common algorithm" in err.message and "ssh-rsa" in err.message


def test_bad_config() -> None:
    err = classify_ssh_error("/etc/hpcj/ssh_config: line 3: Bad configuration option: foo\n", "h")
    assert "configuration" in err.message and "line 3" in err.message


def test_unknown_failure_keeps_ssh_words() -> None:
    err = classify_ssh_error("something odd happened\n", "h")
    assert "something odd happened" in err.message and "ssh -v" in err.hint


def test_errors_are_one_paragraph_without_traceback() -> None:
    for text in ("ssh: connect to host x port 22: Connection refused", HOST_KEY_CHANGED, "x: Permission denied (publickey)."):
        err = classify_ssh_error(text, "x")
        assert isinstance(err, RemoteError)
        assert "Traceback" not in str(err) and err.hint


# --- the runner, with ssh faked ---


@pytest.fixture
def remote(tmp_path: os.PathLike[str]) -> OpensshRemote:
    return OpensshRemote(PLAIN, prompter=None, ssh="/usr/bin/ssh", control_dir=tmp_path)  # type: ignore[arg-type]


def test_run_connects_once_then_reuses(remote: OpensshRemote, mocker) -> None:  # type: ignore[no-untyped-def]
    connect = mocker.patch.object(OpensshRemote, "connect", return_value=0)
    calls = mocker.patch.object(openssh, "_run", return_value=Result(0, "ok\n", ""))
    remote.connect()
    remote._connected = True
    for _ in range(3):
        assert remote.run(["true"]).stdout == "ok\n"
    assert connect.call_count == 1
    assert all(c.args[0][-1] == "true" for c in calls.call_args_list)


def test_run_logs_in_again_when_the_master_died(remote: OpensshRemote, mocker) -> None:  # type: ignore[no-untyped-def]
    remote._connected = True
    connect = mocker.patch.object(OpensshRemote, "connect", return_value=1)
    mocker.patch.object(OpensshRemote, "master_alive", return_value=False)
    run = mocker.patch.object(
        openssh, "_run", side_effect=[Result(255, "", "Control socket connect(x): Connection refused\n"), Result(0, "job 1\n", "")]
    )
    assert remote.run(["sbatch", "x"]).stdout == "job 1\n"
    assert connect.call_count == 1 and run.call_count == 2


def test_run_keeps_a_remote_255_when_the_master_lives(remote: OpensshRemote, mocker) -> None:  # type: ignore[no-untyped-def]
    remote._connected = True
    mocker.patch.object(OpensshRemote, "master_alive", return_value=True)
    mocker.patch.object(openssh, "_run", return_value=Result(255, "", "exit 255 from the command"))
    assert remote.run(["false"]).returncode == 255


def test_read_file_missing_is_none_and_errors_raise(remote: OpensshRemote, mocker) -> None:  # type: ignore[no-untyped-def]
    remote._connected = True
    run = mocker.patch.object(openssh, "_run", return_value=Result(44, "", ""))
    assert remote.read_file("/work/x/connection.json") is None
    cmd = shlex.split(run.call_args.args[0][-1])
    assert cmd[:2] == ["sh", "-c"] and cmd[-1] == "/work/x/connection.json"
    assert "ls" in cmd[2] and "cat" in cmd[2]  # directory listed first (NFS attribute cache)
    run.return_value = Result(1, "", "cat: x: Permission denied\n")
    with pytest.raises(RemoteError, match="Permission denied"):
        remote.read_file("/work/x/connection.json")


def test_write_file_sends_text_on_stdin(remote: OpensshRemote, mocker) -> None:  # type: ignore[no-untyped-def]
    remote._connected = True
    run = mocker.patch.object(openssh, "_run", return_value=Result(0, "", ""))
    remote.write_file("/work/x/job.sh", "#!/bin/bash\n", 0o700)
    assert run.call_args.args[1] == "#!/bin/bash\n"
    assert "chmod 700" in shlex.split(run.call_args.args[0][-1])[2]


def test_ssh_missing_is_a_clear_error(mocker) -> None:  # type: ignore[no-untyped-def]
    mocker.patch("shutil.which", return_value=None)
    with pytest.raises(RemoteError, match="`ssh` command was not found"):
        OpensshRemote(PLAIN)


def test_timeout_is_a_remote_error(remote: OpensshRemote) -> None:
    with pytest.raises(RemoteError, match="did not finish within 0.2 s"):
        openssh._run(["sleep", "5"], None, 0.2, "h")


# --- tunnel argv (openssh_tunnels) ---

IMPERIAL = SshTarget(site="imperial", host="login.cx3.hpc.ic.ac.uk", user="jdoe", port=2222, config="/p/ssh_config")
CTL = "/home/jdoe/.local/state/hpcjupyter/cm/imperial-0123456789ab"


def test_forward_argv_adds_the_forward_to_the_master() -> None:
    argv = forward_argv(IMPERIAL, CTL, "nid001234", 34567, 8888)
    assert argv[0] == "ssh" and argv[argv.index("-F") + 1] == "/p/ssh_config"
    assert argv[argv.index("-S") + 1] == CTL
    assert argv[-5:] == ["-L", "127.0.0.1:8888:nid001234:34567", "-O", "forward", IMPERIAL.host]
    assert opt(argv, "ControlMaster") == "no"
    cancel = forward_argv(IMPERIAL, CTL, "nid001234", 34567, 8888, op="cancel")
    assert cancel[-5:] == ["-L", "127.0.0.1:8888:nid001234:34567", "-O", "cancel", IMPERIAL.host]


def test_jump_argv_goes_through_the_master_to_the_node_loopback() -> None:
    argv = jump_argv(IMPERIAL, CTL, "cx3-12-3", 40001, 9999, user="jdoe")
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
    assert hop[-3:] == ["-W", "%h:%p", IMPERIAL.host]
    assert hop[hop.index("-p") + 1] == "2222" and hop[hop.index("-l") + 1] == "jdoe"
    assert "ControlMaster=no" in hop and "ProxyCommand=false" in hop  # never a second login


def test_jump_argv_takes_the_login_user() -> None:
    argv = jump_argv(SshTarget(site="s", host="alias"), "/c", "node1", 1, 2, user="fromconfig")
    assert argv[argv.index("-l") + 1] == "fromconfig"


def test_proxy_command_escapes_percent() -> None:
    cmd = proxy_command(SshTarget(site="s", host="h", config="/odd%dir/cfg"), "/c%x")
    assert "/odd%%dir/cfg" in cmd and "/c%%x" in cmd and cmd.endswith("-W %h:%p h")


# --- tunnels, with ssh faked ---


def test_master_forward_adds_and_cancels_through_the_master(remote: OpensshRemote, mocker) -> None:  # type: ignore[no-untyped-def]
    import socket

    from hpcjupyter.transports.openssh_tunnels import MasterForward

    mocker.patch.object(OpensshRemote, "connect", return_value=0)
    mocker.patch.object(OpensshRemote, "master_alive", return_value=True)
    run = mocker.patch.object(openssh, "_run", return_value=Result(0, "", ""))
    with socket.socket() as listener:  # stands for the master's listener on the local port
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        lp = listener.getsockname()[1]
        tunnel = remote.open_tunnel("forward", "nid001234", 34567, lp)
        assert isinstance(tunnel, MasterForward)
        tunnel.close()
    ops = [c.args[0] for c in run.call_args_list]
    spec = f"127.0.0.1:{lp}:nid001234:34567"
    assert ops == [forward_argv(PLAIN, remote.control_path, "nid001234", 34567, lp, op=op, ssh="/usr/bin/ssh")
                   for op in ("forward", "cancel")]
    assert all(argv[argv.index("-L") + 1] == spec for argv in ops)


def test_master_forward_on_a_fresh_login_runs_a_command_first(remote: OpensshRemote, mocker) -> None:  # type: ignore[no-untyped-def]
    """sshd sets TCP_NODELAY on its end only once a session starts: a master opened just for the
    tunnel carries one no-op command before the forward; a master that ran commands does not."""
    import socket

    mocker.patch.object(OpensshRemote, "master_alive", side_effect=[False, True, True, True])
    mocker.patch.object(OpensshRemote, "_open_master", return_value=0)
    run = mocker.patch.object(openssh, "_run", return_value=Result(0, "", ""))
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        lp = listener.getsockname()[1]
        remote.connect()
        remote.open_tunnel("forward", "nid001234", 34567, lp)
        remote.open_tunnel("forward", "nid001234", 34567, lp)
    ops = [c.args[0] for c in run.call_args_list]
    assert ops[0] == run_argv(PLAIN, remote.control_path, ["true"], ssh="/usr/bin/ssh")
    assert [argv[-2] for argv in ops[1:]] == ["forward", "forward"]  # once per login, not per tunnel


def test_master_forward_refused_port_is_a_clear_error(remote: OpensshRemote, mocker) -> None:  # type: ignore[no-untyped-def]
    mocker.patch.object(OpensshRemote, "connect", return_value=0)
    mocker.patch.object(openssh, "_run", return_value=Result(255, "", "Port forwarding failed.\n"))
    with pytest.raises(RemoteError, match="something else is listening"):
        remote.open_tunnel("forward", "n", 1, 40123)


def test_openssh_unknown_shape_fails_before_any_ssh(remote: OpensshRemote, mocker) -> None:  # type: ignore[no-untyped-def]
    run = mocker.patch.object(openssh, "_run")
    connect = mocker.patch.object(OpensshRemote, "connect")
    with pytest.raises(RemoteError, match="Unknown tunnel shape 'sideways'"):
        remote.open_tunnel("sideways", "n", 1, 2)
    assert not run.called and not connect.called
