"""The test bed's PBS Pro emulator (tests/cluster/pbs) prints what a real OpenPBS 23.06 prints.

Each test runs the emulator's real commands as subprocesses against a fresh spool in a temp
directory, configured like the host the ``openpbs-*`` fixtures were recorded on (server and single
node ``pbshost`` with 2 cpus, queue ``workq``), with the mom started locally instead of over ssh.
Job numbers are set through the spool's sequence file, so ids are compared as they are. Only what
differs by machine or moment is normalised, by the explicit rules in `normalise` and `Emu.local`:
dates, epochs, session ids, measured resource use, and the test user's name, home and workdir
(the workdir is made exactly as long as the recorded one, so line wrapping is compared too).
"""

from __future__ import annotations

import difflib
import getpass
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import read_fixture

PBS = Path(__file__).resolve().parents[1] / "cluster" / "pbs"
RECORDED_WORKDIR = "/tmp/openpbs-home/pbsuser"      # PBS_O_WORKDIR and PBS_O_HOME of the recording
RECORDED_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/local/games:/usr/games:/opt/pbs/bin"

TEST_SH = """#!/bin/bash
#PBS -N test
#PBS -l select=1:ncpus=1:mem=1gb
#PBS -l walltime=00:05:00
#PBS -k oed
#PBS -j oe
sleep {seconds}
"""
FAIL_SH = """#!/bin/bash
#PBS -N failjob
#PBS -l select=1:ncpus=1:mem=100mb
#PBS -l walltime=00:01:00
#PBS -j oe
exit 3
"""
KILLME_SH = """#!/bin/bash
#PBS -N killme
#PBS -l select=1:ncpus=1:mem=100mb
#PBS -l walltime=00:10:00
sleep 60
"""


def recorded(name: str) -> tuple[str, str, int]:
    """(stdout, stderr, exit status) of a fixture. Its body is one stream (which one, the test
    says: errors are stderr) unless a ``--- stderr:`` line splits them; there the recorder lost
    stdout's final newline (pbs_json.c generate_json always ends with "\\n}\\n")."""
    body, _, rc = read_fixture(name).rstrip("\n").rpartition("\n")
    assert rc.startswith("rc="), name
    if "--- stderr:\n" in body:
        out, err = body.split("--- stderr:\n")
        return out + "\n", err + "\n", int(rc[3:])
    return body + "\n" if body else "", "", int(rc[3:])


def normalise(text: str, measured: bool = False) -> str:
    """What differs by moment: dates, epochs, session ids; with `measured`, the resource use
    (cput, mem, vmem, walltime) the job's run measured."""
    text = re.sub(r"\b[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4}\b", "<date>", text)
    text = re.sub(r"Job run at [A-Z][a-z]{2} [A-Z][a-z]{2} \d\d at \d\d:\d\d", "Job run at <date>", text)
    text = re.sub(r'("timestamp":|"history_timestamp":|history_timestamp = )\d+', r"\1<epoch>", text)
    text = re.sub(r'(session_id = |"session_id":)\d+', r"\1<sid>", text)
    if measured:
        text = re.sub(r"(resources_used\.(?:cput|mem|vmem|walltime) = )\S+", r"\1<used>", text)
        text = re.sub(r'"resources_used":\{[^}]*\}',
                      lambda m: re.sub(r'("(?:cput|mem|vmem|walltime)":)"[^"]*"', r'\1"<used>"', m[0]),
                      text)
    return text


class Emu:
    """One emulated PBS server with its spool, in a temp directory."""

    def __init__(self, root: Path, time_scale: float) -> None:
        self.root = root
        # a workdir as long as the recorded one: wrapped qstat -f lines break at the same places
        self.workdir = tempfile.mkdtemp(prefix="pbsemu-test-", dir="/tmp")
        assert len(self.workdir) == len(RECORDED_WORKDIR), self.workdir
        (root / "spool" / "jobs").mkdir(parents=True)
        self.set_seq(0)
        config = {
            "server": "pbshost", "submit_host": "pbshost", "pbs_version": "23.06.06",
            "spool": str(root / "spool"), "mom_spool": str(root / "mom-{node}"),
            "nodes": {"pbshost": {"ncpus": 2, "mem": "64gb", "ngpus": 0}},
            "queues": ["workq"], "default_queue": "workq", "default_walltime": "01:00:00",
            "sched_delay": 0, "kill_delay": 2, "python": sys.executable,
            "pbsemu": str(PBS / "pbsemu.py"), "mom_launch": "local",
            "time_scale": time_scale, "status_delay": 0.2,
            "home": self.workdir,  # the recording's home is its workdir; not the real home's .profile
        }
        (root / "config.json").write_text(json.dumps(config))
        self.env = {
            "PBSEMU_CONFIG": str(root / "config.json"), "HOME": RECORDED_WORKDIR,
            "LOGNAME": "pbsuser", "PATH": RECORDED_PATH, "MAIL": "/var/mail/pbsuser",
            "SHELL": "/bin/bash", "PWD": self.workdir,
        }
        self.user = getpass.getuser()

    def set_seq(self, n: int) -> None:
        """The next job id, so ids match the recording's."""
        (self.root / "spool" / "seq").write_text(f"{n}\n")

    def run(self, cmd: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, str(PBS / cmd), *args], cwd=self.workdir, env=self.env,
                              capture_output=True, text=True, timeout=30)

    def script(self, name: str, text: str) -> str:
        Path(self.workdir, name).write_text(text)
        return name

    def job(self, seq: int) -> dict:
        return json.loads((self.root / "spool" / "jobs" / f"{seq}.json").read_text())

    def wait(self, seq: int, what: str, done, timeout: float = 15.0) -> dict:
        deadline = time.time() + timeout
        while time.time() < deadline:
            job = self.job(seq)
            if done(job):
                return job
            time.sleep(0.05)
        raise AssertionError(f"job {seq} never {what}: {self.job(seq)}")

    def running(self, seq: int) -> dict:
        return self.wait(seq, "reported running", lambda j: j["substate"] == 42)

    def finished(self, seq: int) -> dict:
        return self.wait(seq, "finished", lambda j: j["state"] == "F")

    def local(self, text: str) -> str:
        """This machine's user, home and workdir as the recording's (same-length workdir)."""
        text = text.replace(self.workdir, RECORDED_WORKDIR)
        # the User column of `qstat` (16 wide) and the Username column of `qstat -a` (8 wide)
        text = text.replace(f" {self.user[:16]:<16}  ", f" {'pbsuser':<16}  ")
        text = text.replace(f" {self.user[:8]:<8} ", f" {'pbsuser':<8} ")
        return re.sub(rf"\b{re.escape(self.user)}@pbshost", "pbsuser@pbshost", text)

    def stop_all(self) -> None:
        jobs = [p for p in (self.root / "spool" / "jobs").glob("*.json")]
        live = [int(p.stem) for p in jobs if json.loads(p.read_text())["state"] != "F"]
        if live:
            self.run("qdel", *map(str, live))
            for seq in live:
                self.finished(seq)


@pytest.fixture
def emu(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Emu]:
    e = Emu(tmp_path, getattr(request, "param", 1.0))
    yield e
    e.stop_all()
    subprocess.run(["rm", "-rf", e.workdir], check=False)


def check(emu: Emu, name: str, result: subprocess.CompletedProcess[str], *, stream: str = "stdout",
          measured: bool = False) -> None:
    """`result` is the recording `name`: same text on the same stream, same exit status."""
    out, err, rc = recorded(name)
    if stream == "stderr" and not err:
        out, err = err, out
    got_out = normalise(emu.local(result.stdout), measured)
    got_err = normalise(emu.local(result.stderr), measured)
    want = (normalise(out, measured), normalise(err, measured), rc)
    diff = "".join(difflib.unified_diff(want[0].splitlines(True), got_out.splitlines(True), name, "emulator"))
    assert (got_out, got_err, result.returncode) == want, diff


def test_running_job_and_qdel(emu: Emu) -> None:
    """A job runs (qsub, qstat, -f, -F json); a second is deleted while it runs (exit 271)."""
    check(emu, "openpbs-qsub-test.txt", emu.run("qsub", emu.script("test.sh", TEST_SH.format(seconds=60))))
    emu.running(0)
    check(emu, "openpbs-qstat.txt", emu.run("qstat"))
    check(emu, "openpbs-qstat-f-running.txt", emu.run("qstat", "-f", "0"), measured=True)
    check(emu, "openpbs-qstat-f-json-running.txt", emu.run("qstat", "-f", "-F", "json", "0"), measured=True)
    emu.set_seq(2)
    assert emu.run("qsub", emu.script("killme.sh", KILLME_SH)).stdout == "2.pbshost\n"
    emu.running(2)
    alt = emu.run("qstat", "-a")
    sessions = re.compile(r"(?m)^(\S+ +\S+ +\S+ +\S+) +\d+ ")
    expected = recorded("openpbs-qstat-a.txt")
    alt_text = emu.local(alt.stdout)
    assert (sessions.sub(r"\1 <sid> ", alt_text), alt.returncode) == (sessions.sub(r"\1 <sid> ", expected[0]), expected[2])
    check(emu, "openpbs-qdel-running.txt", emu.run("qdel", "2.pbshost"))
    assert emu.finished(2)["exit_status"] == 271
    check(emu, "openpbs-qstat-xf-json-qdel.txt", emu.run("qstat", "-xf", "-F", "json", "2"), measured=True)


def test_job_that_can_never_run_and_its_deletion(emu: Emu) -> None:
    """More cpus than any node has: queued with the scheduler's comment; qdel ends it in F
    without obittime or Exit_status."""
    emu.set_seq(7)
    test_sh = emu.script("test.sh", TEST_SH.replace("#PBS -l select=1:ncpus=1:mem=1gb\n", "").format(seconds=60))
    check(emu, "openpbs-qsub-too-many-cpus.txt", emu.run("qsub", "-l", "select=1:ncpus=64", test_sh))
    emu.wait(7, "commented", lambda j: (j.get("comment") or "").startswith("Can Never Run"))
    check(emu, "openpbs-qstat-f-queued-never-run.txt", emu.run("qstat", "-f", "7"))
    assert emu.run("qdel", "7").returncode == 0
    emu.finished(7)
    check(emu, "openpbs-qstat-xf-qdel-queued.txt", emu.run("qstat", "-xf", "7"))


def test_completed_job(emu: Emu) -> None:
    """Exit 0: substate 92, "and finished", Exit_status 0."""
    emu.run("qsub", emu.script("test.sh", TEST_SH.format(seconds=0.5)))
    emu.finished(0)
    check(emu, "openpbs-qstat-xf-completed.txt", emu.run("qstat", "-xf", "0"), measured=True)
    check(emu, "openpbs-qstat-xf-json-completed.txt", emu.run("qstat", "-xf", "-F", "json", "0"), measured=True)


@pytest.mark.parametrize("emu", [4.0], indirect=True)   # walltime 5 s in 1.25 s; 30 s > sleep 5
def test_failed_walltime_and_numeric_name(emu: Emu) -> None:
    """Beside a running job: exit 3 at once (no session id or use reported), history errors of
    qstat/qdel, a walltime kill (-29), and a numeric name that JSON shows as a number."""
    emu.run("qsub", emu.script("test.sh", TEST_SH.format(seconds=60)))
    emu.running(0)
    emu.set_seq(1)
    emu.run("qsub", emu.script("fail.sh", FAIL_SH))
    emu.finished(1)
    check(emu, "openpbs-qstat-xf-exit3.txt", emu.run("qstat", "-xf", "1"))
    check(emu, "openpbs-qstat-xf-json-exit3.txt", emu.run("qstat", "-xf", "-F", "json", "1"))
    check(emu, "openpbs-qstat-finished-without-x.txt", emu.run("qstat", "1.pbshost"), stream="stderr")
    check(emu, "openpbs-qdel-finished.txt", emu.run("qdel", "1.pbshost"), stream="stderr")
    emu.set_seq(3)
    emu.run("qsub", "-N", "wallkill", "-l", "walltime=00:00:05", "--", "/bin/sleep", "60")
    assert emu.finished(3)["exit_status"] == -29
    check(emu, "openpbs-qstat-xf-walltime-exceeded.txt", emu.run("qstat", "-xf", "3"), measured=True)
    emu.set_seq(4)
    emu.run("qsub", "-N", "12345", "-l", "walltime=00:00:30", "--", "/bin/sleep", "5")
    emu.finished(4)
    check(emu, "openpbs-qstat-xf-json-numeric-name.txt", emu.run("qstat", "-xf", "-F", "json", "4"), measured=True)


def test_unknown_ids(emu: Emu) -> None:
    check(emu, "openpbs-qstat-unknown.txt", emu.run("qstat", "9999999"), stream="stderr")
    check(emu, "openpbs-qstat-x-unknown.txt", emu.run("qstat", "-x", "9999999"), stream="stderr")
    check(emu, "openpbs-qdel-unknown.txt", emu.run("qdel", "9999999"), stream="stderr")
    check(emu, "openpbs-qstat-f-json-unknown.txt", emu.run("qstat", "-f", "-F", "json", "9999999"))


def test_qsub_refusals(emu: Emu) -> None:
    """Recorded refusals, then those no fixture records, worded as OpenPBS 23.06's source does
    (see the comments in pbsemu.py: req_quejob.c, reply_send.c, parse_depend.c, qsub.c)."""
    test_sh = emu.script("test.sh", TEST_SH.format(seconds=1))
    check(emu, "openpbs-qsub-err-bad-walltime.txt", emu.run("qsub", "-l", "walltime=abc", test_sh), stream="stderr")
    check(emu, "openpbs-qsub-err-nosuch-queue.txt", emu.run("qsub", "-q", "nosuch", test_sh), stream="stderr")
    check(emu, "openpbs-qsub-err-unknown-resource.txt", emu.run("qsub", "-l", "foo=1", test_sh), stream="stderr")
    unrecorded = {
        ("-l", "select=1:ncpus=1:foo=1"): ("qsub: Unknown resource: foo\n", 187),
        ("-l", "ncpus=2"): ('qsub: "-lresource=" cannot be used with "select" or "place", resource is: ncpus\n', 5),
        ("-W", "depend=afterok"): ("qsub: illegal -W value\n", 2),
        ("-W", "depend=whenever:1.pbshost"): ("qsub: illegal -W value\n", 2),
    }
    for args, (message, rc) in unrecorded.items():
        r = emu.run("qsub", *args, test_sh)
        assert (r.stdout, r.stderr, r.returncode) == ("", message, rc), args
    assert not list((emu.root / "spool" / "jobs").glob("*.json"))
    r = emu.run("qsub", "-W", "depend=afterok:12.pbshost", test_sh)
    assert (r.stdout, r.returncode) == ("0.pbshost\n", 0)


def test_queues(emu: Emu) -> None:
    """`qstat -Q` table and JSON; an unknown queue is refused as pbs_statque() reports it."""
    check(emu, "openpbs-qstat-Q.txt", emu.run("qstat", "-Q"))
    check(emu, "openpbs-qstat-Qf-json.txt", emu.run("qstat", "-Qf", "-F", "json"))
    assert emu.run("qstat", "-Q", "workq").stdout == recorded("openpbs-qstat-Q.txt")[0]
    r = emu.run("qstat", "-Q", "nosuch")
    assert (r.stdout, r.stderr, r.returncode) == ("", "qstat: Unknown queue nosuch\n", 170)


def test_qselect_finds_a_job_by_name(emu: Emu) -> None:
    """What the product asks after an interrupted submit: `qselect -N NAME`, ids one a line."""
    test_sh = emu.script("test.sh", TEST_SH.format(seconds=60))
    emu.run("qsub", "-N", "hpcj-1a2b3c4d", test_sh)
    emu.run("qsub", "-N", "other", test_sh)
    r = emu.run("qselect", "-N", "hpcj-1a2b3c4d")
    assert (r.stdout, r.stderr, r.returncode) == ("0.pbshost\n", "", 0)
    assert emu.run("qselect", "-N", "nosuch").stdout == ""
