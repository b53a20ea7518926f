"""``redis://``: Redis pub/sub, at-most-once to the processes subscribed at that moment.

One channel per bus (``Bus(..., channel="tocsin")``) carries every shared
signal. The listener checks its connection's health itself, reading the
reply: after ``health_interval`` seconds without traffic it sends ``PING``
on the subscribed connection and treats a missing ``pong`` within
``timeout`` as a dead connection (a half-open TCP connection otherwise
looks like a quiet channel forever: redis-py#2417, celery#10502). Every
subscribe confirmation, the first included, is reported as a gap: pub/sub
keeps nothing for a process that was not subscribed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ._redis import client

__all__ = ["RedisTransport"]


class RedisTransport:
    """Redis pub/sub (see the module docstring)."""

    limit = 512 * 1024 * 1024  # Redis's own bulk string limit; the bus's max_bytes is lower

    def __init__(self, url: str, channel: str, *, timeout: float = 2.0, health_interval: float = 5.0) -> None:
        self.url = url
        self.channel = channel
        self.timeout = timeout
        self.health_interval = health_interval
        self._publisher: Any = None

    def publish(self, messages: list[bytes]) -> None:
        if self._publisher is None:
            self._publisher = client(self.url, timeout=self.timeout)
        try:
            if len(messages) == 1:
                self._publisher.publish(self.channel, messages[0])
                return
            pipe = self._publisher.pipeline(transaction=False)
            for message in messages:
                pipe.publish(self.channel, message)
            pipe.execute()
        except Exception:
            publisher, self._publisher = self._publisher, None
            publisher.close()
            raise

    def listen(
        self,
        running: Callable[[], bool],
        subscribed: Callable[[str | None], None],
        deliver: Callable[[bytes], None],
    ) -> None:
        pubsub = client(self.url, timeout=self.timeout).pubsub()
        try:
            pubsub.subscribe(self.channel)
            last_seen = time.monotonic()
            ping_sent: float | None = None
            while running():
                message = pubsub.get_message(timeout=0.25)
                now = time.monotonic()
                if message is None:
                    if ping_sent is not None:
                        if now - ping_sent > self.timeout:
                            msg = f"no reply to PING within {self.timeout} s: connection presumed dead"
                            raise ConnectionError(msg)
                    elif now - last_seen > self.health_interval:
                        pubsub.ping("tocsin-health")
                        ping_sent = now
                    continue
                last_seen = now
                kind = message["type"]
                if kind == "message":
                    deliver(message["data"])
                elif kind == "pong":
                    ping_sent = None
                elif kind == "subscribe":
                    subscribed("subscribed")
        finally:
            pubsub.close()

    def interrupt(self) -> None:
        """Nothing to do: ``listen()`` polls ``running()`` every 0.25 s."""

    def close(self) -> None:
        publisher, self._publisher = self._publisher, None
        if publisher is not None:
            publisher.close()
