"""Start and stop the reference servers for a scenario with ``target.launch = true``.

The servers run as a separate command (``rtbench serve``), so the load generator
imports nothing of them and probes them like any other process, by PID.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import psutil

from loadgen.errors import LoadgenError

STOP_TIMEOUT_S = 45.0
"""The server drains for up to 30 s (every connection closed cleanly), then is killed."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(slots=True)
class Launched:
    process: subprocess.Popen[bytes]
    pids: list[int]
    http_url: str | None
    h2_url: str | None
    cert: str | None
    log_path: Path

    def stop(self) -> None:
        """SIGTERM (drain), then SIGKILL after 45 s, to the server we started and anything
        it started (its server processes, an embedded Valkey), so nothing is left behind."""
        if self.process.poll() is not None:
            return
        try:
            family = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            family = []
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for child in family:
            with contextlib.suppress(psutil.NoSuchProcess):
                if child.is_running():
                    child.kill()


def launch(
    transport: str, *, broker: str, processes: int, log_dir: Path, timeout_s: float = 30.0
) -> Launched:
    port, h2_port = free_port(), free_port()
    ready = Path(tempfile.mkstemp(prefix="rtbench-ready-", suffix=".json")[1])
    ready.unlink()
    command = [
        sys.executable,
        "-m",
        "rtbench.cli",
        "serve",
        "--transport",
        transport,
        "--port",
        str(port),
        "--h2-port",
        str(h2_port),
        "--processes",
        str(processes),
        "--ready-file",
        str(ready),
    ]
    if broker == "memory" or broker.startswith("redis://"):
        command += ["--broker", broker]
    log_path = log_dir / f"server-{transport}.log"
    process = subprocess.Popen(
        command,
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    deadline = time.monotonic() + timeout_s
    while not ready.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            if process.poll() is None:
                process.kill()
            raise LoadgenError(
                f"the {transport} server did not start; its log: {log_path}\n"
                + log_path.read_text()[-800:]
            )
        time.sleep(0.05)
    time.sleep(0.05)
    info: dict[str, Any] = orjson.loads(ready.read_bytes())
    ready.unlink()
    first = info["processes"][0]
    return Launched(
        process=process,
        pids=[p["pid"] for p in info["processes"]],
        http_url=first["http"],
        h2_url=first["h2"],
        cert=first["cert"],
        log_path=log_path,
    )
