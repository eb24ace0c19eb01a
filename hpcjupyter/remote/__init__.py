"""Reaching the login node: one interface (`Remote`), three transports, chosen per site.

Imports here stay light (no paramiko, fabric or pexpect) because CLI start-up time is benchmarked.
"""

from __future__ import annotations

import os
import shutil

from hpcjupyter.errors import RemoteError
from hpcjupyter.remote.base import Prompter, Remote, Result, Runner, SshTarget

__all__ = ["Prompter", "Remote", "Result", "Runner", "SshTarget", "choose_transport", "make_remote"]


def openssh_usable() -> bool:
    """The system ssh can multiplex (ControlMaster needs unix sockets: not on Windows)."""
    return os.name == "posix" and shutil.which("ssh") is not None


def choose_transport(target: SshTarget) -> str:
    """``auto`` becomes openssh where ssh with ControlMaster exists, otherwise fabric."""
    if target.transport != "auto":
        return target.transport
    return "openssh" if openssh_usable() else "fabric"


def make_remote(target: SshTarget, prompter: Prompter | None = None) -> Remote:
    """The Remote for a site's ``[ssh]`` table (nothing is connected until first use)."""
    transport = choose_transport(target)
    if transport == "openssh":
        from hpcjupyter.remote.openssh import OpensshRemote

        return OpensshRemote(target, prompter)
    if transport == "fabric":
        from hpcjupyter.remote.fabric_remote import FabricRemote

        return FabricRemote(target, prompter)
    if transport == "local":
        from hpcjupyter.remote.local import LocalRemote

        return LocalRemote(target, prompter)
    raise RemoteError(f"Unknown ssh transport {transport!r} for site {target.site!r}.")
