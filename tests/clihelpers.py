"""Drive the real `hpcjupyter` CLI as a user would, with this test's own private directories."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator


def sigint_default() -> None:
    """Ctrl-C at its default in the child, as in a terminal (Python then raises KeyboardInterrupt):
    a test run started in the background by a shell has SIGINT ignored, and children inherit that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Cli:
    """Runs `python -m hpcjupyter` with this test's own config, profiles and state directories."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.profiles = home / "profiles"
        self.profiles.mkdir(parents=True, exist_ok=True)
        self.state = home / "state"
        self.env = dict(os.environ)
        self.env.update(
            HPCJUPYTER_STATE_DIR=str(self.state),
            HPCJUPYTER_CONFIG=str(home / "config.toml"),
            HPCJUPYTER_PROFILE_PATH=str(self.profiles),
            HPCJUPYTER_DATA_DIR=str(home / "data"),
            XDG_CONFIG_HOME=str(home / "xdg"),
            NO_COLOR="1",
        )
        self.env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{self.env['PATH']}"

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "hpcjupyter", *args]

    def run(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(*args), env=self.env, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)

    def start(self, *args: str) -> subprocess.Popen[str]:
        """`hpcjupyter ARGS` in the background, SIGINT as in a terminal (see `sigint_default`)."""
        return subprocess.Popen(self.argv(*args), env=self.env, text=True, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=sigint_default)

    def spawn(self, *args: str) -> Any:
        """`hpcjupyter ARGS` on a pty (pexpect), as typed at a terminal."""
        import pexpect

        return pexpect.spawn(sys.executable, ["-m", "hpcjupyter", *args], env=self.env, encoding="utf-8",
                             codec_errors="replace", timeout=180, dimensions=(40, 200), preexec_fn=sigint_default)

    def json(self, *args: str) -> Any:
        result = self.run(*args, "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def write_profile(self, name: str, text: str) -> None:
        (self.profiles / f"{name}.toml").write_text(text)


def read_url(process: subprocess.Popen[str], seconds: float = 180) -> str:
    """The URL line connect prints on stdout (with the token); fails with connect's stderr."""
    assert process.stdout is not None
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if line.startswith("http://127.0.0.1:"):
            return line.strip()
        if not line and process.poll() is not None:
            break
    process.kill()
    stderr = process.stderr.read() if process.stderr else ""
    raise AssertionError(f"connect printed no URL (exit {process.poll()}); stderr:\n{stderr}")


def port_and_token(url: str) -> tuple[int, str]:
    """http://127.0.0.1:PORT/lab?token=T → (PORT, T)."""
    hostport, _, rest = url[len("http://"):].partition("/")
    return int(hostport.rsplit(":", 1)[1]), rest.partition("token=")[2]


def stop(process: subprocess.Popen[str]) -> str:
    """End a background hpcjupyter; returns what it wrote on stderr (printed, so a failure shows it)."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    stderr = process.stderr.read() if process.stderr and not process.stderr.closed else ""
    print(f"--- stderr of {' '.join(process.args[3:]) if isinstance(process.args, list) else process.args}:\n{stderr}")
    return stderr


def pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


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


def control_sockets(where: Cli | Path) -> list[Path]:
    """The ControlMaster sockets under a CLI's state dir (or under a state dir given as a path)."""
    directory = (where.state if isinstance(where, Cli) else where) / "cm"
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


def close_masters(where: Cli | Path) -> None:
    """``ssh -O exit`` every master of a CLI or state dir (and kill one that does not go)."""
    for sock in control_sockets(where):
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
