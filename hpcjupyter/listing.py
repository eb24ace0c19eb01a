"""`ls`: every recorded session with its live state, one scheduler query per site."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

from hpcjupyter import sessions
from hpcjupyter.errors import HpcJupyterError
from hpcjupyter.schedulers.base import JobState
from hpcjupyter.sessions import SessionState

DAY = 86400.0
# A submit in progress in another process has a record but no job yet: leave it alone this long.
RECOVERY_GRACE = 120.0


def _recent(session: sessions.Session) -> bool:
    """Live sessions always; ended or failed ones for a day (``ls --all`` shows every one)."""
    if session.state is SessionState.ENDED:
        return sessions.age(session.ended_at) < DAY
    return session.state is not SessionState.FAILED or sessions.age(session.submitted_at) < DAY


def _recover(site: Any, session: sessions.Session) -> None:
    """A submit interrupted after the scheduler took the job: find the job by its name."""
    query = site.scheduler.find_by_name_query(session.job_name)
    result = site.run(query.argv)
    found = list(query.parse(result, []).values())
    if found:
        with sessions.updating(session.site, session.session_id) as saved:
            saved.job_id = found[0].job_id
        session.job_id = found[0].job_id
    elif result.ok and sessions.age(session.submitted_at) > RECOVERY_GRACE:
        with sessions.updating(session.site, session.session_id) as saved:
            saved.state, saved.reason = (
                SessionState.FAILED,
                f"never reached the scheduler (no job named {session.job_name})",
            )
            vars(session).update(vars(saved))


def refresh(show_all: bool, open_site: Callable[[str], Any], ui: Any) -> list[sessions.Session]:
    """Update every live record from its scheduler; ended ones are kept, marked, not queried."""
    shown = [s for s in sessions.all_sessions() if show_all or _recent(s)]
    by_site: dict[str, list[sessions.Session]] = defaultdict(list)
    for session in shown:
        if session.state.live:
            by_site[session.site].append(session)
    for name, group in by_site.items():
        try:
            site = open_site(name)
            for session in (s for s in group if not s.job_id):
                _recover(site, session)
            ids = [s.job_id for s in group if s.job_id]
            statuses = site.status(ids)
        except HpcJupyterError as exc:
            ui.warn(f"cannot check site {name}: {exc.message}")
            continue
        for session in group:
            status = statuses.get(session.job_id or "")
            if status is not None and status.state is not JobState.UNKNOWN:
                sessions.record_status(session, status)
    return shown


def prune_ended() -> list[sessions.Session]:
    """Forget every ended or failed session (the jobs are gone; their records only remain)."""
    gone = [s for s in sessions.all_sessions() if not s.state.live]
    for session in gone:
        sessions.remove(session)
    return gone


def detail(session: sessions.Session) -> str:
    """The URL only while a tunnel is known to be up; else the time left of a running job; else why."""
    from hpcjupyter.jobs import listening

    if session.url and listening(session.local_port):
        return session.url
    if session.state is SessionState.RUNNING:
        left = time_left(session)
        if left:
            return left + (" (not connected)" if session.url or session.local_port else "")
    return session.reason or ""


def time_left(session: sessions.Session) -> str:
    """'1h02m left' from the last status the scheduler gave (limit - used - time since)."""
    from hpcjupyter.connecting import seconds_of
    from hpcjupyter.wait import duration

    limit = seconds_of(session.extra.get("time_limit", ""))
    used = seconds_of(session.extra.get("time_used", ""))
    if limit is None or used is None or not limit:
        return ""
    left = limit - used - sessions.age(session.extra.get("time_read", ""))
    return f"{duration(max(left, 0))} left"


def rows(found: list[sessions.Session]) -> list[str]:
    """A plain table: one line per session."""
    header = ("JOB ID", "SITE", "STATE", "NODE", "SUBMITTED", "DETAIL")
    table = [header] + [
        (
            s.job_id or "?",
            s.site,
            s.state,
            s.node or "-",
            s.submitted_at[:16].replace("T", " "),
            detail(s),
        )
        for s in found
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1] for row in table
    ]
