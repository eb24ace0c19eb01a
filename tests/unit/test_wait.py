"""The wait loop's pacing (real Waiter, fake clock) and progress lines (hpcjupyter.wait)."""

from types import SimpleNamespace
from typing import Any

import pytest

from hpcjupyter.connecting import Waiter
from hpcjupyter.errors import HpcJupyterError
from hpcjupyter.remote.base import Result
from hpcjupyter.schedulers import get_scheduler
from hpcjupyter.schedulers.base import JobState, JobStatus
from hpcjupyter.ui import UI
from hpcjupyter.wait import describe, duration


class FakeClock:
    """Time that passes only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class QueuedSite:
    """A site whose job stays queued: counts scheduler queries (with their times) and peeks."""

    def __init__(self, clock: FakeClock, poll_seconds: int, state: JobState = JobState.PENDING) -> None:
        self.clock, self.state = clock, state
        self.name = "s"
        self.profile = SimpleNamespace(env=SimpleNamespace(poll_seconds=poll_seconds))
        self.scheduler = get_scheduler("slurm")
        self.queries: list[float] = []
        self.peeks = 0

    def status(self, job_ids: list[str]) -> dict[str, JobStatus]:
        self.queries.append(self.clock.now)
        return {job_ids[0]: JobStatus(job_ids[0], self.state, native_state="PD", reason="Priority")}

    def run(self, argv: list[str], stdin: str | None = None, timeout: float | None = None) -> Result:
        self.peeks += 1
        return Result(0, "\n\n--- hpcjupyter: job log follows ---\n", "")


def waited(site: QueuedSite, clock: FakeClock, seconds: float, mocker: Any) -> None:
    """Run the real Waiter.wait() until its timeout."""
    mocker.patch("hpcjupyter.connecting.sessions.record_status")
    session = SimpleNamespace(job_id="42", job_dir="/w/s", site="s", session_id="s")
    waiter = Waiter(site, session, UI(quiet=True), timeout=seconds, clock=clock)  # type: ignore[arg-type]
    with pytest.raises(HpcJupyterError, match="gave up after"):
        waiter.wait()


def test_queries_never_closer_than_poll_seconds_over_ten_queued_minutes(mocker: Any) -> None:
    clock = FakeClock()
    site = QueuedSite(clock, poll_seconds=60)
    waited(site, clock, 600, mocker)
    gaps = [b - a for a, b in zip(site.queries, site.queries[1:])]
    assert site.queries[0] == 1000.0  # the first question is asked at once
    assert len(site.queries) == 11 and min(gaps) >= 60
    assert site.peeks >= 250  # the job directory is looked at every 2 s meanwhile (a file read)


def test_a_small_poll_interval_is_honoured(mocker: Any) -> None:
    clock = FakeClock()
    site = QueuedSite(clock, poll_seconds=1)
    waited(site, clock, 10, mocker)
    assert len(site.queries) >= 10


def test_duration() -> None:
    assert duration(5) == "5s"
    assert duration(65) == "1m05s"
    assert duration(3725) == "1h02m05s"
    assert duration(-3) == "0s"


def test_describe_pending_with_reason_and_estimate() -> None:
    status = JobStatus(job_id="42", state=JobState.PENDING, native_state="PD", reason="Priority",
                       start_estimate="2026-11-23T18:00:00")
    line = describe(status, 75)
    assert line == "job 42: pending (PD), reason Priority, waited 1m15s, estimated start 2026-11-23T18:00:00"


def test_describe_running_names_the_node_and_hides_null_reasons() -> None:
    status = JobStatus(job_id="7", state=JobState.RUNNING, native_state="RUNNING", reason="None", node="nid001015")
    assert describe(status, 3) == "job 7: running, starting Jupyter, waited 3s, node nid001015"
