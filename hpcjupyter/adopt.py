"""Make a session record for a job this machine did not submit (e.g. from another laptop).

hpcjupyter names every job ``hpcj-<session id>``, and the session id names the job directory,
so the job's name is enough to find its log and connection file again.
"""

from __future__ import annotations

from hpcjupyter import protocol, sessions
from hpcjupyter.errors import HpcJupyterError
from hpcjupyter.render import job_dir
from hpcjupyter.request import build_request
from hpcjupyter.site import Site
from hpcjupyter.submitting import remote_user


def adopt(site: Site, job_id: str) -> sessions.Session:
    """Look the job up, check it is one of ours, and save a record for it."""
    status = site.known_status(job_id)
    session_id = protocol.session_of(status.name)
    if session_id is None:
        known = f" (its name is '{status.name}')" if status.name else ""
        raise HpcJupyterError(
            f"job {job_id} on {site.name} was not started by hpcjupyter{known}, or it is no longer known.",
            "Start Jupyter jobs with 'hpcjupyter submit'; check the id with 'hpcjupyter status'.",
        )
    request = build_request(site.profile, {}, session_id=session_id)
    session = sessions.Session(
        site=site.name,
        session_id=request.session_id,
        job_dir=job_dir(site.profile, request, remote_user(site)),
        job_name=status.name,
        submitted_at=sessions.stamp(),
        job_id=job_id,
        state=sessions.SessionState.of(status.state),
        node=status.node,
        reason=status.reason,
    )
    sessions.save(session)
    return session
