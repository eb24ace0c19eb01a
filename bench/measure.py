"""Numbers and how they are reported: summaries of repetitions, table rows, machine info."""

from __future__ import annotations

import platform
import statistics
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def summary(values: Iterable[float], unit: str) -> dict[str, Any]:
    """Median, min, max over the repetitions (and the values themselves, unless there are many)."""
    vals = [float(v) for v in values]
    if not vals:
        return {"unit": unit, "repetitions": 0}
    found = {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "repetitions": len(vals),
             "unit": unit}
    return {**found, "values": vals} if len(vals) <= 50 else found


@dataclass
class Row:
    """One line of the printed table (a figure may have several)."""

    figure: str
    value: str
    target: str = ""
    met: bool | None = None  # None: no target, or not measured


@dataclass
class Figure:
    """What one figure measured: summaries by name, its table rows, and notes."""

    key: str
    title: str
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str = ""
    seconds: float = 0.0

    def add(self, name: str, values: Iterable[float], unit: str) -> dict[str, Any]:
        self.metrics[name] = summary(values, unit)
        return self.metrics[name]

    def row(self, label: str, value: str, target: str = "", met: bool | None = None, key: str = "") -> None:
        """A table line; KEY overrides the figure number where one run measures two figures."""
        self.rows.append(Row(f"{key or self.key} {label}", value, target, met))

    def as_json(self) -> dict[str, Any]:
        return {"title": self.title, "metrics": self.metrics, "notes": self.notes, "error": self.error,
                "seconds": round(self.seconds, 1),
                "rows": [vars(r) for r in self.rows]}


def run_figure(key: str, title: str, body: Callable[[Figure], None]) -> Figure:
    """Run one figure; a failure is recorded as 'not measured' with its reason, never hidden."""
    figure = Figure(key, title)
    start = time.monotonic()
    try:
        body(figure)
    except Exception as exc:  # one broken figure must not lose the others
        figure.error = f"{type(exc).__name__}: {exc}"
        figure.row(title, "NOT MEASURED", "", None)
    figure.seconds = time.monotonic() - start
    return figure


def fmt(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def med(metric: dict[str, Any]) -> float:
    return float(metric["median"])


def spread(metric: dict[str, Any], show: Callable[[float], str] = fmt) -> str:
    """'median (min–max, n=N)'."""
    if metric.get("repetitions", 0) == 0:
        return "n/a"
    if metric["repetitions"] == 1:
        return f"{show(metric['median'])} (n=1)"
    return f"{show(metric['median'])} ({show(metric['min'])}–{show(metric['max'])}, n={metric['repetitions']})"


def _out(*argv: str) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True).stdout.strip()
    except OSError:
        return ""


def machine() -> dict[str, Any]:
    """Where the numbers came from (nproc, free, OS, uname -r, date)."""
    try:
        release = platform.freedesktop_os_release().get("PRETTY_NAME", "")
    except OSError:
        release = ""
    return {"nproc": _out("nproc"), "free": _out("free", "-m"), "os": release, "kernel": _out("uname", "-r"),
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "python": platform.python_version(),
            "load_average": _out("cat", "/proc/loadavg")}


def commit(repo: Path) -> dict[str, Any]:
    """The commit measured, and whether the tree differed from it (then the numbers are of
    uncommitted code). Taken before the run: saving a run changes the tree."""
    sha = _out("git", "-C", str(repo), "rev-parse", "HEAD")
    changes = _out("git", "-C", str(repo), "status", "--porcelain")
    return {"sha": sha, "dirty": bool(changes), "changes": changes.splitlines()[:20]}
