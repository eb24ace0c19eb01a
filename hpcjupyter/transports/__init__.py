"""Reaching the login node: one interface (`Remote`), three transports, chosen per site.

Imports here stay light (no paramiko, fabric or pexpect) because CLI start-up time is benchmarked.
"""

from __future__ import annotations

import importlib
import os
import shutil

from hpcjupyter.errors import RemoteError
from hpcjupyter.transports.base import Prompter, Remote, Result, Runner, SshTarget

TRANSPORTS: dict[str, str] = {
    "openssh": "hpcjupyter.transports.openssh:OpensshRemote",
    "fabric": "hpcjupyter.transports.fabric_remote:FabricRemote",
    "local": "hpcjupyter.transports.local:LocalRemote",
}
"""Every transport by name: ``module:class``. A new transport is a module and one line here."""

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
    """The Remote for a site's ``[ssh]`` table (nothing is connected until first use). The
    transport's module is imported only now: paramiko and pexpect cost start-up time."""
    transport = choose_transport(target)
    if transport not in TRANSPORTS:
        raise RemoteError(f"Unknown ssh transport {transport!r} for site {target.site!r}.")
    module, _, name = TRANSPORTS[transport].partition(":")
    remote: Remote = getattr(importlib.import_module(module), name)(target, prompter)
    return remote
