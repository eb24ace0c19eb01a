"""The wait loop's pacing (real Waiter, fake clock) and progress lines (hpcjupyter.wait)."""

from types import SimpleNamespace
from typing import Any

import pytest
from fakes import FakeClock

from hpcjupyter import protocol
from hpcjupyter.connecting import Connection, Waiter, keep_alive
from hpcjupyter.discover import Endpoint
from hpcjupyter.errors import HpcJupyterError
from hpcjupyter.transports.base import Result
from hpcjupyter.schedulers import get_scheduler
from hpcjupyter.schedulers.base import JobState, JobStatus
from hpcjupyter.ui import UI
from hpcjupyter.wait import describe, duration


class QueuedSite:
    """A site whose job stays queued: counts scheduler queries (with their times) and peeks."""

    def __init__(
        self, clock: FakeClock, poll_seconds: int, state: JobState = JobState.PENDING, start_timeout: int = 300
    ) -> None:
        self.clock, self.state = clock, state
        self.name = "s"
        self.profile = SimpleNamespace(env=SimpleNamespace(poll_seconds=poll_seconds, start_timeout=start_timeout))
        self.scheduler = get_scheduler("slurm")
        self.queries: list[float] = []
        self.peeks = 0

    def status(self, job_ids: list[str]) -> dict[str, JobStatus]:
        self.queries.append(self.clock.now)
        return {job_ids[0]: JobStatus(job_ids[0], self.state, native_state="PD", reason="Priority")}

    def run(self, argv: list[str], stdin: str | None = None, timeout: float | None = None) -> Result:
        """The watch command: it takes as long as its looks on the login node (nothing appears)."""
        self.peeks += 1
        self.clock.sleep(int(argv[-2]) * protocol.WATCH_TICK)
        return Result(0, f"\n\n{protocol.PEEK_SEPARATOR}\n", "")


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
    # Between queries one watch command waits on the login node (at most 30 s each): a few
    # remote commands a minute, not one every couple of seconds.
    assert 10 <= site.peeks <= 21


def test_a_running_job_whose_jupyter_never_gets_ready_is_given_up_after_start_timeout(mocker: Any) -> None:
    """The profile's env.start_timeout bounds "running but Jupyter never ready" (the job stays)."""
    mocker.patch("hpcjupyter.connecting.sessions.record_status")
    mocker.patch("hpcjupyter.connecting.read_quietly", return_value="setup still running")
    clock = FakeClock()
    site = QueuedSite(clock, poll_seconds=60, state=JobState.RUNNING, start_timeout=45)
    session = SimpleNamespace(job_id="42", job_dir="/w/s", site="s", session_id="s")
    waiter = Waiter(site, session, UI(quiet=True), timeout=None, clock=clock)  # type: ignore[arg-type]
    with pytest.raises(HpcJupyterError, match="has run 45 s without Jupyter becoming ready") as info:
        waiter.wait()
    assert 45 < clock.now - 1000.0 <= 45 + 0.5
    assert "setup still running" in info.value.message and "hpcjupyter cancel 42" in info.value.hint


def test_a_small_poll_interval_is_honoured(mocker: Any) -> None:
    clock = FakeClock()
    site = QueuedSite(clock, poll_seconds=1)
    waited(site, clock, 10, mocker)
    assert len(site.queries) >= 10


class FakeTunnel:
    """A tunnel that dies when told to; counts re-openings."""

    local_port = 40000

    def __init__(self) -> None:
        self.up = True
        self.reopened: list[float] = []
        self.clock: FakeClock | None = None

    def alive(self) -> bool:
        return self.up

    def reopen(self) -> None:
        assert self.clock is not None
        self.reopened.append(self.clock.now)
        self.up = True

    def close(self) -> None:
        self.up = False


class EndingSite(QueuedSite):
    """Running until ``ends_at`` (fake time), then ended."""

    def __init__(self, clock: FakeClock, poll_seconds: int, ends_at: float) -> None:
        super().__init__(clock, poll_seconds, JobState.RUNNING)
        self.ends_at = ends_at

    def status(self, job_ids: list[str]) -> dict[str, JobStatus]:
        self.queries.append(self.clock.now)
        state = JobState.RUNNING if self.clock.now < self.ends_at else JobState.ENDED
        return {job_ids[0]: JobStatus(job_ids[0], state, native_state=state.name)}

    def relogin(self) -> None:
        pass


def test_keep_alive_queries_no_closer_than_poll_seconds_and_reopens_a_dead_tunnel(mocker: Any) -> None:
    """The real keep_alive() while connected: over ten simulated minutes with poll_seconds = 60
    the scheduler is asked at most once a minute, while Jupyter is probed every few seconds (an
    HTTP request through the tunnel, not a scheduler query); a tunnel that dies is re-opened."""
    clock = FakeClock()
    site = EndingSite(clock, poll_seconds=60, ends_at=clock.now + 600)
    tunnel = FakeTunnel()
    tunnel.clock = clock
    probes: list[float] = []
    dies_at = clock.now + 250

    def api_status(port: int, base_url: str, token: str | None, timeout: float = 0) -> int:
        probes.append(clock.now)
        if tunnel.up and clock.now >= dies_at and not tunnel.reopened:
            tunnel.up = False  # the tunnel's ssh died once, at 250 s
        return 200 if tunnel.up else 0

    mocker.patch("hpcjupyter.connecting.api_status", side_effect=api_status)
    mocker.patch("hpcjupyter.connecting.sessions.record_status")
    session = SimpleNamespace(job_id="42", job_dir="/w/s", site="s", session_id="s")
    waiter = Waiter(site, session, UI(quiet=True), timeout=None, clock=clock)  # type: ignore[arg-type]
    connection = Connection(endpoint=Endpoint(host="node1", port=8888, base_url="/", node="node1"), token="t")
    start = clock.now
    status = keep_alive(waiter, connection, tunnel, tunnel.local_port, "connected{left}")  # type: ignore[arg-type]
    assert status.state is JobState.ENDED
    assert 600 <= clock.now - start <= 600 + 60 + 5  # returns at the first query after the job ended
    gaps = [b - a for a, b in zip([start, *site.queries], site.queries[:], strict=False)]
    assert len(site.queries) in (10, 11) and min(gaps) >= 60, site.queries
    assert len(probes) >= 250  # Jupyter itself is watched every 2 s meanwhile
    assert tunnel.reopened == [dies_at]  # at the first failed probe: a dead tunnel needs no second miss
    assert tunnel.up


def test_keep_alive_reopens_after_two_missed_probes_even_when_the_tunnel_looks_alive(mocker: Any) -> None:
    """A busy Jupyter may miss one probe (no re-open); two misses in a row re-open the tunnel."""
    clock = FakeClock()
    site = EndingSite(clock, poll_seconds=60, ends_at=clock.now + 30)
    tunnel = FakeTunnel()
    tunnel.clock = clock
    answers = iter([200, 0, 200, 0, 0] + [200] * 100)
    mocker.patch("hpcjupyter.connecting.api_status", side_effect=lambda *a, **k: next(answers))
    mocker.patch("hpcjupyter.connecting.sessions.record_status")
    session = SimpleNamespace(job_id="42", job_dir="/w/s", site="s", session_id="s")
    waiter = Waiter(site, session, UI(quiet=True), timeout=None, clock=clock)  # type: ignore[arg-type]
    connection = Connection(endpoint=Endpoint(host="node1", port=8888, base_url="/", node="node1"), token="t")
    keep_alive(waiter, connection, tunnel, tunnel.local_port, "connected{left}")  # type: ignore[arg-type]
    assert tunnel.reopened == [1000.0 + 5 * 2]


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
