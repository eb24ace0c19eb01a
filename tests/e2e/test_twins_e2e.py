"""The built-in site profiles, unmodified, end to end on their site twins (`testbed.sh up --twin`).

Each test is what a new user of that site does: a config.toml holding only personal values
(``ssh.user``, ``ssh.config``, ``job.account``, and ``env.venv``/``env.conda_env`` where the site
needs one), then ``doctor``, ``submit --connect --no-browser``, ``cancel`` at a real terminal
(a pty), answering the site's login prompt (TOTP on the Cray twin, the password on the CX3 twin)
once for the whole session. And the failure a user meets first: no Jupyter installed yet, which
``doctor`` must catch, saying how the site installs it, before any job is queued.

The twins are described in tests/cluster/README.md ("Site twins") and in $BED/twins/twins.json.
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pexpect
import pytest
from clihelpers import Cli, port_and_token
from tbcli import control_sockets, listeners, master_pid, wait_status
from totp import Totp

from hpcjupyter.probe import api_status

pytestmark = pytest.mark.e2e

TOTP_PROMPT = r"One-time password \(OATH\) for `crayuser': "
PASSWORD_PROMPT = r"icuser@[\w.-]+'s password: "
URL = r"http://127\.0\.0\.1:\d+/\S+\?token=\w+"


# ---- the twins and their credentials ---------------------------------------------------------


@dataclass
class Twins:
    info: dict[str, Any]
    bed: Any  # the Testbed

    @property
    def cray(self) -> dict[str, Any]:
        return self.info["cray"]

    @property
    def cx3(self) -> dict[str, Any]:
        return self.info["imperial"]

    def totp(self) -> str:
        """A code the Cray twin accepts now, never a step used before (as an authenticator app
        would give, waiting for the next step when needed)."""
        return Totp(self.bed.dir, self.cray["user"], self.cray["totp_secret_hex"]).code()

    def password(self) -> str:
        return str(self.cx3["password"])


@pytest.fixture(scope="module")
def twins(testbed: Any) -> Twins:
    if not testbed.info.get("twins"):
        assert os.environ.get("HPCJ_TESTBED_TWINS") != "1", "HPCJ_TESTBED_TWINS=1 but the bed has no twins"
        pytest.skip("bed without site twins (testbed.sh up --twin)")
    return Twins(json.loads(Path(testbed.info["twins_json"]).read_text()), testbed)


# ---- a user at a terminal ----------------------------------------------------------------------


class Terminal:
    """hpcjupyter invocations on a pty, answering the login prompt and counting the prompts."""

    def __init__(self, cli: Cli, prompt: str, answer: Callable[[], str]) -> None:
        self.cli, self.prompt, self.answer = cli, prompt, answer
        self.prompts = 0
        self.transcript = ""
        self.answers: list[str] = []

    def spawn(self, *args: str) -> pexpect.spawn:
        return self.cli.spawn(*args)

    def until(self, child: pexpect.spawn, what: Any, timeout: float = 180) -> str:
        """Answer login prompts until ``what`` is seen; returns the match."""
        while True:
            i = child.expect([self.prompt, what], timeout=timeout)
            self.transcript += child.before + (child.after if isinstance(child.after, str) else "")
            if i == 1:
                return child.after if isinstance(child.after, str) else ""
            self.prompts += 1
            self.answers.append(self.answer())
            child.sendline(self.answers[-1])

    def run(self, *args: str) -> tuple[int | None, str]:
        start = len(self.transcript)
        child = self.spawn(*args)
        self.until(child, pexpect.EOF)
        child.close()
        return child.exitstatus, self.transcript[start:]


@dataclass(frozen=True)
class Case:
    site: str
    sshd: str  # which sshd of the bed the site's alias reaches: mfa (key + TOTP) or pw (password)
    config: dict[str, str]  # the user's [sites.NAME] values besides ssh.user and ssh.config
    jupyter: str  # where doctor must find jupyter-lab
    job_root: str  # the site's job directories


def user_config(twins: Twins, site: str, values: dict[str, str]) -> str:
    user = twins.cx3["user"] if site == "imperial-cx3" else twins.cray["user"]
    lines = [f"[sites.{site}]", f'ssh.user = "{user}"', f'ssh.config = "{twins.info["ssh_config"]}"']
    return "\n".join(lines + [f'{key} = "{value}"' for key, value in values.items()]) + "\n"


def terminal_for(twins: Twins, cli: Cli, site: str) -> Terminal:
    if site == "imperial-cx3":
        return Terminal(cli, PASSWORD_PROMPT, twins.password)
    return Terminal(cli, TOTP_PROMPT, twins.totp)


def sessions(twins: Twins) -> dict[str, Case]:
    cray, cx3 = twins.cray, twins.cx3
    budget = {"job.account": cray["budget"]}
    return {
        # ARCHER2's documented install: PYTHONUSERBASE=/work/.../.local pip install --user jupyterlab,
        # found by the profile's own set-up (HOME and PYTHONUSERBASE on /work, its bin on PATH)
        "archer2-pip-user": Case("archer2", "mfa", budget, f"{cray['pythonuserbase']}/bin/jupyter-lab",
                                 f"{cray['work']}/hpcjupyter"),
        # Cirrus's other documented install: a venv on /epccfs (what EPCC's OOD app asks for)
        "cirrus-venv": Case("cirrus", "mfa", {**budget, "env.venv": cray["epccfs_venv"]},
                            f"{cray['epccfs_venv']}/bin/jupyter-lab", f"{cray['epccfs']}/hpcjupyter"),
        # CX3: password login, PBS, conda from ~/miniforge3 with a named env (never base)
        "imperial-cx3-conda": Case("imperial-cx3", "pw", {"env.conda_env": cx3["conda_env"]},
                                   f"{cx3['conda']}/envs/{cx3['conda_env']}/bin/jupyter-lab", cx3["remote_dir"]),
    }


SESSIONS = ["archer2-pip-user", "cirrus-venv", "imperial-cx3-conda"]


def scheduler_cancel(twins: Twins, site: str, job: str) -> None:
    """Leave nothing queued, whatever the test did (as root on the login host)."""
    if site == "imperial-cx3":
        twins.bed.exec("login", "runuser", "-u", twins.cx3["user"], "--", "qdel", job)
    else:
        twins.bed.exec("login", "scancel", job)


# ---- the tests ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SESSIONS)
def test_builtin_profile_doctor_submit_connect_cancel_on_its_twin(
        twins: Twins, cli: Cli, disruptive: Any, name: str) -> None:
    """doctor passes; submit --connect reaches Jupyter (200 with the token, 403 without) through a
    forward tunnel held by the one ssh login; cancel ends the job. One prompt in all."""
    case = sessions(twins)[name]
    (cli.home / "config.toml").write_text(user_config(twins, case.site, case.config))
    term = terminal_for(twins, cli, case.site)
    offset = twins.bed.log_size(case.sshd)
    t0 = time.monotonic()

    code, out = term.run("doctor", "--site", case.site)
    assert code == 0, out
    assert re.findall(r"^([✓✗]) (\S+)", out, re.M) == [("✓", n) for n in
                                                        ("profile", "ssh", "scheduler", "account/partition/qos",
                                                         "remote_dir", "jupyter", "tunnel")], out
    assert "jupyter (" in out and f"{case.jupyter} on the login node" in out, out
    assert f"{case.job_root} writable" in out, out
    (sock,) = control_sockets(cli)
    pid = master_pid(sock)
    assert pid is not None
    doctor_s = time.monotonic() - t0

    job = ""
    child = term.spawn("submit", "--site", case.site, "--connect", "--no-browser")
    try:
        term.until(child, r"submitted job (\S+) to \S+ \(job directory (\S+)\)")
        job, job_dir = child.match.group(1), child.match.group(2)
        assert job_dir.startswith(f"{case.job_root}/"), term.transcript
        url = term.until(child, URL, timeout=240)
        ready_s = time.monotonic() - t0 - doctor_s
        port, token = port_and_token(url)
        assert api_status(port, "/", token) == 200
        assert api_status(port, "/", None) == 403
        # the site's tunnel shape: forward, inside the one ssh login (the master listens locally),
        # to Jupyter on the compute node's own name (never loopback or 0.0.0.0)
        owners = " ".join(proc for _, proc in listeners(port))
        assert f"pid={pid}," in owners, owners
        term.until(child, r"Jupyter on (\S+) is at")
        node = child.match.group(1)
        assert node in twins.bed.nodes, term.transcript

        code, out = term.run("cancel", job)
        assert code == 0 and f"cancelled job {job} on {case.site}" in out, out
        ended = wait_status(cli, case.site, job, lambda d: d["state"] == "ENDED", seconds=60)
        assert ended["outcome"] == "cancelled", ended
        child.sendintr()  # the user leaves connect (which would notice the end at its next poll)
        term.until(child, pexpect.EOF, timeout=60)
    finally:
        child.close(force=True)
        if job:
            scheduler_cancel(twins, case.site, job)

    assert term.prompts == 1, f"{term.prompts} prompts:\n{term.transcript}"
    assert all(answer not in term.transcript for answer in term.answers)  # read without echo
    assert control_sockets(cli) == [sock] and master_pid(sock) == pid, "the login was replaced"
    accepted = twins.bed.accepted_since(case.sshd, offset)
    assert len(accepted) == 1 and f"for {cli_user(twins, case.site)} from" in accepted[0], accepted
    print(f"{name}: doctor {doctor_s:.1f} s, submit to Jupyter answering {ready_s:.1f} s, "
          f"all {time.monotonic() - t0:.1f} s")


def cli_user(twins: Twins, site: str) -> str:
    return twins.cx3["user"] if site == "imperial-cx3" else twins.cray["user"]


@pytest.fixture
def empty_venv(twins: Twins) -> Any:
    """A venv made the way Cirrus's python.md says (cray-python, --system-site-packages, on
    /epccfs), before anything is installed in it."""
    cray = twins.cray
    path = f"{cray['epccfs']}/new-venv-{uuid.uuid4().hex[:8]}"
    made = twins.bed.exec("login", "runuser", "-u", cray["user"], "--", cray["cray_python"], "-m", "venv",
                          "--system-site-packages", path, timeout=120)
    assert made.returncode == 0, made.stderr
    yield path
    twins.bed.exec("login", "rm", "-rf", path)


NEW_USERS = {
    # The profile's default environment: cray-python and the pip --user base on /epccfs, empty.
    "cirrus-pip-user": ("cirrus", {},
                        ["Install JupyterLab the site's documented way (env.install), on the login node:",
                         "  module load cray-python; PYTHONUSERBASE=/epccfs/t01/t01/crayuser/.local "
                         "pip install --user jupyterlab"]),
    # A venv made as the docs say, nothing installed in it yet.
    "cirrus-venv": ("cirrus", {"env.venv": "EMPTY_VENV"},
                    ["Install JupyterLab into the venv the job activates (env.venv): "
                     "EMPTY_VENV/bin/pip install jupyterlab.",
                     "Or remove env.venv and install it the site's documented way (env.install), on the login node:",
                     "  module load cray-python; PYTHONUSERBASE=/epccfs/t01/t01/crayuser/.local "
                     "pip install --user jupyterlab"]),
    # CX3: the conda env named in the config does not exist yet.
    "imperial-cx3-conda": ("imperial-cx3", {"env.conda_env": "jupyter-new"},
                           ["Check env.conda_env: 'conda env list' on the login node shows the environments.",
                            "To create one with JupyterLab, the site's documented way (env.install), on the login node:",
                            "  module load miniforge/3; miniforge-setup; "
                            "eval \"$(~/miniforge3/bin/conda shell.bash hook)\"; conda create -n jupyter jupyterlab"]),
}


@pytest.mark.parametrize("name", list(NEW_USERS))
def test_new_user_without_jupyter_is_told_the_sites_install_before_any_job(
        twins: Twins, cli: Cli, disruptive: Any, request: pytest.FixtureRequest, name: str) -> None:
    site, values, hint = NEW_USERS[name]
    if "EMPTY_VENV" in values.values():
        venv = request.getfixturevalue("empty_venv")
        values = {k: v.replace("EMPTY_VENV", venv) for k, v in values.items()}
        hint = [line.replace("EMPTY_VENV", venv) for line in hint]
    if site != "imperial-cx3":
        values = {"job.account": twins.cray["budget"], **values}
    (cli.home / "config.toml").write_text(user_config(twins, site, values))
    submits = twins.bed.command_count("sbatch") + twins.bed.command_count("qsub")
    term = terminal_for(twins, cli, site)

    code, out = term.run("doctor", "--site", site)
    assert code == 1, out
    marks = re.findall(r"^([✓✗]) (\S+)", out, re.M)
    assert marks[-1] == ("✗", "jupyter") and all(m == "✓" for m, _ in marks[:-1]), out
    failed = out[out.index("✗ jupyter"):].replace("\r\n", "\n").splitlines()
    assert [line.strip() for line in failed[1:]] == [line.strip() for line in hint], out
    assert term.prompts == 1, term.transcript
    # nothing was queued: doctor says so before a job burns queue time
    assert twins.bed.command_count("sbatch") + twins.bed.command_count("qsub") == submits
