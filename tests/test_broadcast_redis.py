"""tocsin.broadcast on a real redis-server, in one process: streams replay, trimming, reconnection, health.

Several buses in this process stand for several processes (each shares its
own signal under the same name). Tests wait on events and on status
polling with deadlines, never on fixed sleeps.
"""

from __future__ import annotations

import os
import threading
import time
from typing import TYPE_CHECKING

import pytest

pytest.importorskip("redis", reason="redis-py is not installed: pip install 'tocsin[redis]'")

import redis as redis_py

from _redis import RedisServer, RedisUnavailableError
from test_broadcast import Node, make_nodes, until

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator


@pytest.fixture(name="redis")
def _redis() -> Iterator[RedisServer]:
    try:
        server = RedisServer()
        server.start()
    except RedisUnavailableError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and redis-server is unavailable: {exc}", pytrace=False)
        pytest.skip(str(exc))
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(name="nodes")
def _nodes() -> Iterator[Callable[..., Node]]:
    yield from make_nodes()


def _reasons(node: Node) -> list[str]:
    return [kwargs["reason"] for _sender, kwargs in node.gaps.calls]


def test_streams_lose_nothing_while_a_subscriber_is_disconnected_for_a_second(
    redis: RedisServer, nodes: Callable[..., Node]
) -> None:
    """10,000 messages; one of two subscribers is away for a second mid-traffic; both get all, in order."""
    url = redis.url.replace("redis", "redis+stream", 1)
    publisher, steady, flaky = nodes(url), nodes(url), nodes(url)
    total = 10_000
    sent = threading.Event()

    def traffic() -> None:
        for n in range(total):
            publisher.signal.send(None, n=n)
            if n % 200 == 199:
                sent.wait(0.01)  # pacing the traffic over ~0.5 s, not waiting for anything
        sent.set()

    sender = threading.Thread(target=traffic)
    sender.start()
    flaky.inbox.wait_count(1_000)
    flaky.bus.stop()
    disconnected = time.monotonic()
    received_before = len(flaky.inbox.calls)
    until(lambda: time.monotonic() - disconnected >= 1.0 and sent.is_set(), what="a second of traffic")
    assert len(flaky.inbox.calls) == received_before  # really disconnected
    assert flaky.bus.start()
    sender.join()
    for node in (steady, flaky):
        node.inbox.wait_count(total, timeout=60)
    assert publisher.bus.status.published == total
    assert steady.inbox.values("n") == list(range(total))
    assert flaky.inbox.values("n") == list(range(total))  # none lost, none twice, in order
    assert _reasons(flaky) == ["subscribed"]  # resuming within the retention is no gap


def test_a_stream_trimmed_past_a_subscriber_sends_gap(redis: RedisServer, nodes: Callable[..., Node]) -> None:
    url = redis.url.replace("redis", "redis+stream", 1)
    publisher, late = nodes(url, maxlen=10), nodes(url)
    publisher.signal.send(None, n=-1)
    late.inbox.wait_count(1)
    late.bus.stop()
    for n in range(1000):  # MAXLEN ~ 10 trims whole nodes of 100 entries
        publisher.signal.send(None, n=n)
    assert publisher.bus.flush()
    assert late.bus.start()
    late.gaps.wait_for(lambda calls: len(calls) >= 2)
    assert _reasons(late) == ["subscribed", "trimmed"]
    late.inbox.wait_for(lambda calls: calls[-1][1]["n"] == 999)
    assert late.bus.status.gaps == 2


def test_pubsub_resubscribes_after_its_connection_is_killed(
    redis: RedisServer, nodes: Callable[..., Node]
) -> None:
    publisher, subscriber = nodes(redis.url), nodes(redis.url)
    admin = redis_py.Redis.from_url(redis.url)
    try:
        assert admin.client_kill_filter(_type="pubsub") >= 1
        subscriber.gaps.wait_count(2)
        assert _reasons(subscriber) == ["subscribed", "subscribed"]
        assert subscriber.bus.status.reconnects == 1
        publisher.signal.send(None, n=1)
        subscriber.inbox.wait_count(1)
        assert subscriber.bus.status.state == "connected"
    finally:
        admin.close()


@pytest.mark.skipif(
    bool(os.environ.get("TOCSIN_NOT_DEFAULT_PYTHON")),
    reason="waits out a 1.5 s server pause: default Python only",
)
def test_the_health_check_reads_the_reply(redis: RedisServer, nodes: Callable[..., Node]) -> None:
    """A connection that stops answering (the server paused) is presumed dead, replaced, and a gap sent."""
    subscriber = nodes(redis.url, health_check=0.1, timeout=0.5)
    admin = redis_py.Redis.from_url(redis.url)
    try:
        admin.execute_command("CLIENT", "PAUSE", "1500", "ALL")
        subscriber.gaps.wait_count(2, timeout=20)
        status = subscriber.bus.status
        assert status.reconnects >= 1
        assert status.last_error is not None
        assert "no reply to PING" in status.last_error or "Timeout" in status.last_error
    finally:
        admin.close()


def test_a_password_protected_server(redis: RedisServer, nodes: Callable[..., Node]) -> None:
    """The listener's own socket reader authenticates; a wrong password is a connection error, retried."""
    admin = redis_py.Redis.from_url(redis.url)
    try:
        admin.config_set("requirepass", "s3cret")
        url = redis.url.replace("redis://", "redis://:s3cret@", 1)
        publisher, subscriber = nodes(url), nodes(url)
        publisher.signal.send(None, n=1)
        subscriber.inbox.wait_count(1)
        assert subscriber.bus.status.published == 0
        assert "s3cret" not in repr(subscriber.bus)
        assert ":***@" in subscriber.bus.url
        refused = nodes(redis.url.replace("redis://", "redis://:wrong@", 1), start=False)
        assert not refused.bus.start(wait=0.5)
        until(lambda: refused.bus.status.last_error is not None, what="the AUTH error")
        assert "AUTH refused" in str(refused.bus.status.last_error)
        assert refused.bus.status.state in {"disconnected", "connecting"}
    finally:
        admin = redis_py.Redis.from_url(redis.url.replace("redis://", "redis://:s3cret@", 1))
        admin.config_set("requirepass", "")
        admin.close()


def test_the_redis_py_path_used_for_tls(redis: RedisServer, nodes: Callable[..., Node]) -> None:
    """rediss:// publishes and listens through redis-py: forced here on a plain server (no certificates)."""
    publisher, subscriber = nodes(redis.url, start=False), nodes(redis.url, start=False)
    for node in (publisher, subscriber):
        node.bus._transport.use_redis_py = True  # type: ignore[attr-defined]
        assert node.bus.start()
    publisher.signal.send(None, n=1)
    publisher.signal.send(None, n=2)
    subscriber.inbox.wait_count(2)
    assert subscriber.inbox.values("n") == [1, 2]
    admin = redis_py.Redis.from_url(redis.url)
    try:
        assert admin.client_kill_filter(_type="pubsub") >= 1
    finally:
        admin.close()
    subscriber.gaps.wait_count(2)
    publisher.signal.send(None, n=3)
    subscriber.inbox.wait_count(3)
