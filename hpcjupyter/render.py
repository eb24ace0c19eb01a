"""Request + profile → batch script text. Pure: no I/O but reading the templates.

Every interpolated value passes through a quoting filter, so nothing in a profile or a flag
can run as shell code; the only shell code is the profile's ``env.setup`` lines, which are
documented as such.
"""

from __future__ import annotations

import getpass
import shlex
from functools import lru_cache
from typing import Any

from hpcjupyter import paths
from hpcjupyter.errors import RequestError
from hpcjupyter.request import Request
from hpcjupyter.schema import Profile


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


def expand(template: str, profile: Profile, request: Request, user: str | None) -> str:
    """Fill the {user}, {account} and {state_dir} placeholders of a path."""
    values = {
        "user": user or profile.ssh.user or getpass.getuser(),
        "account": request.account or "",
        "state_dir": str(paths.state_dir()),
    }
    for name, value in values.items():
        template = template.replace("{" + name + "}", value)
    return template


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
    return env


def render(profile: Profile, request: Request, user: str | None = None) -> str:
    """The complete batch script for this request."""
    env_section = profile.env

    def path(value: str | None) -> str | None:
        return expand(value, profile, request, user) if value else None

    context = {
        "profile": profile,
        "request": request,
        "job_dir": job_dir(profile, request, user),
        "workdir": path(request.workdir),
        "conda": path(env_section.conda),
        "venv": path(env_section.venv),
        "bind": bind_mode(profile),
    }
    return _environment().get_template(f"{profile.scheduler}.sh.j2").render(context)
