"""Connection records, keys, sender anchors and plans (see tocsin._core.records)."""

from __future__ import annotations

import gc
import inspect
import weakref
from typing import TYPE_CHECKING, Any

import pytest
from tests.test_signal_weakref import retained_bytes

import tocsin
from tocsin._core import receivers as _receivers
from tocsin._core import records as _connections
from tocsin._core import senders as _senders
from tocsin._core.plans import _DEFAULT, _STALE_TABLE, _table_of
from tocsin._core.records import (
    HeldSender,
    SenderRef,
    anchor_of,
    connection_key,
    dispatch_uid_of,
    find_anchor,
    is_async,
    is_plain,
    is_weak,
    make_record,
    priority_of,
    receiver_key_of,
    resolve,
    scope_of,
    sender_key,
    sender_of,
    via_of,
)
from tocsin.testing import mute

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable


class Sender:
    pass


def handler(**kwargs: Any) -> str:
    return "handler"


def other(**kwargs: Any) -> str:
    return "other"


async def async_handler(**kwargs: Any) -> str:
    return "async"


class PassThrough:
    """An interceptor that delivers every send unchanged."""

    def send(self, dispatch: Any, proceed: Callable[[], Any]) -> Any:
        del dispatch
        return proceed()

    async def asend(self, dispatch: Any, proceed: Callable[[], Awaitable[Any]]) -> Any:
        del dispatch
        return await proceed()


@pytest.fixture(name="sig")
def _sig() -> tocsin.Signal:
    return tocsin.Signal()


def only_record(sig: tocsin.Signal) -> _connections.Record:
    (record,) = sig._records.values()
    return record


class TestRecords:
    def test_defaults_make_the_short_record(self) -> None:
        """All options at their defaults: (deref, func, anchor) and nothing else."""
        deref = weakref.ref(handler)
        record = make_record(deref, None, None)
        assert record == (deref, None, None)
        assert (priority_of(record), dispatch_uid_of(record), via_of(record)) == (0, None, None)
        assert not is_async(record)
        assert scope_of(record) is None
        assert is_plain(record)
        assert is_weak(record)
        assert resolve(record) is handler
        assert sender_key(record) == _senders.ANY_KEY
        assert sender_of(record) is None

    def test_options_read_back(self) -> None:
        """Every option given to make_record() is read back by its reader."""
        sender = Sender()
        _, anchor = _connections.hold_sender(sender, lambda ref: None)

        def policy(call: Any) -> None:
            del call

        record = make_record(
            weakref.ref(handler), None, anchor, priority=3, dispatch_uid="uid", via=policy, is_async=True
        )
        assert anchor_of(record) is anchor
        assert sender_of(record) is sender
        assert sender_key(record) == id(sender)
        assert (priority_of(record), dispatch_uid_of(record), via_of(record)) == (3, "uid", policy)
        assert is_async(record)
        assert not is_plain(record)

    def test_local_connection_is_not_plain(self) -> None:
        scope = object()
        record = make_record(weakref.ref(handler), None, None, scope=scope)
        assert scope_of(record) is scope
        assert not is_plain(record)

    def test_inlined_connect_builds_what_make_record_builds(self, sig: tocsin.Signal) -> None:
        """connect()'s inlined paths build the owner's layout, under the owner's keys."""
        sender = Sender()
        sig.connect(handler)
        sig.connect(other, sender=sender)
        plain, with_sender = sig._records.items()
        assert plain[1] == make_record(plain[1][0], None, None)
        assert with_sender[1] == make_record(with_sender[1][0], None, anchor_of(with_sender[1]))
        assert plain[0] == connection_key(_receivers.receiver_key(handler), _senders.send_key(None))
        assert with_sender[0] == connection_key(_receivers.receiver_key(other), _senders.send_key(sender))

    def test_strong_receiver_is_not_weak(self, sig: tocsin.Signal) -> None:
        sig.connect(handler, weak=False)
        assert not is_weak(only_record(sig))
        assert sig.connections()[0].weak is False


class TestKeys:
    def test_receiver_key_read_back(self) -> None:
        """receiver_key_of() undoes connection_key() for every kind of key."""
        receiver, sender = Sender(), Sender()
        method_key = (id(receiver), id(handler))
        value_key = _senders.send_key("text")
        cases = [
            (id(receiver), _senders.ANY_KEY),
            (method_key, _senders.ANY_KEY),
            (("uid", "x"), _senders.ANY_KEY),
            (id(receiver), id(sender)),
            (method_key, id(sender)),
            (id(receiver), value_key),
        ]
        for rkey, skey in cases:
            assert receiver_key_of(connection_key(rkey, skey)) == rkey

    def test_one_int_for_two_ids(self) -> None:
        """A receiver and a sender keyed by id() make one int, above every id()."""
        receiver, sender = Sender(), Sender()
        key = connection_key(id(receiver), id(sender))
        assert key.__class__ is int
        assert key >= 1 << 64

    def test_object_both_receiver_and_sender(self, sig: tocsin.Signal) -> None:
        """Its any-sender and its own-sender connections are two connections."""

        class Both:
            def __call__(self, **kwargs: Any) -> str:
                return "both"

        both = Both()
        sig.connect(both)
        sig.connect(both, sender=both)
        assert len(sig.connections()) == 2
        assert [r for _, r in sig.send(both)] == ["both", "both"]
        assert sig.disconnect(both, sender=both)
        assert [r for _, r in sig.send(both)] == ["both"]

    def test_mute_finds_a_receiver_connected_for_a_sender(self, sig: tocsin.Signal) -> None:
        """mute(receiver) reads the receiver back from a two-id key."""
        sender = Sender()
        sig.connect(handler, sender=sender)
        with mute(handler):
            assert sig.send(sender) == []
        assert sig.send(sender) == [(handler, "handler")]


class TestPlans:
    def test_plans_are_the_records(self, sig: tocsin.Signal) -> None:
        """A plan holds the connection records themselves, not copies."""
        senders = [Sender() for _ in range(3)]
        sig.connect(handler)
        for sender in senders:
            sig.connect(other, sender=sender)
        for sender in senders:
            sig.send(sender)
        records = {id(record) for record in sig._records.values()}
        for sender in senders:
            plan = sig._routes[id(sender)]
            assert plan.__class__ is tuple
            assert len(plan) == 2
            assert {id(record) for record in plan} <= records
        assert sig._routes[_DEFAULT][0] is sig._records[id(handler)]


class TestSenderAnchors:
    def test_anchor_per_signal_shared_by_its_connections(self) -> None:
        """Two signals: one weak reference each, whatever the number of connections."""
        one, two = tocsin.Signal(), tocsin.Signal()
        sender = Sender()
        for receiver in (handler, other):
            one.connect(receiver, sender=sender)
            two.connect(receiver, sender=sender, priority=1)  # the general path
        two.connect(async_handler, sender=sender)
        assert weakref.getweakrefcount(sender) == 2
        anchors = {id(anchor_of(r)) for sig in (one, two) for r in sig._records.values()}
        assert len(anchors) == 2
        for sig in (one, two):
            anchor = find_anchor(sender, sig._death_callback)
            assert anchor is not None
            assert anchor.key == id(sender)
            assert all(anchor_of(r) is anchor for r in sig._records.values())

    def test_find_anchor_ignores_other_references(self, sig: tocsin.Signal) -> None:
        sender = Sender()
        plain = weakref.ref(sender, sig._death_callback)
        other_signal = tocsin.Signal()
        other_signal.connect(handler, sender=sender)
        assert find_anchor(sender, sig._death_callback) is None
        sig.connect(handler, sender=sender)
        assert find_anchor(sender, sig._death_callback) is anchor_of(only_record(sig))
        del plain

    def test_anchor_being_made_elsewhere_is_skipped(self, sig: tocsin.Signal) -> None:
        """A SenderRef another thread has made but not keyed yet is not shared."""
        sender = Sender()
        unkeyed = SenderRef(sender, sig._death_callback)  # as between creation and `.key = ...`
        sig.connect(handler, sender=sender)
        sig.connect(other, sender=sender, priority=1)
        anchors = {id(anchor_of(r)) for r in sig._records.values()}  # weakrefs compare by referent
        assert id(unkeyed) not in anchors
        assert len(anchors) == 1
        assert [r for _, r in sig.send(sender)] == ["other", "handler"]
        unkeyed.conns = None  # the other thread goes on
        unkeyed.key = id(sender)

    def test_released_with_the_last_connection(self, sig: tocsin.Signal) -> None:
        """Whatever the order and path of the disconnects, the last one frees the anchor."""
        sender = Sender()
        sig.connect(handler, sender=sender)
        sig.connect(other, sender=sender, dispatch_uid="uid")
        sig.send(sender)
        assert weakref.getweakrefcount(sender) == 1
        assert sig.disconnect(handler, sender=sender)
        assert weakref.getweakrefcount(sender) == 1
        sig.connect(handler, sender=sender)  # finds the anchor again
        assert weakref.getweakrefcount(sender) == 1
        assert sig.disconnect(dispatch_uid="uid", sender=sender)
        assert sig.disconnect(handler, sender=sender)
        assert weakref.getweakrefcount(sender) == 0
        assert sig.send(sender) == []

    def test_dead_sender_key_dropped_from_published_routes(self, sig: tocsin.Signal) -> None:
        """The anchor carries the key its death callback pops from the table sends read."""
        sender = Sender()
        key = id(sender)
        sig.connect(handler, sender=sender)
        sig.send(sender)
        routes = sig._routes
        assert key in routes
        del sender
        gc.collect()
        assert key not in routes  # the very table a concurrent send may still hold
        assert sig._routes is _STALE_TABLE
        assert sig.connections() == []

    def test_dead_sender_key_dropped_while_intercepted(self, sig: tocsin.Signal) -> None:
        """Interceptors installed: the table behind the published routes drops it too."""
        sender = Sender()
        key = id(sender)
        sig.connect(handler, sender=sender)
        sig.send(sender)
        remove = sig.add_interceptor(PassThrough())
        try:
            table = _table_of(sig._routes)
            assert key in table
            assert key not in sig._routes
            del sender
            gc.collect()
            assert key not in table
        finally:
            remove()

    def test_held_sender_anchor(self, sig: tocsin.Signal) -> None:
        """Senders held strongly: by value, or by identity for unhashable ones."""
        key = ["unhashable"]
        sig.connect(handler, sender="text")
        sig.connect(other, sender=key)
        by_value, by_identity = (anchor_of(r) for r in sig._records.values())
        assert isinstance(by_value, HeldSender)
        assert by_value.by_value
        assert sender_of(only_record_of(sig, "text")) == "text"
        assert isinstance(by_identity, HeldSender)
        assert not by_identity.by_value
        assert by_identity.sender is key

    def test_anchor_names_its_connections(self, sig: tocsin.Signal) -> None:
        """One key while the sender has one connection, a list beyond; both paths keep it."""
        sender = Sender()
        sig.connect(handler, sender=sender)
        anchor = find_anchor(sender, sig._death_callback)
        assert anchor is not None
        assert anchor.conns == connection_key(id(handler), id(sender))
        assert anchor.conns in sig._records  # the same key object: one pointer
        sig.connect(other, sender=sender, priority=1)  # the general path
        assert anchor.conns.__class__ is list
        assert set(anchor.conns) == set(sig._records)
        sig.disconnect(handler, sender=sender)
        assert anchor.conns == connection_key(id(other), id(sender))
        sig.disconnect(other, sender=sender)
        assert anchor.conns is None

    def test_death_drops_only_its_connections(self, sig: tocsin.Signal) -> None:
        """A sender's death removes its connections promptly, through its anchor."""
        doomed, kept = Sender(), Sender()
        strong = lambda **kwargs: "strong"
        sig.connect(strong, sender=doomed)
        sig.connect(handler, sender=doomed)
        sig.connect(handler, sender=kept)
        sig.connect(other)
        strong_ref = weakref.ref(strong)
        del strong
        del doomed
        gc.collect()
        assert strong_ref() is None  # released with its sender, not at the next use
        assert len(sig._records) == 2
        assert [r for _, r in sig.send(kept)] == ["handler", "other"]

    def test_sender_ref_is_a_weak_reference(self) -> None:
        sender = Sender()
        ref = SenderRef(sender)
        assert ref() is sender
        assert isinstance(ref, weakref.ref)


def only_record_of(sig: tocsin.Signal, sender: object) -> _connections.Record:
    (record,) = (r for r in sig._records.values() if sender_of(r) == sender)
    return record


class TestMemory:
    def test_per_sender_connections_retain_nothing(self, sig: tocsin.Signal) -> None:
        """Connecting, sending and disconnecting with ever new senders leaves nothing behind."""
        keep = [Sender() for _ in range(20)]

        def cycle() -> None:
            fresh = Sender()
            for sender in (fresh, *keep):
                sig.connect(handler, sender=sender)
                sig.connect(other, sender=sender, priority=2)
            sig.send(fresh)
            sig.send(keep[0])
            for sender in (fresh, *keep):
                sig.disconnect(handler, sender=sender)
                sig.disconnect(other, sender=sender)

        assert retained_bytes(cycle, 200) < 2000
        assert sig.connections() == []
        assert all(weakref.getweakrefcount(sender) == 0 for sender in keep)

    def test_dead_senders_retain_nothing(self, sig: tocsin.Signal) -> None:
        """Senders dying while connected take their anchors and keys with them."""

        def churn() -> None:
            senders = [Sender() for _ in range(10)]
            for sender in senders:
                sig.connect(handler, sender=sender)
            sig.send(senders[0])
            del senders, sender

        assert retained_bytes(churn, 200) < 2000
        sig.send(None)
        assert sig.connections() == []


class TestConnectSignature:
    def test_options_are_keyword_only(self) -> None:
        """inspect.signature() shows priority=, via= and on_error= keyword-only."""
        params = inspect.signature(tocsin.Signal.connect).parameters
        assert list(params) == [
            "self",
            "receiver",
            "sender",
            "weak",
            "dispatch_uid",
            "priority",
            "via",
            "on_error",
        ]
        assert params["priority"].kind is inspect.Parameter.KEYWORD_ONLY
        assert params["via"].kind is inspect.Parameter.KEYWORD_ONLY
        assert params["on_error"].kind is inspect.Parameter.KEYWORD_ONLY

    @pytest.mark.parametrize("fifth", [5, None, "x"], ids=repr)
    def test_fifth_positional_argument_refused(self, sig: tocsin.Signal, fifth: object) -> None:
        refused = r"at most 4 positional arguments .* Pass priority=, via= and on_error= by keyword"
        with pytest.raises(TypeError, match=refused):
            sig.connect(handler, None, True, None, fifth)  # type: ignore[call-overload]
        with pytest.raises(TypeError, match=r"at most 4 positional arguments"):
            sig.connect(None, None, True, None, fifth)  # type: ignore[call-overload]
        assert sig.connections() == []

    def test_keywords_still_work(self, sig: tocsin.Signal) -> None:
        sig.connect(handler, priority=1)
        sig.connect(other, None, True, None, priority=2)
        assert [r for r, _ in sig.send(None)] == [other, handler]
