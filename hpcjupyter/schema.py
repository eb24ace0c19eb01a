"""The shape of a site profile and of the user config: every key, its type and its default.

Kept apart from loading so the profile reference in the README can be read off it.
The value rules that keep a profile *data* live here too: a value that ends up in a scheduler
directive or on an ssh command line must be a plain name, and no value may hold a newline,
so nothing in a profile can smuggle a header line or an option anywhere.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

# Account, partition, qos and queue names go into scheduler directive lines unquoted (neither
# scheduler parses shell quoting), so they are limited to what such names are made of.
SCHEDULER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.,@+-]*$")
# A login name: also the {user} path placeholder, so no '/', and no leading '-' (ssh option).
USER_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@-]*$")
# A host name, address or ssh_config alias; a leading '-' would be read by ssh as an option.
HOST_NAME = re.compile(r"^([A-Za-z0-9_:][A-Za-z0-9_.:%-]*)?$")
_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:([kmgt])(?:i?b)?)?\s*$", re.IGNORECASE)
_UNIT_MB = {"k": 1 / 1024, "": 1, "m": 1, "g": 1024, "t": 1024 * 1024}


def memory_mb(text: str) -> int:
    """'16G', '16gb', '512M', '1.5G', '2T' → megabytes.

    A bare number is refused: Slurm would read '16' as 16 MB and Jupyter would be killed at once,
    so the unit must be said. Raises ValueError with the fix in its message; callers turn it into
    their own error type.
    """
    match = _MEMORY.match(text)
    if not match:
        raise ValueError(f"memory {text!r} is not understood; give a number with a unit: 512M, 16G, 1T")
    if not match.group(2):
        number = match.group(1)
        raise ValueError(
            f"memory {text.strip()!r} has no unit (the scheduler would read {number} megabytes); "
            f"say which: {number}G for {number} gigabytes, or {number}M"
        )
    megabytes = int(float(match.group(1)) * _UNIT_MB[(match.group(2) or "").lower()])
    if megabytes <= 0:
        raise ValueError(f"memory {text!r} must be at least 1M")
    return megabytes


def _one_line(value: str) -> str:
    if "\n" in value or "\r" in value:
        raise ValueError("must be one line (no newline characters)")
    return value


def _memory(text: str) -> str:
    memory_mb(text)
    return text


def _matching(pattern: re.Pattern[str], what: str, rule: str) -> AfterValidator:
    """A validator refusing anything but a plain name, saying which characters are allowed."""

    def check(value: str) -> str:
        if not pattern.match(value):
            raise ValueError(f"{value!r} is not a valid {what}: {rule}")
        return value

    return AfterValidator(check)


OneLine = Annotated[str, AfterValidator(_one_line)]
SchedulerName = Annotated[
    str, _matching(SCHEDULER_NAME, "scheduler name", "a letter or digit, then letters, digits and _ . , @ + -")
]
UserName = Annotated[str, _matching(USER_NAME, "user name", "a letter, digit or _, then letters, digits and _ . @ -")]
HostName = Annotated[str, _matching(HOST_NAME, "host name", "letters, digits and _ . : % -, not starting with -")]
Memory = Annotated[str, AfterValidator(_memory)]
Hours = Annotated[float, Field(gt=0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


def _one_of(what: str, known: Callable[[], Iterable[str]]) -> AfterValidator:
    """A name from a registry (read when validating, so adding a scheduler or a transport to its
    registry is all it takes), with a "did you mean" for a typo."""

    def check(name: str) -> str:
        names = sorted(known())
        if name not in names:
            close = difflib.get_close_matches(name, names, n=1, cutoff=0.5)
            raise ValueError(
                f"{name!r} is not a {what} hpcjupyter knows ({', '.join(names)})"
                + (f". Did you mean '{close[0]}'?" if close else "")
            )
        return name

    return AfterValidator(check)


def _schedulers() -> Iterable[str]:
    from hpcjupyter.schedulers import SCHEDULERS

    return SCHEDULERS


def _transports() -> Iterable[str]:
    from hpcjupyter.transports import TRANSPORTS

    return ["auto", *TRANSPORTS]


@dataclass(frozen=True)
class Choices:
    """Marks a field whose values come from a registry (`sites init` lists them)."""

    names: Callable[[], Iterable[str]]


SchedulerKind = Annotated[str, _one_of("scheduler", _schedulers), Choices(_schedulers)]
TransportKind = Annotated[str, _one_of("transport", _transports), Choices(_transports)]


class SshSection(_Strict):
    """How to reach the login node, and which tunnel shape the site allows."""

    host: HostName = Field("", description="login host name or ssh_config alias")
    user: UserName | None = Field(None, description="login user name (personal: put it in your config)")
    port: int | None = Field(None, ge=1, le=65535, description="ssh port")
    config: OneLine | None = Field(None, description="path to an ssh_config file passed to ssh -F")
    transport: TransportKind = "auto"
    tunnel: Literal["forward", "jump"] = Field(
        "forward", description="forward: -L to NODE:PORT via the login node; jump: ssh to the node itself"
    )


RULE_TABLES = ("partition_rules", "qos_rules", "queue_rules")
"""The job tables of per-partition, per-qos and per-queue rules."""


class PlacementRule(_Strict):
    """What a site allows with one partition, qos or queue (``[job.partition_rules.NAME]``,
    ``[job.qos_rules.NAME]``, ``[job.queue_rules.NAME]``). Checked before anything is submitted;
    an error cites ``source``."""

    partitions: list[SchedulerName] | None = Field(
        None, description="qos rules only: the partitions this qos may be used with"
    )
    min_hours: Hours | None = Field(None, description="shortest walltime accepted (the longest is job.qos_max_hours)")
    max_cpus: int | None = Field(None, ge=1, description="most cpus per job (or per user) here")
    max_memory: Memory | None = Field(None, description="most memory per job (or per user) here, e.g. 125G")
    max_gpus: int | None = Field(None, ge=0, description="most GPUs per job here; 0 where there are none")
    cpus: bool = Field(
        True,
        description="false: no --ntasks/--cpus-per-task/ncpus may be given (the site sizes "
        "the job itself, e.g. by GPUs)",
    )
    memory: bool = Field(True, description="false: no memory may be given (--mem, mem=)")
    exclusive: bool = Field(False, description="the job takes whole nodes")
    source: OneLine = Field("", description="where the site documents this rule (cited in errors)")


class JobSection(_Strict):
    """Resources asked of the scheduler, and the site's limits on them."""

    hours: Hours = Field(1.0, description="default walltime in hours")
    max_hours: Hours | None = Field(None, description="longest walltime the default qos/queue allows")
    qos_max_hours: dict[str, Hours] = Field(
        default_factory=dict, description="longest walltime per qos (Slurm) or queue (PBS)"
    )
    cpus: int = Field(1, ge=1)
    max_cpus: int | None = Field(None, ge=1, description="most cpus one job may ask for (e.g. cores per node)")
    memory: Memory | None = Field(None, description="memory per job, e.g. 16G (omit where the site forbids --mem)")
    allow_memory: bool = Field(True, description="false where the site assigns memory with cores only")
    gpus: int = Field(0, ge=0)
    max_gpus: int | None = Field(None, ge=0, description="0 on sites without GPUs")
    gpu_types: list[SchedulerName] = Field(
        default_factory=list, description="GPU models the site offers (job.gpu_type must be one of them)"
    )
    gpu_type: SchedulerName | None = Field(
        None, description="GPU model asked for with GPUs (PBS :gpu_type=X, Slurm --gpus=X:N)"
    )
    account: SchedulerName | None = Field(None, description="budget/project code (personal: put it in your config)")
    account_required: bool = False
    account_refused: OneLine = Field(
        "", description="set where the site has no account option: why (an --account is then refused)"
    )
    project: SchedulerName | None = Field(
        None, description="project code for the {project} placeholder (default: job.account up to its first '-')"
    )
    partition: SchedulerName | None = None
    qos: SchedulerName | None = None
    queue: SchedulerName | None = None
    directives: list[OneLine] = Field(default_factory=list, description="extra raw scheduler header options")
    partition_rules: dict[str, PlacementRule] = Field(
        default_factory=dict, description="per-partition rules (Slurm), see docs/sites/profile-rules.md"
    )
    qos_rules: dict[str, PlacementRule] = Field(default_factory=dict, description="per-qos rules (Slurm)")
    queue_rules: dict[str, PlacementRule] = Field(default_factory=dict, description="per-queue rules (PBS)")
    refused: dict[str, OneLine] = Field(
        default_factory=dict, description="partition, qos or queue names the site keeps for other uses: name = why"
    )


class EnvSection(_Strict):
    """How the job prepares its environment and starts Jupyter on the compute node."""

    remote_dir: OneLine = Field(
        "", description="job directories on a filesystem compute nodes see; {user}, {account}, {project}, {state_dir}"
    )
    workdir: OneLine | None = Field(
        None, description="directory Jupyter serves (default: the job directory); ~/ is the job's $HOME"
    )
    login_shell: bool = Field(False, description="start the script with #!/bin/bash --login (Cray sites)")
    setup: list[str] = Field(default_factory=list, description="shell lines run first (site code, not data)")
    modules: list[OneLine] = Field(default_factory=list, description="modules to load, in order")
    conda: OneLine | None = Field(None, description="conda/miniforge install prefix")
    conda_env: OneLine | None = None
    conda_env_required: bool = Field(
        False, description="never activate conda 'base': a named env.conda_env (or env.venv) must be given"
    )
    venv: OneLine | None = Field(None, description="path of a Python venv to activate")
    install: OneLine = Field(
        "",
        description="the site's documented way to install JupyterLab, one line a user can type on the login node "
        "(doctor shows it when jupyter is missing); {user}, {account}, {project}",
    )
    variables: dict[str, OneLine] = Field(
        default_factory=dict, description="environment variables to export (literal values, not expanded)"
    )
    jupyter: Literal["lab", "notebook"] = "lab"
    jupyter_args: list[OneLine] = Field(default_factory=list, description="extra arguments for jupyter")
    bind: Literal["auto", "loopback", "hostname", "all"] = Field(
        "auto", description="auto: loopback for jump, the node's hostname for forward; all = 0.0.0.0"
    )
    poll_seconds: int = Field(60, ge=1, description="least interval between scheduler queries")
    start_timeout: int = Field(
        300, ge=1, description="seconds a running job may take to make Jupyter ready before connect gives up"
    )


class Profile(_Strict):
    """A merged, validated site profile."""

    name: str
    description: OneLine = ""
    extends: str | None = None
    scheduler: SchedulerKind
    ssh: SshSection = Field(default_factory=SshSection)
    job: JobSection = Field(default_factory=JobSection)
    env: EnvSection = Field(default_factory=EnvSection)
    sources: dict[str, OneLine] = Field(
        default_factory=dict, description="where the site documents a key's value, by dotted key (cited in errors)"
    )

    def shown(self) -> dict[str, Any]:
        """The profile as `sites show` and `sites init --from` print it: a rule table holds only
        what it sets (its defaults would bury the rule under ``cpus = true`` lines)."""
        data = self.model_dump(mode="json")
        for table in RULE_TABLES:
            data["job"][table] = {
                name: rule.model_dump(mode="json", exclude_defaults=True)
                for name, rule in getattr(self.job, table).items()
            }
        return data


class UserConfig(_Strict):
    """The user's own config.toml: extra profile directories and personal per-site values."""

    profile_path: list[str] = Field(default_factory=list)
    sites: dict[str, dict[str, object]] = Field(default_factory=dict)
    default_site: str | None = None
    """The site used when a command is given no --site."""
    notify: bool = True
    """A bell and a desktop notification when a job that waited in the queue becomes ready."""


# ---- rules that span keys -----------------------------------------------------------------

PLACEHOLDERS = ("user", "account", "project", "state_dir")
PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
# A path that goes unquoted into a directive line (the scheduler's output file): no spaces or
# quotes (no scheduler parses shell quoting), no '%' (filename patterns), no ':' (host:path forms).
DIRECTIVE_PATH = re.compile(r"^/[A-Za-z0-9_./@+-]*$")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Set by the job script itself: a profile overriding them would break the job-side protocol.
_RESERVED_VARIABLES = re.compile(r"^(HPCJ_.*|JUPYTER_TOKEN|JUPYTER_RUNTIME_DIR)$")
# Jupyter options the job script sets, or that would put a secret on the command line.
_RESERVED_JUPYTER_OPTIONS = {"ip", "port", "port_retries", "token", "password", "hashed_password", "no-browser"}


def project_code(project: str | None, account: str | None) -> str | None:
    """The {project} placeholder: job.project, else the account up to its first '-'.

    EPCC: "the budget is often the same as your project ID"; budgets such as t01-test or n01-nceo
    belong to project t01 / n01, whose directories are /work/<project>/<project>/<user>.
    """
    if project:
        return project
    return account.split("-", 1)[0] if account else None


def is_absolute_or_home(path: str) -> bool:
    """Job-side paths must not depend on the directory the scheduler happens to start in."""
    return path.startswith(("/", "~/", "{state_dir}")) or path == "~"


def semantic_problems(profile: Profile) -> list[tuple[str, str]]:
    """Rules that span keys, as (dotted key, "key 'KEY': what is wrong and how to fix it")."""
    problems: list[tuple[str, str]] = []

    def add(key: str, text: str) -> None:
        problems.append((key, f"key '{key}': {text}"))

    env, job = profile.env, profile.job
    here = _on_this_machine(profile.scheduler)
    remote = not here and profile.ssh.transport != "local"
    if remote and not profile.ssh.host:
        problems.append(("ssh.host", "required key 'ssh.host' is missing; set the login node's host name."))
    if remote and profile.ssh.tunnel == "forward" and env.bind == "loopback":
        add(
            "env.bind",
            "'loopback' cannot be reached through a forward tunnel (the login node connects to the "
            'compute node); use bind = "auto" or tunnel = "jump".',
        )
    if not env.remote_dir:
        problems.append(
            ("env.remote_dir", "required key 'env.remote_dir' is missing; set a directory the compute nodes see.")
        )
    else:
        for text in _remote_dir_problems(env.remote_dir, profile.scheduler):
            add("env.remote_dir", text)
    for key in ("workdir", "conda", "venv"):
        value = getattr(env, key)
        if value and not is_absolute_or_home(value):
            add(f"env.{key}", f"must be an absolute path or start with ~/ (got {value!r}).")
    for var in env.variables:
        if not _IDENTIFIER.match(var):
            add(f"env.variables.{var}", "not a valid environment variable name (letters, digits, _).")
        elif _RESERVED_VARIABLES.match(var):
            add(f"env.variables.{var}", f"hpcjupyter sets {var} itself; choose another name.")
    for arg in env.jupyter_args:
        option = arg.split("=", 1)[0]
        if arg.startswith("-") and option.lstrip("-").rsplit(".", 1)[-1].lower() in _RESERVED_JUPYTER_OPTIONS:
            add(
                "env.jupyter_args",
                f"{option!r} is set by hpcjupyter (port, address and token are chosen on the node); remove it.",
            )
    if env.conda_env and not env.conda:
        add("env.conda_env", "needs 'env.conda', the conda install prefix (e.g. \"~/miniforge3\").")
    if job.memory and not job.allow_memory:
        add("job.memory", "set, but 'job.allow_memory' is false: this site gives memory with the cores; remove it.")
    if job.max_cpus is not None and job.cpus > job.max_cpus:
        add("job.cpus", f"{job.cpus} is over 'job.max_cpus' ({job.max_cpus}).")
    if job.gpu_type and job.gpu_types and job.gpu_type not in job.gpu_types:
        add("job.gpu_type", f"{job.gpu_type!r} is not one of 'job.gpu_types': {', '.join(job.gpu_types)}.")
    if job.account and job.account_refused:
        add("job.account", f"this site takes no account ({job.account_refused}); remove it.")
    if job.account_required and job.account_refused:
        add("job.account_refused", "set together with 'job.account_required = true'; keep one of them.")
    if env.conda_env_required and env.conda_env == "base":
        add(
            "env.conda_env",
            "this site says never to use conda 'base' ('env.conda_env_required'); name an env of "
            'your own, e.g. conda create -n jupyter jupyterlab, then env.conda_env = "jupyter".',
        )
    for table in RULE_TABLES:
        for name, rule in getattr(job, table).items():
            if not SCHEDULER_NAME.match(name):
                add(f"job.{table}", f"{name!r} is not a valid scheduler name (letters, digits and _ . , @ + -).")
            if rule.partitions is not None and table != "qos_rules":
                add(
                    f"job.{table}.{name}.partitions",
                    "only a qos rule names the partitions it goes with; move it to [job.qos_rules.NAME].",
                )
    for dotted in profile.sources:
        if not _known_key(dotted):
            add("sources", f'{dotted!r} is not a profile key; name one as section.key, e.g. "job.max_hours".')
    return problems


def _known_key(dotted: str) -> bool:
    """Whether ``dotted`` names a key of the profile schema ("job.max_hours", "scheduler")."""
    model: type[BaseModel] = Profile
    parts = dotted.split(".")
    for index, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            return False
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
        else:
            return index >= len(parts) - 1 or part.endswith("_rules")
    return True


def _on_this_machine(scheduler: str) -> bool:
    from hpcjupyter.schedulers import get_scheduler

    return get_scheduler(scheduler).on_this_machine


def _remote_dir_problems(remote_dir: str, scheduler: str) -> list[str]:
    """Placeholders known, absolute, and (for a scheduler with directives) plain enough for a
    directive line; {state_dir} (this machine's) only where jobs run on this machine."""
    here = _on_this_machine(scheduler)
    allowed = PLACEHOLDERS if here else tuple(p for p in PLACEHOLDERS if p != "state_dir")
    problems = [
        f"unknown placeholder '{{{name}}}'; use one of {', '.join('{' + p + '}' for p in allowed)}."
        for name in PLACEHOLDER.findall(remote_dir)
        if name not in allowed
    ]
    if not remote_dir.startswith(("/", "{state_dir}")):
        problems.append(f"must be an absolute path (got {remote_dir!r}).")
    elif not problems and not here and not DIRECTIVE_PATH.match(PLACEHOLDER.sub("x", remote_dir)):
        problems.append(
            f"{remote_dir!r} goes into a scheduler directive: use letters, digits and _ . / @ + - only "
            "(no spaces or quotes)."
        )
    return problems
