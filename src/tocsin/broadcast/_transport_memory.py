"""``memory://name``: buses of one process exchanging messages like separate processes.

For tests and demos: each bus on ``memory://name`` receives what the others
(and itself: the bus drops its own messages as echoes) publish there, after
it subscribed, as Redis pub/sub would. Delivery is reliable while the
buses run; nothing leaves the process.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from urllib.parse import urlsplit

__all__ = ["MemoryTransport"]

_lock = threading.Lock()
_channels: dict[str, list[queue.SimpleQueue[bytes | None]]] = {}


class MemoryTransport:
    """In-process pub/sub (see the module docstring)."""

    limit = 1 << 20

    def __init__(self, url: str, channel: str) -> None:
        parts = urlsplit(url)
        self.key = f"{parts.netloc}{parts.path}\0{channel}"
        self._inbox: queue.SimpleQueue[bytes | None] | None = None

    def publish(self, messages: list[bytes]) -> None:
        with _lock:
            inboxes = list(_channels.get(self.key, ()))
        for inbox in inboxes:
            for message in messages:
                inbox.put(message)

    def listen(
        self,
        running: Callable[[], bool],
        subscribed: Callable[[str | None], None],
        deliver: Callable[[bytes], None],
    ) -> None:
        inbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._inbox = inbox
        with _lock:
            _channels.setdefault(self.key, []).append(inbox)
        try:
            subscribed("subscribed")
            while running():
                message = inbox.get()
                if message is not None:
                    deliver(message)
        finally:
            with _lock:
                inboxes = _channels.get(self.key, [])
                inboxes.remove(inbox)
                if not inboxes:
                    _channels.pop(self.key, None)

    def interrupt(self) -> None:
        inbox = self._inbox
        if inbox is not None:
            inbox.put(None)

    def close(self) -> None:
        self._inbox = None
