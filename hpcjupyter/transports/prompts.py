"""Relaying whatever ssh asks on its terminal to the user, and their answers back.

Sites ask different things (``Password:``, ``Verification code:``, pam_oath's
``One-time password (OATH) for `user':``, Duo's numbered menu, host-key confirmation,
key passphrases), so nothing here matches a list of known prompts. ssh writes a prompt without a
trailing newline and then waits; so "output ends mid-line and ssh has gone quiet" means "ssh is
asking". Whether the answer is secret comes from the terminal itself: ssh turns echo off before
it asks for a password, passphrase or an echo-off keyboard-interactive prompt.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from hpcjupyter.errors import RemoteError
from hpcjupyter.transports.base import Prompter

QUIET = 0.3
"""Seconds of silence after a partial line before it is taken as a prompt."""

IDLE_TIMEOUT = 180.0
"""Seconds ssh may print nothing while not waiting for the user (LoginGraceTime is 120 s)."""

_SECRET_WORDS = re.compile(
    r"pass(word|phrase|code)|one-time|\botp\b|\bpin\b|token|verification code|secret|response", re.IGNORECASE
)
_PUBLIC_WORDS = re.compile(r"\(yes/no|\byes or no\b|option|\[fingerprint\]", re.IGNORECASE)


class StatusLine(Protocol):
    """What the prompter needs of the CLI's UI (`hpcjupyter.ui.UI`): a live status line to stop
    before a question is asked, and a way to show text."""

    def stop_status(self) -> None: ...

    def info(self, text: str) -> None: ...


class TerminalPrompter:
    """The person at the terminal: secrets read without echo, everything on stderr (stdout stays
    clean for URLs and --json). With ``ui``, its live status line is stopped before each question
    (else the spinner would overwrite the prompt) and text is shown through it."""

    def __init__(self, ui: StatusLine | None = None) -> None:
        self.ui = ui

    def ask(self, prompt_text: str, secret: bool) -> str:
        if self.ui is not None:
            self.ui.stop_status()
        if not sys.stdin.isatty():
            raise RemoteError(
                f"ssh asks {prompt_text.strip()!r} but there is no terminal to answer it.",
                "Run hpcjupyter in a terminal for the first login of a session (later commands reuse "
                "that login), or set up key authentication (with ssh-agent) for this site.",
            )
        if secret:
            import getpass

            try:
                return getpass.getpass(prompt_text, stream=sys.stderr)
            except EOFError:
                raise _no_answer(prompt_text) from None
        sys.stderr.write(prompt_text)
        sys.stderr.flush()
        line = sys.stdin.readline()
        if not line:
            raise _no_answer(prompt_text)
        return line.rstrip("\n")

    def info(self, text: str) -> None:
        if self.ui is not None:
            self.ui.info(text)
        else:
            print(text, file=sys.stderr, flush=True)


def _no_answer(prompt_text: str) -> RemoteError:
    return RemoteError(
        f"No answer to {prompt_text.strip()!r}: the terminal's input ended (Ctrl-D).",
        "Run the command again and answer the question, or press Ctrl-C to stop.",
    )


def guess_secret(prompt_text: str) -> bool:
    """Secret or not from the prompt's words, for when the terminal's echo state is unknown."""
    if _PUBLIC_WORDS.search(prompt_text):
        return False
    return bool(_SECRET_WORDS.search(prompt_text)) or prompt_text.rstrip().endswith(":")


def is_secret(child: Any, prompt_text: str) -> bool:
    """Echo off on ssh's terminal means ssh is reading a secret; fall back to the words."""
    try:
        return not child.getecho()
    except Exception:
        return guess_secret(prompt_text)


def normalize(text: str) -> str:
    """Terminal output to plain text: CRLF to LF, stray carriage returns dropped."""
    return text.replace("\r\n", "\n").replace("\r", "")


def split_prompt(pending: str) -> tuple[str, str]:
    """Split unconsumed output into (complete lines shown as context, partial last line)."""
    head, sep, tail = pending.rpartition("\n")
    return (head + sep, tail)


@dataclass
class RelayOutcome:
    """How a relayed ssh run ended."""

    answered: int = 0
    transcript: str = ""
    ready: bool = False
    exitstatus: int | None = None
    signalstatus: int | None = None
    prompts: list[str] = field(default_factory=list)


def relay_prompts(
    child: Any,
    prompter: Prompter,
    *,
    ready: Callable[[], bool] | None = None,
    quiet: float = QUIET,
    idle_timeout: float = IDLE_TIMEOUT,
    what: str = "ssh",
) -> RelayOutcome:
    """Relay prompts from a pexpect child until it exits or ``ready()`` says the job is done.

    Output that ssh prints and then waits on (a partial line followed by ``quiet`` seconds of
    silence) is a question: the lines before it are shown with ``prompter.info`` and the last
    line is asked with ``prompter.ask``. A wrong answer needs nothing special: ssh asks again and
    the new prompt is relayed like the first. Returns without closing the child when ready.
    """
    import pexpect

    out = RelayOutcome()
    pending = ""
    echo: str | None = None
    last_output = time.monotonic()
    while True:
        try:
            chunk = normalize(child.read_nonblocking(4096, timeout=quiet))
        except pexpect.TIMEOUT:
            chunk = None
        except pexpect.EOF:
            break
        if chunk:
            pending += chunk
            out.transcript += chunk
            last_output = time.monotonic()
            continue
        pending, echo = _drop_echo(pending, echo)
        if ready is not None and ready():
            out.ready = True
            return out
        context, prompt = split_prompt(pending)
        if prompt.strip() and not (echo is not None and not context and echo.startswith(prompt)):
            _show(prompter, context)
            secret = is_secret(child, prompt)
            answer = prompter.ask(prompt, secret)
            child.sendline(answer)
            out.answered += 1
            out.prompts.append(prompt)
            pending, echo = "", (None if secret else answer)
            last_output = time.monotonic()
        elif not child.isalive():
            break
        elif time.monotonic() - last_output > idle_timeout:
            child.terminate(force=True)
            raise RemoteError(
                f"{what} printed nothing for {int(idle_timeout)} s and did not finish.",
                f"Last output: {out.transcript.strip()[-300:] or '(none)'}",
            )
    child.close()
    out.exitstatus, out.signalstatus = child.exitstatus, child.signalstatus
    return out


def _drop_echo(pending: str, echo: str | None) -> tuple[str, str | None]:
    """Remove the terminal's echo of a public answer (``yes``) from the start of new output."""
    if echo is None or not pending:
        return pending, echo
    first, sep, rest = pending.partition("\n")
    if not sep:
        return pending, echo  # the echo line is not complete yet
    return (rest if first.strip() == echo.strip() else pending), None


def _show(prompter: Prompter, context: str) -> None:
    text = context.strip("\n")
    if text.strip():
        prompter.info(text)
