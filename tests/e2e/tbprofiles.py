"""Site profiles pointing at the mini-cluster test bed, one per shape the tool must support."""

from __future__ import annotations

from typing import Any


def profile_text(testbed: Any, *, scheduler: str = "slurm", host: str | None = None, transport: str = "openssh",
                 tunnel: str = "forward", extra_env: str = "", extra_job: str = "") -> str:
    """A TOML profile for the test bed: Jupyter from the shared venv, job dirs on the shared fs."""
    job = 'partition = "serial"' if scheduler == "slurm" else ""
    return f"""
scheduler = "{scheduler}"
description = "mini-cluster test bed ({scheduler}, {transport}, {tunnel})"
[ssh]
host = "{host or testbed.login_alias}"
config = "{testbed.ssh_config}"
transport = "{transport}"
tunnel = "{tunnel}"
[job]
hours = 1.0
cpus = 1
{job}
{extra_job}
[env]
remote_dir = "{testbed.remote_dir}"
venv = "{testbed.jupyter_venv}"
poll_seconds = 2
{extra_env}
"""


# name → keyword arguments of profile_text
SHAPES: dict[str, dict[str, str]] = {
    "tb-slurm": {},
    "tb-slurm-jump": {"tunnel": "jump"},
    "tb-slurm-fabric": {"transport": "fabric"},
    "tb-slurm-fabric-jump": {"transport": "fabric", "tunnel": "jump"},
    "tb-pbs": {"scheduler": "pbs"},
}


def install(cli: Any, testbed: Any, *names: str) -> None:
    """Write the named test-bed profiles into the CLI's profile directory."""
    for name in names:
        cli.write_profile(name, profile_text(testbed, **SHAPES[name]))
