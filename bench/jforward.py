"""jupyter-forward, the peer we compare with: installed from PyPI in its own venv, run on the bed.

It logs in with fabric, resolving the host through ``~/.ssh/config`` only, so it runs with a
private HOME whose ``.ssh/config`` is the bench's ssh_config. On the bed two things in its way
are bridged without changing it:

* jupyter-forward 2025.1.16 exits with "Could not activate environment" when no ``--conda-env``
  is given (its no-conda branch falls through to the error), and activates an env with
  ``source activate NAME`` (legacy conda). The bed has JupyterLab in a venv, not conda. With
  ``--conda-env`` and the venv's ``bin/`` on PATH, bash's ``source activate`` finds the venv's own
  ``bin/activate`` on PATH and really activates it.
* ``--shell`` names a small wrapper (on the shared filesystem) that puts that ``bin/`` on PATH,
  and keeps Jupyter's runtime files out of the test user's home, then runs bash.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

CACHE = Path(os.environ.get("HPCJ_BENCH_CACHE", "/var/cache/hpcj-bench"))
VENV = CACHE / "jf-venv"
VERSION = "2025.1.16"
COMMAND = VENV / "bin" / "jupyter-forward"


def ensure_installed() -> str:
    """Install jupyter-forward (pinned) in its own venv once; returns its version."""
    if not COMMAND.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", f"jupyter-forward=={VERSION}"], check=True,
                       capture_output=True)
    out = subprocess.run([str(VENV / "bin" / "python"), "-c",
                          "import importlib.metadata as m; print(m.version('jupyter-forward'))"],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def env(home: Path) -> dict[str, str]:
    """A private HOME whose ~/.ssh/config is the bench's; no browser opens; no line wrapping."""
    return {**os.environ, "HOME": str(home), "BROWSER": "true", "COLUMNS": "400", "NO_COLOR": "1", "TERM": "dumb"}


def prepare(bench: Any) -> tuple[dict[str, str], str]:
    """The environment to run jupyter-forward in and the remote shell wrapper to give it."""
    home = bench.root / "jf-home"
    (home / ".ssh").mkdir(parents=True, exist_ok=True)
    (home / ".ssh" / "config").write_text(bench.ssh_config.read_text())
    shell = bench.remote_scratch / "jf-shell"
    runtime = bench.remote_scratch / "jf-runtime"
    runtime.mkdir(exist_ok=True)
    shell.write_text(f"""#!/bin/bash
# jupyter-forward's --shell on the test bed: bash with the bed's JupyterLab venv on PATH.
export PATH={bench.tb.jupyter_venv}/bin:$PATH JUPYTER_RUNTIME_DIR={runtime}
case "$1" in -lc|-c) exec /bin/bash -c "$2";; -l) shift; exec /bin/bash "$@";; *) exec /bin/bash "$@";; esac
""")
    shell.chmod(0o755)
    for path in (shell, runtime):
        os.chown(path, bench.tb.uid, bench.tb.uid)
    return env(home), str(shell)


def argv(shell: str, local_port: int, job_name: str, host: str) -> list[str]:
    """The closest jupyter-forward gets to a batch job: ``--launch-command`` with srun."""
    return [str(COMMAND), "--port", str(local_port), "--conda-env", "jupyter-venv", "--shell", shell,
            "--launch-command", f"srun -J {job_name} -p serial -t 10", host]


def token_of(line: str) -> str:
    match = re.search(r"token=([0-9a-f]+)", line)
    return match.group(1) if match else ""


def files_of(output: str) -> list[str]:
    """Names of the log and batch script it created in ~/.jupyter_forward (it never removes them)."""
    return sorted(set(re.findall(r"/\.jupyter_forward/((?:log_|batch_job_script_)[\w.-]+)", output)))
