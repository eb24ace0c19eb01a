"""Issue 6, "Secrets and exposure", on the mini-cluster test bed.

While a real job runs: the token is on no process's command line (compute node, login, laptop),
in no log and in none of our own output except the URL line connect prints; the files holding it
are private (connection.json 0600 in a 0700 job dir); the laptop's session records hold no
token; Jupyter listens on the node's loopback (jump) or its own address (forward), never on all
addresses; the tunnel's local end binds 127.0.0.1 only.

Injection: shell metacharacters in flags and profile values are refused, or arrive verbatim in a
script that really runs on the bed (a marker file on the shared filesystem shows whether any
injected command ran). A changed host key stops the tool with a message that says to check.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from clihelpers import Cli, port_and_token, read_url, stop
from jupyter_client import run_code
from tbcli import cancel_and_wait as finish
from tbcli import listeners, script_ended, wait_until
from tbprofiles import profile_text

from hpcjupyter.probe import api_status

pytestmark = pytest.mark.e2e

SITE = "tbsecret"


def submit(cli: Cli, *flags: str, site: str = SITE) -> tuple[str, str]:
    """(job id, everything submit printed)."""
    res = cli.run("submit", "--site", site, *flags)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip().splitlines()[-1], res.stdout + res.stderr


def own_jobs_dir(testbed: Any, text: str) -> tuple[str, str]:
    """The profile with job dirs of its own, so this test's scheduler calls can be told from
    those of tests running at the same time: (profile text, the directory)."""
    directory = f"{testbed.remote_dir}/t-{secrets.token_hex(4)}"
    changed = text.replace(f'remote_dir = "{testbed.remote_dir}"', f'remote_dir = "{directory}"')
    assert changed != text
    return changed, directory


def submitted_from(testbed: Any, directory: str) -> list[str]:
    """The sbatch/qsub calls on login whose script lies under ``directory``."""
    return [c for name in ("sbatch", "qsub") for c in testbed.calls(name) if directory in c]


def record_of(cli: Cli, job_id: str) -> dict[str, Any]:
    for path in (cli.state / "sessions").glob("*.json"):
        if not path.name.startswith("."):
            data = json.loads(path.read_text())
            if data["job_id"] == job_id:
                return data
    raise AssertionError(f"no record of job {job_id}")


def cancel_and_wait(cli: Cli, testbed: Any, job_id: str, scheduler: str = "slurm") -> None:
    """`hpcjupyter cancel`, then the site's own scheduler (scancel / qdel) until the job is over."""
    cli.run("cancel", job_id)
    finish(testbed, scheduler, job_id)


def private_tree(root: Path) -> list[str]:
    """Paths under ``root`` (itself included) that group or others may use in any way."""
    loose = []
    for path in [root, *root.rglob("*")]:
        mode = path.lstat().st_mode
        if not stat.S_ISLNK(mode) and mode & 0o077:
            loose.append(f"{path} {stat.filemode(mode)}")
    return loose


def files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and not p.is_symlink()]


# ---- the token while a job runs --------------------------------------------------------------


@pytest.mark.parametrize(("tunnel", "transport"), [("forward", "openssh"), ("jump", "openssh"), ("forward", "fabric")])
def test_token_stays_secret_and_listeners_are_narrow(cli: Cli, testbed: Any, tunnel: str, transport: str) -> None:
    cli.write_profile(SITE, profile_text(testbed, tunnel=tunnel, transport=transport))
    job, submit_output = submit(cli)
    connect = cli.start("connect", job, "--no-browser")
    try:
        url = read_url(connect)
        port, token = port_and_token(url)
        assert len(token) >= 32 and api_status(port, "/", token) == 200
        rec = record_of(cli, job)
        node, job_dir = rec["node"], Path(rec["job_dir"])
        assert node in testbed.nodes

        # -- no command line anywhere holds the token (node, login, this machine) --
        for host in (node, "login"):
            argv = testbed.exec(host, "sh", "-c", "cat /proc/[0-9]*/cmdline | tr '\\0' ' '").stdout
            assert "jupyter" in argv and "--no-browser" in argv, "did not see Jupyter's own command line"
            assert token not in argv, f"the token is on a command line on {host}"
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                assert token.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes(), f"pid {pid} has it"
            except OSError:
                continue

        # -- the private files: 0600 connection.json in a 0700 job dir, nothing looser --
        conn = job_dir / "connection.json"
        assert stat.S_IMODE(conn.stat().st_mode) == 0o600
        assert stat.S_IMODE(job_dir.stat().st_mode) == 0o700
        assert json.loads(conn.read_text())["token"] == token
        assert private_tree(job_dir) == []
        holders = sorted(str(p.relative_to(job_dir)) for p in files_under(job_dir) if token in p.read_text(errors="replace"))
        assert holders == ["connection.json"] or (
            holders[0] == "connection.json" and all(re.fullmatch(r"runtime/jpserver-\d+(\.json|-open\.html)", h) for h in holders[1:])
        ), holders  # besides ours, only Jupyter's own runtime files (0600, checked above)

        # -- no log, no scheduler record, none of our output holds it --
        for log in ("job.log", f"slurm-{job}.out"):
            if (job_dir / log).exists():
                assert token not in (job_dir / log).read_text(errors="replace"), log
        assert token not in testbed.ssh(testbed.login_alias, f"scontrol show job {job}").stdout
        outputs = {
            "submit": submit_output,
            "ls": cli.run("ls").stdout,
            "ls --json": cli.run("ls", "--json").stdout,
            "logs": cli.run("logs", job).stdout,
            "status": cli.run("status", job, "--site", SITE, "--json").stdout,
        }
        for what, text in outputs.items():
            assert text and token not in text, f"{what} shows the token"

        # -- the laptop's records and state: no token anywhere --
        records = list((cli.state / "sessions").glob("*.json"))
        assert records
        for path in files_under(cli.home):
            assert token not in path.read_text(errors="replace"), f"{path} holds the token"
        for path in records:
            assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path

        # -- Jupyter on the node: loopback (jump) or the node's address (forward), never all --
        remote_port = json.loads(conn.read_text())["port"]
        lines = testbed.exec(node, "ss", "-Hltn", check=True).stdout.splitlines()
        bound = [line.split()[3] for line in lines if line.split()[3].rsplit(":", 1)[-1] == str(remote_port)]
        expected = "127.0.0.1" if tunnel == "jump" else testbed.addresses[node]
        assert bound and all(a == f"{expected}:{remote_port}" for a in bound), bound

        # -- the tunnel's local end: 127.0.0.1 only --
        local = listeners(port)
        assert local and all(addr == f"127.0.0.1:{port}" for addr, _ in local), local
    finally:
        stderr = stop(connect)
        cancel_and_wait(cli, testbed, job)
    assert token not in stderr, "connect's stderr shows the token"
    stdout_rest = [line for line in (connect.stdout.read() if connect.stdout and not connect.stdout.closed else "")
                   .splitlines() if line.strip()]
    assert all(token not in line for line in stdout_rest)
    # After the job: the marker files are gone, the token file with them.
    assert not (job_dir / "connection.json").exists()


# ---- injection: refused, or inert in a script that really runs -------------------------------


def hostile(markers: Path, tag: str) -> str:
    """A value that, if a shell ever evaluated it, would create a file in ``markers``."""
    return (f"x$(touch {markers}/{tag}-dollar)`touch {markers}/{tag}-tick`';touch {markers}/{tag}-sq;'"
            f'";touch {markers}/{tag}-dq;"|touch {markers}/{tag}-pipe&&touch {markers}/{tag}-and;touch {markers}/{tag}-semi')


def compact_hostile(markers: Path, tag: str) -> str:
    """The same without spaces, for raw scheduler directives (they are split on spaces)."""
    return (f"x$(touch${{IFS}}{markers}/{tag}-dollar)`touch${{IFS}}{markers}/{tag}-tick`"
            f";touch${{IFS}}{markers}/{tag}-semi")


@pytest.fixture
def markers(testbed: Any) -> Any:
    """A directory on the shared filesystem, writable by the test user, where injected commands
    would leave files."""
    path = Path(testbed.home) / f"inject-{secrets.token_hex(4)}"
    path.mkdir(mode=0o700)
    os.chown(path, testbed.uid, testbed.uid)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize("scheduler", ["slurm", "pbs"])
def test_hostile_values_are_refused_or_inert(cli: Cli, testbed: Any, markers: Path, scheduler: str) -> None:
    value = hostile(markers, "var")
    module = hostile(markers, "module")
    arg = hostile(markers, "arg")
    # Free-text options each scheduler stores without parsing (PBS refuses a malformed -W depend).
    directive = ("--comment=" if scheduler == "slurm" else "-A ") + compact_hostile(markers, "directive")
    # A no-op `module` and a fake conda (the bed has neither): they print what they were given.
    conda = markers / "fake-conda"
    (conda / "bin").mkdir(parents=True)
    (conda / "bin" / "conda").write_text("#!/bin/sh\necho 'conda() { printf \"fake-conda: %s\\n\" \"$*\"; }'\n")
    (conda / "bin" / "conda").chmod(0o755)
    # A directory name cannot hold '/': its commands would touch files in the current directory.
    workdir = markers / "wd $(touch inj-wd-dollar)`touch inj-wd-tick`';touch inj-wd-sq;'\";touch inj-wd-dq;\"&& x"
    workdir.mkdir()
    for path in (conda, conda / "bin", conda / "bin" / "conda", workdir):
        os.chown(path, testbed.uid, testbed.uid)
    extra_env = "\n".join([
        "setup = [" + json.dumps('module() { printf "fake-module: %s\\n" "$*"; }') + "]",
        f"modules = [{json.dumps(module)}]",
        f"conda = {json.dumps(str(conda))}",
        f"variables = {{ INJECTED_VALUE = {json.dumps(value)} }}",
        f"jupyter_args = [{json.dumps('--ServerApp.custom_display_url=http://inert/' + arg)}]",
    ])
    text, jobs_dir = own_jobs_dir(testbed, profile_text(testbed, scheduler=scheduler, extra_env=extra_env,
                                                        extra_job=f"directives = [{json.dumps(directive)}]"))
    cli.write_profile(SITE, text)

    # Flags the scheduler header would carry unquoted, and newlines anywhere: refused.
    dry = cli.run("submit", "--site", SITE, "--dry-run")
    assert dry.returncode == 0, dry.stderr  # the profile itself is fine: refusals below are the flags'
    refused = [("--account", hostile(markers, "account"), "not a valid account name"),
               ("--memory", "1G;touch " + str(markers / "mem"), "is not understood"),
               ("--workdir", f"{workdir}\ntouch {markers}/nl", "--workdir must be one line"),
               ("--conda-env", f"ml\ntouch {markers}/nl2", "--conda-env must be one line"),
               ("--conda-env", "--prefix=/tmp", "--conda-env must be an environment name")]
    if scheduler == "slurm":
        refused += [("--partition", hostile(markers, "partition"), "not a valid partition name"),
                    ("--qos", "$(touch " + str(markers / "qos") + ")", "not a valid qos name")]
    else:
        refused += [("--queue", "`touch " + str(markers / "queue") + "`", "not a valid queue name")]
    for flag, bad, why in refused:
        res = cli.run("submit", "--site", SITE, flag, bad)
        assert res.returncode == 1 and res.stdout == "", (flag, res.stdout, res.stderr)
        assert res.stderr.startswith("error: ") and why in res.stderr, (flag, res.stderr)
        assert "Traceback" not in res.stderr, res.stderr
    # A newline in any profile value: refused, naming the key.
    nl = f"x\ntouch {markers}/nl-profile"
    for key, line in [("env.variables.INJECTED_VALUE", f"variables = {{ INJECTED_VALUE = {json.dumps(nl)} }}"),
                      ("env.modules.0", f"modules = [{json.dumps(nl)}]"),
                      ("env.jupyter_args.0", f"jupyter_args = [{json.dumps(nl)}]"),
                      ("env.conda_env", f"conda_env = {json.dumps(nl)}")]:
        text = profile_text(testbed, scheduler=scheduler, extra_env=f"conda = {json.dumps(str(conda))}\n{line}")
        cli.write_profile("tbsecret-nl", text.replace(f'remote_dir = "{testbed.remote_dir}"', f'remote_dir = "{jobs_dir}"'))
        res = cli.run("submit", "--site", "tbsecret-nl")
        assert res.returncode == 1 and f"key '{key}'" in res.stderr and "one line" in res.stderr, (key, res.stderr)
    assert submitted_from(testbed, jobs_dir) == [], "a refused value was submitted"

    # The rest is quoted: the job runs, Jupyter starts in the hostile-named directory, and the
    # kernel sees every value exactly as given.
    conda_env = hostile(markers, "condaenv")
    job, _ = submit(cli, "--workdir", str(workdir), "--conda-env", conda_env)
    connect = cli.start("connect", job, "--no-browser")
    try:
        url = read_url(connect)
        port, token = port_and_token(url)
        seen = json.loads(run_code(port, token, "import os, json; print(json.dumps([os.environ['INJECTED_VALUE'], os.getcwd()]))"))
        assert seen == [value, str(workdir)]
        log = (Path(record_of(cli, job)["job_dir"]) / "job.log").read_text()
        assert f"fake-module: load {module}" in log
        assert f"fake-conda: activate {conda_env}" in log
    finally:
        stop(connect)
        cancel_and_wait(cli, testbed, job, scheduler)
    # The job script has run to its end (its EXIT trap wrote the last line): nothing more can run.
    wait_until(lambda: script_ended(record_of(cli, job)["job_dir"]), 60, "the job script to end")
    assert sorted(p.name for p in markers.iterdir()) == sorted(["fake-conda", workdir.name]), "an injected command ran"
    job_dir = Path(record_of(cli, job)["job_dir"])
    for where in (job_dir, workdir, Path(testbed.home), job_dir.parent):
        assert not list(where.glob("inj-*")), f"an injected command ran in {where}"


# ---- host keys -------------------------------------------------------------------------------


def bad_host_key_config(testbed: Any, directory: Path) -> tuple[Path, Path]:
    """A copy of the laptop's ssh config whose known_hosts has a wrong key for the login host."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(directory / "impostor")], check=True)
    impostor = (directory / "impostor.pub").read_text().split()[:2]
    login = testbed.addresses["login"]
    known = []
    for line in Path(testbed.known_hosts).read_text().splitlines():
        hosts = line.split()[0].split(",") if line.strip() else []
        known.append(f"{line.split()[0]} {' '.join(impostor)}" if login in hosts else line)
    known_hosts = directory / "known_hosts"
    known_hosts.write_text("\n".join(known) + "\n")
    config = Path(testbed.ssh_config).read_text()
    config = re.sub(r"UserKnownHostsFile \S+", f"UserKnownHostsFile {known_hosts}", config)
    assert str(known_hosts) in config
    path = directory / "ssh_config"
    path.write_text(config)
    return path, known_hosts


HOST_KEY_WORDS = ("host key", "CHANGED", "Compare the new fingerprint", "Do not turn off host key checking")


def assert_host_key_stop(res: subprocess.CompletedProcess[str]) -> None:
    assert res.returncode == 1, (res.returncode, res.stderr)
    assert "Traceback" not in res.stderr and res.stdout == "", res.stderr
    assert res.stderr.count("error: ") == 1, res.stderr
    for words in HOST_KEY_WORDS:
        assert words in res.stderr, res.stderr


@pytest.mark.parametrize("transport", ["openssh", "fabric"])
def test_changed_host_key_stops_with_a_clear_message(cli: Cli, testbed: Any, tmp_path: Path, transport: str) -> None:
    config, known_hosts = bad_host_key_config(testbed, tmp_path)
    known_before = known_hosts.read_bytes()
    good, jobs_dir = own_jobs_dir(testbed, profile_text(testbed, transport=transport))
    bad = good.replace(f'config = "{testbed.ssh_config}"', f'config = "{config}"')
    assert bad != good

    # A first login to a host whose key changed: refused, nothing submitted, nothing recorded.
    cli.write_profile(SITE, bad)
    assert_host_key_stop(cli.run("submit", "--site", SITE, timeout=60))
    assert submitted_from(testbed, jobs_dir) == []
    assert not [p for p in (cli.state / "sessions").glob("*.json")] if (cli.state / "sessions").is_dir() else True

    # A session submitted before the key changed: connect and cancel stop at once, too.
    cli.write_profile(SITE, good)
    job, _ = submit(cli)
    try:
        cli.write_profile(SITE, bad)
        started = time.monotonic()
        assert_host_key_stop(cli.run("connect", job, "--no-browser", timeout=60))
        assert time.monotonic() - started < 30, "connect retried a host key it must not accept"
        assert_host_key_stop(cli.run("cancel", job, timeout=60))
        assert known_hosts.read_bytes() == known_before, "known_hosts was rewritten"
        assert record_of(cli, job)["state"] in ("PENDING", "RUNNING")
        # No command went through: the job the refused 'cancel' named is still there.
        state = testbed.ssh(testbed.login_alias, f"squeue -h -t all -j {job} -o %T").stdout.strip()
        assert state in ("PENDING", "RUNNING"), state
    finally:
        testbed.ssh(testbed.login_alias, f"scancel {job}")
