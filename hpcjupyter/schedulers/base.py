"""What every scheduler adapter shares: the state enum, the status record, and the lookup chain.

Adapters hold only what differs (argv and parsers), in the spirit of dask-jobqueue; the state
enum and one native-state table per scheduler follow PSI/J.
"""

from __future__ import annotations

import abc
import enum
import os
import re
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar

from hpcjupyter.errors import HpcJupyterError, SchedulerError
from hpcjupyter.transports.base import Result, Runner

if TYPE_CHECKING:
    from hpcjupyter.request import Request

NOT_KNOWN = "no longer known to the scheduler"
"""Reason of a job that every status and history query ran fine and none listed."""

STATUS_TIMEOUT = 60.0
"""Seconds one status command may take before its jobs are reported UNKNOWN."""


class JobState(enum.IntEnum):
    """Ordered so that a job only moves up: UNKNOWN < PENDING < RUNNING < ENDED."""

    UNKNOWN = 0
    PENDING = 1
    RUNNING = 2
    ENDED = 3


class Outcome(enum.Enum):
    """How an ENDED job ended, decided by its adapter from the scheduler's own words (as PSI/J does)."""

    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed out"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class JobStatus:
    """One job as the scheduler describes it; empty strings where the scheduler says nothing.

    ``outcome`` is set for ENDED jobs only; ``never_runs`` is the scheduler's reason when a
    pending job can never start as asked (it would wait in the queue forever).
    """

    job_id: str
    state: JobState
    native_state: str = ""
    reason: str = ""
    node: str = ""
    time_used: str = ""
    time_limit: str = ""
    start_estimate: str = ""
    exit_status: str = ""
    name: str = ""
    outcome: Outcome | None = None


Parser = Callable[[Result, Sequence[str]], Mapping[str, JobStatus]]


@dataclass(frozen=True)
class Query:
    """One scheduler command and the parser for what it prints.

    ``job_ids`` are the ids the command asks about; `lookup` skips a query whose ids are all
    resolved already. Empty for a query that is not about given ids (find by name).
    """

    argv: list[str]
    parse: Parser
    job_ids: tuple[str, ...] = ()


class QueryFailed(SchedulerError):
    """A status command gave no answer (an error we do not recognise, ssh failure, timeout).

    Its jobs are UNKNOWN, never ended: taking a status error for "job gone" orphans running
    sessions (batchspawner #315).
    """


def lines(text: str) -> list[str]:
    """The non-blank lines of ``text``, stripped."""
    return [line.strip() for line in text.splitlines() if line.strip()]


def first_line(text: str) -> str:
    """The first non-blank line, stripped (a command's gist for a message)."""
    return next(iter(lines(text)), "")


def require_answer(result: Result, benign: Sequence[re.Pattern[str]]) -> None:
    """Raise QueryFailed unless the command answered.

    It answered if it exited 0, or if every line of its complaint (stderr, or stdout when
    stderr is empty) is one of the ``benign`` messages, which mean "no such job (any more)"
    rather than "could not ask". Strict on purpose: one unexplained line makes it a failure.
    """
    if not (result.ok or _explained(result, benign)):
        raise QueryFailed(_words(result) or f"exit code {result.returncode}, no output")


def classify(table: Mapping[str, JobState], text: str) -> tuple[str, JobState]:
    """The native state code and its enum value; codes missing from ``table`` are UNKNOWN.

    Tolerates Slurm's decorated states: ``CANCELLED by 123`` and plain sacct's truncated
    ``CANCELLED+`` both give ``CANCELLED``.
    """
    code = text.split()[0].rstrip("+").upper() if text.strip() else ""
    return code, table.get(code, JobState.UNKNOWN)


def _explained(result: Result, patterns: Sequence[re.Pattern[str]]) -> bool:
    """Whether the command complained, and only with lines matching ``patterns``."""
    complaint = lines(result.stderr) or lines(result.stdout)
    return bool(complaint) and all(any(p.search(line) for p in patterns) for line in complaint)


def _words(result: Result) -> str:
    """What the command said, stderr first: a scheduler explains refusals there."""
    return result.stderr.strip() or result.stdout.strip()


class Scheduler(abc.ABC):
    """One scheduler's commands and parsers; subclasses define the class variables and argv."""

    name: ClassVar[str]
    states: ClassVar[Mapping[str, JobState]]
    """Every native state code the scheduler prints, mapped to the enum."""
    job_id_line: ClassVar[re.Pattern[str]]
    """A whole line of submit output that is the job id, in a group named ``id``."""
    gone: ClassVar[tuple[re.Pattern[str], ...]]
    """Error lines meaning the job is no longer there (status and cancel take them as answers)."""
    on_this_machine: ClassVar[bool] = False
    """Jobs run as processes on this machine: no login node to reach, no directives."""
    options: ClassVar[tuple[str, ...]] = ()
    """Placement options this scheduler has (of partition, qos, queue): any other is refused, so a
    user never believes a --qos was applied when the scheduler would ignore it."""
    limit_option: ClassVar[str | None] = None
    """The option whose value selects the walltime limit (``job.qos_max_hours``)."""
    job_id_placeholder: ClassVar[str] = ""
    """What the scheduler replaces by the job id in its output file name (Slurm's ``%j``)."""
    template_filters: ClassVar[Mapping[str, Callable[[Any], str]]] = {}
    """Jinja filters the scheduler's header template uses (e.g. PBS's memory spelling)."""
    never_starts: ClassVar[Mapping[str, str]] = {}
    """Pending reasons that never clear on their own (the job would wait forever), each with what
    to change; matched against the start of the reason."""
    doctor_commands: ClassVar[tuple[str, ...]] = ()
    """Commands hpcjupyter uses on the login node; `doctor` checks they exist."""
    doctor_answer: ClassVar[tuple[str, ...]] = ()
    """A cheap query only the running scheduler answers (doctor); empty where there is none."""
    doctor_nodes: ClassVar[tuple[str, ...] | None] = None
    """Lists compute node names (doctor's jump check); None where none can be named before a job runs."""

    def output_path(self, job_dir: str, job_id: str) -> str:
        """The scheduler's own output file of a job (the header template passes
        `job_id_placeholder`); read when the job died before its own log existed."""
        return f"{job_dir}/{self.name}.out"

    def why_never_starts(self, status: JobStatus) -> str | None:
        """What to change when a pending job's reason means it can never start, else None."""
        if status.state is not JobState.PENDING:
            return None
        return next((fix for reason, fix in self.never_starts.items() if status.reason.startswith(reason)), None)

    def check_placement(self, ask: Callable[[Sequence[str]], Result], request: Request, site: str) -> str:
        """Doctor: the account, partition/qos or queue exist for the user (what was found), or raise."""
        return "does not apply: no scheduler"

    @abc.abstractmethod
    def submit_argv(self, script_path: str, job_name: str | None = None) -> list[str]:
        """Submit the script; ``job_name`` lets `find_by_name_query` recover an interrupted submit."""

    def walltime_argv(self, walltime: str) -> list[str]:
        """Arguments appended to `submit_argv` that tell the scheduler the walltime (HH:MM:SS); none
        where the header template carries it as a directive."""
        return []

    def parse_submit(self, result: Result) -> str:
        """The job id; a refused submission raises SchedulerError in the scheduler's own words.

        Lines that are not an id alone (site banners, warnings) are ignored.
        """
        if not result.ok:
            raise SchedulerError(_words(result) or f"{self.name} submission failed with exit code {result.returncode}")
        ids = [m["id"] for line in lines(result.stdout) if (m := self.job_id_line.fullmatch(line))]
        if not ids:
            raise SchedulerError(f"no job id in the {self.name} submit output: {_words(result) or '(nothing)'}")
        return ids[-1]

    @abc.abstractmethod
    def status_queries(self, job_ids: Sequence[str]) -> list[Query]:
        """The lookup chain: the queue query first (all ids), then history queries."""

    @abc.abstractmethod
    def cancel_argv(self, job_ids: Sequence[str]) -> list[str]: ...

    def cancel_ok(self, result: Result) -> bool:
        """Cancelling a job that has already ended is not an error."""
        return result.ok or _explained(result, self.gone)

    @abc.abstractmethod
    def find_by_name_query(self, name: str) -> Query:
        """The jobs called ``name`` (the name given at submit), to recover an interrupted submit."""

    def job_path(self) -> tuple[str, ...]:
        """Directories put first on the job's PATH before the site's set-up (none on a cluster)."""
        return ()


def lookup(
    sched: Scheduler, runner: Runner, job_ids: Sequence[str], *, timeout: float = STATUS_TIMEOUT
) -> dict[str, JobStatus]:
    """The status of each job: one queue query for all, history queries for those it no longer lists.

    A query that fails leaves the ids still unresolved UNKNOWN (with the error as reason) and
    stops the chain. Only when every query answered and none listed an id is it ENDED with
    reason `NOT_KNOWN`. Keys are the ids as asked, in the order asked.
    """
    wanted = list(dict.fromkeys(job_ids))
    if not wanted:
        return {}
    found: dict[str, JobStatus] = {}
    queue, *_ = sched.status_queries(wanted)
    failure = _ask(runner, queue, found, wanted, timeout)
    missing = [i for i in wanted if i not in found]
    if not failure and missing:
        for query in sched.status_queries(missing)[1:]:
            if query.job_ids and all(i in found for i in query.job_ids):
                continue
            failure = _ask(runner, query, found, wanted, timeout)
            if failure:
                break
    return {i: found.get(i) or _unresolved(i, failure) for i in wanted}


def _ask(runner: Runner, query: Query, found: dict[str, JobStatus], wanted: Sequence[str], timeout: float) -> str:
    """Run one query and record the wanted jobs it lists; return why it failed, or ""."""
    try:
        result = runner.run(query.argv, timeout=timeout)
        listed = query.parse(result, query.job_ids)
    except (HpcJupyterError, OSError, subprocess.TimeoutExpired) as exc:  # QueryFailed, RemoteError, timeouts
        return f"{os.path.basename(query.argv[0])} failed: {getattr(exc, 'message', None) or exc}"
    for job_id in wanted:
        if job_id not in found:
            match = next((s for k, s in listed.items() if _same_job(job_id, k)), None)
            if match:
                found[job_id] = replace(match, job_id=job_id)
    return ""


def _same_job(asked: str, listed: str) -> bool:
    """PBS may list ``1234.server.domain`` for ``1234.server`` or ``1234`` (or the reverse)."""
    return asked == listed or listed.startswith(asked + ".") or asked.startswith(listed + ".")


def _unresolved(job_id: str, failure: str) -> JobStatus:
    if failure:
        return JobStatus(job_id, JobState.UNKNOWN, reason=failure)
    return JobStatus(job_id, JobState.ENDED, reason=NOT_KNOWN, outcome=Outcome.UNKNOWN)
