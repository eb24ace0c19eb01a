"""Pure helpers of connect and ls: scheduler times, end reasons, the ls table, recovery of lost submits."""

from pathlib import Path

import pytest

from hpcjupyter import sessions
from hpcjupyter.connecting import seconds_of, time_left
from hpcjupyter.wait import end_reason
from hpcjupyter.listing import refresh, rows
from hpcjupyter.remote.base import Result
from hpcjupyter.schedulers.base import JobState, JobStatus, Query


@pytest.mark.parametrize("text,seconds", [("5:23", 323), ("1:00:00", 3600), ("1-02:03:04", 93784),
                                          ("0:00", 0), ("UNLIMITED", None), ("", None), ("INVALID", None)])
def test_scheduler_times(text: str, seconds: int | None) -> None:
    assert seconds_of(text) == seconds


def test_time_left_from_limit_and_used() -> None:
    status = JobStatus(job_id="1", state=JobState.RUNNING, time_limit="1:00:00", time_used="15:00")
    assert time_left(status) == ", 45m00s left"
    assert time_left(JobStatus(job_id="1", state=JobState.RUNNING)) == ""


def test_end_reason_names_state_reason_and_a_failing_exit() -> None:
    status = JobStatus(job_id="1", state=JobState.ENDED, native_state="TIMEOUT", reason="TimeLimit", exit_status="0:15")
    assert end_reason(status) == "TIMEOUT, TimeLimit, exit status 0:15"
    assert end_reason(JobStatus(job_id="1", state=JobState.ENDED, native_state="COMPLETED", exit_status="0")) == "COMPLETED"
    assert end_reason(JobStatus(job_id="1", state=JobState.ENDED)) == "it is no longer running"


class FakeSite:
    """Answers one queue query and one find-by-name query, counting them."""

    def __init__(self, statuses: dict[str, JobStatus], by_name: dict[str, JobStatus]) -> None:
        self.statuses, self.by_name = statuses, by_name
        self.queries: list[list[str]] = []
        outer = self

        class Scheduler:
            def find_by_name_query(self, name: str) -> Query:
                return Query(argv=["find", name], parse=lambda result, ids: {
                    s.job_id: s for n, s in outer.by_name.items() if n == name})

        self.scheduler = Scheduler()

    def run(self, argv: list[str]) -> Result:
        return Result(0, "", "")

    def status(self, ids: list[str]) -> dict[str, JobStatus]:
        self.queries.append(list(ids))
        return {i: self.statuses[i] for i in ids if i in self.statuses}


class QuietUI:
    def warn(self, text: str) -> None:
        raise AssertionError(text)


def test_ls_asks_each_site_once_and_recovers_an_interrupted_submit(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HPCJUPYTER_STATE_DIR", str(tmp_path))
    for n in range(5):
        sessions.save(sessions.Session(site="a", session_id=f"s{n}", job_dir="/d", job_name=f"hpcj-s{n}",
                                       submitted_at=sessions.stamp(), job_id=str(n), state="PENDING"))
    sessions.save(sessions.Session(site="a", session_id="lost", job_dir="/d", job_name="hpcj-lost",
                                   submitted_at=sessions.stamp()))
    running = {str(n): JobStatus(job_id=str(n), state=JobState.RUNNING, node="node1") for n in range(5)}
    running["9"] = JobStatus(job_id="9", state=JobState.PENDING, reason="Priority")
    site = FakeSite(running, {"hpcj-lost": JobStatus(job_id="9", state=JobState.UNKNOWN)})
    found = refresh(False, lambda name: site, QuietUI())
    assert len(site.queries) == 1 and sorted(site.queries[0]) == ["0", "1", "2", "3", "4", "9"]
    by_id = {s.job_id: s for s in found}
    assert by_id["9"].state == "PENDING" and by_id["9"].reason == "Priority"
    assert sessions.find("9") is not None  # the record now knows the job
    table = rows(found)
    assert table[0].split() == ["JOB", "ID", "SITE", "STATE", "NODE", "SUBMITTED", "DETAIL"]
    assert len(table) == 7
