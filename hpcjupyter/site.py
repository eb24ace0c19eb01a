"""One site, ready to use: its merged profile, its scheduler adapter and its login."""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from hpcjupyter.errors import HpcJupyterError
from hpcjupyter.schedulers import Scheduler, lookup
from hpcjupyter.schedulers.base import JobState, JobStatus
from hpcjupyter.schema import Profile
from hpcjupyter.transports.base import Prompter, Remote, Result, SshTarget

if TYPE_CHECKING:
    from hpcjupyter.ui import UI


def _default_factory(target: SshTarget, prompter: Prompter | None) -> Remote:
    from hpcjupyter.transports import make_remote

    return make_remote(target, prompter)


@dataclass
class Site:
    """A profile plus the live pieces built from it. Nothing touches the network until `login`
    (or a command that needs the login) is called."""

    profile: Profile
    origins: dict[str, str]
    scheduler: Scheduler
    prompter: Prompter | None = None
    ui: UI | None = None
    remote_factory: Callable[[SshTarget, Prompter | None], Remote] = _default_factory
    """Builds the transport for the profile's [ssh] table (tests pass their own)."""
    prompts: int = 0
    """How many login prompts the user has answered for this site in this process."""
    _remote: Remote | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.profile.name

    @property
    def target(self) -> SshTarget:
        ssh = self.profile.ssh
        transport = "local" if self.scheduler.on_this_machine else ssh.transport
        return SshTarget(
            site=self.name, host=ssh.host, user=ssh.user, port=ssh.port, config=ssh.config, transport=transport
        )

    def login(self) -> Remote:
        """The login-node connection, opened (relaying any prompts) the first time. Called early by
        the commands, so a login that cannot work says so before anything else is tried."""
        if self._remote is None:
            self._remote = self.remote_factory(self.target, self.prompter)
            self.prompts += self._remote.connect()
        return self._remote

    def relogin(self) -> None:
        """Re-open a dropped login (one prompt sequence on MFA sites; none while it is up)."""
        self.prompts += self.login().connect()

    def run(self, argv: Sequence[str], stdin: str | None = None, timeout: float | None = None) -> Result:
        """Run on the login node; with --verbose the command is shown (scripts on stdin are not)."""
        if self.ui is not None:
            self.ui.debug(f"{self.name}: {shlex.join(argv)}")
        return self.login().run(argv, stdin=stdin, timeout=timeout)

    def read_file(self, path: str) -> str | None:
        """A small file's text on the login node, None when it does not exist."""
        return self.login().read_file(path)

    def status(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        """The scheduler's view of these jobs, in one queue query (plus history for gone ones)."""
        return lookup(self.scheduler, self, job_ids) if job_ids else {}

    def known_status(self, job_id: str) -> JobStatus:
        """One job's status after logging in (a login that cannot work says so first, not
        "unknown job"); a scheduler that cannot tell is an error saying so."""
        self.login()
        found = self.status([job_id]).get(job_id)
        if found is None or found.state is JobState.UNKNOWN:
            why = f": {found.reason}" if found is not None and found.reason else ""
            raise HpcJupyterError(
                f"the scheduler on {self.name} could not say what job {job_id} is{why}.",
                "Check the job id; if the cluster is busy, try again in a minute.",
            )
        return found

    @property
    def is_local(self) -> bool:
        return self.scheduler.on_this_machine or self.target.transport == "local"

    def close(self) -> None:
        if self._remote is not None:
            self._remote.close()
