"""Helpers of the status, login and tunnel-recovery e2e tests: a CLI with short private paths,
status polling, ssh masters and ssh processes of the laptop."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from clihelpers import Cli

STATUS_KEYS = {"job_id", "site", "state", "native_state", "node", "reason", "time_used", "time_limit",
               "start_estimate", "exit_status"}


@contextlib.contextmanager
def short_cli() -> Iterator[Cli]:
    """A `Cli` whose state dir is short (``/tmp/hjXXXX/state``), so the ControlMaster socket
    lives in this test's own directory (pytest's tmp_path is too long for a socket: the remote
    then falls back to ``/tmp/hpcj-<uid>``, shared by every test using the same site name).
    Masters started under it are closed at the end."""
    home = Path(tempfile.mkdtemp(dir="/tmp", prefix="hj"))
    cli = Cli(home)
    try:
        yield cli
    finally:
        close_masters(cli)
        shutil.rmtree(home, ignore_errors=True)


def control_sockets(cli: Cli) -> list[Path]:
    """The ControlMaster sockets under the CLI's state dir."""
    directory = cli.state / "cm"
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if stat.S_ISSOCK(p.lstat().st_mode))


def master_pid(socket_path: Path) -> int | None:
    """``ssh -O check``'s pid of the master behind a socket, or None."""
    res = subprocess.run(["ssh", "-S", str(socket_path), "-o", "ControlMaster=no", "-O", "check", "x"],
                         capture_output=True, text=True, timeout=15, stdin=subprocess.DEVNULL)
    text = res.stderr + res.stdout
    if res.returncode != 0 or "pid=" not in text:
        return None
    return int(text.split("pid=", 1)[1].split(")", 1)[0])


def close_masters(cli: Cli) -> None:
    """``ssh -O exit`` every master of this CLI (and kill one that does not go)."""
    for sock in control_sockets(cli):
        pid = master_pid(sock)
        subprocess.run(["ssh", "-S", str(sock), "-o", "ControlMaster=no", "-O", "exit", "x"],
                       capture_output=True, timeout=15, stdin=subprocess.DEVNULL)
        if pid is not None:
            _wait_gone(pid, 5) or _kill(pid)


def _wait_gone(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.1)
    return False


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def cmdlines() -> Iterator[tuple[int, list[str]]]:
    """(pid, argv) of every process of this machine's root pid namespace that we can read."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if raw:
            yield int(entry.name), raw.decode(errors="replace").rstrip("\0").split("\0")


def ssh_with_local_forward(local_port: int) -> list[int]:
    """Pids of ssh processes whose argv has ``-L 127.0.0.1:<local_port>:...``."""
    prefix = f"127.0.0.1:{local_port}:"
    found = []
    for pid, argv in cmdlines():
        if not argv or os.path.basename(argv[0]) != "ssh":
            continue
        if any(a == "-L" and b.startswith(prefix) for a, b in zip(argv, argv[1:])) or \
                any(a.startswith("-L" + prefix) for a in argv):
            found.append(pid)
    return found


def listeners(port: int) -> list[tuple[str, str]]:
    """(local address, process column) of TCP listeners on ``port`` in this (root) namespace."""
    out = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True, check=True).stdout
    rows = []
    for line in out.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[3].rsplit(":", 1)[-1] == str(port):
            rows.append((fields[3], " ".join(fields[5:])))
    return rows


# ---- status ------------------------------------------------------------------------------------


def status(cli: Cli, site: str, job_id: str) -> dict[str, Any]:
    """``hpcjupyter status JOB --site SITE --json`` (must succeed), with exactly the documented keys."""
    res = cli.run("status", job_id, "--site", site, "--json", timeout=120)
    assert res.returncode == 0, f"status {job_id} failed (exit {res.returncode}): {res.stderr}"
    data = json.loads(res.stdout)
    assert set(data) == STATUS_KEYS, data
    assert data["job_id"] == job_id and data["site"] == site, data
    assert all(isinstance(v, str) for v in data.values()), data
    return data


def wait_status(cli: Cli, site: str, job_id: str, done: Callable[[dict[str, Any]], bool],
                seconds: float = 90, seen: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Poll `status` until ``done(data)``; every answer is appended to ``seen``."""
    deadline = time.monotonic() + seconds
    while True:
        data = status(cli, site, job_id)
        if seen is not None:
            seen.append(data)
        if done(data):
            return data
        assert time.monotonic() < deadline, f"job {job_id} never reached the awaited state; last: {data}"
        time.sleep(0.5)
