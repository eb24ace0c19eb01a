"""Polling schedule and progress lines (hpcjupyter.wait)."""

from hpcjupyter.schedulers.base import JobState, JobStatus
from hpcjupyter.wait import describe, duration, poll_interval


def schedule(poll_seconds: float, window: float) -> list[float]:
    """Times at which queries happen in [0, window) under poll_interval."""
    times, now, done = [], 0.0, 0
    while now < window:
        times.append(now)
        done += 1
        now += poll_interval(done, poll_seconds)
    return times


def test_fast_first_then_capped_at_the_site_floor() -> None:
    assert [poll_interval(n, 60) for n in range(1, 7)] == [15, 45, 60, 60, 60, 60]


def test_at_most_twelve_queries_in_ten_minutes_with_a_sixty_second_floor() -> None:
    times = schedule(60, 600)
    assert len(times) <= 11  # the target is 12: keep a margin
    gaps = [b - a for a, b in zip(times, times[1:]) if a >= 60]
    assert gaps and min(gaps) >= 60


def test_a_small_floor_is_honoured_from_the_start() -> None:
    assert [poll_interval(n, 1) for n in range(1, 5)] == [1, 1, 1, 1]


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
    assert describe(status, 3) == "job 7: running, waited 3s, node nid001015"
