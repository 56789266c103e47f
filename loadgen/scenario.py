"""Scenarios: TOML files loaded into frozen dataclasses, every mistake said in one line.

A scenario::

    name = "quickstart"
    description = "WS vs SSE/1.1 vs SSE/2, fan-out, 1,000 then 5,000 connections"

    [target]
    launch = true              # rtbench starts, probes and stops the reference servers
    broker = "memory"          # or redis://HOST:PORT/DB
    processes = 1
    # url = "http://127.0.0.1:8080"   # instead of launch: any server already running

    [run]
    transports = ["ws", "sse", "sse-h2"]
    steps = [1000, 5000]       # connections held at each step
    ramp_rate = 1000           # new connections per second
    connect_concurrency = 100  # connects in flight at once, across all workers
    hold_s = 10                # measured seconds per step
    warmup_s = 2               # seconds after each ramp that are not measured
    seed = 1
    repeats = 1

    [workload]
    kind = "fanout"            # idle, echo, fanout, ws-echo, sse-plain
    payload_bytes = 64
    rate = 1.0                 # messages/s per publisher (fanout) or per connection (echo)
    channel_size = 100         # subscribers per channel (fanout)
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, cast

from loadgen.errors import ScenarioError

TRANSPORTS = ("ws", "sse", "sse-h2")
WORKLOADS = ("idle", "echo", "fanout", "chat", "reconnect-storm", "ws-echo", "sse-plain")
MAX_CONNECTIONS = 100_000


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    launch: bool = True
    broker: str = "memory"
    processes: int = 1
    url: str | None = None
    """Base URL of a server rtbench did not start (``http://``, ``https://``, ``ws://``)."""
    h2_url: str | None = None
    ca_file: str | None = None
    realm_seed: int = 0
    channel: str = "dao:1:general"
    """For ``ws-echo`` and ``sse-plain``: nothing; for the rtbench protocol: the DAO room prefix."""
    probe: str | None = None
    """A server rtbench did not start, on this host: its PID(s) ("1234,1240") or a process
    name to match, so that its memory per connection is measured too."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Run:
    transports: tuple[str, ...] = TRANSPORTS
    steps: tuple[int, ...] = (1000,)
    ramp_rate: float = 1000.0
    connect_concurrency: int = 100
    """Connects in flight at once across all workers: a server slower to accept than the
    ramp sees a queue this long, not one of every connection still to open."""
    hold_s: float = 10.0
    warmup_s: float = 2.0
    seed: int = 1
    repeats: int = 1
    workers: int = 0
    """Generator processes; 0: one per core, more if one would hold over 15,000 sockets."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Workload:
    kind: str = "fanout"
    payload_bytes: int = 64
    rate: float = 1.0
    channel_size: int = 100
    heartbeat_s: float = 60.0
    time_field: str = "t"
    """sse-plain: the JSON field of the event data holding the send time (epoch ms)."""
    drop_fraction: float = 0.5
    """reconnect-storm: share of the subscribers cut at once in each hold."""
    storm_at_s: float | None = None
    """reconnect-storm: seconds into each hold when the storm hits [default: a third in]."""
    rooms: int = 100
    """chat: rooms in the community (Zipf-sized membership)."""
    rooms_per_user: int = 3
    zipf_s: float = 1.1
    gated_share: float = 0.1
    """chat: share of users who also try a token-gated room (holders or whales)."""
    churn_per_s: float = 5.0
    """chat: room moves per second across all users (leave one, join another)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    name: str
    description: str = ""
    path: str = ""
    target: Target = field(default_factory=Target)
    run: Run = field(default_factory=Run)
    workload: Workload = field(default_factory=Workload)

    def as_dict(self) -> dict[str, Any]:
        def section(value: Any) -> dict[str, Any]:
            return {f.name: getattr(value, f.name) for f in fields(value)}

        return {
            "name": self.name,
            "description": self.description,
            "path": self.path,
            "target": section(self.target),
            "run": section(self.run),
            "workload": section(self.workload),
        }


class _Checker:
    def __init__(self, path: str) -> None:
        self.path = path

    def fail(self, key: str, value: Any, allowed: str) -> ScenarioError:
        return ScenarioError(f"{self.path}: {key} = {value!r}: {allowed}")

    def number(
        self, key: str, value: Any, *, minimum: float, maximum: float, integer: bool = False
    ) -> Any:
        kinds: tuple[type, ...] = (int,) if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds):
            kind = "an integer" if integer else "a number"
            raise self.fail(key, value, f"must be {kind} from {minimum:g} to {maximum:g}")
        if not minimum <= cast(float, value) <= maximum:
            kind = "an integer" if integer else "a number"
            raise self.fail(key, value, f"must be {kind} from {minimum:g} to {maximum:g}")
        return value

    def choice(self, key: str, value: Any, allowed: tuple[str, ...]) -> str:
        if value not in allowed:
            raise self.fail(key, value, f"must be one of {', '.join(allowed)}")
        return str(value)

    def boolean(self, key: str, value: Any) -> bool:
        if not isinstance(value, bool):
            raise self.fail(key, value, "must be true or false")
        return value

    def string(self, key: str, value: Any) -> str:
        if not isinstance(value, str):
            raise self.fail(key, value, "must be a string")
        return value

    def keys(self, section: str, table: Any, known: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(table, dict):
            raise self.fail(section, table, "must be a table")
        for key in table:
            if key not in known:
                where = f"{section}.{key}" if section else key
                raise self.fail(where, table[key], f"unknown field; known: {', '.join(known)}")
        return table


def _target(c: _Checker, raw: dict[str, Any]) -> Target:
    t = c.keys("target", raw, tuple(f.name for f in fields(Target)))
    launch = c.boolean("target.launch", t.get("launch", "url" not in t))
    url = t.get("url")
    if url is not None:
        url = c.string("target.url", url)
        if not url.startswith(("http://", "https://", "ws://", "wss://")):
            raise c.fail("target.url", url, "must start with http://, https://, ws:// or wss://")
        host = url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[0].strip("[]")
        if not (host.startswith("127.") or host in ("localhost", "::1")):
            raise c.fail("target.url", url, "only loopback hosts (127.0.0.0/8, localhost, ::1)")
    if launch and url is not None:
        raise c.fail("target.launch", True, "must be false when target.url is given")
    if not launch and url is None:
        raise c.fail("target.url", None, "is required when target.launch = false")
    broker = c.string("target.broker", t.get("broker", "memory"))
    if broker != "memory" and not broker.startswith(("redis://", "valkey")):
        raise c.fail("target.broker", broker, "must be memory, valkey (embedded) or redis://...")
    processes = c.number(
        "target.processes", t.get("processes", 1), minimum=1, maximum=64, integer=True
    )
    if processes > 1 and broker == "memory":
        raise c.fail(
            "target.broker", broker, "several processes need valkey (embedded) or redis://..."
        )
    return Target(
        launch=launch,
        broker=broker,
        processes=processes,
        url=url,
        h2_url=t.get("h2_url"),
        ca_file=t.get("ca_file"),
        realm_seed=c.number(
            "target.realm_seed", t.get("realm_seed", 0), minimum=0, maximum=2**31, integer=True
        ),
        probe=_probe_field(c, t.get("probe"), launch),
    )


def _probe_field(c: _Checker, value: Any, launch: bool) -> str | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    text = c.string("target.probe", value)
    if launch:
        raise c.fail(
            "target.probe", text, "is for servers rtbench does not launch (launch = false)"
        )
    if not text.strip():
        raise c.fail("target.probe", text, "must be PIDs (1234,1240) or a process name")
    return text


def _run(c: _Checker, raw: dict[str, Any]) -> Run:
    r = c.keys("run", raw, tuple(f.name for f in fields(Run)))
    transports = r.get("transports", list(TRANSPORTS))
    if not isinstance(transports, list) or not transports:
        raise c.fail("run.transports", transports, f"must be a non-empty list of {TRANSPORTS}")
    for name in transports:
        c.choice("run.transports", name, TRANSPORTS)
    if len(set(transports)) != len(transports):
        raise c.fail("run.transports", transports, "must not repeat a transport")
    steps = r.get("steps", [1000])
    if not isinstance(steps, list) or not steps:
        raise c.fail("run.steps", steps, "must be a non-empty list of connection counts")
    for step in steps:
        c.number("run.steps", step, minimum=1, maximum=MAX_CONNECTIONS, integer=True)
    if steps != sorted(set(steps)):
        raise c.fail("run.steps", steps, "must be strictly increasing")
    return Run(
        transports=tuple(transports),
        steps=tuple(steps),
        ramp_rate=c.number("run.ramp_rate", r.get("ramp_rate", 1000), minimum=1, maximum=100_000),
        connect_concurrency=c.number(
            "run.connect_concurrency",
            r.get("connect_concurrency", 100),
            minimum=1,
            maximum=10_000,
            integer=True,
        ),
        hold_s=c.number("run.hold_s", r.get("hold_s", 10), minimum=1, maximum=86_400),
        warmup_s=c.number("run.warmup_s", r.get("warmup_s", 2), minimum=0, maximum=3600),
        seed=c.number("run.seed", r.get("seed", 1), minimum=0, maximum=2**31, integer=True),
        repeats=c.number("run.repeats", r.get("repeats", 1), minimum=1, maximum=100, integer=True),
        workers=c.number("run.workers", r.get("workers", 0), minimum=0, maximum=64, integer=True),
    )


def _workload(c: _Checker, raw: dict[str, Any], run: Run) -> Workload:
    w = c.keys("workload", raw, tuple(f.name for f in fields(Workload)))
    kind = c.choice("workload.kind", w.get("kind", "fanout"), WORKLOADS)
    if kind == "ws-echo" and run.transports != ("ws",):
        raise c.fail("run.transports", list(run.transports), "ws-echo needs exactly ['ws']")
    if kind == "sse-plain" and "ws" in run.transports:
        raise c.fail("run.transports", list(run.transports), "sse-plain needs SSE transports")
    return Workload(
        kind=kind,
        payload_bytes=c.number(
            "workload.payload_bytes",
            w.get("payload_bytes", 64),
            minimum=0,
            maximum=60_000,
            integer=True,
        ),
        rate=c.number("workload.rate", w.get("rate", 1.0), minimum=0.01, maximum=1000),
        channel_size=c.number(
            "workload.channel_size",
            w.get("channel_size", 100),
            minimum=1,
            maximum=MAX_CONNECTIONS,
            integer=True,
        ),
        heartbeat_s=c.number(
            "workload.heartbeat_s", w.get("heartbeat_s", 60), minimum=1, maximum=3600
        ),
        time_field=c.string("workload.time_field", w.get("time_field", "t")),
        drop_fraction=c.number(
            "workload.drop_fraction", w.get("drop_fraction", 0.5), minimum=0.001, maximum=1
        ),
        rooms=c.number(
            "workload.rooms", w.get("rooms", 100), minimum=1, maximum=1000, integer=True
        ),
        rooms_per_user=c.number(
            "workload.rooms_per_user",
            w.get("rooms_per_user", 3),
            minimum=1,
            maximum=10,
            integer=True,
        ),
        zipf_s=c.number("workload.zipf_s", w.get("zipf_s", 1.1), minimum=0, maximum=3),
        gated_share=c.number(
            "workload.gated_share", w.get("gated_share", 0.1), minimum=0, maximum=1
        ),
        churn_per_s=c.number(
            "workload.churn_per_s", w.get("churn_per_s", 5.0), minimum=0, maximum=10_000
        ),
        storm_at_s=None
        if w.get("storm_at_s") is None
        else c.number(
            "workload.storm_at_s", w["storm_at_s"], minimum=0, maximum=max(0, run.hold_s - 1)
        ),
    )


def _apply_override(c: _Checker, data: dict[str, Any], assignment: str) -> None:
    key, sep, text = assignment.partition("=")
    parts = key.strip().split(".")
    if not sep or len(parts) != 2 or parts[0] not in ("target", "run", "workload"):
        raise ScenarioError(
            f"--set {assignment!r}: write SECTION.FIELD=VALUE, SECTION one of target, run, workload"
        )
    try:
        value = tomllib.loads(f"v = {text.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = text.strip()
    data.setdefault(parts[0], {})[parts[1]] = value


def load_scenario(path: Path | str, overrides: list[str] | tuple[str, ...] = ()) -> Scenario:
    """Read, override (``run.hold_s=5``), validate; raises :class:`ScenarioError`."""
    path = Path(path)
    c = _Checker(str(path))
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ScenarioError(f"{path}: no such scenario file (see `rtbench scenarios`)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: not valid TOML: {exc}") from None
    for assignment in overrides:
        _apply_override(c, data, assignment)
    top = c.keys("", data, ("name", "description", "target", "run", "workload"))
    name = c.string("name", top.get("name", path.stem))
    run = _run(c, top.get("run", {}))
    scenario = Scenario(
        name=name,
        description=c.string("description", top.get("description", "")),
        path=str(path),
        target=_target(c, top.get("target", {})),
        run=run,
        workload=_workload(c, top.get("workload", {}), run),
    )
    if scenario.workload.kind in ("ws-echo", "sse-plain") and scenario.target.launch:
        raise c.fail("target.launch", True, f"{scenario.workload.kind} targets a server you run")
    return replace(scenario)


def scenario_from_dict(data: dict[str, Any]) -> Scenario:
    """The inverse of :meth:`Scenario.as_dict` (the plan a worker receives)."""
    run = dict(data["run"])
    run["transports"] = tuple(run["transports"])
    run["steps"] = tuple(run["steps"])
    return Scenario(
        name=data["name"],
        description=data.get("description", ""),
        path=data.get("path", ""),
        target=Target(**data["target"]),
        run=Run(**run),
        workload=Workload(**data["workload"]),
    )


def list_scenarios(directory: Path) -> list[tuple[str, str]]:
    """(file name, description) of every scenario in ``directory``."""
    out = []
    for file in sorted(directory.glob("*.toml")):
        try:
            description = str(tomllib.loads(file.read_text()).get("description", ""))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            description = f"(unreadable: {exc})"
        out.append((file.name, description))
    return out
