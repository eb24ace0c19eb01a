"""The `local` remote: this machine is the "login node" (the embedded local site, and tests)."""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from hpcjupyter.errors import RemoteError
from hpcjupyter.transports.base import CONNECT_TIMEOUT, Prompter, Result, SshTarget, check_shape, run_process
from hpcjupyter.tunnel import LOOPBACK, Relay


class LocalRemote:
    """Runs argv directly (no shell) and reads/writes files on this machine."""

    def __init__(self, target: SshTarget | None = None, prompter: Prompter | None = None) -> None:
        self.target = target or SshTarget(site="local", host="localhost", transport="local")

    def connect(self) -> int:
        return 0

    def run(self, argv: Sequence[str], stdin: str | None = None, timeout: float | None = None) -> Result:
        argv = list(argv)
        try:
            return run_process(argv, stdin, timeout)
        except FileNotFoundError:
            return Result(127, "", f"{argv[0]}: command not found\n")
        except PermissionError as exc:
            return Result(126, "", f"{argv[0]}: {exc.strerror}\n")
        except subprocess.TimeoutExpired as exc:
            raise RemoteError(f"A local command did not finish within {timeout:g} s: {' '.join(argv)[:120]}") from exc

    def read_file(self, path: str) -> str | None:
        p = Path(path).expanduser()
        try:
            return p.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise RemoteError(f"Could not read {p}: {exc.strerror}.") from exc

    def write_file(self, path: str, text: str, mode: int = 0o600) -> None:
        """Atomic and private from the first byte: a temporary file made 0600, then renamed."""
        p = Path(path).expanduser()
        try:
            fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    f.write(text)
                os.chmod(tmp, mode)
                os.replace(tmp, p)
            except BaseException:
                os.unlink(tmp)
                raise
        except OSError as exc:
            raise RemoteError(
                f"Could not write {p}: {exc.strerror}.",
                "Check that the directory exists and that you may write to it.",
            ) from exc

    def open_tunnel(self, shape: str, node: str, remote_port: int, local_port: int) -> Relay:
        """A relay to a port on this machine (the ``node`` for ``forward``, loopback for ``jump``),
        so the local site goes through the same connect path as a remote one."""
        dest = node if check_shape(shape) == "forward" else LOOPBACK
        relay = Relay(local_port, lambda: socket.create_connection((dest, remote_port), timeout=CONNECT_TIMEOUT))
        relay.open()
        return relay

    def close(self) -> None:
        pass
