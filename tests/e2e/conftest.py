"""The mini-cluster test bed as a pytest fixture (see tests/cluster/README.md).

`testbed` (session scope) returns a `Testbed` describing a running bed:

* `HPCJ_TESTBED_DIR` points at a running bed -> use it, leave it running;
* the default bed (/srv/hpcj-testbed) is already up -> use it, leave it running;
* running as root -> `tests/cluster/testbed.sh up`, and `down` at the end of the session
  (set HPCJ_TESTBED_KEEP=1 to leave it up);
* otherwise skip with the reason -- or fail when HPCJ_REQUIRE_TESTBED=1 (CI sets it).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import subprocess
import time
from pathlib import Path

import bed_owner
import pytest
from totp import TOTP_STEP, Totp, totp_code

REPO = Path(__file__).resolve().parents[2]
TESTBED_SH = REPO / "tests" / "cluster" / "testbed.sh"
DEFAULT_DIR = Path("/srv/hpcj-testbed")

SSHD_NAMES = {
    "login": "login", "tb-login": "login",
    "mfa": "mfa", "tb-login-mfa": "mfa",
    "pw": "pw", "tb-login-pw": "pw",
    "node1": "node1", "node2": "node2",
}


class Testbed:
    """A running test bed. Paths are on this machine (the laptop); `shared` is the cluster's
    shared filesystem and has the same path on every host."""

    def __init__(self, directory: Path):
        self.dir = Path(directory)
        self.info = json.loads((self.dir / "testbed.json").read_text())
        i = self.info
        self.ssh_config = Path(i["ssh_config"])
        self.known_hosts = Path(i["known_hosts"])
        self.identity_file = Path(i["identity_file"])
        self.login_alias: str = i["login_alias"]
        self.mfa_alias: str = i["mfa_alias"]
        self.pw_alias: str = i["pw_alias"]
        self.user: str = i["user"]
        self.uid: int = i["uid"]
        self.password: str = i["password"]
        self.totp_secret: str = i["totp_secret"]          # base32, as an authenticator app shows it
        self.totp_secret_hex: str = i["totp_secret_hex"]
        self.nodes: list[str] = list(i["nodes"])
        self.shared = Path(i["shared"])
        self.home = Path(i["home"])
        self.remote_dir = Path(i["remote_dir"])
        self.jupyter_venv = Path(i["jupyter_venv"])
        self.pbs_server: str = i["pbs_server"]
        self.accounting: bool = bool(i.get("accounting"))    # slurmdbd: sacct answers
        self.slurm_partitions: list[str] = list(i["slurm_partitions"])
        self.pbs_queues: list[str] = list(i["pbs_queues"])
        self.addresses: dict[str, str] = dict(i["addresses"])
        self.ports: dict[str, int] = dict(i["ports"])
        self.faults_dir = Path(i["faults_dir"])
        self.calls_log = Path(i["calls_log"])

    # ---- credentials -----------------------------------------------------------------------
    def totp(self) -> str:
        """A TOTP code the MFA sshd will accept now (see `Totp.code`)."""
        return Totp(self.dir, self.user, self.totp_secret_hex).code()

    def totp_at(self, when: float) -> str:
        """The code of the 30-second step containing time WHEN (no replay bookkeeping)."""
        return totp_code(bytes.fromhex(self.totp_secret_hex), int(when) // TOTP_STEP)

    # ---- logs and commands ---------------------------------------------------------------
    def sshd_log(self, which: str) -> Path:
        """Log file of one sshd: login, mfa, pw, node1, node2 (or the aliases tb-login...)."""
        return self.dir / "logs" / f"sshd-{SSHD_NAMES[which]}.log"

    def accepted(self, which: str) -> int:
        """Number of completed logins ('Accepted ...' lines) in that sshd's log."""
        try:
            text = self.sshd_log(which).read_text(errors="replace")
        except FileNotFoundError:
            return 0
        return sum(1 for line in text.splitlines() if line.startswith("Accepted "))

    def log_size(self, which: str) -> int:
        """A mark in that sshd's log: `accepted_since` reads only what is logged after it."""
        return self.sshd_log(which).stat().st_size

    def accepted_since(self, which: str, offset: int) -> list[str]:
        """The 'Accepted ...' lines that sshd logged after byte OFFSET of its log."""
        with open(self.sshd_log(which), "rb") as log:
            log.seek(offset)
            text = log.read().decode(errors="replace")
        return [line for line in text.splitlines() if line.startswith("Accepted ")]

    def _holder(self, host: str) -> str:
        return (self.dir / "run" / f"holder-{host}.pid").read_text().strip()

    def exec(self, host: str, *cmd: str, check: bool = False, timeout: float = 60,
             input: str | None = None) -> subprocess.CompletedProcess:
        """Run CMD as root inside HOST's namespaces (login, node1, node2); text output."""
        argv = ["nsenter", "-t", self._holder(host), "-u", "-m", "-n", "--",
                "env", "-i", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "HOME=/root", "LANG=C.UTF-8", *cmd]
        return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=timeout,
                              input=input)

    def ssh_argv(self, alias: str, *args: str) -> list[str]:
        """`ssh -F <laptop ssh_config> ALIAS ARGS...`"""
        return ["ssh", "-F", str(self.ssh_config), alias, *args]

    def ssh(self, alias: str, cmd: str, *, check: bool = False, timeout: float = 60,
            options: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
        """Run a remote shell command non-interactively (BatchMode: key hosts only, i.e.
        tb-login and, with options=('-J', 'tb-login'), node1/node2)."""
        argv = ["ssh", "-F", str(self.ssh_config), "-o", "BatchMode=yes", *options, alias, cmd]
        return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=timeout,
                              stdin=subprocess.DEVNULL)

    # ---- faults ---------------------------------------------------------------------------
    def link_down(self, seconds: float, wait: bool = False,
                  mode: str = "unreachable") -> subprocess.Popen:
        """Take the laptop<->login link down for SECONDS.

        mode="unreachable": the laptop's end goes down; new packets to login fail at once with
        'No route to host' (the test range is routed unreachable). mode="blackhole": login's
        end goes down; packets are silently dropped and connections hang until timeouts.
        Returns once the link is down, unless wait=True (then once it is back up); the
        Popen's wait() ends when the link is back up."""
        p = subprocess.Popen(["bash", str(TESTBED_SH), "link-down", str(seconds), mode],
                             env=self._env(), stdin=subprocess.DEVNULL)
        deadline = time.time() + 5
        while time.time() < deadline and self._link_is_up(mode) and p.poll() is None:
            time.sleep(0.02)
        if wait:
            p.wait()
        return p

    def _link_is_up(self, mode: str = "unreachable") -> bool:
        """The end of the link that MODE takes down: the laptop's, or login's (blackhole)."""
        where = ["-n", "hpcj-login"] if mode == "blackhole" else []
        dev = "ext0" if mode == "blackhole" else "hpcj-lap"
        out = subprocess.run(["ip", *where, "-br", "link", "show", dev], capture_output=True,
                             text=True).stdout.split()
        return len(out) > 1 and out[1] in ("UP", "UNKNOWN")

    def restart_sshd(self, which: str) -> None:
        """Restart one sshd listener (login, mfa, pw, node1, node2): established sessions and
        ControlMaster connections survive, as on a real restart."""
        r = subprocess.run(["bash", str(TESTBED_SH), "restart-sshd", SSHD_NAMES[which]],
                           env=self._env(), capture_output=True, text=True)
        assert r.returncode == 0, f"restart-sshd {which} failed (exit {r.returncode}):\n{r.stderr}"

    def heal(self) -> None:
        """After a fault test: an sshd it left stopped starts again, so that one failure does not
        fail every test after it; a bed still broken then fails this test, with `status`."""
        for name in sorted(set(SSHD_NAMES.values())):
            pid_file = self.dir / "run" / f"sshd-{name}.pid"
            try:
                os.kill(int(pid_file.read_text()), 0)
            except (OSError, ValueError):
                self.restart_sshd(name)
        status = _status(self.dir)
        assert status.returncode == 0, f"this test left the test bed broken:\n{status.stdout}"

    def fail_next(self, command: str, n: int, message: str | None = None, rc: int = 1) -> None:
        """The next N calls of COMMAND (squeue, sacct, scontrol, sbatch, scancel, sinfo, qsub,
        qstat, qdel, qrls) on the login host fail with MESSAGE on stderr and exit code RC."""
        self._write_fault(f"{command}.fail", f"{n}\n")
        self._write_fault(f"{command}.fail.rc", f"{rc}\n")
        if message is not None:
            self._write_fault(f"{command}.fail.msg", message.rstrip("\n") + "\n")
        else:
            (self.faults_dir / f"{command}.fail.msg").unlink(missing_ok=True)

    def delay_next(self, command: str, seconds: float) -> None:
        """Every call of COMMAND on login sleeps SECONDS first (0 to stop)."""
        if seconds:
            self._write_fault(f"{command}.delay", f"{seconds}\n")
        else:
            (self.faults_dir / f"{command}.delay").unlink(missing_ok=True)

    def clear_faults(self) -> None:
        for p in self.faults_dir.iterdir():
            if p.name.endswith((".fail", ".fail.msg", ".fail.rc", ".delay")):
                p.unlink()

    def _write_fault(self, name: str, text: str) -> None:
        path = self.faults_dir / name
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        os.chown(tmp, self.uid, self.uid)
        os.replace(tmp, path)

    def command_count(self, name: str) -> int:
        """How many times NAME (squeue, sacct, scontrol, sbatch, scancel, sinfo, qsub, qstat,
        qdel, qrls) was run on the login host since the bed came up."""
        try:
            lines = self.calls_log.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return 0
        return sum(1 for line in lines if line.split(" ", 2)[1:2] == [name])

    def calls(self, name: str | None = None) -> list[str]:
        """The logged argument strings of NAME's calls (all calls' 'name args' if None)."""
        out = []
        for line in self.calls_log.read_text(errors="replace").splitlines():
            parts = line.split(" ", 2) + [""]
            if name is None:
                out.append(f"{parts[1]} {parts[2]}".rstrip())
            elif parts[1] == name:
                out.append(parts[2])
        return out

    def calls_mark(self) -> int:
        """A mark in the call log: `own_calls` counts only what was logged after it."""
        try:
            return self.calls_log.stat().st_size
        except FileNotFoundError:
            return 0

    def own_calls(self, mark: int, name: str, *words: str) -> list[str]:
        """Argument strings of NAME's calls logged after MARK whose arguments hold every one of
        WORDS (a job id as a whole word, or a path anywhere in them): a test's own calls, whatever other
        tests do on the bed at the same time."""
        with open(self.calls_log, "rb") as log:
            log.seek(mark)
            lines = log.read().decode(errors="replace").splitlines()
        found = []
        for line in lines:
            parts = line.split(" ", 2) + [""]
            if parts[1] != name:
                continue
            args = parts[2]
            tokens = set(re.split(r"[\s,=]+", args))
            if all(w in tokens or ("/" in w and w in args) for w in words):
                found.append(args)
        return found

    def _env(self) -> dict:
        return {**os.environ, "HPCJ_TESTBED_DIR": str(self.dir)}


def _status(directory: Path) -> subprocess.CompletedProcess[str]:
    """`testbed.sh status` of the bed in DIRECTORY (exit 0: healthy)."""
    return subprocess.run(["bash", str(TESTBED_SH), "status"], capture_output=True, text=True,
                          env={**os.environ, "HPCJ_TESTBED_DIR": str(directory)})


def _healthy(directory: Path) -> bool:
    return (directory / "testbed.json").exists() and _status(directory).returncode == 0


def ensure_up(directory: Path) -> bool:
    """Bring the bed in DIRECTORY up unless it is healthy; True if this call brought it up.

    The health check holds the bed like a test does: while a fault test has it alone (sshd
    restarting, link down), `status` fails on purpose, and an `up` then would tear the bed down
    under that test and give it new credentials. When several processes get here at once (pytest
    -n, a benchmark), the first finds the bed down and brings it up alone; the others find it up.
    Raises RuntimeError with up's error output if `up` fails."""
    with bed_lock(fcntl.LOCK_SH):
        if _healthy(directory):
            return False
    with bed_lock(fcntl.LOCK_EX):
        if _healthy(directory):
            return False
        r = subprocess.run(["bash", str(TESTBED_SH), "up"], capture_output=True, text=True,
                           env={**os.environ, "HPCJ_TESTBED_DIR": str(directory)})
        if r.returncode != 0:
            raise RuntimeError(f"`testbed.sh up` failed (exit {r.returncode}):\n{r.stderr[-4000:]}")
        return True


@pytest.fixture(scope="session")
def testbed():
    require = os.environ.get("HPCJ_REQUIRE_TESTBED") == "1"
    given = os.environ.get("HPCJ_TESTBED_DIR")
    directory = Path(given) if given else DEFAULT_DIR

    def unavailable(reason: str):
        if require:
            pytest.fail(f"test bed required (HPCJ_REQUIRE_TESTBED=1) but unavailable: {reason}")
        pytest.skip(f"mini-cluster test bed unavailable: {reason}")

    if os.geteuid() != 0:
        unavailable("needs root (network namespaces, daemons); run as root or point "
                    "HPCJ_TESTBED_DIR at a bed brought up with tests/cluster/testbed.sh up")
    try:
        if ensure_up(directory) and os.environ.get("HPCJ_TESTBED_KEEP") != "1":
            bed_owner.claim(directory)
    except RuntimeError as e:
        unavailable(str(e))
    bed = Testbed(directory)
    with bed_lock(fcntl.LOCK_SH):  # faults are only set under the exclusive lock: none is live now
        bed.clear_faults()
    return bed


@pytest.fixture(autouse=True)
def _testbed_share(request):
    """Every e2e test holds the bed shared; a test using `disruptive` holds it alone.

    Fault tests (link down, sshd restart, failing squeue) would break any other test running
    against the same bed at the time (another pytest process, a benchmark), so they wait.
    """
    if "disruptive" in request.fixturenames or request.node.get_closest_marker("e2e") is None:
        yield
        return
    with bed_lock(fcntl.LOCK_SH):
        yield


@contextlib.contextmanager
def bed_lock(mode: int):
    """flock the bed's users lock. A gate makes a test waiting for the exclusive lock hold back
    later arrivals: without it, test processes running side by side (pytest -n) would keep the
    shared lock held between them and starve a fault test for good."""
    DEFAULT_DIR.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        turnstile = stack.enter_context(open(DEFAULT_DIR.parent / ".hpcj-testbed-gate.lock", "w"))
        fcntl.flock(turnstile, fcntl.LOCK_EX)
        handle = stack.enter_context(open(DEFAULT_DIR.parent / ".hpcj-testbed-users.lock", "w"))
        fcntl.flock(handle, mode)
        fcntl.flock(turnstile, fcntl.LOCK_UN)
        yield


@pytest.fixture
def disruptive(testbed):
    """The bed, held exclusively (see _testbed_share); faults are cleared before and after.

    Consecutive tests that need it keep holding it (`pytest_runtest_teardown` lets go before a
    test that does not): each new exclusive hold waits for every other test on the bed to end."""
    if _ALONE.get("hold") is None:
        hold = contextlib.ExitStack()
        hold.enter_context(bed_lock(fcntl.LOCK_EX))
        _ALONE["hold"] = hold
    testbed.clear_faults()
    try:
        yield testbed
    finally:
        testbed.clear_faults()
        testbed.heal()


_ALONE: dict[str, contextlib.ExitStack | None] = {}  # this process's exclusive hold of the bed


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    """After a test's fixtures are gone: keep the exclusive hold only for a next test that needs it."""
    try:
        return (yield)
    finally:
        hold = _ALONE.get("hold")
        if hold is not None and (nextitem is None or "disruptive" not in nextitem.fixturenames):
            _ALONE["hold"] = None
            hold.close()


ALONE_GROUP = "bed-alone"  # the xdist group of the tests that hold the bed alone


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    """Order for `pytest -n`: the tests that hold the bed alone first, in one worker (one group:
    they run back to back under one exclusive hold), while the other workers run the layers that
    do not use the bed; the tests that share the bed last, on every worker."""
    def phase(item) -> int:
        if "disruptive" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group(ALONE_GROUP))
            return 0
        return 2 if item.get_closest_marker("e2e") is not None else 1

    items.sort(key=phase)  # stable: each phase keeps its order
