"""The shape of a site profile and of the user config: every key, its type and its default.

Kept apart from loading so the reference in the README and `sites init` can be read off it.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

_NO_NEWLINE = re.compile(r"^[^\r\n]*$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class SshSection(_Strict):
    """How to reach the login node, and which tunnel shape the site allows."""

    host: str = Field("", description="login host name or ssh_config alias")
    user: str | None = Field(None, description="login user name (personal: put it in your config)")
    port: int | None = Field(None, ge=1, le=65535, description="ssh port")
    config: str | None = Field(None, description="path to an ssh_config file passed to ssh -F")
    transport: Literal["auto", "openssh", "fabric", "local"] = "auto"
    tunnel: Literal["forward", "jump"] = Field(
        "forward", description="forward: -L to NODE:PORT via the login node; jump: ssh to the node itself"
    )


class JobSection(_Strict):
    """Resources asked of the scheduler, and the site's limits on them."""

    hours: float = Field(1.0, description="default walltime in hours")
    max_hours: float | None = Field(None, description="longest walltime the default qos/queue allows")
    qos_max_hours: dict[str, float] = Field(
        default_factory=dict, description="longest walltime per qos (Slurm) or queue (PBS)"
    )
    cpus: int = 1
    memory: str | None = Field(None, description="memory per job, e.g. 16G (omit where the site forbids --mem)")
    allow_memory: bool = Field(True, description="false where the site assigns memory with cores only")
    gpus: int = 0
    max_gpus: int | None = Field(None, description="0 on sites without GPUs")
    account: str | None = Field(None, description="budget/project code (personal: put it in your config)")
    account_required: bool = False
    partition: str | None = None
    qos: str | None = None
    queue: str | None = None
    directives: list[str] = Field(default_factory=list, description="extra raw scheduler header options")

    @field_validator("directives")
    @classmethod
    def _one_line_each(cls, value: list[str]) -> list[str]:
        for item in value:
            if not _NO_NEWLINE.match(item):
                raise ValueError("each directive must be one line (no newline characters)")
        return value


class EnvSection(_Strict):
    """How the job prepares its environment and starts Jupyter on the compute node."""

    remote_dir: str = Field(
        "", description="job directories on a filesystem compute nodes see; {user}, {account}, {state_dir}"
    )
    workdir: str | None = Field(None, description="directory Jupyter serves (default: the job directory)")
    login_shell: bool = Field(False, description="start the script with #!/bin/bash --login (Cray sites)")
    setup: list[str] = Field(default_factory=list, description="shell lines run first (site code, not data)")
    modules: list[str] = Field(default_factory=list, description="modules to load, in order")
    conda: str | None = Field(None, description="conda/miniforge install prefix")
    conda_env: str | None = None
    venv: str | None = Field(None, description="path of a Python venv to activate")
    variables: dict[str, str] = Field(default_factory=dict, description="environment variables to export")
    jupyter: Literal["lab", "notebook"] = "lab"
    jupyter_args: list[str] = Field(default_factory=list, description="extra arguments for jupyter")
    bind: Literal["auto", "loopback", "hostname", "all"] = Field(
        "auto", description="auto: loopback for jump, the node's hostname for forward; all = 0.0.0.0"
    )
    poll_seconds: int = Field(60, ge=1, description="least interval between scheduler queries")


class Profile(_Strict):
    """A merged, validated site profile."""

    name: str
    description: str = ""
    extends: str | None = None
    scheduler: Literal["slurm", "pbs", "local"]
    ssh: SshSection = Field(default_factory=SshSection)
    job: JobSection = Field(default_factory=JobSection)
    env: EnvSection = Field(default_factory=EnvSection)


class UserConfig(_Strict):
    """The user's own config.toml: extra profile directories and personal per-site values."""

    profile_path: list[str] = Field(default_factory=list)
    sites: dict[str, dict[str, object]] = Field(default_factory=dict)
