"""Connect's options and jobs from elsewhere, on the mini-cluster test bed.

* a job submitted from another machine (another, empty state dir): `connect --site`, `logs --site`
  and `cancel --site` find it by its name (adopt);
* `connect --timeout`: a held job is given up with the message, and left queued;
* `--cancel-on-exit`: Ctrl-C (SIGINT to connect) while waiting and while connected cancels the job;
* `logs --follow`: prints the log's lines as the job writes them, returns when the job ends;
* `env.start_timeout`: a job that runs but whose Jupyter never gets ready is given up (the job stays).

Every wait here is on a condition (a line printed, a file, a scheduler state), never a fixed sleep.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clihelpers import Cli, port_and_token, short_cli
from tbcli import cancel_and_wait, native_state, wait_until
from tbprofiles import profile_text

from hpcjupyter import protocol
from hpcjupyter.probe import api_status

pytestmark = pytest.mark.e2e

SITE = "tbopts"


class Output:
    """A background process's stdout and stderr, read as they come (threads), so a test can wait
    for a line while the process runs."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.out: list[str] = []
        self.err: list[str] = []
        self._changed = threading.Condition()
        self._threads = [threading.Thread(target=self._pump, args=(s, into), daemon=True)
                         for s, into in ((process.stdout, self.out), (process.stderr, self.err))]
        for t in self._threads:
            t.start()

    def _pump(self, stream: Any, into: list[str]) -> None:
        for line in iter(stream.readline, ""):
            with self._changed:
                into.append(line)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, pattern: str, seconds: float, stream: str = "err") -> re.Match[str]:
        """The first line of stdout ("out") or stderr ("err") matching ``pattern``."""
        lines = self.out if stream == "out" else self.err
        deadline = time.monotonic() + seconds
        with self._changed:
            while True:
                found = next((m for m in map(re.compile(pattern).search, lines) if m), None)
                if found:
                    return found
                left = deadline - time.monotonic()
                if left <= 0 or (self.process.poll() is not None and not any(t.is_alive() for t in self._threads)):
                    raise AssertionError(f"no line matching {pattern!r} on std{stream} within {seconds:g} s "
                                         f"(exit {self.process.poll()}); stdout:\n{''.join(self.out)}\n"
                                         f"stderr:\n{''.join(self.err)}")
                self._changed.wait(min(left, 0.5))

    def finish(self, seconds: float) -> int:
        """Wait for the process to exit by itself (fails, killing it, after ``seconds``)."""
        try:
            code = self.process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"still running after {seconds:g} s; stderr:\n{''.join(self.err)}") from None
        for t in self._threads:
            t.join(5)
        return code

    def stop(self) -> None:
        """Terminate it if it still runs (cleanup; what it printed stays readable)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        print(f"--- {' '.join(self.process.args[3:])}: stdout:\n{self.stdout}\nstderr:\n{self.stderr}")

    @property
    def stderr(self) -> str:
        return "".join(self.err)

    @property
    def stdout(self) -> str:
        return "".join(self.out)


def start(cli: Cli, *args: str) -> Output:
    """`hpcjupyter ARGS` in the background, its output read as it comes."""
    return Output(cli.start(*args))


def install(cli: Cli, testbed: Any, **kw: str) -> None:
    cli.write_profile(SITE, profile_text(testbed, **kw))


def submit(cli: Cli) -> str:
    res = cli.run("submit", "--site", SITE)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip().splitlines()[-1]


def records(cli: Cli) -> list[dict[str, Any]]:
    files = sorted((cli.state / "sessions").glob("*.json")) if (cli.state / "sessions").is_dir() else []
    return [json.loads(p.read_text()) for p in files if not p.name.startswith(".")]


def record_of(cli: Cli, job_id: str) -> dict[str, Any]:
    (found,) = [r for r in records(cli) if r["job_id"] == job_id]
    return found


def held(testbed: Any, scheduler: str) -> dict[str, str]:
    """Profile arguments of a job that stays queued until released (held by the user)."""
    return {"scheduler": scheduler, "extra_job": f'directives = ["{"-h" if scheduler == "pbs" else "--hold"}"]'}


@pytest.fixture
def cleanup(testbed: Any) -> Iterator[list[tuple[str, str]]]:
    """(scheduler, job id) pairs appended by a test are cancelled at its end, however it ends."""
    jobs: list[tuple[str, str]] = []
    yield jobs
    for scheduler, job in jobs:
        cancel_and_wait(testbed, scheduler, job)


# ---- a job submitted from another machine (adopt) --------------------------------------------


@pytest.mark.parametrize("scheduler", ["slurm", "pbs"])
def test_job_from_another_machine_connect_logs_cancel_with_site(testbed: Any, cleanup: list, scheduler: str) -> None:
    """Submitted with one state dir; each of connect, logs and cancel then runs from its own empty
    state dir (another laptop) with --site, and finds the job, its directory and its Jupyter."""
    with short_cli() as home, short_cli() as away, short_cli() as reader, short_cli() as canceller:
        for cli in (home, away, reader, canceller):
            install(cli, testbed, scheduler=scheduler)
        job = submit(home)
        cleanup.append((scheduler, job))
        job_dir = record_of(home, job)["job_dir"]

        unknown = away.run("connect", job, "--no-browser")
        assert unknown.returncode != 0 and "--site" in unknown.stderr, unknown.stderr

        connect = start(away, "connect", job, "--site", SITE, "--no-browser")
        try:
            url = connect.wait_for(r"^http://127\.0\.0\.1:\S+", 180, stream="out").group(0)
            port, token = port_and_token(url)
            assert api_status(port, "/", token) == 200
            adopted = record_of(away, job)
            assert adopted["job_dir"] == job_dir and adopted["site"] == SITE, adopted

            logs = reader.run("logs", job, "--site", SITE)
            assert logs.returncode == 0, logs.stderr
            assert f"{protocol.SAY}starting jupyter" in logs.stdout and token not in logs.stdout, logs.stdout
            assert record_of(reader, job)["job_dir"] == job_dir

            cancelled = canceller.run("cancel", job, "--site", SITE)
            assert cancelled.returncode == 0 and f"cancelled job {job}" in cancelled.stderr, cancelled.stderr
            code = connect.finish(90)  # connect sees the job end
        finally:
            connect.stop()
        # How the end is worded ("was cancelled" vs "ended") is the cancel tests' business (on PBS
        # a qdel'd job currently reads as failed, status 1: reported to the lead); here: it ended.
        assert code != 0 and re.search(rf"job {re.escape(job)} on {SITE} (was cancelled|ended)", connect.stderr), \
            connect.stderr
        assert "Traceback" not in connect.stderr
        wait_until(lambda: native_state(testbed, scheduler, job) in ("CANCELLED", "F"), 60, "the job to end")


# ---- connect --timeout ------------------------------------------------------------------------


def test_connect_timeout_gives_up_and_leaves_the_job_queued(cli: Cli, testbed: Any, cleanup: list) -> None:
    install(cli, testbed, **held(testbed, "slurm"))
    job = submit(cli)
    cleanup.append(("slurm", job))
    t0 = time.monotonic()
    res = cli.run("connect", job, "--timeout", "4", "--no-browser", timeout=60)
    took = time.monotonic() - t0
    assert res.returncode != 0 and res.stdout == "", res
    assert f"gave up after 4 s waiting for job {job} (pending)" in res.stderr, res.stderr
    assert f"hpcjupyter connect {job}" in res.stderr and f"hpcjupyter cancel {job}" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr
    assert took < 4 + 30, f"connect --timeout 4 took {took:.1f} s"
    assert native_state(testbed, "slurm", job) == "PENDING", "the job must be left queued"
    assert record_of(cli, job)["state"] == "PENDING"


# ---- --cancel-on-exit: Ctrl-C cancels ---------------------------------------------------------


def ctrl_c_cancels(connect: Output, testbed: Any, job: str) -> None:
    """Ctrl-C to a `connect --cancel-on-exit`: it exits 0, says so, and the scheduler cancels the job."""
    connect.process.send_signal(signal.SIGINT)
    code = connect.finish(60)
    assert code == 0, connect.stderr
    assert f"disconnected and cancelled job {job} on {SITE}" in connect.stderr, connect.stderr
    assert "Traceback" not in connect.stderr
    wait_until(lambda: native_state(testbed, "slurm", job) == "CANCELLED", 60, "the job to be cancelled")


def test_cancel_on_exit_ctrl_c_while_waiting_cancels_the_job(cli: Cli, testbed: Any, cleanup: list) -> None:
    install(cli, testbed, **held(testbed, "slurm"))
    job = submit(cli)
    cleanup.append(("slurm", job))
    connect = start(cli, "connect", job, "--cancel-on-exit", "--no-browser")
    try:
        connect.wait_for(rf"job {re.escape(job)}: pending", 60)  # waiting: the first query answered
        ctrl_c_cancels(connect, testbed, job)
    finally:
        connect.stop()


def test_cancel_on_exit_ctrl_c_while_connected_cancels_the_job(cli: Cli, testbed: Any, cleanup: list) -> None:
    install(cli, testbed)
    job = submit(cli)
    cleanup.append(("slurm", job))
    connect = start(cli, "connect", job, "--cancel-on-exit", "--no-browser")
    try:
        url = connect.wait_for(r"^http://127\.0\.0\.1:\S+", 180, stream="out").group(0)
        port, token = port_and_token(url)
        assert api_status(port, "/", token) == 200
        ctrl_c_cancels(connect, testbed, job)
    finally:
        connect.stop()
    assert api_status(port, "/", token, timeout=2.0) != 200, "the tunnel is closed"


# ---- logs --follow ----------------------------------------------------------------------------


def test_logs_follow_prints_lines_as_they_come_and_returns_when_the_job_ends(cli: Cli, testbed: Any,
                                                                             cleanup: list) -> None:
    """The job writes one line, then waits for a file the test creates, then a second line and
    ends: --follow shows the first line while the job still waits, the second after, and returns."""
    setup = ["echo hpcj-follow-one", 'while [ ! -e "$HPCJ_JOB_DIR/go" ]; do sleep 0.2; done',
             "echo hpcj-follow-two", "exit 0"]
    install(cli, testbed, extra_env=f"setup = {json.dumps(setup)}")
    job = submit(cli)
    cleanup.append(("slurm", job))
    job_dir = Path(record_of(cli, job)["job_dir"])
    follow = start(cli, "logs", job, "--follow")
    try:
        follow.wait_for(r"^hpcj-follow-one$", 90, stream="out")
        assert follow.process.poll() is None and "hpcj-follow-two" not in follow.stdout
        assert native_state(testbed, "slurm", job) == "RUNNING"
        (job_dir / "go").touch()
        follow.wait_for(r"^hpcj-follow-two$", 30, stream="out")
        code = follow.finish(60)  # the job ended: --follow returns by itself
    finally:
        follow.stop()
    assert code == 0, follow.stderr
    assert f"{protocol.SAY}{protocol.ENDED} 0" in follow.stdout, follow.stdout
    lines = follow.stdout.splitlines()
    assert lines.index("hpcj-follow-one") < lines.index("hpcj-follow-two")
    assert len([line for line in lines if line == "hpcj-follow-one"]) == 1, "a line was printed twice"


# ---- running, but Jupyter never ready: env.start_timeout ---------------------------------------


def test_running_job_whose_jupyter_never_gets_ready_is_given_up_after_start_timeout(cli: Cli, testbed: Any,
                                                                                    cleanup: list) -> None:
    setup = ["echo hpcj-stuck-in-setup", "sleep 600"]
    install(cli, testbed, extra_env=f"start_timeout = 3\nsetup = {json.dumps(setup)}")
    job = submit(cli)
    cleanup.append(("slurm", job))
    res = cli.run("connect", job, "--no-browser", timeout=120)
    assert res.returncode != 0 and res.stdout == "", res
    assert f"job {job} has run 3 s without Jupyter becoming ready" in res.stderr, res.stderr
    assert "hpcj-stuck-in-setup" in res.stderr, "the log's tail is shown"
    assert f"hpcjupyter cancel {job}" in res.stderr and "Traceback" not in res.stderr, res.stderr
    assert native_state(testbed, "slurm", job) == "RUNNING", "the job is left running"
