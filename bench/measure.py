"""What the bench reads: process CPU and memory from /proc, and the relay's /metrics."""

from __future__ import annotations

import os
import platform
import re
import sys
from dataclasses import dataclass

CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcSample:
    cpu_s: float  # user + system CPU seconds, all threads
    rss_bytes: int
    sys_s: float = 0.0  # the system (kernel) part of cpu_s


def proc_sample(pid: int) -> ProcSample:
    with open(f"/proc/{pid}/stat") as f:
        raw = f.read()
    # the command name may contain spaces: fields start after the closing parenthesis
    fields = raw[raw.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])
    rss_pages = int(fields[21])
    return ProcSample(
        (utime + stime) / CLK_TCK, rss_pages * os.sysconf("SC_PAGE_SIZE"), stime / CLK_TCK
    )


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (the relay's detector processes, and theirs)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                raw = f.read()
        except OSError:
            continue
        ppid = int(raw[raw.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def proc_tree_sample(pid: int) -> ProcSample:
    """``pid`` and its live descendants together: work moved into a child process (the
    relay's detector processes) still counts as the relay's CPU and memory. A child that
    exits between two samples takes its CPU time with it (a restarted one under-counts)."""
    total = proc_sample(pid)
    cpu, rss, sys_s = total.cpu_s, total.rss_bytes, total.sys_s
    for child in descendants(pid):
        try:
            s = proc_sample(child)
        except OSError:
            continue  # it exited meanwhile
        cpu, rss, sys_s = cpu + s.cpu_s, rss + s.rss_bytes, sys_s + s.sys_s
    return ProcSample(cpu, rss, sys_s)


def machine_busy() -> tuple[float, float]:
    """(busy jiffies, total jiffies) over all CPUs, from /proc/stat."""
    with open("/proc/stat") as f:
        parts = f.readline().split()[1:]
    values = [int(v) for v in parts[:8]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values)
    return total - idle, total


def udp_rcvbuf_errors() -> int | None:
    """Datagrams the kernel dropped because a socket's receive buffer was full (all sockets)."""
    try:
        with open("/proc/net/snmp") as f:
            rows = [line.split() for line in f if line.startswith("Udp:")]
    except OSError:
        return None
    if len(rows) < 2 or "RcvbufErrors" not in rows[0]:
        return None
    return int(rows[1][rows[0].index("RcvbufErrors")])


def udp_socket_drops(pid: int) -> int | None:
    """Datagrams dropped on the UDP sockets this process holds (``drops`` in /proc/net/udp)."""
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        return None
    drops = 0
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    cols = line.split()
                    if len(cols) >= 13 and cols[9] in inodes:
                        drops += int(cols[12])
        except OSError:
            continue
    return drops


def machine_info() -> dict:
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import aiortc

    return {
        "cpus": os.cpu_count(),
        "model": model or platform.processor(),
        "python": sys.version.split()[0],
        "aiortc": aiortc.__version__,
        "platform": platform.platform(),
    }


# --- Prometheus text format ------------------------------------------------------------------

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)')
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')

Metrics = dict[str, list[tuple[dict[str, str], float]]]


def parse_metrics(text: str) -> Metrics:
    out: Metrics = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if not match:
            continue
        name, labels, value = match.groups()
        try:
            number = float(value)
        except ValueError:
            continue
        out.setdefault(name, []).append((dict(_LABEL.findall(labels or "")), number))
    return out


def metric_sum(metrics: Metrics, name: str, **labels: str) -> float | None:
    """Sum of a metric's samples whose labels match; None when the metric is absent."""
    if name not in metrics:
        return None
    return sum(v for lab, v in metrics[name] if all(lab.get(k) == w for k, w in labels.items()))


def histogram_buckets(metrics: Metrics, name: str) -> dict[float, float] | None:
    """Cumulative counts by upper bound (summed over other labels); None when absent."""
    samples = metrics.get(f"{name}_bucket")
    if not samples:
        return None
    out: dict[float, float] = {}
    for labels, value in samples:
        le = labels.get("le")
        if le is None:
            continue
        bound = float("inf") if le in ("+Inf", "Inf") else float(le)
        out[bound] = out.get(bound, 0.0) + value
    return out


def bucket_delta(before: dict[float, float] | None, after: dict[float, float] | None) -> dict[float, float] | None:
    if after is None:
        return None
    before = before or {}
    return {b: after[b] - before.get(b, 0.0) for b in after}


def histogram_quantile(q: float, cumulative: dict[float, float] | None) -> float | None:
    """Prometheus-style quantile: linear interpolation within the bucket that holds it.

    Values in the +Inf bucket are reported as the largest finite bound (a lower bound).
    """
    if not cumulative:
        return None
    bounds = sorted(cumulative)
    total = cumulative[bounds[-1]]
    if total <= 0:
        return None
    rank = q * total
    prev_bound, prev_count = 0.0, 0.0
    for bound in bounds:
        count = cumulative[bound]
        if count >= rank:
            if bound == float("inf"):
                return prev_bound
            if count == prev_count:
                return bound
            return prev_bound + (bound - prev_bound) * (rank - prev_count) / (count - prev_count)
        prev_bound, prev_count = bound, count
    return prev_bound
