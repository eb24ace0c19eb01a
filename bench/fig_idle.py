"""Figure 9: an idle `connect` — what it costs to leave it running, connected, all day.

`submit` a job, `connect` to it (openssh, forward shape, ``poll_seconds = 60`` as ARCHER2 and
Cirrus ask), and once it has printed the URL leave it alone for the window (10 minutes; `--quick`:
120 s, two scheduler polls). Over the window:

* CPU: user + system time of the connect process and of the children it waited for (the ssh
  commands it ran: scheduler queries, ``ssh -O check``), from /proc/PID/stat, as % of one core.
  Its ssh ControlMaster is not its child (``ssh -f`` detaches it, and it serves every
  invocation for the site), so it is reported on its own line;
* memory: connect's VmRSS at the end of the window;
* remote commands per minute (`sshcalls`: each ssh it starts, logged): the scheduler queries
  and anything else run on the login node. Its health probe (``GET /api/status`` every 2 s)
  goes through the tunnel: a channel in the master, not a command.

It runs in the background from the start, like figure 3, while the other figures take their
turns: the machine is busy meanwhile, which slows nothing of connect's own CPU time.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from typing import Any

import procs
import sshcalls
from bed import check_ok, close_masters, interrupt, submit, wait_line
from measure import Figure

from hpcjupyter.transports.openssh import parse_master_pid

POLL_SECONDS = 60
TARGET_CPU = 1.0  # % of one core


def master_pid(cli: Any) -> int | None:
    """The site's ControlMaster (its socket is in the CLI's state dir)."""
    for sock in (cli.home / "state" / "cm").glob("*"):
        if sock.is_socket():
            out = subprocess.run(["ssh", "-o", "ControlMaster=no", "-S", str(sock), "-O", "check", "bench"],
                                 capture_output=True, text=True, timeout=15)
            pid = parse_master_pid(out.stderr + out.stdout)
            if pid:
                return pid
    return None


@dataclass
class Idle:
    """What one idle window showed (times in seconds, memory in MiB)."""

    span: float
    cpu: float
    rss: float
    master_cpu: float | None
    master_rss: float
    calls: list[sshcalls.Call]
    begin: float


def idle_window(bench: Any, cli: Any, site: str, log: Any, window: float) -> Idle:
    """Submit, connect, wait for the URL, then leave connect alone for WINDOW seconds."""
    job_id = submit(bench, cli, site)
    connect = bench.start_cli(cli, "connect", job_id, "--no-browser")
    try:
        wait_line(connect, "http://127.0.0.1:", 180)
        master = master_pid(cli)
        begin, own0 = time.time(), procs.stat(connect.pid)
        master0 = procs.stat(master).cpu if master else None
        time.sleep(window)
        span, own1, rss = time.time() - begin, procs.stat(connect.pid), procs.rss_mib(connect.pid)
        master_cpu = procs.stat(master).cpu - master0 if master and master0 is not None else None
        master_rss = procs.rss_mib(master) if master else 0.0
        check_ok(cli.run("cancel", job_id), "cancel")
    finally:
        interrupt(connect)
        close_masters(cli.home)
    return Idle(span, own1.cpu - own0.cpu, rss, master_cpu, master_rss, sshcalls.read(log), begin)


def measure(bench: Any, figure: Figure, window: float) -> None:
    site = "tb-idle"
    cli = bench.cli("idle", {site: bench.profile(poll_seconds=POLL_SECONDS)})
    idle = idle_window(bench, cli, site, sshcalls.install(cli), window)
    label = f"{idle.span / 60:.0f} min" if idle.span >= 120 else f"{idle.span:.0f} s"
    cpu = figure.add("connect CPU % of a core (with children)", [100 * idle.cpu / idle.span], "%")
    figure.add("connect VmRSS at the end", [idle.rss], "MiB")
    figure.row(f"idle connect CPU ({label})", f"{cpu['median']:.2f} % of a core", f"< {TARGET_CPU:g} %",
               cpu["median"] < TARGET_CPU)
    figure.row(f"idle connect RSS at {label}", f"{idle.rss:.0f} MiB")
    if idle.master_cpu is not None:
        master = figure.add("ssh master CPU % of a core", [100 * idle.master_cpu / idle.span], "%")
        figure.add("ssh master VmRSS at the end", [idle.master_rss], "MiB")
        figure.row("its ssh master (not its child)", f"{master['median']:.2f} % of a core, {idle.master_rss:.0f} MiB")
    rate, by_kind = sshcalls.per_minute(idle.calls, idle.begin, idle.begin + idle.span)
    figure.metrics["remote commands per minute, connected"] = {"value": rate, "by_kind": by_kind, "window_s": idle.span}
    kinds = ", ".join(f"{kind} {n:.1f}" for kind, n in by_kind.items()) or "none"
    figure.row("remote commands/min, connected", f"{rate:.1f} ({kinds})")
    figure.notes.append(f"openssh forward, poll_seconds = {POLL_SECONDS}; a {label} window after the URL "
                        f"({'--quick' if window < 600 else 'full run'}); /api/status through the tunnel every 2 s "
                        "(not a remote command)")
