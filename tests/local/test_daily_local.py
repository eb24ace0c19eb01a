"""Issue 13 on the `local` site, end to end: signals while waiting, time limit, --json events,
cancelled jobs, url, clean and the start notification."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from clihelpers import Cli, port_and_token, read_url, stop

from hpcjupyter.probe import api_status

SLOW = 'extends = "local"\n[env]\nsetup = ["sleep {seconds}"]\n'


def job_of(cli: Cli, seconds: float = 60) -> str:
    """The job id of the one session, once submit has recorded it."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = [s for s in cli.json("ls") if s.get("job_id")]
        if found:
            return found[0]["job_id"]
        time.sleep(0.3)
    raise AssertionError("no job was recorded")


def state_of(cli: Cli, job_id: str) -> dict:
    return cli.json("status", job_id)


@pytest.mark.parametrize("number,cancel", [(signal.SIGINT, True), (signal.SIGTERM, True), (signal.SIGHUP, True),
                                           (signal.SIGINT, False), (signal.SIGHUP, False)],
                         ids=["int-cancel", "term-cancel", "hup-cancel", "int-leave", "hup-leave"])
def test_a_signal_while_waiting_leaves_the_state_clear(cli: Cli, number: int, cancel: bool) -> None:
    """#1: Ctrl-C, a closed terminal or a kill while the job starts: --cancel-on-exit cancels it
    and says so; without it the job keeps running and the message says how to reconnect and cancel."""
    cli.write_profile("slow", SLOW.format(seconds=60))
    args = ["submit", "--site", "slow", "--connect", "--no-browser"] + (["--cancel-on-exit"] if cancel else [])
    process = cli.start(*args)
    try:
        job_id = job_of(cli)
        time.sleep(2)  # now waiting for Jupyter
        process.send_signal(number)
        process.wait(timeout=60)
    finally:
        stderr = stop(process)
    status = state_of(cli, job_id)
    if cancel:
        assert f"cancelled job {job_id}" in stderr
        deadline = time.monotonic() + 30
        while status["state"] != "ENDED" and time.monotonic() < deadline:
            time.sleep(0.5)
            status = state_of(cli, job_id)
        assert status["state"] == "ENDED" and status["outcome"] == "cancelled"
    else:
        assert f"reconnect: hpcjupyter connect {job_id}" in stderr
        assert f"stop it:   hpcjupyter cancel {job_id}" in stderr
        assert status["state"] == "RUNNING"
        assert cli.run("cancel", job_id).returncode == 0


def test_local_status_shows_the_time_limit_and_json_events(cli: Cli) -> None:
    """#3 and #9: the local job reports its walltime as time limit; #4: --connect --json is one JSON
    object per line (submitted, ready, ended) and nothing else on stdout."""
    process = cli.start("submit", "--site", "local", "--hours", "1:30", "--connect", "--no-browser", "--json")
    assert process.stdout is not None
    try:
        submitted = json.loads(process.stdout.readline())
        ready = json.loads(process.stdout.readline())
        assert submitted["event"] == "submitted" and ready["event"] == "ready"
        job_id = submitted["job_id"]
        port, token = port_and_token(ready["url"])
        assert api_status(port, "/", token) == 200
        status = cli.json("status", job_id)
        assert status["time_limit"] == "01:30:00" and status["time_used"]
        detail = cli.run("ls").stdout
        assert "http://127.0.0.1:" in detail  # connected: the URL
        url = cli.run("url", job_id)
        assert url.returncode == 0, url.stderr
        assert url.stdout.strip() == ready["url"]
        assert token not in json.dumps(cli.json("ls"))
        assert cli.run("cancel", job_id).returncode == 0
        process.wait(timeout=60)
        rest = [json.loads(line) for line in process.stdout.read().splitlines() if line.strip()]
        assert [e["event"] for e in rest] == ["ended"]
    finally:
        stop(process)


def test_cancelled_job_says_cancelled_and_cancelling_again_says_already_ended(cli: Cli) -> None:
    """#6: connect to a cancelled job says so (no log, no conda advice); a second cancel says it had ended."""
    submitted = cli.run("submit", "--site", "local")
    job_id = submitted.stdout.strip()
    assert cli.run("cancel", job_id).returncode == 0
    time.sleep(1)
    again = cli.run("cancel", job_id)
    assert again.returncode == 0 and "had already ended (cancelled" in again.stderr
    connected = cli.run("connect", job_id, "--no-browser", timeout=60)
    assert connected.returncode != 0
    assert f"job {job_id} on local was cancelled" in connected.stderr
    assert "Last lines of its log" not in connected.stderr and "conda" not in connected.stderr
    assert "hpcjupyter submit --site local" in connected.stderr


def test_no_job_id_acts_on_the_newest_running_session(cli: Cli) -> None:
    first = cli.run("submit", "--site", "local").stdout.strip()
    time.sleep(1.1)
    second = cli.run("submit", "--site", "local").stdout.strip()
    status = cli.run("status", "--json")
    assert json.loads(status.stdout)["job_id"] == second
    assert cli.run("cancel").returncode == 0
    assert cli.run("cancel", first).returncode == 0
    assert cli.json("status", second)["outcome"] == "cancelled"


def test_clean_removes_only_old_job_directories(cli: Cli) -> None:
    jobs = cli.state / "jobs"
    old, young, other = jobs / "20250101-000000-abcdef", jobs / "20261123-100000-abcdef", jobs / "keepme"
    for directory in (old, young, other):
        directory.mkdir(parents=True)
        (directory / "hpcjupyter.log").write_text("x")
    week_ago = time.time() - 40 * 86400
    for directory in (old, other):
        os.utime(directory, (week_ago, week_ago))
    dry = cli.run("clean", "--site", "local", "--older-than", "30d", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.split() == [str(old)] and "would remove 1 job directory" in dry.stderr
    assert old.exists()
    done = cli.run("clean", "--site", "local", "--older-than", "30d")
    assert done.returncode == 0 and not old.exists() and young.exists() and other.exists()


def test_a_job_that_waited_rings_and_notifies_when_ready(cli: Cli) -> None:
    """A fake notify-send records the desktop notification; --quiet or notify = false silence it."""
    bin_dir = cli.home / "bin"
    bin_dir.mkdir()
    seen = cli.home / "notified"
    (bin_dir / "notify-send").write_text(f'#!/bin/sh\necho "$@" >> {seen}\n')
    (bin_dir / "notify-send").chmod(0o755)
    cli.env["PATH"] = f"{bin_dir}{os.pathsep}{cli.env['PATH']}"
    cli.write_profile("slow", SLOW.format(seconds=11))
    process = cli.start("submit", "--site", "slow", "--connect", "--no-browser")
    try:
        read_url(process)
        job_id = job_of(cli)
        assert f"job {job_id} on slow started" in seen.read_text()
        assert cli.run("cancel", job_id).returncode == 0
        process.wait(timeout=60)
    finally:
        stop(process)


def test_local_port_is_honoured_on_the_local_site(cli: Cli) -> None:
    """#7: --local-port on `local` is where the browser goes (a relay to Jupyter's own port)."""
    from hpcjupyter.tunnel import free_local_port

    wanted = free_local_port()
    process = cli.start("submit", "--site", "local", "--connect", "--no-browser", "--local-port", str(wanted))
    try:
        url = read_url(process)
        port, token = port_and_token(url)
        assert port == wanted and api_status(port, "/", token) == 200
        job_id = job_of(cli)
        assert cli.run("url", job_id).stdout.strip() == url
        assert cli.run("cancel", job_id).returncode == 0
        process.wait(timeout=60)
    finally:
        stop(process)


def test_local_job_ends_at_its_walltime(cli: Cli) -> None:
    """The local site ends a job at its walltime as a scheduler does: connect, which had the URL,
    says the job ran out of time and exits non-zero; status says timed out."""
    process = cli.start("submit", "--site", "local", "--hours", "0:01", "--connect", "--no-browser")
    try:
        port, token = port_and_token(read_url(process))
        assert api_status(port, "/", token) == 200
        job_id = job_of(cli)
        process.wait(timeout=120)  # the walltime is a minute: the smallest --hours takes
    finally:
        stderr = stop(process)
    assert process.returncode != 0, stderr
    assert "hpcjupyter: stop requested" in stderr and "with more --hours" in stderr, stderr
    status = state_of(cli, job_id)
    assert (status["state"], status["outcome"], status["time_limit"]) == ("ENDED", "timed out", "00:01:00"), status
    assert status["exit_status"] == "143", status  # the script ended on SIGTERM, before any SIGKILL
