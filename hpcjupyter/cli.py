"""The command line: parse, call, print. Every failure is one paragraph and a non-zero exit."""

from __future__ import annotations

import sys
from typing import Any, Optional

import typer

from hpcjupyter import __version__
from hpcjupyter.cli_common import OPTIONS, fail, make_ui, open_site_for, print_json, profiles
from hpcjupyter.cli_doctor import doctor
from hpcjupyter.cli_sites import sites_app
from hpcjupyter.errors import HpcJupyterError

app = typer.Typer(
    name="hpcjupyter",
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
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only errors and results; no progress."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Also show the ssh and scheduler commands run."),
) -> None:
    """JupyterLab on an HPC compute node, in your laptop's browser, with one command."""
    OPTIONS.update(quiet=quiet, verbose=verbose)


def _session_for(job_id: str, site_name: str | None, ui: Any) -> tuple[Any, Any]:
    """The session record of a job (created for a job submitted some other way) and its site."""
    from hpcjupyter import sessions

    session = sessions.find(job_id, site_name)
    if session is not None:
        return session, open_site_for(session.site, ui)
    if site_name is None:
        raise HpcJupyterError(
            f"no session with job id {job_id} is recorded on this machine.",
            "Give the site it runs on with --site NAME (see 'hpcjupyter ls' for recorded jobs).",
        )
    from hpcjupyter.adopt import adopt

    elsewhere = sorted({s.site for s in sessions.all_sessions() if s.job_id == job_id and s.site != site_name})
    site = open_site_for(site_name, ui)
    try:
        return adopt(site, job_id), site
    except HpcJupyterError as exc:
        if not elsewhere:
            raise
        # The same id recorded on another site: most likely a --site typo, so say where it is.
        raise HpcJupyterError(
            f"{exc.message} This machine has job {job_id} recorded on site {', '.join(elsewhere)}, not on {site_name}.",
            f"To use that one, leave out --site (or give --site {elsewhere[0]}).",
        ) from None


def _check_local_port(local_port: int | None) -> None:
    """A --local-port that cannot work is refused before anything is submitted or waited for."""
    if local_port is not None:
        from hpcjupyter.tunnel import check_local_port

        check_local_port(local_port)


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
    connect_after: bool = typer.Option(False, "--connect", help="Go straight on to 'connect' with the same login."),
    no_browser: bool = typer.Option(False, "--no-browser", help="With --connect: print the URL, open no browser."),
    local_port: Optional[int] = typer.Option(None, "--local-port", help="With --connect: local port of the tunnel."),
    timeout: Optional[float] = typer.Option(None, "--timeout", help="With --connect: give up waiting after SECONDS."),
    cancel_on_exit: bool = typer.Option(False, "--cancel-on-exit", help="With --connect: cancel the job on Ctrl-C."),
    as_json: bool = typer.Option(False, "--json", help='Print {"site", "job_id", "script"} as JSON.'),
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

        profile, _ = profiles().load(site)
        request = build_request(profile, flags)
        script = render(profile, request)
        if dry_run:
            typer.echo(script, nl=False)
            return
        from hpcjupyter.submitting import submit as submit_job

        if connect_after:
            _check_local_port(local_port)
        ui = make_ui()
        site_obj = open_site_for(site, ui)
        session = submit_job(site_obj, request)
        if as_json:
            print_json({"site": site, "job_id": session.job_id, "script": f"{session.job_dir}/job.sh"})
        else:
            ui.info(f"submitted job {session.job_id} to {site} (job directory {session.job_dir})")
        if not connect_after:
            if not as_json:
                typer.echo(session.job_id)
                ui.info(f"next: hpcjupyter connect {session.job_id}")
            return
        code = _connect(site_obj, session, ui, local_port, timeout, not no_browser, cancel_on_exit)
        raise typer.Exit(code)
    except HpcJupyterError as exc:
        fail(exc)


def _connect(site: Any, session: Any, ui: Any, local_port: int | None, timeout: float | None,
             open_browser: bool, cancel_on_exit: bool) -> int:
    """Wait, tunnel, print the URL, hold the tunnel; the exit code says how the job ended."""
    from hpcjupyter import sessions
    from hpcjupyter.connecting import Waiter, job_ended, keep_alive, local_url_for, open_tunnel_for, \
        wait_until_answering
    from hpcjupyter.wait import end_reason

    _ = site.remote  # log in now: a login that cannot work (no ssh, host key changed) fails at once, not retried
    waiter = Waiter(site, session, ui, timeout)
    connection = waiter.wait()
    ui.stop_status()
    tunnel = open_tunnel_for(site, connection, local_port or session.local_port, strict=local_port is not None)
    port = tunnel.local_port if tunnel is not None else connection.endpoint.port
    try:
        if not wait_until_answering(port, connection):
            raise HpcJupyterError(
                f"Jupyter on {connection.endpoint.node or connection.endpoint.host}:{connection.endpoint.port} "
                f"does not answer through the tunnel on 127.0.0.1:{port}.",
                f"Check the job log with 'hpcjupyter logs {session.job_id}'; the job is left running.",
            )
        url = local_url_for(site, connection, port)
        shown = url.split("?", 1)[0]
        with sessions.updating(session.site, session.session_id) as saved:
            saved.local_port, saved.url, saved.state = port, shown, "RUNNING"
            saved.node = connection.endpoint.node or saved.node
        typer.echo(url)
        ui.info(f"Jupyter on {connection.endpoint.node or connection.endpoint.host} is at {shown} "
                "(the URL above carries the token; it is not stored on this machine)")
        if open_browser:
            import webbrowser

            webbrowser.open(url)
        try:
            status = keep_alive(waiter, connection, tunnel, port, shown)
        except KeyboardInterrupt:
            ui.stop_status()
            if cancel_on_exit:
                _cancel(site, session, ui)
                return 0
            ui.info(f"disconnected; job {session.job_id} keeps running.\n"
                    f"  reconnect: hpcjupyter connect {session.job_id}\n  stop it:   hpcjupyter cancel {session.job_id}")
            return 0
        ui.stop_status()
        if status.exit_status in ("", "0", "0:0") and status.native_state in ("", "CD", "COMPLETED", "F"):
            ui.info(f"job {session.job_id} ended: {end_reason(status)}")
            return 0
        # Jupyter crashed, the walltime ran out, the job was cancelled: say so, with the log's tail.
        raise job_ended(site, session, end_reason(status),
                        f"Jupyter went with it. Start a new session with 'hpcjupyter submit --site {site.name}'"
                        + (" and more --hours." if status.native_state in ("TIMEOUT", "TO") or status.exit_status == "-29"
                           else "."))
    finally:
        if tunnel is not None:
            tunnel.close()
        with sessions.updating(session.site, session.session_id) as saved:
            saved.url = ""


def _cancel(site: Any, session: Any, ui: Any) -> None:
    result = site.run(site.scheduler.cancel_argv([session.job_id]))
    if not site.scheduler.cancel_ok(result):
        raise HpcJupyterError(
            f"the scheduler refused to cancel job {session.job_id}: {(result.stderr or result.stdout).strip()}",
        )
    ui.info(f"cancelled job {session.job_id} on {site.name}")


@app.command()
def connect(
    job_id: str = typer.Argument(..., help="Job id printed by 'submit' (see 'hpcjupyter ls')."),
    site: Optional[str] = typer.Option(None, "--site", "-s", help="Site of a job this machine has no record of."),
    local_port: Optional[int] = typer.Option(None, "--local-port", help="Local port for the tunnel (default: free one)."),
    timeout: Optional[float] = typer.Option(None, "--timeout", help="Give up waiting after SECONDS (default: wait while queued)."),
    no_browser: bool = typer.Option(False, "--no-browser", help="Print the URL, open no browser."),
    cancel_on_exit: bool = typer.Option(False, "--cancel-on-exit", help="Cancel the job on Ctrl-C."),
) -> None:
    """Wait for a job, tunnel to its Jupyter and open the browser; Ctrl-C leaves the job running.

    Example: hpcjupyter connect 123456
    """
    ui = make_ui()
    try:
        _check_local_port(local_port)
        session, site_obj = _session_for(job_id, site, ui)
        raise typer.Exit(_connect(site_obj, session, ui, local_port, timeout, not no_browser, cancel_on_exit))
    except HpcJupyterError as exc:
        fail(exc)


@app.command()
def cancel(
    job_id: str = typer.Argument(..., help="Job id to cancel."),
    site: Optional[str] = typer.Option(None, "--site", "-s", help="Site of a job this machine has no record of."),
) -> None:
    """Cancel a job (Jupyter is shut down cleanly). Cancelling an ended job is not an error.

    Example: hpcjupyter cancel 123456
    """
    ui = make_ui()
    try:
        session, site_obj = _session_for(job_id, site, ui)
        _cancel(site_obj, session, ui)
    except HpcJupyterError as exc:
        fail(exc)


@app.command()
def logs(
    job_id: str = typer.Argument(..., help="Job id whose log to show."),
    site: Optional[str] = typer.Option(None, "--site", "-s", help="Site of a job this machine has no record of."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines until the job ends."),
) -> None:
    """Print the job's log (the one the job script writes on the cluster).

    Example: hpcjupyter logs 123456 --follow
    """
    ui = make_ui()
    try:
        session, site_obj = _session_for(job_id, site, ui)
        from hpcjupyter.joblog import show_log

        show_log(site_obj, session, follow, typer.echo)
    except HpcJupyterError as exc:
        fail(exc)


@app.command()
def status(
    job_id: str = typer.Argument(..., help="Job id (any job of yours, also one submitted without hpcjupyter)."),
    site: str = typer.Option(..., "--site", "-s", help="Site the job runs on."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Show a job's state, reason, node, time used/limit and estimated start.

    Example: hpcjupyter status 123456 --site archer2 --json
    """
    ui = make_ui()
    try:
        from hpcjupyter.schedulers import NOT_KNOWN
        from hpcjupyter.schedulers.base import JobState

        site_obj = open_site_for(site, ui)
        site_obj.remote  # log in first: a login that cannot work says so, not "could not say what job"
        found = site_obj.status([job_id]).get(job_id)
        if found is None or found.state is JobState.UNKNOWN:
            raise HpcJupyterError(
                f"the scheduler on {site} could not say what job {job_id} is"
                f"{': ' + found.reason if found is not None and found.reason else ''}.",
                "Check the job id; if the cluster is busy, try again in a minute.",
            )
        if found.state is JobState.ENDED and found.reason == NOT_KNOWN and not found.native_state:
            from hpcjupyter import sessions

            # A job we submitted that the scheduler has purged (no accounting) ended; any other
            # id nobody knows is most likely a typo.
            if sessions.find(job_id, site) is None:
                raise HpcJupyterError(f"job {job_id} is not known to the scheduler on {site}.",
                                      "Check the job id (and the site).")
        data = {"job_id": job_id, "site": site, "state": found.state.name, "native_state": found.native_state,
                "node": found.node, "reason": found.reason, "time_used": found.time_used,
                "time_limit": found.time_limit, "start_estimate": found.start_estimate,
                "exit_status": found.exit_status}
        if as_json:
            print_json(data)
        else:
            for key, value in data.items():
                if value:
                    typer.echo(f"{key:>14}: {value}")
    except HpcJupyterError as exc:
        fail(exc)


@app.command("ls")
def list_sessions(
    as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
    show_all: bool = typer.Option(False, "--all", "-a", help="Include sessions that ended more than a day ago."),
) -> None:
    """List your sessions with their live state: one scheduler query per site.

    Example: hpcjupyter ls
    """
    ui = make_ui()
    try:
        from hpcjupyter.listing import refresh, rows

        current = refresh(show_all, lambda name: open_site_for(name, ui), ui)
    except HpcJupyterError as exc:
        fail(exc)
        return
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
