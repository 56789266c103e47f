"""The load generator end to end: a real `rtbench serve` launched by a real run, results on disk."""

from __future__ import annotations

import csv
from pathlib import Path

import orjson

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
    rows = list(csv.DictReader((run_dir / "series.csv").open()))
    assert {r["transport"] for r in rows} == {"ws", "sse"}
    assert "Tag=ws," in (run_dir / "latency.hlog").read_text()
    assert "integrity: expected" in render_summary(run_dir)
