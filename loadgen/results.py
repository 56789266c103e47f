"""The results folder, written as the run goes (../shared/DESIGN.md, "Results format").

``run.json`` first, then a ``series.csv`` row and ``latency.hlog`` intervals every second,
and ``summary.json`` after every step, so an interrupted run keeps what it measured.
"""

from __future__ import annotations

import csv
import datetime
import os
import platform
import resource
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson
from hdrh.histogram import HdrHistogram

SCHEMA_VERSION = 1

SERIES_COLUMNS = (
    "t_s",
    "transport",
    "repeat",
    "step",
    "phase",
    "connections",
    "target",
    "msgs_in_per_s",
    "msgs_out_per_s",
    "p50_ms",
    "p99_ms",
    "server_rss",
    "server_uss",
    "server_cpu_pct",
    "kernel_bytes",
    "gen_cpu_pct",
    "gen_cpu_total_pct",
    "gen_rss",
    "gen_loop_lag_p99_ms",
    "errors",
)

_PACKAGES = (
    "aiohttp",
    "websockets",
    "httpx",
    "h2",
    "hypercorn",
    "uvloop",
    "orjson",
    "hdrhistogram",
    "redis",
    "psutil",
)


def environment() -> dict[str, Any]:
    versions: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    try:
        commit = (
            subprocess.run(
                ["git", "rev-parse", "HEAD"],
                capture_output=True,
                text=True,
                timeout=5,
                cwd=Path(__file__).resolve().parent,
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        commit = None
    cpu_model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        ports = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    except OSError:
        ports = []
    return {
        "host": platform.node(),
        "cpu": cpu_model,
        "cores": os.cpu_count(),
        "memory_bytes": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "open_files": {"soft": soft, "hard": hard},
        "ephemeral_ports": ports,
        "versions": versions,
        "commit": commit,
    }


class ResultsWriter:
    def __init__(self, root: Path, name: str, scenario: dict[str, Any]) -> None:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        self.dir = root / f"{stamp}-{name}"
        suffix = 1
        while self.dir.exists():
            suffix += 1
            self.dir = root / f"{stamp}-{name}-{suffix}"
        self.dir.mkdir(parents=True)
        self.env = environment()
        self._write_json(
            "run.json",
            {
                "schema_version": SCHEMA_VERSION,
                "started": datetime.datetime.now(datetime.UTC).isoformat(),
                "scenario": scenario,
                "environment": self.env,
            },
        )
        self._series_file = (self.dir / "series.csv").open("w", newline="")
        self._series = csv.DictWriter(self._series_file, SERIES_COLUMNS)
        self._series.writeheader()
        self._hlog = (self.dir / "latency.hlog").open("w")
        self._hlog.write("#[Histogram log format version 1.3]\n")
        self._hlog.write("#[Latency in microseconds from the intended send time; Tag=transport]\n")
        self._hlog.write(
            '"StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"\n'
        )

    def _write_json(self, name: str, value: Any) -> None:
        tmp = self.dir / f".{name}.tmp"
        tmp.write_bytes(
            orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY)
        )
        tmp.replace(self.dir / name)

    def series(self, row: dict[str, Any]) -> None:
        self._series.writerow(row)
        self._series_file.flush()

    def interval(self, tag: str, start_s: float, length_s: float, histogram: HdrHistogram) -> None:
        if histogram.get_total_count() == 0:
            return
        payload = histogram.encode().decode()
        max_ms = histogram.get_max_value() / 1000
        self._hlog.write(f"Tag={tag},{start_s:.3f},{length_s:.3f},{max_ms:.3f},{payload}\n")
        self._hlog.flush()

    def summary(self, value: dict[str, Any]) -> None:
        self._write_json("summary.json", {"schema_version": SCHEMA_VERSION, **value})

    def close(self) -> None:
        self._series_file.close()
        self._hlog.close()
