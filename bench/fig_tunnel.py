"""Figure 5: tunnel throughput and latency, ours against a raw ``ssh -L`` over the same path.

An HTTP/1.1 server (Python's http.server, with TCP_NODELAY as Jupyter's server sets it) runs on
node1, bound to the node's address, serving a random file and a 1 KiB file from the node's /tmp.
Three tunnels reach it, all laptop → login → node1 (the forward shape):

* raw: ``ssh -N -L 127.0.0.1:P:node1:PORT login`` (its own login);
* openssh: hpcjupyter's tunnel (`OpensshRemote.open_tunnel`): a forward added to the site's
  ControlMaster;
* fabric: hpcjupyter's tunnel over paramiko: a relay thread in this process, as in `connect`.

Our tunnels are opened as `connect` opens them: after a command over the same login (connect
reads the job directory first). That matters: sshd turns TCP_NODELAY on for its end of a
connection only when a session starts there, so a login that carried no command yet sends
responses split in two with Nagle's algorithm (the second part waits ~40 ms for the laptop's
delayed ACK).

curl (a separate process, so the relay threads here have the interpreter to themselves) fetches
the big file (MB/s), then the small one N times in one curl run, twice: with a new connection
per request (``--http1.0``: a new channel through the tunnel each time) and with keep-alive
(HTTP/1.1: one connection for all, as a browser does). The order of (method, test) pairs is
shuffled in every repetition (seed printed); ratios are raw / ours per repetition (speed,
higher is better) of the median request (download: of MB/s), then the median.
"""

from __future__ import annotations

import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from measure import Figure, spread

TARGETS = {"openssh": {"download": 0.95, "new connection": 0.95, "keep-alive": 0.95},
           "fabric": {"keep-alive": 0.8}}
NODE = "node1"
REQUESTS = {"new connection": ["--http1.0"], "keep-alive": []}
"""curl options per request test: HTTP/1.0 closes the connection after each response."""


class NoPrompts:
    """The bench key needs no answers; a question means something is wrong, so fail."""

    def ask(self, prompt_text: str, secret: bool) -> str:
        raise RuntimeError(f"unexpected ssh prompt: {prompt_text!r}")

    def info(self, text: str) -> None:
        pass


SERVER = """
import functools, http.server, socket, sys

class Handler(http.server.SimpleHTTPRequestHandler):
    def setup(self):
        super().setup()
        # As Jupyter's server does: else Nagle holds the body behind the headers for the
        # client's delayed ACK (40 ms), and that, not the tunnel, dominates small requests.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    protocol_version = "HTTP/1.1"  # keep-alive, as Jupyter's server (the client may ask for 1.0)

    def log_message(self, *args):
        pass

address, directory = sys.argv[1:3]
server = http.server.ThreadingHTTPServer((address, 0), functools.partial(Handler, directory=directory))
print("port", server.server_address[1], flush=True)
server.serve_forever()
"""


class NodeServer:
    """A static HTTP server (Python's http.server) on the node, run as root in its namespaces,
    bound to the node's address, serving files from the node's /tmp."""

    def __init__(self, bench: Any, megabytes: int) -> None:
        self.tb = bench.tb
        self.dir = f"/tmp/{bench.tag}"
        address = self.tb.addresses[NODE]
        self.tb.exec(NODE, "sh", "-c", f"mkdir -p {self.dir} && cat > {self.dir}/server.py", input=SERVER, check=True)
        script = (f"head -c {megabytes}M /dev/urandom > {self.dir}/big && "
                  f"head -c 1024 /dev/urandom > {self.dir}/small && "
                  f"(setsid python3 -u {self.dir}/server.py {address} {self.dir} "
                  f"> {self.dir}/server.log 2>&1 < /dev/null & echo $!)")
        self.pid = self.tb.exec(NODE, "sh", "-c", script, check=True).stdout.strip()
        self.port = self._port()

    def _port(self) -> int:
        deadline = time.time() + 15
        while time.time() < deadline:
            log = self.tb.exec(NODE, "cat", f"{self.dir}/server.log").stdout
            if log.startswith("port "):
                return int(log.split()[1])
            time.sleep(0.2)
        raise RuntimeError(f"http.server on {NODE} did not start")

    def stop(self) -> None:
        self.tb.exec(NODE, "kill", self.pid)
        self.tb.exec(NODE, "rm", "-rf", self.dir)


def p95(values: list[float]) -> float:
    """The 95th percentile (nearest rank)."""
    ordered = sorted(values)
    return ordered[max(0, round(0.95 * len(ordered)) - 1)]


def raw_tunnel(bench: Any, port: int, shape: str = "forward") -> int:
    """A raw ``ssh -L`` to NODE:PORT (jump: ``-J login`` to the node, on to its loopback), its own
    login, as a user types it: with a terminal session open (``-tt``, a remote ``sleep``). Not
    ``-N``: sshd turns TCP_NODELAY on only for a connection that carries a session, and without
    it most small responses wait ~40 ms for a delayed ACK (see bench/README.md)."""
    from hpcjupyter.tunnel import free_local_port, port_open

    local = free_local_port()
    if shape == "forward":
        path = ["-L", f"127.0.0.1:{local}:{NODE}:{port}", bench.tb.login_alias]
    else:
        path = ["-J", bench.tb.login_alias, "-L", f"127.0.0.1:{local}:127.0.0.1:{port}", NODE]
    # The pty's hang-up ends the sleep when the benchmark stops this ssh.
    bench.start(["ssh", "-F", str(bench.ssh_config), "-o", "BatchMode=yes", "-o", "ExitOnForwardFailure=yes",
                 "-tt", *path, "sleep", "86400"])
    deadline = time.time() + 15
    while not port_open(local):
        if time.time() > deadline:
            raise RuntimeError(f"raw ssh -L ({shape}) did not listen")
        time.sleep(0.05)
    return local


def our_tunnel(bench: Any, transport: str, port: int, shape: str = "forward") -> int:
    """hpcjupyter's own tunnel to NODE:PORT, as `connect` opens it for Jupyter: after a command
    over the same login (connect reads the job directory first)."""
    from hpcjupyter.transports.base import SshTarget
    from hpcjupyter.transports.fabric_remote import FabricRemote
    from hpcjupyter.transports.openssh import OpensshRemote
    from hpcjupyter.tunnel import free_local_port

    target = SshTarget(site=f"bench-{transport}", host=bench.tb.login_alias, config=str(bench.ssh_config),
                       transport=transport)
    remote: OpensshRemote | FabricRemote
    if transport == "openssh":
        remote = OpensshRemote(target, NoPrompts(), control_dir=bench.root / "tunnels")
        bench.cleanups.append(remote.disconnect)
    else:
        remote = FabricRemote(target, NoPrompts())
        bench.cleanups.append(remote.close)
    if not remote.run(["true"]).ok:
        raise RuntimeError(f"{transport}: a command over the login failed")
    tunnel = remote.open_tunnel(shape, NODE, port, free_local_port())
    bench.cleanups.append(tunnel.close)
    return tunnel.local_port


def download(port: int) -> float:
    """MB/s of one download of the big file."""
    out = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{speed_download}",
                          f"http://127.0.0.1:{port}/big"], capture_output=True, text=True, check=True, timeout=300)
    return float(out.stdout) / 1e6


def requests(port: int, count: int, config: Path, options: list[str]) -> tuple[float, list[float], int]:
    """COUNT small requests in one curl run: wall seconds, each one's time, connections opened."""
    config.write_text("".join(f'url = "http://127.0.0.1:{port}/small"\noutput = "/dev/null"\n' for _ in range(count)))
    start = time.perf_counter()
    out = subprocess.run(["curl", "-sS", *options, "-K", str(config), "-w", "%{time_total} %{num_connects}\\n"],
                         capture_output=True, text=True, check=True, timeout=600)
    wall = time.perf_counter() - start
    fields = out.stdout.split()
    return wall, [float(x) for x in fields[0::2]], sum(int(x) for x in fields[1::2])


class Samples:
    """Per method and test: the per-repetition medians (ratios use them), every value, walls."""

    def __init__(self) -> None:
        self.medians: dict[tuple[str, str], list[float]] = {}
        self.values: dict[tuple[str, str], list[float]] = {}
        self.walls: dict[tuple[str, str], list[float]] = {}
        self.connections: dict[tuple[str, str], list[int]] = {}

    def add(self, key: tuple[str, str], values: list[float], wall: float = 0.0, connections: int = 0) -> None:
        self.medians.setdefault(key, []).append(statistics.median(values))
        self.values.setdefault(key, []).extend(values)
        self.walls.setdefault(key, []).append(wall)
        self.connections.setdefault(key, []).append(connections)


def measure(bench: Any, figure: Figure, reps: int, megabytes: int, count: int) -> None:
    server = NodeServer(bench, megabytes)
    bench.cleanups.append(server.stop)
    ports = {"raw": raw_tunnel(bench, server.port)}
    for transport in ("openssh", "fabric"):
        ports[transport] = our_tunnel(bench, transport, server.port)
    seed = random.randrange(2**32)
    print(f"figure 5: (method, test) pairs shuffled with random.Random({seed})", file=sys.stderr)
    shuffle = random.Random(seed).shuffle
    samples = Samples()
    config = bench.root / "curl-requests.cfg"
    for _ in range(reps):
        order = [(method, test) for method in ports for test in ("download", *REQUESTS)]
        shuffle(order)
        for method, test in order:
            if test == "download":
                samples.add((method, test), [download(ports[method])])
            else:
                wall, each, connections = requests(ports[method], count, config, REQUESTS[test])
                samples.add((method, test), each, wall, connections)
    figure.notes.append(f"order shuffled per repetition, seed {seed}; {count} requests per test, "
                        f"keep-alive opened {max(samples.connections[('raw', 'keep-alive')])} connection(s) per run")
    report(figure, samples, megabytes, count)


def report(figure: Figure, samples: Samples, megabytes: int, count: int) -> None:
    for (method, test), medians in samples.medians.items():
        unit = "MB/s" if test == "download" else "s"
        figure.add(f"{test} {method}", medians, unit)
        if test != "download":
            figure.add(f"{test} p95 {method}", [p95(samples.values[(method, test)])], "s")
            figure.add(f"{count} requests {test} {method}", samples.walls[(method, test)], "s")
    raw = {test: samples.values[("raw", test)] for test in REQUESTS}
    figure.row("raw ssh -L", f"{figure.metrics['download raw']['median']:.0f} MB/s ({megabytes} MB); "
               + "; ".join(f"{test} {latency(values)}" for test, values in raw.items()))
    for method in ("openssh", "fabric"):
        for test in ("download", *REQUESTS):
            mine, theirs = samples.medians[(method, test)], samples.medians[("raw", test)]
            pairs = zip(mine, theirs, strict=True)
            ratio = figure.add(f"{test} ratio {method}/raw",
                               [o / r if test == "download" else r / o for o, r in pairs], "x")
            value = spread(ratio, lambda x: f"{x:.2f}x")
            if test != "download":
                walls = [r / o for o, r in zip(samples.walls[(method, test)], samples.walls[("raw", test)],
                                               strict=True)]
                value += f"; {latency(samples.values[(method, test)])}; wall {statistics.median(walls):.2f}x"
            target = TARGETS[method].get(test)
            figure.row(f"{test} {method}/raw", value, f">= {target}x" if target else "",
                       ratio["median"] >= target if target else None)
        figure.notes.append(f"{method}: download {figure.metrics[f'download {method}']['median']:.0f} MB/s")
    figure.notes.append("requests: ratio of median request times raw/ours; 'wall' is the same for the whole "
                        f"run of {count} (it counts the ~40 ms stalls that medians hide)")


def latency(values: list[float]) -> str:
    return f"median {statistics.median(values) * 1000:.2f} ms, p95 {p95(values) * 1000:.2f} ms"
