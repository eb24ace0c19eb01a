"""The job-side protocol: what the batch script leaves in its job directory, and how it is read.

One place for the names both sides share. The templates get them as values (``protocol`` in the
render context); the client reads the same names from here. The job directory holds:

- ``job.sh``: the rendered script; ``job.log``: the script's own log (PBS spools its stdout
  until the job ends, so the script writes one the login node can read while it runs);
- ``connection.json`` (0600): host, port and token, written atomically once Jupyter listens and
  removed when it stops; the token never appears anywhere else;
- in the log: one ``HPCJUPYTER_READY host=... port=...`` marker line (no token) for humans and
  the fallback reader, and ``hpcjupyter: ...`` lines saying why the script gave up.
"""

from __future__ import annotations

import re

SCRIPT = "job.sh"
LOG = "job.log"
CONNECTION = "connection.json"
RUNTIME = "runtime"
"""Jupyter's runtime directory inside the job directory (``JUPYTER_RUNTIME_DIR``)."""
MARKER = "HPCJUPYTER_READY"
JOB_NAME_PREFIX = "hpcj-"
"""Every job is named ``hpcj-<session id>``, and the session id names the job directory: the name
alone finds a job whose submit was interrupted, or one submitted from another machine."""
SAY = "hpcjupyter: "
"""Prefix of the script's own log lines."""
ENDED = "job script ended with status"
STOPPED = "stop requested, shutting Jupyter down"
"""Logged when the script gets SIGTERM (scancel, qdel, walltime, preemption)."""
NOT_READY = "jupyter exited with status {status} before it was ready"
PRIVATE_MODE = "-rw-------"
"""The only mode ``connection.json`` may have (as ``ls -l`` shows it): anything else leaks the token."""


def _gave_up(digit: str) -> str:
    """The lines the script writes when it ends before Jupyter is reachable, as a regular
    expression over ``digit`` (Python's and POSIX grep's spell digits differently)."""
    return f"^{SAY}({NOT_READY.format(status=digit + '+')}|{ENDED} [1-9]{digit}*)"


GAVE_UP = re.compile(_gave_up(r"\d"), re.MULTILINE)
"""A line the script writes when it ends before Jupyter is reachable."""

PEEK_SEPARATOR = "--- hpcjupyter: job log follows ---"
WATCH_TICK = 0.02
"""Seconds between two looks of the watch loop on the login node once the job script runs (a
stat, not a scheduler query): Jupyter is then seconds from ready, and every look it lags is felt
(a look is two short processes; the few seconds Jupyter takes to start cost ~100 of them a second)."""
WATCH_IDLE_TICKS = 25
"""While the script has not started (no log yet) the loop looks every 25 ticks (0.5 s): a queued
job can wait for hours, and Jupyter needs seconds after the script starts anyway."""
_WATCH_SH = (
    'd=$1; i=0; while [ "$i" -lt "$5" ]; do '
    'ls "$d" >/dev/null 2>&1; [ -s "$d/$2" ] && break; '
    f'if [ -e "$d/$3" ]; then n=1; t={WATCH_TICK}; else n={WATCH_IDLE_TICKS}; t={WATCH_TICK * WATCH_IDLE_TICKS}; fi; '
    f'if [ "$n" = 1 ] && [ $((i % {WATCH_IDLE_TICKS})) = 0 ]; then '
    'tail -c 16384 "$d/$3" 2>/dev/null | grep -Eq "$6" && break; fi; '
    'sleep "$t" 2>/dev/null || sleep 1; i=$((i + n)); done; '
    'm=$(ls -ln "$d/$2" 2>/dev/null | cut -c1-10); echo "$m"; '
    'cat "$d/$2" 2>/dev/null; printf "\\n%s\\n" "$4"; tail -c 16384 "$d/$3" 2>/dev/null'
)
"""$1 job dir, $2 connection file, $3 log, $4 separator, $5 ticks at most, $6 the gave-up lines.
Waits on the login node until the connection file appears, the script gives up (its log is
read every WATCH_IDLE_TICKS ticks), or the ticks run out, then prints the file's mode (as
``ls -l`` shows it: portable), its text, the separator and the end of the log. ``ls`` of the
directory first: on NFS it refreshes the attribute cache."""


def template_values() -> dict[str, str]:
    """The names the job script uses, as the templates see them (``protocol.log`` ...)."""
    return {
        "script": SCRIPT,
        "log": LOG,
        "connection": CONNECTION,
        "runtime": RUNTIME,
        "marker": MARKER,
        "say": SAY,
        "ended": ENDED,
        "stopped": STOPPED,
        "not_ready": NOT_READY.format(status="$HPCJ_RC"),
    }


def path(job_dir: str, name: str) -> str:
    """A file of the job directory."""
    return f"{job_dir.rstrip('/')}/{name}"


def job_name(session_id: str) -> str:
    return JOB_NAME_PREFIX + session_id


def session_of(job_name: str) -> str | None:
    """The session id in a job's name, or None for a job hpcjupyter did not start."""
    return job_name[len(JOB_NAME_PREFIX) :] if job_name.startswith(JOB_NAME_PREFIX) else None


def watch_argv(job_dir: str, seconds: float) -> list[str]:
    """One round trip that returns the moment Jupyter is ready or the job gave up (or after
    ``seconds``): the client is told at once, with one remote command instead of many looks."""
    ticks = max(1, round(seconds / WATCH_TICK))  # at least one: time moves on every call
    return [
        "sh",
        "-c",
        _WATCH_SH,
        "hpcjupyter-watch",
        job_dir,
        CONNECTION,
        LOG,
        PEEK_SEPARATOR,
        str(ticks),
        _gave_up("[0-9]"),
    ]


def parse_peek(stdout: str) -> tuple[str, str, str]:
    """`watch_argv`'s output → (the connection file's mode, its text, the log's end)."""
    head, _, log = stdout.partition(f"\n{PEEK_SEPARATOR}\n")
    mode, _, text = head.partition("\n")
    return mode.strip(), text, log
