"""rtbench: WebSocket or Server-Sent Events, measured."""

__version__ = "0.1.0"
