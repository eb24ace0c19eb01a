"""Talking to the user: a live status line on a terminal, plain lines when piped or NO_COLOR.

ssh prompts are relayed through `hpcjupyter.transports.prompts.TerminalPrompter`, given this UI.
"""

from __future__ import annotations

import os
import re
import sys
import time
from typing import Any

HEARTBEAT = 30.0
"""Seconds between repeats of an unchanged progress line when stderr is not a terminal."""


class UI:
    """Progress and messages on stderr, so stdout stays clean for URLs and --json."""

    def __init__(self, quiet: bool = False, verbose: bool = False) -> None:
        self.quiet = quiet
        self.verbose = verbose
        self.live = sys.stderr.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"
        self._last = ""
        self._shape = ""
        self._printed = 0.0
        self._status: Any = None

    def status(self, line: str) -> None:
        """Replace the live line (terminal); when piped, print a line when something other than the
        counters changed (a new state, reason or node), and an unchanged one at most every 30 s."""
        if self.quiet or line == self._last:
            return
        self._last = line
        if not self.live:
            shape = re.sub(r"\d+", "#", line)
            now = time.monotonic()
            if shape == self._shape and now - self._printed < HEARTBEAT:
                return
            self._shape, self._printed = shape, now
        if self.live:
            if self._status is None:
                from rich.console import Console

                self._status = Console(stderr=True).status(line)
                self._status.start()
            else:
                self._status.update(line)
        else:
            print(line, file=sys.stderr, flush=True)

    def stop_status(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

    def info(self, text: str) -> None:
        if not self.quiet:
            self.stop_status()
            print(text, file=sys.stderr, flush=True)

    def debug(self, text: str) -> None:
        if self.verbose:
            self.info(f"[verbose] {text}")

    def warn(self, text: str) -> None:
        self.stop_status()
        print(f"warning: {text}", file=sys.stderr, flush=True)
