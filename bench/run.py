"""hpcjupyter benchmarks on the mini-cluster test bed: the figures of issue 7, as a table and JSON.

    python bench/run.py [--quick] [--json PATH] [--only 1,4,...]

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
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fig_coldstart  # noqa: E402
import fig_e2e  # noqa: E402
import fig_ls  # noqa: E402
import fig_queued  # noqa: E402
import fig_sessions  # noqa: E402
import fig_tunnel  # noqa: E402
from bed import Bench, bring_up  # noqa: E402
from measure import Figure, machine, run_figure, table  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"


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
        self.ls_sessions = 50


def figures(plan: Plan) -> dict[str, tuple[str, Callable[[Any, Figure], None]]]:
    """Key → (title, body). Figure 3 is started first and runs in the background (it mostly waits)."""
    return {
        "1+2": ("ready→URL and logins per session", lambda b, f: fig_sessions.measure(b, f, plan.reps, plan.jump_reps)),
        "3": ("scheduler load while queued", lambda b, f: fig_queued.measure(b, f, plan.queued_window)),
        "4": ("CLI cold start", lambda b, f: fig_coldstart.measure(b, f, plan.coldstart_reps)),
        "5": ("tunnel throughput and latency",
              lambda b, f: fig_tunnel.measure(b, f, plan.reps, plan.download_mb, plan.small_requests)),
        "6": ("ls at scale", lambda b, f: fig_ls.measure(b, f, plan.reps, plan.ls_sessions)),
        "7": ("end to end", lambda b, f: fig_e2e.measure(b, f, plan.reps)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, smaller transfers, 130 s queue window")
    parser.add_argument("--json", type=Path, help="also write the JSON results here")
    parser.add_argument("--only", help="comma-separated figure keys to run (1+2,3,4,5,6,7); default all")
    args = parser.parse_args(argv)
    plan = Plan(args.quick)
    chosen = figures(plan)
    if args.only:
        keys = set(args.only.split(","))
        chosen = {k: v for k, v in chosen.items() if k in keys or set(k.split("+")) & keys}
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up (jobs, tunnels) on kill too
    started = time.monotonic()
    done: dict[str, Figure] = {}
    with Bench(bring_up()) as bench:
        background = None
        if "3" in chosen:
            title3, body3 = chosen.pop("3")

            def queued() -> None:
                done["3"] = run_figure("3", title3, functools.partial(body3, bench))

            background = threading.Thread(target=queued, daemon=True)  # Ctrl-C must not wait out the window
            background.start()
        for order in ("6", "4", "5", "1+2", "7"):
            if order in chosen:
                title, body = chosen[order]
                print(f"[{time.monotonic() - started:5.0f} s] figure {order}: {title}", file=sys.stderr)
                done[order] = run_figure(order, title, functools.partial(body, bench))
        if background is not None:
            print(f"[{time.monotonic() - started:5.0f} s] waiting for figure 3 (queued window)", file=sys.stderr)
            background.join()
    ordered = [done[k] for k in ("1+2", "3", "4", "5", "6", "7") if k in done]
    report = {"quick": plan.quick, "machine": machine(), "wall_seconds": round(time.monotonic() - started, 1),
              "noise": "2 cores shared with other engineers' test runs: figures are noisy",
              "figures": {f.key: f.as_json() for f in ordered}}
    print(table(ordered))
    for f in ordered:
        for note in f.notes:
            print(f"  [{f.key}] {note}")
        if f.error:
            print(f"  [{f.key}] NOT MEASURED: {f.error}")
    print(f"total {report['wall_seconds']} s; machine: {report['machine']['nproc']} cores, "
          f"kernel {report['machine']['kernel']}, {report['machine']['date']}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    for path in filter(None, (RESULTS, args.json)):
        path.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
