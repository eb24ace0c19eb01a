"""`lookup` over a fake runner: queue, then history for what the queue lost; a failure is UNKNOWN, never ENDED."""

from __future__ import annotations

import subprocess
from typing import Sequence

import pytest

from hpcjupyter.errors import RemoteError
from hpcjupyter.transports.base import Result
from hpcjupyter.schedulers import NOT_KNOWN, JobState, get_scheduler, lookup
from hpcjupyter.schedulers.local import Local
from hpcjupyter.schedulers.pbs import PBS
from hpcjupyter.schedulers.slurm import Slurm

P, R, E, U = JobState.PENDING, JobState.RUNNING, JobState.ENDED, JobState.UNKNOWN
PURGED = Result(1, "", "slurm_load_jobs error: Invalid job id specified\n")
EMPTY = Result(0, "", "")


class FakeRunner:
    """Answers by command name (``argv[0]``); an exception as answer is raised; records every argv."""

    def __init__(self, **answers: Result | Exception) -> None:
        self.answers = answers
        self.calls: list[list[str]] = []

    def run(self, argv: Sequence[str], stdin: str | None = None, timeout: float | None = None) -> Result:
        self.calls.append(list(argv))
        answer = self.answers[argv[0]]
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_get_scheduler() -> None:
    assert [type(get_scheduler(n)) for n in ("slurm", "pbs", "local")] == [Slurm, PBS, Local]
    with pytest.raises(ValueError, match="known: local, pbs, slurm"):
        get_scheduler("lsf")


def test_queue_lists_all_one_query() -> None:
    runner = FakeRunner(squeue=Result(0, "11|RUNNING|None|nid001|nid[001-002]|5:00|1:00:00|N/A|a\n"
                                         "12|PENDING|Priority|n/a||0:00|1:00:00|2025-06-20T09:00:00|b\n", ""))
    jobs = lookup(Slurm(), runner, ["11", "12", "11"])
    assert list(jobs) == ["11", "12"]
    assert (jobs["11"].state, jobs["11"].node) == (R, "nid001")
    assert (jobs["12"].state, jobs["12"].reason, jobs["12"].start_estimate) == (P, "Priority", "2025-06-20T09:00:00")
    assert [c[0] for c in runner.calls] == ["squeue"]


def test_no_ids_no_query() -> None:
    runner = FakeRunner()
    assert lookup(Slurm(), runner, []) == {}
    assert runner.calls == []


def test_queue_miss_history_hit_asks_history_only_for_the_missing() -> None:
    runner = FakeRunner(squeue=Result(0, "11|RUNNING|None|nid001|nid001|5:00|1:00:00|N/A|a\n", ""),
                        sacct=Result(0, "12|TIMEOUT|0:15|nid002|01:00:03|01:00:00|2025-06-20T09:00:00|b\n", ""))
    jobs = lookup(Slurm(), runner, ["11", "12"])
    assert jobs["11"].state is R
    job = jobs["12"]
    assert (job.state, job.native_state, job.exit_status, job.node) == (E, "TIMEOUT", "0:15", "nid002")
    assert runner.calls[1][:6] == ["sacct", "-X", "-P", "-n", "-j", "12"]
    assert len(runner.calls) == 2  # scontrol not needed


def test_purged_single_id_goes_to_history_not_unknown() -> None:
    sacct = Result(0, "12|COMPLETED|0:0|nid002|00:10:00|01:00:00|2025-06-20T09:00:00|b\n", "")
    runner = FakeRunner(squeue=PURGED, sacct=sacct)
    job = lookup(Slurm(), runner, ["12"])["12"]
    assert (job.state, job.exit_status) == (E, "0")


@pytest.mark.parametrize("answer", [
    Result(1, "", "slurm_load_jobs error: Socket timed out on send/recv operation\n"),
    Result(255, "", "ssh: connect to host login port 22: Connection refused\n"),
    RemoteError("lost the connection to the login node"),
    subprocess.TimeoutExpired(["squeue"], 60),
    OSError("ssh: No such file or directory"),
])
def test_failing_queue_query_is_unknown_not_ended(answer: Result | Exception) -> None:
    runner = FakeRunner(squeue=answer)
    jobs = lookup(Slurm(), runner, ["11", "12"])
    assert [j.state for j in jobs.values()] == [U, U]
    assert jobs["11"].reason.startswith("squeue failed: ")
    assert len(runner.calls) == 1


def test_failing_history_is_unknown_only_for_the_unresolved() -> None:
    runner = FakeRunner(squeue=Result(0, "11|RUNNING|None|nid001|nid001|5:00|1:00:00|N/A|a\n", ""),
                        sacct=Result(1, "", "sacct: error: Problem talking to the database: Connection refused\n"))
    jobs = lookup(Slurm(), runner, ["11", "12"])
    assert (jobs["11"].state, jobs["12"].state) == (R, U)
    assert "Problem talking to the database" in jobs["12"].reason
    assert [c[0] for c in runner.calls] == ["squeue", "sacct"]


def test_accounting_disabled_falls_back_to_scontrol(fixture) -> None:
    """scontrol answers with slurm-scontrol-show-job-dd-running.txt, its state made COMPLETED."""
    record = fixture("slurm-scontrol-show-job-dd-running.txt").replace("JobState=RUNNING", "JobState=COMPLETED")
    runner = FakeRunner(squeue=PURGED, sacct=Result(1, "", "Slurm accounting storage is disabled\n"),
                        scontrol=Result(0, record, ""))
    job = lookup(Slurm(), runner, ["354191"])["354191"]
    assert (job.state, job.exit_status, job.node) == (E, "0", "c4-n37")
    assert runner.calls[-1] == ["scontrol", "show", "job", "354191"]


def test_chain_exhausted_is_ended_no_longer_known() -> None:
    runner = FakeRunner(squeue=PURGED, sacct=EMPTY, scontrol=PURGED)
    job = lookup(Slurm(), runner, ["12"])["12"]
    assert (job.state, job.reason) == (E, NOT_KNOWN)
    assert [c[0] for c in runner.calls] == ["squeue", "sacct", "scontrol"]


def test_scontrol_failure_after_disabled_accounting_is_unknown() -> None:
    down = "slurm_load_jobs error: Unable to contact slurm controller (connect failure)\n"
    runner = FakeRunner(squeue=PURGED, sacct=Result(1, "", "Slurm accounting storage is disabled\n"),
                        scontrol=Result(1, "", down))
    assert lookup(Slurm(), runner, ["12"])["12"].state is U


def test_pbs_unknown_id_is_ended_finished_is_ended_failure_is_unknown(fixture) -> None:
    """pbspro-qstat-errors-stderr.txt's qstat lines."""
    unknown, finished = fixture("pbspro-qstat-errors-stderr.txt").splitlines()[:2]
    jobs = lookup(PBS(), FakeRunner(qstat=Result(153, "", f"{unknown}\n{finished}\n")),
                  ["10000.c2cf5fbe1102", "1008.c2cf5fbe1102"])
    assert (jobs["10000.c2cf5fbe1102"].state, jobs["10000.c2cf5fbe1102"].reason) == (E, NOT_KNOWN)
    assert (jobs["1008.c2cf5fbe1102"].state, jobs["1008.c2cf5fbe1102"].reason) == (E, "finished")
    down = FakeRunner(qstat=Result(2, "", "qstat: cannot connect to server pbs (errno=15010)\n"))
    assert lookup(PBS(), down, ["1.pbs"])["1.pbs"].state is U


def test_pbs_id_asked_without_or_with_longer_server_suffix(fixture) -> None:
    """pbspro-qstat-xf-json-history.txt answers ``1004.pbs``; asked as ``1004`` or ``1006.pbs.cluster``."""
    runner = FakeRunner(qstat=Result(0, fixture("pbspro-qstat-xf-json-history.txt"), ""))
    jobs = lookup(PBS(), runner, ["1004", "1006.pbs.cluster"])
    assert (jobs["1004"].job_id, jobs["1004"].state, jobs["1004"].exit_status) == ("1004", E, "0")
    assert jobs["1006.pbs.cluster"].state is R
    assert len(runner.calls) == 1
