"""`clean`: remove old job directories (<remote_dir>/<session id>) on the cluster.

Only directories named like a session id are touched, never one of a session that may still run.
"""

from __future__ import annotations

import re

from hpcjupyter import sessions
from hpcjupyter.errors import HpcJupyterError
from hpcjupyter.site import Site

SESSION_DIR = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{6}$")
"""A job directory's name: the session id (see `request.new_session_id`)."""
_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_AGE = re.compile(r"^(\d+(?:\.\d+)?)([mhdw])$")


def parse_age(text: str) -> float:
    """'30d', '12h', '2w', '90m' → seconds."""
    match = _AGE.match(text.strip().lower())
    if not match:
        raise HpcJupyterError(f"--older-than {text!r} is not an age.", "Give a number and a unit: 90m, 12h, 30d or 2w.")
    return float(match.group(1)) * _UNITS[match.group(2)]


def base_dir(site: Site) -> str:
    """The site's remote_dir, its placeholders filled as a submit would fill them."""
    from hpcjupyter.render import expand
    from hpcjupyter.request import build_request
    from hpcjupyter.submitting import remote_user

    request = build_request(site.profile, {})
    return expand(site.profile.env.remote_dir, site.profile, request, remote_user(site)).rstrip("/")


def clean_job_dirs(site: Site, older_than: float, dry_run: bool) -> list[str]:
    """The job directories older than ``older_than`` seconds (removed unless ``dry_run``)."""
    site.login()
    base = base_dir(site)
    minutes = max(int(older_than // 60), 0)
    argv = ["find", base, "-mindepth", "1", "-maxdepth", "1", "-type", "d", "-mmin", f"+{minutes}", "-print"]
    result = site.run(argv)
    if not result.ok and "No such file" not in result.stderr:
        raise HpcJupyterError(f"could not list {base} on {site.name}: {result.stderr.strip()}")
    keep = {s.job_dir.rstrip("/") for s in sessions.all_sessions() if s.site == site.name and s.state.live}
    found = sorted(
        line.strip()
        for line in result.stdout.splitlines()
        if SESSION_DIR.match(line.strip().rsplit("/", 1)[-1]) and line.strip() not in keep
    )
    if found and not dry_run:
        removed = site.run(["rm", "-rf", "--", *found])
        if not removed.ok:
            raise HpcJupyterError(f"could not remove every old job directory on {site.name}: {removed.stderr.strip()}")
    return found
