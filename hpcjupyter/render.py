"""Request + profile → batch script text. Pure: no I/O but reading the templates.

Every interpolated value passes through a quoting filter, so nothing in a profile or a flag
can run as shell code; the only shell code is the profile's ``env.setup`` lines, which are
documented as such.
"""

from __future__ import annotations

import getpass
import re
import shlex
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from hpcjupyter import paths, protocol
from hpcjupyter.errors import RequestError
from hpcjupyter.request import Request, conda_env_to_activate, project
from hpcjupyter.schema import DIRECTIVE_PATH, PLACEHOLDER, SCHEDULER_NAME, USER_NAME, Profile


def quote(value: Any) -> str:
    """Quote one value for bash (``'...'``), refusing newlines that would end a header line."""
    text = str(value)
    if "\n" in text or "\r" in text:
        raise RequestError(f"value {text!r} contains a newline, which no scheduler option or path may hold.")
    return shlex.quote(text)


def quote_path(value: Any) -> str:
    """Quote a path, letting a leading ``~/`` mean the job's $HOME on the cluster."""
    text = str(value)
    if text == "~":
        return '"$HOME"'
    if text.startswith("~/"):
        return '"$HOME"/' + quote(text[2:])
    return quote(text)


def _directive_value(pattern: re.Pattern[str], what: str) -> Callable[[Any], str]:
    """A filter for values in '#SBATCH'/'#PBS' lines: no scheduler unquotes them, so a value
    is refused unless it needs no quoting (request and schema checks refuse such values first)."""

    def check(value: Any) -> str:
        text = str(value)
        if not pattern.match(text):
            raise RequestError(
                f"{what} {text!r} cannot go into a scheduler directive (directive lines are not shell).",
                "Use letters, digits and _ . / @ + - only.",
            )
        return text

    return check


plain = _directive_value(SCHEDULER_NAME, "name")
directive_path = _directive_value(DIRECTIVE_PATH, "path")


def expand(template: str, profile: Profile, request: Request, user: str | None) -> str:
    """Fill the {user}, {account}, {project} and {state_dir} placeholders of a path, in one pass."""

    def fill(match: re.Match[str]) -> str:
        key = match.group(1)
        if key == "user":
            return login_name(profile, user)
        if key == "account":
            return request.account or ""
        if key == "project":
            return project(profile, request) or ""
        return str(paths.state_dir()) if key == "state_dir" else match.group(0)

    return PLACEHOLDER.sub(fill, template)


def login_name(profile: Profile, user: str | None) -> str:
    """The cluster user name for {user}: given, else ssh.user, else this machine's user name."""
    name = user or profile.ssh.user or getpass.getuser()
    if not USER_NAME.match(name):
        raise RequestError(f"user name {name!r} cannot be used in a path.", "Set ssh.user to your login name.")
    return name


def job_dir(profile: Profile, request: Request, user: str | None = None) -> str:
    """The session's directory on the cluster: <remote_dir>/<session id>."""
    return f"{expand(profile.env.remote_dir, profile, request, user).rstrip('/')}/{request.session_id}"


def bind_mode(profile: Profile) -> str:
    """Where Jupyter listens: loopback for the jump shape, the node's name for forward."""
    if profile.env.bind != "auto":
        return profile.env.bind
    return "loopback" if profile.ssh.tunnel == "jump" else "hostname"


@lru_cache(maxsize=1)
def _environment() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(paths.templates_dir())),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters["q"] = quote
    env.filters["qpath"] = quote_path
    env.filters["directive_path"] = directive_path
    env.filters["plain"] = plain
    from hpcjupyter.schedulers import SCHEDULERS

    for scheduler in SCHEDULERS.values():
        env.filters.update(scheduler.template_filters)
    return env


def setup_context(profile: Profile, request: Request, user: str | None = None) -> dict[str, Any]:
    """What ``setup.sh.j2`` needs: the job's environment, with paths expanded as the job sees them."""
    from hpcjupyter.schedulers import get_scheduler

    def path(value: str | None) -> str | None:
        return expand(value, profile, request, user) if value else None

    conda_env = conda_env_to_activate(profile, request)

    return {
        "profile": profile,
        "request": request,
        "protocol": protocol.template_values(),
        # A profile's own Python environment replaces the scheduler's default one entirely.
        "path_dirs": () if profile.env.venv or profile.env.conda else get_scheduler(profile.scheduler).job_path(),
        # None where a site that never uses conda 'base' has a venv instead (raises if neither).
        "conda": path(profile.env.conda) if conda_env else None,
        "conda_env": conda_env,
        "venv": path(profile.env.venv),
    }


def render(profile: Profile, request: Request, user: str | None = None) -> str:
    """The complete batch script for this request."""
    from hpcjupyter.schedulers import get_scheduler

    scheduler = get_scheduler(profile.scheduler)
    directory = job_dir(profile, request, user)
    context = {
        **setup_context(profile, request, user),
        "job_dir": directory,
        # A function: the header passes the checked directory (Slurm's %j is refused in paths of ours).
        "output_path": lambda checked: scheduler.output_path(checked, scheduler.job_id_placeholder),
        "workdir": expand(request.workdir, profile, request, user) if request.workdir else None,
        "bind": bind_mode(profile),
    }
    return _environment().get_template(f"{profile.scheduler}.sh.j2").render(context)


def render_jupyter_check(
    profile: Profile, request: Request, user: str | None, *, mark: str, program: str, within: str
) -> str:
    """The script `doctor` runs: the job's own set-up (the same template), then where ``program`` is."""
    context = {**setup_context(profile, request, user), "mark": mark, "program": program, "within": within}
    return _environment().get_template("doctor-jupyter.sh.j2").render(context)
