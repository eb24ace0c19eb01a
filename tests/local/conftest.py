"""The `local` layer: the real rendered script and real JupyterLab on this machine, driven by the CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest


class Cli:
    """Runs `python -m hpcjupyter` with this test's private config and state directories."""

    def __init__(self, home: Path) -> None:
        self.env = dict(os.environ)
        self.env.update(
            HPCJUPYTER_STATE_DIR=str(home / "state"),
            HPCJUPYTER_CONFIG=str(home / "config.toml"),
            HPCJUPYTER_PROFILE_PATH=str(home / "profiles"),
            XDG_CONFIG_HOME=str(home / "xdg"),
            NO_COLOR="1",
        )
        self.env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{self.env['PATH']}"
        (home / "profiles").mkdir()
        self.profiles = home / "profiles"

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "hpcjupyter", *args], env=self.env, capture_output=True,
                              text=True, timeout=timeout)

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-m", "hpcjupyter", *args], env=self.env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def json(self, *args: str) -> Any:
        result = self.run(*args, "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    if shutil.which("jupyter", path=str(Path(sys.executable).parent)) is None and shutil.which("jupyter") is None:
        pytest.fail("jupyterlab is not installed in the test environment (pip install jupyterlab)")
    return Cli(tmp_path)
