"""One site, ready to use: its merged profile, its scheduler adapter and (lazily) its login."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hpcjupyter.remote.base import Result
from hpcjupyter.schedulers import Scheduler
from hpcjupyter.schema import Profile


@dataclass
class Site:
    """A profile plus the live pieces built from it; the login is opened on first use."""

    profile: Profile
    origins: dict[str, str]
    scheduler: Scheduler
    prompter: Any = None
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

    def run(self, argv: list[str], stdin: str | None = None, timeout: float | None = None) -> Result:
        return self.remote.run(argv, stdin=stdin, timeout=timeout)

    @property
    def is_local(self) -> bool:
        return self.profile.scheduler == "local" or self.profile.ssh.transport == "local"

    def close(self) -> None:
        if self._remote is not None:
            self._remote.close()

