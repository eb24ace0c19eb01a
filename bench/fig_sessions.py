"""Figures 1 and 2, from the same sessions: a user's day as separate invocations,
`submit` → `connect` → `ls` → `cancel`, from a cold start (no ControlMaster running).

1. ready→URL: Jupyter's runtime file on the node (its mtime) to connect printing the URL; connect
   prints it only after ``GET /api/status`` answered 200 through the tunnel, and we check once more.
2. logins per session: bench-key logins the login sshd (and, for jump, the nodes' sshds) accepted
   from before submit to after cancel.

Test-bed profiles as the e2e tests use them (poll_seconds = 2); connect is started as soon as
submit returns, as `submit` tells the user to.
"""

from __future__ import annotations

from typing import Any

from bed import answers, check_ok, close_masters, interrupt, runtime_file_mtime, session_record, submit, wait_line
from measure import Figure, med, spread

VARIANTS = (("openssh", "forward"), ("fabric", "forward"), ("openssh", "jump"), ("fabric", "jump"))
TARGET_READY = 0.5
TARGET_LOGINS = 1


def one_session(bench: Any, cli: Any, site: str) -> tuple[float, dict[str, int]]:
    """One cold session; returns (ready→URL seconds, logins per sshd)."""
    close_masters(cli.home)
    before = bench.logins()
    job_id = submit(bench, cli, site)
    connect = bench.start_cli(cli, "connect", job_id, "--no-browser")
    try:
        url, shown_at, _ = wait_line(connect, "http://127.0.0.1:", 180)
        ready = runtime_file_mtime(session_record(cli)["job_dir"])
        answers(url)
        check_ok(cli.run("ls"), "ls")
        check_ok(cli.run("cancel", job_id), "cancel")
    finally:
        interrupt(connect)
    after = bench.logins()
    close_masters(cli.home)
    return shown_at - ready, {host: after[host] - before[host] for host in after}


def measure(bench: Any, figure: Figure, reps: int, jump_reps: int) -> None:
    for transport, tunnel in VARIANTS:
        name = f"{transport}-{tunnel}"
        site = f"tb-{name}"
        cli = bench.cli(f"s-{name}", {site: bench.profile(transport=transport, tunnel=tunnel)})
        runs = [one_session(bench, cli, site) for _ in range(reps if tunnel == "forward" else jump_reps)]
        ready = figure.add(f"ready->URL {name}", [r[0] for r in runs], "s")
        logins = {host: figure.add(f"logins {name} {host}", [r[1][host] for r in runs], "logins")
                  for host in ("login", "node1", "node2")}
        targeted = transport == "openssh" and tunnel == "forward"
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
