"""Live progress on a terminal (rich): one row per transport, refreshed every second.

Off a terminal (CI logs, pipes) the coordinator prints one plain line per second instead.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table


def _ms(value: float | None) -> str:
    return "--" if value is None else f"{value:,.2f} ms"


class LiveView:
    """``update(row, errors)`` with each merged per-second row; ``say(text)`` for events."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console()
        self.rows: dict[str, tuple[dict[str, Any], dict[str, int]]] = {}
        self.live = Live(self._render(), console=self.console, refresh_per_second=4)

    def __enter__(self) -> LiveView:
        self.live.__enter__()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.live.__exit__(kind, value, traceback)

    def say(self, text: str) -> None:
        self.live.console.print(text, markup=False, highlight=False)

    def update(self, row: dict[str, Any], errors: dict[str, int]) -> None:
        self.rows[row["transport"]] = (row, errors)
        self.live.update(self._render())

    def _render(self) -> Table:
        table = Table(title="rtbench", expand=False)
        for column in ("transport", "phase", "connections", "msgs/s in", "p50", "p99"):
            table.add_column(column, justify="right" if column != "transport" else "left")
        table.add_column("errors by kind")
        table.add_column("gen cpu", justify="right")
        table.add_column("gen lag p99", justify="right")
        for name, (row, errors) in self.rows.items():
            table.add_row(
                name,
                row["phase"],
                f"{row['connections']:,} / {row['target']:,}",
                f"{row['msgs_in_per_s']:,}",
                _ms(row["p50_ms"]),
                _ms(row["p99_ms"]),
                ", ".join(f"{k} {v:,}" for k, v in sorted(errors.items())) or "none",
                f"{row['gen_cpu_pct']:.0f}%",
                _ms(row["gen_loop_lag_p99_ms"]),
            )
        return table
