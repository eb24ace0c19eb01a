"""When to ask the scheduler again, and how to describe a waiting job. Pure functions.

Fast at first (a job often starts at once on an idle partition), then never more often than
the site's ``poll_seconds``: ARCHER2 and Cirrus ask for no more than one query a minute.
"""

from __future__ import annotations

from hpcjupyter.schedulers.base import JobState, JobStatus

FIRST_INTERVALS = (15.0, 45.0)  # queries at 0, 15 and 60 s, then every poll_seconds


def poll_interval(queries_done: int, poll_seconds: float) -> float:
    """Seconds to wait after the ``queries_done``-th scheduler query (1-based)."""
    index = queries_done - 1
    return min(FIRST_INTERVALS[index], poll_seconds) if 0 <= index < len(FIRST_INTERVALS) else poll_seconds


def duration(seconds: float) -> str:
    """3725 → '1h02m05s'; short and unambiguous for a progress line."""
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def describe(status: JobStatus, waited: float) -> str:
    """One progress line: state, reason, time waited, estimated start, node."""
    parts = [f"job {status.job_id}: {status.state.name.lower()}"]
    if status.native_state and status.native_state.upper() != status.state.name:
        parts[0] += f" ({status.native_state})"
    if status.reason and status.reason not in ("None", "(null)"):
        parts.append(f"reason {status.reason}")
    parts.append(f"waited {duration(waited)}")
    if status.state is JobState.PENDING and status.start_estimate and status.start_estimate not in ("N/A", "Unknown"):
        parts.append(f"estimated start {status.start_estimate}")
    if status.node:
        parts.append(f"node {status.node}")
    return ", ".join(parts)


def end_reason(status: JobStatus) -> str:
    """Why a job ended, in the scheduler's words: state, reason, a non-zero exit status."""
    details = [d for d in (status.native_state, status.reason) if d and d not in ("None", "(null)")]
    exit_text = f"exit status {status.exit_status}" if status.exit_status not in ("", "0", "0:0") else ""
    return ", ".join(details + ([exit_text] if exit_text else [])) or "it is no longer running"
