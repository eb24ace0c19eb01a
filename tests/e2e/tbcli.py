"""Helpers of the status, login and tunnel-recovery e2e tests: a CLI with short private paths,
status polling, ssh masters and ssh processes of the laptop."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from clihelpers import Cli, close_masters, control_sockets, master_pid, pid_alive, short_cli  # noqa: F401 (re-exported)

STATUS_KEYS = {"job_id", "site", "state", "outcome", "native_state", "node", "reason", "time_used", "time_limit",
               "start_estimate", "exit_status"}


def cmdlines() -> Iterator[tuple[int, list[str]]]:
    """(pid, argv) of every process of this machine's root pid namespace that we can read."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if raw:
            yield int(entry.name), raw.decode(errors="replace").rstrip("\0").split("\0")


def ssh_with_local_forward(local_port: int) -> list[int]:
    """Pids of ssh processes whose argv has ``-L 127.0.0.1:<local_port>:...``."""
    prefix = f"127.0.0.1:{local_port}:"
    found = []
    for pid, argv in cmdlines():
        if not argv or os.path.basename(argv[0]) != "ssh":
            continue
        if any(a == "-L" and b.startswith(prefix) for a, b in zip(argv, argv[1:])) or \
                any(a.startswith("-L" + prefix) for a in argv):
            found.append(pid)
    return found


def listeners(port: int) -> list[tuple[str, str]]:
    """(local address, process column) of TCP listeners on ``port`` in this (root) namespace."""
    out = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True, check=True).stdout
    rows = []
    for line in out.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[3].rsplit(":", 1)[-1] == str(port):
            rows.append((fields[3], " ".join(fields[5:])))
    return rows


# ---- status ------------------------------------------------------------------------------------


def status(cli: Cli, site: str, job_id: str) -> dict[str, Any]:
    """``hpcjupyter status JOB --site SITE --json`` (must succeed), with exactly the documented keys."""
    res = cli.run("status", job_id, "--site", site, "--json", timeout=120)
    assert res.returncode == 0, f"status {job_id} failed (exit {res.returncode}): {res.stderr}"
    data = json.loads(res.stdout)
    assert set(data) == STATUS_KEYS, data
    assert data["job_id"] == job_id and data["site"] == site, data
    assert all(isinstance(v, str) for v in data.values()), data
    return data


def wait_status(cli: Cli, site: str, job_id: str, done: Callable[[dict[str, Any]], bool],
                seconds: float = 90, seen: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Poll `status` until ``done(data)``; every answer is appended to ``seen``."""
    deadline = time.monotonic() + seconds
    while True:
        data = status(cli, site, job_id)
        if seen is not None:
            seen.append(data)
        if done(data):
            return data
        assert time.monotonic() < deadline, f"job {job_id} never reached the awaited state; last: {data}"
        time.sleep(0.5)


# ---- the scheduler, asked directly on login (not through the CLI) -------------------------------

ACTIVE = {"slurm": {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED", "REQUEUED", "RESIZING"},
          "pbs": {"Q", "H", "R", "E", "W", "T", "B", "S", "U"}}
"""Native states of a job that has not finished yet."""


def native_state(testbed: Any, scheduler: str, job_id: str) -> str:
    """The job's state as its own scheduler prints it ('' when it no longer knows the job)."""
    if scheduler == "pbs":
        out = testbed.ssh(testbed.login_alias, f"qstat -x -f {shlex.quote(job_id)}").stdout
        return next((line.split("=", 1)[1].strip() for line in out.splitlines()
                     if line.strip().startswith("job_state =")), "")
    return testbed.ssh(testbed.login_alias, f"squeue -h -t all -j {shlex.quote(job_id)} -o %T").stdout.strip()


def cancel_and_wait(testbed: Any, scheduler: str, *job_ids: str, seconds: float = 60) -> None:
    """Cancel with the site's own scheduler (scancel / qdel) and wait until each job has finished."""
    if not job_ids:
        return
    quoted = " ".join(shlex.quote(j) for j in job_ids)
    testbed.ssh(testbed.login_alias, f"qdel {quoted}" if scheduler == "pbs" else f"scancel {quoted}")
    deadline = time.monotonic() + seconds
    for job in job_ids:
        while native_state(testbed, scheduler, job) in ACTIVE[scheduler]:
            assert time.monotonic() < deadline, f"job {job} still not finished {seconds:g} s after the cancel"
            time.sleep(0.3)


def script_ended(job_dir: Path | str) -> bool:
    """The job script's EXIT trap has run (its last log line is written): nothing of it runs any more."""
    from hpcjupyter import protocol

    try:
        log = (Path(job_dir) / protocol.LOG).read_text(errors="replace")
    except OSError:
        return False
    return f"{protocol.SAY}{protocol.ENDED} " in log


def wait_until(predicate: Callable[[], Any], seconds: float, what: str, step: float = 0.2) -> Any:
    """Poll ``predicate`` until it returns something true (returned), or fail naming ``what``."""
    deadline = time.monotonic() + seconds
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {seconds:g} s waiting for {what}"
        time.sleep(step)


def laptop_port(pid: int, server_port: int) -> int | None:
    """The laptop-side TCP port of process PID's connection to the sshd on SERVER_PORT."""
    out = subprocess.run(["ss", "-Htnp", "state", "established", "dport", "=", f":{server_port}"],
                         capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        if f"pid={pid}," in line:
            return int(line.split()[2].rsplit(":", 1)[1])
    return None
