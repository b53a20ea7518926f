"""A thread-safe ordered record of events, shared by the real-server tests."""

from __future__ import annotations

import threading
from typing import Any

TIMEOUT = 5.0


class EventLog:
    """Thread-safe ordered record of signals and app events, with a 'finished' event."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: list[tuple[str, Any]] = []
        self.finished = threading.Event()

    def add(self, name: str, detail: Any = None) -> None:
        with self.lock:
            self.events.append((name, detail))

    def names(self) -> list[str]:
        with self.lock:
            return [name for name, _ in self.events]

    def wait_finished(self) -> None:
        assert self.finished.wait(TIMEOUT), f"request_finished not sent; events: {self.names()}"
