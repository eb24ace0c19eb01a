"""The one interface every way of reaching the login node implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence


@dataclass(frozen=True)
class Result:
    """What a command printed and how it exited."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


class Runner(Protocol):
    """Anything that can run an argv on the login node (a Remote, or a fake in unit tests)."""

    def run(self, argv: Sequence[str], stdin: str | None = None, timeout: float | None = None) -> Result: ...
