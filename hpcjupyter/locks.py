"""One portable inter-process lock, so nothing imports a POSIX-only module (``fcntl``) at import
time and Windows stays reachable: ``filelock`` uses ``flock`` on POSIX and ``msvcrt`` on Windows."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def exclusive(path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created 0600 if missing) for the ``with`` block; blocks
    until another process holding it lets go. Used so two invocations started together do one
    thing once (one ssh login, one session record)."""
    from filelock import FileLock  # imported here: CLI start-up time is benchmarked

    with FileLock(os.fspath(path), mode=0o600):
        yield
