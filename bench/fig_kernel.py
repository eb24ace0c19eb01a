"""Figure 8: kernel round trip, what a notebook user feels on every Shift-Enter.

JupyterLab runs on node1 in a real hpcjupyter session (``hpcjupyter submit`` with the test-bed
Slurm profile, ``bind = "all"`` so that one server answers both tunnel shapes: the node's address
for ``forward``, its loopback for ``jump``). One kernel is started through the REST API; then, per
method, a websocket client (its own process, so fabric's relay threads here have the interpreter
to themselves) times N ``execute_request`` → ``execute_reply`` round trips of the code ``1``.

Methods: hpcjupyter's tunnels (openssh and fabric, forward and jump, as `connect` opens them after
reading the job directory over the same login), a raw ``ssh -N -L`` on the same path (``-J`` for
jump), and the floor: the client inside node1's network namespace talking to Jupyter on the
node's loopback (no tunnel at all). The methods' order is shuffled in every repetition (seed
printed); ratios are raw / ours per repetition of the median round trip, then their median.
"""

from __future__ import annotations

import json
import random
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from bed import session_record, submit
from fig_tunnel import NODE, our_tunnel, p95, raw_tunnel
from jupyter_client import _api, execute_request  # tests/e2e (on the path by bed): the e2e tests' kernel client
from measure import Figure, spread

TARGETS = {"openssh": 0.95, "fabric": 0.8}
SHAPES = ("forward", "jump")
SITE = "tb-kernel"
CODE = "1"


# --- the client (run as its own process: python fig_kernel.py PORT KERNEL COUNT, token on stdin) ---


def round_trip(socket: Any, session: str) -> float:
    """Seconds from sending one request to its ``execute_reply`` (iopub messages skipped)."""
    msg_id, frame = execute_request(CODE, session, "bench")
    start = time.perf_counter()
    socket.send(frame)
    while True:
        message = json.loads(socket.recv())
        if message.get("msg_type") == "execute_reply" and message["parent_header"].get("msg_id") == msg_id:
            return time.perf_counter() - start


def client(port: int, kernel: str, count: int, token: str) -> list[float]:
    """COUNT timed round trips over one websocket to 127.0.0.1:PORT (one warm-up first)."""
    import websocket  # websocket-client (it sets TCP_NODELAY, as browsers do)

    socket = websocket.create_connection(f"ws://127.0.0.1:{port}/api/kernels/{kernel}/channels",
                                         header=[f"Authorization: token {token}"], timeout=60)
    try:
        session = uuid.uuid4().hex
        round_trip(socket, session)
        return [round_trip(socket, session) for _ in range(count)]
    finally:
        socket.close()


# --- the figure ------------------------------------------------------------------------------


def start_jupyter(bench: Any) -> dict[str, Any]:
    """A real session's JupyterLab on node1: connection.json (host, port, token) once it is up."""
    profile = bench.profile() + 'bind = "all"\n'  # [env] is the profile's last table
    cli = bench.cli("fig8", {SITE: profile})
    submit(bench, cli, SITE)
    path = Path(session_record(cli)["job_dir"], "connection.json")  # shared fs: same path here
    deadline = time.time() + 120
    while not path.exists():
        if time.time() > deadline:
            raise RuntimeError(f"JupyterLab did not start on {NODE} within 120 s")
        time.sleep(0.2)
    return dict(json.loads(path.read_text()))


def run_client(argv_prefix: list[str], port: int, kernel: str, count: int, token: str) -> list[float]:
    argv = [*argv_prefix, sys.executable, str(Path(__file__).resolve()), str(port), kernel, str(count)]
    out = subprocess.run(argv, input=token, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(f"kernel client failed: {out.stderr.strip()[-800:]}")
    return [float(x) for x in json.loads(out.stdout)]


def methods(bench: Any, port: int) -> dict[str, tuple[list[str], int]]:
    """Method → (argv prefix that places the client, the port it connects to on 127.0.0.1)."""
    # nsenter -n only: node1's network, this machine's files (the client script and its venv).
    floor = ["nsenter", "-t", bench.tb._holder(NODE), "-n", "--"]
    found: dict[str, tuple[list[str], int]] = {"direct": (floor, port)}
    for shape in SHAPES:
        found[f"raw-{shape}"] = ([], raw_tunnel(bench, port, shape))
        for transport in ("openssh", "fabric"):
            found[f"{transport}-{shape}"] = ([], our_tunnel(bench, transport, port, shape))
    return found


def measure(bench: Any, figure: Figure, reps: int, count: int) -> None:

    info = start_jupyter(bench)
    token, port = info["token"], int(info["port"])
    ways = methods(bench, port)
    kernel = _api(ways["raw-forward"][1], token, "POST", "/api/kernels", {"name": "python3"})["id"]
    bench.cleanups.append(lambda: _api(ways["raw-forward"][1], token, "DELETE", f"/api/kernels/{kernel}"))
    seed = random.randrange(2**32)
    print(f"figure 8: methods shuffled with random.Random({seed})", file=sys.stderr)
    figure.notes.append(f"order shuffled per repetition, seed {seed}; {count} round trips per method and repetition")
    shuffle = random.Random(seed).shuffle
    medians: dict[str, list[float]] = {m: [] for m in ways}
    every: dict[str, list[float]] = {m: [] for m in ways}
    for _ in range(reps):
        order = list(ways)
        shuffle(order)
        for method in order:
            prefix, local = ways[method]
            times = run_client(prefix, local, kernel, count, token)
            medians[method].append(statistics.median(times))
            every[method].extend(times)
    report(figure, medians, every)


def report(figure: Figure, medians: dict[str, list[float]], every: dict[str, list[float]]) -> None:
    for method in medians:
        figure.add(f"round trip {method}", medians[method], "s")
        figure.add(f"round trip p95 {method}", [p95(every[method])], "s")
    figure.row("direct on the node (floor)", latency(every["direct"]))
    for shape in SHAPES:
        figure.row(f"raw ssh -L {shape}", latency(every[f"raw-{shape}"]))
        for transport, target in TARGETS.items():
            method = f"{transport}-{shape}"
            ratio = figure.add(f"ratio {method}/raw",
                               [r / o for o, r in zip(medians[method], medians[f"raw-{shape}"], strict=True)], "x")
            figure.row(f"{method}/raw", f"{spread(ratio, lambda x: f'{x:.2f}x')}; {latency(every[method])}",
                       f">= {target}x", ratio["median"] >= target)
    figure.notes.append("floor: the client in node1's network namespace, straight to Jupyter on the node's "
                        "loopback; raw: ssh -tt -L through login (jump: ssh -J login to the node)")
    figure.notes.append("the job turns Nagle off on Jupyter's websockets (jupyter_server never calls set_nodelay; "
                        "without it every execute_reply waited ~40 ms for the reader's delayed ACK, floor included)")


def latency(times: list[float]) -> str:
    return f"median {statistics.median(times) * 1000:.2f} ms, p95 {p95(times) * 1000:.2f} ms"


if __name__ == "__main__":
    _port, _kernel, _count = sys.argv[1:4]
    print(json.dumps(client(int(_port), _kernel, int(_count), sys.stdin.read().strip())))
