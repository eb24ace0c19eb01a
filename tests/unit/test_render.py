"""Rendered batch scripts: syntax (bash -n, shellcheck), the sites' rules, injection, and the
job-side protocol run for real with bash (a fake Jupyter, and real JupyterLab when installed).
"""

from __future__ import annotations

import ctypes
import dataclasses
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from sandbox import Sandbox

from hpcjupyter.errors import HpcJupyterError, RequestError
from hpcjupyter.render import bind_mode, job_dir, render
from hpcjupyter.request import build_request
from hpcjupyter.schema import Profile

SESSION = "20261123-120000-abc123"
USER = "tester"


def script_for(sandbox: Sandbox, site: str, overrides: str = "", flags: dict[str, Any] | None = None) -> str:
    profile = sandbox.personal(site, overrides)
    return render(profile, build_request(profile, flags or {}, SESSION), USER)


def lines(script: str) -> list[str]:
    return script.splitlines()


# ---- syntax of every built-in profile and its variants -------------------------------------

VARIANTS = [
    ("archer2", "archer2", 'job.account = "e123"', {}),
    ("cirrus", "cirrus", 'job.account = "t01"', {}),
    ("imperial-cx3", "imperial-cx3", 'env.conda_env = "ml"', {}),
    ("local", "local", "", {}),
    ("conda-env", "imperial-cx3", 'env.conda_env = "ml"', {}),
    ("conda-flag", "local", 'env.conda = "/opt/miniforge3"', {"conda_env": "torch"}),
    ("venv", "cirrus", 'job.account = "t01"\nenv.venv = "/epccfs/t01/t01/{user}/venv"', {}),
    ("modules-gpus", "archer2", 'job.account = "e123"\nenv.modules = ["PrgEnv-gnu", "cray-python"]',
     {"partition": "gpu", "qos": "gpu-shd", "gpus": 1}),
    ("pbs-gpus-memory", "imperial-cx3", "", {"gpus": 1, "memory": "1.5G", "queue": "gpu72", "conda_env": "ml"}),
    ("workdir-home", "archer2", 'job.account = "e123"', {"workdir": "~/notebooks"}),
    ("workdir-spaces", "local", "", {"workdir": "/tmp/my notebooks/it's here"}),
    ("jump", "imperial-cx3", 'ssh.tunnel = "jump"\nenv.conda_env = "ml"', {}),
    ("bind-all", "local", 'env.bind = "all"', {}),
    ("no-login-shell", "archer2", 'job.account = "e123"\nenv.login_shell = false', {}),
    ("login-shell-pbs", "imperial-cx3", 'env.login_shell = true\nenv.conda_env = "ml"', {}),
    ("extras", "local", 'env.variables = { A = "x y", B = "$HOME" }\nenv.jupyter = "notebook"\n'
     'env.jupyter_args = ["--ServerApp.base_url=/x/", "--notebook-dir=/tmp"]', {}),
]


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
@pytest.mark.parametrize("site, overrides, flags", [v[1:] for v in VARIANTS], ids=[v[0] for v in VARIANTS])
def test_script_passes_bash_n_and_shellcheck(
    sandbox: Sandbox, site: str, overrides: str, flags: dict[str, Any]
) -> None:
    path = sandbox.root / "job.sh"
    path.write_text(script_for(sandbox, site, overrides, flags))
    syntax = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert syntax.returncode == 0, syntax.stderr
    check = subprocess.run(["shellcheck", "-S", "warning", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout


# ---- what each site's script says ----------------------------------------------------------


def test_archer2_follows_the_site_rules(sandbox: Sandbox) -> None:
    script = script_for(sandbox, "archer2", flags={"hours": 2, "account": "e123"})
    text = lines(script)
    assert text[0] == "#!/bin/bash --login"
    for line in ("#SBATCH --time=02:00:00", "#SBATCH --account=e123", "#SBATCH --partition=serial",
                 "#SBATCH --qos=serial", "#SBATCH --export=none", "#SBATCH --job-name=hpcj-" + SESSION,
                 f"#SBATCH --output=/work/e123/e123/{USER}/hpcjupyter/{SESSION}/slurm-%j.out",
                 "module restore", "module load cray-python || hpcj_fail 6 'module load cray-python failed'",
                 'HPCJ_IP="$(hostname)"'):
        assert line in text, line
    assert "module purge" not in script
    assert text.index("module restore") < next(i for i, t in enumerate(text) if t.startswith("module load"))


def test_imperial_cx3_is_pbs_with_select_and_no_queue(sandbox: Sandbox) -> None:
    text = lines(script_for(sandbox, "imperial-cx3", 'env.conda_env = "ml"', flags={"hours": 2}))
    assert "#PBS -l walltime=02:00:00" in text
    assert "#PBS -l select=1:ncpus=8:mem=32gb" in text
    assert not any(line.startswith("#PBS -q") for line in text)
    assert f"#PBS -o /rds/general/user/{USER}/home/hpcjupyter/{SESSION}/pbs.out" in text
    # The site says never to use conda 'base' (env.conda_env_required): the named env is activated.
    assert 'eval "$("$HOME"/miniforge3/bin/conda shell.bash hook)" && conda activate ml \\' in text
    gpu = lines(script_for(sandbox, "imperial-cx3", 'env.conda_env = "ml"',
                           flags={"gpus": 2, "memory": "1.5G", "cpus": 4}))
    assert "#PBS -l select=1:ncpus=4:mem=1536mb:ngpus=2:gpu_type=L40S" in gpu


def test_cirrus_never_asks_for_memory(sandbox: Sandbox) -> None:
    script = script_for(sandbox, "cirrus", 'job.account = "t01"')
    assert "--mem" not in script
    assert "#SBATCH --cpus-per-task=8" in lines(script)
    assert "module restore" in lines(script) and "module purge" not in script
    assert f"/epccfs/t01/t01/{USER}/hpcjupyter/{SESSION}" in script


def test_local_has_no_scheduler_header(sandbox: Sandbox) -> None:
    script = script_for(sandbox, "local")
    assert "#SBATCH" not in script and "#PBS" not in script
    assert f"HPCJ_JOB_DIR={sandbox.state}/jobs/{SESSION}" in lines(script)
    assert "HPCJ_IP=127.0.0.1" in lines(script)


def test_jupyter_line_and_token_handling(sandbox: Sandbox) -> None:
    script = script_for(sandbox, "archer2", 'job.account = "e123"')
    text = lines(script)
    start = next(i for i, line in enumerate(text) if line.startswith("jupyter "))
    command = " ".join(text[start:start + 2])
    for part in ("--no-browser", "--port=0", "--ServerApp.port_retries=0", '--ip="$HPCJ_IP"'):
        assert part in command
    # The token is made by od on the node and reaches Jupyter only through the environment.
    assert 'JUPYTER_TOKEN="$(od -An -N24 -tx1 /dev/urandom | tr -d \' \\n\')"' in text
    assert "export JUPYTER_TOKEN" in text
    token_lines = [line for line in text if "TOKEN" in line.upper() and not line.lstrip().startswith("#")]
    assert all("JUPYTER_TOKEN" in line for line in token_lines)
    assert not any("$JUPYTER_TOKEN" in line or "${JUPYTER_TOKEN" in line for line in text)
    assert 'export JUPYTER_RUNTIME_DIR="$HPCJ_JOB_DIR"/runtime' in text
    assert f"HPCJ_JOB_DIR=/work/e123/e123/{USER}/hpcjupyter/{SESSION}" in text


def test_workdir_home_is_the_jobs_home_after_setup(sandbox: Sandbox) -> None:
    text = lines(script_for(sandbox, "archer2", 'job.account = "e123"', {"workdir": "~/notebooks"}))
    assert 'cd "$HOME"/notebooks' in text
    assert text.index('cd "$HOME"/notebooks') > text.index('export HOME="${HOME/home/work}"')
    default = lines(script_for(sandbox, "archer2", 'job.account = "e123"'))
    assert 'cd "$HPCJ_JOB_DIR"' in default


def test_tunnel_shape_chooses_where_jupyter_listens(sandbox: Sandbox) -> None:
    jump = sandbox.personal("imperial-cx3", 'ssh.tunnel = "jump"\nenv.conda_env = "ml"')
    assert bind_mode(jump) == "loopback"
    assert bind_mode(sandbox.personal("imperial-cx3")) == "hostname"
    assert bind_mode(sandbox.personal("local")) == "loopback"
    assert bind_mode(sandbox.personal("local", 'env.bind = "all"')) == "all"
    assert "HPCJ_IP=127.0.0.1" in lines(render(jump, build_request(jump, {}, SESSION), USER))


def test_render_is_pure(sandbox: Sandbox) -> None:
    profile = sandbox.personal("cirrus", 'job.account = "t01"')
    request = build_request(profile, {}, SESSION)
    assert render(profile, request, USER) == render(profile, request, USER)
    assert job_dir(profile, request, USER) == f"/epccfs/t01/t01/{USER}/hpcjupyter/{SESSION}"


def test_ssh_user_fills_user_placeholder(sandbox: Sandbox) -> None:
    profile = sandbox.personal("imperial-cx3", 'ssh.user = "abc123"')
    expected = f"/rds/general/user/abc123/home/hpcjupyter/{SESSION}"
    assert job_dir(profile, build_request(profile, {}, SESSION)) == expected


# ---- running rendered scripts --------------------------------------------------------------

FAKE_JUPYTER = """\
#!{python}
# A stand-in for 'jupyter lab': records what it was given, then behaves as FAKE_JUPYTER says.
import json, os, signal, sys, time
with open(os.environ["FAKE_JUPYTER_RECORD"], "w") as handle:
    json.dump({{"argv": sys.argv, "token": os.environ.get("JUPYTER_TOKEN"), "pid": os.getpid()}}, handle)
mode = os.environ.get("FAKE_JUPYTER", "exit:0")
if mode.startswith("exit:"):
    sys.exit(int(mode[5:]))
runtime = os.path.join(os.environ["JUPYTER_RUNTIME_DIR"], "jpserver-%d.json" % os.getpid())
def stop(*_):
    os.remove(runtime)
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
with open(runtime, "w") as handle:
    json.dump({{"port": 43210, "hostname": "127.0.0.1", "base_url": "/", "pid": os.getpid(),
               "version": "2.99-fake", "token": ""}}, handle)
while True:
    time.sleep(1)
"""


def make_stubs(root: Path) -> Path:
    """A bin dir with a fake jupyter, and a 'module' that accepts anything (as on a cluster)."""
    bin_dir = root / "stub-bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "jupyter").write_text(FAKE_JUPYTER.format(python=sys.executable))
    (bin_dir / "module").write_text("#!/bin/sh\nexit 0\n")
    for stub in bin_dir.iterdir():
        stub.chmod(0o755)
    return bin_dir


def make_conda(prefix: Path) -> Path:
    """A fake conda install whose shell hook defines a 'conda' function that accepts anything."""
    (prefix / "bin").mkdir(parents=True, exist_ok=True)
    conda = prefix / "bin" / "conda"
    conda.write_text("#!/bin/sh\necho 'conda() { :; }'\n")
    conda.chmod(0o755)
    return prefix


def make_venv(prefix: Path) -> Path:
    (prefix / "bin").mkdir(parents=True, exist_ok=True)
    (prefix / "bin" / "activate").write_text(": activated\n")
    return prefix


def job_env(root: Path, **extra: str) -> dict[str, str]:
    """The environment a job starts with: stubs first on PATH, a tmp HOME, no scheduler's ids."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "PBS_", "JUPYTER", "HPCJ"))}
    path = f"{make_stubs(root)}:{os.environ['PATH']}"
    env.update(PATH=path, HOME=str(root / "home"), HPCJ_LOCAL_JOB_ID="local-test-1",
               FAKE_JUPYTER_RECORD=str(root / "jupyter-record.json"), **extra)
    (root / "home").mkdir(exist_ok=True)
    return env


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Scripts started by a test; each leads its own process group, killed at teardown."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def start(
    root: Path, script: str, env: dict[str, str], started: list[subprocess.Popen[bytes]]
) -> subprocess.Popen[bytes]:
    path = root / "job.sh"
    path.write_text(script)
    (root / "cwd").mkdir(exist_ok=True)
    proc = subprocess.Popen(["bash", str(path)], env=env, cwd=root / "cwd", start_new_session=True)
    started.append(proc)
    return proc


def wait_for(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


# ---- injection -----------------------------------------------------------------------------

HOSTILE = [
    "x'; touch {P}; '",
    "$(touch {P})",
    "`touch {P}`",
    "a;touch {P}",
    "a&&touch {P}",
    '"; touch {P}; "',
    "a\ntouch {P}",
]

# (flag or profile key, site, value with {h} = the hostile text and {t} = the tmp dir, and
# "refuse" where no hostile value may pass, else "inert": carried, quoted, never run).
# Paths put the hostile text inside a directory name that the test creates, so the script really
# runs through its setup into (fake) Jupyter. Sites 'inj-*' (below) have a tmp remote_dir and a
# fake conda. env.setup is exempt: its lines are documented shell code, the site's own.
TARGETS = [
    ("--account", "inj-slurm", "{h}", "refuse"),
    ("--partition", "inj-slurm", "{h}", "refuse"),
    ("--qos", "inj-slurm", "{h}", "refuse"),
    ("--queue", "inj-pbs", "{h}", "refuse"),
    ("--conda_env", "inj-local", "{h}", "inert"),
    ("--workdir", "inj-local", "{t}/wd/{h}", "inert"),
    ("ssh.user", "inj-slurm", "{h}", "refuse"),
    ("ssh.host", "inj-slurm", "{h}", "refuse"),
    ("job.account", "inj-slurm", "{h}", "refuse"),
    ("job.partition", "inj-slurm", "{h}", "refuse"),
    ("job.qos", "inj-slurm", "{h}", "refuse"),
    ("job.queue", "inj-pbs", "{h}", "refuse"),
    ("env.remote_dir", "inj-slurm", "{t}/jobs/{h}", "refuse"),
    ("env.remote_dir", "inj-local", "{{state_dir}}/{h}", "inert"),
    ("env.conda", "inj-local", "{t}/conda{h}", "inert"),
    ("env.conda_env", "inj-pbs", "{h}", "inert"),
    ("env.venv", "inj-local", "{t}/venv{h}", "inert"),
    ("env.modules", "inj-slurm", "{h}", "inert"),
    ("env.variables.X", "inj-local", "{h}", "inert"),
    ("env.jupyter_args", "inj-local", "{h}", "inert"),
    ("job.directives", "inj-slurm", "{h}", "inert"),
    ("job.directives", "inj-pbs", "{h}", "inert"),
]
LIST_KEYS = ("env.modules", "env.jupyter_args", "job.directives")
# What must exist at a path for the script to get past it.
PREPARE: dict[str, Callable[[Path], Any]] = {
    "--workdir": lambda path: path.mkdir(parents=True),
    "env.conda": lambda path: make_conda(path),
    "env.venv": lambda path: make_venv(path),
}


def injection_sites(sandbox: Sandbox) -> None:
    """Built-in sites with a tmp remote_dir and a fake conda, so their scripts run here."""
    conda = make_conda(sandbox.root / "conda")
    jobs = f'[env]\nremote_dir = "{sandbox.root}/jobs/{{user}}"\n'
    sandbox.profile("inj-local", f'extends = "local"\n[env]\nconda = "{conda}"\n')
    sandbox.profile("inj-slurm", f'extends = "archer2"\n[ssh]\nuser = "{USER}"\n[job]\naccount = "e123"\n{jobs}')
    sandbox.profile("inj-pbs", f'extends = "imperial-cx3"\n[ssh]\nuser = "{USER}"\n{jobs}conda = "{conda}"\nconda_env = "ml"\n')


def hostile_script(sandbox: Sandbox, key: str, site: str, value: str) -> str:
    """Render ``site`` with ``value`` given as flag ``--key`` or as profile ``key``."""
    injection_sites(sandbox)
    if key in PREPARE:
        PREPARE[key](Path(value))
    flags = {key[2:]: value} if key.startswith("--") else {}
    text = json.dumps([value] if key in LIST_KEYS else value)  # JSON strings and arrays are TOML
    profile = sandbox.personal(site, "" if flags else f"{key} = {text}")
    return render(profile, build_request(profile, flags, SESSION), USER)


@pytest.mark.parametrize("hostile", HOSTILE, ids=range(len(HOSTILE)))
@pytest.mark.parametrize("key, site, form, kind", TARGETS, ids=[f"{t[0]}@{t[1]}" for t in TARGETS])
def test_hostile_values_are_refused_or_inert(
    sandbox: Sandbox, key: str, site: str, form: str, kind: str, hostile: str
) -> None:
    marker = sandbox.root / "pwned"
    value = form.format(h=hostile.format(P=marker), t=sandbox.root)
    try:
        script = hostile_script(sandbox, key, site, value)
    except HpcJupyterError as refused:
        assert kind == "refuse" or "\n" in value, f"{key} refused a value it should carry inertly: {refused}"
        return
    assert kind == "inert" and "\n" not in value, f"{key} accepted {value!r}"
    proc = subprocess.run(["bash", "-c", script], env=job_env(sandbox.root), cwd=sandbox.root, timeout=60)
    assert not marker.exists(), f"{key}: {value!r} ran as shell code"
    assert not [path for path in sandbox.root.rglob("pwned") if path.is_file()]
    record = json.loads((sandbox.root / "jupyter-record.json").read_text())  # the setup ran through
    if key == "env.jupyter_args":
        assert value in record["argv"]
    assert proc.returncode == 1  # the fake exits at once: "exited before it was ready"


def test_hostile_user_name_is_refused(sandbox: Sandbox) -> None:
    profile = sandbox.personal("imperial-cx3")
    request = build_request(profile, {}, SESSION)
    for user in ("x'; touch P; '", "../../etc", "-oProxyCommand=x", "a b"):
        with pytest.raises(RequestError, match="cannot be used in a path"):
            render(profile, request, user)


# ---- the job-side protocol, for real -------------------------------------------------------


def local_profile(sandbox: Sandbox) -> Profile:
    """The local site with the stubs first on PATH after its set-up (the local site otherwise puts
    the Python environment running the tests first, which holds a real jupyter)."""
    stubs = sandbox.root / "stub-bin"
    return sandbox.personal("local", f'env.setup = ["export PATH={stubs}:$PATH"]')


def test_protocol_with_a_fake_jupyter(sandbox: Sandbox, started: list[subprocess.Popen[bytes]]) -> None:
    profile = local_profile(sandbox)
    request = build_request(profile, {}, SESSION)
    directory = Path(job_dir(profile, request))
    env = job_env(sandbox.root, FAKE_JUPYTER="serve")
    proc = start(sandbox.root, render(profile, request), env, started)
    connection, log = directory / "connection.json", directory / "job.log"
    wait_for(lambda: log.exists() and "HPCJUPYTER_READY" in log.read_text(), 20, "the ready marker")

    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(connection.stat().st_mode) == 0o600
    record = json.loads((sandbox.root / "jupyter-record.json").read_text())
    token = record["token"]
    assert len(token) == 48 and int(token, 16) >= 0
    data = json.loads(connection.read_text())
    assert (data["token"], data["port"], data["host"], data["job_id"]) == (token, 43210, "127.0.0.1", "local-test-1")
    assert data["pid"] == record["pid"] and data["jupyter_server"] == "2.99-fake"
    ready = [line for line in log.read_text().splitlines() if line.startswith("HPCJUPYTER_READY")]
    assert len(ready) == 1 and ready[0].startswith("HPCJUPYTER_READY host=127.0.0.1 port=43210 ")
    assert token not in log.read_text()
    for part in ("lab", "--no-browser", "--port=0", "--ServerApp.port_retries=0", "--ip=127.0.0.1"):
        assert part in record["argv"]
    assert not any(token in cmdline for cmdline in all_cmdlines())
    assert stat.S_IMODE(log.stat().st_mode) == 0o600

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 143
    assert not connection.exists()
    assert not alive(record["pid"])
    assert "stop requested" in log.read_text()


def all_cmdlines() -> list[str]:
    """Every process's command line on this machine, as another user would see them."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            found.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:
            continue
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("code, expected", [(1, 1), (0, 1), (3, 3)])
def test_jupyter_exiting_before_ready_fails_the_job(sandbox: Sandbox, code: int, expected: int) -> None:
    profile = local_profile(sandbox)
    request = build_request(profile, {}, SESSION)
    env = job_env(sandbox.root, FAKE_JUPYTER=f"exit:{code}")
    proc = subprocess.run(["bash", "-c", render(profile, request)], env=env, timeout=60)
    assert proc.returncode == expected
    directory = Path(job_dir(profile, request))
    assert f"jupyter exited with status {code} before it was ready" in (directory / "job.log").read_text()
    assert not (directory / "connection.json").exists()


def test_jupyter_dying_after_ready_ends_the_job(sandbox: Sandbox, started: list[subprocess.Popen[bytes]]) -> None:
    profile = local_profile(sandbox)
    request = build_request(profile, {}, SESSION)
    directory = Path(job_dir(profile, request))
    proc = start(sandbox.root, render(profile, request), job_env(sandbox.root, FAKE_JUPYTER="serve"), started)
    wait_for(lambda: (directory / "connection.json").exists(), 20, "connection.json")
    os.kill(json.loads((sandbox.root / "jupyter-record.json").read_text())["pid"], signal.SIGKILL)
    assert proc.wait(timeout=20) == 137
    assert not (directory / "connection.json").exists()
    assert "jupyter exited with status 137" in (directory / "job.log").read_text()


def test_missing_setup_fails_before_jupyter_with_the_reason_in_the_log(sandbox: Sandbox) -> None:
    profile = sandbox.personal("local", f'env.venv = "{sandbox.root}/no-such-venv"')
    request = build_request(profile, {}, SESSION)
    proc = subprocess.run(["bash", "-c", render(profile, request)], env=job_env(sandbox.root), timeout=60)
    assert proc.returncode != 0
    log = (Path(job_dir(profile, request)) / "job.log").read_text()
    assert f"hpcjupyter: no venv at {sandbox.root}/no-such-venv (bin/activate does not exist)" in log
    assert not (sandbox.root / "jupyter-record.json").exists()


JUPYTER = Path(sys.executable).parent / "jupyter-lab"


@pytest.mark.skipif(not JUPYTER.exists(), reason="jupyterlab is not installed in this environment")
def server_nodelay(pid: int, port: int, peer_port: int) -> int:
    """TCP_NODELAY of process PID's socket on PORT connected to PEER_PORT, read on a copy of its
    file descriptor (pidfd_getfd, Linux >= 5.6; a child of this process may be inspected)."""
    pidfd_getfd = 438  # the syscall's number on x86_64 and arm64 alike
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(pid)
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            copy = libc.syscall(pidfd_getfd, pidfd, int(fd), 0)
            if copy < 0:
                continue
            if not stat.S_ISSOCK(os.fstat(copy).st_mode):
                os.close(copy)
                continue
            with socket.socket(fileno=copy) as end:
                if end.family not in (socket.AF_INET, socket.AF_INET6) or end.type != socket.SOCK_STREAM:
                    continue
                try:
                    ours = end.getsockname()[1] == port and end.getpeername()[1] == peer_port
                except OSError:  # the listening socket
                    continue
                if ours:
                    return int(end.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
    finally:
        os.close(pidfd)
    raise AssertionError(f"no socket of process {pid} on port {port} from {peer_port}")


def test_real_jupyterlab_started_by_the_local_script(sandbox: Sandbox, started: list[subprocess.Popen[bytes]]) -> None:
    profile = sandbox.personal("local")
    request = build_request(profile, {}, SESSION)
    directory = Path(job_dir(profile, request))
    env = job_env(sandbox.root)
    # Neither stubs nor the test run's environment on PATH: the local site itself puts the Python
    # environment hpcjupyter runs from first, as a user's `.venv/bin/hpcjupyter` needs.
    env["PATH"] = "/usr/bin:/bin"
    proc = start(sandbox.root, render(profile, request), env, started)
    connection = directory / "connection.json"
    wait_for(lambda: connection.exists() or proc.poll() is not None, 120, "JupyterLab to start")
    assert proc.poll() is None, (directory / "job.log").read_text()
    data = json.loads(connection.read_text())
    url = f"http://127.0.0.1:{data['port']}/api/status"
    # Generous timeouts: on a loaded 2-core machine JupyterLab's first answer can take a while.
    with urllib.request.urlopen(urllib.request.Request(url, headers={"Authorization": f"token {data['token']}"}),
                                timeout=60) as answer:
        assert answer.status == 200
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url, timeout=60)
    assert refused.value.code == 403
    # Jupyter's end of a websocket sends small messages at once (the job's config turns Nagle off;
    # tornado leaves it on, and a kernel's reply then waits for the browser's delayed ACK).
    import websocket  # websocket-client, a test dependency

    ws = websocket.create_connection(f"ws://127.0.0.1:{data['port']}/api/events/subscribe",
                                     header=[f"Authorization: token {data['token']}"], timeout=60)
    try:
        # the server sets it right after sending the 101 the client has read: wait for it
        peer = ws.sock.getsockname()[1]
        wait_for(lambda: server_nodelay(data["pid"], data["port"], peer) == 1, 10, "TCP_NODELAY on the websocket")
    finally:
        ws.close()
    # The marker line follows connection.json (written first, atomically): wait for it.
    wait_for(lambda: "HPCJUPYTER_READY" in (directory / "job.log").read_text(), 30, "the ready marker")
    log = (directory / "job.log").read_text()
    assert data["token"] not in log and log.count("HPCJUPYTER_READY") == 1, log
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 143, (directory / "job.log").read_text()
    assert not connection.exists()


def test_directive_filters_refuse_what_a_scheduler_would_misread(sandbox: Sandbox) -> None:
    """Defence in depth: even a Request built around the checks cannot put a space or quote
    into a '#SBATCH' line."""
    profile = sandbox.personal("archer2", 'job.account = "e123"')
    request = build_request(profile, {}, SESSION)
    for field, value in (("account", "e1 --uid=0"), ("qos", "a'b"), ("session_id", "x y")):
        with pytest.raises(RequestError, match="cannot go into a scheduler directive"):
            render(profile, dataclasses.replace(request, **{field: value}), USER)


def test_a_failing_setup_line_ends_the_job_and_its_log_names_it(
        sandbox: Sandbox, started: list[subprocess.Popen[bytes]]) -> None:
    """What doctor reports for the same line (status 7): the job stops there, before Jupyter."""
    profile = sandbox.personal("local", 'env.setup = ["true", "test -d /nonexistent-hpcj", "touch never-here"]')
    request = build_request(profile, {}, SESSION)
    directory = Path(job_dir(profile, request))
    proc = start(sandbox.root, render(profile, request), job_env(sandbox.root, FAKE_JUPYTER="serve"), started)
    assert proc.wait(timeout=20) == 7
    log = (directory / "job.log").read_text()
    assert "env.setup failed (exit status 1): test -d /nonexistent-hpcj" in log
    assert not (sandbox.root / "jupyter-record.json").exists() and not (sandbox.root / "cwd" / "never-here").exists()
