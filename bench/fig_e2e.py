"""Figure 7: end to end on an idle bed — from the command to a working URL in the user's hands.

Three ways, taking turns within each repetition, each from a cold start (a fresh login):

* hpcjupyter: ``submit --connect --no-browser`` until it prints the URL (it has checked
  ``/api/status`` first); test-bed profile, poll_seconds = 2;
* the manual way (`manual.sh`): sbatch, poll squeue every 2 s, read the URL from the job's
  output, ``ssh -L``, check ``/api/status``;
* jupyter-forward with ``--launch-command "srun ..."`` (see `jforward` for how it runs on the
  bed) until it prints its URL.

Every URL is checked to answer /api/status 200 with its token. Ratios are hpcjupyter / other per
repetition (below 1: hpcjupyter is faster), then the median.

hpcjupyter's overhead: (submit → URL) − Jupyter's own start, where Jupyter's own start is its
process's creation (/proc/PID/stat on the node, the pid in the runtime file's name: `jupyter lab`
execs in place) → its runtime file written. The overhead is split on one clock: submit → the
``sbatch`` call (the bed's call log), → the job script's process created (Jupyter's parent),
→ Jupyter's process created (the script's set-up), and runtime file → URL.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jforward
import procs
from bed import answers, check_ok, close_masters, interrupt, runtime_file, session_record, wait_line
from measure import Figure, fmt, med, spread

MANUAL = Path(__file__).resolve().parent / "manual.sh"
URL_TIMEOUT = 180
TARGET_OVERHEAD = 0.5
STAGES = ("submit -> sbatch", "sbatch -> job script", "job script -> jupyter process", "jupyter's own start",
          "runtime file -> URL")
"""The parts of submit → URL, in order; all but Jupyter's own start are the overhead."""
LOGIN = "plain ssh login"
"""A login of its own just before each repetition: the part of the overhead no launcher avoids."""


def stages(bench: Any, start: float, shown_at: float, job_dir: str) -> dict[str, float]:
    """submit → URL cut at the moments above (read while the job runs: its processes must exist)."""
    runtime = runtime_file(job_dir)
    jupyter = procs.stat(int(runtime.stem.split("-")[-1]))
    script = procs.stat(jupyter.ppid)
    sbatch = bench.scheduler_calls(("sbatch",), [job_dir], start)
    if not sbatch:
        raise RuntimeError(f"no sbatch call naming {job_dir} in the bed's call log")
    moments = (start, sbatch[0], script.started, jupyter.started, runtime.stat().st_mtime, shown_at)
    return {name: b - a for name, a, b in zip(STAGES, moments, moments[1:], strict=False)}


def plain_login(bench: Any) -> float:
    """Seconds of one ssh key login running `true` on the login node, no master: what every way
    of starting a job remotely pays once."""
    start = time.time()
    check = subprocess.run(["ssh", "-F", str(bench.ssh_config), "-o", "ControlMaster=no", "-o", "ControlPath=none",
                            bench.tb.login_alias, "true"], capture_output=True, text=True, timeout=60)
    if check.returncode != 0:
        raise RuntimeError(f"plain ssh login failed: {check.stderr.strip()}")
    return time.time() - start


def ours(bench: Any, cli: Any, rep: int, parts: list[dict[str, float]]) -> float:
    """One cold submit --connect; its stages, and a plain login's time just before, are appended to PARTS."""
    close_masters(cli.home)
    login = plain_login(bench)
    start = time.time()
    process = bench.start_cli(cli, "submit", "--site", "tb-slurm", "--connect", "--no-browser")
    try:
        url, shown_at, _ = wait_line(process, "http://127.0.0.1:", URL_TIMEOUT)
        record = session_record(cli)
        bench.jobs["slurm"].add(record["job_id"])
        parts.append({**stages(bench, start, shown_at, record["job_dir"]), LOGIN: login})
        answers(url)
        check_ok(cli.run("cancel", record["job_id"]), "cancel")
    finally:
        interrupt(process)
        close_masters(cli.home)
    return shown_at - start


def manual(bench: Any, rep: int) -> float:
    from hpcjupyter.tunnel import free_local_port

    name = f"{bench.tag}-manual"
    bench.job_names.add(name)
    env = {"SSH_CONFIG": str(bench.ssh_config), "HOST": bench.tb.login_alias, "VENV": str(bench.tb.jupyter_venv),
           "JOB_DIR": f"{bench.remote_scratch}/manual-{rep}", "JOB_NAME": name, "LPORT": str(free_local_port()),
           "PATH": "/usr/local/bin:/usr/bin:/bin"}
    start = time.time()
    process = bench.start(["bash", str(MANUAL)], env=env)
    try:
        url, shown_at, _ = wait_line(process, "http://127.0.0.1:", URL_TIMEOUT)
        answers(url)
    finally:
        interrupt(process)  # its trap cancels the job and closes the tunnel
    return shown_at - start


def peer(bench: Any, rep: int) -> float:
    from hpcjupyter.tunnel import free_local_port

    env, shell = jforward.prepare(bench)
    name = f"{bench.tag}-jf"
    bench.job_names.add(name)
    port = free_local_port()
    start = time.time()
    process = bench.start(jforward.argv(shell, port, name, bench.tb.login_alias), env=env, cwd=bench.root)
    output = ""
    try:
        line, shown_at, output = wait_line(process, "Jupyter Lab URL:", URL_TIMEOUT)
        answers(f"http://127.0.0.1:{port}/?token={jforward.token_of(line)}")
    finally:
        interrupt(process)  # the ssh session ends, so srun and its job end
        bench.tb.ssh(bench.tb.login_alias, f"scancel --name={name}")
        jf_dir = bench.tb.home / ".jupyter_forward"
        for leftover in jforward.files_of(output):
            (jf_dir / leftover).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            jf_dir.rmdir()  # only if empty
    return shown_at - start


def measure(bench: Any, figure: Figure, reps: int) -> None:
    cli = bench.cli("e2e", {"tb-slurm": bench.profile()})
    parts: list[dict[str, float]] = []
    ways: dict[str, Callable[[int], float]] = {
        "hpcjupyter": lambda rep: ours(bench, cli, rep, parts),
        "manual script": lambda rep: manual(bench, rep),
    }
    failed: dict[str, str] = {}
    try:
        figure.notes.append(f"jupyter-forward {jforward.ensure_installed()}, --launch-command 'srun ...'")
        ways["jupyter-forward"] = lambda rep: peer(bench, rep)
    except Exception as exc:
        failed["jupyter-forward"] = f"it could not be installed ({exc})"
    times: dict[str, list[float]] = {way: [] for way in ways}
    for rep in range(reps):
        for way, run in list(ways.items()):
            try:
                times[way].append(run(rep))
            except Exception as exc:
                if way == "hpcjupyter":
                    raise
                failed[way] = str(exc)  # reported as not measured, never faked
                del ways[way], times[way]
    for way, values in times.items():
        figure.row(f"{way} to URL", spread(figure.add(f"{way} to URL", values, "s")))
    overhead(figure, parts)
    for way, why in failed.items():
        figure.row(f"{way} to URL", "NOT MEASURED")
        figure.notes.append(f"{way} not measured: {why}")
    for other in [w for w in times if w != "hpcjupyter"]:
        pairs = zip(times["hpcjupyter"], times[other], strict=True)
        ratio = figure.add(f"hpcjupyter / {other}", [o / t for o, t in pairs], "x")
        figure.row(f"hpcjupyter / {other}", spread(ratio, lambda x: f"{x:.2f}x"), "")


def overhead(figure: Figure, parts: list[dict[str, float]]) -> None:
    """Jupyter's own start beside submit → URL, the overhead per repetition, and where it went."""
    own = figure.add("jupyter's own start (process -> runtime file)", [p["jupyter's own start"] for p in parts], "s")
    costs = [sum(p[name] for name in STAGES) - p["jupyter's own start"] for p in parts]
    cost = figure.add("overhead (submit->URL minus jupyter's own start)", costs, "s")
    figure.row("Jupyter's own start on the node", spread(own))
    figure.row("hpcjupyter overhead (to URL - own start)", spread(cost), f"<= {fmt(TARGET_OVERHEAD)}",
               med(cost) <= TARGET_OVERHEAD)
    scheduler = figure.add("of which Slurm starting the job", [p["sbatch -> job script"] for p in parts], "s")
    login = figure.add("of which a plain ssh login", [p[LOGIN] for p in parts], "s")
    figure.row("  of which Slurm starting the job", spread(scheduler))
    figure.row("  of which a plain ssh login (ssh true)", spread(login))
    rest = [c - p["sbatch -> job script"] - p[LOGIN] for c, p in zip(costs, parts, strict=True)]
    figure.row("  the rest: hpcjupyter's own", spread(figure.add("hpcjupyter's own share", rest, "s")))
    medians = {name: med(figure.add(f"stage {name}", [p[name] for p in parts], "s")) for name in STAGES}
    figure.notes.append("submit --connect, medians: " + ", ".join(f"{n} {fmt(v)}" for n, v in medians.items())
                        + " (overhead = all but jupyter's own start)")
