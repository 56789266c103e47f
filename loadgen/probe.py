"""Server-side memory and CPU: psutil for processes, /proc for the kernel's socket memory.

``/proc/net/sockstat``'s ``mem`` stays near 0 for idle sockets (../shared/ANCHORS.md), so
kernel memory per connection comes from the slab caches that grow with each socket
(``/proc/slabinfo``, readable by root), else from ``SUnreclaim`` in ``/proc/meminfo``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import psutil

#: Slab caches that grow by one object per TCP socket (both ends of a loopback connection
#: are counted, since the kernel is shared).
SLAB_CACHES = ("TCP", "TCPv6", "sock_inode_cache", "filp", "eventpoll_epi", "eventpoll_pwq")


@dataclass(frozen=True, slots=True)
class Sample:
    rss: int
    uss: int | None
    cpu_s: float
    open_files: int
    kernel: int | None
    kernel_source: str


def kernel_memory() -> tuple[int | None, str]:
    """Bytes in the socket-related slab caches, else SUnreclaim; (None, why) if unreadable."""
    try:
        total = 0
        for line in Path("/proc/slabinfo").read_text().splitlines()[2:]:
            parts = line.split()
            if parts and parts[0] in SLAB_CACHES:
                total += int(parts[2]) * int(parts[3])  # num_objs × objsize
        return total, "slabinfo"
    except (OSError, ValueError, IndexError):
        pass
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("SUnreclaim:"):
                return int(line.split()[1]) * 1024, "meminfo SUnreclaim"
    except OSError:
        pass
    return None, "unreadable"


class Probe:
    """Samples a fixed set of server processes (and their children)."""

    def __init__(self, pids: list[int], *, uss: bool = True) -> None:
        self.processes = [psutil.Process(pid) for pid in pids]
        self.uss = uss

    def sample(self) -> Sample:
        rss = 0
        uss: int | None = 0 if self.uss else None
        cpu = 0.0
        files = 0
        for process in self.processes:
            try:
                with process.oneshot():
                    if self.uss:
                        info = process.memory_full_info()
                        assert uss is not None
                        uss += info.uss
                        rss += info.rss
                    else:
                        rss += process.memory_info().rss
                    times = process.cpu_times()
                    cpu += times.user + times.system
                    files += process.num_fds()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        kernel, source = kernel_memory()
        return Sample(rss, uss, cpu, files, kernel, source)


def find_processes(spec: str) -> list[int]:
    """PIDs from ``"1234,1240"``, or every process whose name or command line contains
    ``spec`` (not this one); raises ``LookupError`` with a sentence when none matches."""
    parts = [p.strip() for p in spec.split(",") if p.strip()]
    if parts and all(p.isdigit() for p in parts):
        pids = [int(p) for p in parts]
        missing = [p for p in pids if not psutil.pid_exists(p)]
        if missing:
            raise LookupError(f"no process with PID {', '.join(map(str, missing))} on this host")
        return pids
    me = os.getpid()
    found = []
    for process in psutil.process_iter(["pid", "name", "cmdline"]):
        if process.info["pid"] == me:
            continue
        cmdline = " ".join(process.info["cmdline"] or ())
        if spec in (process.info["name"] or "") or spec in cmdline:
            found.append(int(process.info["pid"]))
    if not found:
        raise LookupError(f"no process named or started with {spec!r} on this host")
    return found
