"""The command line: parse, call a use case, print. Every failure is one paragraph and a non-zero exit
(the one handler is `cli_common.Commands`)."""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import typer

from hpcjupyter import __version__
from hpcjupyter.cli_common import (
    Commands,
    Options,
    common_options,
    default_site,
    make_ui,
    open_site_for,
    print_json,
    profiles,
    request_flags,
)
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
app.command()(common_options(doctor))


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


# ---- completion and shared arguments -------------------------------------------------------


def complete_site(incomplete: str) -> list[str]:
    """Site names for shell completion."""
    try:
        from hpcjupyter.profiles import ProfileSet

        return [n for n in ProfileSet.discover().names() if n.startswith(incomplete)]
    except Exception:  # completion must never print a traceback into the shell
        return []


def complete_job(incomplete: str) -> list[str]:
    """Recorded job ids for shell completion, newest first."""
    try:
        from hpcjupyter import sessions

        ids = [s.job_id for s in reversed(sessions.all_sessions()) if s.job_id]
        return [i for i in ids if i.startswith(incomplete)]
    except Exception:
        return []


def _job_arg(help_text: str) -> Any:
    return typer.Argument(
        None, metavar="JOB_ID", help=help_text + " Default: your newest running session.", autocompletion=complete_job
    )


def _site_opt(help_text: str, required: bool = False) -> Any:
    return typer.Option(None, "--site", "-s", help=help_text, autocompletion=complete_site)


def _emit(event: str, **data: Any) -> None:
    """One JSON object on one line (``--json`` with --connect: one line per event)."""
    typer.echo(json.dumps({"event": event, **data}, sort_keys=True))


# ---- submit ------------------------------------------------------------------------------


@app.command()
@common_options
def submit(
    ctx: typer.Context,
    site: str | None = _site_opt(
        "Site profile to use (see 'hpcjupyter sites list'; default: HPCJUPYTER_SITE or default_site in the config)."
    ),
    hours: str | None = typer.Option(None, help="Walltime: 2, 1.5, 1:30, 1:30:00, 90m or 2h."),
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
    cancel_on_exit: bool = typer.Option(
        False, "--cancel-on-exit", help="With --connect: cancel the job on Ctrl-C (or a closed terminal)."
    ),
    as_json: bool = typer.Option(
        False,
        "--json",
        help='Print JSON: {"site", "job_id", "script"}; with --dry-run {"site", "script", "job_dir"}; '
        'with --connect one object per line per event ("submitted", "ready", "ended").',
    ),
) -> None:
    """Submit a batch job that starts JupyterLab on a compute node.

    Values come from the site profile, then your config.toml, then these flags.

    Example: hpcjupyter submit --site archer2 --hours 1:30 --account e123 --dry-run
    """
    from hpcjupyter.render import job_dir, render
    from hpcjupyter.request import build_request

    if not connect_after:
        given = [
            flag
            for flag, value in (
                ("--no-browser", no_browser),
                ("--local-port", local_port is not None),
                ("--timeout", timeout is not None),
                ("--cancel-on-exit", cancel_on_exit),
            )
            if value
        ]
        if given:
            from hpcjupyter.errors import HpcJupyterError

            raise HpcJupyterError(
                f"{', '.join(given)} only {'applies' if len(given) == 1 else 'apply'} with --connect.",
                "Add --connect to go straight on to connecting, or leave "
                + ("it" if len(given) == 1 else "them")
                + " out (give "
                + ("it" if len(given) == 1 else "them")
                + " to 'hpcjupyter connect' later).",
            )
    site = default_site(site)
    flags = request_flags(locals())
    loaded = profiles().load(site)  # once: discovery, validation and its warnings
    profile = loaded[0]
    request = build_request(profile, flags)
    ui = make_ui(ctx)
    if dry_run:
        user = _dry_run_user(profile, ui)
        script = render(profile, request, user)
        if as_json:
            print_json({"site": site, "script": script, "job_dir": job_dir(profile, request, user)})
        else:
            typer.echo(script, nl=False)
        return
    from hpcjupyter.submitting import submit as submit_job

    options = _connect_options(local_port, timeout, cancel_on_exit) if connect_after else None
    site_obj = open_site_for(site, ui, loaded)
    session = submit_job(site_obj, request)
    if as_json:
        from hpcjupyter import protocol

        data = {"site": site, "job_id": session.job_id, "script": protocol.path(session.job_dir, protocol.SCRIPT)}
        if options is None:
            print_json(data)
        else:
            _emit("submitted", **data)
    else:
        ui.info(f"submitted job {session.job_id} to {site} (job directory {session.job_dir})")
    if options is None:
        if not as_json:
            typer.echo(session.job_id)
            ui.info(f"next: hpcjupyter connect {session.job_id}")
        return
    raise typer.Exit(_connect(site_obj, session, ui, options, not no_browser, as_json))


PLACEHOLDER_USER = "CLUSTER_USER"
"""What --dry-run shows for {user} when the profile has no ssh.user (a real submit asks the cluster)."""


def _dry_run_user(profile: Any, ui: UI) -> str | None:
    """The user name a dry run puts in remote paths: ssh.user, or a clear placeholder; says which."""
    if profile.scheduler == "local" or profile.ssh.transport == "local":
        return None
    if "{user}" not in " ".join(filter(None, (profile.env.remote_dir, profile.env.conda, profile.env.venv))):
        return None
    if profile.ssh.user:
        ui.info(f"note: remote paths use your cluster user name from ssh.user ({profile.ssh.user}).")
        return None
    ui.info(
        f"note: remote paths show {PLACEHOLDER_USER} where your cluster user name goes; a real submit asks "
        f"the cluster (or set ssh.user: hpcjupyter config set sites.{profile.name}.ssh.user NAME)."
    )
    return PLACEHOLDER_USER


def _connect_options(local_port: int | None, timeout: float | None, cancel_on_exit: bool) -> ConnectOptions:
    """A --local-port that cannot work is refused before anything is submitted or waited for."""
    from hpcjupyter.connecting import ConnectOptions

    if local_port is not None:
        from hpcjupyter.errors import HpcJupyterError
        from hpcjupyter.tunnel import check_local_port

        if not 1 <= local_port <= 65535:
            raise HpcJupyterError(
                f"--local-port {local_port} is not a port number: ports go from 1 to 65535.",
                "Choose a port between 1024 and 65535, or leave --local-port out to get a free one.",
            )
        check_local_port(local_port)
    return ConnectOptions(local_port=local_port, timeout=timeout, cancel_on_exit=cancel_on_exit)


def _notify(ui: UI, title: str, text: str) -> None:
    """A bell on the terminal and, where the laptop has one, a desktop notification (never fails)."""
    import shutil
    import subprocess

    if ui.quiet or not profiles().config.notify:
        return
    if sys.stderr.isatty():
        print("\a", end="", file=sys.stderr, flush=True)
    if sys.platform == "darwin" and shutil.which("osascript"):
        argv = ["osascript", "-e", f"display notification {json.dumps(text)} with title {json.dumps(title)}"]
    elif shutil.which("notify-send"):
        argv = ["notify-send", title, text]
    else:
        return
    try:
        subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        pass


NOTIFY_AFTER = 10.0
"""Seconds of waiting after which a job is called queued: its start rings the bell and notifies."""


def _connect(
    site: Site, session: Session, ui: UI, options: ConnectOptions, open_browser: bool, as_json: bool = False
) -> int:
    """Run the connect use case and print what happens; the exit code says how it ended."""
    from hpcjupyter.connecting import Ending, connect
    from hpcjupyter.errors import HpcJupyterError

    started = time.monotonic()
    job = session.job_id

    def ready(found: Ready) -> None:
        if as_json:
            _emit("ready", site=site.name, job_id=job, url=found.url, node=found.node)
        else:
            typer.echo(found.url)
        ui.info(
            f"Jupyter on {found.node} is at {found.shown} "
            "(the URL above carries the token; it is not stored on this machine)"
        )
        if time.monotonic() - started >= NOTIFY_AFTER:
            _notify(ui, "hpcjupyter", f"job {job} on {site.name} started: Jupyter is ready")
        if open_browser:
            _open_browser(found.url, ui)

    try:
        with _signals_interrupt():
            finished = connect(site, session, ui, options, ready)
    except HpcJupyterError as exc:
        if as_json:
            _emit("ended", site=site.name, job_id=job, how="error", message=exc.message)
        raise
    except KeyboardInterrupt:
        # Interrupted before the login finished (or while cancelling): say where things stand.
        ui.stop_status()
        ui.info(
            f"interrupted; job {job} on {site.name} was left as it is.\n"
            f"  reconnect: hpcjupyter connect {job}\n  stop it:   hpcjupyter cancel {job}"
        )
        if as_json:
            _emit("ended", site=site.name, job_id=job, how="interrupted")
        return 130
    if finished.ending is Ending.DETACHED:
        ui.info(
            f"disconnected; job {job} keeps running.\n"
            f"  reconnect: hpcjupyter connect {job}\n  stop it:   hpcjupyter cancel {job}"
        )
        how = "detached"
    elif finished.ending is Ending.CANCELLED:
        ui.info(f"disconnected and cancelled job {job} on {site.name} (--cancel-on-exit)")
        how = "cancelled"
    else:
        from hpcjupyter.wait import end_reason

        ui.info(f"job {job} ended: {end_reason(finished.status)}" if finished.status else f"job {job} ended")
        how = "job_ended"
    if as_json:
        _emit("ended", site=site.name, job_id=job, how=how)
    return 0


def _open_browser(url: str, ui: UI) -> None:
    """Open the URL; where no browser can be opened (no display, headless), say so."""
    import webbrowser

    try:
        opened = webbrowser.open(url)
    except Exception:  # webbrowser raises assorted errors on odd systems
        opened = False
    if not opened:
        ui.warn("could not open a web browser here (no display?); open the URL printed above yourself.")


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


def _find(job_id: str | None, site: str | None, ui: UI) -> tuple[Session, Site]:
    """The job's record and site; no job id means the newest running session (said on stderr)."""
    from hpcjupyter.jobs import find_session, newest_session

    if job_id is None:
        newest = newest_session(site)
        ui.info(f"using job {newest.job_id} on {newest.site} (your newest running session)")
        return newest, _opener(ui)(newest.site)
    return find_session(job_id, site, _opener(ui))


@app.command()
@common_options
def connect(
    ctx: typer.Context,
    job_id: str | None = _job_arg("Job id printed by 'submit' (see 'hpcjupyter ls')."),
    site: str | None = _site_opt("Site of a job this machine has no record of."),
    local_port: int | None = typer.Option(None, "--local-port", help="Local port for the tunnel (default: free one)."),
    timeout: float | None = typer.Option(
        None, "--timeout", help="Give up waiting after SECONDS (default: wait while queued)."
    ),
    no_browser: bool = typer.Option(False, "--no-browser", help="Print the URL, open no browser."),
    cancel_on_exit: bool = typer.Option(
        False, "--cancel-on-exit", help="Cancel the job on Ctrl-C (or when the terminal closes)."
    ),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line per event (ready, ended)."),
) -> None:
    """Wait for a job, tunnel to its Jupyter and open the browser; Ctrl-C leaves the job running.

    Example: hpcjupyter connect 123456
    """
    ui = make_ui(ctx)
    options = _connect_options(local_port, timeout, cancel_on_exit)
    session, site_obj = _find(job_id, site, ui)
    raise typer.Exit(_connect(site_obj, session, ui, options, not no_browser, as_json))


@app.command()
@common_options
def cancel(
    ctx: typer.Context,
    job_id: str | None = _job_arg("Job id to cancel."),
    site: str | None = _site_opt("Site of a job this machine has no record of."),
) -> None:
    """Cancel a job (Jupyter is shut down cleanly). Cancelling an ended job changes nothing.

    Example: hpcjupyter cancel 123456
    """
    from hpcjupyter.jobs import cancel_job
    from hpcjupyter.wait import end_reason

    ui = make_ui(ctx)
    session, site_obj = _find(job_id, site, ui)
    job_id = session.job_id
    done = cancel_job(site_obj, session)
    if done.already is not None:
        ui.info(f"job {job_id} on {site_obj.name} had already ended ({end_reason(done.already)}); nothing to cancel")
    else:
        ui.info(f"cancelled job {job_id} on {site_obj.name}")


@app.command()
@common_options
def logs(
    ctx: typer.Context,
    job_id: str | None = _job_arg("Job id whose log to show."),
    site: str | None = _site_opt("Site of a job this machine has no record of."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines until the job ends."),
) -> None:
    """Print the job's log (the one the job script writes on the cluster).

    Example: hpcjupyter logs 123456 --follow
    """
    from hpcjupyter.joblog import show_log

    ui = make_ui(ctx)
    session, site_obj = _find(job_id, site, ui)
    show_log(site_obj, session, follow, typer.echo)


@app.command()
@common_options
def status(
    ctx: typer.Context,
    job_id: str | None = _job_arg("Job id (any job of yours, also one submitted without hpcjupyter)."),
    site: str | None = _site_opt("Site the job runs on (default: the recorded one)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Show a job's state, how it ended, reason, node, time used/limit and estimated start.

    Example: hpcjupyter status 123456 --json
    """
    from hpcjupyter.jobs import newest_session
    from hpcjupyter.jobs import status as job_status

    ui = make_ui(ctx)
    if job_id is None:
        newest = newest_session(site)
        ui.info(f"using job {newest.job_id} on {newest.site} (your newest running session)")
        job_id, site = newest.job_id or "", newest.site
    found, site_obj = job_status(job_id, site, _opener(ui))
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
@common_options
def list_sessions(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
    show_all: bool = typer.Option(False, "--all", "-a", help="Include sessions that ended more than a day ago."),
    prune: bool = typer.Option(False, "--prune", help="Forget every ended or failed session (after showing them)."),
) -> None:
    """List your sessions with their live state: one scheduler query per site.

    DETAIL shows the URL while a connection is up, else the time left or why it ended.

    Example: hpcjupyter ls --prune
    """
    from hpcjupyter.listing import prune_ended, refresh, rows

    ui = make_ui(ctx)
    current = refresh(show_all or prune, _opener(ui), ui)
    gone = prune_ended() if prune else []
    if as_json:
        print_json([vars(s) for s in current])
    elif not current:
        ui.info("no sessions; start one with: hpcjupyter submit --site NAME")
    else:
        for line in rows(current):
            typer.echo(line)
    if prune:
        ui.info(
            f"forgot {len(gone)} ended session{'s' if len(gone) != 1 else ''}"
            + (": " if gone else "")
            + ", ".join(s.job_id or s.session_id for s in gone)
        )


@app.command()
@common_options
def forget(
    ctx: typer.Context,
    job_id: str = typer.Argument(..., metavar="JOB_ID", help="Job id to forget.", autocompletion=complete_job),
    site: str | None = _site_opt("Site of the job, when the id is recorded on several."),
    force: bool = typer.Option(False, "--force", help="Forget it even if it may still run (the job is left alone)."),
) -> None:
    """Remove a session's record from this machine; the job on the cluster is not touched.

    Example: hpcjupyter forget 123456
    """
    from hpcjupyter.jobs import forget_session

    gone = forget_session(job_id, site, force)
    make_ui(ctx).info(f"forgot job {job_id} on {gone.site}")


@app.command()
@common_options
def url(
    ctx: typer.Context,
    job_id: str | None = _job_arg("Job id whose URL to print."),
    site: str | None = _site_opt("Site of a job this machine has no record of."),
) -> None:
    """Print the URL (with its token) of a connected session again; the token is read from the job's
    0600 connection file on the cluster, never stored here.

    Example: hpcjupyter url 123456
    """
    from hpcjupyter.jobs import job_url

    ui = make_ui(ctx)
    session, site_obj = _find(job_id, site, ui)
    found = job_url(site_obj, session)
    if not found.connected:
        ui.warn(
            f"no tunnel to job {session.job_id} is known to be open: run 'hpcjupyter connect {session.job_id}' "
            "first, or the URL below will not answer."
        )
    typer.echo(found.url)


@app.command()
@common_options
def clean(
    ctx: typer.Context,
    site: str | None = _site_opt("Site whose job directories to clean (default: your default site)."),
    older_than: str = typer.Option("30d", "--older-than", help="Age of directories to remove: 30d, 12h, 2w."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only list what would be removed."),
) -> None:
    """Remove old job directories (logs, scripts) under the site's remote_dir on the cluster; the
    directories of sessions that may still run are kept.

    Example: hpcjupyter clean --site archer2 --older-than 30d --dry-run
    """
    from hpcjupyter.cleaning import clean_job_dirs, parse_age

    ui = make_ui(ctx)
    seconds = parse_age(older_than)
    site_obj = open_site_for(default_site(site), ui)
    found = clean_job_dirs(site_obj, seconds, dry_run)
    for path in found:
        typer.echo(path)
    verb = "would remove" if dry_run else "removed"
    what = f"{len(found)} job director{'ies' if len(found) != 1 else 'y'}"
    ui.info(f"{verb} {what} older than {older_than} on {site_obj.name}")


config_app = typer.Typer(
    cls=Commands, help="Read and change your config.toml (comments and layout are kept).", no_args_is_help=True
)
app.add_typer(config_app, name="config")


@config_app.command("get")
@common_options
def config_get(key: str | None = typer.Argument(None, help="Dotted key, e.g. sites.cirrus.job.account.")) -> None:
    """Print one value of your config (or the whole file).

    Example: hpcjupyter config get sites.cirrus.job.account
    """
    from hpcjupyter.config_edit import get_value

    typer.echo(get_value(key))


@config_app.command("set")
@common_options
def config_set(
    key: str = typer.Argument(..., help="Dotted key, e.g. sites.cirrus.job.account or default_site."),
    value: str = typer.Argument(..., help='The value: TOML (8, true, ["a"]) or plain text.'),
) -> None:
    """Set a value in your config, checked like a profile before it is written.

    Example: hpcjupyter config set sites.cirrus.job.account t01
    """
    from hpcjupyter.config_edit import set_value

    path = set_value(key, value)
    typer.echo(f"set {key} in {path}", err=True)


@config_app.command("unset")
@common_options
def config_unset(key: str = typer.Argument(..., help="Dotted key to remove.")) -> None:
    """Remove a value from your config.

    Example: hpcjupyter config unset sites.cirrus.job.account
    """
    from hpcjupyter.config_edit import unset_value

    path = unset_value(key)
    typer.echo(f"removed {key} from {path}", err=True)


@config_app.command("edit")
@common_options
def config_edit() -> None:
    """Open your config in $VISUAL or $EDITOR, then check it.

    Example: hpcjupyter config edit
    """
    from hpcjupyter.config_edit import edit

    path = edit()
    typer.echo(f"{path} is valid", err=True)


def main() -> None:
    """Entry point of the ``hpcjupyter`` command."""
    try:
        app(prog_name="hpcjupyter")
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
