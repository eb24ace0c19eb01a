"""Background "jobs" on this machine: the sbatch/squeue/scancel of the ``local`` scheduler.

    localjob submit SCRIPT [--name NAME] [--walltime HH:MM:SS]   prints the job id
    localjob status [--name NAME] [JOB_ID ...]   one JSON line per known job
    localjob cancel JOB_ID ...

(``command(...)`` is the argv that runs it.)

A job is a wrapper process (``_run``) leading its own session, so it outlives the command that
started it and one signal reaches its whole process group (whose id is the wrapper's pid). It
runs ``bash SCRIPT`` in the script's directory with ``HPCJ_LOCAL_JOB_ID`` set, output to
``SCRIPT.out`` (appended to), and records the exit code when the script ends. At the walltime
it ends the job as Slurm does: SIGTERM to the whole job, SIGKILL to what is left ``KILL_WAIT``
seconds later. The registry, ``<state dir>/local-jobs/``, holds ``<id>.json`` (written by
submit), ``<id>.exit`` and ``<id>.timedout`` (by the wrapper) and ``<id>.cancelled`` (by cancel).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from hpcjupyter import paths

RUNNING, EXITED, CANCELLED, TIMEOUT, LOST = "RUNNING", "EXITED", "CANCELLED", "TIMEOUT", "LOST"
"""Native states printed by ``status``."""

KILL_WAIT = 30.0
"""Seconds between SIGTERM and SIGKILL at the walltime (Slurm's default KillWait)."""

JOB_ID = re.compile(r"local-\d+-[0-9a-f]+")
"""``local-<wrapper pid>-<random>``: the random part keeps ids unique when a pid is reused."""


def command(*args: str) -> list[str]:
    """argv of this module's command line, with this Python. Not ``-m``: the package imports this
    module before runpy runs it, and runpy's warning about that would open every job's log."""
    main = "import sys; from hpcjupyter.schedulers.localjob import main; sys.exit(main(sys.argv[1:]))"
    return [sys.executable, "-c", main, *args]


def registry() -> Path:
    directory = paths.state_dir() / "local-jobs"
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    return directory


def output_of(script: Path) -> Path:
    """Where a job's stdout and stderr go: beside its script, so the job directory holds it."""
    return script.with_name(script.name + ".out")


def submit(script: Path, name: str, walltime: str = "") -> str:
    """Start the wrapper detached and record it before printing the id, so status always finds it.

    Returns once the wrapper has started the script: a cancel from then on is recorded.
    """
    script = script.resolve()
    if not script.is_file():
        raise SystemExit(f"localjob: no such script: {script}")
    limit(walltime)  # a malformed one is refused here, not in the detached wrapper
    token = secrets.token_hex(4)
    log = output_of(script)
    ready, started = os.pipe()
    with open(log, "ab") as out:
        wrapper = subprocess.Popen(
            command("_run", token, str(script), str(registry()), str(started), walltime),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=script.parent,
            start_new_session=True,
            pass_fds=(started,),
        )
    os.close(started)
    os.read(ready, 1)  # end of file: the wrapper has started the script (or died)
    os.close(ready)
    job_id = f"local-{wrapper.pid}-{token}"
    record = {
        "job_id": job_id,
        "pid": wrapper.pid,
        "name": name,
        "script": str(script),
        "log": str(log),
        "node": socket.gethostname(),
        "started": time.time(),
        "walltime": walltime,
    }
    _write(registry() / f"{job_id}.json", record)
    return job_id


def limit(walltime: str) -> float | None:
    """HH:MM:SS (hours may pass 24) → seconds; None without a walltime."""
    if not walltime:
        return None
    try:
        hours, minutes, seconds = (int(part) for part in walltime.split(":"))
    except ValueError:
        raise SystemExit(f"localjob: walltime must be HH:MM:SS, not {walltime!r}") from None
    return float(hours * 3600 + minutes * 60 + seconds)


class _WalltimeReached(Exception):
    """Raised in the wrapper by its alarm at the job's walltime."""


def _walltime_reached(*_: Any) -> None:
    raise _WalltimeReached


def run(token: str, script: str, directory: Path, started: int, walltime: str) -> int:
    """The wrapper: run the script, tell submit it started, end it at the walltime, then record
    how it ended.

    It ignores SIGTERM by handler (not SIG_IGN, which the script would inherit): cancel's
    signal, and its own at the walltime, are for the script; the wrapper stays to record the
    exit code.
    """
    job_id = f"local-{os.getpid()}-{token}"
    signal.signal(signal.SIGTERM, lambda *_: None)
    env = {**os.environ, "HPCJ_LOCAL_JOB_ID": job_id}
    child = subprocess.Popen(["bash", script], stdin=subprocess.DEVNULL, env=env)
    os.close(started)
    timed_out = False
    seconds = limit(walltime)
    if seconds:  # an alarm, not wait(timeout=), which would poll every 50 ms for hours
        signal.signal(signal.SIGALRM, _walltime_reached)
        signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        code = child.wait()
        signal.setitimer(signal.ITIMER_REAL, 0)
    except _WalltimeReached:
        timed_out = True
        (directory / f"{job_id}.timedout").touch()
        os.killpg(0, signal.SIGTERM)  # the job's process group is the wrapper's
        try:
            code = child.wait(timeout=KILL_WAIT)
        except subprocess.TimeoutExpired:
            code = -signal.SIGKILL
    _write(directory / f"{job_id}.exit", {"exit_status": code if code >= 0 else 128 - code, "ended": time.time()})
    if timed_out:
        os.killpg(0, signal.SIGKILL)  # what is left of the job, the wrapper with it (its record is written)
    return 0


def status(job_ids: Sequence[str], name: str | None) -> list[dict[str, Any]]:
    """Known jobs among ``job_ids`` (all if none), optionally only those called ``name``."""
    directory = registry()
    ids = job_ids or sorted(p.stem for p in directory.glob("local-*.json"))
    records = [r for i in ids if JOB_ID.fullmatch(i) and (r := _read(directory / f"{i}.json"))]
    return [_describe(directory, r) for r in records if name is None or r.get("name") == name]


def cancel(job_ids: Sequence[str]) -> None:
    """SIGTERM to each live job's process group; ended or unknown jobs need nothing."""
    directory = registry()
    for job_id in job_ids:
        record = _read(directory / f"{job_id}.json") if JOB_ID.fullmatch(job_id) else None
        if record and not (directory / f"{job_id}.exit").exists() and _alive(record["pid"]):
            (directory / f"{job_id}.cancelled").touch()
            try:
                os.killpg(record["pid"], signal.SIGTERM)
            except ProcessLookupError:
                pass


def _describe(directory: Path, record: dict[str, Any]) -> dict[str, Any]:
    job_id = record["job_id"]
    ended = _read(directory / f"{job_id}.exit")
    line = {
        "job_id": job_id,
        "state": RUNNING,
        "reason": "",
        "node": record["node"],
        "exit_status": "",
        "name": record["name"],
        "log": record["log"],
        "time_limit": record.get("walltime", ""),
    }
    if ended is None and _alive(record["pid"]):
        line["time_used"] = _duration(time.time() - record["started"])
        return line
    ended = ended or _read(directory / f"{job_id}.exit")  # it may have ended since we looked
    stopped = CANCELLED if (directory / f"{job_id}.cancelled").exists() else None
    stopped = stopped or (TIMEOUT if (directory / f"{job_id}.timedout").exists() else None)
    if ended is None:
        line.update(state=stopped or LOST, reason="ended without recording an exit status")
    else:
        line.update(
            state=stopped or EXITED,
            exit_status=str(ended["exit_status"]),
            time_used=_duration(ended["ended"] - record["started"]),
        )
    return line


def _alive(pgid: int) -> bool:
    """Some process of the job lives: its process group and session are the wrapper's pid.

    On Linux, /proc tells zombies apart (an init that never reaps, as in some containers, would
    otherwise keep a dead job "running"); elsewhere the kernel's answer to signal 0 has to do.
    """
    if not Path("/proc/self/stat").exists():
        try:
            os.killpg(pgid, 0)
        except OSError:
            return False
        return True
    return any(_member(stat, pgid) for stat in _proc_stats())


def _member(stat: str, pgid: int) -> bool:
    """``stat`` is ``pid (comm) state ppid pgrp session ...``; comm may contain spaces and parentheses."""
    state, _, pgrp, session = stat.rsplit(")", 1)[1].split()[:4]
    return state not in "ZX" and int(pgrp) == pgid == int(session)


def _proc_stats() -> Iterator[str]:
    for path in Path("/proc").glob("[0-9]*/stat"):
        try:
            yield path.read_text()
        except OSError:  # ended meanwhile
            continue


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None


def _write(path: Path, data: dict[str, Any]) -> None:
    """Atomically: a reader sees the whole record or none."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="localjob")
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("submit")
    p.add_argument("script", type=Path)
    p.add_argument("--name", default="")
    p.add_argument("--walltime", default="", help="HH:MM:SS: the time limit, reported and enforced")
    p = commands.add_parser("status")
    p.add_argument("job_ids", nargs="*")
    p.add_argument("--name")
    p = commands.add_parser("cancel")
    p.add_argument("job_ids", nargs="+")
    p = commands.add_parser("_run")
    p.add_argument("token")
    p.add_argument("script")
    p.add_argument("registry", type=Path)
    p.add_argument("started", type=int)
    p.add_argument("walltime")
    args = parser.parse_args(argv)
    if args.command == "submit":
        print(submit(args.script, args.name, args.walltime))
    elif args.command == "status":
        for line in status(args.job_ids, args.name):
            print(json.dumps(line))
    elif args.command == "cancel":
        cancel(args.job_ids)
    else:
        return run(args.token, args.script, args.registry, args.started, args.walltime)
    return 0


if __name__ == "__main__":
    sys.exit(main())
