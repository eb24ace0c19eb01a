"""The command line: parse, call, print. Every failure is one paragraph and a non-zero exit."""

from __future__ import annotations

import json
import sys
from typing import Any, Callable, Optional, TypeVar

import typer

from hpcjupyter import __version__
from hpcjupyter.errors import HpcJupyterError

app = typer.Typer(
    name="hpcjupyter",
    help="JupyterLab on an HPC compute node, in your laptop's browser, with one command.\n\n"
    "Example: hpcjupyter submit --site archer2 --hours 2 --connect",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
sites_app = typer.Typer(help="List, show and check site profiles.", no_args_is_help=True)
app.add_typer(sites_app, name="sites")

F = TypeVar("F", bound=Callable[..., Any])


def _version(value: bool) -> None:
    if value:
        typer.echo(f"hpcjupyter {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """JupyterLab on an HPC compute node, in your laptop's browser, with one command."""


def fail(error: HpcJupyterError) -> None:
    """Print one clear paragraph on stderr and exit non-zero."""
    typer.echo(f"error: {error}", err=True)
    raise typer.Exit(error.exit_code)


def _profiles() -> Any:
    from hpcjupyter.profiles import ProfileSet

    found = ProfileSet.discover()
    for warning in found.warnings:
        typer.echo(warning, err=True)
    return found


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=True))


# ---- sites -------------------------------------------------------------------------------


@sites_app.command("list")
def sites_list(as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts.")) -> None:
    """List every site profile found on the search path.

    Example: hpcjupyter sites list
    """
    try:
        found = _profiles()
        rows = []
        for name in found.names():
            files = found.files_for(name)
            try:
                profile, _ = found.load(name)
                rows.append({"name": name, "scheduler": profile.scheduler, "description": profile.description,
                             "files": [str(f) for f in files], "error": ""})
            except HpcJupyterError as exc:
                rows.append({"name": name, "scheduler": "?", "description": "", "files": [str(f) for f in files],
                             "error": str(exc)})
    except HpcJupyterError as exc:
        fail(exc)
        return
    if as_json:
        _print_json(rows)
        return
    width = max((len(r["name"]) for r in rows), default=4)
    for row in rows:
        text = row["description"] if not row["error"] else "INVALID: run 'hpcjupyter sites check " + row["name"] + "'"
        typer.echo(f"{row['name']:<{width}}  {row['scheduler']:<6}  {text}")


@sites_app.command("show")
def sites_show(
    name: str = typer.Argument(..., help="Site name, e.g. archer2."),
    origin: bool = typer.Option(False, "--origin", help="Show which file set each value."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
) -> None:
    """Print the merged profile of one site (built-in, group and personal layers combined).

    Example: hpcjupyter sites show archer2 --origin
    """
    try:
        profile, origins = _profiles().load(name)
    except HpcJupyterError as exc:
        fail(exc)
        return
    data = profile.model_dump(mode="json")
    if as_json:
        _print_json({"profile": data, "origins": origins} if origin else data)
        return
    from hpcjupyter.showprofile import format_profile

    typer.echo(format_profile(data, origins if origin else None))


# ---- submit ------------------------------------------------------------------------------


@app.command()
def submit(
    site: str = typer.Option(..., "--site", "-s", help="Site profile to use (see 'hpcjupyter sites list')."),
    hours: Optional[float] = typer.Option(None, help="Walltime in hours (0.5 = 30 minutes)."),
    cpus: Optional[int] = typer.Option(None, help="CPU cores."),
    memory: Optional[str] = typer.Option(None, help="Memory, e.g. 16G."),
    gpus: Optional[int] = typer.Option(None, help="GPUs."),
    account: Optional[str] = typer.Option(None, help="Budget/project code to charge."),
    partition: Optional[str] = typer.Option(None, help="Slurm partition."),
    qos: Optional[str] = typer.Option(None, help="Slurm QoS."),
    queue: Optional[str] = typer.Option(None, help="PBS queue (most PBS sites route jobs: leave it out)."),
    conda_env: Optional[str] = typer.Option(None, help="Conda environment to activate."),
    workdir: Optional[str] = typer.Option(None, help="Directory Jupyter serves (default: the job directory)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the batch script and submit nothing."),
) -> None:
    """Submit a batch job that starts JupyterLab on a compute node.

    Values come from the site profile, then your config.toml, then these flags.

    Example: hpcjupyter submit --site archer2 --hours 2 --account e123 --dry-run
    """
    flags = dict(hours=hours, cpus=cpus, memory=memory, gpus=gpus, account=account, partition=partition,
                 qos=qos, queue=queue, conda_env=conda_env, workdir=workdir)
    try:
        from hpcjupyter.render import render
        from hpcjupyter.request import build_request

        profile, _ = _profiles().load(site)
        request = build_request(profile, flags)
        script = render(profile, request)
        if dry_run:
            typer.echo(script, nl=False)
            return
        raise HpcJupyterError("submitting is not built yet.", "Use --dry-run to see the script.")
    except HpcJupyterError as exc:
        fail(exc)


def main() -> None:
    """Entry point of the ``hpcjupyter`` command."""
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
