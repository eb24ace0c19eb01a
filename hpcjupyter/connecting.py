"""connect: wait for the job, find Jupyter, open the tunnel, keep it up until the job ends.

The waiting loop asks the scheduler rarely (wait.poll_interval) and, once the job runs, reads
the job's log about once a second over the existing login: cheap for the site, quick for us.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, replace
from typing import Any

from hpcjupyter import sessions
from hpcjupyter.discover import Endpoint, fatal_error, parse_connection_file, parse_jupyter_log, parse_marker, tail
from hpcjupyter.errors import HpcJupyterError, JobEndedError, LoginRefusedError, RemoteError
from hpcjupyter.probe import api_status, browser_url
from hpcjupyter.schedulers.base import JobState, JobStatus
from hpcjupyter.site import Site
from hpcjupyter.ui import UI
from hpcjupyter.wait import describe, end_reason, poll_interval

# Lines the job script writes when it gives up before Jupyter is reachable.
_SCRIPT_ENDED = re.compile(r"^hpcjupyter: (jupyter exited with status \d+ before it was ready|job script ended with status [1-9]\d*)", re.MULTILINE)
MAX_STATUS_FAILURES = 20
RUNNING_TIMEOUT = 300.0
PEEK_QUEUED = 2.0  # seconds between looks at the job directory while the scheduler says queued
PEEK_RUNNING = 0.25  # ... and once it runs: Jupyter is about to be ready
_SEPARATOR = "--- hpcjupyter: job log follows ---"
PRIVATE_MODE = "-rw-------"
# $1 job dir, $2 separator. `ls` first: on NFS it refreshes the directory's attribute cache.
# Prints connection.json's mode (as `ls -l` shows it: portable), its text, the separator, the log's end.
_PEEK_SH = ('ls "$1" >/dev/null 2>&1; m=$(ls -ln "$1/connection.json" 2>/dev/null | cut -c1-10); echo "$m"; '
            'cat "$1/connection.json" 2>/dev/null; printf "\\n%s\\n" "$2"; tail -c 16384 "$1/job.log" 2>/dev/null')


@dataclass
class Connection:
    """A reachable Jupyter: where it listens on the node and the token that opens it."""

    endpoint: Endpoint
    token: str


def log_path(session: sessions.Session) -> str:
    return f"{session.job_dir}/job.log"


def job_ended(site: Site, session: sessions.Session, why: str, hint: str = "", log: str = "") -> JobEndedError:
    """The error for a job that ended before (or while) we used it, with its log's tail
    (``log`` when the caller has just read it, else it is fetched)."""
    log = log or read_quietly(site, log_path(session))
    if not log:
        log = read_quietly(site, f"{session.job_dir}/{site.scheduler.name}.out") or "(the job wrote no log)"
    fatal = fatal_error(log)
    return JobEndedError(
        f"job {session.job_id} on {site.name} ended: {why}.{' Jupyter said: ' + fatal if fatal else ''}\n"
        f"Last lines of {log_path(session)}:\n{tail(log)}",
        hint or "Fix what the log shows (e.g. the conda env or module names in the profile), then submit again.",
    )


def read_quietly(site: Site, path: str) -> str:
    try:
        return site.remote.read_file(path) or ""
    except HpcJupyterError:
        return ""


class Waiter:
    """Polls one job until Jupyter is ready, with bounded retries on a flaky login."""

    def __init__(self, site: Site, session: sessions.Session, ui: UI, timeout: float | None) -> None:
        self.site, self.session, self.ui = site, session, ui
        self.timeout = timeout
        self.queries = 0
        self.failures = 0

    def query(self) -> JobStatus:
        """One scheduler query; UNKNOWN on any failure, never 'ended'."""
        job_id = self.session.job_id or ""
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
                    f"the scheduler on {self.site.name} did not answer about job {job_id} {self.failures} times in a row.",
                    f"The job may still be running: try 'hpcjupyter connect {job_id}' again later.",
                )
            return status or JobStatus(job_id=job_id, state=JobState.UNKNOWN, reason="status query failed")
        self.failures = 0
        sessions.record_status(self.session, status)
        return status

    def reconnect(self) -> None:
        """Re-open the login if it dropped (one prompt on MFA sites); keep waiting if it cannot."""
        try:
            self.site.prompts += self.site.remote.connect()
        except LoginRefusedError:
            raise
        except RemoteError as exc:
            self.ui.warn(f"{exc.message} Will retry.")

    def peek(self) -> tuple[str, str, str]:
        """One round trip over the open login: connection.json's mode and text, and the log's end."""
        result = self.site.run(["sh", "-c", _PEEK_SH, "hpcjupyter-peek", self.session.job_dir, _SEPARATOR])
        head, _, log = result.stdout.partition(f"\n{_SEPARATOR}\n")
        mode, _, text = head.partition("\n")
        return mode.strip(), text, log

    def ready(self) -> Connection | None:
        """The 0600 connection file (host, port, token) once the job wrote it; an early end in the log
        is an error at once; Jupyter's own log lines are the fallback when there is no file."""
        try:
            mode, text, log = self.peek()
        except RemoteError:
            self.reconnect()
            return None
        path = f"{self.session.job_dir}/connection.json"
        if text.strip() and not mode:
            return None  # the file appeared between the two looks of one peek: look again
        if text.strip():
            if mode != PRIVATE_MODE:
                raise HpcJupyterError(
                    f"{path} has mode {mode or 'unknown'}, not {PRIVATE_MODE}: others may have read the Jupyter token.",
                    f"Cancel the job ('hpcjupyter cancel {self.session.job_id}') and check the job directory.",
                )
            found = parse_connection_file(text, path)
            marker = parse_marker(log)
            return Connection(endpoint=replace(found, node=found.node or (marker.node if marker else "")),
                              token=found.token or "")
        ended = _SCRIPT_ENDED.search(log)
        if ended:
            raise job_ended(self.site, self.session, ended.group(1), log=log)
        fallback = parse_jupyter_log(log)
        return Connection(endpoint=fallback, token=fallback.token) if fallback and fallback.token else None

    def wait(self) -> Connection:
        """Scheduler queries at the site's pace; the job directory peeked at often (a file read,
        not a scheduler query), so a job that starts between two queries is noticed at once."""
        start = time.monotonic()
        next_query = next_peek = start
        running_since: float | None = None
        status = JobStatus(job_id=self.session.job_id or "", state=JobState.UNKNOWN)
        while True:
            now = time.monotonic()
            if self.timeout is not None and now - start > self.timeout:
                raise HpcJupyterError(
                    f"gave up after {self.timeout:g} s waiting for job {self.session.job_id} ({status.state.name.lower()}).",
                    f"The job is left as it is: 'hpcjupyter connect {self.session.job_id}' to wait again, "
                    f"'hpcjupyter cancel {self.session.job_id}' to stop it.",
                )
            if now >= next_query:
                status = self.query()
                next_query = now + poll_interval(self.queries, self.site.profile.env.poll_seconds)
                if status.state is JobState.ENDED:
                    raise job_ended(self.site, self.session, end_reason(status))
                self.ui.status(describe(status, now - start))
            if status.state is JobState.RUNNING:
                running_since = running_since or now
            if now >= next_peek:
                connection = self.ready()
                if connection is not None:
                    return connection
                next_peek = now + (PEEK_RUNNING if running_since else PEEK_QUEUED)
            if running_since and now - running_since > RUNNING_TIMEOUT:
                log = read_quietly(self.site, log_path(self.session))
                raise HpcJupyterError(
                    f"job {self.session.job_id} has run {RUNNING_TIMEOUT:g} s without Jupyter becoming ready.\n"
                    f"Last lines of {log_path(self.session)}:\n{tail(log) or '(empty)'}",
                    f"The job is still running: 'hpcjupyter logs {self.session.job_id}' to look, "
                    f"'hpcjupyter cancel {self.session.job_id}' to stop it.",
                )
            time.sleep(max(0.05, min(next_query, next_peek) - time.monotonic()))


def local_url_for(site: Site, connection: Connection, local_port: int) -> str:
    return browser_url(local_port, connection.endpoint.base_url, connection.token, site.profile.env.jupyter)


def open_tunnel_for(site: Site, connection: Connection, local_port: int | None, strict: bool = False) -> Any:
    """The tunnel of the site's shape, or None where Jupyter is on this machine already.
    ``strict``: the user named ``local_port``; if it is taken, that is an error, not another port."""
    if site.is_local:
        return None
    from hpcjupyter.tunnel import free_local_port

    port = free_local_port(local_port, strict)
    endpoint = connection.endpoint
    target = endpoint.node if site.profile.ssh.tunnel == "jump" else endpoint.host
    return site.remote.open_tunnel(site.profile.ssh.tunnel, target, endpoint.port, port)


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
    from hpcjupyter.wait import duration

    return f", {duration(limit - used)} left"


def keep_alive(waiter: Waiter, connection: Connection, tunnel: Any, port: int, shown_url: str) -> JobStatus:
    """Stay in the foreground: re-open a dropped tunnel, watch the job, return when it ends."""
    site, ui = waiter.site, waiter.ui
    poll = site.profile.env.poll_seconds
    next_query = time.monotonic() + poll
    backoff, misses = 1.0, 0
    while True:
        time.sleep(2.0)
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
                time.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
        if time.monotonic() >= next_query:
            status = waiter.query()
            next_query = time.monotonic() + poll
            if status.state is JobState.ENDED:
                return status
            ui.status(f"connected: {shown_url} -> {connection.endpoint.node or connection.endpoint.host}{time_left(status)}"
                      " (Ctrl-C to disconnect)")
