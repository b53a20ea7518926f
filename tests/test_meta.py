"""Meta-signals, named signals, the namespace registry and introspection."""

from __future__ import annotations

import functools
import gc
import logging
import threading
import weakref
from typing import TYPE_CHECKING, Any

import pytest

import tocsin
from tocsin._core import hooks

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture(name="events")
def _events() -> Iterator[list[tuple[str, dict[str, Any]]]]:
    events: list[tuple[str, dict[str, Any]]] = []

    def on_connect(sender: Any, **kwargs: Any) -> None:
        kwargs.pop("signal")
        events.append(("connected", {"sig": sender, **kwargs}))

    def on_disconnect(sender: Any, **kwargs: Any) -> None:
        kwargs.pop("signal")
        events.append(("disconnected", {"sig": sender, **kwargs}))

    tocsin.receiver_connected.connect(on_connect)
    tocsin.receiver_disconnected.connect(on_disconnect)
    yield events
    tocsin.receiver_connected.disconnect(on_connect)
    tocsin.receiver_disconnected.disconnect(on_disconnect)


def handler(sender: Any, **kwargs: Any) -> None:
    pass


class TestMetaSignals:
    def test_connect_and_disconnect(self, events: list[Any]) -> None:
        """Each connection change is reported once, after it happened."""
        sig = tocsin.Signal()
        sig.connect(handler, sender="s", dispatch_uid="u")
        sig.connect(handler, sender="s", dispatch_uid="u")  # duplicate: nothing
        sig.disconnect(handler, sender="s", dispatch_uid="u")
        sig.disconnect(handler, sender="s", dispatch_uid="u")  # nothing left: nothing
        assert events == [
            ("connected", {"sig": sig, "receiver": handler, "for_sender": "s", "dispatch_uid": "u"}),
            (
                "disconnected",
                {"sig": sig, "receiver": handler, "for_sender": "s", "dispatch_uid": "u", "collected": False},
            ),
        ]

    def test_watcher_may_connect(self, events: list[Any]) -> None:
        """Meta-signals are sent outside the lock: a watcher can connect to the same signal."""
        sig = tocsin.Signal()
        other_handler_calls: list[Any] = []

        def other(sender: Any, **kwargs: Any) -> None:
            other_handler_calls.append(sender)

        def reentrant(sender: Any, receiver: Any, **kwargs: Any) -> None:
            if receiver is handler:
                sender.connect(other)

        tocsin.receiver_connected.connect(reentrant)
        try:
            sig.connect(handler)
        finally:
            tocsin.receiver_connected.disconnect(reentrant)
        assert sig.receivers_for(None) == [handler, other]

    def test_collected_receiver_reported_at_next_operation(self, events: list[Any]) -> None:
        """A weak receiver's death is reported at the signal's next send, before its receivers."""
        sig = tocsin.Signal()

        def temp(sender: Any, **kwargs: Any) -> None:
            pass

        sig.connect(temp)
        order: list[str] = []
        sig.connect(lambda sender, **kw: order.append("receiver ran"))
        events.clear()
        del temp
        gc.collect()
        assert events == []  # nothing is sent from the weakref callback

        def reported(sender: Any, **kwargs: Any) -> None:
            order.append("reported")

        tocsin.receiver_disconnected.connect(reported)
        try:
            sig.send(None)
        finally:
            tocsin.receiver_disconnected.disconnect(reported)
        assert ("disconnected", {"sig": sig, "receiver": None, "for_sender": None, "dispatch_uid": None,
                                 "collected": True}) in events  # fmt: skip
        assert order[:2] == ["reported", "receiver ran"]

    def test_dead_sender_reported(self, events: list[Any]) -> None:
        """A connection ending because its weak sender died is reported as collected."""
        sig = tocsin.Signal()

        class Sender:
            pass

        s = Sender()
        sig.connect(handler, sender=s)
        events.clear()
        del s
        gc.collect()
        sig.connect(handler, sender="other")
        kinds = [(kind, e.get("collected"), e["receiver"]) for kind, e in events]
        assert kinds == [("disconnected", True, handler), ("connected", None, handler)]

    def test_watcher_for_a_dead_signal_goes_with_it(self) -> None:
        """A watcher connected for one signal is released as that signal dies, and watching stops."""
        sig = tocsin.Signal()
        watcher = functools.partial(handler)  # held strongly
        tocsin.receiver_connected.connect(watcher, sender=sig)
        ref = weakref.ref(watcher)
        del watcher
        assert hooks.connection_watcher is not None
        del sig
        assert ref() is None
        assert hooks.connection_watcher is None  # connect() no longer checks for watchers

    def test_failing_watcher_is_logged_not_raised(self, caplog: pytest.LogCaptureFixture) -> None:
        """A watcher raising never makes connect() fail; the error is logged."""

        def broken(sender: Any, **kwargs: Any) -> None:
            raise RuntimeError("watcher bug")

        tocsin.receiver_connected.connect(broken)
        try:
            with caplog.at_level(logging.ERROR, logger="tocsin"):
                tocsin.Signal().connect(handler)
        finally:
            tocsin.receiver_connected.disconnect(broken)
        assert "broken" in caplog.text

    def test_meta_signals_do_not_report_themselves(self, events: list[Any]) -> None:
        """Connecting to a meta-signal is not itself reported (watchers never see each other)."""
        tocsin.receiver_connected.connect(handler)
        tocsin.receiver_connected.disconnect(handler)
        assert events == []

    def test_nothing_queued_without_watchers(self) -> None:
        """With no watcher, connection changes queue nothing."""
        sig = tocsin.Signal()
        sig.connect(handler)
        sig.disconnect(handler)
        assert sig._changes == []

    def test_threads(self, events: list[Any]) -> None:
        """Concurrent connects are each reported exactly once."""
        sig = tocsin.Signal()
        receivers = [lambda sender, **kw: None for _ in range(40)]

        def work(chunk: list[Any]) -> None:
            for r in chunk:
                sig.connect(r)

        threads = [threading.Thread(target=work, args=(receivers[i::4],)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        reported = [e["receiver"] for kind, e in events if kind == "connected"]
        assert sorted(map(id, reported)) == sorted(map(id, receivers))


class TestNamedSignals:
    def test_namespace_returns_same_signal(self) -> None:
        """One name, one signal; the first doc wins."""
        ns = tocsin.Namespace()
        a = ns.signal("order-placed", doc="first")
        assert ns.signal("order-placed", doc="second") is a
        assert a.name == "order-placed"
        assert a.doc == "first"
        assert "order-placed" in ns
        assert ns["order-placed"] is a
        assert list(ns) == ["order-placed"]
        assert len(ns) == 1
        assert repr(ns) == "<Namespace ['order-placed']>"

    def test_default_namespace(self) -> None:
        """tocsin.signal(name) is process-wide."""
        assert tocsin.signal("test-meta-default") is tocsin.signal("test-meta-default")

    def test_readable_repr_and_log(self, caplog: pytest.LogCaptureFixture) -> None:
        """A named signal shows its name in repr, also on the records send_robust logs."""
        sig = tocsin.Signal(name="payment_failed")
        assert repr(sig).startswith("<Signal 'payment_failed' at 0x")

        def fails(sender: Any, **kwargs: Any) -> None:
            raise ValueError

        sig.connect(fails)
        with caplog.at_level(logging.ERROR, logger="tocsin"):
            sig.send_robust(None)
        (record,) = caplog.records
        assert record.signal is sig  # type: ignore[attr-defined]
        assert "payment_failed" in repr(record.signal)  # type: ignore[attr-defined]


class TestIntrospection:
    def test_defining_module(self) -> None:
        """Signals record the module constructing them, also through factories and subclasses."""

        class Sub(tocsin.Signal):
            def __init__(self) -> None:
                super().__init__(name="sub")

        here = __name__
        assert tocsin.Signal().module == here
        assert Sub().module == here
        assert tocsin.Namespace().signal("x").module == here
        assert tocsin.signal("test-meta-module").module == here
        assert tocsin.receiver_connected.module == "tocsin"

    def test_all_signals_is_weak(self) -> None:
        """all_signals() lists live signals, sorted, and forgets collected ones."""
        sig = tocsin.Signal(name="test-meta-findable")
        assert sig in tocsin.all_signals()
        listed = [s for s in tocsin.all_signals() if s.module == __name__ and s.name]
        assert listed == sorted(listed, key=lambda s: s.name or "")
        ident = id(sig)
        del sig, listed
        gc.collect()
        assert ident not in {id(s) for s in tocsin.all_signals()}


class TestProvidingArgs:
    def test_deprecated(self) -> None:
        """providing_args= is accepted with a DeprecationWarning pointing at the caller."""
        with pytest.warns(DeprecationWarning, match=r"removed it in 4\.0.*doc=.*TypedSignal") as record:
            sig = tocsin.Signal(providing_args=["instance", "created"])
        assert record[0].filename == __file__
        sig.connect(handler)
        assert sig.send(None) == [(handler, None)]


def test_no_watcher_left_behind() -> None:
    """The tests above disconnect every watcher (a leak would slow every later test)."""
    assert not tocsin.receiver_connected.receivers_for(None)
    assert not tocsin.receiver_disconnected.receivers_for(None)
