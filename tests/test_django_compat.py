"""Django compatibility.

``TestDispatcher`` and ``TestReceiver`` replay the scenarios of Django 5.2's
``tests/dispatch/tests.py`` against ``tocsin.Signal`` and ``tocsin.receiver``
(Django's checks of the private ``signal.receivers`` list become checks of
``connections()`` and ``has_listeners()``). ``TestSideBySide`` runs common
scenarios against both ``django.dispatch`` and tocsin, which must agree.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import weakref
from types import TracebackType
from typing import Any

import pytest

import tocsin
from _reuse import AddressReuse


def receiver_1_arg(val: Any, **kwargs: Any) -> Any:
    return val


async def receiver_1_arg_async(val: Any, **kwargs: Any) -> Any:
    return val


class Callable:
    def __call__(self, val: Any, **kwargs: Any) -> Any:
        return val

    def a(self, val: Any, **kwargs: Any) -> Any:
        return val


a_signal = tocsin.Signal()
b_signal = tocsin.Signal()
c_signal = tocsin.Signal()
d_signal = tocsin.Signal(use_caching=True)


def assert_clean(signal: tocsin.Signal) -> None:
    """Everything connected during a test has been cleaned up."""
    assert not signal.has_listeners()
    assert signal.connections() == []


@pytest.fixture(autouse=True)
def _clean_module_signals() -> Any:
    yield
    for signal in (a_signal, b_signal, c_signal, d_signal):
        for connection in signal.connections():
            signal.disconnect(connection.receiver, connection.sender, connection.dispatch_uid)


class TestDispatcher:
    def test_cannot_connect_no_kwargs(self) -> None:
        """Django checks this only with DEBUG=True; tocsin always does."""

        def receiver_no_kwargs(sender: object) -> None:
            pass

        with pytest.raises(
            ValueError, match=r"Signal receivers must accept keyword arguments \(\*\*kwargs\)\."
        ):
            a_signal.connect(receiver_no_kwargs)
        assert_clean(a_signal)

    def test_cannot_connect_non_callable(self) -> None:
        with pytest.raises(TypeError, match=r"Signal receivers must be callable\."):
            a_signal.connect(object())  # type: ignore[call-overload]
        assert_clean(a_signal)

    def test_send(self) -> None:
        a_signal.connect(receiver_1_arg, sender=self)
        result = a_signal.send(sender=self, val="test")
        assert result == [(receiver_1_arg, "test")]
        a_signal.disconnect(receiver_1_arg, sender=self)
        assert_clean(a_signal)

    def test_send_no_receivers(self) -> None:
        result = a_signal.send(sender=self, val="test")
        assert result == []

    def test_send_connected_no_sender(self) -> None:
        a_signal.connect(receiver_1_arg)
        result = a_signal.send(sender=self, val="test")
        assert result == [(receiver_1_arg, "test")]
        a_signal.disconnect(receiver_1_arg)
        assert_clean(a_signal)

    def test_send_different_no_sender(self) -> None:
        a_signal.connect(receiver_1_arg, sender=object)
        result = a_signal.send(sender=self, val="test")
        assert result == []
        a_signal.disconnect(receiver_1_arg, sender=object)
        assert_clean(a_signal)

    def test_unweakrefable_sender(self) -> None:
        sender = object()
        a_signal.connect(receiver_1_arg, sender=sender)
        result = a_signal.send(sender=sender, val="test")
        assert result == [(receiver_1_arg, "test")]
        a_signal.disconnect(receiver_1_arg, sender=sender)
        assert_clean(a_signal)

    def test_garbage_collected(self) -> None:
        a = Callable()
        a_signal.connect(a.a, sender=self)
        del a
        gc.collect()
        result = a_signal.send(sender=self, val="test")
        assert result == []
        assert_clean(a_signal)

    def test_garbage_collected_sender(self) -> None:
        """Not in Django: a collected sender takes its connections along."""

        class Sender:
            pass

        sender = Sender()
        a_signal.connect(receiver_1_arg, sender=sender)
        del sender
        gc.collect()
        assert_clean(a_signal)

    def test_send_mixed(self) -> None:
        """Django 5's variant of test_send: a sync and an async receiver."""
        a_signal.connect(receiver_1_arg, sender=self)
        a_signal.connect(receiver_1_arg_async, sender=self)
        result = a_signal.send(sender=self, val="test")
        assert result == [(receiver_1_arg, "test"), (receiver_1_arg_async, "test")]
        a_signal.disconnect(receiver_1_arg, sender=self)
        a_signal.disconnect(receiver_1_arg_async, sender=self)
        assert_clean(a_signal)

    def test_send_robust_mixed(self) -> None:
        a_signal.connect(receiver_1_arg)
        a_signal.connect(receiver_1_arg_async)
        result = a_signal.send_robust(sender=self, val="test")
        assert result == [(receiver_1_arg, "test"), (receiver_1_arg_async, "test")]
        a_signal.disconnect(receiver_1_arg)
        a_signal.disconnect(receiver_1_arg_async)
        assert_clean(a_signal)

    def test_garbage_collected_sender_id_reuse(self) -> None:
        """Django 5.1's test, with a real id() reuse instead of a patched _make_id."""
        signal = tocsin.Signal()

        class Sender:
            pass

        def first_receiver(attempt: str, **kwargs: Any) -> str:
            return attempt

        def second_receiver(attempt: str, **kwargs: Any) -> str:
            return attempt

        heap = AddressReuse(Sender)
        sender = heap.new()
        signal.connect(first_receiver, sender)
        assert signal.send(sender, attempt="first") == [(first_receiver, "first")]
        dead = id(sender)
        del sender
        gc.collect()
        sender = heap.reuse(dead)
        signal.connect(second_receiver, sender)
        assert signal.send(sender, attempt="second") == [(second_receiver, "second")]

    def test_cached_garbaged_collected(self) -> None:
        """Sending from a class on a caching signal does not keep the class alive."""

        class sender:
            pass

        wref = weakref.ref(sender)
        d_signal.connect(receiver_1_arg)
        d_signal.send(sender, val="garbage")
        del sender
        gc.collect()
        try:
            assert wref() is None
        finally:
            d_signal.disconnect(receiver_1_arg)

    def test_multiple_registration(self) -> None:
        a = Callable()
        for _ in range(6):
            a_signal.connect(a)
        result = a_signal.send(sender=self, val="test")
        assert len(result) == 1
        assert len(a_signal.connections()) == 1
        del a
        del result
        gc.collect()
        assert_clean(a_signal)

    def test_uid_registration(self) -> None:
        def uid_based_receiver_1(**kwargs: Any) -> None:
            pass

        def uid_based_receiver_2(**kwargs: Any) -> None:
            pass

        a_signal.connect(uid_based_receiver_1, dispatch_uid="uid")
        a_signal.connect(uid_based_receiver_2, dispatch_uid="uid")
        assert len(a_signal.connections()) == 1
        a_signal.disconnect(dispatch_uid="uid")
        assert_clean(a_signal)

    def test_send_robust_success(self) -> None:
        a_signal.connect(receiver_1_arg)
        result = a_signal.send_robust(sender=self, val="test")
        assert result == [(receiver_1_arg, "test")]
        a_signal.disconnect(receiver_1_arg)
        assert_clean(a_signal)

    def test_send_robust_no_receivers(self) -> None:
        result = a_signal.send_robust(sender=self, val="test")
        assert result == []

    def test_send_robust_ignored_sender(self) -> None:
        a_signal.connect(receiver_1_arg)
        result = a_signal.send_robust(sender=self, val="test")
        assert result == [(receiver_1_arg, "test")]
        a_signal.disconnect(receiver_1_arg)
        assert_clean(a_signal)

    def test_send_robust_fail(self, caplog: pytest.LogCaptureFixture) -> None:
        """As Django, logged on 'tocsin' (Django: 'django.dispatch')."""

        def fails(val: Any, **kwargs: Any) -> None:
            raise ValueError("this")

        a_signal.connect(fails)
        caplog.set_level(logging.ERROR, logger="tocsin")
        try:
            result = a_signal.send_robust(sender=self, val="test")
            err = result[0][1]
            assert isinstance(err, ValueError)
            assert err.args == ("this",)
            assert isinstance(err.__traceback__, TracebackType)
            (log_record,) = caplog.records
            assert log_record.name == "tocsin"
            assert log_record.getMessage() == (
                "Error calling TestDispatcher.test_send_robust_fail.<locals>.fails in "
                "Signal.send_robust() (this)"
            )
            assert log_record.exc_info is not None
            _, exc_value, _ = log_record.exc_info
            assert isinstance(exc_value, ValueError)
            assert str(exc_value) == "this"
        finally:
            a_signal.disconnect(fails)
        assert_clean(a_signal)

    def test_disconnection(self) -> None:
        receiver_1 = Callable()
        receiver_2 = Callable()
        receiver_3 = Callable()
        a_signal.connect(receiver_1)
        a_signal.connect(receiver_2)
        a_signal.connect(receiver_3)
        a_signal.disconnect(receiver_1)
        del receiver_2
        gc.collect()
        a_signal.disconnect(receiver_3)
        assert_clean(a_signal)

    def test_values_returned_by_disconnection(self) -> None:
        receiver_1 = Callable()
        receiver_2 = Callable()
        a_signal.connect(receiver_1)
        receiver_1_disconnected = a_signal.disconnect(receiver_1)
        receiver_2_disconnected = a_signal.disconnect(receiver_2)
        assert receiver_1_disconnected is True
        assert receiver_2_disconnected is False
        assert_clean(a_signal)

    def test_has_listeners(self) -> None:
        assert not a_signal.has_listeners()
        assert not a_signal.has_listeners(sender=object())
        receiver_1 = Callable()
        a_signal.connect(receiver_1)
        assert a_signal.has_listeners()
        assert a_signal.has_listeners(sender=object())
        a_signal.disconnect(receiver_1)
        assert not a_signal.has_listeners()
        assert not a_signal.has_listeners(sender=object())


class TestDispatcherAsync:
    """Django 5's asend()/asend_robust() scenarios."""

    def test_asend(self) -> None:
        a_signal.connect(receiver_1_arg_async, sender=self)
        result = asyncio.run(a_signal.asend(sender=self, val="test"))
        assert result == [(receiver_1_arg_async, "test")]
        a_signal.disconnect(receiver_1_arg_async, sender=self)
        assert_clean(a_signal)

    def test_asend_no_receivers(self) -> None:
        assert asyncio.run(a_signal.asend(sender=self, val="test")) == []

    def test_asend_connected_no_sender(self) -> None:
        a_signal.connect(receiver_1_arg_async)
        result = asyncio.run(a_signal.asend(sender=self, val="test"))
        assert result == [(receiver_1_arg_async, "test")]
        a_signal.disconnect(receiver_1_arg_async)
        assert_clean(a_signal)

    def test_asend_different_no_sender(self) -> None:
        a_signal.connect(receiver_1_arg_async, sender=object)
        assert asyncio.run(a_signal.asend(sender=self, val="test")) == []
        a_signal.disconnect(receiver_1_arg_async, sender=object)
        assert_clean(a_signal)

    def test_asend_unweakrefable_sender(self) -> None:
        sender = object()
        a_signal.connect(receiver_1_arg_async, sender=sender)
        result = asyncio.run(a_signal.asend(sender=sender, val="test"))
        assert result == [(receiver_1_arg_async, "test")]
        a_signal.disconnect(receiver_1_arg_async, sender=sender)
        assert_clean(a_signal)

    def test_asend_garbage_collected_receiver(self) -> None:
        a = Callable()
        a_signal.connect(a.a, sender=self)
        del a
        gc.collect()
        assert asyncio.run(a_signal.asend(sender=self, val="test")) == []
        assert_clean(a_signal)

    def test_asend_mixed(self) -> None:
        a_signal.connect(receiver_1_arg)
        a_signal.connect(receiver_1_arg_async)
        result = asyncio.run(a_signal.asend(sender=self, val="test"))
        assert result == [(receiver_1_arg, "test"), (receiver_1_arg_async, "test")]

    def test_asend_multiple_registration(self) -> None:
        a = Callable()
        for _ in range(6):
            a_signal.connect(a)
        result = asyncio.run(a_signal.asend(sender=self, val="test"))
        assert len(result) == 1
        assert len(a_signal.connections()) == 1
        del a, result
        gc.collect()
        assert_clean(a_signal)

    def test_asend_robust_success(self) -> None:
        a_signal.connect(receiver_1_arg_async)
        result = asyncio.run(a_signal.asend_robust(sender=self, val="test"))
        assert result == [(receiver_1_arg_async, "test")]
        a_signal.disconnect(receiver_1_arg_async)
        assert_clean(a_signal)

    def test_asend_robust_fail(self, caplog: pytest.LogCaptureFixture) -> None:
        """As Django, but the log line names asend_robust() (Django's says send_robust())."""

        async def fails(val: Any, **kwargs: Any) -> None:
            raise ValueError("this")

        a_signal.connect(fails)
        caplog.set_level(logging.ERROR, logger="tocsin")
        try:
            result = asyncio.run(a_signal.asend_robust(sender=self, val="test"))
            err = result[0][1]
            assert isinstance(err, ValueError)
            assert err.args == ("this",)
            assert isinstance(err.__traceback__, TracebackType)
            (log_record,) = caplog.records
            assert log_record.getMessage() == (
                "Error calling TestDispatcherAsync.test_asend_robust_fail.<locals>.fails in "
                "Signal.asend_robust() (this)"
            )
            assert log_record.exc_info is not None
            assert log_record.exc_info[1] is err
        finally:
            a_signal.disconnect(fails)
        assert_clean(a_signal)


class TestReceiver:
    def test_receiver_single_signal(self) -> None:
        state = {"value": False}

        @tocsin.receiver(a_signal)
        def f(val: Any, **kwargs: Any) -> None:
            state["value"] = val

        a_signal.send(sender=self, val=True)
        assert state["value"] is True

    def test_async_receiver_single_signal(self) -> None:
        state = {"value": False}

        @tocsin.receiver(a_signal)
        async def f(val: Any, **kwargs: Any) -> None:
            state["value"] = val

        asyncio.run(a_signal.asend(sender=self, val=True))
        assert state["value"] is True

    def test_async_receiver_signal_list(self) -> None:
        state: list[str] = []

        @tocsin.receiver([a_signal, b_signal, c_signal])
        async def f(val: Any, **kwargs: Any) -> None:
            state.append(val)

        asyncio.run(a_signal.asend(sender=self, val="a"))
        asyncio.run(c_signal.asend(sender=self, val="c"))
        asyncio.run(b_signal.asend(sender=self, val="b"))
        assert sorted(state) == ["a", "b", "c"]

    def test_receiver_signal_list(self) -> None:
        state: list[str] = []

        @tocsin.receiver([a_signal, b_signal, c_signal])
        def f(val: Any, **kwargs: Any) -> None:
            state.append(val)

        a_signal.send(sender=self, val="a")
        c_signal.send(sender=self, val="c")
        b_signal.send(sender=self, val="b")
        assert "a" in state
        assert "b" in state
        assert "c" in state


# ---- side by side with django.dispatch -------------------------------------------


@pytest.fixture(name="impl", params=["django", "tocsin"])
def _impl(request: pytest.FixtureRequest) -> Any:
    if request.param == "django":
        return pytest.importorskip("django.dispatch")
    return tocsin


class Sender:
    pass


class TestSideBySide:
    """Scenarios where tocsin must do exactly what django.dispatch does."""

    def test_send_order_and_responses(self, impl: Any) -> None:
        """Sender-specific and any-sender receivers, in connection order."""
        sig = impl.Signal()
        sender = Sender()
        log: list[str] = []

        def first(**kwargs: Any) -> str:
            log.append("first")
            return "1"

        def second(**kwargs: Any) -> str:
            log.append("second")
            return "2"

        def third(**kwargs: Any) -> str:
            log.append("third")
            return "3"

        sig.connect(first)
        sig.connect(second, sender=sender)
        sig.connect(third)
        assert sig.send(sender) == [(first, "1"), (second, "2"), (third, "3")]
        assert sig.send(Sender()) == [(first, "1"), (third, "3")]
        assert sig.send_robust(sender) == [(first, "1"), (second, "2"), (third, "3")]

    def test_receiver_arguments(self, impl: Any) -> None:
        """Receivers get signal=, sender= and the named arguments."""
        sig = impl.Signal()
        seen: list[Any] = []

        def receiver(**kwargs: Any) -> None:
            seen.append(kwargs)

        sig.connect(receiver)
        sig.send("s", a=1)
        assert seen == [{"signal": sig, "sender": "s", "a": 1}]

    def test_duplicates_and_uids(self, impl: Any) -> None:
        """Duplicate connects and shared dispatch_uids connect once; disconnect reports."""
        sig = impl.Signal()
        listener = Callable()

        def other(**kwargs: Any) -> None:
            pass

        sig.connect(listener)
        sig.connect(listener)
        sig.connect(listener.a)
        sig.connect(listener.a)
        sig.connect(other, dispatch_uid="uid")
        sig.connect(receiver_1_arg, dispatch_uid="uid")
        assert [r for r, _ in sig.send(None, val=1)] == [listener, listener.a, other]
        assert sig.disconnect(listener) is True
        assert sig.disconnect(listener) is False
        assert sig.disconnect(dispatch_uid="uid") is True
        assert sig.disconnect(listener.a) is True
        assert not sig.has_listeners()

    def test_has_listeners_for_senders(self, impl: Any) -> None:
        """has_listeners() without sender counts only any-sender receivers."""
        sig = impl.Signal()
        sender = Sender()
        sig.connect(receiver_1_arg, sender=sender)
        assert sig.has_listeners(sender)
        assert not sig.has_listeners()
        assert not sig.has_listeners(Sender())
        sig.connect(receiver_1_arg)
        assert sig.has_listeners()

    def test_weak_receivers_go_away(self, impl: Any) -> None:
        """Weakly connected methods and objects stop receiving once collected."""
        sig = impl.Signal()
        listener = Callable()
        sig.connect(listener)
        sig.connect(listener.a)
        assert len(sig.send(None, val=1)) == 2
        del listener
        gc.collect()
        assert sig.send(None, val=1) == []
        assert not sig.has_listeners()

    def test_strong_receivers_stay(self, impl: Any) -> None:
        """weak=False keeps a receiver alive."""
        sig = impl.Signal()
        listener = Callable()
        sig.connect(listener, weak=False)
        del listener
        gc.collect()
        assert [response for _, response in sig.send(None, val=5)] == [5]

    def test_exception_propagates_and_robust_returns(
        self, impl: Any, caplog: pytest.LogCaptureFixture
    ) -> None:
        """send raises the receiver's exception; send_robust returns and logs it, every time."""
        sig = impl.Signal()
        error = KeyError("x")

        def fails(**kwargs: Any) -> None:
            raise error

        sig.connect(fails)
        logger = "tocsin" if impl is tocsin else "django.dispatch"
        caplog.set_level(logging.ERROR, logger=logger)
        for _ in range(3):  # the first send builds tocsin's routing table; the next ones don't
            with pytest.raises(KeyError) as info:
                sig.send(None)
            assert info.value is error
            assert caplog.records == []
            assert sig.send_robust(None) == [(fails, error)]
            (record,) = caplog.records
            assert record.name == logger
            assert record.getMessage() == (
                "Error calling TestSideBySide.test_exception_propagates_and_robust_returns.<locals>.fails "
                "in Signal.send_robust() ('x')"
            )
            assert record.exc_info is not None
            assert record.exc_info[1] is error
            caplog.clear()

    def test_snapshot_during_send(self, impl: Any) -> None:
        """A receiver disconnecting the next one and connecting another: both snapshot."""
        sig = impl.Signal()
        log: list[str] = []

        def second(**kwargs: Any) -> None:
            log.append("second")

        def late(**kwargs: Any) -> None:
            log.append("late")

        def first(**kwargs: Any) -> None:
            log.append("first")
            sig.disconnect(second)
            sig.connect(late)

        sig.connect(first)
        sig.connect(second)
        sig.send(None)
        assert log == ["first", "second"]
        log.clear()
        sig.send(None)
        assert log == ["first", "late"]

    def test_mixed_sync_and_async(self, impl: Any) -> None:
        """send and asend run sync and async receivers alike and return both."""
        sig = impl.Signal()
        sig.connect(receiver_1_arg)
        sig.connect(receiver_1_arg_async)
        expected = [(receiver_1_arg, 1), (receiver_1_arg_async, 1)]
        assert sig.send(None, val=1) == expected
        assert asyncio.run(sig.asend(None, val=1)) == expected
        assert asyncio.run(sig.asend_robust(None, val=1)) == expected

    def test_receiver_decorator(self, impl: Any) -> None:
        """@receiver with keyword options and a list of signals."""
        one, two = impl.Signal(), impl.Signal()
        sender = Sender()

        @impl.receiver([one, two], sender=sender, dispatch_uid="uid")  # type: ignore[untyped-decorator]
        def on(**kwargs: Any) -> str:
            return "on"

        assert one.send(sender) == [(on, "on")]
        assert two.send(sender) == [(on, "on")]
        assert one.send(None) == []
        assert one.disconnect(dispatch_uid="uid", sender=sender) is True


class TestWhereTocsinDiffers:
    """Django behaviours tocsin fixes on purpose (see docs): checked against Django too."""

    def test_reused_id_does_not_fire(self) -> None:
        """Django fires a dead sender's receivers for a new object at its address."""
        django_dispatch = pytest.importorskip("django.dispatch")

        def reused(signal: Any) -> bool:
            heap = AddressReuse(Sender)
            sender = heap.new()
            signal.connect(receiver_1_arg, sender=sender)
            dead = id(sender)
            del sender
            newcomer = heap.reuse(dead)
            return bool(signal.send(newcomer, val=1))

        import django

        if django.VERSION < (6,):  # Django 6 stopped matching senders by id() alone
            assert reused(django_dispatch.Signal()) is True
        assert reused(tocsin.Signal()) is False

    def test_equal_senders_with_caching(self) -> None:
        """Django's cache keys by equality: an equal object steals the route."""
        django_dispatch = pytest.importorskip("django.dispatch")

        class Model:
            def __eq__(self, other: object) -> bool:
                return isinstance(other, Model)

            def __hash__(self) -> int:
                return 1

        def first_gets(signal: Any) -> bool:
            a, b = Model(), Model()
            signal.connect(receiver_1_arg, sender=a)
            signal.send(b, val=1)
            return bool(signal.send(a, val=1))

        assert first_gets(django_dispatch.Signal(use_caching=True)) is False
        assert first_gets(tocsin.Signal(use_caching=True)) is True

    def test_unhashable_sender(self) -> None:
        """Django's fast path hashes the sender, so a list sender raises TypeError."""
        django_dispatch = pytest.importorskip("django.dispatch")
        key: list[int] = []
        django_signal = django_dispatch.Signal()
        django_signal.connect(receiver_1_arg, sender=key)
        with pytest.raises(TypeError, match="unhashable"):
            django_signal.send(key, val=1)
        sig = tocsin.Signal()
        sig.connect(receiver_1_arg, sender=key)
        assert sig.send(key, val="list") == [(receiver_1_arg, "list")]
        assert sig.send([], val="other") == []

    def test_equal_strings(self) -> None:
        """Django matches senders by id(), so an equal string built at run time misses."""
        django_dispatch = pytest.importorskip("django.dispatch")
        name = "".join(["na", "me"])  # noqa: FLY002 - a string equal to "name", not interned

        def gets(signal: Any) -> bool:
            signal.connect(receiver_1_arg, sender="name")
            return bool(signal.send(name, val=1))

        assert gets(django_dispatch.Signal()) is False
        assert gets(tocsin.Signal()) is True
