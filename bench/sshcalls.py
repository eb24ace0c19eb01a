"""Counting the ssh commands a CLI runs: an `ssh` first on its PATH that logs, then execs the real one.

hpcjupyter's openssh transport runs every remote command as its own ``ssh -S master ... -T host
CMD`` (a mux client: one session on the login node's sshd, no new login), and talks to the
master itself with ``ssh -O check|forward|cancel`` (local, nothing runs on the login node). The
login sshd logs neither at the bed's LogLevel, and the bed is shared, so we count on our side:
each line of the log is one ssh started by that CLI, with its start time. The wrapper is bash
(``$EPOCHREALTIME``, no fork) and adds a few milliseconds to each ssh call.
"""

from __future__ import annotations

import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SEP = "\x1f"  # between arguments: one line per call whatever the arguments hold
SCHEDULER = ("squeue", "sacct", "scontrol", "sbatch", "scancel", "qstat", "qsub", "qdel", "qselect")
WRAPPER = """#!/bin/bash
# bench: log this ssh call (start time, arguments), then run the real ssh in its place.
line=$EPOCHREALTIME
for arg in "$@"; do line+=$'\\x1f'"$arg"; done
printf '%s\\n' "$line" >>{log}
exec {ssh} "$@"
"""


@dataclass(frozen=True)
class Call:
    at: float
    kind: str
    """login (the master), control (-O op: local), or a remote command: watch, scheduler, other."""


def install(cli: Any) -> Path:
    """Put the logging ssh first on the CLI's PATH; returns the log (empty until it runs)."""
    real = shutil.which("ssh")
    if real is None:
        raise RuntimeError("no ssh on PATH")
    bin_dir = cli.home / "sshlog-bin"
    bin_dir.mkdir(exist_ok=True)
    log = cli.home / "ssh-calls.log"
    log.touch()
    (bin_dir / "ssh").write_text(WRAPPER.format(log=_quoted(log), ssh=_quoted(Path(real))))
    (bin_dir / "ssh").chmod(0o755)
    cli.env["PATH"] = f"{bin_dir}:{cli.env['PATH']}"
    return log


def _quoted(path: Path) -> str:
    return "'" + str(path).replace("'", "'\\''") + "'"


def kind(args: list[str]) -> str:
    """What one ssh call was (see `Call.kind`)."""
    if "-O" in args:
        return "control " + args[args.index("-O") + 1]
    if "-M" in args or "ControlMaster=yes" in args:
        return "login"
    if "-T" not in args:
        return "other ssh"
    command = args[-1]
    if "hpcjupyter-watch" in command:
        return "watch"
    first = command.split()[0] if command.split() else ""
    return "scheduler" if first in SCHEDULER else "other command"


def read(log: Path) -> list[Call]:
    calls = []
    for line in log.read_text(errors="replace").splitlines():
        at, *args = line.split(SEP)
        calls.append(Call(float(at.replace(",", ".")), kind(args)))
    return calls


def remote(call: Call) -> bool:
    """Runs something on the login node (a session there), as opposed to the master's own work."""
    return not call.kind.startswith(("control", "login", "other ssh"))


def per_minute(calls: list[Call], since: float, until: float) -> tuple[float, dict[str, float]]:
    """Remote commands per minute within [since, until], in all and by kind."""
    minutes = (until - since) / 60
    inside = [c for c in calls if since <= c.at <= until and remote(c)]
    by_kind = Counter(c.kind for c in inside)
    return len(inside) / minutes, {k: n / minutes for k, n in sorted(by_kind.items())}
