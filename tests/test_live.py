"""The live progress table: what a terminal shows while a run goes."""

from __future__ import annotations

import io

from rich.console import Console

from loadgen.live import LiveView


def _row(transport: str, **values: object) -> dict[str, object]:
    row: dict[str, object] = {
        "transport": transport,
        "phase": "hold",
        "connections": 4_998,
        "target": 5_000,
        "msgs_in_per_s": 12_345,
        "p50_ms": 1.5,
        "p99_ms": 17.25,
        "gen_cpu_pct": 41.6,
        "gen_loop_lag_p99_ms": 2.0,
    }
    row.update(values)
    return row


def test_live_view_shows_each_transport_with_its_errors_and_lag() -> None:
    console = Console(file=io.StringIO(), record=True, width=160, force_terminal=True)
    with LiveView(console) as view:
        view.say("ws: ramping to 5000 connections at 1000/s")
        view.update(_row("ws"), {"refused": 2, "close_1008": 1})
        view.update(_row("sse", phase="warmup", p50_ms=None, p99_ms=None), {})
        view.update(_row("ws", connections=5_000), {"refused": 2, "close_1008": 1})
    text = console.export_text()
    assert "ws: ramping to 5000 connections at 1000/s" in text
    final = text[text.rindex("rtbench") :]  # the last frame drawn
    ws = next(line for line in final.splitlines() if "│ ws " in line)
    assert "5,000 / 5,000" in ws
    assert "12,345" in ws
    assert "1.50 ms" in ws and "17.25 ms" in ws
    assert "close_1008 1, refused 2" in ws
    assert "42%" in ws
    sse = next(line for line in final.splitlines() if "│ sse " in line)
    assert "warmup" in sse and "--" in sse and "none" in sse
