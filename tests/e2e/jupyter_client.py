"""Just enough of the Jupyter REST and kernel protocol to run one line of code through the tunnel."""

from __future__ import annotations

import json
import urllib.request
import uuid
from typing import Any


def _api(port: int, token: str, method: str, path: str, body: Any = None) -> Any:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"token {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        text = response.read().decode()
        return json.loads(text) if text else None


def execute_request(code: str, session: str, username: str = "test") -> tuple[str, str]:
    """One ``execute_request`` of CODE on the shell channel: (its msg_id, the JSON frame)."""
    msg_id = uuid.uuid4().hex
    header = {"msg_id": msg_id, "username": username, "session": session, "msg_type": "execute_request",
              "version": "5.3"}
    content = {"code": code, "silent": False, "store_history": False, "user_expressions": {},
               "allow_stdin": False, "stop_on_error": True}
    return msg_id, json.dumps({"header": header, "parent_header": {}, "metadata": {}, "channel": "shell",
                               "content": content})


def run_code(port: int, token: str, code: str, timeout: float = 60) -> str:
    """Start a kernel, execute ``code``, return what it printed, shut the kernel down."""
    import websocket  # websocket-client, a test dependency

    kernel = _api(port, token, "POST", "/api/kernels", {"name": "python3"})
    try:
        socket = websocket.create_connection(
            f"ws://127.0.0.1:{port}/api/kernels/{kernel['id']}/channels",
            header=[f"Authorization: token {token}"], timeout=timeout,
        )
        msg_id, frame = execute_request(code, uuid.uuid4().hex)
        socket.send(frame)
        output = []
        while True:
            message = json.loads(socket.recv())
            if message.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = message["msg_type"]
            if kind == "stream":
                output.append(message["content"]["text"])
            elif kind == "error":
                raise AssertionError("kernel error: " + "\n".join(message["content"]["traceback"]))
            elif kind == "status" and message["content"]["execution_state"] == "idle":
                break
        socket.close()
        return "".join(output)
    finally:
        _api(port, token, "DELETE", f"/api/kernels/{kernel['id']}")
