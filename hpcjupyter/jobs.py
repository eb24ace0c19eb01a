"""Use cases on one job: find its session (and site), ask its status, cancel it.

Plain functions returning results; the CLI prints them. Failures are `HpcJupyterError`s that say
what to do next.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from hpcjupyter import sessions
from hpcjupyter.connecting import cancel
from hpcjupyter.errors import HpcJupyterError
from hpcjupyter.schedulers import NOT_KNOWN
from hpcjupyter.schedulers.base import JobState, JobStatus
from hpcjupyter.site import Site

OpenSite = Callable[[str], Site]


def find_session(job_id: str, site_name: str | None, open_site: OpenSite) -> tuple[sessions.Session, Site]:
    """The session record of a job and its site; a job submitted elsewhere gets a record (adopted)."""
    session = sessions.find(job_id, site_name)
    if session is not None:
        return session, open_site(session.site)
    if site_name is None:
        raise HpcJupyterError(
            f"no session with job id {job_id} is recorded on this machine.",
            "Give the site it runs on with --site NAME (see 'hpcjupyter ls' for recorded jobs).",
        )
    from hpcjupyter.adopt import adopt

    elsewhere = sorted({s.site for s in sessions.all_sessions() if s.job_id == job_id and s.site != site_name})
    site = open_site(site_name)
    try:
        return adopt(site, job_id), site
    except HpcJupyterError as exc:
        if not elsewhere:
            raise
        # The same id recorded on another site: most likely a --site typo, so say where it is.
        raise HpcJupyterError(
            f"{exc.message} This machine has job {job_id} recorded on site {', '.join(elsewhere)}, not on {site_name}.",
            f"To use that one, leave out --site (or give --site {elsewhere[0]}).",
        ) from None


def status(job_id: str, site_name: str | None, open_site: OpenSite) -> tuple[JobStatus, Site]:
    """Any job of the user's: the site is the recorded one unless given."""
    recorded = sessions.find(job_id, site_name)
    name = site_name or (recorded.site if recorded is not None else None)
    if name is None:
        raise HpcJupyterError(
            f"no session with job id {job_id} is recorded on this machine.",
            "Give the site it runs on with --site NAME (any job of yours can be asked about).",
        )
    site = open_site(name)
    found = site.known_status(job_id)
    # A job we submitted that the scheduler has purged (no accounting) ended; any other id nobody
    # knows is most likely a typo.
    if found.reason == NOT_KNOWN and not found.native_state and recorded is None:
        raise HpcJupyterError(
            f"job {job_id} is not known to the scheduler on {name}.", "Check the job id (and the site)."
        )
    if recorded is not None:
        sessions.record_status(recorded, found)
    return found, site


@dataclass(frozen=True)
class Cancelled:
    """What cancel did: ``already`` holds the job's status when it had ended before."""

    already: JobStatus | None = None


def cancel_job(site: Site, session: sessions.Session) -> Cancelled:
    """Cancel the job unless it has ended already (then say how it ended, and change nothing)."""
    job_id = session.job_id or ""
    found = site.status([job_id]).get(job_id)
    if found is not None and found.state is JobState.ENDED:
        sessions.record_status(session, found)
        return Cancelled(already=found)
    cancel(site, session)
    return Cancelled()


def newest_session(site_name: str | None = None) -> sessions.Session:
    """The newest session that may still run (on ``site_name`` if given): what a command given no
    job id acts on."""
    live = [
        s for s in sessions.all_sessions() if s.job_id and s.state.live and (site_name is None or s.site == site_name)
    ]
    if not live:
        where = f" on {site_name}" if site_name else ""
        raise HpcJupyterError(
            f"no running session{where} is recorded on this machine, and no job id was given.",
            "Give the job id (see 'hpcjupyter ls'), or start a session with 'hpcjupyter submit'.",
        )
    return max(live, key=lambda s: (s.submitted_at, s.session_id))


def forget_session(job_id: str, site_name: str | None, force: bool = False) -> sessions.Session:
    """Remove a job's record (never the job); a session that may still run needs ``force``."""
    session = sessions.find(job_id, site_name)
    if session is None:
        raise HpcJupyterError(
            f"no session with job id {job_id} is recorded on this machine.", "See 'hpcjupyter ls --all'."
        )
    if session.state.live and not force:
        raise HpcJupyterError(
            f"job {job_id} on {session.site} may still be running ({session.state.value}).",
            f"Cancel it first ('hpcjupyter cancel {job_id}'), or give --force to forget it and leave it running.",
        )
    sessions.remove(session)
    return session


@dataclass(frozen=True)
class JobUrl:
    url: str
    connected: bool


def job_url(site: Site, session: sessions.Session) -> JobUrl:
    """The browser URL of a session again: the token is read from the job's 0600 connection file
    over the login (never stored here); the port is the recorded tunnel's (on ``local`` Jupyter's own)."""
    from hpcjupyter import protocol
    from hpcjupyter.discover import parse_connection_file
    from hpcjupyter.probe import browser_url

    path = protocol.path(session.job_dir, protocol.CONNECTION)
    text = site.read_file(path)
    if not text or not text.strip():
        raise HpcJupyterError(
            f"job {session.job_id} on {site.name} has no Jupyter connection file ({path}): Jupyter is not "
            "running (yet, or any more).",
            f"'hpcjupyter status {session.job_id}' shows the job's state; "
            f"'hpcjupyter connect {session.job_id}' waits for it.",
        )
    endpoint = parse_connection_file(text, path)
    if site.is_local:
        relayed = session.local_port if session.url and listening(session.local_port) else None
        port, connected = relayed or endpoint.port, True
    else:
        port = session.local_port or 0
        connected = bool(session.url) and listening(port)
        if not port:
            raise HpcJupyterError(
                f"job {session.job_id} has never been connected from this machine, so it has no local port.",
                f"Run 'hpcjupyter connect {session.job_id}': it prints the URL.",
            )
    return JobUrl(browser_url(port, endpoint.base_url, endpoint.token or "", site.profile.env.jupyter), connected)


def listening(port: int | None) -> bool:
    """Something answers on 127.0.0.1:``port`` (a recorded tunnel that is still up)."""
    from hpcjupyter.tunnel import port_open

    return port is not None and port_open(port)
