"""``hpcjupyter doctor``: find what is wrong with a site before a job burns queue time.

Checks run in order and stop at the first failure. A check is a small function of a `Context`
that returns what it found (it passed) or raises an `HpcJupyterError` saying what to do (it
failed); the parsers of what the login node prints are pure. What cannot be known before a job
runs is said so, and passes: a doctor that fails on the unknowable would teach users to ignore it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from hpcjupyter.errors import HpcJupyterError
from hpcjupyter.request import Request
from hpcjupyter.schedulers.base import first_line
from hpcjupyter.site import Site
from hpcjupyter.transports.base import Result

MARK = "HPCJ-DOCTOR: "
"""Prefix of the lines our remote scripts print, so login-shell chatter cannot be mistaken for them."""

QUERY_TIMEOUT = 60.0
NODE_SSH_TIMEOUT = 30.0


# ---- results -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckResult:
    """One check: passed or not, what it found (or what to do), and how long it took."""

    name: str
    ok: bool
    detail: str
    seconds: float

    def as_json(self) -> dict[str, object]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail, "seconds": self.seconds}


@dataclass
class Context:
    """What the checks share: the site and request (once the profile loads) and answers already asked."""

    name: str
    open_site: Callable[[str], Site]
    flags: dict[str, Any] = field(default_factory=dict)
    """The placement flags given to doctor, as submit would take them."""
    _site: Site | None = None
    _request: Request | None = None
    _user: list[str | None] = field(default_factory=list)
    _answers: dict[tuple[str, ...], Result] = field(default_factory=dict)

    def open(self) -> None:
        """Load the profile and the request a plain `submit` would make (raises what submit would)."""
        from hpcjupyter.request import build_request

        self._site = self.open_site(self.name)
        self._request = build_request(self._site.profile, self.flags)

    @property
    def site(self) -> Site:
        assert self._site is not None, "the profile check runs first"
        return self._site

    @property
    def request(self) -> Request:
        assert self._request is not None, "the profile check runs first"
        return self._request

    def ask(self, argv: Sequence[str]) -> Result:
        """Run a read-only query once per doctor run (several checks read `sinfo`)."""
        key = tuple(argv)
        if key not in self._answers:
            self._answers[key] = self.site.run(list(argv), timeout=QUERY_TIMEOUT)
        return self._answers[key]

    @property
    def user(self) -> str | None:
        """The cluster login name, asked of the login node once (only when a path needs it)."""
        from hpcjupyter.submitting import remote_user

        if not self._user:
            self._user.append(remote_user(self.site))
        return self._user[0]

    def path(self, template: str) -> str:
        """A profile path with its placeholders filled exactly as the submitted job will have them."""
        from hpcjupyter.render import expand

        return expand(template, self.site.profile, self.request, self.user)


# ---- pure parsers --------------------------------------------------------------------------


def marked(text: str) -> str:
    """The last line our remote script printed (after MARK), or ""."""
    found = [line[len(MARK) :] for line in text.splitlines() if line.startswith(MARK)]
    return found[-1].strip() if found else ""


def first_node(text: str) -> str | None:
    """The first node name of ``sinfo -h -N -o %N``."""
    return next(iter(text.split()), None)


def refused_until_job(text: str) -> bool:
    """ssh to a node is admitted only while the user has a job there (pam_slurm_adopt and kin)."""
    lowered = text.lower()
    return "pam_slurm_adopt" in lowered or "no active jobs" in lowered


# ---- the checks, in order ------------------------------------------------------------------


def check_profile(ctx: Context) -> str:
    """The merged profile loads and a default request fits its limits (as submit would need)."""
    ctx.open()
    profile = ctx.site.profile
    return f"valid ({profile.scheduler}, tunnel {profile.ssh.tunnel})"


def check_ssh(ctx: Context) -> str:
    site = ctx.site
    if site.is_local:
        return "does not apply: this site runs on this machine"
    site.login()  # relays any prompts
    plural = "" if site.prompts == 1 else "s"
    return f"{site.profile.ssh.host} reached; {site.prompts} prompt{plural} answered"


_MISSING = 'for c in "$@"; do command -v "$c" >/dev/null 2>&1 || echo "$c"; done'


def check_scheduler(ctx: Context) -> str:
    site = ctx.site
    scheduler = site.scheduler
    if not scheduler.doctor_commands:
        return "does not apply: jobs run as processes on this machine"
    listed = ctx.ask(["sh", "-c", _MISSING, "hpcj-doctor", *scheduler.doctor_commands])
    if not listed.ok:
        raise HpcJupyterError(f"could not run a command on the login node: {first_line(listed.stderr)}.")
    missing = listed.stdout.split()
    if missing:
        raise HpcJupyterError(
            f"not found on the login node: {', '.join(missing)} (the profile says scheduler = "
            f'"{site.profile.scheduler}").',
            "Check the profile's scheduler; if the site loads its scheduler with a module, load it in your "
            "shell's startup file on the cluster.",
        )
    answered = ctx.ask(scheduler.doctor_answer)
    if not answered.ok:
        raise HpcJupyterError(
            f"'{' '.join(scheduler.doctor_answer)}' did not answer: {first_line(answered.stderr or answered.stdout)}.",
            "The scheduler may be down or overloaded: check the site's status page, and try again later.",
        )
    return f"{', '.join(scheduler.doctor_commands)} found; '{' '.join(scheduler.doctor_answer)}' answered"


def check_resources(ctx: Context) -> str:
    return ctx.site.scheduler.check_placement(ctx.ask, ctx.request, ctx.name)


_WRITABLE = 'mkdir -p -- "$1" && t="$1/.hpcj-doctor.$$" && touch -- "$t" && rm -f -- "$t"'


def check_remote_dir(ctx: Context) -> str:
    site = ctx.site
    directory = ctx.path(site.profile.env.remote_dir)
    result = site.run(["sh", "-c", _WRITABLE, "hpcj-doctor", directory], timeout=QUERY_TIMEOUT)
    if not result.ok:
        raise HpcJupyterError(
            f"{directory} is not writable: {first_line(result.stderr) or f'exit status {result.returncode}'}.",
            "Set env.remote_dir to a directory of yours that compute nodes also see (the site's work or "
            f"scratch filesystem), e.g. in [sites.{ctx.name}] of your config.",
        )
    if site.is_local:
        return f"{directory} writable"
    return (
        f"{directory} writable from the login node; not checked from compute nodes "
        "(it must be on a filesystem they mount)"
    )


def check_jupyter(ctx: Context) -> str:
    """The job's own environment set-up (the template the job uses), then where jupyter-lab is."""
    from hpcjupyter.render import render_jupyter_check
    from hpcjupyter.request import conda_env_to_activate

    site = ctx.site
    env = site.profile.env
    program = f"jupyter-{env.jupyter}"
    venv, conda = env.venv, env.conda
    conda_env = conda_env_to_activate(site.profile, ctx.request)  # a site's "never base" rule first
    within = (
        f"in the venv {ctx.path(venv)}"
        if venv
        else f"in the conda env {conda_env}"
        if conda_env
        else f"after module load {' '.join(env.modules)}"
        if env.modules
        else "on the PATH"
    )
    script = render_jupyter_check(site.profile, ctx.request, ctx.user, mark=MARK, program=program, within=within)
    # On stdin, so no login shell (csh users exist) has to parse it. A remote login shell is where
    # `module` is defined; the local site's job inherits this environment instead.
    shell = ["bash", "-s"] if site.is_local else ["bash", "-l", "-s"]
    result = site.run(shell, stdin=script, timeout=QUERY_TIMEOUT)
    said = marked(result.stdout)
    where = "" if site.is_local else " on the login node (compute nodes may differ)"
    if result.ok and said:
        return f"{said}{where}"
    setting = "env.venv" if venv else "env.conda" if conda else "env.modules" if env.modules else "env.venv"
    install = ctx.path(env.install) if env.install else ""
    site_way = f"the site's documented way (env.install), on the login node:\n  {install}" if install else ""
    if venv:
        pip = f"{ctx.path(venv)}/bin/pip install jupyterlab"
        missing = f"Install JupyterLab into the venv the job activates (env.venv): {pip}."
        missing += f"\nOr remove env.venv and install it {site_way}" if site_way else ""
    elif site_way:
        missing = f"Install JupyterLab {site_way}"
    else:
        missing = f"Install JupyterLab into the environment the job activates ({setting}): pip install jupyterlab."
    hints = {
        3: f"Create it, or fix {setting} in the profile (or in [sites.{ctx.name}] of your config).",
        4: "Check env.conda_env: 'conda env list' on the login node shows the environments."
        + (f"\nTo create one with JupyterLab, {site_way}" if site_way else ""),
        5: missing,
        6: "Check the module's name with 'module avail' on the login node.",
        7: f"Fix or remove that env.setup line (the profile, or [sites.{ctx.name}] of your config): "
        "the job runs it the same way and would end there. Run it by hand on the login node to see why.",
    }
    detail = said or first_line(result.stderr) or f"exit status {result.returncode}"
    raise HpcJupyterError(f"{detail}{where}.", hints.get(result.returncode, "Run the job's set-up by hand to see why."))


def check_tunnel(ctx: Context) -> str:
    site = ctx.site
    if site.is_local:
        return "does not apply: Jupyter runs on this machine"
    if site.profile.ssh.tunnel == "forward":
        return "forward: the login node connects to the node's port; no ssh to compute nodes is needed"
    nodes = site.scheduler.doctor_nodes
    listed = ctx.ask(nodes) if nodes else None
    node = first_node(listed.stdout) if listed is not None and listed.ok else None
    if node is None:
        return "jump: cannot check until a job runs (no compute node can be named before then)"
    result = site.run(["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", node, "true"], timeout=NODE_SSH_TIMEOUT)
    said = first_line(result.stderr) or f"exit status {result.returncode}"
    if result.ok:
        return f"jump: ssh from the login node to {node} works"
    if refused_until_job(result.stderr):
        return f"jump: cannot check until a job runs ({node} admits ssh only to users with a job there)"
    raise HpcJupyterError(
        f"jump: ssh from the login node to compute node {node} failed ({said}).",
        "The jump tunnel needs ssh to the job's node. If the site does not allow it, set "
        f'tunnel = "forward" in [sites.{ctx.name}] of your config (Jupyter then listens on the node\'s name).',
    )


CHECKS: list[tuple[str, Callable[[Context], str]]] = [
    ("profile", check_profile),
    ("ssh", check_ssh),
    ("scheduler", check_scheduler),
    ("account/partition/qos", check_resources),
    ("remote_dir", check_remote_dir),
    ("jupyter", check_jupyter),
    ("tunnel", check_tunnel),
]


def format_result(result: CheckResult) -> str:
    """``✓ name (12 ms)  detail``; a failure's further lines (what to do) indented beneath."""
    first, *rest = result.detail.splitlines() or [""]
    mark = "✓" if result.ok else "✗"
    lines = [f"{mark} {result.name} ({result.seconds * 1000:.0f} ms)  {first}"]
    return "\n".join(lines + [f"    {line}" for line in rest])


def run_checks(
    ctx: Context, report: Callable[[CheckResult], None], starting: Callable[[str], None] = lambda name: None
) -> bool:
    """Run the checks in order, reporting each as it ends; stop at the first failure."""
    for name, check in CHECKS:
        starting(name)
        start = time.perf_counter()
        try:
            detail, ok = check(ctx), True
        except HpcJupyterError as exc:
            detail, ok = str(exc), False
        report(CheckResult(name, ok, detail, round(time.perf_counter() - start, 3)))
        if not ok:
            return False
    return True
