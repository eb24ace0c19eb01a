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
from hpcjupyter.schema import SCHEDULER_NAME, PlacementRule, Profile, is_absolute_or_home, memory_mb, project_code

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
    gpu_type: str | None = None
    """The GPU model, when GPUs are asked for and the site names models (``job.gpu_type``)."""
    ask_cpus: bool = True
    """False where the partition/qos/queue may not be given a cpu count (the site sizes the job)."""
    exclusive: bool = False
    """True where the partition/qos/queue takes whole nodes (a rule's ``exclusive``)."""

    @property
    def job_name(self) -> str:
        return protocol.job_name(self.session_id)

    @property
    def walltime(self) -> str:
        return walltime(self.hours)


_TEXT_KEYS = ("account", "partition", "qos", "queue", "conda_env", "workdir", "gpu_type")


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
    if memory and job.allow_memory:
        memory_megabytes: int | None = parse_memory_mb(memory)
    else:
        memory_megabytes = None
    partition, qos, queue = (given.get(k, getattr(job, k)) for k in ("partition", "qos", "queue"))
    rules = placement_rules(profile, partition, qos, queue)
    for what, rule in rules:
        if not rule.cpus and "cpus" in given:
            raise RequestError(
                f"{what} takes no cpu count: the site rejects --ntasks/--cpus-per-task there{_cite(rule)}.",
                "Leave out --cpus: the job is sized by its GPUs (or by the node).",
            )
        if not rule.memory and "memory" in given:
            raise RequestError(
                f"{what} takes no memory request: the site rejects --mem there{_cite(rule)}.",
                "Leave out --memory.",
            )
    gpus = _number("gpus", given.get("gpus", job.gpus), int)
    request = Request(
        site=profile.name,
        session_id=session_id,
        hours=_number("hours", given.get("hours", job.hours), float),
        cpus=_number("cpus", given.get("cpus", job.cpus), int),
        memory_mb=memory_megabytes if all(rule.memory for _, rule in rules) else None,
        gpus=gpus,
        account=given.get("account", job.account),
        partition=partition,
        qos=qos,
        queue=queue,
        conda_env=given.get("conda_env", profile.env.conda_env),
        workdir=given.get("workdir", profile.env.workdir),
        gpu_type=given.get("gpu_type", job.gpu_type) if gpus else None,
        ask_cpus=all(rule.cpus for _, rule in rules),
        exclusive=any(rule.exclusive for _, rule in rules),
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
        what = "has no GPUs" if job.max_gpus == 0 else f"allows at most {job.max_gpus} GPUs per job"
        raise RequestError(
            f"site '{profile.name}' {what} (asked for {request.gpus}){_source(profile, 'job.max_gpus')}.",
            "Drop --gpus, or use a site or partition with GPUs.",
        )
    if job.max_cpus is not None and request.ask_cpus and request.cpus > job.max_cpus:
        raise RequestError(
            f"site '{profile.name}' allows at most {job.max_cpus} cpus per job (asked for {request.cpus})"
            f"{_source(profile, 'job.max_cpus')}.",
            f"Ask for --cpus {job.max_cpus} or fewer.",
        )
    if request.account and job.account_refused:
        raise RequestError(
            f"site '{profile.name}' takes no account: {job.account_refused}.",
            "Leave out --account (and job.account in your config).",
        )
    if request.gpu_type:
        _check_gpu_type(profile, request.gpu_type)
    if request.conda_env == "base" and profile.env.conda_env_required:
        raise RequestError(*_no_base(profile))
    if job.account_required and not request.account:
        raise RequestError(
            f"site '{profile.name}' needs a budget account for every job.",
            f'Give --account CODE, or set it once in your config:\n  [sites.{profile.name}]\n  job.account = "CODE"',
        )
    remote_dir = profile.env.remote_dir
    if not request.account and ("{account}" in remote_dir or "{project}" in remote_dir and not job.project):
        raise RequestError(
            f"site '{profile.name}' keeps jobs under {remote_dir}, which needs an account.",
            "Give --account CODE, or set job.account in your config.",
        )
    _check_names(profile, request)
    _check_rules(profile, request)
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


def placement_rules(
    profile: Profile, partition: str | None, qos: str | None, queue: str | None
) -> list[tuple[str, PlacementRule]]:
    """The profile's rules for the chosen partition, qos and queue, each with its name for messages."""
    job = profile.job
    chosen = (
        ("partition", partition, job.partition_rules),
        ("qos", qos, job.qos_rules),
        ("queue", queue, job.queue_rules),
    )
    return [(f"{kind} '{name}'", table[name]) for kind, name, table in chosen if name and name in table]


def project(profile: Profile, request: Request) -> str | None:
    """The {project} placeholder's value: job.project, else the account up to its first '-'."""
    return project_code(profile.job.project, request.account)


def conda_env_to_activate(profile: Profile, request: Request) -> str | None:
    """The conda env the job activates, or None for no conda at all.

    Where the profile sets ``env.conda_env_required`` (a site that says never to use 'base'),
    a missing env is an error, unless a venv is set: then conda is left alone.
    """
    env = profile.env
    if not env.conda:
        return None
    if request.conda_env:
        if request.conda_env == "base" and env.conda_env_required:
            raise RequestError(*_no_base(profile))
        return request.conda_env
    if env.conda_env_required:
        if env.venv:
            return None
        raise RequestError(*_no_base(profile, missing=True))
    return "base"


def _no_base(profile: Profile, missing: bool = False) -> tuple[str, str]:
    what = "names no conda env to activate" if missing else "cannot activate conda 'base'"
    return (
        f"site '{profile.name}' {what}: it says never to use or modify conda 'base'"
        f"{_source(profile, 'env.conda_env_required')}.",
        "Make an env with JupyterLab once on the login node (conda create -n jupyter jupyterlab), then give "
        f'--conda-env jupyter, or set it in your config:\n  [sites.{profile.name}]\n  env.conda_env = "jupyter"\n'
        "(or set env.venv to a venv with jupyterlab).",
    )


def _cite(rule: PlacementRule) -> str:
    return f" (site docs: {rule.source})" if rule.source else ""


def _source(profile: Profile, key: str) -> str:
    source = profile.sources.get(key)
    return f" ({source})" if source else ""


def _check_gpu_type(profile: Profile, gpu_type: str) -> None:
    choices = profile.job.gpu_types
    if not SCHEDULER_NAME.match(gpu_type):
        raise RequestError(f"GPU type {gpu_type!r} is not a valid name.", "Use letters, digits and _ . , @ + -.")
    if choices and gpu_type not in choices:
        raise RequestError(
            f"site '{profile.name}' has no GPU type {gpu_type!r}{_source(profile, 'job.gpu_types')}.",
            f"Choose one of: {', '.join(choices)} (job.gpu_type in your config).",
        )


def _check_rules(profile: Profile, request: Request) -> None:
    """Names the site keeps for other uses, and each chosen partition/qos/queue's own rules."""
    job = profile.job
    for kind in ("partition", "qos", "queue"):
        name = getattr(request, kind)
        if name and name in job.refused:
            raise RequestError(
                f"{kind} '{name}' is not for hpcjupyter jobs on site '{profile.name}': {job.refused[name]}.",
                f"Leave out --{kind}"
                + (
                    ": the site's routing places the job by its size."
                    if kind == "queue"
                    else f", or choose another {kind}."
                ),
            )
    for what, rule in placement_rules(profile, request.partition, request.qos, request.queue):
        if rule.partitions is not None and request.partition not in rule.partitions:
            allowed = ", ".join(rule.partitions)
            raise RequestError(
                f"{what} goes only with partition {allowed} (got "
                f"{repr(request.partition) if request.partition else 'no partition'}){_cite(rule)}.",
                f"Give --partition {rule.partitions[0]}, or choose a qos made for that partition.",
            )
        if rule.min_hours is not None and round(request.hours * 3600) < round(rule.min_hours * 3600):
            raise RequestError(
                f"{what} needs at least {rule.min_hours:g} h ({walltime(rule.min_hours)}) of walltime "
                f"(asked for {request.hours:g}){_cite(rule)}.",
                f"Ask for --hours {rule.min_hours:g} or more, or choose another qos.",
            )
        if rule.max_cpus is not None and request.ask_cpus and request.cpus > rule.max_cpus:
            raise RequestError(
                f"{what} allows at most {rule.max_cpus} cpus (asked for {request.cpus}){_cite(rule)}.",
                f"Ask for --cpus {rule.max_cpus} or fewer.",
            )
        if rule.max_memory is not None and request.memory_mb and request.memory_mb > memory_mb(rule.max_memory):
            raise RequestError(
                f"{what} allows at most {rule.max_memory} of memory (asked for {request.memory_mb}M){_cite(rule)}.",
                f"Ask for --memory {rule.max_memory} or less.",
            )
        if request.gpus and rule.max_gpus is not None and request.gpus > rule.max_gpus:
            if rule.max_gpus == 0:
                raise RequestError(f"{what} has no GPUs (asked for {request.gpus}){_cite(rule)}.", _gpu_hint(profile))
            raise RequestError(
                f"{what} allows at most {rule.max_gpus} GPUs (asked for {request.gpus}){_cite(rule)}.",
                f"Ask for --gpus {rule.max_gpus} or fewer" + (", or choose another qos." if "qos" in what else "."),
            )


def _gpu_hint(profile: Profile) -> str:
    """Where GPUs are, read off the rules: the partitions with GPUs and the qos made for them."""
    job = profile.job
    partitions = [name for name, rule in job.partition_rules.items() if rule.max_gpus]
    if not partitions:
        return "Drop --gpus, or use a site with GPUs."
    qos = [name for name, rule in job.qos_rules.items() if rule.partitions and set(rule.partitions) & set(partitions)]
    fix = f"--partition {partitions[0]}" + (f" --qos {qos[0]}" if qos else "")
    others = f" (qos for GPUs: {', '.join(qos)})" if len(qos) > 1 else ""
    return f"GPUs are on partition {', '.join(partitions)}: give {fix} with --gpus{others}, or drop --gpus."


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
        key = "job.qos_max_hours" if chosen in job.qos_max_hours else "job.max_hours"
        asked = f"the default walltime (job.hours = {hours:g})" if by_default else f"--hours {hours:g}"
        raise RequestError(
            f"{asked} is over the limit of {limit:g} h ({walltime(limit)}) for {where}{_source(profile, key)}.",
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
