"""The README's quick start, run exactly as written: a fresh venv, no `activate`, and a PATH that
does not hold the venv. A new user's first run is this one; it must reach Jupyter."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from clihelpers import port_and_token, read_url, stop

from hpcjupyter.probe import api_status

REPO = Path(__file__).resolve().parents[2]
NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "venv", "__pycache__", ".pytest_cache", ".ruff_cache",
                                    ".mypy_cache", "build", "dist", "*.egg-info", ".testbed", "results")


def quick_start_commands() -> list[str]:
    """The two commands of the README's first ``bash`` block under "Set up", verbatim."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Set up"):]
    block = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    assert block, "README.md has no bash block under '## Set up'"
    commands = [line for line in block.group(1).splitlines() if line.strip()]
    assert len(commands) == 2 and commands[1].endswith("submit --site local --connect --no-browser"), commands
    return commands


def test_the_readme_quick_start_reaches_jupyter(tmp_path: Path) -> None:
    install, run = quick_start_commands()
    checkout = tmp_path / "hpcjupyter"
    shutil.copytree(REPO, checkout, ignore=NOT_SOURCE)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON", "HPCJUPYTER"))}
    env.update(
        PATH="/usr/local/bin:/usr/bin:/bin",  # the system's python3; neither the test's venv nor the new one
        HOME=str(tmp_path / "home"),  # a new user: no config, no sessions
        XDG_CACHE_HOME=os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache")),  # pip's cache
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        NO_COLOR="1",
    )
    (tmp_path / "home").mkdir()
    installed = subprocess.run(["bash", "-c", install], cwd=checkout, env=env, capture_output=True, text=True,
                               timeout=900, stdin=subprocess.DEVNULL)
    assert installed.returncode == 0, installed.stderr[-3000:]

    hpcjupyter = str(checkout / ".venv" / "bin" / "hpcjupyter")
    doctor = subprocess.run([hpcjupyter, "doctor", "--site", "local"], env=env, capture_output=True, text=True,
                            timeout=120)
    assert doctor.returncode == 0 and f"{checkout}/.venv/bin/jupyter-lab" in doctor.stdout, doctor.stdout

    process = subprocess.Popen(["bash", "-c", run], cwd=checkout, env=env, text=True, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        port, token = port_and_token(read_url(process))
        assert api_status(port, "/", token) == 200
        assert api_status(port, "/", None) == 403
    finally:
        stop(process)
        listed = subprocess.run([hpcjupyter, "ls", "--json"], env=env, capture_output=True, text=True, timeout=60)
        for job in re.findall(r'"job_id": "([^"]+)"', listed.stdout):
            subprocess.run([hpcjupyter, "cancel", job], env=env, capture_output=True, timeout=60)
