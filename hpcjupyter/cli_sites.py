"""`hpcjupyter sites ...`: list, show, check, init, add, update and remove site profiles."""

from __future__ import annotations

from pathlib import Path

import typer

from hpcjupyter.cli_common import Commands, common_options, print_json, profiles
from hpcjupyter.errors import HpcJupyterError

sites_app = typer.Typer(cls=Commands, help="List, show, check and share site profiles.", no_args_is_help=True)


@sites_app.command("list")
@common_options
def sites_list(as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts.")) -> None:
    """List every site profile found on the search path (--json also gives each one's files).

    Example: hpcjupyter sites list
    """
    found = profiles()
    rows = []
    for name in found.names():
        files = found.files_for(name)
        try:
            profile, _ = found.load(name)
            rows.append(
                {
                    "name": name,
                    "scheduler": profile.scheduler,
                    "description": profile.description,
                    "files": [str(f) for f in files],
                    "error": "",
                }
            )
        except HpcJupyterError as exc:
            rows.append(
                {"name": name, "scheduler": "?", "description": "", "files": [str(f) for f in files], "error": str(exc)}
            )
    if as_json:
        print_json(rows)
        return
    width = max((len(r["name"]) for r in rows), default=4)
    for row in rows:
        text = row["description"] if not row["error"] else f"INVALID: run 'hpcjupyter sites check {row['name']}'"
        typer.echo(f"{row['name']:<{width}}  {row['scheduler']:<6}  {text}")


@sites_app.command("show")
@common_options
def sites_show(
    name: str = typer.Argument(..., help="Site name, e.g. archer2."),
    origin: bool = typer.Option(
        False, "--origin", help="Show which layer set each value (built-in, group NAME, personal, config, default)."
    ),
    files: bool = typer.Option(False, "--files", help="With --origin: name the file instead of the layer."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
) -> None:
    """Print the merged profile of one site (built-in, group and personal layers combined).

    Example: hpcjupyter sites show archer2 --origin
    """
    found = profiles()
    profile, origins = found.load(name)
    data = profile.shown()
    shown = origins if files else {k: found.layer_label(v) for k, v in origins.items()}
    if as_json:
        print_json({"profile": data, "origins": shown, "files": origins} if origin else data)
        return
    from hpcjupyter.showprofile import format_profile

    typer.echo(format_profile(data, shown if origin else None))
    if origin and not files:
        layers = dict.fromkeys(found.layer_label(f) + ": " + f for f in origins.values() if f not in shown.values())
        if layers:
            typer.echo("# layers:\n" + "\n".join(f"#   {line}" for line in layers))


def _indented(text: str) -> str:
    """A multi-line error under its ✗ line."""
    return "\n".join("    " + line for line in text.splitlines())


@sites_app.command("check")
@common_options
def sites_check(name: str | None = typer.Argument(None, help="One site to check (default: every site found).")) -> None:
    """Validate every profile found (or one) and report all problems at once; exit 1 if any is invalid.

    Example: hpcjupyter sites check
    """
    found = profiles()
    from hpcjupyter.sharing import problems

    results = problems(found, [name] if name else found.names())
    for site, error in results.items():
        typer.echo(f"✓ {site}" if not error else f"✗ {site}\n{_indented(error)}")
    config = found.config_problems()
    if config:
        typer.echo(f"✗ {found.config_path}\n{_indented(chr(10).join(config))}")
    if any(results.values()) or config:
        raise typer.Exit(1)


@sites_app.command("init")
@common_options
def sites_init(
    name: str = typer.Argument(..., help="Name of the new site (its file is NAME.toml)."),
    base: str | None = typer.Option(None, "--from", help="Extend this site: only what differs goes in the file."),
    force: bool = typer.Option(False, "--force", help="Replace an existing file of that name."),
) -> None:
    """Write a commented starter profile into your profile directory, every key explained.

    Example: hpcjupyter sites init mygroup --from archer2
    """
    from hpcjupyter.starter import write_starter

    path = write_starter(name, base, force)
    typer.echo(str(path))
    typer.echo(f"next: edit it, then\n  hpcjupyter sites check {name}\n  hpcjupyter doctor --site {name}", err=True)


def _report_sites(directory: Path, before: set[str] | None = None) -> None:
    """The sites a source brought (new ones marked), and a warning naming each invalid one's error."""
    from hpcjupyter.sharing import problems, site_names

    names = site_names(directory)
    shown = [n + (" (new)" if before is not None and n not in before else "") for n in names]
    typer.echo(f"sites from {directory}: {', '.join(shown) or '(none: it has no *.toml files)'}")
    for site, error in problems(profiles(), names).items():
        if error:
            typer.echo(f"warning: site '{site}' is invalid:\n{_indented(error)}", err=True)


@sites_app.command("add")
@common_options
def sites_add(
    source: str = typer.Argument(..., help="A directory of *.toml profiles, or a git URL/repository to clone."),
    name: str | None = typer.Option(None, "--name", help="Name of the clone (default: from the URL)."),
) -> None:
    """Add a group's profiles: a directory by path, a git repository as a clone under your data dir.

    Either way its directory is appended to profile_path in your config.toml.

    Example: hpcjupyter sites add git@github.com:mygroup/hpc-profiles.git
    """
    from hpcjupyter.profiles import ProfileSet
    from hpcjupyter.sharing import add

    before = set(ProfileSet.discover().names())
    entry = add(source, name)
    typer.echo(f"added {entry.raw}" + (" (a git clone: 'hpcjupyter sites update' pulls it)" if entry.cloned else ""))
    _report_sites(entry.path, before)


@sites_app.command("update")
@common_options
def sites_update(name: str | None = typer.Argument(None, help="One clone to pull (default: all).")) -> None:
    """Pull (fast-forward only) the group repositories added with 'sites add'.

    Example: hpcjupyter sites update
    """
    from hpcjupyter.sharing import update

    pulled = update(name)
    if not pulled:
        typer.echo("no cloned group repositories: add one with 'hpcjupyter sites add URL'")
    for result in pulled:
        if result.ok:
            typer.echo(f"✓ {result.entry.name}: {result.message}")
            _report_sites(result.entry.path)
        else:
            typer.echo(f"✗ {result.entry.name}\n{_indented(result.message)}")
    if not all(r.ok for r in pulled):
        raise typer.Exit(1)


@sites_app.command("remove")
@common_options
def sites_remove(name: str = typer.Argument(..., help="Name (or path) of a source added with 'sites add'.")) -> None:
    """Take a group source out of profile_path; a clone made by 'sites add' is deleted too.

    Example: hpcjupyter sites remove hpc-profiles
    """
    from hpcjupyter.sharing import remove

    entry = remove(name)
    typer.echo(f"removed {entry.raw}" + (" (and deleted the clone)" if entry.cloned else ""))
