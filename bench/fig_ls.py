"""Figure 6: `ls` at scale — 1000 session records over three test-bed sites (Slurm, PBS, and a
second Slurm profile: its own site, its own login).

What a long-lived laptop holds: a few live sessions and many finished ones. Per site, LIVE
records are of real held jobs (``sbatch --hold``, ``qsub -h``, submitted in one ssh command per
scheduler); the rest are records of ended sessions (state ENDED, ended within the day, so `ls`
lists them), whose job ids the scheduler no longer knows. All are written with
`hpcjupyter.sessions.save`, as submit and an earlier `ls` would have left them. `ls` asks each
site about its live jobs in one query and never about ended ones; we count the scheduler
commands naming any of a site's ids (live or ended) per `ls`. The first `ls` logs in to the
three sites (timed on its own); then each `ls` is timed. Target: ≤ 1 s, one query per site.
"""

from __future__ import annotations

import time
from typing import Any

from bed import PBS_QUERIES, SLURM_QUERIES, check_ok
from measure import Figure, fmt, spread

SITES = {"tb-slurm": ("slurm", SLURM_QUERIES), "tb-pbs": ("pbs", PBS_QUERIES), "tb-slurm-b": ("slurm", SLURM_QUERIES)}
TARGET_SECONDS = 1.0
TARGET_QUERIES = 1
ENDED_IDS = 900000  # ended records' ids: far above what the bed's schedulers hand out in a run


def submit_held(bench: Any, scheduler: str, count: int, name: str) -> list[str]:
    """COUNT held do-nothing jobs in one ssh command; their ids."""
    one = (f"sbatch --parsable --hold -J {name} -p serial -t 10 --wrap true" if scheduler == "slurm"
           else f"qsub -h -N {name} -- /bin/true")
    result = bench.tb.ssh(bench.tb.login_alias, f"for i in $(seq {count}); do {one}; done", check=True, timeout=120)
    ids = result.stdout.split()
    bench.jobs[scheduler].update(ids)
    if len(ids) != count:
        raise RuntimeError(f"asked for {count} held {scheduler} jobs, got {ids}: {result.stderr[-500:]}")
    return ids


def ended_ids(bench: Any, site: str, count: int, offset: int) -> list[str]:
    """Ids of jobs long gone, in the scheduler's own format (PBS: NUMBER.SERVER)."""
    suffix = f".{bench.tb.pbs_server}" if SITES[site][0] == "pbs" else ""
    return [f"{ENDED_IDS + offset + n}{suffix}" for n in range(count)]


def write_records(bench: Any, cli: Any, live: dict[str, list[str]], ended: dict[str, list[str]]) -> None:
    from hpcjupyter import sessions

    now = sessions.stamp()
    with bench.state_dir(cli):
        for site in SITES:
            tag = site[3:].replace("-", "")
            records = [(job_id, sessions.SessionState.PENDING) for job_id in live[site]]
            records += [(job_id, sessions.SessionState.ENDED) for job_id in ended[site]]
            for n, (job_id, state) in enumerate(records):
                session_id = f"20260101-000000-{tag}{n:04d}"
                sessions.save(sessions.Session(
                    site=site, session_id=session_id, job_dir=f"{bench.tb.remote_dir}/{session_id}",
                    job_name=f"hpcj-{session_id}", submitted_at=now, job_id=job_id, state=state,
                    ended_at=now if state is sessions.SessionState.ENDED else ""))


def timed_ls(bench: Any, cli: Any, ids: dict[str, list[str]]) -> tuple[float, dict[str, int]]:
    """Wall seconds of one `ls` and the scheduler queries it ran per site (naming any of its ids)."""
    since = time.time()
    start = time.perf_counter()
    check_ok(cli.run("ls"), "ls")
    wall = time.perf_counter() - start
    until = time.time()
    return wall, {site: len(bench.scheduler_calls(SITES[site][1], site_ids, since, until))
                  for site, site_ids in ids.items()}


def measure(bench: Any, figure: Figure, reps: int, count: int, live_per_site: int) -> None:
    cli = bench.cli("ls", {site: bench.profile(scheduler=scheduler) for site, (scheduler, _) in SITES.items()})
    setup = time.perf_counter()
    live = {site: submit_held(bench, scheduler, live_per_site, "hpcjbenchls")
            for site, (scheduler, _) in SITES.items()}
    per_site = [count // len(SITES) + (n < count % len(SITES)) for n in range(len(SITES))]
    ended = {site: ended_ids(bench, site, total - live_per_site, n * count)
             for n, (site, total) in enumerate(zip(SITES, per_site, strict=True))}
    write_records(bench, cli, live, ended)
    setup = time.perf_counter() - setup
    ids = {site: live[site] + ended[site] for site in SITES}
    first, first_queries = timed_ls(bench, cli, ids)
    runs = [timed_ls(bench, cli, ids) for _ in range(reps)]
    listed = [line for line in cli.run("ls").stdout.splitlines()[1:] if line.strip()]
    if len(listed) != count:
        raise RuntimeError(f"ls listed {len(listed)} sessions, expected {count}")
    wall = figure.add(f"ls {count} sessions (logged in)", [r[0] for r in runs], "s")
    figure.add(f"ls first (logs in to the {len(SITES)} sites)", [first], "s")
    for site in SITES:
        queries = figure.add(f"queries {site}", [r[1][site] for r in runs] + [first_queries[site]], "queries")
        figure.row(f"ls queries {site}", f"{queries['max']:g} per ls", f"{TARGET_QUERIES} per site",
                   queries["max"] <= TARGET_QUERIES)
    figure.row(f"ls time, {count} sessions / {len(SITES)} sites", spread(wall), f"<= {fmt(TARGET_SECONDS)}",
               wall["median"] <= TARGET_SECONDS)
    figure.notes.append(f"{count} records, {live_per_site} per site of real held jobs (queried), the rest ended "
                        f"(listed, not queried: their ids are gone from the scheduler); setup {setup:.1f} s; "
                        f"first ls (including the {len(SITES)} logins): {first:.2f} s")
