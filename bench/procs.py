"""What the kernel says about a process: CPU time, resident memory, start time, parent.

The bed's hosts are network/mount/UTS namespaces of this one kernel, not PID namespaces, so a
process on a node (Jupyter, the job script) is in this machine's /proc under the same pid, and
its start time is on this machine's clock.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")  # /proc's unit of CPU and start times (100 per second: 10 ms)


@dataclass(frozen=True)
class Stat:
    """The fields of /proc/PID/stat the figures use (times in seconds)."""

    ppid: int
    user: float
    system: float
    children_user: float
    children_system: float
    started: float
    """time.time() when the process was created (fork; an exec keeps it)."""

    @property
    def cpu(self) -> float:
        """Its own CPU time and that of the children it waited for (ssh commands it ran)."""
        return self.user + self.system + self.children_user + self.children_system


def stat(pid: int) -> Stat:
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()  # after 'pid (comm) ': comm may hold spaces
    # fields[0] is field 3 (state): field N of proc(5) is fields[N - 3]
    since_boot = int(fields[19]) / TICK
    boot = time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)  # starttime counts from boot
    return Stat(
        ppid=int(fields[1]),
        user=int(fields[11]) / TICK,
        system=int(fields[12]) / TICK,
        children_user=int(fields[13]) / TICK,
        children_system=int(fields[14]) / TICK,
        started=boot + since_boot,
    )


def rss_mib(pid: int) -> float:
    """Resident memory now (VmRSS), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid} (a zombie?)")
