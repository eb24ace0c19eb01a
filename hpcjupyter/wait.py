"""How to describe a waiting or ended job, in one line. Pure functions."""

from __future__ import annotations

from hpcjupyter.schedulers.base import JobState, JobStatus, Outcome


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
    if status.state is JobState.RUNNING:
        parts.append("starting Jupyter")
    parts.append(f"waited {duration(waited)}")
    if status.state is JobState.PENDING and status.start_estimate and status.start_estimate not in ("N/A", "Unknown"):
        parts.append(f"estimated start {status.start_estimate}")
    if status.node:
        parts.append(f"node {status.node}")
    return ", ".join(parts)


def end_reason(status: JobStatus) -> str:
    """Why a job ended: how (the adapter's outcome), then the scheduler's own words (state, reason,
    a non-zero exit status), e.g. ``cancelled (F, terminated by you@pbs, exit status 271)``."""
    details = [d for d in (status.native_state, status.reason) if d and d not in ("None", "(null)")]
    exit_text = f"exit status {status.exit_status}" if status.exit_status not in ("", "0", "0:0") else ""
    words = ", ".join(details + ([exit_text] if exit_text else []))
    how = status.outcome.value if status.outcome not in (None, Outcome.UNKNOWN) else ""
    if how and words:
        return f"{how} ({words})"
    return how or words or "it is no longer running"
