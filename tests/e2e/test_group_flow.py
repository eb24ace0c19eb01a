"""A new group member with only the URL of the group's profile repository gets to JupyterLab:
`sites add URL` → `doctor` → `submit --connect`, each the real command line in its own process.

The group repository (a bare git repository, reached by a file:// URL) holds a base profile of
the test bed and the group's profile extending it, as a group would share a real site.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import urllib.request
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import parse_qs, urljoin, urlsplit

import pytest

from test_doctor_e2e import close_masters

pytestmark = pytest.mark.e2e

URL_TIMEOUT = 240.0


def group_repository(testbed: Any, root: Path) -> str:
    """The group's bare repository; returns its URL."""
    work = root / "group-work"
    work.mkdir()
    remote_dir = str(testbed.remote_dir).replace(f"/{testbed.user}/", "/{user}/")
    (work / "tb.toml").write_text(f"""\
# The test bed, described once for the whole group.
description = "hpcjupyter test bed (Slurm)"
scheduler = "slurm"
[ssh]
host = "{testbed.login_alias}"
config = "{testbed.ssh_config}"
transport = "openssh"
tunnel = "forward"
[env]
remote_dir = "{remote_dir}"
poll_seconds = 2
""")
    (work / "tb-group.toml").write_text(f"""\
# Our group: the shared JupyterLab venv, on the serial partition.
extends = "tb"
description = "The group's JupyterLab on the test bed"
[job]
hours = 0.5
partition = "serial"
[env]
venv = "{testbed.jupyter_venv}"
""")
    git = ["git", "-c", "user.name=group", "-c", "user.email=group@example.org"]
    for args in (["init", "-q"], ["add", "."], ["commit", "-q", "-m", "group profiles"]):
        subprocess.run(git + args, cwd=work, check=True, capture_output=True)
    bare = root / "group-profiles.git"
    subprocess.run(git + ["clone", "-q", "--bare", str(work), str(bare)], check=True, capture_output=True)
    return f"file://{bare}"


class NewUser:
    """Runs `python -m hpcjupyter` with fresh config, state and data directories of its own."""

    def __init__(self, root: Path) -> None:
        self.home = root
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("HPCJUPYTER_")}
        self.env.update(HPCJUPYTER_CONFIG=str(root / "config.toml"), HPCJUPYTER_STATE_DIR=str(root / "state"),
                        HPCJUPYTER_DATA_DIR=str(root / "data"), XDG_CONFIG_HOME=str(root / "xdg"), NO_COLOR="1")
        self.env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{self.env['PATH']}"

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "hpcjupyter", *args]

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(*args), env=self.env, cwd=self.home, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(self.argv(*args), env=self.env, cwd=self.home, text=True, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def first_line(stream: Any, timeout: float) -> str:
    """The first line a process prints, waiting at most ``timeout`` seconds ("" if none came)."""
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(stream.readline()), daemon=True).start()
    try:
        return lines.get(timeout=timeout).strip()
    except queue.Empty:
        return ""


def api_status(url: str) -> int:
    """GET /api/status of the Jupyter behind ``url``, authenticated with the URL's token."""
    token = parse_qs(urlsplit(url).query)["token"][0]
    request = urllib.request.Request(urljoin(url.split("?")[0], "api/status"),
                                     headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status


@pytest.fixture
def root() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="hpcj-grp-", dir="/tmp"))  # short: ssh control sockets live here
    try:
        yield path
    finally:
        close_masters(path / "state")
        shutil.rmtree(path, ignore_errors=True)


def test_new_user_with_a_git_url_gets_to_jupyter(testbed: Any, root: Path) -> None:
    user = NewUser(root)
    url = group_repository(testbed, root)

    added = user.run("sites", "add", url)
    assert added.returncode == 0, added.stderr
    assert "tb (new), tb-group (new)" in added.stdout and "invalid" not in added.stderr

    checked = user.run("doctor", "--site", "tb-group")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.count("✓ ") == 7 and "0 prompts answered" in checked.stdout

    connect = user.start("submit", "--site", "tb-group", "--connect", "--no-browser")
    cancelled = False
    try:
        jupyter_url = first_line(connect.stdout, URL_TIMEOUT)
        if not jupyter_url:
            stop(connect)
            pytest.fail(f"submit --connect printed no URL within {URL_TIMEOUT:g} s:\n{connect.stderr.read()}")
        assert jupyter_url.startswith("http://127.0.0.1:") and "token=" in jupyter_url
        assert api_status(jupyter_url) == 200
        [job_id] = job_ids(user)
        done = user.run("cancel", job_id)
        assert done.returncode == 0, done.stderr
        cancelled = True
    finally:
        stop(connect)
        if not cancelled:
            for job_id in job_ids(user):
                user.run("cancel", job_id)


def job_ids(user: NewUser) -> list[str]:
    """The jobs this user's sessions record."""
    listed = user.run("ls", "--json")
    return [s["job_id"] for s in json.loads(listed.stdout or "[]") if s.get("job_id")]


def stop(process: subprocess.Popen[str]) -> None:
    """Ctrl-C, as a user would end `connect`; killed if it does not end."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
