"""Figure 4: CLI cold start — wall time and peak memory of short commands, against the floor
(`python -c pass`) and against the peer (`jupyter-forward --help`), in the same run.

"Cold" is a new process each time (imports, start-up); the page cache is warm: one unmeasured
run of each command first, then the commands in turn, so background noise spreads evenly.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jforward
from measure import Figure, fmt, med, spread

TARGET_RATIO = 0.55
TIME = "/usr/bin/time"


def timed(argv: list[str], env: dict[str, str], scratch: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one run.

    Peak RSS comes from GNU time (``%M``): a child forked from this (large) Python process would
    carry our own high-water mark into its ru_maxrss; time is a small C program."""
    report = scratch / "time.out"
    start = time.perf_counter()
    result = subprocess.run([TIME, "-f", "%M", "-o", str(report), *argv], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {result.returncode}: {result.stderr[-300:]}")
    return wall, int(report.read_text().split()[-1]) / 1024


def measure(bench: Any, figure: Figure, reps: int) -> None:
    cli = bench.cli("coldstart", {})  # no profiles, no sessions
    hpcj = str(Path(sys.executable).parent / "hpcjupyter")
    commands: dict[str, tuple[list[str], dict[str, str]]] = {
        "python -c pass": ([sys.executable, "-c", "pass"], cli.env),
        "hpcjupyter --help": ([hpcj, "--help"], cli.env),
        "hpcjupyter ls": ([hpcj, "ls"], cli.env),
    }
    try:
        version = jforward.ensure_installed()
        commands["jupyter-forward --help"] = ([str(jforward.COMMAND), "--help"], jforward.env(bench.root))
        figure.notes.append(f"jupyter-forward {version} from PyPI in {jforward.VENV}")
    except (subprocess.CalledProcessError, OSError) as exc:
        figure.notes.append(f"jupyter-forward could not be installed ({exc}): no ratio")
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
    for argv, env in commands.values():
        timed(argv, env, bench.root)  # warm the page cache
    for _ in range(reps):
        for name, (argv, env) in commands.items():
            samples[name].append(timed(argv, env, bench.root))
    for name, values in samples.items():
        wall = figure.add(f"{name} wall", [v[0] for v in values], "s")
        rss = figure.add(f"{name} peak RSS", [v[1] for v in values], "MiB")
        figure.row(name, f"{spread(wall)}, {med(rss):.0f} MiB")
    peer = figure.metrics.get("jupyter-forward --help wall")
    if peer is None:
        figure.row("--help / jupyter-forward", "NOT MEASURED", f"<= {TARGET_RATIO}x", None)
        return
    for name in ("hpcjupyter --help", "hpcjupyter ls"):
        ratio = med(figure.metrics[f"{name} wall"]) / med(peer)
        figure.metrics[f"{name} / jupyter-forward --help"] = {"ratio": ratio}
        target = name.endswith("--help")
        figure.row(f"{name} / jf --help", f"{ratio:.2f}x",
                   f"<= {TARGET_RATIO}x" if target else "", (ratio <= TARGET_RATIO) if target else None)
    floor = med(figure.metrics["python -c pass wall"])
    figure.notes.append(f"python start-up alone is {fmt(floor)}: the part no CLI can avoid")
