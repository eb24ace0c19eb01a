"""The portable lock helper: one holder at a time, across processes, in a private file."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from hpcjupyter.locks import exclusive


def test_exclusive_keeps_a_second_process_waiting(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    code = f"from hpcjupyter.locks import exclusive\nwith exclusive({str(path)!r}):\n    print('got it', flush=True)\n"
    with exclusive(path):
        if os.name == "posix":
            assert path.stat().st_mode & 0o077 == 0  # private from the first byte
        other = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        time.sleep(1.0)
        assert other.poll() is None  # still waiting for us
    out, _ = other.communicate(timeout=30)
    assert out.strip() == "got it" and other.returncode == 0


def test_exclusive_can_be_taken_again(tmp_path: Path) -> None:
    for _ in range(2):
        with exclusive(str(tmp_path / "y.lock")):
            pass
