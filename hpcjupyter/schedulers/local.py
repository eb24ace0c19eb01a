"""The ``local`` scheduler: background processes on this machine, run by `hpcjupyter.schedulers.localjob`."""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from hpcjupyter import protocol
from hpcjupyter.schedulers import localjob
from hpcjupyter.schedulers.base import (
    JobState,
    JobStatus,
    Outcome,
    Query,
    QueryFailed,
    Scheduler,
    classify,
    lines,
    require_answer,
)
from hpcjupyter.transports.base import Result

STATES: dict[str, JobState] = {
    localjob.RUNNING: JobState.RUNNING,
    localjob.EXITED: JobState.ENDED,
    localjob.CANCELLED: JobState.ENDED,
    localjob.TIMEOUT: JobState.ENDED,
    localjob.LOST: JobState.ENDED,
}


def parse_status(result: Result, job_ids: Sequence[str] = ()) -> dict[str, JobStatus]:
    """One JSON object per line; a job localjob does not know is not listed."""
    require_answer(result, ())
    jobs = {}
    for line in lines(result.stdout):
        try:
            job = json.loads(line)
        except ValueError as exc:
            raise QueryFailed(f"localjob printed something that is not JSON: {line[:200]}") from exc
        native, state = classify(STATES, job["state"])
        code = job.get("exit_status", "")
        jobs[job["job_id"]] = JobStatus(
            job_id=job["job_id"],
            state=state,
            native_state=native,
            reason=job.get("reason", ""),
            node=job.get("node", ""),
            time_used=job.get("time_used", ""),
            time_limit=job.get("time_limit", ""),
            exit_status=code,
            name=job.get("name", ""),
            outcome=outcome(native, code) if state is JobState.ENDED else None,
        )
    return jobs


def outcome(native: str, exit_status: str) -> Outcome:
    """EXITED 0 is a clean end (Jupyter shut down from its menu); LOST left no exit status."""
    if native == localjob.CANCELLED:
        return Outcome.CANCELLED
    if native == localjob.TIMEOUT:
        return Outcome.TIMED_OUT
    if native == localjob.EXITED:
        return Outcome.COMPLETED if exit_status == "0" else Outcome.FAILED
    return Outcome.UNKNOWN


class Local(Scheduler):
    name = "local"
    states = STATES
    job_id_line = re.compile(f"(?P<id>{localjob.JOB_ID.pattern})")
    gone = ()
    on_this_machine = True

    def submit_argv(self, script_path: str, job_name: str | None = None) -> list[str]:
        return _localjob("submit", script_path, *(["--name", job_name] if job_name else []))

    def walltime_argv(self, walltime: str) -> list[str]:
        """The local script has no directive: localjob reports the walltime as the limit and ends the job at it."""
        return ["--walltime", walltime]

    def status_queries(self, job_ids: Sequence[str]) -> list[Query]:
        return [Query(_localjob("status", *job_ids), parse_status, tuple(job_ids))]

    def cancel_argv(self, job_ids: Sequence[str]) -> list[str]:
        return _localjob("cancel", *job_ids)

    def find_by_name_query(self, name: str) -> Query:
        return Query(_localjob("status", "--name", name), parse_status)

    def output_path(self, job_dir: str, job_id: str) -> str:
        return str(localjob.output_of(Path(job_dir) / protocol.SCRIPT))

    def job_path(self) -> tuple[str, ...]:
        """Jobs run on this machine: the Python environment hpcjupyter runs from comes first, so a
        jupyterlab installed beside it (a venv, ``pipx inject``) is found without activating
        anything. Not used when the profile names a venv or conda env."""
        return (os.path.dirname(sys.executable),)


def _localjob(*args: str) -> list[str]:
    return localjob.command(*args)
