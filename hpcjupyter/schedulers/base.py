"""What every scheduler adapter shares: the state enum, the status record, and the lookup chain.

Adapters hold only what differs (argv and parsers), in the spirit of dask-jobqueue; the state
enum and one native-state table per scheduler follow PSI/J.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

from hpcjupyter.remote.base import Result, Runner


class JobState(enum.IntEnum):
    """Ordered so that a job only moves up: UNKNOWN < PENDING < RUNNING < ENDED."""

    UNKNOWN = 0
    PENDING = 1
    RUNNING = 2
    ENDED = 3


@dataclass(frozen=True)
class JobStatus:
    """One job as the scheduler describes it; empty strings where the scheduler says nothing."""

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


Parser = Callable[[Result, Sequence[str]], Mapping[str, JobStatus]]


@dataclass(frozen=True)
class Query:
    """One scheduler command and the parser for what it prints."""

    argv: list[str]
    parse: Parser
