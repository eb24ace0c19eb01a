"""Jobs that can never start fail fast (issue 12, section 3): `connect` stops at the first
scheduler answer that says so, shows the reason and what to change, and leaves the job queued --
or cancels it with ``--cancel-on-exit``, saying so.

PBS: a job asking for more cores than any node of the emulator has stays queued with PBS Pro's
comment ``Can Never Run: Insufficient amount of resource: ncpus (R: .. A: .. T: ..)``.
Slurm: a job asking for more hours than its partition's MaxTime (the bed's ``serial`` partition:
24 h) stays pending with reason ``PartitionTimeLimit`` (slurm.conf's default EnforcePartLimits=NO).
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest
from clihelpers import Cli
from tbcli import wait_status
from tbprofiles import profile_text

pytestmark = pytest.mark.e2e

POLL = 30  # seconds between scheduler queries: far longer than any of these tests waits


def install(cli: Cli, testbed: Any, name: str, scheduler: str, poll: int = POLL) -> None:
    text = profile_text(testbed, scheduler=scheduler)
    assert "poll_seconds = 2" in text
    cli.write_profile(name, text.replace("poll_seconds = 2", f"poll_seconds = {poll}"))


def submit(cli: Cli, site: str, *flags: str) -> str:
    res = cli.run("submit", "--site", site, "--json", *flags)
    assert res.returncode == 0, res.stderr
    return str(json.loads(res.stdout)["job_id"])


def scheduler_cancel(testbed: Any, scheduler: str, job: str) -> None:
    if scheduler == "pbs":
        testbed.ssh(testbed.login_alias, f"qdel {job}")
    else:
        testbed.ssh(testbed.login_alias, f"scancel {job}")


CASES = {
    # scheduler: (flags that ask for what no node/partition gives, the reason, the fix, the status command)
    "pbs": (("--cpus", "4096"), r"Can Never Run: Insufficient amount of resource: ncpus \(R: 4096 A: \d+ T: \d+\)",
            "ask for fewer --cpus, less --memory or fewer --gpus: no node has that much", "qstat"),
    "slurm": (("--hours", "30"), r"PartitionTimeLimit",
              "ask for fewer --hours: the partition's time limit is shorter", "squeue"),
}


@pytest.mark.parametrize("scheduler", list(CASES))
def test_connect_stops_at_the_first_answer_that_says_the_job_can_never_start(
        cli: Cli, testbed: Any, scheduler: str) -> None:
    flags, reason, fix, query = CASES[scheduler]
    site = f"tb-never-{scheduler}"
    install(cli, testbed, site, scheduler)
    job = submit(cli, site, *flags)
    try:
        # the scheduler has looked at the job and said why it waits
        seen = wait_status(cli, site, job, lambda d: bool(re.match(reason, d["reason"])), seconds=30)
        assert seen["state"] == "PENDING", seen

        mark = testbed.calls_mark()  # from here, only this job's queries are counted
        t0 = time.monotonic()
        res = cli.run("connect", job, "--no-browser", timeout=POLL)
        took = time.monotonic() - t0
        print(f"connect {job} ({took:.1f} s):\n{res.stderr}")
        assert res.returncode == 1, res.stderr
        assert re.search(rf"job {re.escape(job)} on {site} can never start as asked: {reason}\.", res.stderr), res.stderr
        assert f"To fix: {fix}. The job is still queued: 'hpcjupyter cancel {job}' removes it." in res.stderr
        # within one poll: the first scheduler answer was enough
        assert len(testbed.own_calls(mark, query, job)) == 1, testbed.own_calls(mark, query, job)
        assert took < POLL / 2, took
        assert "http://" not in res.stdout
        left = wait_status(cli, site, job, lambda d: True)
        assert left["state"] == "PENDING", left  # left for the user to decide

        # --cancel-on-exit: cancelled, and the user is told
        res = cli.run("connect", job, "--no-browser", "--cancel-on-exit", timeout=POLL)
        print(f"connect --cancel-on-exit {job}:\n{res.stderr}")
        assert res.returncode == 1, res.stderr
        assert f"cancelled job {job} on {site} (--cancel-on-exit)" in res.stderr, res.stderr
        assert "can never start as asked: " in res.stderr
        assert f"To fix: {fix}. The job was cancelled (--cancel-on-exit)." in res.stderr, res.stderr
        assert "still queued" not in res.stderr
        gone = wait_status(cli, site, job, lambda d: d["state"] == "ENDED", seconds=30)
        assert gone["outcome"] == "cancelled", gone
    finally:
        scheduler_cancel(testbed, scheduler, job)


def test_submit_connect_stops_on_a_job_that_can_never_start(cli: Cli, testbed: Any) -> None:
    """The same through `submit --connect` (one invocation, as a user types it), with the
    bed's short poll: it stops at the first answer naming the reason."""
    site = "tb-never-submit"
    install(cli, testbed, site, "pbs", poll=2)
    t0 = time.monotonic()
    res = cli.run("submit", "--site", site, "--cpus", "4096", "--connect", "--no-browser", "--cancel-on-exit",
                  timeout=60)
    took = time.monotonic() - t0
    match = re.search(r"submitted job (\S+) to ", res.stderr)
    assert match, res.stderr
    job = match.group(1)
    try:
        assert res.returncode == 1, res.stderr
        assert "can never start as asked: Can Never Run: Insufficient amount of resource: ncpus" in res.stderr
        assert f"cancelled job {job} on {site} (--cancel-on-exit)" in res.stderr, res.stderr
        assert "The job was cancelled (--cancel-on-exit)." in res.stderr and "still queued" not in res.stderr
        assert took < 20, took
        gone = wait_status(cli, site, job, lambda d: d["state"] == "ENDED", seconds=30)
        assert gone["outcome"] == "cancelled", gone
    finally:
        scheduler_cancel(testbed, "pbs", job)
