"""The connect use case: wait for the job, find Jupyter, open the tunnel, keep it up until the job
ends (or the user leaves). It reports through the UI and a ``ready`` callback and returns how it
ended; the CLI only prints.

The waiting loop asks the scheduler rarely (never sooner than the site's ``poll_seconds`` after
the previous query) and, in between, runs one command on the login node that returns the moment
Jupyter is ready (or the job gives up): a few file looks there, no scheduler query, and the client
knows within a fraction of a second.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

from hpcjupyter import protocol, sessions
from hpcjupyter.discover import Endpoint, fatal_error, parse_connection_file, parse_jupyter_log, parse_marker, tail
from hpcjupyter.errors import HpcJupyterError, JobEndedError, LoginRefusedError, RemoteError
from hpcjupyter.probe import api_status, browser_url
from hpcjupyter.schedulers.base import JobState, JobStatus, Outcome
from hpcjupyter.site import Site
from hpcjupyter.tunnel import Tunnel, free_local_port
from hpcjupyter.ui import UI
from hpcjupyter.wait import describe, duration, end_reason

MAX_STATUS_FAILURES = 20
WATCH_MAX = 30.0
"""Longest one watch command waits on the login node: progress and a dropped login show by then."""
RETRY_AFTER = 2.0
"""Seconds before looking again when the login failed (it is being re-opened meanwhile)."""
PROBE_EVERY = 2.0  # seconds between health probes while connected


class Clock(Protocol):
    """Time as the loops see it (the `time` module; a fake one in tests)."""

    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


@dataclass(frozen=True)
class ConnectOptions:
    """What the user asked of connect. ``local_port`` named by the user is strict: taken is an error."""

    local_port: int | None = None
    timeout: float | None = None
    cancel_on_exit: bool = False


@dataclass(frozen=True)
class Connection:
    """A reachable Jupyter: where it listens on the node and the token that opens it."""

    endpoint: Endpoint
    token: str


@dataclass(frozen=True)
class Ready:
    """Jupyter answers through the tunnel: what the user opens."""

    url: str
    """With the token: printed once, never stored."""
    shown: str
    """Without the token: for messages and records."""
    node: str


class Ending(enum.Enum):
    """How a connect session ended (when it did not fail)."""

    JOB_ENDED = "the job ended cleanly"
    DETACHED = "the user left; the job keeps running"
    CANCELLED = "the user left and the job was cancelled"


@dataclass(frozen=True)
class Finished:
    ending: Ending
    status: JobStatus | None = None


class NeverStarts(HpcJupyterError):
    """The scheduler says the job can never start as asked; it would wait in the queue forever."""

    def __init__(self, message: str, fix: str, job_id: str) -> None:
        super().__init__(message, f"To fix: {fix}. The job is still queued: 'hpcjupyter cancel {job_id}' removes it.")
        self.fix = fix

    def cancelled(self) -> HpcJupyterError:
        """The same failure once --cancel-on-exit has removed the job."""
        return HpcJupyterError(self.message, f"To fix: {self.fix}. The job was cancelled (--cancel-on-exit).")


def job_ended(
    site: Site, session: sessions.Session, status: JobStatus | None = None, why: str = "", log: str = ""
) -> JobEndedError:
    """The error for a job that ended before (or while) we used it: how, and the log's tail
    (``log`` when the caller has just read it, else it is fetched). A cancelled job needs no log."""
    why = why or (end_reason(status) if status is not None else "it is no longer running")
    again = f"Start a new session with 'hpcjupyter submit --site {site.name}'"
    outcome = status.outcome if status is not None else None
    if outcome is Outcome.CANCELLED:
        return JobEndedError(f"job {session.job_id} on {site.name} was cancelled: {why}.", again + ".")
    log = log or read_quietly(site, protocol.path(session.job_dir, protocol.LOG))
    if not log and session.job_id:
        log = read_quietly(site, site.scheduler.output_path(session.job_dir, session.job_id))
    fatal = fatal_error(log)
    hint = (
        again + " with more --hours."
        if outcome is Outcome.TIMED_OUT
        else "Fix what the log shows (e.g. the conda env or module names in the profile), then submit again."
    )
    return JobEndedError(
        f"job {session.job_id} on {site.name} ended: {why}.{' Jupyter said: ' + fatal if fatal else ''}\n"
        f"Last lines of its log:\n{tail(log) or '(the job wrote no log)'}",
        hint,
    )


def read_quietly(site: Site, path: str) -> str:
    try:
        return site.read_file(path) or ""
    except HpcJupyterError:
        return ""


class Waiter:
    """Polls one job until Jupyter is ready, with bounded retries on a flaky login."""

    def __init__(
        self, site: Site, session: sessions.Session, ui: UI, timeout: float | None, clock: Clock = time
    ) -> None:
        self.site, self.session, self.ui = site, session, ui
        self.timeout = timeout
        self.clock = clock
        self.queries = 0
        self.failures = 0
        self.last_query = -float("inf")

    def query(self) -> JobStatus:
        """One scheduler query; UNKNOWN on any failure, never 'ended'."""
        job_id = self.session.job_id or ""
        self.last_query = self.clock.monotonic()
        try:
            status = self.site.status([job_id]).get(job_id)
        except RemoteError as exc:
            self.ui.warn(f"{exc.message} Retrying.")
            self.reconnect()
            status = None
        self.queries += 1
        if status is None or status.state is JobState.UNKNOWN:
            self.failures += 1
            if self.failures >= MAX_STATUS_FAILURES:
                raise HpcJupyterError(
                    f"the scheduler on {self.site.name} did not answer about job {job_id} "
                    f"{self.failures} times in a row.",
                    f"The job may still be running: try 'hpcjupyter connect {job_id}' again later.",
                )
            return status or JobStatus(job_id=job_id, state=JobState.UNKNOWN, reason="status query failed")
        self.failures = 0
        sessions.record_status(self.session, status)
        return status

    def reconnect(self) -> None:
        """Re-open the login if it dropped (one prompt on MFA sites); keep waiting if it cannot."""
        try:
            self.site.relogin()
        except LoginRefusedError:
            raise
        except RemoteError as exc:
            self.ui.warn(f"{exc.message} Will retry.")

    def ready(self, seconds: float = 0.0) -> Connection | None:
        """Wait up to ``seconds`` on the login node for the 0600 connection file (host, port, token);
        an early end in the log is an error at once; Jupyter's own log lines are the fallback
        when there is no file. One remote command, which returns as soon as there is news."""
        try:
            result = self.site.run(protocol.watch_argv(self.session.job_dir, seconds), timeout=seconds + 60)
        except RemoteError:
            self.reconnect()
            self.clock.sleep(RETRY_AFTER)
            return None
        mode, text, log = protocol.parse_peek(result.stdout)
        path = protocol.path(self.session.job_dir, protocol.CONNECTION)
        if text.strip() and not mode:
            return None  # the file appeared between the two looks of one watch: look again
        if text.strip():
            if mode != protocol.PRIVATE_MODE:
                raise HpcJupyterError(
                    f"{path} has mode {mode or 'unknown'}, not {protocol.PRIVATE_MODE}: others may have read the "
                    "Jupyter token.",
                    f"Cancel the job ('hpcjupyter cancel {self.session.job_id}') and check the job directory.",
                )
            found = parse_connection_file(text, path)
            marker = parse_marker(log)
            return Connection(
                endpoint=replace(found, node=found.node or (marker.node if marker else "")), token=found.token or ""
            )
        gave_up = protocol.GAVE_UP.search(log)
        if gave_up:
            stopped = self.how_stopped() if protocol.STOPPED in log else None
            raise job_ended(self.site, self.session, stopped, why="" if stopped else gave_up.group(1), log=log)
        fallback = parse_jupyter_log(log)
        return Connection(endpoint=fallback, token=fallback.token) if fallback and fallback.token else None

    def wait(self) -> Connection:
        """Scheduler queries no closer than the site's ``poll_seconds``; between them the login
        node watches the job directory (file looks, not scheduler queries), so a job that starts
        between two queries is noticed at once."""
        clock = self.clock
        start = clock.monotonic()
        next_query = start
        running_since: float | None = None
        status = JobStatus(job_id=self.session.job_id or "", state=JobState.UNKNOWN)
        while True:
            now = clock.monotonic()
            if self.timeout is not None and now - start > self.timeout:
                raise HpcJupyterError(
                    f"gave up after {self.timeout:g} s waiting for job {self.session.job_id} "
                    f"({status.state.name.lower()}).",
                    f"The job is left as it is: 'hpcjupyter connect {self.session.job_id}' to wait again, "
                    f"'hpcjupyter cancel {self.session.job_id}' to stop it.",
                )
            if now >= next_query:
                status = self.query()
                next_query = now + self.site.profile.env.poll_seconds
                self.check_can_start(status)
                if status.state is JobState.ENDED:
                    raise job_ended(self.site, self.session, status)
                self.ui.status(describe(status, now - start))
            if status.state is JobState.RUNNING:
                running_since = running_since or now
            limit = self.site.profile.env.start_timeout  # the job stays when connect gives up
            if running_since and now - running_since > limit:
                log = read_quietly(self.site, protocol.path(self.session.job_dir, protocol.LOG))
                raise HpcJupyterError(
                    f"job {self.session.job_id} has run {limit:g} s without Jupyter becoming ready.\n"
                    f"Last lines of its log:\n{tail(log) or '(empty)'}",
                    f"The job is still running: 'hpcjupyter logs {self.session.job_id}' to look, "
                    f"'hpcjupyter cancel {self.session.job_id}' to stop it.",
                )
            until = [next_query, now + WATCH_MAX]
            if self.timeout is not None:
                until.append(start + self.timeout)
            if running_since:
                until.append(running_since + limit)
            connection = self.ready(max(0.0, min(until) - now))
            if connection is not None:
                return connection

    def how_stopped(self) -> JobStatus | None:
        """The scheduler's word on a job whose script was stopped by a signal (cancelled, out of
        time, preempted: only the scheduler knows which). One query, no sooner than the site's
        ``poll_seconds`` after the previous one; None while the scheduler has not ended it yet."""
        wait = self.last_query + self.site.profile.env.poll_seconds - self.clock.monotonic()
        if wait > 0:
            self.ui.status(f"job {self.session.job_id} was stopped; asking the scheduler how (in {wait:.0f} s)")
            self.clock.sleep(wait)
        status = self.query()
        return status if status.state is JobState.ENDED else None

    def check_can_start(self, status: JobStatus) -> None:
        """Stop at once when the scheduler says the job can never start as asked."""
        fix = self.site.scheduler.why_never_starts(status)
        if fix is not None:
            raise NeverStarts(
                f"job {self.session.job_id} on {self.site.name} can never start as asked: {status.reason}.",
                fix,
                self.session.job_id or "",
            )


def open_tunnel_for(site: Site, connection: Connection, local_port: int | None, strict: bool = False) -> Tunnel | None:
    """The tunnel of the site's shape, or None where Jupyter is on this machine already.
    ``strict``: the user named ``local_port``; if it is taken, that is an error, not another port."""
    if site.is_local and not strict:
        return None  # Jupyter is on this machine already; a --local-port asked for gets a relay
    port = free_local_port(local_port, strict)
    endpoint = connection.endpoint
    target = endpoint.node if site.profile.ssh.tunnel == "jump" else endpoint.host
    return site.login().open_tunnel(site.profile.ssh.tunnel, target, endpoint.port, port)


def wait_until_answering(port: int, connection: Connection, seconds: float = 30.0) -> bool:
    """Readiness is /api/status answering 200 with the token, through the tunnel."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if api_status(port, connection.endpoint.base_url, connection.token) == 200:
            return True
        time.sleep(0.1)
    return False


def seconds_of(text: str) -> int | None:
    """Scheduler times 'D-HH:MM:SS', 'HH:MM:SS', 'MM:SS' → seconds (None if not a time)."""
    days, _, clock = text.rpartition("-") if "-" in text else ("", "", text)
    try:
        parts = [int(p) for p in clock.split(":")]
        total = int(days or 0) * 86400
    except ValueError:
        return None
    while len(parts) < 3:
        parts.insert(0, 0)
    return total + parts[-3] * 3600 + parts[-2] * 60 + parts[-1] if len(parts) == 3 else None


def time_left(status: JobStatus) -> str:
    limit, used = seconds_of(status.time_limit), seconds_of(status.time_used)
    if limit is None or used is None:
        return ""
    return f", {duration(limit - used)} left"


def keep_alive(waiter: Waiter, connection: Connection, tunnel: Tunnel | None, port: int, line: str) -> JobStatus:
    """Stay in the foreground: re-open a dropped tunnel, watch the job, return when it ends.
    ``line`` is the status line; the time left is added after each scheduler query."""
    site, ui, clock = waiter.site, waiter.ui, waiter.clock
    poll = site.profile.env.poll_seconds
    next_query = clock.monotonic() + poll
    backoff, misses = 1.0, 0
    while True:
        clock.sleep(PROBE_EVERY)
        answering = api_status(port, connection.endpoint.base_url, connection.token, timeout=5.0) == 200
        misses = 0 if answering else misses + 1
        # A busy Jupyter can miss one probe: re-open only a dead tunnel or after two misses in a row.
        if tunnel is not None and misses and (misses >= 2 or not tunnel.alive()):
            ui.warn("Jupyter is not answering through the tunnel; re-opening it.")
            try:
                tunnel.reopen()
                backoff, misses = 1.0, 0
            except RemoteError as exc:
                ui.warn(f"{exc.message} Retrying in {backoff:g} s.")
                waiter.reconnect()
                clock.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
        if clock.monotonic() >= next_query:
            status = waiter.query()
            next_query = clock.monotonic() + poll
            if status.state is JobState.ENDED:
                return status
            ui.status(line.format(left=time_left(status)))


def cancel(site: Site, session: sessions.Session) -> None:
    """Ask the scheduler to end the job (Jupyter is shut down by the script's TERM trap)."""
    result = site.run(site.scheduler.cancel_argv([session.job_id or ""]))
    if not site.scheduler.cancel_ok(result):
        raise HpcJupyterError(
            f"the scheduler refused to cancel job {session.job_id}: {(result.stderr or result.stdout).strip()}",
        )


def connect(
    site: Site, session: sessions.Session, ui: UI, options: ConnectOptions, ready: Callable[[Ready], None]
) -> Finished:
    """Wait, tunnel, report the URL through ``ready``, hold the tunnel until the job ends.

    Ctrl-C (and SIGTERM/SIGHUP, which the CLI turns into it) at any point after the login leaves
    the job running, or cancels it with ``options.cancel_on_exit``; a job that can never start is
    cancelled too with that option. A job that ends badly raises `JobEndedError` with its log.
    """
    site.login()  # a login that cannot work (no ssh, host key changed) fails at once, not retried
    waiter = Waiter(site, session, ui, options.timeout)
    try:
        status = _connected(site, session, ui, options, waiter, ready)
    except KeyboardInterrupt:
        ui.stop_status()
        if not options.cancel_on_exit:
            return Finished(Ending.DETACHED)
        cancel(site, session)
        return Finished(Ending.CANCELLED)
    except NeverStarts as never:
        if not options.cancel_on_exit:
            raise
        cancel(site, session)
        ui.info(f"cancelled job {session.job_id} on {site.name} (--cancel-on-exit)")
        raise never.cancelled() from None
    if status.outcome is Outcome.COMPLETED:
        return Finished(Ending.JOB_ENDED, status)
    raise job_ended(site, session, status)


def _connected(
    site: Site,
    session: sessions.Session,
    ui: UI,
    options: ConnectOptions,
    waiter: Waiter,
    ready: Callable[[Ready], None],
) -> JobStatus:
    """From waiting to the job's end; the tunnel and the record's URL are cleaned up however it ends."""
    connection = waiter.wait()
    ui.stop_status()
    strict = options.local_port is not None
    tunnel = open_tunnel_for(site, connection, options.local_port or session.local_port, strict=strict)
    port = tunnel.local_port if tunnel is not None else connection.endpoint.port
    node = connection.endpoint.node or connection.endpoint.host
    try:
        if not wait_until_answering(port, connection):
            raise HpcJupyterError(
                f"Jupyter on {node}:{connection.endpoint.port} does not answer through the tunnel on 127.0.0.1:{port}.",
                f"Check the job log with 'hpcjupyter logs {session.job_id}'; the job is left running.",
            )
        url = browser_url(port, connection.endpoint.base_url, connection.token, site.profile.env.jupyter)
        shown = url.split("?", 1)[0]
        with sessions.updating(session.site, session.session_id) as saved:
            saved.local_port, saved.url, saved.state = port, shown, sessions.SessionState.RUNNING
            saved.node = connection.endpoint.node or saved.node
        ready(Ready(url=url, shown=shown, node=node))
        leaving = "Ctrl-C to disconnect and cancel the job" if options.cancel_on_exit else "Ctrl-C to disconnect"
        return keep_alive(waiter, connection, tunnel, port, f"connected: {shown} -> {node}{{left}} ({leaving})")
    finally:
        if tunnel is not None:
            tunnel.close()
        with sessions.updating(session.site, session.session_id) as saved:
            saved.url = ""
