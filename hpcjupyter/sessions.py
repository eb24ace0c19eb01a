"""Local records of submitted sessions: one JSON file each, written atomically, never a token.

One file per session means two hpcjupyter processes never write the same file unless they work
on the same session; updates take a lock on that file so neither loses the other's change.
"""

from __future__ import annotations

import contextlib
import enum
import json
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from hpcjupyter import locks, paths
from hpcjupyter.errors import HpcJupyterError
from hpcjupyter.schedulers.base import JobState, JobStatus
from hpcjupyter.wait import end_reason


class SessionState(str, enum.Enum):
    """Where a session is: the job's state as the scheduler last said (PENDING, RUNNING, ENDED),
    or ours before and after it (SUBMITTING: no job id yet; FAILED: the scheduler never took it).
    A str, so records and --json keep plain names."""

    SUBMITTING = "SUBMITTING"
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    ENDED = "ENDED"
    FAILED = "FAILED"

    @classmethod
    def of(cls, state: JobState) -> SessionState:
        """The session state for a known job state (UNKNOWN is never recorded)."""
        return cls(state.name)

    @property
    def live(self) -> bool:
        """The scheduler may still have something to say about it."""
        return self not in (SessionState.ENDED, SessionState.FAILED)


@dataclass
class Session:
    """What we remember about one session; enough to find the job and its files again."""

    site: str
    session_id: str
    job_dir: str
    job_name: str
    submitted_at: str
    job_id: str | None = None
    state: SessionState = SessionState.SUBMITTING
    reason: str = ""
    node: str = ""
    local_port: int | None = None
    url: str = ""
    ended_at: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.site}--{self.session_id}"


STAMP = "%Y-%m-%dT%H:%M:%S%z"


def stamp() -> str:
    """Now, as records store it (local time with its offset)."""
    return time.strftime(STAMP)


def age(when: str) -> float:
    """Seconds since a stored stamp (0 when it cannot be read)."""
    try:
        return time.time() - time.mktime(time.strptime(when[:19], STAMP[:-2]))
    except ValueError:
        return 0.0


def record_status(session: Session, status: JobStatus) -> None:
    """Store the scheduler's latest view of the job (state, reason, node) in the record and in ``session``."""
    with updating(session.site, session.session_id) as saved:
        saved.state = SessionState.of(status.state)
        ended = status.state is JobState.ENDED
        saved.reason = (end_reason(status) if ended else status.reason) or saved.reason
        saved.node = status.node or saved.node
        if status.time_limit or status.time_used:
            # For `ls`: the time left is the limit less the time used, less the time since it was read.
            saved.extra.update(time_limit=status.time_limit, time_used=status.time_used, time_read=stamp())
        if ended:
            saved.url = ""
            saved.ended_at = saved.ended_at or stamp()
        vars(session).update(vars(saved))


def sessions_dir() -> Path:
    directory = paths.state_dir() / "sessions"
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    return directory


def _path(site: str, session_id: str) -> Path:
    return sessions_dir() / f"{site}--{session_id}.json"


def save(session: Session) -> None:
    """Write the record atomically: a reader sees the old or the new file, never half of one."""
    target = _path(session.site, session.session_id)
    fd, partial = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(asdict(session), handle, indent=2, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(partial)
        raise


def _load(path: Path) -> Session | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    known = {f.name for f in fields(Session)}
    try:
        session = Session(**{k: v for k, v in data.items() if k in known})
        session.state = SessionState(session.state)
    except (TypeError, ValueError):
        return None
    return session


@contextlib.contextmanager
def updating(site: str, session_id: str) -> Iterator[Session]:
    """Read-modify-write one record under an exclusive lock."""
    target = _path(site, session_id)
    with locks.exclusive(target.with_suffix(".lock")):
        session = _load(target)
        if session is None:
            raise HpcJupyterError(f"session record {target} is missing or unreadable.")
        yield session
        save(session)


def all_sessions() -> list[Session]:
    """Every readable record, oldest first."""
    found = [_load(p) for p in sessions_dir().glob("*.json") if not p.name.startswith(".")]
    return sorted((s for s in found if s is not None), key=lambda s: s.session_id)


def find(job_id: str, site: str | None = None) -> Session | None:
    """The record of a job id; with several sites holding the same id, ``site`` decides."""
    hits = [s for s in all_sessions() if s.job_id == job_id and (site is None or s.site == site)]
    if len(hits) > 1:
        raise HpcJupyterError(
            f"job id {job_id} is known on several sites: {', '.join(sorted({s.site for s in hits}))}.",
            "Say which with --site.",
        )
    return hits[0] if hits else None


def remove(session: Session) -> None:
    """Delete a record (and its lock file)."""
    target = _path(session.site, session.session_id)
    with locks.exclusive(target.with_suffix(".lock")):
        with contextlib.suppress(FileNotFoundError):
            target.unlink()
    with contextlib.suppress(OSError):
        target.with_suffix(".lock").unlink()
