"""Figure 6: `ls` at scale — 50 session records over two test-bed sites (Slurm and PBS).

The jobs are real and held (``sbatch --hold``, ``qsub -h``), submitted directly in one ssh
command per scheduler; their records are written with `hpcjupyter.sessions.save`, as submit
would have left them. The first `ls` logs in to both sites (timed on its own); then each `ls`
is timed and the scheduler commands naming our ids are counted per site. Target: one query per
site per `ls`.
"""

from __future__ import annotations

import time
from typing import Any

from bed import PBS_QUERIES, SLURM_QUERIES, check_ok
from measure import Figure, spread

SITES = {"tb-slurm": ("slurm", SLURM_QUERIES), "tb-pbs": ("pbs", PBS_QUERIES)}


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


def write_records(bench: Any, cli: Any, ids_by_site: dict[str, list[str]]) -> None:
    from hpcjupyter import sessions

    with bench.state_dir(cli):
        for site, ids in ids_by_site.items():
            for n, job_id in enumerate(ids):
                session_id = f"20260101-000000-{site[3:]}{n:03d}"
                sessions.save(sessions.Session(
                    site=site, session_id=session_id, job_dir=f"{bench.tb.remote_dir}/{session_id}",
                    job_name=f"hpcj-{session_id}", submitted_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    job_id=job_id, state="PENDING"))


def timed_ls(bench: Any, cli: Any, ids_by_site: dict[str, list[str]]) -> tuple[float, dict[str, int]]:
    """Wall seconds of one `ls` and the scheduler queries it ran per site."""
    since = time.time()
    start = time.perf_counter()
    check_ok(cli.run("ls"), "ls")
    wall = time.perf_counter() - start
    until = time.time()
    return wall, {site: len(bench.scheduler_calls(SITES[site][1], ids, since, until))
                  for site, ids in ids_by_site.items()}


def measure(bench: Any, figure: Figure, reps: int, count: int) -> None:
    profiles = {site: bench.profile(scheduler=scheduler) for site, (scheduler, _) in SITES.items()}
    cli = bench.cli("ls", profiles)
    half = count // len(SITES)
    ids_by_site = {site: submit_held(bench, scheduler, half, "hpcjbenchls")
                   for site, (scheduler, _) in SITES.items()}
    write_records(bench, cli, ids_by_site)
    first, first_queries = timed_ls(bench, cli, ids_by_site)
    runs = [timed_ls(bench, cli, ids_by_site) for _ in range(reps)]
    listed = [line for line in cli.run("ls").stdout.splitlines()[1:] if line.strip()]
    if len(listed) != half * len(SITES):
        raise RuntimeError(f"ls listed {len(listed)} sessions, expected {half * len(SITES)}")
    wall = figure.add(f"ls {half * len(SITES)} sessions (logged in)", [r[0] for r in runs], "s")
    figure.add("ls first (logs in to both sites)", [first], "s")
    for site in SITES:
        queries = figure.add(f"queries {site}", [r[1][site] for r in runs] + [first_queries[site]], "queries")
        figure.row(f"ls queries {site}", f"{queries['max']:g} per ls", "1 per site", queries["max"] <= 1)
    figure.row(f"ls time, {half * len(SITES)} sessions", spread(wall), "")
    figure.notes.append(f"first ls (including the two logins): {first:.2f} s")
