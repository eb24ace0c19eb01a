"""The command line: parse, call a use case, print. Every failure is one paragraph and a non-zero exit
(the one handler is `cli_common.Commands`)."""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import typer

from hpcjupyter import __version__
from hpcjupyter.cli_common import Commands, Options, make_ui, open_site_for, print_json, profiles
from hpcjupyter.cli_doctor import doctor
from hpcjupyter.cli_sites import sites_app

if TYPE_CHECKING:
    from hpcjupyter.connecting import ConnectOptions, Ready
    from hpcjupyter.sessions import Session
    from hpcjupyter.site import Site
    from hpcjupyter.ui import UI

app = typer.Typer(
    name="hpcjupyter",
    cls=Commands,
    help="JupyterLab on an HPC compute node, in your laptop's browser, with one command.\n\n"
    "Example: hpcjupyter submit --site archer2 --hours 2 --connect",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
app.add_typer(sites_app, name="sites")
app.command()(doctor)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"hpcjupyter {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only errors and results; no progress."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Also show the ssh and scheduler commands run."),
) -> None:
    """JupyterLab on an HPC compute node, in your laptop's browser, with one command."""
    ctx.obj = Options(quiet=quiet, verbose=verbose)


def _opener(ui: UI) -> Any:
    return lambda name: open_site_for(name, ui)


# ---- submit ------------------------------------------------------------------------------


@app.command()
def submit(
    ctx: typer.Context,
    site: str = typer.Option(..., "--site", "-s", help="Site profile to use (see 'hpcjupyter sites list')."),
    hours: float | None = typer.Option(None, help="Walltime in hours (0.5 = 30 minutes)."),
    cpus: int | None = typer.Option(None, help="CPU cores."),
    memory: str | None = typer.Option(None, help="Memory, e.g. 16G."),
    gpus: int | None = typer.Option(None, help="GPUs."),
    account: str | None = typer.Option(None, help="Budget/project code to charge."),
    partition: str | None = typer.Option(None, help="Slurm partition."),
    qos: str | None = typer.Option(None, help="Slurm QoS."),
    queue: str | None = typer.Option(None, help="PBS queue (most PBS sites route jobs: leave it out)."),
    conda_env: str | None = typer.Option(None, help="Conda environment to activate."),
    workdir: str | None = typer.Option(None, help="Directory Jupyter serves (default: the job directory)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the batch script and submit nothing."),
    connect_after: bool = typer.Option(False, "--connect", help="Go straight on to 'connect' with the same login."),
    no_browser: bool = typer.Option(False, "--no-browser", help="With --connect: print the URL, open no browser."),
    local_port: int | None = typer.Option(None, "--local-port", help="With --connect: local port of the tunnel."),
    timeout: float | None = typer.Option(None, "--timeout", help="With --connect: give up waiting after SECONDS."),
    cancel_on_exit: bool = typer.Option(False, "--cancel-on-exit", help="With --connect: cancel the job on Ctrl-C."),
    as_json: bool = typer.Option(False, "--json", help='Print {"site", "job_id", "script"} as JSON.'),
) -> None:
    """Submit a batch job that starts JupyterLab on a compute node.

    Values come from the site profile, then your config.toml, then these flags.

    Example: hpcjupyter submit --site archer2 --hours 2 --account e123 --dry-run
    """
    from hpcjupyter.render import render
    from hpcjupyter.request import build_request

    flags = dict(
        hours=hours,
        cpus=cpus,
        memory=memory,
        gpus=gpus,
        account=account,
        partition=partition,
        qos=qos,
        queue=queue,
        conda_env=conda_env,
        workdir=workdir,
    )
    profile, _ = profiles().load(site)
    request = build_request(profile, flags)
    script = render(profile, request)
    if dry_run:
        typer.echo(script, nl=False)
        return
    from hpcjupyter.submitting import submit as submit_job

    options = _connect_options(local_port, timeout, cancel_on_exit) if connect_after else None
    ui = make_ui(ctx)
    site_obj = open_site_for(site, ui)
    session = submit_job(site_obj, request)
    if as_json:
        from hpcjupyter import protocol

        print_json({"site": site, "job_id": session.job_id, "script": protocol.path(session.job_dir, protocol.SCRIPT)})
    else:
        ui.info(f"submitted job {session.job_id} to {site} (job directory {session.job_dir})")
    if options is None:
        if not as_json:
            typer.echo(session.job_id)
            ui.info(f"next: hpcjupyter connect {session.job_id}")
        return
    raise typer.Exit(_connect(site_obj, session, ui, options, not no_browser))


def _connect_options(local_port: int | None, timeout: float | None, cancel_on_exit: bool) -> ConnectOptions:
    """A --local-port that cannot work is refused before anything is submitted or waited for."""
    from hpcjupyter.connecting import ConnectOptions

    if local_port is not None:
        from hpcjupyter.tunnel import check_local_port

        check_local_port(local_port)
    return ConnectOptions(local_port=local_port, timeout=timeout, cancel_on_exit=cancel_on_exit)


def _connect(site: Site, session: Session, ui: UI, options: ConnectOptions, open_browser: bool) -> int:
    """Run the connect use case and print what happens; the exit code says how it ended."""
    from hpcjupyter.connecting import Ending, connect

    def ready(found: Ready) -> None:
        typer.echo(found.url)
        ui.info(
            f"Jupyter on {found.node} is at {found.shown} "
            "(the URL above carries the token; it is not stored on this machine)"
        )
        if open_browser:
            import webbrowser

            webbrowser.open(found.url)

    with _signals_interrupt():
        finished = connect(site, session, ui, options, ready)
    job = session.job_id
    if finished.ending is Ending.DETACHED:
        ui.info(
            f"disconnected; job {job} keeps running.\n"
            f"  reconnect: hpcjupyter connect {job}\n  stop it:   hpcjupyter cancel {job}"
        )
    elif finished.ending is Ending.CANCELLED:
        ui.info(f"disconnected and cancelled job {job} on {site.name} (--cancel-on-exit)")
    else:
        from hpcjupyter.wait import end_reason

        ui.info(f"job {job} ended: {end_reason(finished.status)}" if finished.status else f"job {job} ended")
    return 0


@contextlib.contextmanager
def _signals_interrupt() -> Iterator[None]:
    """While connected, a closed terminal (SIGHUP) or a polite kill (SIGTERM) is handled like
    Ctrl-C: the tunnel is closed, the record updated and --cancel-on-exit honoured."""

    def interrupt(number: int, frame: object) -> None:
        raise KeyboardInterrupt

    caught = [s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)) if s is not None]
    saved = {number: signal.signal(number, interrupt) for number in caught}
    try:
        yield
    finally:
        for number, handler in saved.items():
            signal.signal(number, handler)


@app.command()
def connect(
    ctx: typer.Context,
    job_id: str = typer.Argument(..., help="Job id printed by 'submit' (see 'hpcjupyter ls')."),
    site: str | None = typer.Option(None, "--site", "-s", help="Site of a job this machine has no record of."),
    local_port: int | None = typer.Option(None, "--local-port", help="Local port for the tunnel (default: free one)."),
    timeout: float | None = typer.Option(
        None, "--timeout", help="Give up waiting after SECONDS (default: wait while queued)."
    ),
    no_browser: bool = typer.Option(False, "--no-browser", help="Print the URL, open no browser."),
    cancel_on_exit: bool = typer.Option(False, "--cancel-on-exit", help="Cancel the job on Ctrl-C."),
) -> None:
    """Wait for a job, tunnel to its Jupyter and open the browser; Ctrl-C leaves the job running.

    Example: hpcjupyter connect 123456
    """
    from hpcjupyter.jobs import find_session

    ui = make_ui(ctx)
    options = _connect_options(local_port, timeout, cancel_on_exit)
    session, site_obj = find_session(job_id, site, _opener(ui))
    raise typer.Exit(_connect(site_obj, session, ui, options, not no_browser))


@app.command()
def cancel(
    ctx: typer.Context,
    job_id: str = typer.Argument(..., help="Job id to cancel."),
    site: str | None = typer.Option(None, "--site", "-s", help="Site of a job this machine has no record of."),
) -> None:
    """Cancel a job (Jupyter is shut down cleanly). Cancelling an ended job changes nothing.

    Example: hpcjupyter cancel 123456
    """
    from hpcjupyter.jobs import cancel_job, find_session
    from hpcjupyter.wait import end_reason

    ui = make_ui(ctx)
    session, site_obj = find_session(job_id, site, _opener(ui))
    done = cancel_job(site_obj, session)
    if done.already is not None:
        ui.info(f"job {job_id} on {site_obj.name} had already ended ({end_reason(done.already)}); nothing to cancel")
    else:
        ui.info(f"cancelled job {job_id} on {site_obj.name}")


@app.command()
def logs(
    ctx: typer.Context,
    job_id: str = typer.Argument(..., help="Job id whose log to show."),
    site: str | None = typer.Option(None, "--site", "-s", help="Site of a job this machine has no record of."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines until the job ends."),
) -> None:
    """Print the job's log (the one the job script writes on the cluster).

    Example: hpcjupyter logs 123456 --follow
    """
    from hpcjupyter.joblog import show_log
    from hpcjupyter.jobs import find_session

    ui = make_ui(ctx)
    session, site_obj = find_session(job_id, site, _opener(ui))
    show_log(site_obj, session, follow, typer.echo)


@app.command()
def status(
    ctx: typer.Context,
    job_id: str = typer.Argument(..., help="Job id (any job of yours, also one submitted without hpcjupyter)."),
    site: str | None = typer.Option(None, "--site", "-s", help="Site the job runs on (default: the recorded one)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Show a job's state, how it ended, reason, node, time used/limit and estimated start.

    Example: hpcjupyter status 123456 --site archer2 --json
    """
    from hpcjupyter.jobs import status as job_status

    found, site_obj = job_status(job_id, site, _opener(make_ui(ctx)))
    data = {
        "job_id": job_id,
        "site": site_obj.name,
        "state": found.state.name,
        "outcome": found.outcome.value if found.outcome else "",
        "native_state": found.native_state,
        "node": found.node,
        "reason": found.reason,
        "time_used": found.time_used,
        "time_limit": found.time_limit,
        "start_estimate": found.start_estimate,
        "exit_status": found.exit_status,
    }
    if as_json:
        print_json(data)
        return
    for key, value in data.items():
        if value:
            typer.echo(f"{key:>14}: {value}")


@app.command("ls")
def list_sessions(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
    show_all: bool = typer.Option(False, "--all", "-a", help="Include sessions that ended more than a day ago."),
) -> None:
    """List your sessions with their live state: one scheduler query per site.

    Example: hpcjupyter ls
    """
    from hpcjupyter.listing import refresh, rows

    ui = make_ui(ctx)
    current = refresh(show_all, _opener(ui), ui)
    if as_json:
        print_json([vars(s) for s in current])
        return
    if not current:
        ui.info("no sessions; start one with: hpcjupyter submit --site NAME")
        return
    for line in rows(current):
        typer.echo(line)


def main() -> None:
    """Entry point of the ``hpcjupyter`` command."""
    try:
        app(prog_name="hpcjupyter")
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
