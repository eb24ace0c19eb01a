"""Slurm: ``sbatch --parsable``; ``squeue`` for the queue, ``sacct`` for history, ``scontrol`` without accounting.

All three outputs go through one row converter keyed by Slurm's own field names, so a field
means the same thing whichever command printed it.
"""

from __future__ import annotations

import re
from typing import Mapping, Sequence

from hpcjupyter.remote.base import Result
from hpcjupyter.schedulers.base import JobState, JobStatus, Query, Scheduler, classify, require_answer

P, R, E = JobState.PENDING, JobState.RUNNING, JobState.ENDED
STATES: dict[str, JobState] = {
    code: state
    for compact, full, state in (
        ("PD", "PENDING", P),
        ("CF", "CONFIGURING", P),
        ("RQ", "REQUEUED", P),
        ("RH", "REQUEUE_HOLD", P),
        ("RF", "REQUEUE_FED", P),
        ("RD", "RESV_DEL_HOLD", P),
        ("S", "SUSPENDED", P),
        ("ST", "STOPPED", P),
        ("R", "RUNNING", R),
        ("CG", "COMPLETING", R),
        ("SI", "SIGNALING", R),
        ("SO", "STAGE_OUT", R),
        ("CD", "COMPLETED", E),
        ("CA", "CANCELLED", E),
        ("F", "FAILED", E),
        ("TO", "TIMEOUT", E),
        ("NF", "NODE_FAIL", E),
        ("BF", "BOOT_FAIL", E),
        ("OOM", "OUT_OF_MEMORY", E),
        ("DL", "DEADLINE", E),
        ("PR", "PREEMPTED", E),
        ("RV", "REVOKED", E),
        ("SE", "SPECIAL_EXIT", E),
    )
    for code in (compact, full)
}
"""Compact codes (squeue ``%t``) and full names (squeue ``%T``, sacct, scontrol)."""

SQUEUE_FIELDS: dict[str, str] = {
    "JobID": "%i",
    "State": "%T",
    "Reason": "%r",
    "BatchHost": "%B",
    "NodeList": "%N",
    "TimeUsed": "%M",
    "TimeLimit": "%l",
    "StartTime": "%S",
    "Name": "%j",
}
"""squeue fields by their ``--Format`` names. No widths: nothing is padded or truncated. The job
name is last because it is the only free text: it may contain the ``|`` separator."""
SQUEUE_FORMAT = "|".join(SQUEUE_FIELDS.values())

SACCT_FIELDS = ("JobID", "State", "ExitCode", "NodeList", "Elapsed", "Timelimit", "Start", "JobName")
"""Fields every sacct since Slurm 2.x knows (an unknown field would fail every history query)."""

INVALID_ID = re.compile(r"Invalid job id specified")
"""squeue and scontrol for one id the controller has purged (scancel says it too)."""
NO_ACCOUNTING = re.compile(r"accounting storage is disabled", re.IGNORECASE)

_NOTHING = {"", "(null)", "N/A", "n/a", "None", "None assigned", "Unknown"}


def parse_squeue(result: Result, job_ids: Sequence[str] = ()) -> dict[str, JobStatus]:
    """Our squeue format. ``Invalid job id specified`` (a single purged id) means "not queued": ask history."""
    require_answer(result, (INVALID_ID,))
    return parse_rows(result.stdout, tuple(SQUEUE_FIELDS))


def parse_sacct(result: Result, job_ids: Sequence[str] = ()) -> dict[str, JobStatus]:
    """``sacct -X -P -n``; with accounting disabled it knows nothing, and the chain goes on to scontrol."""
    require_answer(result, (NO_ACCOUNTING,))
    return {} if NO_ACCOUNTING.search(result.stderr + result.stdout) else parse_rows(result.stdout, SACCT_FIELDS)


def parse_scontrol(result: Result, job_ids: Sequence[str] = ()) -> dict[str, JobStatus]:
    """``scontrol show job``: blank-line separated records of ``Key=Value`` pairs."""
    require_answer(result, (INVALID_ID,))
    jobs = {}
    for record in re.split(r"\n\s*\n", result.stdout):
        row = dict(re.findall(r"(\w[\w:/]*)=(.*?)(?=\s+\w[\w:/]*=|\s*$)", record, re.MULTILINE))
        if row.get("JobId"):
            status = row_status(row)
            jobs[status.job_id] = status
    return jobs


def parse_rows(text: str, fields: Sequence[str], sep: str = "|") -> dict[str, JobStatus]:
    """``sep``-separated rows, one job each, in the order of ``fields`` (Slurm field names).

    The last field may itself contain ``sep``; lines with too few fields (banners) are skipped.
    """
    jobs = {}
    for line in text.splitlines():
        values = line.split(sep, len(fields) - 1)
        if len(values) == len(fields):
            status = row_status(dict(zip(fields, values)))
            if status.job_id:
                jobs[status.job_id] = status
    return jobs


def row_status(row: Mapping[str, str]) -> JobStatus:
    """One job from Slurm fields, whichever command named them (squeue, sacct or scontrol)."""

    def pick(*names: str) -> str:
        return next((v.strip() for n in names if (v := row.get(n, "")).strip() not in _NOTHING), "")

    text = pick("State", "JobState")
    native, state = classify(STATES, text)
    reason = pick("Reason")
    if state is JobState.ENDED and not reason and text != native:
        reason = text  # e.g. "CANCELLED by 1234"
    return JobStatus(
        job_id=pick("JobID", "JobId"),
        state=state,
        native_state=native,
        reason=reason,
        node=pick("BatchHost") or first_host(pick("NodeList")),
        time_used=pick("TimeUsed", "Elapsed", "RunTime"),
        time_limit=pick("TimeLimit", "Timelimit"),
        start_estimate=pick("StartTime", "Start") if state is JobState.PENDING else "",
        exit_status=exit_status(pick("ExitCode")) if state is JobState.ENDED else "",
        name=pick("Name", "JobName"),
    )


def first_host(nodelist: str) -> str:
    """The first host of a Slurm hostlist: ``nid[001-004,010]`` gives ``nid001``, ``a,b`` gives ``a``."""
    top = re.match(r"(?:[^,\[]|\[[^\]]*\])*", nodelist)
    return re.sub(r"\[([^\],-]*)[^\]]*\]", r"\1", top.group(0) if top else "")


def exit_status(code: str) -> str:
    """``2:0`` (exit 2, no signal) gives ``2``; killed by a signal stays ``0:15``."""
    value, _, signal = code.partition(":")
    return value if signal in ("", "0") else code


class Slurm(Scheduler):
    name = "slurm"
    states = STATES
    job_id_line = re.compile(r"(?:Submitted batch job )?(?P<id>\d+(?:_\d+)?)(?:;\S+)?")
    gone = (INVALID_ID, re.compile(r"already completing or completed"))

    def submit_argv(self, script_path: str, job_name: str | None = None) -> list[str]:
        return ["sbatch", "--parsable", *([f"--job-name={job_name}"] if job_name else []), script_path]

    def status_queries(self, job_ids: Sequence[str]) -> list[Query]:
        """squeue (``-j``: cheap for one id, and the purged-id error is recognised), sacct, then
        scontrol per id (it takes one id) for sites without accounting."""
        ids = tuple(job_ids)
        joined = ",".join(ids)
        return [
            Query(["squeue", "-h", "-t", "all", "-j", joined, "-o", SQUEUE_FORMAT], parse_squeue, ids),
            Query(["sacct", "-X", "-P", "-n", "-j", joined, "-o", ",".join(SACCT_FIELDS)], parse_sacct, ids),
            *(Query(["scontrol", "show", "job", i], parse_scontrol, (i,)) for i in ids),
        ]

    def cancel_argv(self, job_ids: Sequence[str]) -> list[str]:
        return ["scancel", *job_ids]

    def find_by_name_query(self, name: str) -> Query:
        """squeue's ``--name`` matches exactly. No ``--me`` (needs Slurm 20.11): the name carries a
        random token, which is what makes it the user's job."""
        return Query(["squeue", "-h", "-t", "all", "-n", name, "-o", SQUEUE_FORMAT], parse_squeue)
