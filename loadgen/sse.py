"""A sans-I/O Server-Sent Events decoder (WHATWG HTML, 9.2.6 "Interpreting an event stream").

Feed bytes as they arrive, get complete events back; the I/O layer only pumps bytes.

>>> decoder = SseDecoder()
>>> decoder.feed(b"event: msg\\nid: 7\\ndata: {}\\n\\n")
[SseEvent(event='msg', data='{}', id='7', retry=None)]
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SseEvent:
    event: str
    data: str
    id: str | None
    retry: int | None


class SseDecoder:
    __slots__ = ("_buffer", "_data", "_event", "_retry", "last_event_id")

    def __init__(self) -> None:
        self._buffer = b""
        self._event = ""
        self._data: list[str] = []
        self._retry: int | None = None
        self.last_event_id: str | None = None
        """The last ``id`` seen, kept across events, as ``Last-Event-ID`` needs."""

    def feed(self, chunk: bytes) -> list[SseEvent]:
        buffer = self._buffer + chunk
        events: list[SseEvent] = []
        start = 0
        while True:
            end = buffer.find(b"\n", start)
            if end < 0:
                break
            line = buffer[start:end]
            start = end + 1
            if line.endswith(b"\r"):
                line = line[:-1]
            event = self._line(line.decode("utf-8", "replace"))
            if event is not None:
                events.append(event)
        self._buffer = buffer[start:]
        return events

    def _line(self, line: str) -> SseEvent | None:
        if not line:
            if not self._data:
                self._event = ""
                return None
            event = SseEvent(
                self._event or "message", "\n".join(self._data), self.last_event_id, self._retry
            )
            self._event, self._data, self._retry = "", [], None
            return event
        if line[0] == ":":
            return None
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self.last_event_id = value
        elif name == "retry" and value.isdigit():
            self._retry = int(value)
        return None
