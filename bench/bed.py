"""The benchmark's view of the mini-cluster test bed: its own ssh key, CLI homes, counters, cleanup.

Other engineers run e2e tests against the same bed while a benchmark runs, and those tests log in
as the same user with the same laptop key and run the same scheduler commands. So the benchmark
logs in with a key of its own (its fingerprint marks our lines in the sshd logs) and counts only
scheduler calls that name our own job ids: raw `accepted()`/`command_count()` deltas would count
the neighbours too.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import types
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
for _path in (REPO, REPO / "tests", REPO / "tests" / "e2e"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from clihelpers import Cli  # noqa: E402
from conftest import DEFAULT_DIR, Testbed, bed_lock, ensure_up  # noqa: E402
from tbprofiles import profile_text  # noqa: E402

SLURM_QUERIES = ("squeue", "sacct", "scontrol")
PBS_QUERIES = ("qstat",)


def bring_up(directory: Path = DEFAULT_DIR) -> Testbed:
    """The running bed (started with `testbed.sh up` if it is down; never taken down here)."""
    if ensure_up(directory):
        print("test bed was down: brought it up (tests/cluster/testbed.sh up)", file=sys.stderr)
    return Testbed(directory)


class Bench:
    """One benchmark run: a scratch directory, the bench key authorised for the test user, an
    ssh_config using it, and a registry of everything to clean up (jobs, processes, masters)."""

    def __init__(self, testbed: Testbed) -> None:
        self.tb = testbed
        self.tag = f"hpcj-bench-{os.getpid()}"
        self.root = Path(tempfile.mkdtemp(prefix="hpcj-bench-"))  # short: ControlPath budget
        self.remote_scratch = self.tb.home / self.tag  # on the shared filesystem, same path everywhere
        self.key = self.root / "id_ed25519"
        self.ssh_config = self.root / "ssh_config"
        self.fingerprint = ""
        self.jobs: dict[str, set[str]] = {"slurm": set(), "pbs": set()}
        self.job_names: set[str] = set()  # Slurm jobs whose ids we never see (srun, the manual script)
        self.processes: list[subprocess.Popen[Any]] = []
        self.clis: list[Cli] = []
        self.cleanups: list[Any] = []
        self._numbers = itertools.count(1)  # names of stderr files (two threads start processes)
        self._hold = contextlib.ExitStack()

    # ---- set-up and tear-down ------------------------------------------------------------
    def __enter__(self) -> Bench:
        # Shared: fault tests (link down, sshd restarts) take the lock exclusively and wait for us.
        self._hold.enter_context(bed_lock(fcntl.LOCK_SH))
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", self.tag, "-f", str(self.key)],
                       check=True)
        out = subprocess.run(["ssh-keygen", "-lf", f"{self.key}.pub"], capture_output=True, text=True, check=True)
        self.fingerprint = out.stdout.split()[1]
        with open(self.tb.home / ".ssh" / "authorized_keys", "a") as keys:  # keeps owner and mode
            keys.write(Path(f"{self.key}.pub").read_text())
        text = self.tb.ssh_config.read_text().replace(str(self.tb.identity_file), str(self.key))
        self.ssh_config.write_text(text)
        self.remote_scratch.mkdir(mode=0o755)
        os.chown(self.remote_scratch, self.tb.uid, self.tb.uid)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Undo everything, each step on its own so one failure does not leave the rest."""
        steps = [*self.cleanups[::-1], self._stop_processes, self._cancel_jobs, self._close_masters,
                 self._remove_job_dirs, self._unauthorise,
                 lambda: shutil.rmtree(self.remote_scratch, ignore_errors=True),
                 lambda: shutil.rmtree(self.root, ignore_errors=True)]
        for step in steps:
            try:
                step()
            except Exception as exc:  # report, keep cleaning
                print(f"cleanup step failed: {exc!r}", file=sys.stderr)
        self._hold.close()

    def _stop_processes(self) -> None:
        for process in self.processes:
            stop_process(process)

    def _cancel_jobs(self) -> None:
        if self.jobs["slurm"]:
            self.tb.ssh(self.tb.login_alias, "scancel " + " ".join(sorted(self.jobs["slurm"])))
        if self.job_names:
            self.tb.ssh(self.tb.login_alias, "scancel --name=" + ",".join(sorted(self.job_names)))
        if self.jobs["pbs"]:
            self.tb.ssh(self.tb.login_alias, "qdel " + " ".join(sorted(self.jobs["pbs"])) + " 2>/dev/null; true")

    def _close_masters(self) -> None:
        for cli in self.clis:
            close_masters(cli.home)

    def _remove_job_dirs(self) -> None:
        """The job directories our sessions left on the shared filesystem (same path here)."""
        import json

        for cli in self.clis:
            for record in (cli.state / "sessions").glob("*.json"):
                job_dir = Path(json.loads(record.read_text())["job_dir"])
                if job_dir.parent == self.tb.remote_dir:
                    shutil.rmtree(job_dir, ignore_errors=True)

    def _unauthorise(self) -> None:
        path = self.tb.home / ".ssh" / "authorized_keys"
        lines = path.read_text().splitlines(keepends=True)
        with open(path, "r+") as keys:  # in place: owner, mode and inode stay
            keys.write("".join(line for line in lines if not line.rstrip().endswith(self.tag)))
            keys.truncate()

    # ---- what the figures use ------------------------------------------------------------
    def cli(self, name: str, profiles: dict[str, str]) -> Cli:
        """A CLI with private config/state dirs and the given profiles (name → TOML text)."""
        cli = Cli(self.root / name)
        for site, text in profiles.items():
            cli.write_profile(site, text)
        self.clis.append(cli)
        return cli

    def profile(self, *, scheduler: str = "slurm", transport: str = "openssh", tunnel: str = "forward",
                poll_seconds: int = 2, directives: Iterable[str] = ()) -> str:
        """A test-bed profile (tbprofiles) that logs in with the bench key."""
        bed = types.SimpleNamespace(**{**vars(self.tb), "ssh_config": self.ssh_config})
        extra_job = f"directives = {list(directives)!r}".replace("'", '"') if directives else ""
        text = profile_text(bed, scheduler=scheduler, transport=transport, tunnel=tunnel, extra_job=extra_job)
        return text.replace("poll_seconds = 2", f"poll_seconds = {poll_seconds}")

    def start(self, argv: list[str], env: dict[str, str] | None = None,
              cwd: Path | None = None) -> subprocess.Popen[str]:
        """A background process (stopped at the end whatever happens): stdout piped as text,
        stderr to a file (a pipe nobody reads could fill up and block it)."""
        err = self.root / f"{Path(argv[0]).name}-{next(self._numbers)}.err"
        with open(err, "w") as handle:
            process = subprocess.Popen(argv, env=env, cwd=cwd, text=True, stdin=subprocess.DEVNULL,
                                       stdout=subprocess.PIPE, stderr=handle)
        process.stderr_path = err  # type: ignore[attr-defined]  # for error messages
        self.processes.append(process)
        return process

    def start_cli(self, cli: Cli, *args: str) -> subprocess.Popen[str]:
        return self.start(cli.argv(*args), env=cli.env)

    def logins(self) -> dict[str, int]:
        """Completed logins with the bench key, per sshd (login, node1, node2)."""
        return {host: sum(1 for line in _lines(self.tb.sshd_log(host))
                          if line.startswith("Accepted ") and self.fingerprint in line)
                for host in ("login", "node1", "node2")}

    def scheduler_calls(self, commands: Iterable[str], job_ids: Iterable[str], since: float,
                        until: float | None = None) -> list[float]:
        """Times of the logged calls of COMMANDS that name one of JOB_IDS (or job directories),
        within [since, until]. One pattern for all ids: figure 6 asks about a thousand."""
        names = sorted({re.escape(i) for i in job_ids}, key=len, reverse=True)
        if not names:
            return []
        pattern = re.compile(rf"(?<![\w.])(?:{'|'.join(names)})(?![\w])")
        wanted = set(commands)
        times = []
        for line in _lines(self.tb.calls_log):
            epoch, _, rest = line.partition(" ")
            name, _, args = rest.partition(" ")
            try:
                when = float(epoch)
            except ValueError:
                continue
            if since <= when and (until is None or when <= until) and name in wanted and pattern.search(args):
                times.append(when)
        return times

    @contextlib.contextmanager
    def state_dir(self, cli: Cli) -> Iterator[None]:
        """Point hpcjupyter's own modules (used in this process) at a CLI's state directory."""
        old = os.environ.get("HPCJUPYTER_STATE_DIR")
        os.environ["HPCJUPYTER_STATE_DIR"] = str(cli.state)
        try:
            yield
        finally:
            if old is None:
                del os.environ["HPCJUPYTER_STATE_DIR"]
            else:
                os.environ["HPCJUPYTER_STATE_DIR"] = old


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return []


def close_masters(home: Path) -> None:
    """Stop every ControlMaster a CLI home started (their sockets live in its state dir)."""
    for sock in (home / "state" / "cm").glob("*"):
        if sock.is_socket():
            subprocess.run(["ssh", "-o", "ControlMaster=no", "-S", str(sock), "-O", "exit", "bench"],
                           capture_output=True, timeout=15)


def stop_process(process: subprocess.Popen[Any], sig_timeout: float = 15) -> None:
    """Terminate a process we started (then kill it), and close its pipes."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=sig_timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    for stream in (process.stdout, process.stderr, process.stdin):
        if stream is not None:
            stream.close()


def session_record(cli: Cli) -> dict[str, Any]:
    """The newest session record of a CLI (job id, job dir) without running hpcjupyter."""
    import json

    records = [json.loads(p.read_text()) for p in (cli.state / "sessions").glob("*.json")]
    return max(records, key=lambda r: r["session_id"])


def runtime_file(job_dir: str, timeout: float = 10) -> Path:
    """Jupyter's runtime file (jpserver-PID.json) in the job's runtime directory, once written."""
    deadline = time.time() + timeout
    while True:
        found = sorted(Path(job_dir, "runtime").glob("jpserver-*.json"))
        if found:
            return found[0]
        if time.time() > deadline:
            raise RuntimeError(f"no Jupyter runtime file in {job_dir}/runtime")
        time.sleep(0.2)


def runtime_file_mtime(job_dir: str, timeout: float = 10) -> float:
    """When Jupyter wrote its runtime file (jpserver-PID.json) on the node.

    The job directory is on the bed's shared filesystem, which has the same path here; the
    mtime was set by the node's kernel, and the bed's hosts are namespaces of one kernel, so it
    is on the same clock as time.time() here."""
    return runtime_file(job_dir, timeout).stat().st_mtime


def wait_line(process: subprocess.Popen[str], contains: str, seconds: float) -> tuple[str, float, str]:
    """The first stdout line containing CONTAINS, the time.time() it arrived, and all the output
    up to it (the process is killed if it has not printed it within SECONDS)."""
    assert process.stdout is not None
    seen: list[str] = []
    timer = threading.Timer(seconds, process.kill)
    timer.start()
    try:
        for line in process.stdout:
            seen.append(line)
            if contains in line:
                return line.strip(), time.time(), "".join(seen)
    finally:
        timer.cancel()
    raise RuntimeError(f"{Path(str(process.args[0])).name} printed no {contains!r} within {seconds:g} s "
                       f"(exit {process.wait()}){_stderr_tail(process)}\nstdout: {''.join(seen)[-800:]}")


def interrupt(process: subprocess.Popen[Any]) -> None:
    """Ctrl-C, as a user ends `connect` (it closes its tunnel), then make sure it is gone."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
    stop_process(process)


def _stderr_tail(process: subprocess.Popen[Any]) -> str:
    path = getattr(process, "stderr_path", None)
    return f"; stderr:\n{Path(path).read_text(errors='replace')[-1500:]}" if path else ""


def submit(bench: Bench, cli: Cli, site: str) -> str:
    """`hpcjupyter submit` as its own invocation; returns the job id (remembered for clean-up)."""
    result = cli.run("submit", "--site", site)
    if result.returncode != 0:
        raise RuntimeError(f"submit failed: {result.stderr.strip()[-800:]}")
    job_id = result.stdout.strip().splitlines()[-1]
    bench.jobs["pbs" if "." in job_id else "slurm"].add(job_id)
    return job_id


def check_ok(result: subprocess.CompletedProcess[str], what: str) -> None:
    if result.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {result.returncode}): {result.stderr.strip()[-800:]}")


def answers(url: str) -> None:
    """The URL's Jupyter answers /api/status 200 with its token (what 'ready' means everywhere)."""
    from urllib.parse import parse_qs, urlsplit

    from hpcjupyter.probe import api_status

    parts = urlsplit(url)
    token = parse_qs(parts.query).get("token", [""])[0]
    status = api_status(parts.port or 80, "/", token)
    if status != 200:
        raise RuntimeError(f"{url.split('?')[0]} answered {status}, not 200")
