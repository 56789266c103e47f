"""Counters of one server process, rendered in the Prometheus text format (version 0.0.4)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

_HELP = {
    "rtbench_connections": ("gauge", "Open client connections by transport."),
    "rtbench_messages_in_total": ("counter", "Client frames and POSTs accepted, by transport."),
    "rtbench_messages_out_total": ("counter", "Frames queued to clients, by transport."),
    "rtbench_publishes_total": ("counter", "Messages published to channels."),
    "rtbench_send_queue_disconnects_total": ("counter", "Slow consumers disconnected."),
    "rtbench_resumes_total": ("counter", "Resumes by outcome (recovered or not)."),
    "rtbench_auth_failures_total": ("counter", "Refused tokens by HTTP status."),
    "rtbench_errors_total": ("counter", "Error ops sent, by code."),
    "rtbench_clock_drift_rejections_total": ("counter", "Timestamps refused by the HLC bound."),
}


@dataclass(slots=True)
class Metrics:
    connections: Counter[str] = field(default_factory=Counter)
    messages_in: Counter[str] = field(default_factory=Counter)
    messages_out: Counter[str] = field(default_factory=Counter)
    publishes: int = 0
    send_queue_disconnects: int = 0
    resumes: Counter[str] = field(default_factory=Counter)
    auth_failures: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    clock_drift_rejections: int = 0

    def render(self, node: str) -> str:
        series: dict[str, list[tuple[str, float]]] = {
            "rtbench_connections": _labelled("transport", self.connections),
            "rtbench_messages_in_total": _labelled("transport", self.messages_in),
            "rtbench_messages_out_total": _labelled("transport", self.messages_out),
            "rtbench_publishes_total": [("", self.publishes)],
            "rtbench_send_queue_disconnects_total": [("", self.send_queue_disconnects)],
            "rtbench_resumes_total": _labelled("outcome", self.resumes),
            "rtbench_auth_failures_total": _labelled("status", self.auth_failures),
            "rtbench_errors_total": _labelled("code", self.errors),
            "rtbench_clock_drift_rejections_total": [("", self.clock_drift_rejections)],
        }
        lines = []
        for name, samples in series.items():
            kind, text = _HELP[name]
            lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
            for labels, value in samples:
                joined = f'node="{node}"' + (f",{labels}" if labels else "")
                lines.append(f"{name}{{{joined}}} {value:g}")
        return "\n".join(lines) + "\n"


def _labelled(label: str, counter: Counter[str]) -> list[tuple[str, float]]:
    return [(f'{label}="{key}"', value) for key, value in sorted(counter.items())]
