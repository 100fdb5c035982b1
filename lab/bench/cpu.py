"""Where the CPU went during the event: this process, its subprocesses, PostgreSQL, the machine."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from django.db import connection

from lab.bench.processes import Subprocesses


def _clock_ticks() -> int:
    try:
        return int(os.sysconf("SC_CLK_TCK"))
    except (ValueError, OSError):
        return 100


def group_cpu_s(pgid: int) -> float:
    """CPU seconds (user + system) used so far by the live processes of a process group (Linux
    /proc; 0.0 elsewhere)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue  # the process ended while we looked
        # After the command name: state, ppid, pgrp, ..., utime (12th), stime (13th).
        if len(fields) > 12 and int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12])
    return total / _clock_ticks()


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of a server process (PostgreSQL's postmaster): its own, its reaped children's,
    and its live children's (the backends, one per connection). 0.0 when it cannot be read."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
            own = int(stat.parent.name) == pid
        except (OSError, ValueError):
            continue  # the process ended while we looked
        # After the command name: state, ppid, ..., utime (12th), stime, cutime, cstime (15th).
        if len(fields) > 14 and (own or int(fields[1]) == pid):
            total += int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
    return total / _clock_ticks()


def machine_busy_s() -> float | None:
    """CPU seconds all cores spent busy since boot (/proc/stat), or None when unavailable."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    values = [int(v) for v in first[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return (sum(values[:8]) - idle) / _clock_ticks()


@dataclass
class CpuMeter:
    """CPU used from `start()` to `report()`: this process, each subprocess, the PostgreSQL server
    when BENCH_POSTGRES_PID names its postmaster (scripts/scale.sh does), the whole machine."""

    procs: Subprocesses | None
    wall: float = 0.0
    own: float = 0.0
    machine: float | None = None
    groups: dict[str, float] = field(default_factory=dict)
    postgres_pid: int | None = None
    postgres: float = 0.0

    def start(self) -> None:
        self.wall = time.perf_counter()
        self.own = time.process_time()
        self.machine = machine_busy_s()
        self.groups = {p.name: group_cpu_s(p.popen.pid) for p in self.procs.processes} if self.procs else {}
        raw = os.environ.get("BENCH_POSTGRES_PID", "")
        self.postgres_pid = int(raw) if raw.isdigit() and connection.vendor == "postgresql" else None
        if self.postgres_pid is not None:
            self.postgres = tree_cpu_s(self.postgres_pid)

    def group_delta(self, name: str) -> float:
        """CPU seconds a subprocess (by name: "qcluster", "kite_sim") used since `start()`."""
        if self.procs is None:
            return 0.0
        for p in self.procs.processes:
            if p.name == name:
                return group_cpu_s(p.popen.pid) - self.groups.get(name, 0.0)
        return 0.0

    def report(self) -> str:
        wall = time.perf_counter() - self.wall
        parts = [f"bench process {time.process_time() - self.own:.1f} s"]
        if self.procs is not None:
            for p in self.procs.processes:
                parts.append(f"{p.name} {group_cpu_s(p.popen.pid) - self.groups.get(p.name, 0.0):.1f} s")
        if self.postgres_pid is not None:
            parts.append(f"postgresql {tree_cpu_s(self.postgres_pid) - self.postgres:.1f} s")
        busy = machine_busy_s()
        if busy is not None and self.machine is not None:
            parts.append(
                f"whole machine {busy - self.machine:.1f} s busy of {wall * (os.cpu_count() or 1):.1f} s "
                f"({os.cpu_count()} cores; includes the database and anything else running)"
            )
        return f"cpu during the event ({wall:.1f} s): " + ", ".join(parts)
