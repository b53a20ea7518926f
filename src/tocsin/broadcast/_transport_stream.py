"""``redis+stream://``: a Redis Stream that every process reads from its own last id.

Each message is one ``XADD key MAXLEN ~ maxlen * m <message>`` entry. Every
process runs a plain ``XREAD`` from the last id it read (not a consumer
group, which would split the entries between processes instead of giving
each all of them). So a process that loses its connection for a while
resumes where it stopped and loses nothing, *within the stream's
retention*. A gap is reported:

* on the first subscription (reading starts at the newest entry);
* when entries this process had not read yet were trimmed away: each read
  also reads ``XINFO STREAM`` in the same MULTI, and the oldest entry left
  (``entries-added - length``; Redis >= 7.0) is past the next one this
  process expected. The stream is trimmed only by ``MAXLEN``, never by
  ``XDEL``, for this count to hold;
* when the server restarted (its ``run_id`` changed: without persistence
  the stream is gone; reading restarts from its first entry).

``XREAD BLOCK`` returns at least every 0.25 s, each time reading a reply:
that is the health check.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._redis import client, explained, require
from ._transport import LazyPublisher

__all__ = ["StreamTransport"]


class StreamTransport(LazyPublisher):
    """Redis Streams (see the module docstring)."""

    limit = 512 * 1024 * 1024

    def __init__(self, url: str, channel: str, maxlen: int, *, timeout: float = 2.0) -> None:
        require("redis+stream://")
        self.url = url
        self.key = channel
        self.maxlen = maxlen
        self.timeout = timeout
        self.last_id: bytes = b""  # b"": not subscribed yet
        self.run_id: str | None = None
        self.position = 0  # how many entries the stream had received up to last_id (its entries-added then)

    def publish(self, messages: list[bytes]) -> None:
        with self.publishing(lambda: client(self.url, timeout=self.timeout)) as publisher:
            pipe = publisher.pipeline(transaction=False)
            for message in messages:
                pipe.xadd(self.key, {"m": message}, maxlen=self.maxlen, approximate=True)
            with explained(self.url):
                pipe.execute()

    def _resume(self, conn: Any, subscribed: Callable[[str | None], None]) -> None:
        """Set where reading starts after a (re)connection; report a gap on the first or after a restart."""
        run_id = str(conn.info("server")["run_id"])
        if not self.last_id or run_id != self.run_id:
            info = self._info(conn)
            # The first time: from the newest entry. A new server: everything in its stream is new.
            first = not self.last_id
            self.last_id = info.get("last-generated-id", b"0-0") if first else b"0-0"
            self.position = info.get("entries-added", 0) if first else 0
            subscribed("subscribed" if first else "server restarted")
        else:
            subscribed(None)  # resuming where we stopped: nothing missed (trimming is checked at each read)
        self.run_id = run_id

    def _info(self, conn: Any) -> dict[str, Any]:
        try:
            info: dict[str, Any] = conn.xinfo_stream(self.key)
        except Exception as exc:
            if "no such key" in str(exc).lower():
                return {}
            raise
        return info

    def listen(
        self,
        running: Callable[[], bool],
        subscribed: Callable[[str | None], None],
        deliver: Callable[[bytes], None],
    ) -> None:
        conn = client(self.url, timeout=self.timeout)
        try:
            with explained(self.url):  # the first command connects
                self._resume(conn, subscribed)
            while running():
                # Read and look at the stream's counters in one MULTI, so that both see the same stream.
                pipe = conn.pipeline(transaction=True)
                pipe.xread({self.key: self.last_id}, count=1000)
                pipe.xinfo_stream(self.key)
                found, info = pipe.execute(raise_on_error=False)
                if isinstance(found, Exception):
                    raise found
                entries = found[0][1] if found else []
                if not entries:  # wait for more (read again above, with the trimming check)
                    conn.xread({self.key: self.last_id}, count=1, block=250)
                    continue
                first = self.position + 1  # the number (1, 2, ...) of the entry we expect next
                if isinstance(info, dict) and "entries-added" in info:  # Redis >= 7.0
                    oldest = info["entries-added"] - info["length"] + 1
                    if oldest > first:
                        subscribed("trimmed")  # entries we had not read yet were trimmed away
                        first = oldest
                self.position = first + len(entries) - 1
                for entry_id, fields in entries:
                    self.last_id = entry_id
                    deliver(fields[b"m"])
        finally:
            conn.close()
