"""What one session asks of the scheduler: profile defaults, then the user config, then flags.

Checked against the profile's limits here, before anything is rendered or submitted.
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from hpcjupyter.errors import RequestError
from hpcjupyter.schema import Profile

_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?\s*$", re.IGNORECASE)
_UNIT_MB = {"k": 1 / 1024, "": 1, "m": 1, "g": 1024, "t": 1024 * 1024}


def parse_memory_mb(text: str) -> int:
    """'16G', '16gb', '512M', '2T' → megabytes; bare numbers are megabytes, as in Slurm."""
    match = _MEMORY.match(text)
    if not match:
        raise RequestError(
            f"memory {text!r} is not understood.",
            "Give a number with a unit: 512M, 16G, 1T.",
        )
    number, unit = float(match.group(1)), match.group(2).lower()
    megabytes = int(number * _UNIT_MB[unit])
    if megabytes <= 0:
        raise RequestError(f"memory {text!r} must be more than zero.")
    return megabytes


def walltime(hours: float) -> str:
    """Hours → HH:MM:SS, as both Slurm's --time and PBS's walltime take it."""
    seconds = round(hours * 3600)
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def new_session_id() -> str:
    """Sortable, unique, short: it names the job directory and tags the job name."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


@dataclass(frozen=True)
class Request:
    """Everything the batch script needs that is not in the profile's [env] table."""

    site: str
    session_id: str
    hours: float
    cpus: int
    memory_mb: int | None
    gpus: int
    account: str | None
    partition: str | None
    qos: str | None
    queue: str | None
    conda_env: str | None
    workdir: str | None

    @property
    def job_name(self) -> str:
        return f"hpcj-{self.session_id}"

    @property
    def walltime(self) -> str:
        return walltime(self.hours)


REQUEST_KEYS = ("hours", "cpus", "memory", "gpus", "account", "partition", "qos", "queue", "conda_env", "workdir")


def build_request(profile: Profile, flags: dict[str, Any], session_id: str | None = None) -> Request:
    """Combine the (already user-merged) profile with command-line flags and check the limits."""
    job = profile.job
    given = {k: v for k, v in flags.items() if v is not None}
    memory = given.get("memory", job.memory)
    if "memory" in given and not job.allow_memory:
        raise RequestError(
            f"site '{profile.name}' does not accept a memory request: memory comes with the cores.",
            "Ask for more --cpus instead of --memory.",
        )
    request = Request(
        site=profile.name,
        session_id=session_id or new_session_id(),
        hours=float(given.get("hours", job.hours)),
        cpus=int(given.get("cpus", job.cpus)),
        memory_mb=parse_memory_mb(memory) if memory and job.allow_memory else None,
        gpus=int(given.get("gpus", job.gpus)),
        account=given.get("account", job.account),
        partition=given.get("partition", job.partition),
        qos=given.get("qos", job.qos),
        queue=given.get("queue", job.queue),
        conda_env=given.get("conda_env", profile.env.conda_env),
        workdir=given.get("workdir", profile.env.workdir),
    )
    check_request(profile, request)
    return request


def check_request(profile: Profile, request: Request) -> None:
    """Refuse what the site would refuse, with the limit and where it comes from."""
    job = profile.job
    if request.hours <= 0:
        raise RequestError(f"--hours must be more than 0 (got {request.hours:g}).", "For 30 minutes, give --hours 0.5.")
    limit_name = request.qos if profile.scheduler == "slurm" else request.queue
    kind = "qos" if profile.scheduler == "slurm" else "queue"
    limit = job.qos_max_hours.get(limit_name or "", job.max_hours)
    if limit is not None and request.hours > limit:
        where = f"{kind} '{limit_name}'" if limit_name in job.qos_max_hours else f"site '{profile.name}'"
        raise RequestError(
            f"--hours {request.hours:g} is over the limit of {limit:g} h for {where}.",
            f"Ask for at most {limit:g} hours, or choose a {kind} that allows longer.",
        )
    if request.cpus <= 0:
        raise RequestError(f"--cpus must be at least 1 (got {request.cpus}).")
    if request.gpus < 0:
        raise RequestError(f"--gpus cannot be negative (got {request.gpus}).")
    if request.gpus and job.max_gpus is not None and request.gpus > job.max_gpus:
        raise RequestError(
            f"site '{profile.name}' allows at most {job.max_gpus} GPUs (asked for {request.gpus}).",
            "Drop --gpus, or use a site or partition with GPUs.",
        )
    if job.account_required and not request.account:
        raise RequestError(
            f"site '{profile.name}' needs a budget account for every job.",
            f"Give --account CODE, or set it once in your config:\n  [sites.{profile.name}]\n  job.account = \"CODE\"",
        )
    for key in ("account", "partition", "qos", "queue", "conda_env", "workdir"):
        value = getattr(request, key)
        if value is not None and ("\n" in value or "\r" in value):
            raise RequestError(f"--{key.replace('_', '-')} must be one line (got a newline in {value!r}).")

