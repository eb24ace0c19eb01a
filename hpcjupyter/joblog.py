"""Show a job's log, once or following it until the job ends."""

from __future__ import annotations

import time
from collections.abc import Callable

from hpcjupyter import protocol
from hpcjupyter.errors import HpcJupyterError
from hpcjupyter.schedulers.base import JobState
from hpcjupyter.sessions import Session
from hpcjupyter.site import Site

FOLLOW_SECONDS = 2.0


def read_log(site: Site, session: Session) -> str | None:
    """The job script's own log, else the scheduler's output file (a job that died before its
    script could start its log, e.g. a module error in a login shell, wrote only there)."""
    text = site.read_file(protocol.path(session.job_dir, protocol.LOG))
    if text is None and session.job_id:
        text = site.read_file(site.scheduler.output_path(session.job_dir, session.job_id))
    return text


def show_log(site: Site, session: Session, follow: bool, echo: Callable[..., None]) -> None:
    """Print the log; with ``follow``, keep printing what is added until the job has ended."""
    text = read_log(site, session)
    if text is None and not follow:
        raise HpcJupyterError(
            f"job {session.job_id} has no log yet at {protocol.path(session.job_dir, protocol.LOG)} "
            f"(last known state: {session.state.value}).",
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
            echo(text[len(shown) :], nl=False)
        else:
            echo(text, nl=False)
        shown = text
        if ended:
            return
