"""PBS Pro / OpenPBS: ``qsub``; one ``qstat -f -F json -x`` answers for queued and finished jobs; ``qdel``."""

from __future__ import annotations

import functools
import json
import re
from typing import Any, Mapping, Sequence

from hpcjupyter.remote.base import Result
from hpcjupyter.schedulers.base import (
    JobState,
    JobStatus,
    Query,
    QueryFailed,
    Scheduler,
    classify,
    lines,
    require_answer,
)

P, R, E = JobState.PENDING, JobState.RUNNING, JobState.ENDED
STATES: dict[str, JobState] = {
    "Q": P,  # queued
    "H": P,  # held
    "W": P,  # waiting for its start time
    "T": P,  # in transit
    "M": P,  # moved to another server
    "S": P,  # suspended
    "U": P,  # suspended: workstation busy
    "R": R,  # running
    "B": R,  # array job: begun
    "E": R,  # exiting
    "F": E,  # finished
    "X": E,  # subjob finished
}

UNKNOWN_ID = re.compile(r"Unknown Job Id")
FINISHED = re.compile(r"Job has finished")
_FINISHED_ID = re.compile(r"^\w+: (?P<id>\S+) Job has finished")
"""qstat's form: ``qstat: 1008.srv Job has finished, use -x or -H ...`` (without ``-x``)."""
JOB_ID = r"\d+(?:\[\d*\])?(?:\.[\w.-]+)?"
"""``1234.pbs-7``; the server suffix is part of the id and kept."""


def parse_qstat(result: Result, job_ids: Sequence[str] = ()) -> dict[str, JobStatus]:
    """``qstat -f -F json -x``: JSON on stdout for the jobs it knows, one error line on stderr per
    id it does not ("Unknown Job Id": not listed, so ended once the chain is done)."""
    require_answer(result, (UNKNOWN_ID, FINISHED))
    jobs = {
        m["id"]: JobStatus(m["id"], JobState.ENDED, native_state="F", reason="finished")
        for line in lines(result.stderr)
        if (m := _FINISHED_ID.search(line))
    }
    text = result.stdout.strip()
    if text:
        try:
            data = json.loads(text, strict=False)  # strict=False: raw control characters in values
        except ValueError as exc:
            raise QueryFailed(f"qstat printed something that is not JSON ({exc}): {text[:200]}") from exc
        jobs.update({job_id: job_status(job_id, attrs) for job_id, attrs in data.get("Jobs", {}).items()})
    return jobs


def job_status(job_id: str, attrs: Mapping[str, Any]) -> JobStatus:
    """One job from its qstat JSON attributes (values may be strings or numbers)."""

    def attr(*path: str) -> str:
        value: Any = attrs
        for key in path:
            value = value.get(key, "") if isinstance(value, Mapping) else ""
        return str(value)

    native, state = classify(STATES, attr("job_state"))
    comment = attr("comment")
    reason = "" if state is JobState.RUNNING else comment
    if native == "H":
        reason = f"held: {comment}" if comment else "held"
    return JobStatus(
        job_id=job_id,
        state=state,
        native_state=native,
        reason=reason,
        node=attr("exec_host").split("/")[0],
        time_used=attr("resources_used", "walltime"),
        time_limit=attr("Resource_List", "walltime"),
        start_estimate=attr("estimated", "start_time") if state is JobState.PENDING else "",
        exit_status=attr("Exit_status") if state is JobState.ENDED else "",
        name=attr("Job_Name"),
    )


def parse_qselect(result: Result, job_ids: Sequence[str] = (), *, name: str = "") -> dict[str, JobStatus]:
    """``qselect`` prints ids only: the state stays UNKNOWN until `lookup` asks qstat."""
    require_answer(result, ())
    ids = [line for line in lines(result.stdout) if re.fullmatch(JOB_ID, line)]
    return {job_id: JobStatus(job_id, JobState.UNKNOWN, name=name) for job_id in ids}


class PBS(Scheduler):
    name = "pbs"
    states = STATES
    job_id_line = re.compile(f"(?P<id>{JOB_ID})")
    gone = (UNKNOWN_ID, FINISHED)

    def submit_argv(self, script_path: str, job_name: str | None = None) -> list[str]:
        return ["qsub", *(["-N", job_name] if job_name else []), script_path]

    def status_queries(self, job_ids: Sequence[str]) -> list[Query]:
        """``-x`` includes finished jobs still in the server's history, so one query is the whole chain."""
        ids = tuple(job_ids)
        return [Query(["qstat", "-f", "-F", "json", "-x", *ids], parse_qstat, ids)]

    def cancel_argv(self, job_ids: Sequence[str]) -> list[str]:
        return ["qdel", *job_ids]

    def find_by_name_query(self, name: str) -> Query:
        """``qselect -N`` matches the name exactly; without ``-u`` it is any user's, so the name
        must carry a random token."""
        return Query(["qselect", "-N", name], functools.partial(parse_qselect, name=name))
