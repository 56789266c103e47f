"""The control channel between the coordinator and its generator workers.

One small interface: a command (a JSON object with ``op``) goes in, exactly one answer with
the same ``id`` comes back; the commands are ``plan``, ``ramp``, ``phase``, ``tick`` (answered
with the last second's counters and HDR histogram) and ``final``. Workers on this host are
child processes speaking JSON lines over their stdin and stdout (:class:`LocalWorker`); the
same messages can travel over Redis to workers on other hosts later.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import sys
from abc import ABC, abstractmethod
from pathlib import Path
from typing import IO, Any

import orjson

from loadgen.errors import LoadgenError

ANSWER_TIMEOUT_S = 30.0
RAMP_TIMEOUT_S = 3600.0


class WorkerError(LoadgenError):
    """A worker died or did not answer."""


class ControlChannel(ABC):
    """The coordinator's end of the channel to one worker."""

    name: str

    @abstractmethod
    async def request(
        self, command: dict[str, Any], timeout: float = ANSWER_TIMEOUT_S
    ) -> dict[str, Any]:
        """Send ``command``; return the worker's answer to it."""

    @abstractmethod
    async def close(self) -> None:
        """Stop the worker (it closes its connections first)."""


class LocalWorker(ControlChannel):
    """A worker process on this host: ``python -m loadgen.worker``."""

    def __init__(self, process: asyncio.subprocess.Process, name: str, log: IO[bytes]) -> None:
        self.process = process
        self.name = name
        self.pid = process.pid
        self._log = log
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, name: str, log_path: Path) -> LocalWorker:
        log = log_path.open("ab")
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "loadgen.worker",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
            limit=2**24,
        )
        return cls(process, name, log)

    async def _read(self) -> None:
        assert self.process.stdout is not None
        try:
            while line := await self.process.stdout.readline():
                answer = orjson.loads(line)
                waiter = self._waiting.pop(answer.get("id"), None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(answer)
        finally:
            code = await self.process.wait()
            for waiter in self._waiting.values():
                if not waiter.done():
                    waiter.set_exception(
                        WorkerError(f"generator worker {self.name} exited with code {code}")
                    )
            self._waiting.clear()

    async def request(
        self, command: dict[str, Any], timeout: float = ANSWER_TIMEOUT_S
    ) -> dict[str, Any]:
        if self.process.returncode is not None or self.process.stdin is None:
            raise WorkerError(f"generator worker {self.name} is not running")
        ident = next(self._ids)
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[ident] = waiter
        self.process.stdin.write(orjson.dumps({**command, "id": ident}) + b"\n")
        try:
            async with asyncio.timeout(timeout):
                answer = await waiter
        except TimeoutError:
            self._waiting.pop(ident, None)
            raise WorkerError(
                f"generator worker {self.name} did not answer {command['op']!r} within {timeout:g} s"
            ) from None
        if answer.get("op") == "error":
            raise WorkerError(f"generator worker {self.name}: {answer.get('error')}")
        return answer

    async def close(self) -> None:
        if self.process.stdin is not None and not self.process.stdin.is_closing():
            self.process.stdin.close()
        try:
            async with asyncio.timeout(10):
                await self.process.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            await self.process.wait()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        self._log.close()


async def start_local_workers(count: int, log_dir: Path) -> list[ControlChannel]:
    workers = await asyncio.gather(
        *(LocalWorker.start(f"w{i}", log_dir / f"worker-{i}.log") for i in range(count))
    )
    return list(workers)
