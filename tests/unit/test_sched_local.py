"""The local scheduler for real: detached bash scripts on this machine, through `lookup`."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator, Sequence

import pytest

from hpcjupyter.errors import SchedulerError
from hpcjupyter.transports.base import Result
from hpcjupyter.schedulers import NOT_KNOWN, JobState, JobStatus, lookup
from hpcjupyter.schedulers import localjob
from hpcjupyter.schedulers.base import Outcome, QueryFailed
from hpcjupyter.schedulers.local import Local, parse_status

local = Local()


class LocalRunner:
    def run(self, argv: Sequence[str], stdin: str | None = None, timeout: float | None = None) -> Result:
        done = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, timeout=timeout)
        return Result(done.returncode, done.stdout, done.stderr)


runner = LocalRunner()


@pytest.fixture
def submit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator:
    """Submit a script body; every job still running at the end is cancelled."""
    monkeypatch.setenv("HPCJUPYTER_STATE_DIR", str(tmp_path / "state"))
    submitted: list[str] = []

    def _submit(body: str, name: str | None = None, walltime: str = "") -> str:
        script = tmp_path / f"job{len(submitted)}.sh"
        script.write_text(body)
        argv = local.submit_argv(str(script), name) + (local.walltime_argv(walltime) if walltime else [])
        job_id = local.parse_submit(runner.run(argv))
        submitted.append(job_id)
        return job_id

    yield _submit
    if submitted:
        runner.run(local.cancel_argv(submitted))


def wait_for(job_id: str, state: JobState, seconds: float = 10) -> JobStatus:
    deadline = time.monotonic() + seconds
    while True:
        job = lookup(local, runner, [job_id])[job_id]
        if job.state is state or time.monotonic() > deadline:
            return job
        time.sleep(0.1)


def test_argv() -> None:
    localjob = [sys.executable, "-c", "import sys; from hpcjupyter.schedulers.localjob import main; sys.exit(main(sys.argv[1:]))"]
    assert local.submit_argv("/w/job.sh", "hpcj-1") == [*localjob, "submit", "/w/job.sh", "--name", "hpcj-1"]
    assert local.status_queries(["a"])[0].argv == [*localjob, "status", "a"]
    assert local.cancel_argv(["a"]) == [*localjob, "cancel", "a"]


def test_running_then_cancelled(submit, tmp_path: Path) -> None:
    job_id = submit('echo "id=$HPCJ_LOCAL_JOB_ID"\nsleep 60\n', name="hpcj-test")
    job = lookup(local, runner, [job_id])[job_id]
    assert (job.state, job.native_state, job.name) == (JobState.RUNNING, "RUNNING", "hpcj-test")
    assert job.node == socket.gethostname()
    found = local.find_by_name_query("hpcj-test")
    assert list(found.parse(runner.run(found.argv), ())) == [job_id]

    assert local.cancel_ok(runner.run(local.cancel_argv([job_id])))
    job = wait_for(job_id, JobState.ENDED)
    # bash killed by SIGTERM, as a shell reports it
    assert (job.state, job.native_state, job.exit_status) == (JobState.ENDED, "CANCELLED", "143")
    log = (tmp_path / "job0.sh.out").read_text()
    assert log.startswith(f"id={job_id}\n")  # the script's output first: nothing of the wrapper's
    assert local.cancel_ok(runner.run(local.cancel_argv([job_id])))  # already ended: fine


def test_exit_code_recorded(submit) -> None:
    job_id = submit("exit 3\n")
    job = wait_for(job_id, JobState.ENDED)
    assert (job.state, job.native_state, job.exit_status) == (JobState.ENDED, "EXITED", "3")


def test_walltime_ends_the_job_as_slurm_does(submit, tmp_path: Path) -> None:
    """At its walltime the job gets SIGTERM (its trap runs) and is TIMEOUT, not cancelled or failed."""
    job_id = submit("trap 'echo TERM at the limit; exit 143' TERM\nsleep 60 & wait\n", walltime="00:00:01")
    assert lookup(local, runner, [job_id])[job_id].time_limit == "00:00:01"
    job = wait_for(job_id, JobState.ENDED)
    assert (job.native_state, job.exit_status, job.outcome) == ("TIMEOUT", "143", Outcome.TIMED_OUT)
    assert "TERM at the limit" in (tmp_path / "job0.sh.out").read_text()


def test_walltime_kills_what_ignores_sigterm_after_the_kill_wait(submit) -> None:
    """A job that ignores SIGTERM is killed KILL_WAIT (30) seconds after the limit, children too."""
    job_id = submit("trap '' TERM\nsleep 300 &\nwait\n", walltime="00:00:01")
    job = wait_for(job_id, JobState.ENDED, seconds=localjob.KILL_WAIT + 15)
    assert (job.native_state, job.outcome) == ("TIMEOUT", Outcome.TIMED_OUT)
    assert job.exit_status == "137"  # recorded before the SIGKILL
    group = int(job_id.split("-")[1])
    deadline = time.monotonic() + 10  # the SIGKILL follows the record
    while any(localjob._member(stat, group) for stat in localjob._proc_stats()):
        assert time.monotonic() < deadline, "the job's processes outlived the kill"
        time.sleep(0.05)


def test_malformed_walltime_is_refused_at_submit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HPCJUPYTER_STATE_DIR", str(tmp_path / "state"))
    script = tmp_path / "job.sh"
    script.write_text("exit 0\n")
    result = runner.run(local.submit_argv(str(script)) + local.walltime_argv("2h"))
    assert result.returncode != 0 and "walltime must be HH:MM:SS, not '2h'" in result.stderr


def test_script_outliving_a_killed_wrapper_is_running_then_cancelled(submit) -> None:
    job_id = submit("sleep 60\n")  # submit returns once bash has started
    os.kill(int(job_id.split("-")[1]), signal.SIGKILL)  # the wrapper only: nothing will record an exit
    time.sleep(0.2)
    assert lookup(local, runner, [job_id])[job_id].state is JobState.RUNNING
    runner.run(local.cancel_argv([job_id]))
    job = wait_for(job_id, JobState.ENDED)
    assert (job.native_state, job.exit_status, job.reason) == ("CANCELLED", "", "ended without recording an exit status")


def test_job_killed_outright_is_lost(submit) -> None:
    job_id = submit("sleep 60\n")
    os.killpg(int(job_id.split("-")[1]), signal.SIGKILL)
    job = wait_for(job_id, JobState.ENDED)
    assert (job.native_state, job.exit_status) == ("LOST", "")


def test_unknown_id_is_ended_no_longer_known(submit) -> None:
    submit("exit 0\n")  # the registry exists and holds another job
    job = lookup(local, runner, ["local-1-abc"])["local-1-abc"]
    assert (job.state, job.reason) == (JobState.ENDED, NOT_KNOWN)


def test_missing_script_is_a_refused_submission(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HPCJUPYTER_STATE_DIR", str(tmp_path / "state"))
    with pytest.raises(SchedulerError, match="no such script"):
        local.parse_submit(runner.run(local.submit_argv(str(tmp_path / "nope.sh"))))


def test_parse_status_failure_and_garbage() -> None:
    with pytest.raises(QueryFailed):
        parse_status(Result(1, "", "Traceback ...\n"))
    with pytest.raises(QueryFailed):
        parse_status(Result(0, "not json\n", ""))
