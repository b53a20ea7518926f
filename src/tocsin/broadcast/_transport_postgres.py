"""``postgresql://``: LISTEN/NOTIFY, on two dedicated psycopg connections (no pool).

* A notification is delivered to the sessions listening *when it is
  committed*; a session that was not listening then never sees it
  (at-most-once, like Redis pub/sub), so every LISTEN is reported as a gap.
* The payload must be shorter than 8,000 bytes (PostgreSQL's default):
  the bus refuses larger messages in the sender.
* Connections are psycopg's own in autocommit mode: a listener inside an
  open transaction would hear nothing until it ends, and a pooled
  connection would lose its LISTEN when returned.
* Health: after ``health_interval`` seconds without a notification the
  listener sends ``SELECT 1`` and waits at most ``timeout`` seconds for the
  reply (a half-open TCP connection or a stuck backend otherwise blocks a
  plain ``execute()`` for as long as the kernel keeps the socket: minutes).
* Each connection names itself in ``pg_stat_activity``
  (``tocsin-bus listen <channel>`` / ``tocsin-bus publish <channel>``)
  unless the URL or ``PGAPPNAME`` sets ``application_name``.

The bus publishes only after the sending SQLAlchemy transaction commits (as
on every transport), so nothing here runs inside the application's
transaction.
"""

from __future__ import annotations

import re
import select
import time
from collections.abc import Callable
from typing import Any

from ._errors import BusConfigurationError
from ._transport import LazyPublisher

__all__ = ["PostgresTransport"]


class PostgresTransport(LazyPublisher):
    """PostgreSQL LISTEN/NOTIFY (see the module docstring)."""

    limit = 7999

    def __init__(self, url: str, channel: str, *, timeout: float = 2.0, health_interval: float = 5.0) -> None:
        try:
            import psycopg  # noqa: PLC0415, F401 - the driver a PostgreSQL bus needs
        except ImportError:
            msg = "Bus('postgresql://...') requires psycopg 3: pip install 'psycopg[binary]'"
            raise BusConfigurationError(msg) from None
        # SQLAlchemy URLs name a driver ("postgresql+psycopg://"); libpq does not know it.
        self.url = re.sub(r"^postgres(ql)?\+\w+://", "postgresql://", url)
        self.channel = channel
        self.timeout = timeout
        self.health_interval = health_interval

    def _connect(self, role: str) -> Any:
        import psycopg  # noqa: PLC0415 - checked in __init__

        return psycopg.connect(
            self.url,
            autocommit=True,
            connect_timeout=max(1, round(self.timeout)),
            # libpq's fallback: the URL's or PGAPPNAME's application_name wins (63 bytes at most).
            fallback_application_name=f"tocsin-bus {role} {self.channel}"[:63],
        )

    def publish(self, messages: list[bytes]) -> None:
        with self.publishing(lambda: self._connect("publish")) as publisher:
            # One statement, one round trip; NOTIFYs of one transaction arrive in order.
            publisher.execute(
                "SELECT pg_notify(%s, m) FROM unnest(%s::text[]) WITH ORDINALITY AS t(m, n) ORDER BY n",
                (self.channel, [message.decode() for message in messages]),
            )

    def listen(
        self,
        running: Callable[[], bool],
        subscribed: Callable[[str | None], None],
        deliver: Callable[[bytes], None],
    ) -> None:
        from psycopg import sql  # noqa: PLC0415 - checked in __init__

        conn = self._connect("listen")
        try:
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
            subscribed("subscribed")
            last_seen = time.monotonic()
            while running():
                for notify in conn.notifies(timeout=0.25):
                    last_seen = time.monotonic()
                    deliver(notify.payload.encode())
                if time.monotonic() - last_seen > self.health_interval:
                    self._check(conn.pgconn, deliver)
                    last_seen = time.monotonic()
        finally:
            conn.close()

    def _check(self, pgconn: Any, deliver: Callable[[bytes], None]) -> None:
        """Run ``SELECT 1`` on the listening connection; raise unless it answers within ``timeout``.

        On libpq's asynchronous calls (psycopg's ``execute()`` has no
        deadline). Notifications read meanwhile are delivered afterwards, in
        order (slow receivers must not eat into the reply's deadline).
        """
        from psycopg import pq  # noqa: PLC0415 - checked in __init__

        received: list[bytes] = []
        try:
            pgconn.send_query(b"SELECT 1")  # a few bytes: written at once on a blocking connection
            deadline = time.monotonic() + self.timeout
            while True:
                pgconn.consume_input()
                while (notify := pgconn.notifies()) is not None:
                    received.append(notify.extra)
                if not pgconn.is_busy():
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not select.select([pgconn.socket], [], [], remaining)[0]:
                    msg = f"no reply to SELECT 1 within {self.timeout} s: connection presumed dead"
                    raise ConnectionError(msg)
            while (result := pgconn.get_result()) is not None:
                if result.status != pq.ExecStatus.TUPLES_OK:
                    msg = f"SELECT 1 failed: {pq.error_message(result) or result.status.name}"
                    raise ConnectionError(msg)
        finally:
            for message in received:
                deliver(message)
