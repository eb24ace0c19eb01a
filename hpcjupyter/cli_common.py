"""What every command shares: one way to fail, to print JSON, to open a site, to talk to the user."""

from __future__ import annotations

import json
from typing import Any

import typer

from hpcjupyter.errors import HpcJupyterError

OPTIONS: dict[str, bool] = {"quiet": False, "verbose": False}


def fail(error: HpcJupyterError) -> None:
    """Print one clear paragraph on stderr and exit non-zero."""
    typer.echo(f"error: {error}", err=True)
    raise typer.Exit(error.exit_code)


def profiles() -> Any:
    from hpcjupyter.profiles import ProfileSet

    found = ProfileSet.discover()
    for warning in found.warnings:
        typer.echo(warning, err=True)
    return found


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=True))


def make_ui() -> Any:
    from hpcjupyter.ui import UI

    return UI(quiet=OPTIONS["quiet"], verbose=OPTIONS["verbose"])


def open_site_for(name: str, ui: Any) -> Any:
    """The site's merged profile and scheduler adapter; ssh prompts go to this terminal."""
    from hpcjupyter.schedulers import get_scheduler
    from hpcjupyter.site import Site
    from hpcjupyter.remote.prompts import TerminalPrompter

    profile, origins = profiles().load(name)
    return Site(profile=profile, origins=origins, scheduler=get_scheduler(profile.scheduler),
                prompter=TerminalPrompter(ui), ui=ui)
