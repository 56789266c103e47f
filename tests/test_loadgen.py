"""The load generator end to end: a real `rtbench serve` launched by a real run, results on disk."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import psutil

from loadgen.engine import main_run
from loadgen.scenario import load_scenario
from reports.summary import render_summary


def test_small_run_writes_every_result_file(tmp_path: Path) -> None:
    """A two-step fan-out run on WS and SSE writes run.json, series.csv, latency.hlog and a
    complete summary whose integrity accounting balances."""
    scenario_file = tmp_path / "tiny.toml"
    scenario_file.write_text(
        'name = "tiny"\ndescription = "test"\n'
        '[run]\ntransports = ["ws", "sse"]\nsteps = [10, 20]\nramp_rate = 200\n'
        "hold_s = 2\nwarmup_s = 0\n"
        '[workload]\nkind = "fanout"\nrate = 5.0\nchannel_size = 10\n'
    )
    run_dir = main_run(load_scenario(scenario_file), tmp_path / "results", say=lambda line: None)
    for name in ("run.json", "series.csv", "latency.hlog", "summary.json"):
        assert (run_dir / name).stat().st_size > 0, name
    summary = orjson.loads((run_dir / "summary.json").read_bytes())
    assert summary["partial"] is False
    for transport in ("ws", "sse"):
        result = summary["transports"][transport]
        assert [s["connections"] for s in result["steps"]] == [10, 20]
        assert result["steps"][-1]["latency_ms"]["p99"] is not None
        integrity = result["integrity"]
        assert integrity["balanced"] and integrity["expected"] > 0
        assert integrity["duplicated"] == 0
        assert result["memory"]["rss"]["points"] == 3
        ramps = [s["ramp"] for s in result["steps"]]
        assert [r["opened"] for r in ramps] == [10, 10]  # each step opens only what it adds
        assert all(r["requested_per_s"] == 200 and r["achieved_per_s"] > 0 for r in ramps)
    rows = list(csv.DictReader((run_dir / "series.csv").open()))
    assert {r["transport"] for r in rows} == {"ws", "sse"}
    assert "Tag=ws," in (run_dir / "latency.hlog").read_text()
    assert "integrity: expected" in render_summary(run_dir)


def test_sigint_mid_run_keeps_results_and_marks_them_partial(tmp_path: Path) -> None:
    """Ctrl-C during the second step: exit 130, the first step's figures stay in
    summary.json with partial = true and where it stopped, and the launched server is gone."""
    scenario_file = tmp_path / "long.toml"
    scenario_file.write_text(
        'name = "long"\n[run]\ntransports = ["ws", "sse"]\nsteps = [10, 20]\nramp_rate = 200\n'
        'hold_s = 3\nwarmup_s = 0\n[workload]\nkind = "fanout"\nrate = 5.0\nchannel_size = 10\n'
    )
    out = tmp_path / "results"
    proc = subprocess.Popen(
        [sys.executable, "-m", "rtbench.cli", "run", str(scenario_file), "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        summary: dict[str, object] = {}
        while time.monotonic() < deadline:
            found = list(out.glob("*/summary.json"))
            if found:
                summary = orjson.loads(found[0].read_bytes())
                steps = summary.get("transports", {}).get("ws", {}).get("steps", [])  # type: ignore[attr-defined]
                if len(steps) == 1:
                    break
            time.sleep(0.2)
        else:
            raise AssertionError("the first step never finished")
        run_dir = found[0].parent
        server_pids = summary["transports"]["ws"]["server_pids"]  # type: ignore[index]
        os.kill(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "summary marked partial" in err
    summary = orjson.loads((run_dir / "summary.json").read_bytes())
    assert summary["partial"] is True
    assert "interrupted during ws" in str(summary["stopped"])
    ws = summary["transports"]["ws"]  # type: ignore[index]
    assert ws["steps"][0]["connections"] == 10 and ws["steps"][0]["latency_ms"]["p50"]
    assert ws["integrity"]["balanced"]
    assert "sse" not in summary["transports"]  # type: ignore[operator]
    rows = list(csv.DictReader((run_dir / "series.csv").open()))
    assert rows and (run_dir / "run.json").exists()
    for pid in server_pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_reconnect_storm_resumes_without_loss(tmp_path: Path) -> None:
    """Half the subscribers are cut without a closing handshake mid-hold and resume from
    the last id they saw (WS ``since``, SSE ``Last-Event-ID``): every one comes back and the
    replay fills the gap exactly, no loss and no duplicate."""
    scenario_file = tmp_path / "storm.toml"
    scenario_file.write_text(
        'name = "storm"\n[run]\ntransports = ["ws", "sse", "sse-h2"]\nsteps = [40]\n'
        "ramp_rate = 400\nhold_s = 4\nwarmup_s = 0\nworkers = 1\n"
        '[workload]\nkind = "reconnect-storm"\nrate = 10.0\nchannel_size = 10\n'
        "drop_fraction = 0.5\nstorm_at_s = 1\n"
    )
    run_dir = main_run(load_scenario(scenario_file), tmp_path / "results", say=lambda line: None)
    summary = orjson.loads((run_dir / "summary.json").read_bytes())
    for transport in ("ws", "sse", "sse-h2"):
        result = summary["transports"][transport]
        storm = result["steps"][0]["storm"]
        assert storm["dropped"] == 18  # half of the 36 subscribers; the 4 publishers stay
        assert storm["resumed"] == 18 and storm["failed"] == {}
        assert storm["resume_ms"]["p50"] is not None
        integrity = result["integrity"]
        assert integrity["expected"] > 0 and integrity["balanced"], transport
        assert integrity["lost"] == 0 and integrity["duplicated"] == 0, (transport, integrity)
        # Cut connections and the shutdown after them are expected: no server logs a traceback.
        assert "Traceback" not in (run_dir / f"server-{transport}.log").read_text(), transport


def test_chat_community_with_gated_rooms_and_churn(tmp_path: Path) -> None:
    """Users in Zipf-sized rooms, some trying token-gated rooms, moving between rooms while
    everyone speaks: refusals are counted (not errors), moves happen, and every message owed
    to a member of a room while it was in it arrives once, over WS and SSE, with two workers
    (so a room's speakers sit in different processes)."""
    scenario_file = tmp_path / "chat.toml"
    scenario_file.write_text(
        'name = "chat"\n[run]\ntransports = ["ws", "sse"]\nsteps = [60]\nramp_rate = 600\n'
        "hold_s = 3\nwarmup_s = 0\nworkers = 2\n"
        '[workload]\nkind = "chat"\nrate = 1.0\nrooms = 8\nrooms_per_user = 3\n'
        "gated_share = 0.5\nchurn_per_s = 10\n"
    )
    run_dir = main_run(load_scenario(scenario_file), tmp_path / "results", say=lambda line: None)
    summary = orjson.loads((run_dir / "summary.json").read_bytes())
    for transport in ("ws", "sse"):
        result = summary["transports"][transport]
        step = result["steps"][0]
        assert step["connections"] == 60, (transport, result["errors"])
        assert step["latency_ms"]["p50"] is not None and step["msgs_per_s"] > 60
        assert result["chat"]["gated_refusals"] > 0  # whales need a balance of 900
        assert result["chat"]["room_moves"] > 10
        integrity = result["integrity"]
        assert integrity["expected"] > 0 and integrity["balanced"]
        assert integrity["lost"] == 0 and integrity["duplicated"] == 0, (transport, integrity)
        assert not any(kind.startswith("churn:") for kind in result["errors"]), result["errors"]


def test_probe_samples_a_process_it_did_not_start() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "rtbench.cli",
            "probe",
            "--pid",
            str(os.getpid()),
            "--count",
            "2",
            "--interval",
            "0.2",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"sampling PIDs {os.getpid()} every 0.2 s"
    assert lines[1].split() == ["t_s", "rss_MiB", "uss_MiB", "cpu_%", "fds", "kernel_MiB"]
    rows = [line.split() for line in lines[2:]]
    assert len(rows) == 2 and all(float(row[1]) > 1 for row in rows)
    missing = subprocess.run(
        [sys.executable, "-m", "rtbench.cli", "probe", "--name", "no-such-server-xyz"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert missing.returncode == 2
    assert "no process named or started with 'no-such-server-xyz'" in missing.stderr
