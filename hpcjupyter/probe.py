"""Is Jupyter answering? ``GET /api/status`` with the token, through the tunnel."""

from __future__ import annotations

import http.client


def api_status(port: int, base_url: str, token: str | None, timeout: float = 3.0, host: str = "127.0.0.1") -> int:
    """The HTTP status of /api/status (0 when nothing answers). The token travels in a header."""
    path = base_url.rstrip("/") + "/api/status"
    headers = {"Authorization": f"token {token}"} if token else {}
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request("GET", path, headers=headers)
        return connection.getresponse().status
    except (OSError, http.client.HTTPException):
        return 0
    finally:
        connection.close()


def browser_url(port: int, base_url: str, token: str, interface: str = "lab") -> str:
    """The URL the user opens: /lab (or /tree for notebook) with the token."""
    page = "lab" if interface == "lab" else "tree"
    return f"http://127.0.0.1:{port}{base_url.rstrip('/')}/{page}?token={token}"
