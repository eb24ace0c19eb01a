"""Issue 6, "Faults survived", on the mini-cluster test bed: a flaky network, a restarted sshd,
a scheduler that fails for a while, jobs that die at each stage, a submit killed half-way and
twenty submits at once. Each fault ends either in recovery or in one clear message with a
non-zero exit -- never a traceback, never a lost job or a broken record.

Tests that break the bed for everyone (link down, sshd restart, injected failures, killing
processes, filling the nodes) take the `disruptive` fixture (the bed held exclusively).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest
from clihelpers import Cli, control_sockets, master_pid, pid_alive, port_and_token, read_url, stop
from tbcli import laptop_port
from tbprofiles import profile_text

from hpcjupyter.probe import api_status

pytestmark = pytest.mark.e2e

SITE = "tbfault"


# ---- helpers ---------------------------------------------------------------------------------


@dataclass
class Connect:
    """`hpcjupyter connect` running in the background, and what it wrote on stderr once stopped."""

    process: subprocess.Popen[str]
    stderr: str = ""


@contextlib.contextmanager
def connecting(cli: Cli, testbed: Any, job: str) -> Iterator[Connect]:
    """`hpcjupyter connect JOB --no-browser` for the body of the block; afterwards, whatever
    happened, it is stopped (stderr kept) and the job cancelled."""
    run = Connect(cli.start("connect", job, "--no-browser"))
    try:
        yield run
    finally:
        run.stderr += stop(run.process)
        cancel_quietly(testbed, job)


def install(cli: Cli, testbed: Any, **kw: str) -> None:
    cli.write_profile(SITE, profile_text(testbed, **kw))


def submit(cli: Cli, *flags: str) -> str:
    res = cli.run("submit", "--site", SITE, *flags)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip().splitlines()[-1]


def records(cli: Cli) -> list[dict[str, Any]]:
    """The session records as stored (not through `ls`, which would refresh them)."""
    files = sorted((cli.state / "sessions").glob("*.json"))
    return [json.loads(p.read_text()) for p in files if not p.name.startswith(".")]


def record_of(cli: Cli, job_id: str) -> dict[str, Any]:
    (found,) = [r for r in records(cli) if r["job_id"] == job_id]
    return found


def listed(cli: Cli, job_id: str) -> dict[str, Any]:
    """`ls --json`'s entry for the job."""
    (found,) = [s for s in cli.json("ls") if s["job_id"] == job_id]
    return found


def answering_within(port: int, token: str, seconds: float) -> float | None:
    """Seconds until Jupyter answers 200 through the tunnel again, or None."""
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        if api_status(port, "/", token, timeout=2.0) == 200:
            return time.monotonic() - start
        time.sleep(0.5)
    return None


def wait_for(predicate: Any, seconds: float, what: str, step: float = 0.5) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {seconds:g} s waiting for {what}")


def sshd_pid(testbed: Any) -> str:
    return (testbed.dir / "run" / "sshd-login.pid").read_text().strip()


def sshd_greets(testbed: Any) -> bool:
    """The login sshd accepts a TCP connection and sends its banner (no login: nothing logged)."""
    try:
        with socket.create_connection((testbed.addresses["login"], testbed.ports["login"]), timeout=2) as s:
            return s.recv(64).startswith(b"SSH-2.0")
    except OSError:
        return False


def cancel_quietly(testbed: Any, *job_ids: str) -> None:
    if job_ids:
        testbed.ssh(testbed.login_alias, "scancel " + " ".join(job_ids))


def assert_clean_failure(code: int | None, stderr: str) -> None:
    assert code not in (0, None), f"expected a failure, got exit {code}:\n{stderr}"
    assert "Traceback" not in stderr, stderr
    assert stderr.count("\nerror: ") + stderr.startswith("error: ") == 1, stderr


# ---- the network and the login node ----------------------------------------------------------


@pytest.mark.parametrize("mode", ["unreachable", "blackhole"])
def test_link_down_30s_connect_waits_and_recovers(cli: Cli, disruptive: Any, mode: str) -> None:
    """The laptop<->login link goes down for 30 s while connect holds a session: connect keeps
    running, and the same URL answers again once the link is back."""
    testbed = disruptive
    install(cli, testbed)
    job = submit(cli)
    with connecting(cli, testbed, job) as run:
        connect = run.process
        url = read_url(connect)
        port, token = port_and_token(url)
        assert api_status(port, "/", token) == 200
        link = testbed.link_down(30, mode=mode)  # returns once that end of the link is down
        assert link.poll() is None, "link-down ended early"
        assert api_status(port, "/", token, timeout=2.0) != 200, "the link is down: nothing should answer"
        link.wait(timeout=60)
        took = answering_within(port, token, 150)
        print(f"{mode}: answering again {took} s after the link came back")
        assert took is not None, "the URL did not answer again within 150 s of the link coming back"
        assert connect.poll() is None, "connect gave up during the outage"
        assert listed(cli, job)["state"] == "RUNNING"
    stderr = run.stderr
    assert "Traceback" not in stderr


def test_login_sshd_restart_session_goes_on(cli: Cli, disruptive: Any) -> None:
    """sshd on login restarts: the established master carries on (no new login at all); when
    the master is lost too, connect opens a new one by itself (key login: no prompt) and the
    same URL answers again."""
    testbed = disruptive
    install(cli, testbed)
    job = submit(cli)
    with connecting(cli, testbed, job) as run:
        connect = run.process
        url = read_url(connect)
        port, token = port_and_token(url)
        offset = testbed.log_size("login")  # count only the logins from here on

        old_sshd = sshd_pid(testbed)
        testbed.restart_sshd("login")
        assert sshd_pid(testbed) != old_sshd
        wait_for(lambda: sshd_greets(testbed), 10, "the restarted sshd to answer", 0.05)
        assert api_status(port, "/", token, timeout=5.0) == 200
        assert listed(cli, job)["state"] == "RUNNING"  # a new command over the same master
        assert testbed.accepted_since("login", offset) == [], "the restart must not force a new login"

        # As if the restart had dropped the connections: the master (our own process) dies.
        testbed.restart_sshd("login")
        (sock,) = control_sockets(cli)
        master = master_pid(sock)
        assert master is not None
        os.kill(master, signal.SIGKILL)
        wait_for(lambda: not pid_alive(master), 10, "the master to die", 0.05)
        took = answering_within(port, token, 60)
        assert took is not None, "connect did not restore the tunnel through a new master"
        new_master = master_pid(sock)
        assert new_master is not None and new_master != master
        (new_login,) = testbed.accepted_since("login", offset)  # exactly one new login: the new master's
        assert f" port {laptop_port(new_master, testbed.ports['login'])} " in new_login, new_login
        assert connect.poll() is None
    stderr = run.stderr
    assert "Traceback" not in stderr


# ---- the scheduler failing for a while -------------------------------------------------------


def test_squeue_failing_transiently_is_unknown_then_retried(cli: Cli, disruptive: Any) -> None:
    """Three failing squeue calls while connect waits: the job is UNKNOWN (never ended), the
    query is retried, and connect gets to Jupyter."""
    testbed = disruptive
    # Jupyter is held back until every injected failure has been met (connect finds a ready
    # Jupyter in the job directory without asking the scheduler): the job waits for a file.
    install(cli, testbed, extra_env='setup = [\'while [ ! -e "$HPCJ_JOB_DIR/go" ]; do sleep 0.2; done\']')
    job = submit(cli)
    go = Path(record_of(cli, job)["job_dir"]) / "go"
    mark = testbed.calls_mark()
    testbed.fail_next("squeue", 3)
    states: list[str] = []  # the record's state, sampled while connect waits
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            states.append(record_of(cli, job)["state"])
            time.sleep(0.1)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    with connecting(cli, testbed, job) as run:
        connect = run.process
        try:
            # Our own job's squeue calls: three failed, then one answered.
            wait_for(lambda: len(testbed.own_calls(mark, "squeue", job)) >= 4, 60, "squeue to be asked again")
            assert (testbed.faults_dir / "squeue.fail").read_text().strip() == "0"
            go.touch()
            url = read_url(connect, seconds=120)
            port, token = port_and_token(url)
            assert api_status(port, "/", token) == 200
            rec = record_of(cli, job)
            assert rec["state"] == "RUNNING" and not rec["ended_at"], rec
        finally:
            done.set()
            watcher.join(5)
    stderr = run.stderr
    assert states and "ENDED" not in states and "FAILED" not in states, sorted(set(states))
    assert "unknown" in stderr and "Unable to contact slurm controller" in stderr, stderr
    assert "ended" not in stderr.split("Jupyter on", 1)[0], stderr
    assert "Traceback" not in stderr


# ---- jobs that end early: connect says so with the log's tail, `ls` says why -----------------


def _connect_fails(cli: Cli, connect: subprocess.Popen[str], seconds: float) -> str:
    try:
        connect.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        stop(connect)
        raise AssertionError(f"connect still running {seconds:g} s after the job died") from None
    stderr = stop(connect)
    assert_clean_failure(connect.returncode, stderr)
    assert "ended" in stderr and "Last lines of" in stderr, stderr
    return stderr


def test_job_killed_before_jupyter_starts(cli: Cli, testbed: Any) -> None:
    """scancel while the site setup still runs: connect exits non-zero and says the job was
    cancelled (not a Jupyter or environment problem: no log tail, no advice about conda)."""
    install(cli, testbed, extra_env='setup = ["echo hpcj-fault-setup-started", "sleep 30"]')
    job = submit(cli)
    with connecting(cli, testbed, job) as run:
        connect = run.process
        log = Path(record_of(cli, job)["job_dir"]) / "job.log"
        wait_for(lambda: log.exists() and "hpcj-fault-setup-started" in log.read_text(), 60, "setup to run")
        res = testbed.ssh(testbed.login_alias, f"scancel {job}")
        assert res.returncode == 0, res.stderr
        connect.wait(timeout=60)
        stderr = stop(connect)
    assert_clean_failure(connect.returncode, stderr)
    assert f"job {job} on tbfault was cancelled: cancelled (CANCELLED" in stderr, stderr
    assert "hpcjupyter submit --site tbfault" in stderr and "conda" not in stderr
    assert "HPCJUPYTER_READY" not in stderr and "http://127.0.0.1" not in stderr
    entry = wait_for(lambda: (e := listed(cli, job))["state"] == "ENDED" and e, 30, "ls to show ENDED")
    assert "CANCELLED" in entry["reason"], entry


def test_jupyter_crashing_after_start(cli: Cli, testbed: Any) -> None:
    """Jupyter dies (SIGKILL, as a crash) while connected: connect exits non-zero with the tail."""
    install(cli, testbed)
    job = submit(cli)
    with connecting(cli, testbed, job) as run:
        connect = run.process
        url = read_url(connect)
        port, token = port_and_token(url)
        assert api_status(port, "/", token) == 200
        rec = record_of(cli, job)
        info = json.loads((Path(rec["job_dir"]) / "connection.json").read_text())
        # Only this job's Jupyter: other tests run theirs on the same nodes.
        killed = testbed.exec(rec["node"], "kill", "-KILL", str(info["pid"]))
        assert killed.returncode == 0, killed.stderr
        stderr = _connect_fails(cli, connect, 90)
    assert "jupyter exited with status 137" in stderr, stderr
    assert token not in stderr
    entry = listed(cli, job)
    assert entry["state"] == "ENDED" and entry["reason"], entry
    assert any(word in entry["reason"] for word in ("FAILED", "NonZeroExitCode", "137")), entry


def test_walltime_reached(cli: Cli, testbed: Any) -> None:
    """A one-minute job: Slurm kills it at its walltime, connect reports TIMEOUT with the tail."""
    install(cli, testbed)
    job = submit(cli, "--hours", "0.0167")  # 60 s: Slurm's smallest limit, 1 minute
    with connecting(cli, testbed, job) as run:
        connect = run.process
        url = read_url(connect)
        port, token = port_and_token(url)
        assert api_status(port, "/", token) == 200
        stderr = _connect_fails(cli, connect, 240)
    assert "TIMEOUT" in stderr, stderr
    assert "stop requested" in stderr or "job script ended" in stderr, stderr
    entry = listed(cli, job)
    assert entry["state"] == "ENDED" and ("TimeLimit" in entry["reason"] or "TIMEOUT" in entry["reason"]), entry


# ---- submit interrupted, and many at once ----------------------------------------------------


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == pid:
                found.append(int(entry.name))
    return found


def test_submit_killed_after_the_scheduler_took_the_job(cli: Cli, disruptive: Any) -> None:
    """hpcjupyter is stopped while sbatch runs and killed once the job is queued, before it can
    record the job id: the next `ls` finds the job by its name, and cancel works on it."""
    testbed = disruptive
    install(cli, testbed)
    assert cli.run("ls").returncode == 0
    testbed.delay_next("sbatch", 3)
    mark = testbed.calls_mark()
    submitting = cli.start("submit", "--site", SITE)
    job = ""
    try:
        # Our own sbatch call: its script lies in the job directory of this CLI's record.
        wait_for(lambda: (recs := records(cli)) and testbed.own_calls(mark, "sbatch", recs[0]["job_dir"]),
                 30, "sbatch to be called")
        os.kill(submitting.pid, signal.SIGSTOP)  # its ssh child goes on: sbatch runs to its end
        (rec,) = records(cli)
        assert rec["state"] == "SUBMITTING" and rec["job_id"] is None, rec
        name = rec["job_name"]
        job = wait_for(lambda: testbed.ssh(testbed.login_alias, f"squeue -h -t all -n {name} -o %i")
                       .stdout.strip(), 30, "the job to be queued")
        os.kill(submitting.pid, signal.SIGKILL)
        submitting.wait(timeout=10)
        testbed.delay_next("sbatch", 0)
        (rec,) = records(cli)
        assert rec["job_id"] is None, "the submit was killed before it saved the id"
        entry = listed(cli, job)  # ls looks the job up by its name
        assert entry["job_name"] == name and entry["state"] in ("PENDING", "RUNNING"), entry
        assert record_of(cli, job)["job_id"] == job
        cancelled = cli.run("cancel", job)
        assert cancelled.returncode == 0, cancelled.stderr
    finally:
        testbed.delay_next("sbatch", 0)
        if submitting.poll() is None:
            os.kill(submitting.pid, signal.SIGKILL)
            submitting.wait()
        if job:
            cancel_quietly(testbed, job)


def test_twenty_submits_at_once(cli: Cli, disruptive: Any) -> None:
    """20 `hpcjupyter submit` processes started together (one shared login): 20 intact records
    and 20 distinct jobs."""
    testbed = disruptive
    install(cli, testbed)
    procs = [cli.start("submit", "--site", SITE) for _ in range(20)]
    outs = []
    jobs: list[str] = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=300)
            outs.append((p.returncode, out, err))
        failed = [(code, err) for code, _, err in outs if code != 0]
        jobs = [out.strip().splitlines()[-1] for code, out, _ in outs if code == 0]
        assert not failed, f"{len(failed)} of 20 submits failed; first: {failed[0]}"
        assert len(set(jobs)) == 20, jobs
        recs = records(cli)
        assert len(recs) == 20 and {r["job_id"] for r in recs} == set(jobs), recs
        assert all(r["state"] == "PENDING" and r["job_name"] == f"hpcj-{r['session_id']}" for r in recs)
        assert len({r["session_id"] for r in recs}) == 20
        assert not list((cli.state / "sessions").glob(".tmp-*")), "a partial record was left behind"
        queued = testbed.ssh(testbed.login_alias, "squeue -h -t all -j " + ",".join(jobs) + " -o %i").stdout.split()
        assert sorted(queued) == sorted(jobs)
        assert len(control_sockets(cli)) == 1, "one login served every submit"
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        cancel_quietly(testbed, *jobs)
