"""Figure 5: tunnel throughput and latency, ours against a raw ``ssh -L`` over the same path.

An HTTP server (Python's http.server, with TCP_NODELAY as Jupyter's server sets it) runs on
node1, bound to the node's address, serving a random file and a 1 KiB file from the node's /tmp.
Three tunnels reach it, all laptop → login → node1 (the forward shape):

* raw: ``ssh -N -L 127.0.0.1:P:node1:PORT login`` (its own login);
* openssh: hpcjupyter's tunnel (`OpensshRemote.open_tunnel`): a forward added to the site's
  ControlMaster;
* fabric: hpcjupyter's tunnel over paramiko: a relay thread in this process, as in `connect`.

curl (a separate process, so the relay threads here have the interpreter to themselves) fetches
the big file (MB/s), then the small one N times in one curl run (HTTP/1.0: a new connection,
so a new channel through the tunnel, per request). Methods take turns within each repetition;
ratios are ours / raw per repetition (speed, higher is better), then the median.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

from measure import Figure, spread

TARGET = 0.95
NODE = "node1"


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


def raw_tunnel(bench: Any, port: int) -> int:
    from hpcjupyter.tunnel import free_local_port, port_open

    local = free_local_port()
    bench.start(["ssh", "-F", str(bench.ssh_config), "-o", "BatchMode=yes", "-o", "ExitOnForwardFailure=yes",
                 "-N", "-L", f"127.0.0.1:{local}:{NODE}:{port}", bench.tb.login_alias])
    deadline = time.time() + 15
    while not port_open(local):
        if time.time() > deadline:
            raise RuntimeError("raw ssh -L did not listen")
        time.sleep(0.05)
    return local


def our_tunnel(bench: Any, transport: str, port: int) -> int:
    """hpcjupyter's own tunnel to node1:PORT, as `connect` opens it for Jupyter."""
    from hpcjupyter.transports.base import SshTarget
    from hpcjupyter.transports.fabric_remote import FabricRemote
    from hpcjupyter.transports.openssh import OpensshRemote
    from hpcjupyter.tunnel import free_local_port

    target = SshTarget(site=f"bench-{transport}", host=bench.tb.login_alias, config=str(bench.ssh_config),
                       transport=transport)
    remote: OpensshRemote | FabricRemote
    if transport == "openssh":
        remote = OpensshRemote(target, NoPrompts(), control_dir=bench.root / "fig5")
        bench.cleanups.append(remote.disconnect)
    else:
        remote = FabricRemote(target, NoPrompts())
        bench.cleanups.append(remote.close)
    remote.connect()
    tunnel = remote.open_tunnel("forward", NODE, port, free_local_port())
    bench.cleanups.append(tunnel.close)
    return tunnel.local_port


def download(port: int) -> float:
    """MB/s of one download of the big file."""
    out = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{speed_download}",
                          f"http://127.0.0.1:{port}/big"], capture_output=True, text=True, check=True, timeout=300)
    return float(out.stdout) / 1e6


def requests(port: int, count: int, config: Path) -> tuple[float, list[float]]:
    """Wall seconds for COUNT small requests in one curl run, and each one's time."""
    config.write_text("".join(f'url = "http://127.0.0.1:{port}/small"\noutput = "/dev/null"\n' for _ in range(count)))
    start = time.perf_counter()
    out = subprocess.run(["curl", "-sS", "-K", str(config), "-w", "%{time_total}\\n"], capture_output=True,
                         text=True, check=True, timeout=600)
    wall = time.perf_counter() - start
    return wall, [float(x) for x in out.stdout.split()]


def measure(bench: Any, figure: Figure, reps: int, megabytes: int, count: int) -> None:
    server = NodeServer(bench, megabytes)
    bench.cleanups.append(server.stop)
    ports = {"raw": raw_tunnel(bench, server.port)}
    for transport in ("openssh", "fabric"):
        ports[transport] = our_tunnel(bench, transport, server.port)
    speed: dict[str, list[float]] = {m: [] for m in ports}
    walls: dict[str, list[float]] = {m: [] for m in ports}
    latency: dict[str, list[float]] = {m: [] for m in ports}
    config = bench.root / "curl-requests.cfg"
    for _ in range(reps):
        for method, port in ports.items():
            speed[method].append(download(port))
            wall, each = requests(port, count, config)
            walls[method].append(wall)
            latency[method].extend(each)
    for method in ports:
        figure.add(f"download {method}", speed[method], "MB/s")
        figure.add(f"{count} requests {method}", walls[method], "s")
        figure.add(f"request latency {method}", latency[method], "s")
    raw_speed = figure.metrics["download raw"]["median"]
    figure.row("raw ssh -L", f"{raw_speed:.0f} MB/s ({megabytes} MB), "
               f"{count} requests in {figure.metrics[f'{count} requests raw']['median']:.2f} s")
    for method in ("openssh", "fabric"):
        down = figure.add(f"download ratio {method}/raw",
                          [o / r for o, r in zip(speed[method], speed["raw"], strict=True)], "x")
        reqs = figure.add(f"requests ratio {method}/raw",
                          [r / o for o, r in zip(walls[method], walls["raw"], strict=True)], "x")
        lat = figure.metrics[f"request latency {method}"]
        target = f">= {TARGET}x" if method == "openssh" else ""
        for label, ratio in (("download", down), ("requests", reqs)):
            figure.row(f"{label} {method}/raw", spread(ratio, lambda x: f"{x:.2f}x"), target,
                       ratio["median"] >= TARGET if method == "openssh" else None)
        figure.notes.append(f"{method}: median request {lat['median'] * 1000:.1f} ms "
                            f"(raw {figure.metrics['request latency raw']['median'] * 1000:.1f} ms), "
                            f"download {figure.metrics[f'download {method}']['median']:.0f} MB/s")
