"""Find where Jupyter listens from what the job wrote: the marker line, Jupyter's own log, connection.json.

Pure functions over text; the caller fetches the text over the login connection.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from hpcjupyter.errors import HpcJupyterError
from hpcjupyter.protocol import MARKER

_MARKER_LINE = re.compile(rf"^{MARKER}\s+(?P<fields>.*)$", re.MULTILINE)
# "[I 2026-11-23 14:36:24.636 ServerApp] http://127.0.0.1:18888/lab?token=..." and the Notebook 6 form.
_URL_LINE = re.compile(r"^\[I [^\]]*(?:ServerApp|NotebookApp)\]\s+(?:or\s+)?(?P<url>https?://\S+)\s*$", re.MULTILINE)
_FATAL = re.compile(r"^\[C [^\]]*\] (?P<text>ERROR: .*)$", re.MULTILINE)


@dataclass(frozen=True)
class Endpoint:
    """Where a Jupyter server listens, as seen from the compute node."""

    host: str
    port: int
    base_url: str = "/"
    node: str = ""
    token: str | None = None


def parse_marker(log: str) -> Endpoint | None:
    """The last ready marker in the log (a requeued job may have several)."""
    matches = list(_MARKER_LINE.finditer(log))
    if not matches:
        return None
    fields = dict(part.split("=", 1) for part in matches[-1].group("fields").split() if "=" in part)
    try:
        port = int(fields["port"])
        host = fields["host"]
    except (KeyError, ValueError):
        return None
    return Endpoint(host=host, port=port, base_url=fields.get("base_url", "/"), node=fields.get("node", host))


def parse_jupyter_log(log: str) -> Endpoint | None:
    """Fallback: the URL Jupyter itself logs (Notebook 6, jupyter_server 1.x/2.x), the last one started.

    The reported port wins over any port asked for: jupyter may have moved it (port_retries).
    A masked token (``token=...``) is not a token.
    """
    urls = [m.group("url") for m in _URL_LINE.finditer(log)]
    if not urls:
        return None
    preferred = next((u for u in reversed(urls) if "127.0.0.1" not in u and "localhost" not in u), urls[-1])
    parts = urlsplit(preferred)
    if parts.port is None or parts.hostname is None:
        return None
    token = parse_qs(parts.query).get("token", [None])[0]
    base = parts.path
    for suffix in ("lab", "tree"):
        if base.endswith("/" + suffix):
            base = base[: -len(suffix)]
    return Endpoint(
        host=parts.hostname, port=parts.port, base_url=base or "/", token=None if token in (None, "...") else token
    )


def fatal_error(log: str) -> str | None:
    """Jupyter's own fatal line (e.g. port not available), to show the user."""
    match = _FATAL.search(log)
    return match.group("text") if match else None


def parse_connection_file(text: str, path: str) -> Endpoint:
    """Read connection.json (written 0600 by the job): host, port, token, base url."""
    try:
        data = json.loads(text)
        return Endpoint(
            host=str(data["host"]),
            port=int(data["port"]),
            base_url=str(data.get("base_url", "/")),
            node=str(data.get("node", data["host"])),
            token=str(data["token"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise HpcJupyterError(
            f"{path} on the cluster is not a valid hpcjupyter connection file ({exc.__class__.__name__}: {exc}).",
            "The job may have been changed by hand; cancel it and submit a new one.",
        ) from None


def tail(text: str, lines: int = 30) -> str:
    """The last lines of a log, for error messages."""
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])
