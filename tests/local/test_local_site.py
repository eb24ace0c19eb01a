"""The README's first command, for real: submit --site local --connect --no-browser."""

from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.request

from hpcjupyter.probe import api_status


def read_url(process: subprocess.Popen[str], seconds: float = 90) -> str:
    """The first stdout line of connect: the URL with the token."""
    assert process.stdout is not None
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if line.startswith("http://127.0.0.1:"):
            return line.strip()
        if not line and process.poll() is not None:
            break
    process.kill()
    raise AssertionError(f"no URL from connect; stderr:\n{process.stderr.read() if process.stderr else ''}")


def port_and_token(url: str) -> tuple[int, str]:
    hostport, _, query = url[len("http://"):].partition("/lab?token=")
    return int(hostport.rsplit(":", 1)[1]), query


def test_submit_connect_answers_with_token_and_refuses_without(cli) -> None:
    process = cli.start("submit", "--site", "local", "--connect", "--no-browser")
    try:
        url = read_url(process)
        port, token = port_and_token(url)
        assert api_status(port, "/", token) == 200
        assert api_status(port, "/", None) == 403
        with urllib.request.urlopen(url, timeout=10) as page:
            assert "JupyterLab" in page.read().decode()
        listed = cli.json("ls")
        assert len(listed) == 1 and listed[0]["state"] == "RUNNING"
        assert token not in str(listed)
        job_id = listed[0]["job_id"]
        cancelled = cli.run("cancel", job_id)
        assert cancelled.returncode == 0, cancelled.stderr
        assert process.wait(timeout=60) is not None
        ended = cli.json("ls")
        assert ended[0]["state"] == "ENDED"
    finally:
        if process.poll() is None:
            process.kill()


def test_a_job_that_fails_before_jupyter_starts_shows_its_log(cli) -> None:
    (cli.profiles / "broken-local.toml").write_text(
        'extends = "local"\n[env]\nvenv = "/nonexistent/venv"\n'
    )
    result = cli.run("submit", "--site", "broken-local", "--connect", "--no-browser", timeout=90)  # a hang fails the test
    assert result.returncode != 0
    assert "ended" in result.stderr
    assert "/nonexistent/venv/bin/activate" in result.stderr  # the log's tail is shown
