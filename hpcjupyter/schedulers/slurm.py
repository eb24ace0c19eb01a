"""Slurm: ``sbatch --parsable``; ``squeue`` for the queue, ``sacct`` for history, ``scontrol`` without accounting.

All three outputs go through one row converter keyed by Slurm's own field names, so a field
means the same thing whichever command printed it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from hpcjupyter.errors import HpcJupyterError
from hpcjupyter.schedulers.base import (
    JobState,
    JobStatus,
    Outcome,
    Query,
    Scheduler,
    classify,
    first_line,
    require_answer,
)
from hpcjupyter.transports.base import Result

if TYPE_CHECKING:
    from hpcjupyter.request import Request

P, R, E = JobState.PENDING, JobState.RUNNING, JobState.ENDED
_TABLE: tuple[tuple[str, str, JobState], ...] = (
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
STATES: dict[str, JobState] = {code: state for compact, full, state in _TABLE for code in (compact, full)}
"""Compact codes (squeue ``%t``) and full names (squeue ``%T``, sacct, scontrol)."""

OUTCOMES: dict[str, Outcome] = {
    "COMPLETED": Outcome.COMPLETED,
    "CANCELLED": Outcome.CANCELLED,
    "TIMEOUT": Outcome.TIMED_OUT,
    "DEADLINE": Outcome.TIMED_OUT,
    **dict.fromkeys(
        ("FAILED", "NODE_FAIL", "BOOT_FAIL", "OUT_OF_MEMORY", "PREEMPTED", "REVOKED", "SPECIAL_EXIT"), Outcome.FAILED
    ),
}
"""How each ending state ended, by its full name; COMPLETED with a non-zero exit status failed."""
_FULL_NAME = {compact: full for compact, full, _ in _TABLE}

NEVER_STARTS: dict[str, str] = {
    "PartitionTimeLimit": "ask for fewer --hours: the partition's time limit is shorter",
    "PartitionNodeLimit": "ask for fewer nodes or --cpus, or choose another --partition",
    "QOSMaxWallDurationPerJobLimit": "ask for fewer --hours, or choose a --qos that allows longer",
    "AssocMaxWallDurationPerJobLimit": "ask for fewer --hours: your account's limit is shorter",
    "BadConstraints": "the job's constraints (--cpus, --gpus, memory or directives) match no node; ask for less",
    "InvalidAccount": "check --account: 'sacctmgr show assoc user=$USER' lists yours",
    "InvalidQOS": "check --qos: 'sacctmgr show assoc user=$USER' lists the QoS you may use",
}
"""Pending reasons that never clear on their own, with what to change. Source: Slurm's job reason
codes (slurm.schedmd.com/job_reason_codes.html) and sbatch(1) on --time ("left in a PENDING state
(possibly indefinitely)"). Reasons that clear when other jobs end (Priority, Resources,
QOSMaxCpuPerUserLimit, ReqNodeNotAvail) are left out on purpose."""

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
            status = row_status(dict(zip(fields, values, strict=True)))
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
    code = exit_status(pick("ExitCode")) if state is JobState.ENDED else ""
    return JobStatus(
        job_id=pick("JobID", "JobId"),
        state=state,
        native_state=native,
        reason=reason,
        node=pick("BatchHost") or first_host(pick("NodeList")),
        time_used=pick("TimeUsed", "Elapsed", "RunTime"),
        time_limit=pick("TimeLimit", "Timelimit"),
        start_estimate=pick("StartTime", "Start") if state is JobState.PENDING else "",
        exit_status=code,
        name=pick("Name", "JobName"),
        outcome=outcome(native, code) if state is JobState.ENDED else None,
    )


def outcome(native: str, code: str) -> Outcome:
    """The outcome of an ended job from its state (compact or full) and exit status."""
    found = OUTCOMES.get(_FULL_NAME.get(native, native), Outcome.UNKNOWN)
    return Outcome.FAILED if found is Outcome.COMPLETED and code not in ("", "0") else found


def first_host(nodelist: str) -> str:
    """The first host of a Slurm hostlist: ``nid[001-004,010]`` gives ``nid001``, ``a,b`` gives ``a``."""
    top = re.match(r"(?:[^,\[]|\[[^\]]*\])*", nodelist)
    return re.sub(r"\[([^\],-]*)[^\]]*\]", r"\1", top.group(0) if top else "")


def exit_status(code: str) -> str:
    """``2:0`` (exit 2, no signal) gives ``2``; killed by a signal stays ``0:15``."""
    value, _, signal = code.partition(":")
    return value if signal in ("", "0") else code


# ---- doctor: what the login node says about partitions and associations (pure) -------------


def partitions(text: str) -> tuple[list[str], str | None]:
    """``sinfo -h -o %P`` → the partitions and the default one (the one marked ``*``)."""
    names, default = [], None
    for line in text.split():
        name = line.rstrip("*")
        if line.endswith("*"):
            default = name
        if name not in names:
            names.append(name)
    return names, default


def associations(text: str) -> dict[str, set[str]]:
    """``sacctmgr -n -P show assoc format=account,qos`` → account → the QoS it may use."""
    found: dict[str, set[str]] = {}
    for line in text.splitlines():
        if "|" not in line:
            continue
        account, qos = line.split("|")[:2]
        found.setdefault(account.strip().lower(), set()).update(q for q in qos.strip().split(",") if q)
    return found


def association_problem(account: str | None, qos: str | None, assoc: dict[str, set[str]]) -> str:
    """Why the account or QoS is not the user's ("" when both are, as far as Slurm says)."""
    if account and account.lower() not in assoc:
        return f"account '{account}' is not one of yours (yours: {', '.join(sorted(assoc)) or 'none'})"
    allowed = assoc[account.lower()] if account else set().union(*assoc.values())
    if qos and qos not in allowed:
        whose = f"account '{account}'" if account else "your accounts"
        return f"QoS '{qos}' is not allowed for {whose} (allowed: {', '.join(sorted(allowed)) or 'none'})"
    return ""


ASSOCIATIONS = ("sh", "-c", 'sacctmgr -n -P show assoc user="$(id -un)" format=account,qos')


class Slurm(Scheduler):
    name = "slurm"
    states = STATES
    job_id_line = re.compile(r"(?:Submitted batch job )?(?P<id>\d+(?:_\d+)?)(?:;\S+)?")
    gone = (INVALID_ID, re.compile(r"already completing or completed"))
    options = ("partition", "qos")
    limit_option = "qos"
    job_id_placeholder = "%j"
    never_starts = NEVER_STARTS
    doctor_commands = ("sbatch", "squeue", "scancel", "sacct")
    doctor_answer = ("sinfo", "-h", "-o", "%P")
    doctor_nodes = ("sinfo", "-h", "-N", "-o", "%N")

    def output_path(self, job_dir: str, job_id: str) -> str:
        """Always given with ``--output`` (Cirrus's docs name a different default than Slurm's)."""
        return f"{job_dir}/slurm-{job_id}.out"

    def check_placement(self, ask: Callable[[Sequence[str]], Result], request: Request, site: str) -> str:
        """The partition exists (sinfo); the account and QoS are the user's (sacctmgr, where it answers)."""
        names, default = partitions(ask(self.doctor_answer).stdout)
        if request.partition and request.partition not in names:
            raise HpcJupyterError(
                f"partition '{request.partition}' does not exist on {site} (partitions: {', '.join(names)}).",
                f"Set job.partition to one of them (in the profile, or in [sites.{site}] of your config).",
            )
        found = [f"partition {request.partition} exists" if request.partition else f"default partition {default}"]
        assoc = ask(ASSOCIATIONS)
        rows = associations(assoc.stdout) if assoc.ok else {}
        if not rows:
            why = first_line(assoc.stderr) if not assoc.ok else "no associations listed"
            return "; ".join(found + [f"account and QoS: cannot tell ({why or 'sacctmgr failed'})"])
        problem = association_problem(request.account, request.qos, rows)
        if problem:
            raise HpcJupyterError(
                f"{problem}.",
                f"Set job.account/job.qos in [sites.{site}] of your config to one listed by "
                "'sacctmgr show assoc user=$USER'.",
            )
        found += [f"account {request.account} is yours"] if request.account else []
        found += [f"QoS {request.qos} allowed"] if request.qos else []
        return "; ".join(found)

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
