"""Submit a rendered script in one round trip to the login node, and remember the session.

The record is written before the scheduler sees the job and completed after, so a submit
killed in between leaves a record whose job name (hpcj-<session>) finds the job again.
"""

from __future__ import annotations

from hpcjupyter import protocol, sessions
from hpcjupyter.errors import HpcJupyterError
from hpcjupyter.render import job_dir, render
from hpcjupyter.request import Request
from hpcjupyter.site import Site

_NO_JOB_DIR = 90  # exit status: the job directory or script could not be written, nothing was submitted
# $1 job dir, $2 script path; the rest is the scheduler's submit command. Script text on stdin.
_SUBMIT_SH = (
    f'set -e; umask 077; mkdir -p "$1" && chmod 700 "$1" && cat > "$2" && chmod 700 "$2" '
    f'|| exit {_NO_JOB_DIR}; cd "$1"; shift 2; exec "$@"'
)


def remote_user(site: Site) -> str | None:
    """The login name on the cluster, asked only when a path needs {user} and the profile has none."""
    env = site.profile.env
    needs_user = any("{user}" in (value or "") for value in (env.remote_dir, env.conda, env.venv, env.workdir))
    if site.profile.ssh.user or not needs_user or site.is_local:
        return site.profile.ssh.user
    result = site.run(["id", "-un"])
    return (result.stdout.strip() or None) if result.ok else None


def submit(site: Site, request: Request) -> sessions.Session:
    """Render, write, submit; returns the saved session with its job id."""
    site.login()  # first: a login that fails leaves no record behind
    user = remote_user(site)
    script = render(site.profile, request, user)
    directory = job_dir(site.profile, request, user)
    session = sessions.Session(
        site=site.name,
        session_id=request.session_id,
        job_dir=directory,
        job_name=request.job_name,
        submitted_at=sessions.stamp(),
    )
    sessions.save(session)
    script_path = protocol.path(directory, protocol.SCRIPT)
    argv = [
        "bash",
        "-c",
        _SUBMIT_SH,
        "hpcjupyter-submit",
        directory,
        script_path,
        *site.scheduler.submit_argv(script_path, request.job_name),
        *site.scheduler.walltime_argv(request.walltime),
    ]
    result = site.run(argv, stdin=script)
    try:
        if result.returncode == _NO_JOB_DIR:
            raise HpcJupyterError(
                f"cannot write the job directory {directory} on {site.name}: {result.stderr.strip()}",
                f"Check env.remote_dir ('hpcjupyter sites show {site.name} --origin' shows where it is set): "
                "it must be a directory you can write, on a filesystem the compute nodes see.",
            )
        job_id = site.scheduler.parse_submit(result)
    except Exception:
        with sessions.updating(site.name, session.session_id) as failed:
            failed.state, failed.reason = sessions.SessionState.FAILED, (result.stderr or result.stdout).strip()[-500:]
        raise
    with sessions.updating(site.name, session.session_id) as saved:
        saved.job_id, saved.state = job_id, sessions.SessionState.PENDING
        session = saved
    return session
