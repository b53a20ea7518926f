"""Signal.paused(): holding sends, reducing them, nesting, exceptions."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

import tocsin
from tocsin.testing import capture, mute


@pytest.fixture(name="sig")
def _sig() -> tocsin.Signal:
    return tocsin.Signal(name="sig")


@pytest.fixture(name="log")
def _log(sig: tocsin.Signal) -> list[tuple[Any, dict[str, Any]]]:
    log: list[tuple[Any, dict[str, Any]]] = []

    def record(sender: Any, **kwargs: Any) -> str:
        kwargs.pop("signal")
        log.append((sender, kwargs))
        return "ok"

    sig.connect(record, weak=False)
    return log


def merge_ids(held: list[tocsin.HeldSend]) -> tocsin.HeldSend:
    return tocsin.HeldSend(held[-1].sender, {"ids": [i for h in held for i in h.kwargs["ids"]]})


def _send_then_fail(block: Any, sig: tocsin.Signal) -> None:
    with block:
        sig.send("a")
        raise KeyError("x")


class TestPaused:
    def test_holds_then_delivers_in_order(self, sig: tocsin.Signal, log: list[Any]) -> None:
        """Sends inside return [] and are delivered in order when the block exits."""
        with sig.paused():
            assert sig.send("a", n=1) == []
            assert sig.send_robust("b", n=2) == []
            assert log == []
        assert log == [("a", {"n": 1}), ("b", {"n": 2})]

    def test_reduce_to_one(self, sig: tocsin.Signal, log: list[Any]) -> None:
        """reduce= turns the held sends into one."""
        with sig.paused(reduce=merge_ids):
            sig.send("x", ids=[1])
            sig.send("y", ids=[2, 3])
        assert log == [("y", {"ids": [1, 2, 3]})]

    def test_reduce_not_called_without_sends(self, sig: tocsin.Signal, log: list[Any]) -> None:
        """An empty block delivers nothing and never calls reduce."""

        def boom(held: list[tocsin.HeldSend]) -> tocsin.HeldSend:
            raise AssertionError

        with sig.paused(reduce=boom):
            pass
        assert log == []

    def test_no_interceptor_left_behind(self, sig: tocsin.Signal, log: list[Any]) -> None:
        """After the block the signal is back on its fast path."""
        sig.send(None)
        with sig.paused():
            assert sig._interceptors
        assert sig._interceptors == ()
        assert sig.send(None) == [(sig.receivers_for(None)[0], "ok")]

    def test_other_signals_unaffected(self, sig: tocsin.Signal, log: list[Any]) -> None:
        """Pausing one signal does not hold another."""
        other = tocsin.Signal()
        seen: list[Any] = []
        other.connect(lambda sender, **kw: seen.append(sender))
        with sig.paused():
            other.send("o")
        assert seen == ["o"]

    def test_bad_arguments(self, sig: tocsin.Signal) -> None:
        """Wrong on_error or a non-callable reduce are refused at once."""
        with pytest.raises(ValueError, match=r"^on_error must be 'deliver' or 'drop'; got 'later'\.$"):
            sig.paused(on_error="later")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"^reduce must be a callable"):
            sig.paused(reduce=3)  # type: ignore[arg-type]

    def test_failing_reducer_cleans_up(self, sig: tocsin.Signal, log: list[Any]) -> None:
        """A reducer raising propagates, and the signal is left unpaused."""

        def broken(held: list[tocsin.HeldSend]) -> tocsin.HeldSend:
            raise RuntimeError("reducer bug")

        block = sig.paused(reduce=broken)
        block.__enter__()
        sig.send("a")
        with pytest.raises(RuntimeError, match="reducer bug"):
            block.__exit__(None, None, None)
        assert sig._interceptors == ()
        assert log == []


class TestNesting:
    def test_inner_hands_to_outer(self, sig: tocsin.Signal, log: list[Any]) -> None:
        """The inner block's sends (reduced by its reducer) go to the outer block."""
        with sig.paused():
            sig.send("before", n=0)
            with sig.paused(reduce=merge_ids):
                sig.send("i", ids=[1])
                sig.send("i", ids=[2])
            assert log == []
            sig.send("after", n=3)
        assert log == [("before", {"n": 0}), ("i", {"ids": [1, 2]}), ("after", {"n": 3})]

    def test_outer_reducer_sees_inner_result(self, sig: tocsin.Signal, log: list[Any]) -> None:
        """Reducers compose: the outer one reduces what the inner one produced."""
        with sig.paused(reduce=merge_ids):
            sig.send("o", ids=[0])
            with sig.paused(reduce=merge_ids):
                sig.send("i", ids=[1])
                sig.send("i", ids=[2])
        assert log == [("i", {"ids": [0, 1, 2]})]

    def test_same_object_reentered(self, sig: tocsin.Signal, log: list[Any]) -> None:
        """One Paused object can be entered twice, nested."""
        block = sig.paused()
        with block:
            with block:
                sig.send("a")
            assert log == []
        assert log == [("a", {})]


class TestExceptions:
    def test_delivers_then_reraises(self, sig: tocsin.Signal, log: list[Any]) -> None:
        """By default the held sends are delivered, then the block's error propagates."""
        with pytest.raises(KeyError):
            _send_then_fail(sig.paused(), sig)
        assert log == [("a", {})]

    def test_drop_on_error(self, sig: tocsin.Signal, log: list[Any]) -> None:
        """on_error='drop' discards them; a clean exit still delivers."""
        with pytest.raises(KeyError):
            _send_then_fail(sig.paused(on_error="drop"), sig)
        assert log == []
        with sig.paused(on_error="drop"):
            sig.send("b")
        assert log == [("b", {})]

    def test_receiver_error_during_delivery(self, sig: tocsin.Signal) -> None:
        """A receiver failing at delivery stops it; its exception propagates."""
        seen: list[Any] = []

        def picky(sender: Any, **kwargs: Any) -> None:
            if sender == "bad":
                raise ValueError(sender)
            seen.append(sender)

        sig.connect(picky)
        block = sig.paused()
        block.__enter__()
        sig.send("ok1")
        sig.send("bad")
        sig.send("ok2")
        with pytest.raises(ValueError, match="bad"):
            block.__exit__(None, None, None)
        assert seen == ["ok1"]
        assert sig._interceptors == ()

    def test_robust_sends_stay_robust(self, sig: tocsin.Signal) -> None:
        """A send made with send_robust is delivered with send_robust."""

        def fails(sender: Any, **kwargs: Any) -> None:
            raise ValueError

        sig.connect(fails)
        with capture(sig) as sent, sig.paused():
            sig.send_robust("a")
        assert sent.sent[0].robust
        assert isinstance(sent.sent[0].results[0], ValueError)


class TestWithOtherTools:
    def test_capture_counts_delivery_once(self, sig: tocsin.Signal, log: list[Any]) -> None:
        """A capture opened around the block records the delivered send once."""
        with capture(sig) as sent:
            with sig.paused(reduce=merge_ids):
                sig.send("a", ids=[1])
                sig.send("a", ids=[2])
            sent.assert_sent_once_with(sender="a", ids=[1, 2])

    def test_mute_applies_at_delivery(self, sig: tocsin.Signal, log: list[Any]) -> None:
        """Delivery is a normal send: a mute open at that moment silences it."""
        with mute(sig), sig.paused():
            sig.send("a")
        assert log == []

    def test_other_threads_are_held(self, sig: tocsin.Signal, log: list[Any]) -> None:
        """A pause is process-wide: sends from other threads are held too."""
        with sig.paused():
            t = threading.Thread(target=sig.send, args=("thread",))
            t.start()
            t.join()
            assert log == []
        assert log == [("thread", {})]


class TestAsync:
    def test_async_with_delivers_with_asend(self, sig: tocsin.Signal) -> None:
        """Under async with, sends made with asend are delivered with asend (async receivers run)."""
        seen: list[Any] = []

        async def areceiver(sender: Any, **kwargs: Any) -> None:
            await asyncio.sleep(0)
            seen.append(sender)

        sig.connect(areceiver)

        async def main() -> None:
            async with sig.paused():
                assert await sig.asend("a") == []
                assert seen == []
            assert seen == ["a"]

        asyncio.run(main())
