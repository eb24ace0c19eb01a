"""Figures 1 and 2, from the same sessions: a user's day as separate invocations,
`submit` → `connect` → `ls` → `cancel`, from a cold start (no ControlMaster running).

1. ready→URL: Jupyter's runtime file on the node (its mtime) to connect printing the URL; connect
   prints it only after ``GET /api/status`` answered 200 through the tunnel, and we check once more.
2. logins per session: bench-key logins the login sshd (and, for jump, the nodes' sshds) accepted
   from before submit to after cancel.

Test-bed profiles as the e2e tests use them (poll_seconds = 2); connect is started as soon as
submit returns, as `submit` tells the user to.

For openssh-forward (the targeted variant) ready→URL is split where the time goes, from
timestamps on one clock: Jupyter's runtime file → the job script's connection.json (its mtime:
the script looks for the runtime file every 0.2 s, then a python3 writes the file) → connect's
first ssh after the watch command returned (``ssh -O check``, logged by `sshcalls`) → its
``ssh -O forward`` → the URL (forward listening, /api/status 200 through it, record, print).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sshcalls
from bed import answers, check_ok, close_masters, interrupt, runtime_file_mtime, session_record, submit, wait_line
from measure import Figure, fmt, med, spread

from hpcjupyter import protocol

VARIANTS = (("openssh", "forward"), ("fabric", "forward"), ("openssh", "jump"), ("fabric", "jump"))
TARGET_READY = 0.1
TARGET_LOGINS = 1
SPLIT = ("runtime file -> connection.json", "connection.json -> watch returned", "watch returned -> forward asked",
         "forward asked -> URL")


def split(ready: float, connection: float, shown_at: float, calls: list[sshcalls.Call]) -> dict[str, float]:
    """Where ready→URL went (see the module doc); empty if the ssh log lacks the two calls."""
    after = [c for c in calls if c.at >= connection and c.kind.startswith("control")]
    forward = next((c.at for c in after if c.kind == "control forward"), None)
    if not after or forward is None:
        return {}
    noticed = after[0].at
    return dict(zip(SPLIT, (connection - ready, noticed - connection, forward - noticed, shown_at - forward),
                    strict=True))


def one_session(bench: Any, cli: Any, site: str, log: Path | None) -> tuple[float, dict[str, int], dict[str, float]]:
    """One cold session; returns (ready→URL seconds, logins per sshd, the split when LOG is given)."""
    close_masters(cli.home)
    before = bench.logins()
    job_id = submit(bench, cli, site)
    connect = bench.start_cli(cli, "connect", job_id, "--no-browser")
    try:
        url, shown_at, _ = wait_line(connect, "http://127.0.0.1:", 180)
        job_dir = session_record(cli)["job_dir"]
        ready = runtime_file_mtime(job_dir)
        connection = Path(protocol.path(job_dir, protocol.CONNECTION)).stat().st_mtime  # gone once it ends
        answers(url)
        check_ok(cli.run("ls"), "ls")
        check_ok(cli.run("cancel", job_id), "cancel")
    finally:
        interrupt(connect)
    after = bench.logins()
    close_masters(cli.home)
    parts = split(ready, connection, shown_at, sshcalls.read(log)) if log else {}
    return shown_at - ready, {host: after[host] - before[host] for host in after}, parts


def measure(bench: Any, figure: Figure, reps: int, jump_reps: int) -> None:
    for transport, tunnel in VARIANTS:
        name = f"{transport}-{tunnel}"
        site = f"tb-{name}"
        cli = bench.cli(f"s-{name}", {site: bench.profile(transport=transport, tunnel=tunnel)})
        targeted = transport == "openssh" and tunnel == "forward"
        log = sshcalls.install(cli) if targeted else None
        runs = [one_session(bench, cli, site, log) for _ in range(reps if tunnel == "forward" else jump_reps)]
        ready = figure.add(f"ready->URL {name}", [r[0] for r in runs], "s")
        if targeted:
            report_split(figure, [r[2] for r in runs if r[2]])
        logins = {host: figure.add(f"logins {name} {host}", [r[1][host] for r in runs], "logins")
                  for host in ("login", "node1", "node2")}
        figure.row(f"ready→URL {name}", spread(ready), f"<= {TARGET_READY * 1000:.0f} ms" if targeted else "",
                   med(ready) <= TARGET_READY if targeted else None, key="1")
        on_login = logins["login"]["max"]  # the worst session counts
        nodes = logins["node1"]["max"] + logins["node2"]["max"]
        varied = " (varied: see JSON)" if logins["login"]["min"] != on_login else ""
        value = f"{on_login:g} on login" + (f" + {nodes:g} on the node" if tunnel == "jump" else "") + varied
        figure.row(f"logins/session {name}", value, f"{TARGET_LOGINS} on login" if transport == "openssh" else "",
                   on_login <= TARGET_LOGINS if transport == "openssh" else None, key="2")
    figure.notes.append("session = submit, connect (until the URL), ls, cancel, each its own process; "
                        "ssh masters closed before each session")


def report_split(figure: Figure, splits: list[dict[str, float]]) -> None:
    """Medians of each part of ready→URL (openssh-forward), in a note and the JSON."""
    if not splits:
        figure.notes.append("ready→URL split: not measured (the ssh call log lacked the tunnel's calls)")
        return
    parts = {name: figure.add(f"split {name}", [s[name] for s in splits], "s") for name in SPLIT}
    shown = ", ".join(f"{name} {fmt(med(metric))}" for name, metric in parts.items())
    figure.notes.append(f"ready→URL openssh-forward, medians: {shown} (n={len(splits)}; ssh calls pass "
                        "through a logging wrapper: a few ms each, two of them on this path)")
