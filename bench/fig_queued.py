"""Figure 3: scheduler load while queued, and how soon a started job is noticed.

A job submitted held (the profile adds ``#SBATCH --hold``) stays PENDING while `connect` waits on
it for the window; we count the scheduler commands on the login host that name its id. Then
root releases it (``/usr/bin/scontrol``, not the counting wrapper) half a poll interval after
connect's latest query, and we measure from Jupyter's runtime file on the node to connect
printing the URL. The profile uses ``poll_seconds = 60``, as ARCHER2 and Cirrus ask.

Remote commands per minute over the window (every ssh connect starts, logged by `sshcalls`):
the scheduler queries and the watch commands on the login node, against 31 a minute before
commit bf59eb2 (a peek at the job directory every 2 s, plus the queries): read from the old code,
and measured once on 2026-11-30 with the old tree in the same set-up (31.4 a minute over 130 s:
30 peeks, 1.4 queries; this code, side by side: 3.7).

A window shorter than 10 minutes (--quick) is projected to 10 minutes with the interval the
last two queries showed (the steady state, once the fast first polls are over) — a projection,
said so in the table.
"""

from __future__ import annotations

import time
from typing import Any

import sshcalls
from bed import SLURM_QUERIES, check_ok, close_masters, interrupt, runtime_file_mtime, session_record, submit, wait_line
from measure import Figure

POLL_SECONDS = 60
TEN_MINUTES = 600.0
TARGET_QUERIES = 12
TARGET_NOTICED = 2.0
BEFORE_PER_MINUTE = 60 / 2 + 60 / POLL_SECONDS
"""Before bf59eb2: a peek every 2 s while queued (PEEK_QUEUED), and the scheduler queries."""


def release_moment(queued: list[float]) -> float:
    """Half a poll interval after the latest query, and not in the past.

    A job starts at no particular moment relative to the client's polls; releasing it mid-way
    between two polls measures the average case (releasing right at the window's end would
    line up with a poll, every time: connect's polls fall on whole minutes)."""
    steady = queued[-1] - queued[-2] if len(queued) >= 2 else POLL_SECONDS
    moment = queued[-1] + steady / 2 if queued else time.time()
    while moment < time.time():
        moment += steady
    return moment


def per_ten_minutes(queued: list[float], started: float, window: float) -> tuple[float, str]:
    """Queries in the first 10 minutes: counted, or (shorter window) the ones seen plus the
    steady-state polls that would still fall within 10 minutes."""
    offsets = [t - started for t in queued]
    if window >= TEN_MINUTES:
        return float(sum(1 for o in offsets if o <= TEN_MINUTES)), "measured"
    if len(offsets) < 2:
        raise RuntimeError(f"only {len(offsets)} scheduler queries in {window:.0f} s: too short a window")
    steady = offsets[-1] - offsets[-2]
    later = int((TEN_MINUTES - offsets[-1]) // steady)
    return float(len(offsets) + later), f"projected: {len(offsets)} in {window:.0f} s, then one per {steady:.0f} s"


def measure(bench: Any, figure: Figure, window: float) -> None:
    site = "tb-held"
    cli = bench.cli("queued", {site: bench.profile(poll_seconds=POLL_SECONDS, directives=["--hold"])})
    log = sshcalls.install(cli)
    job_id = submit(bench, cli, site)
    started = time.time()
    connect = bench.start_cli(cli, "connect", job_id, "--no-browser")
    try:
        time.sleep(window)
        queued = bench.scheduler_calls(SLURM_QUERIES, [job_id], started, started + window)
        time.sleep(max(0.0, release_moment(queued) - time.time()))
        released = time.time()
        bench.tb.exec("login", "/usr/bin/scontrol", "release", job_id, check=True)
        url, shown_at, _ = wait_line(connect, "http://127.0.0.1:", POLL_SECONDS * 2 + 60)
        ready = runtime_file_mtime(session_record(cli)["job_dir"])
        check_ok(cli.run("cancel", job_id), "cancel")
    finally:
        interrupt(connect)
        close_masters(cli.home)
    after = bench.scheduler_calls(SLURM_QUERIES, [job_id], released)
    per_ten, how = per_ten_minutes(queued, started, window)
    rate, by_kind = sshcalls.per_minute(sshcalls.read(log), started, started + window)
    figure.metrics["remote commands per minute, queued"] = {"value": rate, "by_kind": by_kind, "window_s": window}
    kinds = ", ".join(f"{kind} {n:.1f}" for kind, n in by_kind.items())
    figure.row("remote commands/min queued", f"{rate:.1f} ({kinds})", f"< {BEFORE_PER_MINUTE:g} (before)",
               rate < BEFORE_PER_MINUTE)
    figure.add("scheduler queries in the window", [len(queued)], "queries")
    figure.metrics["queries per 10 min"] = {"value": per_ten, "how": how, "window_s": window,
                                            "query_offsets_s": [round(t - started, 1) for t in queued]}
    noticed = figure.add("ready noticed (runtime file -> URL)", [shown_at - ready], "s")
    first_after = (after[0] - released) if after else float("nan")
    figure.metrics["release -> next scheduler query"] = {"value": first_after, "unit": "s"}
    figure.row("queries / 10 min queued", f"{per_ten:g} ({how})", f"<= {TARGET_QUERIES}", per_ten <= TARGET_QUERIES)
    figure.row("ready noticed after release", f"{noticed['median']:.1f} s (n=1)", f"<= {TARGET_NOTICED:g} s",
               noticed["median"] <= TARGET_NOTICED)
    offsets = ", +".join(f"{t - started:.0f}" for t in queued)
    figure.notes.append(f"poll_seconds = {POLL_SECONDS}; queries at +{offsets} s; "
                        f"released at +{released - started:.0f} s (mid-way between polls), the next scheduler query "
                        f"came {first_after:.1f} s later; one sample (the window is the cost)")
