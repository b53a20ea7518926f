"""tocsin.broadcast in one process: several buses on ``memory://`` behave like several processes.

Each bus shares its *own* signal under the same name, as each process would
share its own module's signal. Tests wait on events (receivers that notify),
never on fixed sleeps; "reaches nobody" is proven by a later marker message
arriving first (a bus delivers one publisher's messages in order).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest

from tocsin import Signal, trace
from tocsin.broadcast import (
    Bus,
    BusConfigurationError,
    BusUnavailableError,
    MessageTooLargeError,
    Origin,
    PayloadError,
    is_remote,
    local_only,
    remote_only,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

_names = itertools.count()


class Inbox:
    """A receiver recording ``(sender, kwargs)``; ``wait_for(n)`` waits until n calls arrived."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, dict[str, Any]]] = []
        self._cond = threading.Condition()

    def __call__(self, sender: Any, **kwargs: Any) -> None:
        with self._cond:
            self.calls.append((sender, kwargs))
            self._cond.notify_all()

    def wait_for(
        self, predicate: Callable[[list[tuple[Any, dict[str, Any]]]], bool], timeout: float = 10
    ) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: predicate(self.calls), timeout), self.calls

    def wait_count(self, count: int, timeout: float = 10) -> None:
        self.wait_for(lambda calls: len(calls) >= count, timeout)

    def values(self, key: str) -> list[Any]:
        return [kwargs.get(key) for _sender, kwargs in self.calls]


class Node:
    """One 'process': a bus, its own shared signal, and an inbox connected to it."""

    def __init__(self, url: str, **options: Any) -> None:
        self.bus = Bus(url, **options)
        self.signal = Signal()
        self.inbox = Inbox()
        self.gaps = Inbox()
        self.signal.connect(self.inbox, weak=False)
        self.bus.gap.connect(self.gaps, weak=False)
        self.bus.share(self.signal, name="post")

    def close(self) -> None:
        self.bus.stop()
        self.bus.unshare(self.signal)
        self.signal.disconnect(self.inbox)


def make_nodes() -> Iterator[Callable[..., Node]]:
    """For a ``nodes`` fixture: yield ``make(url, *, start=True, **options)``, then close what it made.

    Nodes reconnect fast (``max_backoff=0.2`` unless given); ``make`` asserts
    that a started one subscribed.
    """
    made: list[Node] = []

    def make(url: str, *, start: bool = True, **options: Any) -> Node:
        node = Node(url, **{"max_backoff": 0.2, **options})
        made.append(node)
        if start:
            assert node.bus.start(), node.bus.status
        return node

    yield make
    for node in made:
        node.close()


def until(condition: Callable[[], bool], timeout: float = 30, what: str = "") -> None:
    """Poll *condition* until it holds; fail the test after *timeout* seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what or condition}")
        time.sleep(0.005)  # polling a status with a deadline: no event to wait on


@pytest.fixture(name="url")
def _url() -> str:
    return f"memory://test-{next(_names)}"


@pytest.fixture(name="nodes")
def _nodes(url: str) -> Iterator[Callable[..., Node]]:
    made: list[Node] = []

    def make(**options: Any) -> Node:
        node = Node(url, **options)
        made.append(node)
        assert node.bus.start()
        return node

    yield make
    for node in made:
        node.close()


class TestSemantics:
    def test_a_send_reaches_the_other_bus_with_origin_and_runs_local_receivers_once(
        self, nodes: Callable[..., Node]
    ) -> None:
        """Local receivers run as usual; the other process gets a re-send carrying ``origin=``."""
        a, b = nodes(), nodes()
        a.signal.send("writer", post_id=7)
        b.inbox.wait_count(1)
        sender, kwargs = b.inbox.calls[0]
        assert sender == "writer"
        assert kwargs["post_id"] == 7
        origin = kwargs["origin"]
        assert type(origin) is Origin
        assert (origin.name, origin.seq, origin.process) == ("post", 1, a.bus.origin_id())
        assert is_remote(kwargs)
        assert a.inbox.calls == [("writer", {"signal": a.signal, "post_id": 7})]

    def test_no_echo(self, nodes: Callable[..., Node]) -> None:
        """A process never receives its own publication back."""
        a, b = nodes(), nodes()
        a.signal.send(None, post_id=1)
        b.inbox.wait_count(1)
        b.signal.send(None, post_id=2)  # the marker: a gets it after its own message, if that came back
        a.inbox.wait_count(2)
        assert a.inbox.values("post_id") == [1, 2]
        assert [is_remote(kwargs) for _s, kwargs in a.inbox.calls] == [False, True]
        assert b.inbox.values("post_id") == [1, 2]

    def test_every_bus_on_the_channel_gets_it(self, nodes: Callable[..., Node]) -> None:
        a, b, c = nodes(), nodes(), nodes()
        a.signal.send(None, post_id=1)
        b.inbox.wait_count(1)
        c.inbox.wait_count(1)
        assert a.bus.status.published == 1
        assert c.bus.status.delivered == 1

    def test_gap_on_subscription(self, url: str) -> None:
        node = Node(url)
        try:
            assert node.bus.start()
            node.gaps.wait_count(1)
            assert node.gaps.calls == [(node.bus, {"signal": node.bus.gap, "reason": "subscribed"})]
            assert node.bus.status.gaps == 1
        finally:
            node.close()

    def test_local_only_and_remote_only(self, nodes: Callable[..., Node]) -> None:
        a, b = nodes(), nodes()
        seen: list[str] = []

        @local_only
        def local(sender: Any, **kwargs: Any) -> None:
            seen.append(f"local {kwargs['post_id']}")

        @remote_only
        def remote(sender: Any, origin: Origin, **kwargs: Any) -> None:
            seen.append(f"remote {kwargs['post_id']}")

        b.signal.connect(local)
        b.signal.connect(remote)
        a.signal.send(None, post_id=1)
        b.inbox.wait_count(1)
        b.signal.send(None, post_id=2)
        assert seen == ["remote 1", "local 2"]
        assert local.__name__ == "local"

    def test_class_senders_resolve_only_to_known_classes(self, nodes: Callable[..., Node]) -> None:
        """A sender class travels by name and resolves to a connection's sender; others are dropped."""
        a, b = nodes(), nodes()
        got = Inbox()
        b.signal.connect(got, sender=KnownSender, weak=False)
        a.signal.send(UnknownSender, post_id=1)  # not known in b: dropped, nothing imported
        a.signal.send(KnownSender, post_id=2)
        got.wait_count(1)
        b.inbox.wait_count(1)
        assert got.calls[0][0] is KnownSender
        assert b.inbox.values("post_id") == [2]
        assert b.bus.status.dropped == {"undecodable": 1}

    def test_tagged_values_round_trip(self, nodes: Callable[..., Node]) -> None:
        import datetime as dt
        import decimal

        a, b = nodes(), nodes()
        values = {
            "when": dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc),
            "amount": decimal.Decimal("1.50"),
            "ids": (1, 2),
        }
        a.signal.send(None, **values)
        b.inbox.wait_count(1)
        received = b.inbox.calls[0][1]
        assert {key: received[key] for key in values} == values

    def test_a_remote_send_is_visible_to_trace_with_its_origin(self, nodes: Callable[..., Node]) -> None:
        a, b = nodes(), nodes()
        with trace(level=None) as tracer:
            a.signal.send(None, post_id=3)
            b.inbox.wait_count(1)
        remote = [s for s in tracer.sends if s.signal is b.signal]
        assert len(remote) == 1
        assert type(remote[0].kwargs["origin"]) is Origin
        assert remote[0].robust
        assert remote[0].thread.startswith("tocsin-bus-listen")
        origin = remote[0].kwargs["origin"]
        assert f"sender=None from {origin.process}#1 via memory://" in tracer.timeline()


class KnownSender:
    pass


class UnknownSender:
    pass


class TestRefusals:
    def test_an_unserialisable_argument_raises_in_the_caller_and_nothing_happens(self, url: str) -> None:
        node = Node(url)
        try:
            with pytest.raises(PayloadError, match=r"^argument lock = <unlocked _thread.lock") as info:
                node.signal.send(None, post_id=1, lock=threading.Lock())
            assert info.value.argument == "lock"
            assert "cannot be broadcast (post)" in str(info.value)
            assert node.inbox.calls == []  # no local receiver ran either
            assert node.bus.status.buffered == 0
        finally:
            node.close()

    def test_a_message_over_the_limit_raises_naming_the_largest_argument(self, url: str) -> None:
        node = Node(url, max_bytes=1000)
        try:
            with pytest.raises(MessageTooLargeError, match=r"largest argument: body") as info:
                node.signal.send(None, post_id=1, body="x" * 2000)
            assert (info.value.argument, info.value.limit) == ("body", 1000)
            assert info.value.size > 2000
            assert isinstance(info.value, ValueError)
            assert node.inbox.calls == []
            assert node.bus.status.buffered == 0
        finally:
            node.close()

    def test_origin_is_reserved(self, url: str) -> None:
        node = Node(url)
        try:
            with pytest.raises(PayloadError, match=r"cannot use that name \(got origin='me'\)"):
                node.signal.send(None, origin="me")
        finally:
            node.close()

    def test_a_full_buffer_raises_instead_of_growing(self, url: str) -> None:
        node = Node(url, buffer=2)  # never started: nothing is published
        try:
            node.signal.send(None, n=1)
            node.signal.send(None, n=2)
            with pytest.raises(BusUnavailableError, match=r"2 messages are already waiting"):
                node.signal.send(None, n=3)
            assert node.inbox.values("n") == [1, 2]
            assert node.bus.status.buffered == 2
        finally:
            node.close()

    @pytest.mark.parametrize(
        ("url", "options", "message"),
        [
            ("kafka://x", {}, r"does not know the URL scheme 'kafka'"),
            (42, {}, r"needs a URL string .* got 42 \(int\)"),
            ("memory://", {"buffer": 0}, r"Bus\(buffer=...\) must be a positive int; got 0"),
            ("memory://", {"channel": "a b"}, r"channel=...\) must be a non-empty string without spaces"),
            ("memory://", {"secret": 5}, r"secret=...\) must be a non-empty str or bytes; got int"),
        ],
    )
    def test_bad_bus_arguments(self, url: Any, options: dict[str, Any], message: str) -> None:
        with pytest.raises(BusConfigurationError, match=message):
            Bus(url, **options)

    def test_share_refusals(self, url: str) -> None:
        first, second = Bus(url), Bus(url)
        sig, other = Signal(), Signal()
        first.share(sig, name="post")
        try:
            assert first.share(sig, name="post") is sig  # idempotent
            with pytest.raises(BusConfigurationError, match=r"already shared on <Bus memory://"):
                second.share(sig, name="post")
            with pytest.raises(BusConfigurationError, match=r"the name 'post' is already shared"):
                first.share(other, name="post")
            with pytest.raises(BusConfigurationError, match=r"no module-level name is bound to it"):
                first.share(other)
            with pytest.raises(BusConfigurationError, match=r"needs a tocsin.Signal; got 'post'"):
                first.share("post")  # type: ignore[arg-type]
            with pytest.raises(BusConfigurationError, match=r"without spaces; got 'a b'"):
                first.share(other, name="a b")
        finally:
            first.unshare(sig)

    def test_default_name_is_the_module_attribute(self, url: str) -> None:
        bus = Bus(url)
        bus.share(module_signal)
        try:
            assert list(bus._shared) == [f"{__name__}:module_signal"]
        finally:
            bus.unshare(module_signal)


module_signal = Signal()


class TestSecurity:
    def test_unknown_names_are_dropped_and_counted(self, nodes: Callable[..., Node], url: str) -> None:
        a, b = nodes(), nodes()
        stranger_bus, stranger = Bus(url), Signal()
        stranger_bus.share(stranger, name="not-shared-here")
        try:
            assert stranger_bus.start()
            stranger.send(None, x=1)
            stranger_bus.flush()
            a.signal.send(None, post_id=2)
            b.inbox.wait_count(1)
            assert b.inbox.values("post_id") == [2]
            assert b.bus.status.dropped == {"unknown": 1}
        finally:
            stranger_bus.stop()
            stranger_bus.unshare(stranger)

    def test_signed_messages(self, nodes: Callable[..., Node]) -> None:
        """Only messages signed with the same secret are re-sent; unsigned and tampered ones are dropped."""
        signed = nodes(secret="s3cret")
        peer = nodes(secret=b"s3cret")
        wrong = nodes(secret="other")
        plain = nodes()
        plain.signal.send(None, post_id=1)  # unsigned: dropped by every bus with a secret
        plain.bus.flush()  # in every inbox before what follows (one order across publishers)
        transport = plain.bus._transport
        from tocsin.broadcast._codec import pack

        good = pack("attacker", 1, "post", '{"sender":null,"kwargs":{"post_id":2}}', b"s3cret")
        transport.publish([good.replace(b"post_id", b"post_ID")])  # tampered after signing
        signed.signal.send(None, post_id=3)
        peer.inbox.wait_for(lambda calls: any(k.get("post_id") == 3 for _s, k in calls))
        assert peer.inbox.values("post_id") == [3]
        assert peer.bus.status.dropped == {"unsigned": 2}
        wrong.signal.send(None, post_id=4)  # signed with another secret: dropped too
        wrong.bus.flush()
        signed.signal.send(None, post_id=5)
        peer.inbox.wait_for(lambda calls: any(k.get("post_id") == 5 for _s, k in calls))
        assert peer.inbox.values("post_id") == [3, 5]
        assert peer.bus.status.dropped == {"unsigned": 3}
        # A bus without a secret cannot check signatures: it takes every well-formed message.
        plain.inbox.wait_for(lambda calls: any(k.get("post_id") == 5 for _s, k in calls))
        assert plain.inbox.values("post_id") == [1, None, 3, 4, 5]


class TestFailures:
    def test_a_failing_receiver_is_logged_and_the_listener_continues(
        self, nodes: Callable[..., Node], caplog: pytest.LogCaptureFixture
    ) -> None:
        a, b = nodes(), nodes()

        def broken(sender: Any, **kwargs: Any) -> None:
            if kwargs.get("post_id") == 1:
                raise RuntimeError("boom")

        b.signal.connect(broken)
        with caplog.at_level(logging.ERROR, logger="tocsin"):
            a.signal.send(None, post_id=1)
            a.signal.send(None, post_id=2)
            b.inbox.wait_count(2)
        assert b.inbox.values("post_id") == [1, 2]
        assert b.bus.status.state == "connected"
        assert any("raised RuntimeError: boom" in r.getMessage() for r in caplog.records)

    def test_stop_publishes_what_is_queued_and_is_idempotent(self, url: str) -> None:
        a, b = Node(url), Node(url)
        try:
            assert b.bus.start()
            a.signal.send(None, post_id=1)  # queued before a starts
            assert a.bus.status.buffered == 1
            assert a.bus.start()
            b.inbox.wait_count(1)
            a.bus.stop()
            a.bus.stop()
            assert a.bus.status.state == "stopped"
            assert a.bus.status.published == 1
        finally:
            a.close()
            b.close()


class TestAsync:
    def test_async_with_re_sends_on_the_event_loop(self, url: str) -> None:
        a = Node(url)
        receiver_sig = Signal()
        bus = Bus(url)
        bus.share(receiver_sig, name="post")
        arrived: list[tuple[int, bool]] = []

        async def main() -> None:
            loop = asyncio.get_running_loop()
            done = asyncio.Event()

            async def on_post(sender: Any, post_id: int, **kwargs: Any) -> None:
                arrived.append((post_id, asyncio.get_running_loop() is loop))
                done.set()

            receiver_sig.connect(on_post)
            async with bus:
                assert a.bus.start()
                a.signal.send(None, post_id=5)
                await asyncio.wait_for(done.wait(), 10)

        try:
            asyncio.run(main())
        finally:
            bus.unshare(receiver_sig)
            a.close()
        assert arrived == [(5, True)]


def test_notify_payload_limit_is_enforced_in_the_sender() -> None:
    pytest.importorskip("psycopg")
    bus, signal = Bus("postgresql+psycopg://nobody@127.0.0.1:1/none"), Signal()  # never connects: not started
    bus.share(signal, name="post")
    try:
        assert bus.max_bytes == 7999
        with pytest.raises(
            MessageTooLargeError,
            match=r"over the 7,999-byte limit .*\(largest argument: body.*\(the transport allows no more\)",
        ):
            signal.send(None, body="x" * 8000)
        signal.send(None, body="x" * 7000)
        assert bus.status.buffered == 1
    finally:
        bus.unshare(signal)


def test_a_remote_send_span_carries_its_origin(nodes: Callable[..., Node]) -> None:
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    import tocsin.otel

    a, b = nodes(), nodes()
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    remove = tocsin.otel.instrument(tracer_provider=provider)
    try:
        a.signal.send(None, post_id=1)
        a.signal.send(None, post_id=2)  # once b runs it, b's span of the first re-send has ended
        b.inbox.wait_count(2)
    finally:
        remove()
        provider.shutdown()
    sends = [span for span in exporter.get_finished_spans() if span.name.startswith("send ")]
    origins = [span.attributes.get("tocsin.origin") for span in sends if span.attributes]
    assert f"{a.bus.origin_id()}#1" in origins  # the remote re-send in b
    assert None in origins  # the local send in a has none


def test_memory_and_plain_redis_need_no_package_and_streams_name_the_extra() -> None:
    """memory:// and redis:// (tocsin speaks RESP itself) import nothing; redis+stream:// needs redis-py."""
    import subprocess
    import sys
    import textwrap

    code = """
        import sys
        sys.modules["redis"] = None  # as if it were not installed
        from tocsin.broadcast import Bus, BusConfigurationError
        Bus("memory://x").start()
        Bus("redis://127.0.0.1:1/0")
        try:
            Bus("redis+stream://127.0.0.1:1/0")
        except BusConfigurationError as exc:
            print(exc)
        print([m for m in ("sqlalchemy", "psycopg", "celery") if m in sys.modules])
    """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "Bus('redis+stream://...') requires redis-py: pip install 'tocsin[redis]'",
        "[]",
    ]
