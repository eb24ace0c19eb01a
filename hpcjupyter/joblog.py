"""Show a job's log, once or following it until the job ends."""

from __future__ import annotations

import time
from typing import Callable

from hpcjupyter.errors import HpcJupyterError
from hpcjupyter.schedulers.base import JobState
from hpcjupyter.sessions import Session
from hpcjupyter.site import Site

FOLLOW_SECONDS = 2.0


def read_log(site: Site, session: Session) -> str | None:
    """The job script's own log, else the scheduler's output file."""
    text = site.remote.read_file(f"{session.job_dir}/job.log")
    if text is None:
        text = site.remote.read_file(f"{session.job_dir}/{site.scheduler.name}.out")
    return text


def show_log(site: Site, session: Session, follow: bool, echo: Callable[..., None]) -> None:
    """Print the log; with ``follow``, keep printing what is added until the job has ended."""
    text = read_log(site, session)
    if text is None and not follow:
        raise HpcJupyterError(
            f"job {session.job_id} has no log yet at {session.job_dir}/job.log (last known state: {session.state}).",
            f"A queued job writes its log when it starts: 'hpcjupyter logs {session.job_id} --follow' waits for it.",
        )
    shown = text or ""
    echo(shown, nl=False)
    next_query, ended = 0.0, False
    while follow:
        if time.monotonic() >= next_query:
            status = site.status([session.job_id or ""]).get(session.job_id or "")
            ended = status is not None and status.state is JobState.ENDED
            next_query = time.monotonic() + site.profile.env.poll_seconds
        time.sleep(FOLLOW_SECONDS)
        text = read_log(site, session) or ""
        if text.startswith(shown):
            echo(text[len(shown):], nl=False)
        else:
            echo(text, nl=False)
        shown = text
        if ended:
            return
