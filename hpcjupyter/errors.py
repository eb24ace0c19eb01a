"""One exception type for every failure the user should read: what happened, and what to do."""

from __future__ import annotations


class HpcJupyterError(Exception):
    """A failure explained for the user; the CLI prints it as one paragraph and exits non-zero."""

    exit_code = 1

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n{self.hint}" if self.hint else self.message


class ProfileError(HpcJupyterError):
    """A site profile or the user config is invalid; the message names the file and the key."""


class RequestError(HpcJupyterError):
    """The resources asked for do not fit the profile's limits."""


class RemoteError(HpcJupyterError):
    """The login node could not be reached, or a command on it could not be run."""


class LoginRefusedError(RemoteError):
    """A login that cannot work until the user acts (changed host key, refused auth, no ssh):
    waiting and retrying would only repeat it."""


class SchedulerError(HpcJupyterError):
    """The scheduler refused a request; the message carries the scheduler's own words."""


class JobEndedError(HpcJupyterError):
    """The job ended before Jupyter was reachable."""
