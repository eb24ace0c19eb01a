"""Session records: atomic, lock-protected, never holding a token."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hpcjupyter import sessions
from hpcjupyter.errors import HpcJupyterError


@pytest.fixture(autouse=True)
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HPCJUPYTER_STATE_DIR", str(tmp_path))
    return tmp_path


def make(session_id: str, site: str = "archer2", job_id: str | None = None) -> sessions.Session:
    return sessions.Session(site=site, session_id=session_id, job_dir=f"/work/x/{session_id}",
                            job_name=f"hpcj-{session_id}", submitted_at="2026-11-23T10:00:00+0000", job_id=job_id)


def test_save_then_find_by_job_id() -> None:
    sessions.save(make("a", job_id="101"))
    sessions.save(make("b", job_id="102"))
    found = sessions.find("102")
    assert found is not None and found.session_id == "b"
    assert sessions.find("999") is None


def test_same_job_id_on_two_sites_needs_the_site() -> None:
    sessions.save(make("a", site="archer2", job_id="5"))
    sessions.save(make("b", site="cirrus", job_id="5"))
    with pytest.raises(HpcJupyterError, match="--site"):
        sessions.find("5")
    found = sessions.find("5", "cirrus")
    assert found is not None and found.session_id == "b"


def test_records_are_private_and_leave_no_temporary_files(state_dir: Path) -> None:
    sessions.save(make("a", job_id="1"))
    files = sorted(p.name for p in (state_dir / "sessions").iterdir())
    assert files == ["archer2--a.json"]
    assert (state_dir / "sessions").stat().st_mode & 0o077 == 0


def test_unreadable_record_is_skipped_not_fatal(state_dir: Path) -> None:
    sessions.save(make("a", job_id="1"))
    (state_dir / "sessions" / "archer2--broken.json").write_text("{not json")
    assert [s.session_id for s in sessions.all_sessions()] == ["a"]


def test_update_keeps_other_fields() -> None:
    sessions.save(make("a", job_id="1"))
    with sessions.updating("archer2", "a") as record:
        record.node = "nid001"
    found = sessions.find("1")
    assert found is not None and found.node == "nid001" and found.job_dir == "/work/x/a"


_WORKER = """
import sys
from hpcjupyter import sessions
n = sys.argv[1]
sessions.save(sessions.Session(site="local", session_id="own-" + n, job_dir="/d", job_name="j",
                               submitted_at="t", job_id="job-" + n))
for _ in range(5):
    with sessions.updating("local", "shared") as record:
        record.extra[n] = record.extra.get(n, "") + "x"
"""


def test_twenty_processes_writing_at_once_lose_nothing(state_dir: Path) -> None:
    sessions.save(make("shared", site="local", job_id="shared"))
    workers = [subprocess.Popen([sys.executable, "-c", _WORKER, str(n)]) for n in range(20)]
    assert all(w.wait(timeout=120) == 0 for w in workers)
    own = [s for s in sessions.all_sessions() if s.session_id.startswith("own-")]
    assert len(own) == 20
    shared = json.loads((state_dir / "sessions" / "local--shared.json").read_text())
    assert shared["extra"] == {str(n): "xxxxx" for n in range(20)}
