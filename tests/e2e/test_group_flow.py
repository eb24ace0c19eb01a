"""A new group member with only the URL of the group's profile repository gets to JupyterLab:
`sites add URL` → `doctor` → `submit --connect`, each the real command line in its own process.

The group repository (a bare git repository, reached by a file:// URL) holds a base profile of
the test bed and the group's profile extending it, as a group would share a real site.
"""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
from clihelpers import Cli, port_and_token, read_url
from clihelpers import stop as stop_process

from hpcjupyter.probe import api_status

pytestmark = pytest.mark.e2e


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


def test_new_user_with_a_git_url_gets_to_jupyter(testbed: Any, cli: Cli) -> None:
    user = cli
    url = group_repository(testbed, cli.home)

    added = user.run("sites", "add", url)
    assert added.returncode == 0, added.stderr
    assert "tb (new), tb-group (new)" in added.stdout and "invalid" not in added.stderr

    checked = user.run("doctor", "--site", "tb-group")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.count("✓ ") == 7 and "0 prompts answered" in checked.stdout

    connect = user.start("submit", "--site", "tb-group", "--connect", "--no-browser")
    cancelled = False
    try:
        port, token = port_and_token(read_url(connect))
        assert api_status(port, "/", token) == 200
        [job_id] = job_ids(user)
        done = user.run("cancel", job_id)
        assert done.returncode == 0, done.stderr
        cancelled = True
    finally:
        stop(connect)
        if not cancelled:
            for job_id in job_ids(user):
                user.run("cancel", job_id)


def job_ids(user: Cli) -> list[str]:
    """The jobs this user's sessions record."""
    listed = user.run("ls", "--json")
    return [s["job_id"] for s in json.loads(listed.stdout or "[]") if s.get("job_id")]


def stop(process: subprocess.Popen[str]) -> None:
    """Ctrl-C, as a user would end `connect`."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    stop_process(process)
