"""What every command shares: one error handler, JSON output, the user's options, opening a site."""

from __future__ import annotations

import functools
import inspect
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar, cast

import typer
from typer.core import TyperGroup

from hpcjupyter.errors import HpcJupyterError

if TYPE_CHECKING:
    from hpcjupyter.profiles import Origins, ProfileSet
    from hpcjupyter.schema import Profile
    from hpcjupyter.site import Site
    from hpcjupyter.ui import UI


F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class Options:
    """The root options (-q, -v), kept on the click context for every command to read."""

    quiet: bool = False
    verbose: bool = False


def fail(error: HpcJupyterError) -> NoReturn:
    """Print one clear paragraph on stderr and exit non-zero."""
    typer.echo(f"error: {error}", err=True)
    raise typer.Exit(error.exit_code)


def common_options(func: F) -> F:
    """Give a command -q/-v of its own, so ``hpcjupyter ls -v`` works as ``hpcjupyter -v ls`` does."""
    signature = inspect.signature(func, eval_str=True)
    has_ctx = any(p.annotation is typer.Context for p in signature.parameters.values())
    keyword = inspect.Parameter.KEYWORD_ONLY
    extra = [
        inspect.Parameter(
            "hpcj_quiet",
            keyword,
            default=typer.Option(False, "--quiet", "-q", help="Only errors and results; no progress."),
            annotation=bool,
        ),
        inspect.Parameter(
            "hpcj_verbose",
            keyword,
            default=typer.Option(False, "--verbose", "-v", help="Also show the ssh and scheduler commands run."),
            annotation=bool,
        ),
    ]
    if not has_ctx:
        extra.append(inspect.Parameter("hpcj_ctx", keyword, annotation=typer.Context))

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        quiet, verbose = kwargs.pop("hpcj_quiet", False), kwargs.pop("hpcj_verbose", False)
        ctx = kwargs.pop("hpcj_ctx", None) or next(
            (v for v in [*args, *kwargs.values()] if hasattr(v, "find_root")), None
        )
        if ctx is not None and (quiet or verbose):
            root = ctx.find_root()
            if not isinstance(root.obj, Options):
                root.obj = Options()
            root.obj.quiet = root.obj.quiet or quiet
            root.obj.verbose = root.obj.verbose or verbose
        return func(*args, **kwargs)

    params = list(signature.parameters.values()) + extra
    wrapper.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    return cast(F, wrapper)


def _first_sentence(text: str) -> str:
    """The first sentence of a help text, whole (click would cut it at the terminal's width)."""
    paragraph = " ".join(text.split("\n\n", 1)[0].split())
    match = re.match(r"(.+?[.;])(\s|$)", paragraph)
    return (match.group(1) if match else paragraph).rstrip(";.") + "."


class Commands(TyperGroup):
    """The one error handler: any HpcJupyterError a command raises becomes one paragraph and its
    exit code, so commands only raise. Its command list shows whole first sentences, not cut ones."""

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is None or command.hidden:
                continue
            rows.append((name, command.short_help or _first_sentence(command.help or "")))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except HpcJupyterError as exc:
            fail(exc)


def options(ctx: typer.Context) -> Options:
    """The options given before the command (defaults when a command is called on its own)."""
    found = ctx.find_root().obj
    return found if isinstance(found, Options) else Options()


def profiles() -> ProfileSet:
    from hpcjupyter.profiles import ProfileSet

    found = ProfileSet.discover()
    for warning in found.warnings:
        typer.echo(warning, err=True)
    return found


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, sort_keys=True))


def make_ui(ctx: typer.Context) -> UI:
    from hpcjupyter.ui import UI

    given = options(ctx)
    return UI(quiet=given.quiet, verbose=given.verbose)


def open_site_for(name: str, ui: UI, loaded: tuple[Profile, Origins] | None = None) -> Site:
    """The site's merged profile (LOADED if the caller has it already) and scheduler adapter; ssh
    prompts go to this terminal. With -v the exact ssh command of the login is shown, so a failing
    login can be tried by hand."""
    from hpcjupyter.schedulers import get_scheduler
    from hpcjupyter.site import Site
    from hpcjupyter.transports.prompts import TerminalPrompter

    profile, origins = loaded or profiles().load(name)
    site = Site(
        profile=profile,
        origins=origins,
        scheduler=get_scheduler(profile.scheduler),
        prompter=TerminalPrompter(ui),
        ui=ui,
    )
    if ui.verbose:
        site.remote_factory = _showing_login(ui)
    return site


def _showing_login(ui: UI) -> Any:
    def factory(target: Any, prompter: Any) -> Any:
        import shlex

        from hpcjupyter.transports import make_remote

        remote = make_remote(target, prompter)
        control = getattr(remote, "control_path", None)
        if control is not None:
            from hpcjupyter.transports.openssh import master_argv

            argv = master_argv(target, control, ssh=getattr(remote, "ssh", "ssh"))
            ui.debug(f"{target.site}: login with: {shlex.join(argv)}")
        else:
            ui.debug(f"{target.site}: login with {type(remote).__name__} to {target.label}")
        return remote

    return factory


def default_site(given: str | None) -> str:
    """The site to use: --site, else $HPCJUPYTER_SITE, else ``default_site`` in the config, else the
    only site that has personal settings in the config."""
    if given:
        return given
    env = os.environ.get("HPCJUPYTER_SITE", "").strip()
    if env:
        return env
    found = profiles()
    chosen = getattr(found.config, "default_site", None)
    if chosen:
        return str(chosen)
    personal = [n for n in found.config.sites if n in found.names()]
    if len(personal) == 1:
        return personal[0]
    raise HpcJupyterError(
        "no site given, and no default site is set.",
        "Give --site NAME (see 'hpcjupyter sites list'), or set a default once: "
        "'hpcjupyter config set default_site NAME' (or HPCJUPYTER_SITE=NAME).",
    )


REQUEST_FLAGS = ("hours", "cpus", "memory", "gpus", "account", "partition", "qos", "queue", "conda_env", "workdir")
"""The options a request is built from; `submit` and `doctor` take the same ones."""


def request_flags(given: Mapping[str, Any]) -> dict[str, Any]:
    """A command's request options (its ``locals()``), with --hours read in any accepted format."""
    from hpcjupyter.hours import parse_hours

    flags = {key: given[key] for key in REQUEST_FLAGS}
    if flags["hours"] is not None:
        flags["hours"] = parse_hours(flags["hours"])
    return flags
