"""PBS Pro / OpenPBS: ``qsub``; one ``qstat -f -F json -x`` answers for queued and finished jobs; ``qdel``."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from hpcjupyter.errors import HpcJupyterError
from hpcjupyter.schedulers.base import (
    JobState,
    JobStatus,
    Outcome,
    Query,
    QueryFailed,
    Scheduler,
    classify,
    first_line,
    lines,
    require_answer,
)
from hpcjupyter.transports.base import Result

if TYPE_CHECKING:
    from hpcjupyter.request import Request

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
WALLTIME_EXCEEDED = "-29"
"""Exit_status of a job the server killed at its walltime (JOB_EXEC_KILL_WALLTIME)."""
DELETED_WHILE_RUNNING = "271"
"""Exit_status of a running job ended by qdel: 256 + SIGTERM (openpbs-qstat-xf-json-qdel.txt)."""
_TERMINATED = re.compile(r"\band terminated\b")
_TERMINATED_BY = re.compile(r"\bterminated by (\S+)")
NEVER_STARTS: dict[str, str] = {
    "Can Never Run": "ask for fewer --cpus, less --memory or fewer --gpus: no node has that much",
}
"""Comments of a queued job that never clear on their own. Source: a real OpenPBS 23.06 server
(openpbs-qstat-f-queued-never-run.txt): the scheduler keeps such a job queued forever."""
JOB_ID = r"\d+(?:\[\d*\])?(?:\.[\w.-]+)?"
"""``1234.pbs-7``; the server suffix is part of the id and kept."""


def parse_qstat(result: Result, job_ids: Sequence[str] = ()) -> dict[str, JobStatus]:
    """``qstat -f -F json -x``: JSON on stdout for the jobs it knows, one error line on stderr per
    id it does not ("Unknown Job Id": not listed, so ended once the chain is done)."""
    require_answer(result, (UNKNOWN_ID, FINISHED))
    jobs = {
        m["id"]: JobStatus(m["id"], JobState.ENDED, native_state="F", reason="finished", outcome=Outcome.UNKNOWN)
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
    code = attr("Exit_status") if state is JobState.ENDED else ""
    ended = outcome(code, comment) if state is JobState.ENDED else None
    if ended is Outcome.CANCELLED:
        who = _TERMINATED_BY.search(comment)
        reason = f"terminated by {who.group(1)}" if who else "deleted (qdel)"
    return JobStatus(
        job_id=job_id,
        state=state,
        native_state=native,
        reason=reason,
        node=attr("exec_host").split("/")[0],
        time_used=attr("resources_used", "walltime"),
        time_limit=attr("Resource_List", "walltime"),
        start_estimate=attr("estimated", "start_time") if state is JobState.PENDING else "",
        exit_status=code,
        name=attr("Job_Name"),
        outcome=ended,
    )


def outcome(exit_status: str, comment: str) -> Outcome:
    """PBS marks how a job ended: -29 the walltime ran out; qdel adds "and terminated [by USER]"
    to the comment whatever the exit status (a job script that traps SIGTERM exits with its own
    status; one that does not shows 256 + 15 = 271); a job deleted before it ran has no status."""
    if exit_status == WALLTIME_EXCEEDED:
        return Outcome.TIMED_OUT
    if _TERMINATED.search(comment) or exit_status == DELETED_WHILE_RUNNING:
        return Outcome.CANCELLED
    if not exit_status:
        return Outcome.UNKNOWN
    return Outcome.COMPLETED if exit_status == "0" else Outcome.FAILED


def pbs_size(megabytes: int) -> str:
    """PBS Pro's memory spelling: whole gigabytes as 'gb' (the sites' docs use it), else 'mb'."""
    return f"{megabytes // 1024}gb" if megabytes % 1024 == 0 else f"{megabytes}mb"


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
    options = ("queue",)
    limit_option = "queue"
    template_filters = {"pbs_size": pbs_size}
    never_starts = NEVER_STARTS
    doctor_commands = ("qsub", "qstat", "qdel")
    doctor_answer = ("qstat", "-Q")

    def check_placement(self, ask: Callable[[Sequence[str]], Result], request: Request, site: str) -> str:
        """The queue exists, if one is named (most PBS sites route jobs by size: none is needed)."""
        if not request.queue:
            return "no queue named: the site's routing queues place the job"
        result = ask(("qstat", "-Q", request.queue))
        if result.ok:
            return f"queue {request.queue} exists"
        said = first_line(result.stderr or result.stdout)
        if "unknown queue" in said.lower():
            raise HpcJupyterError(
                f"queue '{request.queue}' does not exist on {site} ({said}).",
                "Leave job.queue out (most PBS sites route jobs by size), or set one that 'qstat -Q' lists.",
            )
        return f"queue {request.queue}: cannot tell ({said or 'qstat -Q failed'})"

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
