"""submit → connect → kernel → browser → cancel, for real, on the mini-cluster test bed."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from clihelpers import port_and_token, read_url, stop
from jupyter_client import run_code
from tbprofiles import install

from hpcjupyter.probe import api_status

pytestmark = pytest.mark.e2e
DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "jupyterlab-through-tunnel.png"


def submit(cli, site: str) -> str:
    result = cli.run("submit", "--site", site, "--hours", "1")
    assert result.returncode == 0, result.stderr
    job_id = result.stdout.strip().splitlines()[-1]
    assert job_id, result.stdout
    return job_id


def listening_sockets(testbed, node: str, port: int) -> list[str]:
    """Local addresses with a listener on ``port`` on the node."""
    out = testbed.exec(node, "ss", "-Hltn", check=True).stdout
    return [line.split()[3] for line in out.splitlines() if line.split()[3].endswith(f":{port}")]


def chromium_loads_lab(url: str, directory: Path) -> Path:
    """Headless Chromium opens /lab through the tunnel; returns the screenshot."""
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={directory / 'chromium-profile'}", "--window-size=1280,800",
             "--virtual-time-budget=20000"]
    shot = directory / "jupyterlab.png"
    # One launch does both (new headless mode): the DOM on stdout, the screenshot to a file.
    dom = subprocess.run(["chromium", *flags, "--dump-dom", f"--screenshot={shot}", url], capture_output=True,
                         text=True, timeout=120)
    assert "jp-LabShell" in dom.stdout or "jp-MainAreaWidget" in dom.stdout, dom.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    return shot


@pytest.mark.parametrize("site", ["tb-slurm", "tb-slurm-jump", "tb-slurm-fabric", "tb-slurm-fabric-jump", "tb-pbs"])
def test_submit_connect_kernel_cancel(cli, testbed, tmp_path: Path, site: str) -> None:
    install(cli, testbed, site)
    job_id = submit(cli, site)
    connect = cli.start("connect", job_id, "--no-browser")
    try:
        url = read_url(connect)
        port, token = port_and_token(url)
        assert api_status(port, "/", token) == 200
        assert api_status(port, "/", None) == 403
        node = run_code(port, token, "import socket; print(socket.gethostname())").strip()
        assert node in testbed.nodes
        # Jupyter listens where the tunnel shape needs it, never on all addresses.
        listeners = [a for a in listening_sockets(testbed, node, int(_remote_port(cli, job_id)))]
        expected = "127.0.0.1" if site.endswith("jump") else testbed.addresses[node]
        assert listeners and all(a.startswith(expected + ":") for a in listeners), listeners
        if site == "tb-slurm":
            shot = chromium_loads_lab(url, tmp_path)
            if not DOCS_SCREENSHOT.exists():
                shutil.copy(shot, DOCS_SCREENSHOT)
        listed = cli.json("ls")
        assert [s["state"] for s in listed] == ["RUNNING"] and listed[0]["node"] == node
        logs = cli.run("logs", job_id)
        assert logs.returncode == 0 and "HPCJUPYTER_READY" in logs.stdout
        assert token not in logs.stdout
        cancelled = cli.run("cancel", job_id)
        assert cancelled.returncode == 0, cancelled.stderr
        connect.wait(timeout=120)
        assert f"job {job_id} on {site} was cancelled" in stop(connect)
        ended = cli.json("ls")
        assert ended[0]["state"] == "ENDED"
    finally:
        stop(connect)
        cli.run("cancel", job_id)


def _remote_port(cli, job_id: str) -> str:
    """The port Jupyter reported, from the job log's marker line (fetched through the CLI)."""
    log = cli.run("logs", job_id).stdout
    match = re.search(r"HPCJUPYTER_READY host=\S+ port=(\d+)", log)
    assert match, log
    return match.group(1)
