"""What one session asks of the scheduler: profile defaults, then the user config, then flags.

Checked against the profile's limits here, before anything is rendered or submitted.
"""

from __future__ import annotations

import math
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from hpcjupyter import protocol
from hpcjupyter.errors import RequestError
from hpcjupyter.schedulers import get_scheduler
from hpcjupyter.schema import SCHEDULER_NAME, Profile, is_absolute_or_home, memory_mb

T = TypeVar("T")
_SESSION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def parse_memory_mb(text: str) -> int:
    """'16G', '16gb', '512M', '2T' → megabytes; bare numbers are megabytes, as in Slurm."""
    try:
        return memory_mb(text)
    except ValueError as exc:
        raise RequestError(f"{exc}.", "For example: --memory 16G (units M, G, T).") from None


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
        return protocol.job_name(self.session_id)

    @property
    def walltime(self) -> str:
        return walltime(self.hours)


_TEXT_KEYS = ("account", "partition", "qos", "queue", "conda_env", "workdir")


def build_request(profile: Profile, flags: dict[str, Any], session_id: str | None = None) -> Request:
    """Combine the (already user-merged) profile with command-line flags and check the limits."""
    job = profile.job
    given = {k: v for k, v in flags.items() if v is not None}
    if "memory" in given and not job.allow_memory:
        raise RequestError(
            f"site '{profile.name}' does not accept a memory request: memory comes with the cores.",
            "Ask for more --cpus instead of --memory.",
        )
    for key in _TEXT_KEYS + ("memory",):
        if key in given:
            _check_text(key, given[key])
    session_id = session_id or new_session_id()
    if not _SESSION_ID.match(session_id):
        raise RequestError(f"session id {session_id!r} may hold only letters, digits and _ . - .")
    memory = given.get("memory", job.memory)
    request = Request(
        site=profile.name,
        session_id=session_id,
        hours=_number("hours", given.get("hours", job.hours), float),
        cpus=_number("cpus", given.get("cpus", job.cpus), int),
        memory_mb=parse_memory_mb(memory) if memory and job.allow_memory else None,
        gpus=_number("gpus", given.get("gpus", job.gpus), int),
        account=given.get("account", job.account),
        partition=given.get("partition", job.partition),
        qos=given.get("qos", job.qos),
        queue=given.get("queue", job.queue),
        conda_env=given.get("conda_env", profile.env.conda_env),
        workdir=given.get("workdir", profile.env.workdir),
    )
    check_request(profile, request, hours_by_default="hours" not in given)
    return request


def _check_text(key: str, value: Any) -> None:
    """A flag's text must be one line: a newline would end a header line or a shell command."""
    flag = "--" + key.replace("_", "-")
    if not isinstance(value, str):
        raise RequestError(f"{flag} must be text (got {value!r}).")
    if "\n" in value or "\r" in value:
        raise RequestError(f"{flag} must be one line (got a newline in {value!r}).")


def _number(key: str, value: Any, kind: Callable[[Any], T]) -> T:
    """``value`` as ``kind``, or an error naming the flag (a bool is not a number here)."""
    try:
        if isinstance(value, bool):
            raise ValueError
        return kind(value)
    except (TypeError, ValueError):
        raise RequestError(f"--{key} must be a number (got {value!r}).") from None


def check_request(profile: Profile, request: Request, hours_by_default: bool = False) -> None:
    """Refuse what the site would refuse, with the limit and where it comes from. The effective
    request is checked (a default over a limit is only an error when no --hours replaces it)."""
    _check_hours(profile, request, hours_by_default)
    job = profile.job
    if request.cpus <= 0:
        raise RequestError(f"--cpus must be at least 1 (got {request.cpus}).")
    if request.gpus < 0:
        raise RequestError(f"--gpus cannot be negative (got {request.gpus}).")
    if request.gpus and job.max_gpus is not None and request.gpus > job.max_gpus:
        what = "has no GPUs" if job.max_gpus == 0 else f"allows at most {job.max_gpus} GPUs"
        raise RequestError(
            f"site '{profile.name}' {what} (asked for {request.gpus}).",
            "Drop --gpus, or use a site or partition with GPUs.",
        )
    if job.account_required and not request.account:
        raise RequestError(
            f"site '{profile.name}' needs a budget account for every job.",
            f'Give --account CODE, or set it once in your config:\n  [sites.{profile.name}]\n  job.account = "CODE"',
        )
    if not request.account and "{account}" in profile.env.remote_dir:
        raise RequestError(
            f"site '{profile.name}' keeps jobs under {profile.env.remote_dir}, which needs an account.",
            "Give --account CODE, or set job.account in your config.",
        )
    _check_names(profile, request)
    if request.conda_env and not profile.env.conda:
        raise RequestError(
            f"--conda-env needs conda, and site '{profile.name}' has no 'env.conda' (the conda install prefix).",
            f'Set it in your config:\n  [sites.{profile.name}]\n  env.conda = "~/miniforge3"',
        )
    if request.conda_env and request.conda_env.startswith("-"):
        raise RequestError(f"--conda-env must be an environment name or path (got {request.conda_env!r}).")
    if request.workdir and not is_absolute_or_home(request.workdir):
        raise RequestError(
            f"--workdir must be an absolute path or start with ~/ (got {request.workdir!r}).",
            "The job does not start in the directory you submit from; say where, e.g. --workdir ~/project.",
        )


def _check_hours(profile: Profile, request: Request, by_default: bool = False) -> None:
    """Walltime is positive, at least a minute, and within the qos's (or queue's) limit."""
    hours = request.hours
    if not math.isfinite(hours) or hours <= 0:
        raise RequestError(f"--hours must be more than 0 (got {hours:g}).", "For 30 minutes, give --hours 0.5.")
    if round(hours * 3600) < 60:
        raise RequestError(f"--hours {hours:g} is under a minute.", "Give at least --hours 0.02 (one minute).")
    job = profile.job
    kind = get_scheduler(profile.scheduler).limit_option or "qos"
    chosen = getattr(request, kind)
    limit = job.qos_max_hours.get(chosen or "", job.max_hours)
    # Compared in whole seconds, as the scheduler sees it: --hours 0.3333 and 1/3 both mean 20 min.
    if limit is not None and round(hours * 3600) > round(limit * 3600):
        if chosen in job.qos_max_hours:
            where = f"{kind} '{chosen}'"
        else:
            where = f"site '{profile.name}'" + (f" ({kind} '{chosen}')" if chosen else "")
        asked = f"the default walltime (job.hours = {hours:g})" if by_default else f"--hours {hours:g}"
        raise RequestError(
            f"{asked} is over the limit of {limit:g} h ({walltime(limit)}) for {where}.",
            f"Ask for at most {limit:g} hours"
            + (" with --hours, or set a lower job.hours in the profile" if by_default else "")
            + f", or choose a {kind} that allows longer"
            + (
                " ('hpcjupyter sites show " + profile.name + " --origin --files' shows which file sets each)."
                if by_default
                else "."
            ),
        )


def _check_names(profile: Profile, request: Request) -> None:
    """Scheduler names are plain (they go unquoted into directives) and exist on this scheduler."""
    options = get_scheduler(profile.scheduler).options
    for key in ("account", "partition", "qos", "queue"):
        value = getattr(request, key)
        if value is None:
            continue
        if not SCHEDULER_NAME.match(value):
            raise RequestError(
                f"--{key} {value!r} is not a valid {key} name.",
                "Use letters, digits and _ . , @ + - (starting with a letter or digit), as the scheduler does.",
            )
        if key != "account" and key not in options:
            raise RequestError(
                f"--{key} does not apply to site '{profile.name}', which uses {profile.scheduler}.",
                f"Options for {profile.scheduler}: "
                + (", ".join("--" + k for k in options) or "none (it runs on this machine)")
                + ".",
            )
