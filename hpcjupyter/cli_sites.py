"""`hpcjupyter sites ...`: list, show, check, init, add, update and remove site profiles."""

from __future__ import annotations

import typer

from hpcjupyter.cli_common import print_json, profiles, fail
from hpcjupyter.errors import HpcJupyterError

sites_app = typer.Typer(help="List, show, check and share site profiles.", no_args_is_help=True)


@sites_app.command("list")
def sites_list(as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts.")) -> None:
    """List every site profile found on the search path.

    Example: hpcjupyter sites list
    """
    try:
        found = profiles()
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
        print_json(rows)
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
        profile, origins = profiles().load(name)
    except HpcJupyterError as exc:
        fail(exc)
        return
    data = profile.model_dump(mode="json")
    if as_json:
        print_json({"profile": data, "origins": origins} if origin else data)
        return
    from hpcjupyter.showprofile import format_profile

    typer.echo(format_profile(data, origins if origin else None))
