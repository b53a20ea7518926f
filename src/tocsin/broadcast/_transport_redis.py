"""``redis://``: Redis pub/sub, at-most-once to the processes subscribed at that moment.

One channel per bus (``Bus(..., channel="tocsin")``) carries every shared
signal. The listener checks its connection's health itself, reading the
reply: after ``health_interval`` seconds without traffic it sends ``PING``
on the subscribed connection and treats a missing ``pong`` within
``timeout`` as a dead connection (a half-open TCP connection otherwise
looks like a quiet channel forever: redis-py#2417, celery#10502). The
listener reads the socket itself, and the publisher writes each batch of
``PUBLISH`` commands in one write and reads the replies in one go (``_resp``:
a few µs a message instead of redis-py's 16 for ``get_message()`` and about
6 for a pipelined command; ``rediss://`` uses redis-py for TLS). Every
subscribe confirmation, the first included, is reported as a gap: pub/sub
keeps nothing for a process that was not subscribed.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from . import _resp
from ._redis import client, explained, require
from ._transport import LazyPublisher

_PING = _resp.command(b"PING", b"tocsin-health")


def _dispatch(
    buffer: bytes, subscribed: Callable[[str | None], None], deliver: Callable[[bytes], None]
) -> tuple[bytes, bool]:
    """Handle every complete push in *buffer*; return the incomplete rest and whether a pong came."""
    pos = 0
    ponged = False
    while (parsed := _resp.parse(buffer, pos)) is not None:
        reply, pos = parsed
        kind = reply[0] if type(reply) is list else None
        if kind == b"message":
            deliver(reply[2])
        elif kind == b"pong":
            ponged = True
        elif kind == b"subscribe":
            subscribed("subscribed")
    return buffer[pos:], ponged


def _no_pong(timeout: float) -> ConnectionError:
    return ConnectionError(f"no reply to PING within {timeout} s: connection presumed dead")


__all__ = ["RedisTransport"]


class RedisTransport(LazyPublisher):
    """Redis pub/sub (see the module docstring); the publisher is a socket, or redis-py's client for TLS."""

    limit = 512 * 1024 * 1024  # Redis's own bulk string limit; the bus's max_bytes is lower

    def __init__(self, url: str, channel: str, *, timeout: float = 2.0, health_interval: float = 5.0) -> None:
        self.url = url
        self.channel = channel
        self.timeout = timeout
        self.health_interval = health_interval
        # TLS and redis-py's URL options need redis-py; plain TCP and unix sockets use _resp.
        self.use_redis_py = url.startswith("rediss")
        if self.use_redis_py:
            require(url)

    def publish(self, messages: list[bytes]) -> None:
        if self.use_redis_py:
            self._publish_redis_py(messages)
            return
        with self.publishing(lambda: _resp.connect(self.url, self.timeout)) as sock:
            # One write and one read of all the replies: a pipeline without redis-py's per-command cost.
            channel = self.channel.encode()
            sock.sendall(b"".join([_resp.command(b"PUBLISH", channel, message) for message in messages]))
            _resp.read_replies(sock, len(messages))

    def _publish_redis_py(self, messages: list[bytes]) -> None:
        with self.publishing(lambda: client(self.url, timeout=self.timeout)) as publisher:
            pipe = publisher.pipeline(transaction=False)
            for message in messages:
                pipe.publish(self.channel, message)
            with explained(self.url):
                pipe.execute()

    def listen(
        self,
        running: Callable[[], bool],
        subscribed: Callable[[str | None], None],
        deliver: Callable[[bytes], None],
    ) -> None:
        if self.use_redis_py:
            self._listen_redis_py(running, subscribed, deliver)
            return
        sock = _resp.connect(self.url, self.timeout)
        try:
            sock.sendall(_resp.command(b"SUBSCRIBE", self.channel.encode()))
            sock.settimeout(0.25)  # how often running() is checked
            buffer = b""
            last_seen = time.monotonic()
            ping_sent: float | None = None
            while running():
                try:
                    chunk = sock.recv(1 << 16)
                except TimeoutError:
                    now = time.monotonic()
                    if ping_sent is not None:
                        if now - ping_sent > self.timeout:
                            raise _no_pong(self.timeout) from None
                    elif now - last_seen > self.health_interval:
                        sock.sendall(_PING)
                        ping_sent = now
                    continue
                if not chunk:
                    msg = "connection closed by the server"
                    raise ConnectionError(msg)
                last_seen = time.monotonic()
                buffer, ponged = _dispatch(buffer + chunk, subscribed, deliver)
                if ponged:
                    ping_sent = None
        finally:
            sock.close()

    def _listen_redis_py(
        self,
        running: Callable[[], bool],
        subscribed: Callable[[str | None], None],
        deliver: Callable[[bytes], None],
    ) -> None:
        """The same loop on redis-py's PubSub, for TLS (``rediss://``) and its URL options."""
        pubsub = client(self.url, timeout=self.timeout).pubsub()
        try:
            with explained(self.url):  # the first command connects
                pubsub.subscribe(self.channel)
            last_seen = time.monotonic()
            ping_sent: float | None = None
            while running():
                message = pubsub.get_message(timeout=0.25)
                now = time.monotonic()
                if message is None:
                    if ping_sent is not None:
                        if now - ping_sent > self.timeout:
                            raise _no_pong(self.timeout)
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
