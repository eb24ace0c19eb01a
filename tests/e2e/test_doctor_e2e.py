"""`hpcjupyter doctor` on the mini-cluster: all ✓ for a good profile, and for a profile broken in
one way per check, a ✗ at exactly that check.

Doctor runs in-process through a small Typer app (the checks drive the real ssh, Slurm and shell
on the test bed); `tests/e2e/test_group_flow.py` drives the installed command line.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
import typer
from clihelpers import close_masters
from typer.testing import CliRunner

from hpcjupyter.cli_doctor import doctor
from hpcjupyter.doctor import CHECKS

pytestmark = pytest.mark.e2e

NAMES = [name for name, _ in CHECKS]


@pytest.fixture
def sandbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Fresh hpcjupyter dirs under a short path (ssh control sockets live in the state dir)."""
    root = Path(tempfile.mkdtemp(prefix="hpcj-doc-", dir="/tmp"))
    for var, sub in (("HPCJUPYTER_CONFIG", "config.toml"), ("HPCJUPYTER_STATE_DIR", "state"),
                     ("HPCJUPYTER_DATA_DIR", "data"), ("HPCJUPYTER_PROFILE_PATH", "profiles"),
                     ("XDG_CONFIG_HOME", "xdg")):
        monkeypatch.setenv(var, str(root / sub))
    monkeypatch.setenv("NO_COLOR", "1")
    (root / "profiles").mkdir()
    try:
        yield root
    finally:
        close_masters(root / "state")
        shutil.rmtree(root, ignore_errors=True)


def tb_profile(testbed: Any, *, scheduler: str = "slurm", host: str = "tb-login", tunnel: str = "forward",
               partition: str = "serial", account: str | None = None, remote_dir: str | None = None,
               venv: str | None = None) -> str:
    account_line = f'account = "{account}"\n' if account else ""
    return f"""\
scheduler = "{scheduler}"
[ssh]
host = "{host}"
config = "{testbed.ssh_config}"
transport = "openssh"
tunnel = "{tunnel}"
[job]
hours = 1.0
partition = "{partition}"
{account_line}[env]
remote_dir = "{remote_dir or testbed.remote_dir}"
venv = "{venv or testbed.jupyter_venv}"
poll_seconds = 2
"""


def run_doctor(sandbox: Path, name: str, profile: str, *args: str) -> Any:
    (sandbox / "profiles" / f"{name}.toml").write_text(profile)
    app = typer.Typer()
    app.command()(doctor)
    return CliRunner().invoke(app, ["--site", name, *args])


def results(sandbox: Path, name: str, profile: str) -> tuple[int, list[dict[str, Any]]]:
    outcome = run_doctor(sandbox, name, profile, "--json")
    return outcome.exit_code, json.loads(outcome.stdout)


def test_doctor_passes_on_a_good_testbed_profile(testbed: Any, sandbox: Path) -> None:
    code, rows = results(sandbox, "tb-doctor", tb_profile(testbed))
    assert code == 0, rows
    assert [r["name"] for r in rows] == NAMES and all(r["ok"] for r in rows), rows
    detail = {r["name"]: r["detail"] for r in rows}
    assert detail["ssh"] == "tb-login reached; 0 prompts answered"  # the key login asks nothing
    assert detail["account/partition/qos"].startswith("partition serial exists")
    assert detail["remote_dir"].startswith(f"{testbed.remote_dir} writable from the login node")
    assert detail["jupyter"].startswith(f"{testbed.jupyter_venv}/bin/jupyter-lab on the login node")
    assert all(isinstance(r["seconds"], float) for r in rows)
    text = run_doctor(sandbox, "tb-doctor", tb_profile(testbed))
    assert text.exit_code == 0
    assert [line.split(" (")[0] for line in text.stdout.splitlines()] == [f"✓ {n}" for n in NAMES]
    assert " ms)  " in text.stdout


def test_doctor_checks_ssh_to_a_node_for_the_jump_shape(testbed: Any, sandbox: Path) -> None:
    code, rows = results(sandbox, "tb-jump", tb_profile(testbed, tunnel="jump"))
    assert code == 0, rows
    assert rows[-1]["detail"] == f"jump: ssh from the login node to {testbed.nodes[0]} works"


def test_doctor_checks_the_account_where_slurm_accounting_can_tell(testbed: Any, sandbox: Path) -> None:
    code, rows = results(sandbox, "tb-broken", tb_profile(testbed, account="nosuchacct"))
    if testbed.accounting:
        assert code == 1 and rows[-1]["name"] == "account/partition/qos", rows
        assert "account 'nosuchacct' is not one of yours (yours: " in rows[-1]["detail"]
    else:
        assert code == 0, rows
        assert "account and QoS: cannot tell" in rows[3]["detail"]


@pytest.fixture
def venv_without_jupyter(testbed: Any) -> Iterator[Path]:
    """A real venv on the shared filesystem, made by the test user, with no JupyterLab in it."""
    path = testbed.home / f"doctor-venv-{uuid.uuid4().hex[:8]}"
    made = testbed.ssh(testbed.login_alias, f"python3 -m venv --without-pip {path}")
    assert made.returncode == 0, made.stderr
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def nodes_refuse_doctor(testbed: Any) -> Iterator[None]:
    """Compute nodes refuse doctor's probe (`ssh -o ConnectTimeout=5 NODE true` from the login node).

    The test user's ~/.ssh/config sends only that probe to a closed port, so the batch system's own
    login-to-node ssh (the PBS emulator's) and other tests' tunnels are untouched.
    """
    config = testbed.home / ".ssh" / "config"
    saved = config.read_bytes() if config.exists() else None
    rule = ("# hpcjupyter test_doctor_e2e: nodes refuse doctor's probe (removed when the test ends)\n"
            f"Match host {','.join(testbed.nodes)} exec \"grep -qa ConnectTimeout=5 /proc/$PPID/cmdline\"\n"
            "    Port 1\n\n")
    config.write_bytes(rule.encode() + (saved or b""))
    os.chown(config, testbed.uid, testbed.uid)
    config.chmod(0o600)
    try:
        yield
    finally:
        if saved is None:
            config.unlink()
        else:
            config.write_bytes(saved)


BROKEN = {
    "profile": ({"scheduler": "slrum"}, "key 'scheduler'"),
    "ssh": ({"host": "tb-nosuch"}, "tb-nosuch"),
    "account/partition/qos": ({"partition": "nosuch"}, "partition 'nosuch' does not exist on tb-broken"),
    "remote_dir": ({"remote_dir": "/proc/x"}, "/proc/x is not writable"),
}


@pytest.mark.parametrize("check", list(BROKEN))
def test_doctor_fails_at_the_check_a_profile_breaks(testbed: Any, sandbox: Path, check: str) -> None:
    broken, message = BROKEN[check]
    code, rows = results(sandbox, "tb-broken", tb_profile(testbed, **broken))
    assert code == 1
    assert [r["name"] for r in rows] == NAMES[: NAMES.index(check) + 1]
    assert all(r["ok"] for r in rows[:-1]) and not rows[-1]["ok"], rows
    assert message in rows[-1]["detail"]


def test_doctor_fails_at_jupyter_for_a_venv_without_jupyter_lab(testbed: Any, sandbox: Path,
                                                                 venv_without_jupyter: Path) -> None:
    code, rows = results(sandbox, "tb-broken", tb_profile(testbed, venv=str(venv_without_jupyter)))
    assert code == 1 and rows[-1]["name"] == "jupyter", rows
    assert rows[-1]["detail"].startswith(f"jupyter-lab not found in the venv {venv_without_jupyter} on the login node")
    assert "pip install jupyterlab" in rows[-1]["detail"]


def test_doctor_fails_at_tunnel_when_jump_nodes_refuse_ssh(testbed: Any, sandbox: Path,
                                                           nodes_refuse_doctor: None) -> None:
    code, rows = results(sandbox, "tb-broken", tb_profile(testbed, tunnel="jump"))
    assert code == 1 and rows[-1]["name"] == "tunnel", rows
    assert f"ssh from the login node to compute node {testbed.nodes[0]} failed" in rows[-1]["detail"]
    assert "Connection refused" in rows[-1]["detail"] and 'tunnel = "forward"' in rows[-1]["detail"]
