"""Smoke tests of the mini-cluster test bed itself (tests/cluster/): if these fail, the e2e tests
of hpcjupyter cannot mean anything."""

from __future__ import annotations

import errno
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pexpect
import pytest
from totp import Totp

pytestmark = pytest.mark.e2e

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
TESTBED_SH = Path(__file__).resolve().parents[1] / "cluster" / "testbed.sh"


def wait_until(predicate, timeout=30.0, interval=0.3, what="condition"):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def fixture_lines(name: str) -> list[str]:
    lines = (FIXTURES / name).read_text().splitlines()
    assert lines[0].startswith("# source:")
    return lines[1:]


def write_remote(testbed, path: str, text: str) -> None:
    r = subprocess.run(
        testbed.ssh_argv(testbed.login_alias, "-o", "BatchMode=yes", f"cat > {shlex.quote(path)}"),
        input=text, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr


# ---- network -------------------------------------------------------------------------------
def test_laptop_reaches_login_only(testbed):
    addr = testbed.addresses
    # login answers on its link address
    with socket.create_connection((addr["login"], 22), timeout=5) as s:
        assert s.recv(64).startswith(b"SSH-2.0-")
    # the rest of the test range is routed unreachable here (route lookup only: no packet is
    # ever sent to an address that is not one of the bed's hosts)
    r = subprocess.run(["ip", "route", "get", "10.77.200.9"], capture_output=True, text=True)
    assert r.returncode != 0 and "No route to host" in r.stderr, (r.stdout, r.stderr)
    # the internal network: the nodes' (and login's internal) addresses fail at once
    for target in (addr["node1"], addr["node2"], addr["login_internal"]):
        r = subprocess.run(["ip", "route", "get", target], capture_output=True, text=True)
        assert r.returncode != 0 and "No route to host" in r.stderr, (target, r.stdout, r.stderr)
        s = socket.socket()
        s.settimeout(5)
        t0 = time.time()
        with pytest.raises(OSError) as exc:
            s.connect((target, 22))
        s.close()
        assert exc.value.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH), exc.value
        assert time.time() - t0 < 2, "unreachable must fail at once, not time out"
    routes = subprocess.run(["ip", "-4", "route", "show"], capture_output=True, text=True).stdout
    assert "unreachable 10.77.0.0/16" in routes
    assert "10.77.2." not in routes
    # the login host does not forward between its two networks
    assert testbed.exec("login", "sysctl", "-n", "net.ipv4.ip_forward").stdout.strip() == "0"


def test_hosts_have_own_names_tmp_and_hosts_file(testbed):
    marker = f"hpcj-{uuid.uuid4().hex}"
    for host in ["login", *testbed.nodes]:
        r = testbed.exec(host, "sh", "-c", f"hostname; touch /tmp/{marker}; grep -c node1 /etc/hosts")
        assert r.returncode == 0, r.stderr
        name, count = r.stdout.split()
        assert name == host and count == "1"
    # each /tmp is private: three files, none in the laptop's /tmp
    assert not Path(f"/tmp/{marker}").exists()
    for host in ["login", *testbed.nodes]:
        assert (testbed.dir / "hosts" / host / "tmp" / marker).exists()
        testbed.exec(host, "rm", "-f", f"/tmp/{marker}")


def test_exec_shows_node_sockets(testbed):
    r = testbed.exec("node1", "ss", "-ltnp")
    assert r.returncode == 0, r.stderr
    assert ":22 " in r.stdout and ":6818 " in r.stdout and "slurmd" in r.stdout


# ---- ssh ----------------------------------------------------------------------------------
def test_key_login_and_jump_to_node(testbed):
    r = testbed.ssh(testbed.login_alias, "hostname; id -un")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["login", testbed.user]
    for node in testbed.nodes:
        r = testbed.ssh(node, "hostname", options=("-J", testbed.login_alias))
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == node
    # login -> node with the user's own key (what the PBS emulator and jump tunnels rely on)
    r = testbed.ssh(testbed.login_alias, "ssh -o BatchMode=yes node2 hostname")
    assert r.stdout.strip() == "node2", r.stderr


def test_strict_host_key_checking_stays_on(testbed, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    r = subprocess.run(testbed.ssh_argv(testbed.login_alias, "-o", "BatchMode=yes",
                                        "-o", f"UserKnownHostsFile={empty}", "true"),
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 255
    assert "Host key verification failed" in r.stderr


def test_mfa_login_asks_one_totp_prompt(disruptive):
    testbed = disruptive  # counts logins or calls, or breaks the bed for a moment: alone
    before = testbed.accepted("mfa")
    child = pexpect.spawn("ssh", testbed.ssh_argv(testbed.mfa_alias, "hostname; echo MFA-$((6*7))")[1:],
                          encoding="utf-8", timeout=30)
    prompts = 0
    try:
        while True:
            i = child.expect([r"One-time password \(OATH\) for `hpcuser': ", r"MFA-42", pexpect.EOF])
            if i == 0:
                prompts += 1
                assert prompts == 1, "asked twice: code refused?"
                child.sendline(testbed.totp())
            elif i == 1:
                break
            else:
                raise AssertionError(f"ssh ended early: {child.before!r}")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert prompts == 1
    wait_until(lambda: testbed.accepted("mfa") == before + 1, 10, what="Accepted line in sshd-mfa.log")
    assert "Accepted keyboard-interactive/pam for hpcuser" in testbed.sshd_log("mfa").read_text()


def test_mfa_login_without_code_is_refused(testbed):
    r = testbed.ssh(testbed.mfa_alias, "true")       # BatchMode: cannot answer the prompt
    assert r.returncode == 255
    assert "Permission denied" in r.stderr
    # without the key no code is even asked for: publickey comes first
    r = testbed.ssh(testbed.mfa_alias, "true", options=("-o", "PubkeyAuthentication=no"))
    assert r.returncode == 255
    assert "Permission denied (publickey)" in r.stderr


def test_totp_matches_oathtool(testbed):
    r = subprocess.run(["oathtool", "--totp", "-b", testbed.totp_secret], capture_output=True,
                       text=True, check=True)
    now = time.time()
    assert r.stdout.strip() in {testbed.totp_at(now), testbed.totp_at(now - 30), testbed.totp_at(now + 30)}


def test_password_only_login(disruptive):
    testbed = disruptive  # counts logins or calls, or breaks the bed for a moment: alone
    before = testbed.accepted("pw")
    child = pexpect.spawn("ssh", testbed.ssh_argv(testbed.pw_alias, "echo PW-$((6*7))")[1:],
                          encoding="utf-8", timeout=30)
    try:
        child.expect(r"hpcuser@[\d.]+'s password: ")
        child.sendline(testbed.password)
        child.expect("PW-42")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    wait_until(lambda: testbed.accepted("pw") == before + 1, 10, what="Accepted password line")
    assert "Accepted password for hpcuser" in testbed.sshd_log("pw").read_text()
    # and keys are not accepted there
    r = subprocess.run(testbed.ssh_argv(testbed.pw_alias, "-o", "BatchMode=yes",
                                        "-o", "PubkeyAuthentication=yes", "true"),
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 255


def _replace_by_rename(path: Path) -> None:
    """What useradd, passwd, vipw and apt's adduser do: write a new file beside PATH and
    rename() it over PATH (same content, mode and owner here)."""
    st = path.stat()
    tmp = path.with_name(f".{path.name}.hpcj-test-{uuid.uuid4().hex[:6]}")
    shutil.copy2(path, tmp)
    os.chown(tmp, st.st_uid, st.st_gid)
    os.replace(tmp, path)


def test_logins_survive_laptop_passwd_replaced_by_rename(disruptive):
    """A rename over the laptop's /etc/passwd (any useradd or package install while the bed is
    up) used to detach the hosts' single-file bind mounts of the bed's passwd/group/shadow:
    every login then failed with "Permission denied (publickey)"."""
    tb = disruptive
    for name in ("passwd", "group", "shadow"):
        _replace_by_rename(Path("/etc") / name)
    for host in ["login", *tb.nodes]:
        r = tb.exec(host, "getent", "passwd", tb.user)
        assert r.returncode == 0 and r.stdout.startswith(f"{tb.user}:"), (host, r.stdout, r.stderr)
    r = tb.ssh(tb.login_alias, "id -un")
    assert r.returncode == 0 and r.stdout.strip() == tb.user, r.stderr
    r = tb.ssh("node2", "id -un", options=("-J", tb.login_alias))
    assert r.returncode == 0 and r.stdout.strip() == tb.user, r.stderr
    child = pexpect.spawn("ssh", tb.ssh_argv(tb.pw_alias, "echo PW-$((6*7))")[1:],
                          encoding="utf-8", timeout=30)
    try:                                   # password login reads the bed's shadow
        child.expect(r"password: ")
        child.sendline(tb.password)
        child.expect("PW-42")
    finally:
        child.close(force=True)
    st = subprocess.run(["bash", str(TESTBED_SH), "status"], capture_output=True, text=True,
                        env={**os.environ, "HPCJ_TESTBED_DIR": str(tb.dir)})
    assert st.returncode == 0, st.stdout + st.stderr
    assert "known on every host" in st.stdout


def test_status_says_when_a_hosts_user_database_is_gone(disruptive):
    """If a host's users vanish anyway, `testbed.sh status` says which host and why, and fails."""
    tb = disruptive
    link = tb.dir / "hosts" / "node2" / "etc" / "passwd"
    target = os.readlink(link)
    stale = link.with_name("passwd.hpcj-test")
    stale.write_text("".join(line for line in Path(target).read_text().splitlines(keepends=True)
                             if not line.startswith(f"{tb.user}:")))
    stale.chmod(0o644)
    try:
        os.replace(stale, link)            # node2 now has a passwd without the test user
        st = subprocess.run(["bash", str(TESTBED_SH), "status"], capture_output=True, text=True,
                            env={**os.environ, "HPCJ_TESTBED_DIR": str(tb.dir)})
        assert st.returncode != 0
        assert f"host node2: user database BROKEN: user '{tb.user}' is unknown" in st.stdout, st.stdout
        assert "Permission denied (publickey)" in st.stdout
        assert "host login: user database" not in st.stdout
    finally:
        link.unlink()
        os.symlink(target, link)
    assert tb.ssh("node2", "true", options=("-J", tb.login_alias)).returncode == 0


# ---- Slurm -------------------------------------------------------------------------------
def test_sbatch_runs_on_a_compute_node(testbed):
    jobdir = f"{testbed.remote_dir}/smoke-{uuid.uuid4().hex[:8]}"
    script = "#!/bin/bash\n#SBATCH --job-name=smoke\necho \"ran on $(hostname)\"\nsleep 4\n"
    r = testbed.ssh(testbed.login_alias, f"mkdir -p {jobdir}")
    assert r.returncode == 0, r.stderr
    write_remote(testbed, f"{jobdir}/job.sh", script)
    r = testbed.ssh(testbed.login_alias, f"cd {jobdir} && sbatch job.sh")
    assert r.returncode == 0, r.stderr
    m = re.fullmatch(r"Submitted batch job (\d+)\n", r.stdout)
    assert m, r.stdout
    jobid = m.group(1)

    def state():
        q = testbed.ssh(testbed.login_alias, f"squeue -h -j {jobid} -o '%T %N'")
        return q.stdout.strip() if q.returncode == 0 and "RUNNING" in q.stdout else None

    running = wait_until(state, 20, what="job RUNNING in squeue")
    assert running.split()[1] in testbed.nodes
    out = Path(jobdir) / f"slurm-{jobid}.out"        # same path on the laptop: shared fs
    wait_until(lambda: out.exists() and "ran on" in out.read_text(), 30, what=str(out))
    assert out.read_text().split()[2] in testbed.nodes
    wait_until(lambda: testbed.ssh(testbed.login_alias, f"squeue -h -j {jobid}").stdout.strip() == "",
               30, what="job to leave squeue")
    r = testbed.ssh(testbed.login_alias, f"scontrol show job {jobid}")
    assert "JobState=COMPLETED" in r.stdout
    if testbed.accounting:
        r = testbed.ssh(testbed.login_alias, f"sacct -P -n -X -j {jobid} -o JobID,State,ExitCode")
        assert r.stdout.strip() == f"{jobid}|COMPLETED|0:0", (r.stdout, r.stderr)


def test_two_jobs_per_node_and_both_partitions(testbed):
    ids = []
    for part in ("serial", "standard", "serial", "standard"):
        r = testbed.ssh(testbed.login_alias,
                        f"sbatch --parsable -p {part} -n 1 -o /dev/null --wrap 'sleep 15'")
        assert r.returncode == 0, r.stderr
        ids.append(r.stdout.strip().split(";")[0])
    try:
        def all_running():
            q = testbed.ssh(testbed.login_alias, f"squeue -h -j {','.join(ids)} -o '%T %N %P'")
            lines = q.stdout.split("\n")
            rows = [line.split() for line in lines if line.strip()]
            return rows if len(rows) == 4 and all(r[0] == "RUNNING" for r in rows) else None

        rows = wait_until(all_running, 30, what="4 jobs running at once")
        assert {r[2] for r in rows} == {"serial", "standard"}
    finally:
        testbed.ssh(testbed.login_alias, f"scancel {' '.join(ids)}")


def test_slurm_client_commands_work_for_the_user(testbed):
    r = testbed.ssh(testbed.login_alias, "sinfo -h -o '%P %a'; scontrol ping")
    assert r.returncode == 0, r.stderr
    assert "serial* up" in r.stdout and "standard up" in r.stdout
    r = testbed.ssh(testbed.login_alias, "sacct -P -X -o JobID,State,ExitCode")
    if testbed.accounting:       # HPCJ_TESTBED_ACCOUNTING=1: slurmdbd + MariaDB
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith("JobID|State|ExitCode\n")
    else:                        # default: no accounting storage, Slurm's real error
        assert r.returncode == 1 and "Slurm accounting storage is disabled" in r.stderr


def test_sacct_reports_a_finished_jobs_state_and_exit_code(testbed):
    """With accounting (CI: HPCJ_TESTBED_ACCOUNTING=1), `sacct -X -P -n -j ID` -- the history
    lookup hpcjupyter does for a job squeue no longer lists -- answers for a finished job."""
    if not testbed.accounting:
        assert os.environ.get("HPCJ_TESTBED_ACCOUNTING") != "1", \
            "HPCJ_TESTBED_ACCOUNTING=1 but the running bed has no accounting"
        pytest.skip("bed without Slurm accounting (HPCJ_TESTBED_ACCOUNTING=1 adds it)")
    r = testbed.ssh(testbed.login_alias, "sbatch --parsable -o /dev/null --wrap 'exit 3'")
    assert r.returncode == 0, r.stderr
    jobid = r.stdout.strip().split(";")[0]

    def history():
        q = testbed.ssh(testbed.login_alias, f"sacct -X -P -n -j {jobid} -o JobID,State,ExitCode")
        return q.stdout.strip() if q.returncode == 0 and "|FAILED|" in q.stdout else None

    assert wait_until(history, 30, what="sacct to record the job's end") == f"{jobid}|FAILED|3:0"
    # the default columns too (what a bare `sacct -X -P -n -j ID` prints)
    r = testbed.ssh(testbed.login_alias, f"sacct -X -P -n -j {jobid}")
    assert r.returncode == 0, r.stderr
    fields = r.stdout.strip().split("|")
    assert fields[0] == jobid and "FAILED" in fields and fields[-1] == "3:0", r.stdout
    # and the user's association (what doctor's account check reads)
    r = testbed.ssh(testbed.login_alias,
                    'sacctmgr -n -P show assoc user="$(id -un)" format=account,qos')
    assert r.returncode == 0 and "hpcj|" in r.stdout, (r.stdout, r.stderr)


# ---- JupyterLab ----------------------------------------------------------------------------
def test_jupyter_venv_works_on_a_node(testbed):
    r = testbed.ssh("node1", f"{testbed.jupyter_venv}/bin/jupyter lab --version",
                    options=("-J", testbed.login_alias), timeout=60)
    assert r.returncode == 0, r.stderr
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*\n", r.stdout)
    r = testbed.ssh("node2", f"{testbed.jupyter_venv}/bin/python -c 'import ipykernel, jupyter_server'",
                    options=("-J", testbed.login_alias), timeout=60)
    assert r.returncode == 0, r.stderr


def test_chromium_installed():
    r = subprocess.run(["chromium", "--version"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("Chromium "), (r.stdout, r.stderr)


# ---- PBS Pro emulator ----------------------------------------------------------------------
PBS_SCRIPT = """#!/bin/bash
#PBS -N {name}
#PBS -l select=1:ncpus=2:mem=2gb
#PBS -l walltime=00:05:00
#PBS -j oe
#PBS -o {out}
echo "node=$(hostname) id=$PBS_JOBID cwd=$(pwd) tmp=$TMPDIR work=$PBS_O_WORKDIR"
sleep {sleep}
exit {rc}
"""


def qstat_json(testbed, *ids, history=True):
    args = "qstat -f -F json" + (" -x" if history else "") + " " + " ".join(ids)
    r = testbed.ssh(testbed.login_alias, args)
    return r, (json.loads(r.stdout) if r.stdout.strip() else None)


def pbs_submit(testbed, name, *, sleep=3, rc=0, extra=""):
    jobdir = f"{testbed.remote_dir}/pbs-{uuid.uuid4().hex[:8]}"
    testbed.ssh(testbed.login_alias, f"mkdir -p {jobdir}", check=True)
    out = f"{jobdir}/{name}.log"
    write_remote(testbed, f"{jobdir}/job.pbs", PBS_SCRIPT.format(name=name, out=out, sleep=sleep, rc=rc))
    r = testbed.ssh(testbed.login_alias, f"cd {jobdir} && qsub {extra} job.pbs")
    assert r.returncode == 0, r.stderr
    return r.stdout, jobdir, out


def test_pbs_qsub_qstat_lifecycle(testbed):
    server = testbed.pbs_server
    stdout, jobdir, out = pbs_submit(testbed, "smoke", sleep=3, rc=7, extra="-h")
    assert re.fullmatch(rf"\d+\.{server}\n", stdout), stdout
    jobid = stdout.strip()

    # held: stays queued (H) until qrls
    time.sleep(1.5)
    r, doc = qstat_json(testbed, jobid)
    assert r.returncode == 0, r.stderr
    assert set(doc) == {"timestamp", "pbs_version", "pbs_server", "Jobs"}
    job = doc["Jobs"][jobid]
    assert job["job_state"] == "H" and job["Hold_Types"] == "u"
    assert "exec_host" not in job and "Exit_status" not in job
    assert testbed.ssh(testbed.login_alias, f"qrls {jobid}").returncode == 0

    def running():
        _, d = qstat_json(testbed, jobid)
        j = d["Jobs"][jobid]
        return j if j["job_state"] == "R" and j["substate"] == 42 else None

    job = wait_until(running, 15, interval=0.2, what="job_state R (substate 42: started)")
    assert re.fullmatch(r"node[12]/\d+\*2", job["exec_host"]), job["exec_host"]
    assert job["Resource_List"]["ncpus"] == 2 and job["Resource_List"]["mem"] == "2gb"
    assert job["Resource_List"]["select"] == "1:ncpus=2:mem=2gb"
    assert job["Resource_List"]["walltime"] == "00:05:00"
    assert isinstance(job["session_id"], int)

    # the same keys as a real OpenPBS 23.06 running job (recorded fixture)
    real = json.loads("\n".join(fixture_lines("pbspro-qstat-f-json-running.txt")))
    real_job = next(iter(real["Jobs"].values()))
    assert not set(real_job) - set(job), set(real_job) - set(job)
    assert set(real_job["resources_used"]) == set(job["resources_used"])

    def finished():
        _, d = qstat_json(testbed, jobid)
        j = d["Jobs"][jobid]
        return j if j["job_state"] == "F" else None

    job = wait_until(finished, 30, what="job_state F")
    assert job["Exit_status"] == 7
    real_hist = json.loads("\n".join(fixture_lines("pbspro-qstat-xf-json-history.txt")))
    real_f = real_hist["Jobs"]["1004.pbs"]
    assert set(real_f) <= set(job), set(real_f) - set(job)

    # output copied back at the end; the job ran in $TMPDIR on the node
    text = Path(out).read_text()
    m = re.match(r"node=(node[12]) id=(\S+) cwd=(\S+) tmp=(\S+) work=(\S+)", text)
    assert m, text
    assert m.group(2) == jobid and m.group(3) == m.group(4) and m.group(5) == jobdir

    # a finished job without -x: the real error line and exit code 35
    r = testbed.ssh(testbed.login_alias, f"qstat -f -F json {jobid}")
    assert r.returncode == 35
    pattern = fixture_lines("pbspro-qstat-errors-stderr.txt")[1]
    expected = re.sub(r"\d+\.\S+", jobid, pattern, count=1)
    assert r.stderr.strip() == expected
    assert "Jobs" not in json.loads(r.stdout)
    # and qdel of it
    r = testbed.ssh(testbed.login_alias, f"qdel {jobid}")
    assert r.returncode == 35
    assert r.stderr.strip() == re.sub(r"\d+$", jobid, fixture_lines("pbspro-qstat-errors-stderr.txt")[3])


def test_pbs_unknown_ids_and_qdel(testbed):
    server = testbed.pbs_server
    lines = fixture_lines("pbspro-qstat-errors-stderr.txt")
    r = testbed.ssh(testbed.login_alias, "qstat -f -F json -x 999999")
    assert r.returncode == 153
    assert r.stderr.strip() == re.sub(r"\d+\.\S+", f"999999.{server}", lines[0])
    r = testbed.ssh(testbed.login_alias, "qdel 999999")
    assert r.returncode == 153
    assert r.stderr.strip() == re.sub(r"\d+$", "999999", lines[2])

    # qdel of a running job: it ends (F) with an Exit_status
    stdout, _, _ = pbs_submit(testbed, "todelete", sleep=300)
    jobid = stdout.strip()
    wait_until(lambda: qstat_json(testbed, jobid)[1]["Jobs"][jobid]["job_state"] == "R", 15,
               what="R")
    r = testbed.ssh(testbed.login_alias, f"qdel {jobid}")
    assert r.returncode == 0, r.stderr
    job = wait_until(lambda: (lambda j: j if j["job_state"] == "F" else None)(
        qstat_json(testbed, jobid)[1]["Jobs"][jobid]), 30, what="F after qdel")
    assert job["Exit_status"] == 256 + 15          # the job shell was killed by SIGTERM
    # the table format of qstat
    r = testbed.ssh(testbed.login_alias, f"qstat -x {jobid}")
    header = fixture_lines("pbspro-qstat-default-imperial.txt")[:2]
    assert r.stdout.splitlines()[:2] == header
    assert r.stdout.splitlines()[2].split()[:2] == [jobid, "todelete"]


# ---- fault helpers -------------------------------------------------------------------------
def test_fail_next_and_command_count(disruptive):
    testbed = disruptive  # counts logins or calls, or breaks the bed for a moment: alone
    before = testbed.command_count("squeue")
    testbed.fail_next("squeue", 2)
    results = [testbed.ssh(testbed.login_alias, "squeue -h").returncode for _ in range(3)]
    assert results == [1, 1, 0]
    assert testbed.command_count("squeue") == before + 3
    testbed.fail_next("qstat", 1, message="qstat: cannot connect to server pbs-tb (errno=111)", rc=1)
    r = testbed.ssh(testbed.login_alias, "qstat")
    assert r.returncode == 1 and "cannot connect" in r.stderr
    # a login shell finds the wrappers too
    r = testbed.ssh(testbed.login_alias, "bash -lc 'command -v squeue qsub'")
    assert r.stdout.split() == ["/usr/local/bin/squeue", "/usr/local/bin/qsub"]


def test_link_down_and_restart_sshd(disruptive):
    testbed = disruptive  # counts logins or calls, or breaks the bed for a moment: alone
    p = testbed.link_down(3)
    try:
        r = testbed.ssh(testbed.login_alias, "true", timeout=30)
        assert r.returncode == 255
    finally:
        p.wait(timeout=30)
    assert testbed.ssh(testbed.login_alias, "true").returncode == 0
    p = testbed.link_down(3, mode="blackhole")
    try:
        t0 = time.time()
        r = testbed.ssh(testbed.login_alias, "true", options=("-o", "ConnectTimeout=1"), timeout=30)
        assert r.returncode == 255 and "timed out" in r.stderr and time.time() - t0 >= 0.9
    finally:
        p.wait(timeout=30)
    assert testbed.ssh(testbed.login_alias, "true").returncode == 0
    pid_file = testbed.dir / "run" / "sshd-login.pid"
    old = pid_file.read_text()
    testbed.restart_sshd("login")
    assert pid_file.read_text() != old
    assert testbed.ssh(testbed.login_alias, "true").returncode == 0


def _blocked_on_a_lock(pid: int) -> bool:
    """PID waits for an flock (a `->` line of /proc/locks)."""
    return any(line.split()[1:2] == ["->"] and line.split()[5:6] == [str(pid)]
               for line in Path("/proc/locks").read_text().splitlines())


def test_a_test_run_starting_while_the_bed_is_broken_on_purpose_waits(disruptive):
    """A pytest worker that starts its first bed test while a fault test holds the bed alone with
    an sshd stopped must wait for it, not find the bed "down" and bring up a new one under it (new
    password, new TOTP secret: every later login failed in CI)."""
    tb = disruptive
    password = (tb.dir / "laptop" / "password").read_text()
    holder = (tb.dir / "run" / "holder-login.pid").read_text()
    pid_file = tb.dir / "run" / "sshd-pw.pid"
    os.kill(int(pid_file.read_text()), 15)
    wait_until(lambda: not pid_file.exists(), what="sshd-pw to stop")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    child = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-n", "0", "-p", "no:cacheprovider", "-q",
         f"{Path(__file__)}::test_laptop_reaches_login_only"],
        env={**env, "HPCJ_TESTBED_DIR": str(tb.dir), "HPCJ_TESTBED_KEEP": "1"},
        cwd=Path(__file__).resolve().parents[2], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True)
    try:
        wait_until(lambda: child.poll() is not None or _blocked_on_a_lock(child.pid), timeout=60,
                   interval=0.1, what="the new test run to wait for the bed")
        assert child.poll() is None, child.communicate()[0]
        assert (tb.dir / "laptop" / "password").read_text() == password
        assert (tb.dir / "run" / "holder-login.pid").read_text() == holder
    finally:
        child.kill()
        child.communicate()
        tb.restart_sshd("pw")


# ---- site twins (testbed.sh up --twin) -----------------------------------------------------
@pytest.fixture(scope="module")
def twins(testbed, tmp_path_factory):
    """The twins' description plus one ssh ControlMaster per alias (each login asks once)."""
    if not testbed.info.get("twins"):
        assert os.environ.get("HPCJ_TESTBED_TWINS") != "1", "HPCJ_TESTBED_TWINS=1 but the bed has no twins"
        pytest.skip("bed without site twins (testbed.sh up --twin)")
    info = json.loads(Path(testbed.info["twins_json"]).read_text())
    sockets = tmp_path_factory.mktemp("cm")
    masters = {}
    totp = Totp(testbed.dir, info["cray"]["user"], info["cray"]["totp_secret_hex"]).code

    def master(alias):
        if alias in masters:
            return masters[alias][0]
        cm = str(sockets / alias)
        # the master stays a child of this fixture (no -f: a daemonised master dies with the pty)
        child = pexpect.spawn("ssh", ["-F", info["ssh_config"], "-o", "ControlMaster=yes",
                                      "-o", f"ControlPath={cm}", "-N", alias],
                              encoding="utf-8", timeout=30)
        deadline = time.time() + 30
        while not Path(cm).exists():
            i = child.expect([r"One-time password \(OATH\) for `crayuser': ", r"password: ",
                              pexpect.EOF, pexpect.TIMEOUT], timeout=0.5)
            if i == 0:
                child.sendline(totp())
            elif i == 1:
                child.sendline(info["imperial"]["password"])
            elif i == 2:
                raise AssertionError(f"ssh {alias} ended: {child.before!r}")
            assert time.time() < deadline, f"no control socket for {alias}: {child.before!r}"
        masters[alias] = (cm, child)
        return cm

    def run(alias, cmd, timeout=120):
        cm = master(alias)
        return subprocess.run(["ssh", "-F", info["ssh_config"], "-o", f"ControlPath={cm}",
                               "-o", "BatchMode=yes", alias, cmd], capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)

    info["run"] = run
    yield info
    for alias, (cm, child) in masters.items():
        subprocess.run(["ssh", "-F", info["ssh_config"], "-o", f"ControlPath={cm}", "-O", "exit",
                        alias], capture_output=True)
        child.close(force=True)


def test_twin_aliases_log_in(twins):
    cray, ic = twins["cray"], twins["imperial"]
    for alias in cray["aliases"]:
        r = twins["run"](alias, 'hostname; id -un; echo "$HOME"; id -gn')
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == ["login", cray["user"], cray["home"], cray["project"]]
    r = twins["run"](ic["aliases"][0], 'hostname; id -un; echo "$HOME"')
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["login", ic["user"], ic["home"]]
    # key only is not enough on the Cray twin (TOTP), and keys are refused on the Imperial one
    r = subprocess.run(["ssh", "-F", twins["ssh_config"], "-o", "BatchMode=yes",
                        "-o", "ControlMaster=no", "-o", "ControlPath=none", cray["aliases"][0], "true"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 255 and "Permission denied" in r.stderr


def test_twin_filesystems(testbed, twins):
    cray, ic = twins["cray"], twins["imperial"]
    r = testbed.exec("login", "stat", "-c", "%U", cray["home"], cray["work"], cray["epccfs"], ic["home"])
    assert r.stdout.split() == [cray["user"]] * 3 + [ic["user"]], r.stderr
    for node in testbed.nodes:           # /home is not mounted on compute nodes; the rest is
        r = testbed.exec(node, "sh", "-c", f"ls /home; test -e {cray['home']} || echo NOHOME")
        assert r.stdout.strip() == "NOHOME", r.stdout
        r = testbed.exec(node, "stat", "-c", "%U", cray["work"], cray["epccfs"], ic["home"])
        assert r.stdout.split() == [cray["user"]] * 2 + [ic["user"]], r.stderr
    # the laptop sees the same files under the twins' directory
    marker = uuid.uuid4().hex
    r = twins["run"](cray["aliases"][0], f"echo {marker} > {cray['work']}/m && echo {marker} > {cray['home']}/m")
    assert r.returncode == 0, r.stderr
    assert (Path(cray["work_local"]) / "m").read_text().strip() == marker
    assert (Path(cray["home_local"]) / "m").read_text().strip() == marker
    # the laptop's root filesystem gets mount points only (no twin files)
    assert not Path(cray["work"]).exists()


def test_twin_slurm_job_from_work_sees_no_home(testbed, twins):
    cray = twins["cray"]
    opts = f"-A {cray['budget']} -p standard" + (" --qos=standard" if cray["accounting"] else "")
    r = twins["run"](cray["aliases"][1],
                     f"cd {cray['work']} && sbatch --parsable {opts} -o twin-%j.out "
                     "--wrap 'hostname; test -d $HOME && echo HOME-THERE || echo NO-HOME; pwd'")
    assert r.returncode == 0, r.stderr
    jobid = r.stdout.strip().split(";")[0]
    out = Path(cray["work_local"]) / f"twin-{jobid}.out"
    wait_until(lambda: out.exists() and "NO-HOME" in out.read_text() or None, 30, what=str(out))
    lines = out.read_text().split()
    assert lines[0] in testbed.nodes and lines[2] == cray["work"], lines
    if cray["accounting"]:
        r = twins["run"](cray["aliases"][1], 'sacctmgr -n -P show assoc user="$(id -un)" format=account,qos')
        accounts = {line.split("|")[0] for line in r.stdout.split()}
        assert {cray["project"], cray["budget"]} <= accounts, r.stdout
        assert "gpu-shd" in r.stdout and "standard" in r.stdout
    r = twins["run"](cray["aliases"][1], "sinfo -h -o %P")
    assert {"standard", "serial*", "gpu"} <= set(r.stdout.split()), r.stdout


def test_twin_module_shim_and_cray_python(twins):
    cray = twins["cray"]
    script = """
module list 2>&1 | grep -c PrgEnv-cray
command -v python3.11 >/dev/null; type -t module
module load cray-python
command -v python
python -c 'import sys; print("%d.%d" % sys.version_info[:2])'
python -c 'import jupyterlab' 2>/dev/null && echo HAS-JUPYTER || echo NO-JUPYTER
command -v jupyter-lab || echo NO-JUPYTER-LAB
module list 2>&1 | grep -o 'cray-python[^ ]*'
module restore 2>/dev/null; command -v python || echo NO-PYTHON
module load nosuchmodule 2>&1 | grep -c unknown
module purge; module list 2>&1
"""
    r = twins["run"](cray["aliases"][0], f"bash -lc {shlex.quote(script)}")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "1" and lines[1] == "function", lines
    assert lines[2] == cray["cray_python"], lines
    assert lines[3] == "3.11" and lines[4] == "NO-JUPYTER" and lines[5] == "NO-JUPYTER-LAB", lines
    assert lines[6].startswith("cray-python/3.11"), lines
    assert lines[7] != cray["cray_python"], lines
    assert lines[8] == "1" and lines[9] == "No modules loaded", lines


def test_twin_jupyterlab_installs(testbed, twins):
    cray = twins["cray"]
    base = cray["pythonuserbase"]
    script = f"""
set -e
module load cray-python
export PYTHONUSERBASE={base}      # as the sites document: the user base on /work, its bin on PATH
export PATH="$PYTHONUSERBASE/bin:$PATH"
python -c 'import jupyterlab; print(jupyterlab.__version__)'
jupyter-lab --version
{cray['epccfs_venv']}/bin/jupyter-lab --version
"""
    r = twins["run"](cray["aliases"][0], f"bash -lc {shlex.quote(script)}")
    assert r.returncode == 0, r.stderr
    versions = r.stdout.split()
    assert len(versions) == 3 and len(set(versions)) == 1 and re.fullmatch(r"\d+\.\d+\.\d+\S*", versions[0])
    # on a compute node too (what the batch job runs)
    r = testbed.exec("node1", "runuser", "-u", cray["user"], "--", "env", f"PYTHONUSERBASE={base}",
                     f"HOME={cray['work']}", cray["cray_python"], "-c", "import jupyterlab; print(jupyterlab.__version__)")
    assert r.returncode == 0 and r.stdout.strip() == versions[0], r.stderr


def test_twin_conda_shim(testbed, twins):
    ic = twins["imperial"]
    script = """
eval "$(~/miniforge3/bin/conda shell.bash hook)"
echo "base=$CONDA_DEFAULT_ENV"
command -v jupyter-lab || echo NO-JUPYTER-LAB
conda activate jupyter
echo "env=$CONDA_DEFAULT_ENV $CONDA_PREFIX"
command -v jupyter-lab
jupyter-lab --version >/dev/null && echo RUNS
conda activate nosuch 2>&1 | head -1
conda env list | grep -c jupyter
"""
    r = twins["run"](ic["aliases"][0], f"bash -c {shlex.quote(script)}")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    prefix = f"{ic['conda']}/envs/jupyter"
    assert lines[0] == "base=base" and lines[1] == "NO-JUPYTER-LAB", lines
    assert lines[2] == f"env=jupyter {prefix}" and lines[3] == f"{prefix}/bin/jupyter-lab", lines
    assert lines[4] == "RUNS" and lines[5].startswith("EnvironmentNameNotFound"), lines
    assert lines[6] == "1", lines


def test_twin_pbs_qsub_as_imperial_user(testbed, twins):
    ic = twins["imperial"]
    r = twins["run"](ic["aliases"][0],
                     "mkdir -p ~/pbs-smoke && cd ~/pbs-smoke && "
                     "echo 'hostname; echo \"$HOME\"' | qsub -N twin -j oe -l select=1:ncpus=1:mem=1gb")
    assert r.returncode == 0, r.stderr
    jobid = r.stdout.strip()

    def done():
        q = twins["run"](ic["aliases"][0], f"qstat -x -f -F json {jobid}")
        return json.loads(q.stdout)["Jobs"][jobid] if q.returncode == 0 and '"F"' in q.stdout else None

    job = wait_until(done, 40, what="twin PBS job F")
    assert job["Exit_status"] == 0 and job["Job_Owner"].startswith(ic["user"] + "@"), job
