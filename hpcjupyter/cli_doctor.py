"""``hpcjupyter doctor``: the command. The checks themselves are in `hpcjupyter.doctor`."""

from __future__ import annotations

import typer


def doctor(
    ctx: typer.Context,
    site: str | None = typer.Option(
        None, "--site", "-s", help="Site profile to check (see 'hpcjupyter sites list'; default: your default site)."
    ),
    hours: str | None = typer.Option(None, help="Walltime, as for submit (2, 1:30, 90m)."),
    cpus: int | None = typer.Option(None, help="CPU cores."),
    memory: str | None = typer.Option(None, help="Memory, e.g. 16G."),
    gpus: int | None = typer.Option(None, help="GPUs."),
    account: str | None = typer.Option(None, help="Budget/project code to check."),
    partition: str | None = typer.Option(None, help="Slurm partition to check."),
    qos: str | None = typer.Option(None, help="Slurm QoS to check."),
    queue: str | None = typer.Option(None, help="PBS queue to check."),
    conda_env: str | None = typer.Option(None, help="Conda environment to check."),
    workdir: str | None = typer.Option(None, help="Directory Jupyter would serve."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list of {name, ok, detail, seconds}."),
) -> None:
    """Check a site before a job burns queue time; stop at the first failure and say what to do.

    In order: the profile is valid; ssh reaches the login node (and how many prompts it took);
    the scheduler's commands exist and answer; the account, partition and QoS (or queue) are
    yours; remote_dir is writable; the venv/conda/modules give jupyter-lab; the tunnel shape is
    possible. Each check prints ✓ or ✗ with its time. It takes the same placement flags as
    submit, so the request checked is the one you would submit.

    Example: hpcjupyter doctor --site archer2 --account e123
    """
    from hpcjupyter.cli_common import default_site, make_ui, open_site_for, print_json, request_flags
    from hpcjupyter.doctor import CheckResult, Context, format_result, run_checks

    site = default_site(site)
    flags = request_flags(locals())

    ui = make_ui(ctx)
    results: list[CheckResult] = []

    def report(result: CheckResult) -> None:
        ui.stop_status()
        results.append(result)
        if not as_json:
            typer.echo(format_result(result))

    ok = run_checks(
        Context(site, lambda name: open_site_for(name, ui), flags),
        report,
        starting=lambda name: ui.status(f"checking {name}...") if ui.live else None,
    )
    ui.stop_status()
    if as_json:
        print_json([r.as_json() for r in results])
    if not ok:
        raise typer.Exit(1)
