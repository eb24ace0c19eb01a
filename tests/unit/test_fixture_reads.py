"""Every recorded output the product can meet is read by some test.

A file in ``tests/fixtures`` that no test reads proves nothing, and a search for its name in test
sources cannot tell a real read from a comment or a dead helper. So the check counts actual
reads: ``conftest.read_fixture`` (behind the ``fixture`` fixture) records each file name it opens
during the session, and this test, which ``conftest`` orders last, compares the records with the
directory.

It judges only a session that ran the whole unit layer (every ``tests/unit/test_*.py`` collected,
nothing deselected by ``-k``/``-m``/``--deselect``/``--lf``); a subset run skips it, since the
readers of some files did not run. Under ``-x`` a failure stops the session before it, so a
failing reader never turns into a second, misleading failure here.
"""

from __future__ import annotations

import os

import pytest
from conftest import FIXTURE_READERS, FIXTURES, READS, SESSION

# The scheduler and Jupyter outputs the product parses or the PBS emulator must reproduce.
KINDS = ("slurm-", "pbspro-", "openpbs-", "jupyter-")
# Recorded outputs of commands the product never runs, each with why it is kept unread.
NOT_MET = {
    "jupyter-server-list-generated.txt": "hpcjupyter reads jpserver-*.json, never runs `jupyter server list`",
}


def test_every_fixture_was_read(request: pytest.FixtureRequest) -> None:
    """Fails when a recorded output stops being read (its test deleted, renamed, or skipped)."""
    if not SESSION["whole_unit_dir"] or SESSION["deselected"]:
        pytest.skip("only a session running the whole unit layer can tell an unread fixture")
    if os.environ.get("PYTEST_XDIST_WORKER"):  # the readers ran in this worker only if grouped
        assert request.node.nodeid.endswith(f"@{FIXTURE_READERS}"), (
            "pytest -n without working --dist loadgroup (pytest 9.2 breaks it: pytest-xdist#1386): "
            "this worker did not run every reader")
    present = sorted(f.name for f in FIXTURES.iterdir() if f.name.startswith(KINDS))
    assert present, f"no fixtures in {FIXTURES}"
    assert set(NOT_MET) <= set(present) and not set(NOT_MET) & READS, "stale NOT_MET entry"
    assert [name for name in present if name not in READS and name not in NOT_MET] == []
