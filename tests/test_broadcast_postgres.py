"""tocsin.broadcast's LISTEN/NOTIFY transport losing its connections on the suite's real PostgreSQL.

The bus's connections are found in ``pg_stat_activity`` by the
``application_name`` the transport gives them; they are killed the way
production loses them: ``pg_terminate_backend()`` (an administrator, a
failover, ``idle_session_timeout``) and a backend that stops answering
(``SIGSTOP``: what a half-open TCP connection or a stuck server looks
like from the client). Tests wait on events and on polling with
deadlines, never on fixed sleeps.
"""

from __future__ import annotations

import itertools
import os
import signal
from typing import TYPE_CHECKING, Any

import pytest

from test_broadcast import Node, until

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

psycopg = pytest.importorskip("psycopg", reason="psycopg is not installed: pip install 'psycopg[binary]'")

_channels = itertools.count()


@pytest.fixture(name="admin")
def _admin(postgres_url: str) -> Iterator[Any]:
    conn = psycopg.connect(postgres_url.replace("+psycopg", "", 1), autocommit=True)
    try:
        yield conn
    finally:
        conn.close()


@pytest.fixture(name="nodes")
def _nodes(postgres_url: str) -> Iterator[Callable[..., Node]]:
    """Nodes on one channel of their own (the server is the session's, shared with other tests)."""
    channel = f"t{os.getpid()}_{next(_channels)}"
    made: list[Node] = []

    def make(**options: Any) -> Node:
        node = Node(postgres_url, **{"channel": channel, "max_backoff": 0.2, **options})
        made.append(node)
        assert node.bus.start(), node.bus.status
        return node

    yield make
    for node in made:
        node.close()


def _backends(admin: Any, role: str, channel: str) -> set[int]:
    """The pids of the bus connections in *role* (``listen``/``publish``) on *channel*."""
    rows = admin.execute(
        "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (f"tocsin-bus {role} {channel}",)
    ).fetchall()
    return {pid for (pid,) in rows}


def _reasons(node: Node) -> list[str]:
    return [kwargs["reason"] for _sender, kwargs in node.gaps.calls]


def test_terminated_backends_are_noticed_and_replaced(admin: Any, nodes: Callable[..., Node]) -> None:
    """pg_terminate_backend() on the listener and the publisher: gap, one reconnect each, messages flow."""
    listener = nodes()
    channel = listener.bus._transport.channel  # type: ignore[attr-defined] # the transport's own name
    (listening,) = _backends(admin, "listen", channel)
    sender = nodes()
    sender.signal.send(None, n=1)
    listener.inbox.wait_count(1)
    (publishing,) = _backends(admin, "publish", channel)

    for pid in (listening, publishing):
        assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone() == (True,)
    listener.gaps.wait_count(2)  # noticed at once: the server closed the socket
    assert _reasons(listener) == ["subscribed", "subscribed"]
    status = listener.bus.status
    assert (status.state, status.reconnects, status.gaps) == ("connected", 1, 2)
    assert status.last_error is not None
    assert "server closed the connection" in status.last_error or "terminat" in status.last_error
    assert listening not in _backends(admin, "listen", channel)  # a new backend listens

    sender.signal.send(None, n=2)  # the publisher finds its connection dead, reconnects and retries
    listener.inbox.wait_count(2)
    assert listener.inbox.values("n") == [1, 2]
    assert sender.bus.flush()  # its counter moves once execute() returned, maybe after the delivery
    assert (sender.bus.status.reconnects, sender.bus.status.published) == (1, 2)
    assert _reasons(sender) == ["subscribed"]  # the sender's own listener was left alone


@pytest.mark.skipif(
    bool(os.environ.get("TOCSIN_NOT_DEFAULT_PYTHON")),
    reason="waits out a health check and its timeout: default Python only",
)
def test_the_health_check_gives_up_on_a_backend_that_stops_answering(
    admin: Any, nodes: Callable[..., Node]
) -> None:
    """SELECT 1 unanswered within timeout: presumed dead, replaced, gap; later messages arrive."""
    listener = nodes(health_check=0.2, timeout=0.5)
    channel = listener.bus._transport.channel  # type: ignore[attr-defined] # the transport's own name
    (listening,) = _backends(admin, "listen", channel)

    def last_query() -> str:
        row = admin.execute("SELECT query FROM pg_stat_activity WHERE pid = %s", (listening,)).fetchone()
        return "" if row is None else str(row[0])

    until(lambda: last_query() == "SELECT 1", timeout=10, what="the listener's first health check")
    os.kill(listening, signal.SIGSTOP)  # the socket stays open; nothing answers
    try:
        listener.gaps.wait_count(2)
        status = listener.bus.status
        assert status.last_error == (
            "ConnectionError: no reply to SELECT 1 within 0.5 s: connection presumed dead"
        )
        assert (status.state, status.reconnects) == ("connected", 1)
        assert _reasons(listener) == ["subscribed", "subscribed"]
    finally:
        os.kill(listening, signal.SIGCONT)
    sender = nodes()
    sender.signal.send(None, n=1)
    listener.inbox.wait_count(1)
    assert listening not in _backends(admin, "listen", channel)
