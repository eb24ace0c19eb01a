"""`hpcjupyter status --json` on the real Slurm of the test bed and on its PBS Pro emulator.

Issue 3's "done when": real sbatch/squeue/scancel (qsub/qstat/qdel) drive a job PENDING ->
RUNNING -> ENDED and status reports each step; a job only visible through history; an unknown id
is a clear error with exit 1. Also `submit --json`.
"""

from __future__ import annotations

import json
import re
import shlex
import stat
from pathlib import Path

import pytest
from tbcli import short_cli, status, wait_status
from tbprofiles import profile_text

from hpcjupyter.schedulers.base import NOT_KNOWN

pytestmark = pytest.mark.e2e

TIME = re.compile(r"^(\d+-)?(\d+:)?\d+:\d\d$")
SLURM_PURGED = "slurm_load_jobs error: Invalid job id specified"
"""What squeue and scontrol print (exit 1) for a job id slurmctld has purged or never had."""


@pytest.fixture
def cli():
    with short_cli() as c:
        yield c


def submit_json(cli, site: str) -> dict:
    res = cli.run("submit", "--site", site, "--json")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)  # stdout is only the JSON object
    assert set(data) == {"site", "job_id", "script"}, data
    assert data["site"] == site and data["job_id"], data
    return data


def login(testbed, cmd: str) -> str:
    """A shell command on the login node as the test user (key login, not through the CLI)."""
    res = testbed.ssh(testbed.login_alias, cmd)
    assert res.returncode == 0, f"{cmd}: {res.stderr}"
    return res.stdout.strip()


def check_script(testbed, data: dict, header: str) -> None:
    """The script path is in the job directory on the shared filesystem, 0700, with our header."""
    script = Path(data["script"])
    assert script.name == "job.sh" and script.parent.parent == testbed.remote_dir, data
    assert stat.S_IMODE(script.stat().st_mode) == 0o700
    text = script.read_text()
    assert text.startswith("#!/bin/bash") and header in text, text[:400]


# ---- Slurm -------------------------------------------------------------------------------------


def test_slurm_submit_json_pending_running_ended(cli, testbed) -> None:
    """Held by sbatch (--hold), released with scontrol, cancelled with scancel; status follows."""
    cli.write_profile("tb-slurm-held", profile_text(testbed, extra_job='directives = ["--hold"]'))
    data = submit_json(cli, "tb-slurm-held")
    job = data["job_id"]
    assert job.isdigit(), data
    check_script(testbed, data, "#SBATCH --hold")
    try:
        pending = status(cli, "tb-slurm-held", job)
        assert pending["state"] == "PENDING" and pending["native_state"] == "PENDING", pending
        assert pending["reason"] == "JobHeldUser", pending
        assert pending["node"] == "" and pending["exit_status"] == "", pending
        assert pending["time_limit"] == "1:00:00", pending

        login(testbed, f"scontrol release {job}")
        seen: list[dict] = []
        running = wait_status(cli, "tb-slurm-held", job, lambda d: d["state"] != "PENDING", 60, seen)
        assert running["state"] == "RUNNING" and running["native_state"] == "RUNNING", seen
        assert running["node"] in testbed.nodes, running
        assert running["reason"] == "" and running["exit_status"] == "" and running["start_estimate"] == ""
        assert TIME.match(running["time_used"]) and running["time_limit"] == "1:00:00", running

        cancelled = cli.run("cancel", job)
        assert cancelled.returncode == 0, cancelled.stderr
        ended = wait_status(cli, "tb-slurm-held", job, lambda d: d["state"] != "RUNNING", 60, seen)
        assert ended["state"] == "ENDED" and ended["native_state"] == "CANCELLED", ended
        assert ended["node"] == running["node"], ended
        assert [d["state"] for d in seen] == sorted((d["state"] for d in seen),
                                                     key=["PENDING", "RUNNING", "ENDED"].index), seen

        again = cli.run("cancel", job)  # an ended job: not an error
        assert again.returncode == 0, again.stderr
        listed = cli.json("ls")
        assert [(s["job_id"], s["state"]) for s in listed] == [(job, "ENDED")], listed
    finally:
        testbed.ssh(testbed.login_alias, f"scancel {job}")


def test_slurm_job_submitted_elsewhere_exit_status(cli, testbed) -> None:
    """A job the local records do not know (plain sbatch); a failing one ends FAILED with the reason."""
    cli.write_profile("tb-slurm", profile_text(testbed))
    job = login(testbed, "sbatch --parsable -p serial -t 5 -J elsewhere --wrap 'sleep 1; exit 3'")
    ended = wait_status(cli, "tb-slurm", job, lambda d: d["state"] == "ENDED", 60)
    assert ended["native_state"] == "FAILED" and ended["reason"] == "NonZeroExitCode", ended
    assert ended["node"] in testbed.nodes and ended["time_limit"] == "5:00", ended
    ok = login(testbed, "sbatch --parsable -p serial -t 5 --wrap true")
    done = wait_status(cli, "tb-slurm", ok, lambda d: d["state"] == "ENDED", 60)
    assert done["native_state"] == "COMPLETED", done


def test_slurm_unknown_job_id_is_a_clear_error(cli, testbed) -> None:
    cli.write_profile("tb-slurm", profile_text(testbed))
    for bogus in ("987654321", "not-a-job"):
        res = cli.run("status", bogus, "--site", "tb-slurm", "--json")
        assert res.returncode == 1, (bogus, res)
        assert res.stdout == "", res.stdout
        assert res.stderr.startswith("error: ") and bogus in res.stderr and "Traceback" not in res.stderr
        assert len(res.stderr.strip().splitlines()) <= 3, res.stderr
    res = cli.run("status", "987654321", "--site", "tb-slurm")
    assert res.returncode == 1 and "not known to the scheduler on tb-slurm" in res.stderr, res.stderr


def test_slurm_finished_job_seen_only_through_history(cli, disruptive) -> None:
    """squeue no longer lists the job (as for an id slurmctld purged: its real error line, injected
    once) -> sacct (without accounting: Slurm's real "accounting storage is disabled") -> scontrol
    show job, which keeps finished jobs for MinJobAge: still ENDED, with the native state, node and
    exit status. Past that (scontrol forgets it too), a recorded job is ENDED "no longer known"."""
    testbed = disruptive
    cli.write_profile("tb-slurm", profile_text(testbed))
    failed = login(testbed, "sbatch --parsable -p serial -t 5 --wrap 'exit 3'")
    done = login(testbed, "sbatch --parsable -p serial -t 5 --wrap true")
    for job in (failed, done):
        wait_status(cli, "tb-slurm", job, lambda d: d["state"] == "ENDED", 60)
    if not testbed.accounting:
        res = testbed.ssh(testbed.login_alias, f"sacct -X -P -n -j {failed}")
        assert res.returncode != 0 and "accounting storage is disabled" in res.stderr + res.stdout, res

    for job, native, code in ((failed, "FAILED", "3"), (done, "COMPLETED", "0")):
        mark = testbed.calls_mark()  # from here, only this job's calls are counted
        testbed.fail_next("squeue", 1, SLURM_PURGED, rc=1)
        hist = status(cli, "tb-slurm", job)
        assert hist["state"] == "ENDED" and hist["native_state"] == native, hist
        assert hist["exit_status"] == code and hist["node"] in testbed.nodes, hist
        assert len(testbed.own_calls(mark, "squeue", job)) == 1
        assert len(testbed.own_calls(mark, "sacct", job)) == 1
        if not testbed.accounting:  # answered by scontrol show job
            assert len(testbed.own_calls(mark, "scontrol", job)) == 1

    # Purged everywhere (squeue and scontrol say so; sacct is disabled): a job hpcjupyter
    # submitted is ENDED, no longer known; an id nobody recorded is an error.
    if testbed.accounting:
        return
    submitted = submit_json(cli, "tb-slurm")["job_id"]
    try:
        wait_status(cli, "tb-slurm", submitted, lambda d: d["state"] != "PENDING", 60)
        assert cli.run("cancel", submitted).returncode == 0
        wait_status(cli, "tb-slurm", submitted, lambda d: d["state"] == "ENDED", 60)
        testbed.fail_next("squeue", 1, SLURM_PURGED, rc=1)
        testbed.fail_next("scontrol", 1, SLURM_PURGED, rc=1)
        gone = status(cli, "tb-slurm", submitted)
        assert gone["state"] == "ENDED" and gone["reason"] == NOT_KNOWN, gone
        testbed.fail_next("squeue", 1, SLURM_PURGED, rc=1)
        testbed.fail_next("scontrol", 1, SLURM_PURGED, rc=1)
        res = cli.run("status", failed, "--site", "tb-slurm", "--json")  # not recorded here
        assert res.returncode == 1 and "not known to the scheduler" in res.stderr, res
    finally:
        testbed.clear_faults()
        testbed.ssh(testbed.login_alias, f"scancel {submitted}")


# ---- PBS Pro (emulator) ------------------------------------------------------------------------


def test_pbs_submit_json_held_running_finished(cli, testbed) -> None:
    """qsub -h (held: H) -> qrls -> Q -> R -> qdel -> F with an exit status."""
    cli.write_profile("tb-pbs-held", profile_text(testbed, scheduler="pbs", extra_job='directives = ["-h"]'))
    data = submit_json(cli, "tb-pbs-held")
    job = data["job_id"]
    assert re.fullmatch(rf"\d+\.{re.escape(testbed.pbs_server)}", job), data  # the id keeps the server
    check_script(testbed, data, "#PBS -h")
    try:
        held = status(cli, "tb-pbs-held", job)
        assert held["state"] == "PENDING" and held["native_state"] == "H", held
        assert held["reason"].startswith("held"), held
        assert held["node"] == "" and held["exit_status"] == "" and held["time_limit"] == "01:00:00", held

        login(testbed, f"qrls {shlex.quote(job)}")
        seen: list[dict] = [held]
        running = wait_status(cli, "tb-pbs-held", job, lambda d: d["state"] != "PENDING", 60, seen)
        assert running["state"] == "RUNNING" and running["native_state"] == "R", seen
        assert running["node"] in testbed.nodes and running["reason"] == "", running
        assert TIME.match(running["time_used"]), running

        assert cli.run("cancel", job).returncode == 0
        ended = wait_status(cli, "tb-pbs-held", job, lambda d: d["state"] == "ENDED", 60, seen)
        assert ended["native_state"] == "F" and ended["node"] == running["node"], ended
        assert ended["exit_status"] not in ("", "0"), ended  # killed by qdel
        natives = [d["native_state"] for d in seen]
        order = ["H", "Q", "R", "E", "F"]
        assert natives == sorted(natives, key=order.index), natives

        again = cli.run("cancel", job)  # qdel: "Job has finished": not an error
        assert again.returncode == 0, again.stderr
    finally:
        testbed.ssh(testbed.login_alias, f"qdel {shlex.quote(job)}")


def test_pbs_exit_status_and_unknown_id(cli, testbed) -> None:
    cli.write_profile("tb-pbs", profile_text(testbed, scheduler="pbs"))
    job = login(testbed, "qsub -l walltime=00:05:00 -- /bin/sh -c 'sleep 1; exit 3'")
    ended = wait_status(cli, "tb-pbs", job, lambda d: d["state"] == "ENDED", 60)
    assert ended["native_state"] == "F" and ended["exit_status"] == "3", ended
    assert ended["node"] in testbed.nodes and ended["time_limit"] == "00:05:00", ended

    # Deleted while held: finished without ever running.
    held = login(testbed, "qsub -h -l walltime=00:05:00 -- /bin/sleep 60")
    assert status(cli, "tb-pbs", held)["native_state"] == "H"
    login(testbed, f"qdel {shlex.quote(held)}")
    gone = wait_status(cli, "tb-pbs", held, lambda d: d["state"] == "ENDED", 30)
    assert gone["native_state"] == "F" and gone["node"] == "", gone

    for bogus in (f"987654.{testbed.pbs_server}", "987654"):
        res = cli.run("status", bogus, "--site", "tb-pbs", "--json")
        assert res.returncode == 1 and res.stdout == "", res
        assert f"job {bogus} is not known to the scheduler on tb-pbs" in res.stderr, res.stderr
