"""Scheduler adapters by name, and the status lookup that works the same over all of them."""

from __future__ import annotations

from hpcjupyter.schedulers.base import NOT_KNOWN, JobState, JobStatus, Query, Scheduler, lookup
from hpcjupyter.schedulers.local import Local
from hpcjupyter.schedulers.pbs import PBS
from hpcjupyter.schedulers.slurm import Slurm

SCHEDULERS: dict[str, type[Scheduler]] = {s.name: s for s in (Slurm, PBS, Local)}

__all__ = ["NOT_KNOWN", "SCHEDULERS", "JobState", "JobStatus", "Query", "Scheduler", "get_scheduler", "lookup"]


def get_scheduler(name: str) -> Scheduler:
    try:
        return SCHEDULERS[name]()
    except KeyError:
        raise ValueError(f"unknown scheduler {name!r}; known: {', '.join(sorted(SCHEDULERS))}") from None
