"""The README's first command, for real: submit --site local --connect --no-browser."""

from __future__ import annotations

import shutil
import sys
import urllib.request
from pathlib import Path

import pytest
from clihelpers import port_and_token, read_url, stop

from hpcjupyter.probe import api_status


@pytest.fixture(autouse=True)
def needs_jupyter() -> None:
    if shutil.which("jupyter", path=str(Path(sys.executable).parent)) is None and shutil.which("jupyter") is None:
        pytest.fail("jupyterlab is not installed in the test environment (pip install jupyterlab)")


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
        process.wait(timeout=60)
        ended = cli.json("ls")
        assert ended[0]["state"] == "ENDED"
    finally:
        stop(process)


def test_a_job_that_fails_before_jupyter_starts_shows_its_log(cli) -> None:
    cli.write_profile("broken-local", 'extends = "local"\n[env]\nvenv = "/nonexistent/venv"\n')
    result = cli.run("submit", "--site", "broken-local", "--connect", "--no-browser", timeout=90)
    assert result.returncode != 0
    assert "ended" in result.stderr
    assert "no venv at /nonexistent/venv (bin/activate does not exist)" in result.stderr  # the log's tail


def test_verbose_shows_commands_but_never_the_token_and_pipes_get_plain_lines(cli) -> None:
    process = cli.start("-v", "submit", "--site", "local", "--connect", "--no-browser")
    try:
        port, token = port_and_token(read_url(process))
        assert api_status(port, "/", token) == 200
        job_id = cli.json("ls")[0]["job_id"]
        assert cli.run("cancel", job_id).returncode == 0
        process.wait(timeout=60)
    finally:
        stderr = stop(process)
    assert "[verbose] local: " in stderr and "from hpcjupyter.schedulers.localjob import main" in stderr
    assert "sys.exit(main(sys.argv[1:]))' submit " in stderr
    assert token not in stderr
    assert "\x1b[" not in stderr  # no colour or cursor control when piped


def test_quiet_keeps_only_results(cli) -> None:
    result = cli.run("-q", "submit", "--site", "local")
    assert result.returncode == 0, result.stderr
    job_id = result.stdout.strip()
    assert job_id.startswith("local-") and result.stderr == ""
    assert cli.run("-q", "cancel", job_id).returncode == 0


def test_jupyter_shut_down_from_its_menu_is_a_clean_end(cli) -> None:
    """Bug B: File > Shut Down (POST /api/shutdown) ends the local job with status 0: exit 0."""
    process = cli.start("submit", "--site", "local", "--connect", "--no-browser")
    try:
        port, token = port_and_token(read_url(process))
        request = urllib.request.Request(f"http://127.0.0.1:{port}/api/shutdown", method="POST",
                                         headers={"Authorization": f"token {token}"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            assert answer.status in (200, 204)
        assert process.wait(timeout=120) == 0
    finally:
        stderr = stop(process)
    assert "ended: completed" in stderr
    assert cli.json("ls")[0]["state"] == "ENDED"
