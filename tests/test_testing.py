"""tocsin.testing.capture and the pytest plugin (fixtures and marker)."""

from __future__ import annotations

import asyncio
import re
import threading
from typing import Any
from unittest.mock import ANY

import pytest

import tocsin
from tocsin._core import hooks as _hooks
from tocsin.exceptions import SendArgumentsError
from tocsin.testing import ReceiverCall, SentSignal, capture

pytest_plugins = ["pytester"]


@pytest.fixture(name="sig")
def _sig() -> tocsin.Signal:
    return tocsin.Signal(name="order_placed")


def ok(sender: Any, **kwargs: Any) -> str:
    return "ok"


class TestCapture:
    def test_records_without_receivers(self, sig: tocsin.Signal) -> None:
        """Sends are recorded even when nothing is connected."""
        with capture(sig) as sent:
            sig.send("shop", order_id=1)
        assert sent.sent == [SentSignal(sig, "shop", {"order_id": 1}, [])]
        assert len(sent) == 1

    def test_records_receivers_and_results(self, sig: tocsin.Signal) -> None:
        """Which receivers ran and what they returned are kept."""
        sig.connect(ok)
        with capture(sig) as sent:
            sig.send("shop", order_id=1)
        (one,) = sent
        assert one.receivers == [ok]
        assert one.results == ["ok"]
        assert one.describe() == "order_placed: sender='shop', order_id=1 (ok)"

    def test_records_errors_and_still_raises(self, sig: tocsin.Signal) -> None:
        """A failing send is recorded with its error and the error propagates unchanged."""
        error = ValueError("boom")

        def fails(sender: Any, **kwargs: Any) -> None:
            raise error

        sig.connect(fails)
        with capture(sig) as sent, pytest.raises(ValueError) as info:
            sig.send("shop")
        assert info.value is error
        assert sent.sent[0].error is error

    def test_only_given_signals(self, sig: tocsin.Signal) -> None:
        """capture(a) ignores b; capture() with no arguments records every signal."""
        other = tocsin.Signal(name="other")
        with capture(sig) as some, capture() as every:
            other.send(None)
            sig.send(None)
        assert [s.signal for s in some] == [sig]
        assert [s.signal for s in every] == [other, sig]

    def test_stops_recording_after_exit(self, sig: tocsin.Signal) -> None:
        """Leaving the block removes the interceptor: no recording, no cost."""
        with capture(sig) as sent:
            pass
        sig.send(None)
        assert sent.sent == []
        assert sig._interceptors == ()

    def test_threads(self, sig: tocsin.Signal) -> None:
        """Sends from other threads are recorded too."""
        with capture(sig) as sent:
            threads = [threading.Thread(target=sig.send, args=(i,)) for i in range(10)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        assert sorted(s.sender for s in sent) == list(range(10))

    def test_async_sends(self, sig: tocsin.Signal) -> None:
        """asend is recorded, marked is_async."""

        async def areceiver(sender: Any, **kwargs: Any) -> str:
            return "async"

        sig.connect(areceiver)
        with capture(sig) as sent:
            asyncio.run(sig.asend("shop", order_id=2))
        sent.assert_sent_once_with(sender="shop", order_id=2)
        assert sent.sent[0].is_async
        assert sent.sent[0].results == ["async"]

    def test_clear(self, sig: tocsin.Signal) -> None:
        """clear() forgets what was recorded."""
        with capture(sig) as sent:
            sig.send(None)
            sent.clear()
            sent.assert_not_sent()


class TestFailedSends:
    """A send that raised lists the receivers that ran and says which one raised."""

    def test_sync_send_lists_receivers_that_ran(self, sig: tocsin.Signal) -> None:
        """ok ran, fails raised, after never ran: receivers/results/raised_by/calls say so."""
        error = ValueError("boom")

        def fails(sender: Any, **kwargs: Any) -> None:
            raise error

        def after(sender: Any, **kwargs: Any) -> str:
            return "after"

        sig.connect(ok)
        sig.connect(fails)
        sig.connect(after)
        with capture(sig) as sent, pytest.raises(ValueError):
            sig.send("shop", order_id=1)
        (one,) = sent
        assert one.error is error
        assert one.responses == []  # send() returned nothing
        assert one.receivers == [ok, fails]
        assert one.results == ["ok", error]
        assert one.raised_by is fails
        assert one.calls == (ReceiverCall(ok, "ok"), ReceiverCall(fails, None, error))
        assert one.describe() == (
            f"order_placed: sender='shop', order_id=1 (ok, {fails.__qualname__} raised ValueError('boom'))"
        )

    def test_failure_message_shows_the_raising_receiver(self, sig: tocsin.Signal) -> None:
        """An assertion message does not make a failed send look like a muted one."""

        def fails(sender: Any, **kwargs: Any) -> None:
            raise KeyError("k")

        sig.connect(ok)
        sig.connect(fails)
        with capture(sig) as sent, pytest.raises(KeyError):
            sig.send("shop")
        expected = (
            "expected order_placed not to be sent; it was sent 1 time:\n"
            f"  1. order_placed: sender='shop' (ok, {fails.__qualname__} raised KeyError('k'))"
        )
        with pytest.raises(AssertionError, match=f"^{re.escape(expected)}$"):
            sent.assert_not_sent()

    def test_send_robust_marks_the_receivers_that_raised(self, sig: tocsin.Signal) -> None:
        """A robust send returns; its describe() and calls tell raising from returning an exception."""
        error = ValueError("boom")
        returned = ValueError("returned, not raised")

        def fails(sender: Any, **kwargs: Any) -> None:
            raise error

        def gives(sender: Any, **kwargs: Any) -> ValueError:
            return returned

        sig.connect(fails)
        sig.connect(gives)
        with capture(sig) as sent:
            sig.send_robust("shop")
        (one,) = sent
        assert one.error is None
        assert one.raised_by is None
        assert one.results == [error, returned]
        assert [c.error for c in one.calls] == [error, None]
        assert one.describe() == (
            f"order_placed: sender='shop' ({fails.__qualname__} raised ValueError('boom'), "
            f"{gives.__qualname__})"
        )

    def test_nested_send_is_its_own_entry(self, sig: tocsin.Signal) -> None:
        """Receivers of a send made inside a receiver belong to that inner send only."""
        inner = tocsin.Signal(name="inner")
        error = RuntimeError("inner failed")

        def inner_fails(sender: Any, **kwargs: Any) -> None:
            raise error

        def outer(sender: Any, **kwargs: Any) -> None:
            inner.send("outer")

        inner.connect(inner_fails)
        sig.connect(ok)
        sig.connect(outer)
        with capture() as sent, pytest.raises(RuntimeError):
            sig.send("shop")
        first, second = sent
        assert (first.signal, first.receivers, first.raised_by) == (inner, [inner_fails], inner_fails)
        assert (second.signal, second.receivers, second.raised_by) == (sig, [ok, outer], outer)

    def test_two_captures_of_one_send(self, sig: tocsin.Signal) -> None:
        """Every open capture of a send records its receivers, global and per-signal alike."""

        def fails(sender: Any, **kwargs: Any) -> None:
            raise KeyError(sender)

        sig.connect(ok)
        sig.connect(fails)
        with capture() as every, capture(sig) as this, capture(sig) as again, pytest.raises(KeyError):
            sig.send("shop")
        for sent in (every, this, again):
            (one,) = sent
            assert (one.receivers, one.raised_by) == ([ok, fails], fails)

    def test_asend_concurrent_receivers(self, sig: tocsin.Signal) -> None:
        """asend: the sync receiver finished, fails raised, the waiting one was cancelled."""
        error = ValueError("async boom")
        sync_done = threading.Event()
        waiting = asyncio.Event()

        def sync(sender: Any, **kwargs: Any) -> str:
            sync_done.set()
            return "sync"

        async def waits(sender: Any, **kwargs: Any) -> None:
            waiting.set()
            await asyncio.Event().wait()  # never set: only cancellation ends it

        async def fails(sender: Any, **kwargs: Any) -> None:
            await waiting.wait()
            await asyncio.get_running_loop().run_in_executor(None, sync_done.wait)
            raise error

        sig.connect(sync)
        sig.connect(waits)
        sig.connect(fails)
        with capture(sig) as sent, pytest.raises(ValueError):
            asyncio.run(sig.asend("shop"))
        (one,) = sent
        assert one.is_async
        assert one.raised_by is fails
        outcomes = {c.receiver: (c.result, type(c.error), c.finished) for c in one.calls}
        assert outcomes == {
            sync: ("sync", type(None), True),
            waits: (None, asyncio.CancelledError, True),
            fails: (None, ValueError, True),
        }
        assert one.describe().startswith("order_placed: sender='shop' (")
        assert f"{fails.__qualname__} raised ValueError('async boom')" in one.describe()
        assert f"{waits.__qualname__} raised CancelledError()" in one.describe()

    def test_cancelled_asend_leaves_a_sync_receiver_running(self, sig: tocsin.Signal) -> None:
        """A sync receiver still running in the worker thread when asend was cancelled: finished=False."""
        started, release = threading.Event(), threading.Event()

        def blocking(sender: Any, **kwargs: Any) -> str:
            started.set()
            release.wait()
            return "late"

        async def cancel_midway() -> None:
            task = asyncio.ensure_future(sig.asend("shop"))
            await asyncio.get_running_loop().run_in_executor(None, started.wait)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            release.set()  # let the worker thread finish before the loop closes

        sig.connect(blocking)
        with capture(sig) as sent:
            asyncio.run(cancel_midway())
        (one,) = sent
        assert isinstance(one.error, asyncio.CancelledError)
        assert one.raised_by is None
        assert one.calls == (ReceiverCall(blocking, None, None, finished=False),)
        assert one.describe() == (
            f"order_placed: sender='shop' ({blocking.__qualname__} (still running); raised CancelledError())"
        )

    def test_asend_sequential_stops_at_the_failure(self) -> None:
        """asend in sequential mode: receivers after the failing one never start."""
        sig = tocsin.Signal(name="seq", async_mode="sequential")
        error = ValueError("second")

        async def first(sender: Any, **kwargs: Any) -> str:
            return "first"

        async def second(sender: Any, **kwargs: Any) -> None:
            raise error

        async def third(sender: Any, **kwargs: Any) -> str:
            return "third"

        for receiver in (first, second, third):
            sig.connect(receiver)
        with capture(sig) as sent, pytest.raises(ValueError):
            asyncio.run(sig.asend(None))
        (one,) = sent
        assert one.receivers == [first, second]
        assert one.results == ["first", error]
        assert one.describe() == (
            f"seq: sender=None ({first.__qualname__}, {second.__qualname__} raised ValueError('second'))"
        )

    def test_asend_under_trio(self, sig: tocsin.Signal) -> None:
        """Under trio too, the receivers that ran and the one that raised are recorded."""
        trio = pytest.importorskip("trio")
        error = ValueError("trio boom")
        sync_done = threading.Event()

        def sync(sender: Any, **kwargs: Any) -> str:
            sync_done.set()
            return "sync"

        async def fails(sender: Any, **kwargs: Any) -> None:
            await trio.to_thread.run_sync(sync_done.wait)
            raise error

        sig.connect(sync)
        sig.connect(fails)
        with capture(sig) as sent, pytest.raises(ValueError):
            trio.run(sig.asend, None)
        (one,) = sent
        assert one.raised_by is fails
        assert {c.receiver: c.result for c in one.calls} == {sync: "sync", fails: None}

    def test_refused_by_validation_is_recorded(self) -> None:
        """A send refused by validate=True is recorded as failed, with no receiver run."""

        def spec(*, count: int) -> None: ...

        checked = tocsin.TypedSignal(spec, name="checked", validate=True)
        checked.connect(ok)
        with capture(checked) as sent, pytest.raises(SendArgumentsError) as info:
            checked.send(None, count="three")  # type: ignore[arg-type]
        (one,) = sent
        assert one.error is info.value
        assert one.receivers == []
        assert one.raised_by is None
        assert one.describe() == (
            f"checked: sender=None, count='three' (no receivers ran; raised {info.value!r})"
        )

    def test_only_the_captured_signals_are_intercepted(self, sig: tocsin.Signal) -> None:
        """capture(sig) leaves other signals alone: their sends stay on the fast path, unheard."""
        other = tocsin.Signal(name="other")
        with capture(sig):
            assert sig._interceptors != ()
            assert other._interceptors == ()
        assert sig._interceptors == ()

    def test_via_receiver_alongside_tracing(self, sig: tocsin.Signal) -> None:
        """With capture open, tracing still follows a via= receiver's later run."""
        pending: list[tocsin.DeferredCall] = []
        finished: list[str] = []

        class Later(tocsin.Observer):
            def deferred_finished(self, event: tocsin.ReceiverEvent) -> None:
                finished.append(event.name)

        sig.connect(ok, via=pending.append)
        with tocsin.observe(Later()), capture(sig) as sent:
            sig.send(None)
            assert pending[0]() == "ok"
        (one,) = sent
        assert isinstance(one.results[0], tocsin.Deferred)
        assert one.calls[0].receiver is ok
        assert finished == ["tests.test_testing.ok"]

    def test_alongside_another_observer(self, sig: tocsin.Signal) -> None:
        """capture shares the observation hooks with tracing: each sees its sends, then both go."""
        seen: list[str] = []

        class Names(tocsin.Observer):
            def receiver_finished(self, event: tocsin.ReceiverEvent) -> None:
                seen.append(event.name)

        sig.connect(ok)
        with tocsin.observe(Names()):
            with capture(sig) as sent:
                sig.send(None)
            sig.send(None)
            still_observing = _hooks.receiver_observer is not None
        assert still_observing
        assert _hooks.receiver_observer is None
        assert sig._interceptors == ()
        assert len(sent) == 1
        assert seen == ["tests.test_testing.ok"] * 2


class TestAssertions:
    def test_passing(self, sig: tocsin.Signal) -> None:
        """The helpers pass on what was sent; ANY matches anything; sender may be left out."""
        other = tocsin.Signal(name="other")
        with capture(sig, other) as sent:
            sig.send("shop", order_id=1, total=5)
            sig.send("shop", order_id=2, total=6)
        sent.assert_sent(signal=sig)
        sent.assert_not_sent(signal=other)
        sent.assert_sent_with(signal=sig, sender="shop", order_id=2, total=ANY)
        sent.assert_any_send(order_id=1, total=5)
        with capture(sig) as once:
            sig.send(int, order_id=3)
        once.assert_sent_once()
        once.assert_sent_once_with(sender=int, order_id=3)
        once.assert_sent_once_with(order_id=3)

    def test_message_lists_what_was_sent(self, sig: tocsin.Signal) -> None:
        """A failing assertion says what was expected and lists every send."""
        sig.connect(ok)
        with capture(sig) as sent:
            sig.send("shop", order_id=1)
            sig.send("shop", order_id=2)
        expected = (
            "expected order_placed to be sent once with sender='shop', order_id=1; it was sent 2 times:\n"
            "  1. order_placed: sender='shop', order_id=1 (ok)\n"
            "  2. order_placed: sender='shop', order_id=2 (ok)"
        )
        with pytest.raises(AssertionError, match=f"^{re.escape(expected)}$"):
            sent.assert_sent_once_with(sender="shop", order_id=1)

    def test_not_sent_messages(self, sig: tocsin.Signal) -> None:
        """Messages for never-sent and unexpectedly-sent signals."""
        with capture(sig) as sent:
            pass
        with pytest.raises(AssertionError, match=r"^expected order_placed to be sent; it was not sent\.$"):
            sent.assert_sent()
        with pytest.raises(
            AssertionError, match=r"^expected order_placed to be sent once; it was not sent\.$"
        ):
            sent.assert_sent_once()
        with pytest.raises(AssertionError, match=r"it was not sent\.$"):
            sent.assert_sent_with(sender=None)
        with capture(sig) as sent:
            sig.send(None, x=1)
        with pytest.raises(
            AssertionError,
            match=r"^expected order_placed not to be sent; it was sent 1 time:\n"
            r"  1\. order_placed: sender=None, x=1 \(no receivers ran\)$",
        ):
            sent.assert_not_sent()
        with pytest.raises(AssertionError, match=r"^expected order_placed to have been sent with x=2;"):
            sent.assert_any_send(x=2)

    def test_several_signals_message(self, sig: tocsin.Signal) -> None:
        """Without signal= and with several captured signals, the message says 'a signal'."""
        with capture(sig, tocsin.Signal()) as sent:
            pass
        with pytest.raises(AssertionError, match=r"^expected a signal to be sent"):
            sent.assert_sent()


PLUGIN_TESTS = """
import pytest
import tocsin

sig = tocsin.Signal(name="post_save")
calls = []

def handler(sender, **kwargs):
    calls.append(sender)

sig.connect(handler)

@pytest.mark.mute_signals(sig)
def test_marker_mutes():
    sig.send("a")
    assert calls == []

# A single callable argument would be taken as the decorated object: with_args.
@pytest.mark.mute_signals.with_args(handler)
class TestClassMarker:
    def test_receiver_muted(self):
        sig.send("b")
        assert calls == []

def test_unmuted_after():
    sig.send("c")
    assert calls == ["c"]

def test_sent_signals(sent_signals):
    sig.send("d", x=1)
    sent_signals.assert_sent_once_with(signal=sig, sender="d", x=1)

def test_mute_fixture(mute_signals):
    mute_signals(sig)
    sig.send("e")
    assert calls == ["c", "d"]

def test_mute_fixture_undone():
    sig.send("f")
    assert calls[-1] == "f"
"""


class TestPytestPlugin:
    def test_fixtures_and_marker(self, pytester: pytest.Pytester) -> None:
        """The marker and fixtures work under --strict-markers, in order."""
        pytester.makepyfile(test_plugin=PLUGIN_TESTS)
        result = pytester.runpytest("--strict-markers", "-p", "no:randomly", "-W", "error")
        result.assert_outcomes(passed=6)

    def test_marker_without_targets_errors(self, pytester: pytest.Pytester) -> None:
        """A bare @pytest.mark.mute_signals (nothing to mute) errors instead of passing silently."""
        pytester.makepyfile(
            test_bare="""
            import pytest

            @pytest.mark.mute_signals
            def test_bare():
                pass
            """
        )
        result = pytester.runpytest("--strict-markers", "-p", "no:randomly")
        result.assert_outcomes(errors=1)
        result.stdout.fnmatch_lines(["*TypeError: @pytest.mark.mute_signals needs the signals or receivers*"])

    def test_marker_is_registered(self, pytester: pytest.Pytester) -> None:
        """pytest --markers lists mute_signals."""
        result = pytester.runpytest("--markers")
        result.stdout.fnmatch_lines(["@pytest.mark.mute_signals(*signals_or_receivers):*"])
