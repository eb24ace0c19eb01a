"""What every command shares: one error handler, JSON output, the user's options, opening a site."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

import typer
from typer.core import TyperGroup

from hpcjupyter.errors import HpcJupyterError

if TYPE_CHECKING:
    from hpcjupyter.profiles import ProfileSet
    from hpcjupyter.site import Site
    from hpcjupyter.ui import UI


@dataclass
class Options:
    """The root options (-q, -v), kept on the click context for every command to read."""

    quiet: bool = False
    verbose: bool = False


def fail(error: HpcJupyterError) -> NoReturn:
    """Print one clear paragraph on stderr and exit non-zero."""
    typer.echo(f"error: {error}", err=True)
    raise typer.Exit(error.exit_code)


class Commands(TyperGroup):
    """The one error handler: any HpcJupyterError a command raises becomes one paragraph and its
    exit code, so commands only raise."""

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
    typer.echo(json.dumps(data, indent=2, sort_keys=True))


def make_ui(ctx: typer.Context) -> UI:
    from hpcjupyter.ui import UI

    given = options(ctx)
    return UI(quiet=given.quiet, verbose=given.verbose)


def open_site_for(name: str, ui: UI) -> Site:
    """The site's merged profile and scheduler adapter; ssh prompts go to this terminal."""
    from hpcjupyter.remote.prompts import TerminalPrompter
    from hpcjupyter.schedulers import get_scheduler
    from hpcjupyter.site import Site

    profile, origins = profiles().load(name)
    return Site(
        profile=profile,
        origins=origins,
        scheduler=get_scheduler(profile.scheduler),
        prompter=TerminalPrompter(ui),
        ui=ui,
    )
