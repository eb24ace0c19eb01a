"""Pure helpers of connect and ls: scheduler times, end reasons, the ls table, recovery of lost submits."""

from dataclasses import replace
from types import SimpleNamespace
from pathlib import Path

import pytest

from hpcjupyter import sessions
from hpcjupyter.connecting import seconds_of, time_left
from hpcjupyter.wait import end_reason
from hpcjupyter.listing import refresh, rows
from hpcjupyter.transports.base import Result
from hpcjupyter.protocol import PEEK_SEPARATOR
from hpcjupyter.schedulers import get_scheduler
from hpcjupyter.schedulers.base import JobState, JobStatus, Outcome, Query


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
    timed_out = replace(status, outcome=Outcome.TIMED_OUT)
    assert end_reason(timed_out) == "timed out (TIMEOUT, TimeLimit, exit status 0:15)"
    done = JobStatus(job_id="1", state=JobState.ENDED, native_state="COMPLETED", exit_status="0",
                     outcome=Outcome.COMPLETED)
    assert end_reason(done) == "completed (COMPLETED)"
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


class PeekSite:
    """A site whose login node answers the connect peek with canned output."""

    name = "tb"

    def __init__(self, mode: str, text: str, log: str, files: dict[str, str] | None = None) -> None:
        self.stdout = f"{mode}\n{text}\n{PEEK_SEPARATOR}\n{log}"
        self.scheduler = get_scheduler("slurm")
        self.files = files or {}

    def run(self, argv: list[str], stdin: str | None = None, timeout: float | None = None) -> Result:
        return Result(0, self.stdout, "")

    def read_file(self, path: str) -> str | None:
        return self.files.get(path)


def waiter_for(site: PeekSite):  # type: ignore[no-untyped-def]
    from hpcjupyter.connecting import Waiter

    session = sessions.Session(site="tb", session_id="s", job_dir="/j", job_name="hpcj-s",
                               submitted_at="", job_id="7")
    return Waiter(site, session, ui=None, timeout=None)  # type: ignore[arg-type]


GOOD = '{"host": "node1", "node": "node1", "port": 40001, "token": "t0k", "base_url": "/"}'


def test_ready_reads_host_port_and_token_from_the_private_file() -> None:
    found = waiter_for(PeekSite("-rw-------", GOOD, "HPCJUPYTER_READY host=node1 port=40001\n")).ready()
    assert found is not None and (found.endpoint.host, found.endpoint.port, found.token) == ("node1", 40001, "t0k")


def test_a_connection_file_others_can_read_is_refused() -> None:
    from hpcjupyter.errors import HpcJupyterError

    with pytest.raises(HpcJupyterError, match="mode -rw-r--r--, not -rw-------"):
        waiter_for(PeekSite("-rw-r--r--", GOOD, "")).ready()


def test_a_file_that_appears_during_the_peek_is_read_next_time() -> None:
    assert waiter_for(PeekSite("", GOOD, "")).ready() is None


def test_a_malformed_connection_file_is_a_clear_error() -> None:
    from hpcjupyter.errors import HpcJupyterError

    with pytest.raises(HpcJupyterError, match="not a valid hpcjupyter connection file"):
        waiter_for(PeekSite("-rw-------", '{"host": "node1"}', "")).ready()


def test_an_early_end_in_the_log_is_reported_with_the_tail() -> None:
    from hpcjupyter.errors import JobEndedError

    log = "hpcjupyter: job 7 starting\nactivate: No such file or directory\nhpcjupyter: job script ended with status 1\n"
    with pytest.raises(JobEndedError, match="No such file or directory"):
        waiter_for(PeekSite("", "", log)).ready()


def test_jupyter_own_url_is_the_fallback_and_nothing_yet_is_none() -> None:
    log = "[I 2026-11-23 14:36:24.636 ServerApp] http://node1:8888/lab?token=abc\n"
    found = waiter_for(PeekSite("", "", log)).ready()
    assert found is not None and (found.endpoint.port, found.token) == (8888, "abc")
    assert waiter_for(PeekSite("", "", "hpcjupyter: job 7 starting\n")).ready() is None


def test_a_job_that_died_before_its_log_shows_the_schedulers_output_file() -> None:
    """Bug A: Slurm writes slurm-<id>.out (the header's --output), not slurm.out."""
    from hpcjupyter.connecting import job_ended
    from hpcjupyter.joblog import read_log

    site = PeekSite("", "", "", files={"/j/slurm-7.out": "/var/spool/slurmd/job7/slurm_script: module: not found\n"})
    session = sessions.Session(site="tb", session_id="s", job_dir="/j", job_name="hpcj-s", submitted_at="", job_id="7")
    ended = JobStatus("7", JobState.ENDED, native_state="FAILED", exit_status="127", outcome=Outcome.FAILED)
    error = job_ended(site, session, ended)  # type: ignore[arg-type]
    assert "module: not found" in str(error) and "wrote no log" not in str(error)
    assert read_log(site, session) == site.files["/j/slurm-7.out"]  # type: ignore[arg-type]


def test_connecting_to_a_cancelled_job_says_so_without_the_jupyter_log() -> None:
    from hpcjupyter.connecting import job_ended

    site = PeekSite("", "", "", files={"/j/job.log": "[I ServerApp] lots of Jupyter lines\n" * 30})
    session = sessions.Session(site="tb", session_id="s", job_dir="/j", job_name="hpcj-s", submitted_at="", job_id="7")
    ended = JobStatus("7", JobState.ENDED, native_state="CANCELLED", reason="CANCELLED by 1000",
                      outcome=Outcome.CANCELLED)
    error = job_ended(site, session, ended)  # type: ignore[arg-type]
    assert str(error).startswith("job 7 on tb was cancelled: cancelled (CANCELLED, CANCELLED by 1000).")
    assert "ServerApp" not in str(error) and "hpcjupyter submit --site tb" in str(error)


def test_a_script_stopped_by_a_signal_is_explained_by_the_scheduler(mocker) -> None:  # type: ignore[no-untyped-def]
    """scancel/qdel while Jupyter starts: the log says the script was stopped; the scheduler (asked
    once, no sooner than poll_seconds after the last query) says it was cancelled."""
    from fakes import FakeClock

    from hpcjupyter.connecting import Waiter
    from hpcjupyter.errors import JobEndedError
    from hpcjupyter.ui import UI

    mocker.patch("hpcjupyter.connecting.sessions.record_status")
    log = "hpcjupyter: stop requested, shutting Jupyter down\nhpcjupyter: job script ended with status 143\n"
    site = PeekSite("", "", log)
    site.profile = SimpleNamespace(env=SimpleNamespace(poll_seconds=60))  # type: ignore[attr-defined]
    asked: list[float] = []
    clock = FakeClock()

    def status(job_ids: list[str]) -> dict[str, JobStatus]:
        asked.append(clock.now)
        return {"7": JobStatus("7", JobState.ENDED, native_state="CANCELLED", outcome=Outcome.CANCELLED)}

    site.status = status  # type: ignore[attr-defined]
    session = sessions.Session(site="tb", session_id="s", job_dir="/j", job_name="hpcj-s", submitted_at="", job_id="7")
    waiter = Waiter(site, session, UI(quiet=True), timeout=None, clock=clock)  # type: ignore[arg-type]
    waiter.query()
    clock.sleep(10)
    with pytest.raises(JobEndedError, match="job 7 on tb was cancelled"):
        waiter.ready()
    assert asked == [1000.0, 1060.0]  # the site's pace holds even for this question


def test_a_script_that_failed_by_itself_is_reported_at_once() -> None:
    from hpcjupyter.errors import JobEndedError

    log = "hpcjupyter: module load x failed\nhpcjupyter: job script ended with status 6\n"
    with pytest.raises(JobEndedError, match="job script ended with status 6"):
        waiter_for(PeekSite("", "", log)).ready()  # no scheduler query: the log says it all
