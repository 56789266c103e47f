"""Reports, compare and plan on the results of real short runs (``rtbench run`` against the
reference servers it launches), read back through the ``rtbench`` command line."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from reports import plan as planner

pytestmark = pytest.mark.timeout(180)

SCENARIO = """
name = "{name}"
description = "report test"
[run]
transports = ["ws", "sse"]
steps = [20, 40]
ramp_rate = 400
hold_s = 2
warmup_s = 0.5
repeats = {repeats}
workers = 1
[workload]
kind = "fanout"
rate = {rate}
channel_size = 10
"""


def rtbench(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rtbench.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=170,
    )


@dataclass
class Runs:
    base: Path
    same: Path
    halved: Path


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runs]:
    """Three real runs at once: a base with two repeats, the same again, and one at half
    the publish rate (half the delivered messages: a real, known regression)."""
    root = tmp_path_factory.mktemp("runs")
    specs = {"base": (4.0, 2), "same": (4.0, 1), "halved": (2.0, 1)}
    procs = {}
    for name, (rate, repeats) in specs.items():
        path = root / f"{name}.toml"
        path.write_text(SCENARIO.format(name=name, rate=rate, repeats=repeats))
        procs[name] = subprocess.Popen(
            [sys.executable, "-m", "rtbench.cli", "run", str(path), "--out", str(root / name)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
    for name, proc in procs.items():
        _, err = proc.communicate(timeout=170)
        assert proc.returncode == 0, f"{name}: {err}"
    found = {name: next((root / name).iterdir()) for name in specs}
    yield Runs(found["base"], found["same"], found["halved"])


def test_report_is_self_contained_with_every_chart(runs: Runs, tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = rtbench("report", runs.same, "--out", out)
    assert result.returncode == 0, result.stderr
    html = (out / "report.html").read_text()
    markdown = (out / "report.md").read_text()
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == ["latency.png", "memory.png", "spectrum.png", "timeline.png"]
    # Self-contained: no external resource of any kind, every chart inlined as a real PNG.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//|[^"'>]*\.png)""", html)
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(images) == len(pngs)
    for data in images:
        assert base64.b64decode(data).startswith(b"\x89PNG\r\n\x1a\n")
    for name in pngs:
        assert f"]({name})" in markdown
    # The headline table carries both transports at both steps, in both files.
    for text in (html, markdown):
        for transport in ("ws", "sse"):
            assert transport in text
        assert "Transport comparison" in text and "RAM/conn user (RSS)" in text
    # A copied file still opens: nothing refers to the folder it was written in.
    copied = tmp_path / "elsewhere.html"
    shutil.copy(out / "report.html", copied)
    assert str(out) not in copied.read_text()


def test_report_warns_when_machines_differ(runs: Runs, tmp_path: Path) -> None:
    other = tmp_path / "other-machine"
    shutil.copytree(runs.same, other)
    meta = orjson.loads((other / "run.json").read_bytes())
    meta["environment"]["host"] = "another-host"
    (other / "run.json").write_bytes(orjson.dumps(meta))
    out = tmp_path / "report"
    assert rtbench("report", runs.same, other, "--out", out).returncode == 0
    assert "come from different machines" in (out / "report.md").read_text()


def test_report_warns_when_the_ramp_fell_short(runs: Runs, tmp_path: Path) -> None:
    """The run asked for 400 connections/s; pretend it had asked for a million."""
    other = tmp_path / "short-ramp"
    shutil.copytree(runs.same, other)
    summary = orjson.loads((other / "summary.json").read_bytes())
    achieved = summary["transports"]["ws"]["steps"][0]["ramp"]["achieved_per_s"]
    assert achieved > 0
    summary["transports"]["ws"]["steps"][0]["ramp"]["requested_per_s"] = 1_000_000
    (other / "summary.json").write_bytes(orjson.dumps(summary))
    out = tmp_path / "report"
    assert rtbench("report", other, "--out", out).returncode == 0
    text = (out / "report.md").read_text()
    assert f"the ramp opened {achieved:,.0f} connections/s of the 1,000,000/s asked" in text


def test_report_refuses_another_schema_version(runs: Runs, tmp_path: Path) -> None:
    old = tmp_path / "old"
    shutil.copytree(runs.same, old)
    summary = orjson.loads((old / "summary.json").read_bytes())
    summary["schema_version"] = 0
    (old / "summary.json").write_bytes(orjson.dumps(summary))
    result = rtbench("report", old)
    assert result.returncode == 2
    assert "schema version 0" in result.stderr and "reads version 1" in result.stderr


def test_compare_passes_within_thresholds(runs: Runs) -> None:
    result = rtbench("compare", runs.base, runs.same, "--fail-on", "msgs_per_s<-20%,lost>+0")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "within every threshold" in result.stdout
    # The base run had two repeats, so the noise band is measured, not "unknown".
    assert "±" in result.stdout


def test_compare_fails_on_a_regression_with_a_readable_table(runs: Runs) -> None:
    result = rtbench("compare", runs.base, runs.halved, "--fail-on", "msgs_per_s<-20%")
    assert result.returncode == 1
    failed = result.stdout.split("threshold(s) crossed:")[1]
    # Both transports at both steps delivered about half as many messages.
    assert failed.count("FAIL msgs_per_s<-20%") == 4
    assert re.search(r"ws\s+20\s+msgs_per_s\s+\S+\s+\S+\s+-[45]\d\.\d%", failed)


def test_compare_explains_a_bad_threshold(runs: Runs) -> None:
    result = rtbench("compare", runs.base, runs.same, "--fail-on", "latency>10")
    assert result.returncode == 2
    assert "unknown metric 'latency'" in result.stderr and "p99" in result.stderr


def test_plan_on_real_results_states_the_extrapolation(runs: Runs, tmp_path: Path) -> None:
    result = rtbench(
        "plan", runs.same, "--connections", "4000", "--p99", "500ms", "--out", tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "extrapolated 100.0× beyond the largest measured step" in result.stdout
    assert (tmp_path / "plan.html").exists() and (tmp_path / "plan.md").exists()


def _model(**overrides: object) -> planner.Model:
    steps = (
        planner.StepPoint(1000, 1000, 5.0, 0.1, False),
        planner.StepPoint(5000, 5000, 20.0, 0.1, False),
        planner.StepPoint(10000, 10000, 80.0, 0.1, False),
    )
    values: dict[str, object] = {
        "transport": "ws",
        "source": "test",
        "bytes_per_conn": 20_000.0,
        "kernel_per_conn": 8_000.0,
        "base_bytes_per_process": 50e6,
        "steps": steps,
        "largest_measured": 10000,
    }
    values.update(overrides)
    return planner.Model(**values)  # type: ignore[arg-type]


def test_plan_arithmetic_at_the_knee() -> None:
    """p99 ≤ 50 ms holds up to 5,000 connections per process: 100,000 connections need 20
    processes; at 1 msg/s each and 0.1 CPU-s per 1,000 messages the CPU needs only
    ceil(100 × 0.1 / 0.7) = 15, so the knee binds: 20 processes on 4-core hosts = 5 hosts."""
    request = planner.Request(connections=100_000, p99_ms=50, host_ram=16 * 2**30, host_cores=4)
    result = planner.plan(_model(), request)
    assert result.msg_rate == pytest.approx(100_000)
    assert result.processes == 20 and result.hosts == 5
    assert result.binding == "latency (knee)"
    # RAM: 100,000 × (20,000 + 8,000 / 2) + 20 × 50 MB.
    assert result.ram_bytes == pytest.approx(100_000 * 24_000 + 20 * 50e6)
    assert result.extrapolation == pytest.approx(10.0)


def test_plan_arithmetic_when_memory_binds() -> None:
    """512 MiB hosts: usable 0.8 of it minus 4 × 50 MB baseline, 24,000 B per connection."""
    request = planner.Request(connections=100_000, p99_ms=50, host_ram=2**29, host_cores=4)
    result = planner.plan(_model(), request)
    room = 2**29 * 0.8 - 4 * 50e6
    assert result.hosts == -(-100_000 * 24_000 // room)
    assert result.binding == "memory"


def test_plan_refuses_when_no_step_meets_the_objective() -> None:
    result = planner.plan(_model(), planner.Request(connections=1000, p99_ms=1))
    assert result.hosts is None
    assert any("cannot meet the objective" in note for note in result.notes)
