"""Drive the real `hpcjupyter` CLI as a user would, with this test's own private directories."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


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
        return subprocess.Popen(self.argv(*args), env=self.env, text=True, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)

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
