"""Who takes the test bed down: the pytest run that brought it up, once all its tests are done.

Under ``pytest -n`` the tests run in worker processes, children of the run's main process; the
bed must outlive every worker, so the main process takes it down (``pytest_sessionfinish`` in
``tests/conftest.py``). A bed that was already up is left alone.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

OWNER = Path("/srv/.hpcj-testbed-owner")
TESTBED_SH = Path(__file__).resolve().parent / "cluster" / "testbed.sh"


def run_pid() -> int:
    """The pytest run's main process: this one, or a worker's parent."""
    return os.getppid() if os.environ.get("PYTEST_XDIST_WORKER") else os.getpid()


def claim(directory: Path) -> None:
    """This run brought the bed in DIRECTORY up: it takes it down at the end."""
    OWNER.write_text(f"{run_pid()} {directory}\n")


def release_if_mine() -> None:
    """Take the bed down if this process's run brought it up."""
    try:
        pid, directory = OWNER.read_text().split(maxsplit=1)
    except (OSError, ValueError):
        return
    if int(pid) != os.getpid():
        return
    OWNER.unlink()
    subprocess.run(["bash", str(TESTBED_SH), "down"], env={**os.environ, "HPCJ_TESTBED_DIR": directory.strip()},
                   capture_output=True, text=True)
