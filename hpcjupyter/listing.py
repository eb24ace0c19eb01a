"""`ls`: every recorded session with its live state, one scheduler query per site."""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any, Callable

from hpcjupyter import sessions
from hpcjupyter.errors import HpcJupyterError
from hpcjupyter.schedulers import lookup
from hpcjupyter.schedulers.base import JobState, JobStatus

DAY = 86400.0


def _recent(session: sessions.Session, now: float) -> bool:
    if session.state != JobState.ENDED.name or not session.ended_at:
        return True
    try:
        ended = time.mktime(time.strptime(session.ended_at[:19], "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return True
    return now - ended < DAY


def _apply(session: sessions.Session, status: JobStatus) -> None:
    with sessions.updating(session.site, session.session_id) as saved:
        saved.state = status.state.name
        saved.reason = status.reason or (status.native_state if status.state is JobState.ENDED else "")
        saved.node = status.node or saved.node
        if status.state is JobState.ENDED:
            saved.url = ""
            saved.ended_at = saved.ended_at or time.strftime("%Y-%m-%dT%H:%M:%S%z")
        vars(session).update(vars(saved))


def _recover(site: Any, session: sessions.Session) -> None:
    """A submit interrupted after the scheduler took the job: find the job by its name."""
    query = site.scheduler.find_by_name_query(session.job_name)
    result = site.run(query.argv)
    found = list(query.parse(result, []).values())
    if found:
        with sessions.updating(session.site, session.session_id) as saved:
            saved.job_id = found[0].job_id
        session.job_id = found[0].job_id


def refresh(show_all: bool, open_site: Callable[[str], Any], ui: Any) -> list[sessions.Session]:
    """Update every live record from its scheduler; ended ones are kept, marked, not queried."""
    now = time.time()
    shown = [s for s in sessions.all_sessions() if show_all or _recent(s, now)]
    by_site: dict[str, list[sessions.Session]] = defaultdict(list)
    for session in shown:
        if session.state != JobState.ENDED.name and session.state != "FAILED":
            by_site[session.site].append(session)
    for name, group in by_site.items():
        try:
            site = open_site(name)
            for session in (s for s in group if not s.job_id):
                _recover(site, session)
            ids = [s.job_id for s in group if s.job_id]
            statuses = lookup(site.scheduler, site.remote, ids) if ids else {}
        except HpcJupyterError as exc:
            ui.warn(f"cannot check site {name}: {exc.message}")
            continue
        for session in group:
            status = statuses.get(session.job_id or "")
            if status is not None and status.state is not JobState.UNKNOWN:
                _apply(session, status)
    return shown


def rows(found: list[sessions.Session]) -> list[str]:
    """A plain table: one line per session."""
    header = ("JOB ID", "SITE", "STATE", "NODE", "SUBMITTED", "DETAIL")
    table = [header] + [
        (s.job_id or "?", s.site, s.state, s.node or "-", s.submitted_at[:16].replace("T", " "),
         s.url or s.reason or "")
        for s in found
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths)) + "  " + row[-1] for row in table]
