"""Shared test helpers: real recorded outputs from ``tests/fixtures`` (kept in the repository, so
a plain clone runs the unit layer).

Every read goes through `read_fixture`, which records the file name in `READS`. The meta-test in
``test_fixture_reads.py`` runs last and checks that every recorded output the product can meet was
read by some test of the session (see its docstring for when it applies).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import pytest
from sandbox import Sandbox

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"

# Names of the fixture files read during this pytest session (filled by `read_fixture`).
READS: set[str] = set()

# Set by the hooks below: did this session run every test of tests/unit, none deselected?
SESSION: dict[str, object] = {"whole_unit_dir": False, "deselected": 0}

META_TEST = "test_fixture_reads.py::test_every_fixture_was_read"
FIXTURE_READERS = "fixture-readers"  # the xdist group of the tests that read recorded outputs


def read_fixture(name: str) -> str:
    """The recorded output, without its first ``# source:`` line (which names where it came from)."""
    source, _, text = (FIXTURES / name).read_text().partition("\n")
    assert source.startswith("# source:"), f"{name} has no '# source:' line"
    READS.add(name)
    return text


@pytest.fixture(name="fixture")
def fixture_reader() -> Callable[[str], str]:
    """``fixture("slurm-sbatch-parsable.txt")`` in a test gives that recorded output."""
    return read_fixture


@pytest.fixture
def fixture_dir() -> Path:
    """Where the recorded outputs live (for tests that list them)."""
    return FIXTURES


def pytest_deselected(items: list[pytest.Item]) -> None:
    """A ``-k``/``-m`` selection means not every reader ran: the meta-test must not judge."""
    SESSION["deselected"] = int(SESSION["deselected"]) + len(items)


def _is_meta(item: pytest.Item) -> bool:
    return f"{Path(str(item.path)).name}::{item.name}" == META_TEST


def _reads_fixtures(item: pytest.Item) -> bool:
    uses = {"fixture", "fixture_dir"} & set(getattr(item, "fixturenames", ()))
    return bool(uses) or getattr(getattr(item, "module", None), "read_fixture", None) is read_fixture


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(session: pytest.Session, items: list[pytest.Item]) -> Iterator[None]:
    """Before the other hooks: under ``pytest -n``, every reader of a recorded output and the
    meta-test go to one worker (xdist's hook turns the group into ``--dist loadgroup`` scheduling),
    so the meta-test sees all the reads.

    After them: run the meta-test last (reads are counted as they happen), and note whether this
    session holds every test module of tests/unit: only then can a fixture nobody read be blamed."""
    for item in items:
        if _reads_fixtures(item) or _is_meta(item):
            item.add_marker(pytest.mark.xdist_group(FIXTURE_READERS))
    yield
    unit_dir = Path(__file__).resolve().parent
    meta = [i for i in items if _is_meta(i)]
    for item in meta:
        items.remove(item)
        items.append(item)
    collected = {Path(str(i.path)).resolve() for i in items}
    modules = set(unit_dir.glob("test_*.py"))
    SESSION["whole_unit_dir"] = bool(meta) and modules <= collected


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Sandbox:
    box = Sandbox(
        root=tmp_path,
        config=tmp_path / "config.toml",
        group=tmp_path / "group1",
        group2=tmp_path / "group2",
        state=tmp_path / "state",
    )
    box.group.mkdir()
    box.group2.mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("HPCJUPYTER_CONFIG", str(box.config))
    monkeypatch.setenv("HPCJUPYTER_PROFILE_PATH", f"{box.group}:{box.group2}")
    monkeypatch.setenv("HPCJUPYTER_STATE_DIR", str(box.state))
    monkeypatch.setenv("HPCJUPYTER_DATA_DIR", str(tmp_path / "data"))
    return box
