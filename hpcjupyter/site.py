"""One site, ready to use: its merged profile, its scheduler adapter and (lazily) its login."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Any, Sequence

from hpcjupyter.remote.base import Result
from hpcjupyter.schedulers import Scheduler, lookup
from hpcjupyter.schedulers.base import JobStatus
from hpcjupyter.schema import Profile


@dataclass
class Site:
    """A profile plus the live pieces built from it; the login is opened on first use."""

    profile: Profile
    origins: dict[str, str]
    scheduler: Scheduler
    prompter: Any = None
    ui: Any = None
    _remote: Any = field(default=None, repr=False)
    prompts: int = 0

    @property
    def name(self) -> str:
        return self.profile.name

    @property
    def remote(self) -> Any:
        """The login-node connection, opened (with any prompts) the first time it is needed."""
        if self._remote is None:
            from hpcjupyter.remote import make_remote
            from hpcjupyter.remote.base import SshTarget

            ssh = self.profile.ssh
            transport = "local" if self.profile.scheduler == "local" else ssh.transport
            target = SshTarget(site=self.name, host=ssh.host, user=ssh.user, port=ssh.port,
                               config=ssh.config, transport=transport)
            self._remote = make_remote(target, self.prompter)
            self.prompts += self._remote.connect()
        return self._remote

    def run(self, argv: Sequence[str], stdin: str | None = None, timeout: float | None = None) -> Result:
        """Run on the login node; with --verbose the command is shown (scripts on stdin are not)."""
        if self.ui is not None:
            self.ui.debug(f"{self.name}: {shlex.join(argv)}")
        return self.remote.run(argv, stdin=stdin, timeout=timeout)

    def status(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        """The scheduler's view of these jobs, in one queue query (plus history for gone ones)."""
        return lookup(self.scheduler, self, job_ids) if job_ids else {}

    @property
    def is_local(self) -> bool:
        return self.profile.scheduler == "local" or self.profile.ssh.transport == "local"

    def close(self) -> None:
        if self._remote is not None:
            self._remote.close()

