"""Per-receiver error handlers: connect(..., on_error=handler) on every send path."""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import threading
from typing import Any

import pytest
import trio
import trio.lowlevel

import tocsin
from tocsin.exceptions import InvalidArgumentError
from tocsin.testing import capture


class Boom(Exception):
    pass


@pytest.fixture(name="sig")
def _sig() -> tocsin.Signal:
    return tocsin.Signal(name="orders")


class Handler:
    """An on_error handler recording each call, and the thread it ran in."""

    def __init__(self, *, raises: Exception | None = None) -> None:
        self.calls: list[tuple[Exception, tocsin.ErrorContext]] = []
        self.threads: list[threading.Thread] = []
        self.raises = raises

    def __call__(self, exc: Exception, context: tocsin.ErrorContext) -> None:
        self.calls.append((exc, context))
        self.threads.append(threading.current_thread())
        if self.raises is not None:
            raise self.raises


def failing(**kwargs: Any) -> None:
    raise Boom(kwargs["order"])


async def afailing(**kwargs: Any) -> None:
    await asyncio.sleep(0)
    raise Boom(kwargs["order"])


async def atrio_failing(**kwargs: Any) -> None:
    await trio.lowlevel.checkpoint()
    raise Boom(kwargs["order"])


class TestSend:
    def test_handler_then_propagates(self, sig: tocsin.Signal) -> None:
        """send(): the handler gets the exception and the context, then the same exception propagates."""
        ran = []
        handler = Handler()
        sig.connect(failing, on_error=handler)
        sig.connect(lambda **kw: ran.append("after"), weak=False)
        with pytest.raises(Boom) as caught:
            sig.send("shop", order=7)
        [(exc, context)] = handler.calls
        assert exc is caught.value
        assert context == tocsin.ErrorContext(
            signal=sig, sender="shop", receiver=failing, kwargs={"order": 7}, method="send", robust=False
        )
        assert ran == []  # as without a handler: the receivers after the failing one do not run
        assert handler.threads == [threading.current_thread()]

    def test_send_robust_returns_and_logs(self, sig: tocsin.Signal, caplog: pytest.LogCaptureFixture) -> None:
        """send_robust(): the handler runs; the pair is still returned, the failure still logged."""
        handler = Handler()
        sig.connect(failing, on_error=handler)
        sig.connect(lambda **kw: "ok", weak=False)
        with caplog.at_level(logging.ERROR, logger="tocsin"):
            responses = sig.send_robust("shop", order=7)
        [(exc, context)] = handler.calls
        assert responses[0] == (failing, exc)
        assert responses[1][1] == "ok"
        assert (context.method, context.robust) == ("send_robust", True)
        assert [r.getMessage() for r in caplog.records] == [
            "Error calling failing in Signal.send_robust() (7)"
        ]

    def test_only_its_own_receiver(self, sig: tocsin.Signal) -> None:
        """A handler is called for its connection's failures only."""
        handler = Handler()

        def fine(**kwargs: Any) -> str:
            return "fine"

        def other_failing(**kwargs: Any) -> None:
            raise Boom("other")

        sig.connect(fine, on_error=handler)
        sig.connect(other_failing)
        responses = sig.send_robust(None, order=1)
        assert responses[0] == (fine, "fine")
        assert isinstance(responses[1][1], Boom)
        assert handler.calls == []

    def test_base_exception_skips_the_handler(self, sig: tocsin.Signal) -> None:
        """KeyboardInterrupt and the like are not a receiver's failure: no handler, and they propagate."""
        handler = Handler()

        def interrupted(**kwargs: Any) -> None:
            raise KeyboardInterrupt

        sig.connect(interrupted, on_error=handler)
        with pytest.raises(KeyboardInterrupt):
            sig.send_robust(None)
        assert handler.calls == []

    @pytest.mark.parametrize("robust", [False, True])
    def test_handler_that_raises_is_logged(
        self, sig: tocsin.Signal, caplog: pytest.LogCaptureFixture, *, robust: bool
    ) -> None:
        """The handler's own error is logged; the receiver's exception still decides the outcome."""
        handler = Handler(raises=LookupError("handler bug"))
        sig.connect(failing, on_error=handler)
        with caplog.at_level(logging.ERROR, logger="tocsin"):
            if robust:
                [(_, response)] = sig.send_robust(None, order=3)
                assert response is handler.calls[0][0]
            else:
                with pytest.raises(Boom) as caught:
                    sig.send(None, order=3)
                assert caught.value is handler.calls[0][0]
        method = "send_robust" if robust else "send"
        handler_records = [r for r in caplog.records if "on_error handler" in r.getMessage()]
        [record] = handler_records
        assert record.getMessage() == (
            f"Error calling on_error handler Handler instance for failing in Signal.{method}() (handler bug)"
        )
        assert record.exc_info is not None
        assert isinstance(record.exc_info[1], LookupError)
        assert record.exc_info[1].__context__ is handler.calls[0][0]  # chained to the receiver's error
        assert (record.signal, record.receiver) == (sig, failing)  # type: ignore[attr-defined]

    def test_handler_keyboard_interrupt_propagates(self, sig: tocsin.Signal) -> None:
        sig.connect(failing, on_error=Handler(raises=KeyboardInterrupt()))  # type: ignore[arg-type]
        with pytest.raises(KeyboardInterrupt):
            sig.send_robust(None, order=1)

    def test_via_policy_failure(self, sig: tocsin.Signal) -> None:
        """A delivery policy that raises in the receiver's turn counts as the receiver's failure."""
        handler = Handler()

        def refuse(call: tocsin.DeferredCall) -> None:
            raise Boom("queue full")

        def queued(**kwargs: Any) -> None:
            pass

        sig.connect(queued, via=refuse, on_error=handler)
        [(_, response)] = sig.send_robust(None)
        assert handler.calls == [(response, handler.calls[0][1])]
        assert handler.calls[0][1].receiver is queued

    def test_observed_send(self, sig: tocsin.Signal) -> None:
        """With tracing on (a receiver observer wrapping each call) the handler still runs."""
        handler = Handler()
        sig.connect(failing, on_error=handler)
        with tocsin.trace(level=None) as traced, pytest.raises(Boom):
            sig.send(None, order=2)
        assert len(handler.calls) == 1
        assert traced.sends[0].receivers[0].error is handler.calls[0][0]


class TestConnections:
    def test_fast_path_untouched(self, sig: tocsin.Signal) -> None:
        """Plain receivers keep send()'s tuple plan; a handler routes that sender to the slow path."""

        def plain(**kwargs: Any) -> None:
            pass

        sig.connect(plain)
        sig.send(None)
        assert sig._plan_for(None).__class__ is tuple
        sig.connect(failing, sender="other", on_error=Handler())
        sig.send(None)
        assert sig._plan_for(None).__class__ is tuple  # only the sender the handler's connection is for
        assert sig._plan_for("other").__class__ is not tuple

    def test_decorator_forms(self, sig: tocsin.Signal) -> None:
        """@receiver(..., on_error=) and @sig.connect(on_error=) pass the handler on."""
        handler = Handler()

        @tocsin.receiver(sig, on_error=handler)
        def first(**kwargs: Any) -> None:
            raise Boom(1)

        @sig.connect(sender="shop", on_error=handler)
        def second(**kwargs: Any) -> None:
            raise Boom(2)

        sig.send_robust("shop")
        assert [context.receiver for _, context in handler.calls] == [first, second]
        assert [c.on_error for c in sig.connections()] == [handler, handler]

    def test_dispatch_uid_keeps_the_first_handler(self, sig: tocsin.Signal) -> None:
        """A duplicate connect (same dispatch_uid) changes nothing, its on_error included."""
        first, second = Handler(), Handler()
        sig.connect(failing, dispatch_uid="fail", on_error=first)
        sig.connect(failing, dispatch_uid="fail", on_error=second)
        sig.send_robust(None, order=1)
        assert (len(first.calls), len(second.calls)) == (1, 0)
        assert [c.on_error for c in sig.connections()] == [first]

    def test_disconnect_and_reconnect_without(self, sig: tocsin.Signal) -> None:
        handler = Handler()
        sig.connect(failing, on_error=handler)
        assert sig.disconnect(failing)
        sig.connect(failing)
        sig.send_robust(None, order=1)
        assert handler.calls == []
        assert [c.on_error for c in sig.connections()] == [None]

    def test_bound_method_handler_does_not_keep_its_instance(self, sig: tocsin.Signal) -> None:
        """on_error=self.failed beside the weak receiver self.receive: the instance still dies."""

        class Indexer:
            def receive(self, **kwargs: Any) -> None:
                pass

            def failed(self, exc: Exception, context: tocsin.ErrorContext) -> None:
                pass

        indexer = Indexer()
        sig.connect(indexer.receive, on_error=indexer.failed)
        assert sig.connections()[0].on_error == indexer.failed
        del indexer
        gc.collect()
        assert sig.connections() == []

    def test_dead_bound_method_handler_is_skipped(self, sig: tocsin.Signal) -> None:
        """Once a weakly held handler's instance is gone, failures go on as without a handler."""
        seen = []

        class Reporter:
            def failed(self, exc: Exception, context: tocsin.ErrorContext) -> None:
                seen.append(str(exc))

        reporter = Reporter()
        sig.connect(failing, on_error=reporter.failed)
        sig.send_robust(None, order=1)
        del reporter
        gc.collect()
        [(_, response)] = sig.send_robust(None, order=2)
        assert isinstance(response, Boom)
        assert seen == ["1"]
        assert [c.on_error for c in sig.connections()] == [None]

    @pytest.mark.skipif(sys.implementation.name != "cpython", reason="reference counts are CPython's")
    def test_method_of_a_temporary_instance_is_kept(self, sig: tocsin.Signal) -> None:
        """on_error=Reporter().failed: nothing else holds the instance, so the connection does."""
        seen = []

        class Reporter:
            def failed(self, exc: Exception, context: tocsin.ErrorContext) -> None:
                seen.append(str(exc))

        sig.connect(failing, on_error=Reporter().failed)

        @tocsin.receiver(sig, on_error=Reporter().failed)
        def also_failing(**kwargs: Any) -> None:
            raise Boom(kwargs["order"])

        gc.collect()
        sig.send_robust(None, order=3)
        assert seen == ["3", "3"]
        assert [c.on_error.__name__ for c in sig.connections()] == ["failed", "failed"]
        sig.disconnect(also_failing)

    def test_function_handler_is_kept(self, sig: tocsin.Signal) -> None:
        """A handler made on the spot (a lambda, a closure) is held by the connection."""
        seen: list[Exception] = []
        sig.connect(failing, on_error=lambda exc, context: seen.append(exc))
        gc.collect()
        sig.send_robust(None, order=5)
        assert len(seen) == 1

    def test_handler_of_strong_receiver_held_strongly(self, sig: tocsin.Signal) -> None:
        """weak=False: a bound-method handler is held strongly too, like its receiver."""
        seen = []

        class Reporter:
            def failed(self, exc: Exception, context: tocsin.ErrorContext) -> None:
                seen.append(exc)

        sig.connect(failing, weak=False, on_error=Reporter().failed)
        gc.collect()
        sig.send_robust(None, order=1)
        assert len(seen) == 1

    @pytest.mark.parametrize("bad", [42, "log"])
    def test_not_callable_refused(self, sig: tocsin.Signal, bad: object) -> None:
        with pytest.raises(InvalidArgumentError, match=rf"^on_error= must be a callable .*; got {bad!r}\. "):
            sig.connect(failing, on_error=bad)  # type: ignore[call-overload]
        assert sig.connections() == []

    def test_receiver_decorator_refuses_bad_handler_on_a_list(self, sig: tocsin.Signal) -> None:
        """@receiver([a, b], on_error=42) leaves nothing connected."""
        other = tocsin.Signal()
        with pytest.raises(InvalidArgumentError):
            tocsin.receiver([sig, other], on_error=42)(failing)  # type: ignore[arg-type]
        assert (sig.connections(), other.connections()) == ([], [])


class TestTestingTools:
    def test_connected_to(self, sig: tocsin.Signal) -> None:
        """connected_to(..., on_error=) connects with the handler for the block only."""
        handler = Handler()
        with sig.connected_to(failing, on_error=handler):
            sig.send_robust(None, order=1)
        sig.send_robust(None, order=2)
        assert len(handler.calls) == 1
        assert sig.connections() == []

    def test_connected_to_local(self, sig: tocsin.Signal) -> None:
        handler = Handler()
        with sig.connected_to(failing, local=True, on_error=handler):
            sig.send_robust(None, order=1)
        assert len(handler.calls) == 1

    def test_capture_sees_the_failure(self, sig: tocsin.Signal) -> None:
        """capture() records the failed call and the handler still runs."""
        handler = Handler()
        sig.connect(failing, on_error=handler)
        with capture(sig) as sent:
            sig.send_robust(None, order=1)
        [call] = sent.sent[0].calls
        assert call.error is handler.calls[0][0]


class TestAsync:
    def test_asend_async_receiver(self, sig: tocsin.Signal) -> None:
        handler = Handler()
        sig.connect(afailing, on_error=handler)

        async def main() -> None:
            with pytest.raises(Boom) as caught:
                await sig.asend("shop", order=1)
            [(exc, context)] = handler.calls
            assert exc is caught.value
            assert (context.method, context.robust, context.receiver) == ("asend", False, afailing)

        asyncio.run(main())

    def test_asend_robust_mixed(self, sig: tocsin.Signal) -> None:
        """Sync receivers (in asend's worker thread) and async ones both reach their handlers."""
        sync_handler, async_handler = Handler(), Handler()
        sig.connect(failing, on_error=sync_handler)
        sig.connect(afailing, on_error=async_handler)

        async def main() -> list[tuple[Any, Any]]:
            return await sig.asend_robust(None, order=1)

        responses = asyncio.run(main())
        assert [r for r, _ in responses] == [failing, afailing]
        assert responses[0][1] is sync_handler.calls[0][0]
        assert responses[1][1] is async_handler.calls[0][0]
        assert sync_handler.threads[0] is not threading.current_thread()  # where the receiver ran
        assert async_handler.calls[0][1].method == "asend_robust"

    def test_asend_mixed_propagates(self, sig: tocsin.Signal) -> None:
        """asend() with sync and async receivers: the async receiver's handler runs, then it propagates."""
        handler = Handler()
        sig.connect(lambda **kwargs: "sync", weak=False)
        sig.connect(afailing, on_error=handler)

        async def main() -> None:
            with pytest.raises(Boom) as caught:
                await sig.asend(None, order=1)
            assert [exc for exc, _ in handler.calls] == [caught.value]
            assert handler.calls[0][1].method == "asend"

        asyncio.run(main())

    def test_asend_sequential(self) -> None:
        sig = tocsin.Signal(async_mode="sequential")
        handler = Handler()
        sig.connect(afailing, on_error=handler)
        sig.connect(failing, on_error=handler)

        async def main() -> list[tuple[Any, Any]]:
            return await sig.asend_robust(None, order=1)

        responses = asyncio.run(main())
        assert [exc for exc, _ in handler.calls] == [response for _, response in responses]

    def test_sync_send_async_receiver(self, sig: tocsin.Signal) -> None:
        """send() running an async receiver on its thread's loop: the handler runs, send raises."""
        handler = Handler()
        sig.connect(afailing, on_error=handler)
        with pytest.raises(Boom):
            sig.send(None, order=1)
        assert handler.calls[0][1].method == "send"

    def test_trio(self, sig: tocsin.Signal) -> None:
        handler = Handler()
        sig.connect(atrio_failing, on_error=handler)
        sig.connect(failing, on_error=handler)
        responses = trio.run(sig.asend_robust, None)
        assert {id(exc) for exc, _ in handler.calls} == {id(response) for _, response in responses}
        assert len(handler.calls) == 2
