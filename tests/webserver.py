"""A stand-in for Jupyter in the tunnel tests: a quiet HTTP server on 127.0.0.1."""

from __future__ import annotations

import contextlib
import http.server
import threading
import urllib.request
from collections.abc import Iterator

from hpcjupyter.tunnel import LOOPBACK


@contextlib.contextmanager
def http_server() -> Iterator[int]:
    """Serves the current directory on 127.0.0.1; yields its port."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer((LOOPBACK, 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def get(port: int) -> int:
    """The status of GET / through 127.0.0.1:PORT."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
        return int(r.status)
