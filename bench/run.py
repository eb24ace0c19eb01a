"""hpcjupyter benchmarks on the mini-cluster test bed: the figures of issues 7 and 15, as a table and JSON.

    python bench/run.py [--quick] [--json PATH] [--only 1,4,...] [--save]

Needs root and the test bed (brought up if it is down, never taken down). See bench/README.md.
"""

from __future__ import annotations

import argparse
import functools
import json
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fig_coldstart
import fig_e2e
import fig_idle
import fig_kernel
import fig_ls
import fig_queued
import fig_sessions
import fig_tunnel
import report
from bed import REPO, Bench, bring_up
from measure import Figure, commit, machine, run_figure

FOREGROUND = ("6", "4", "5", "8", "1+2", "7")
"""Run in turn, in this order."""
BACKGROUND = ("3", "9")
"""Mostly waiting (a held job, an idle connect): started first, in threads, while the others run."""


class Plan:
    """How much to measure: --quick finishes in under 5 minutes on 2 cores; full takes the
    10-minute queued window of figure 3 (the other figures run meanwhile)."""

    def __init__(self, quick: bool) -> None:
        self.quick = quick
        self.reps = 3 if quick else 5
        self.coldstart_reps = 3 if quick else 10
        self.jump_reps = 1 if quick else 3
        self.queued_window = 130.0 if quick else 600.0
        self.download_mb = 50 if quick else 200
        self.small_requests = 200 if quick else 1000
        self.ls_sessions = 1000
        self.ls_live_per_site = 20
        self.idle_window = 120.0 if quick else 600.0  # two polls at least (poll_seconds = 60)
        self.kernel_round_trips = 50 if quick else 200


def figures(plan: Plan) -> dict[str, tuple[str, Callable[[Any, Figure], None]]]:
    """Key → (title, body). The BACKGROUND ones are started first, in threads (they mostly wait)."""
    return {
        "1+2": ("ready→URL and logins per session", lambda b, f: fig_sessions.measure(b, f, plan.reps, plan.jump_reps)),
        "3": ("scheduler load while queued", lambda b, f: fig_queued.measure(b, f, plan.queued_window)),
        "4": ("CLI cold start", lambda b, f: fig_coldstart.measure(b, f, plan.coldstart_reps)),
        "5": ("tunnel throughput and latency",
              lambda b, f: fig_tunnel.measure(b, f, plan.reps, plan.download_mb, plan.small_requests)),
        "6": ("ls at scale", lambda b, f: fig_ls.measure(b, f, plan.reps, plan.ls_sessions, plan.ls_live_per_site)),
        "7": ("end to end", lambda b, f: fig_e2e.measure(b, f, plan.reps)),
        "8": ("kernel round trip", lambda b, f: fig_kernel.measure(b, f, plan.reps, plan.kernel_round_trips)),
        "9": ("idle connect", lambda b, f: fig_idle.measure(b, f, plan.idle_window)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, smaller transfers, 130 s queue window")
    parser.add_argument("--json", type=Path, help="also write the JSON results here")
    parser.add_argument("--only", help="comma-separated figure keys to run (1+2,3,4,5,6,7,8,9); default all")
    parser.add_argument("--save", action="store_true",
                        help="commit-ready: copy the results to bench/results/<date>-<commit>.json and regenerate "
                             "README.md's Performance table from them (bench/report.py save)")
    args = parser.parse_args(argv)
    plan = Plan(args.quick)
    chosen = figures(plan)
    if args.only:
        keys = set(args.only.split(","))
        chosen = {k: v for k, v in chosen.items() if k in keys or set(k.split("+")) & keys}
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up (jobs, tunnels) on kill too
    measured = commit(REPO)  # before the run: --save changes the tree
    started = time.monotonic()
    done = run_all(chosen, started)
    result = {"quick": plan.quick, "commit": measured, "machine": machine(),
              "wall_seconds": round(time.monotonic() - started, 1),
              "noise": "2 cores shared with other engineers' test runs: figures are noisy",
              "figures": {key: done[key].as_json() for key in sorted(done, key=report.figure_order)}}
    print(report.report_text(result))
    print(f"total {result['wall_seconds']} s; {report.provenance(result)[:-1]}")
    report.LATEST.parent.mkdir(parents=True, exist_ok=True)
    for path in filter(None, (report.LATEST, args.json)):
        path.write_text(json.dumps(result, indent=2) + "\n")
    if args.save:
        print(f"saved {report.save(report.LATEST).relative_to(REPO)}; README.md regenerated from it")
    return 0


def run_all(chosen: dict[str, tuple[str, Callable[[Any, Figure], None]]], started: float) -> dict[str, Figure]:
    """The background figures in threads from the start, the others in turn meanwhile."""
    done: dict[str, Figure] = {}
    with Bench(bring_up()) as bench:
        threads = []
        for key in (k for k in BACKGROUND if k in chosen):
            title, body = chosen[key]

            def background(key: str = key, title: str = title, body: Any = body) -> None:
                done[key] = run_figure(key, title, functools.partial(body, bench))

            threads.append(threading.Thread(target=background, daemon=True))  # Ctrl-C must not wait them out
            threads[-1].start()
        for key in (k for k in FOREGROUND if k in chosen):
            title, body = chosen[key]
            print(f"[{time.monotonic() - started:5.0f} s] figure {key}: {title}", file=sys.stderr)
            done[key] = run_figure(key, title, functools.partial(body, bench))
        if threads:
            waiting = ", ".join(k for k in BACKGROUND if k in chosen)
            print(f"[{time.monotonic() - started:5.0f} s] waiting for figures {waiting}", file=sys.stderr)
        for thread in threads:
            thread.join()
    return done


if __name__ == "__main__":
    sys.exit(main())
