"""tocsin.testing.mute: silencing signals and receivers, nesting, threads, tasks."""

from __future__ import annotations

import asyncio
import gc
import threading
from typing import Any

import pytest

import tocsin
from tocsin.testing import capture, mute


@pytest.fixture(name="sig")
def _sig() -> tocsin.Signal:
    return tocsin.Signal(name="sig")


def _make(name: str, log: list[str]) -> Any:
    def handler(sender: Any, **kwargs: Any) -> str:
        log.append(name)
        return name

    return handler


class TestMuteSignal:
    def test_silences_every_receiver(self, sig: tocsin.Signal) -> None:
        """A muted signal runs no receiver and send() returns []."""
        log: list[str] = []
        a, b = _make("a", log), _make("b", log)
        sig.connect(a)
        sig.connect(b, sender="s")
        with mute(sig):
            assert sig.send("s") == []
            assert sig.send_robust(None) == []
        assert log == []
        assert [r for _, r in sig.send("s")] == ["a", "b"]

    def test_nesting_inner_exit_keeps_outer(self, sig: tocsin.Signal) -> None:
        """Leaving an inner mute of the same signal does not unmute the outer one."""
        log: list[str] = []
        a = _make("a", log)
        sig.connect(a)
        with mute(sig):
            with mute(sig):
                sig.send(None)
            sig.send(None)
            assert log == []
        sig.send(None)
        assert log == ["a"]

    def test_order_and_new_receivers_survive(self, sig: tocsin.Signal) -> None:
        """Order, priorities and receivers connected meanwhile are kept."""
        log: list[str] = []
        a, b, c, d = (_make(n, log) for n in "abcd")
        sig.connect(a)
        sig.connect(b, priority=10)
        with mute(sig):
            sig.connect(c)
            sig.connect(d, priority=20)
            sig.send(None)
            sig.disconnect(a)
            sig.connect(a)
        assert log == []
        sig.send(None)
        assert log == ["d", "b", "c", "a"]

    def test_no_stale_table(self, sig: tocsin.Signal) -> None:
        """A send right after the block sees the receivers again (no cached empty table)."""
        log: list[str] = []
        sig.connect(_make("a", log))
        sig.send(None)  # build and publish the table first
        with mute(sig):
            sig.send(None)
        sig.send(None)
        assert log == ["a", "a"]
        assert sig.has_listeners()

    def test_muted_send_is_still_captured(self, sig: tocsin.Signal) -> None:
        """capture() records a muted send, with no receivers run."""
        sig.connect(_make("a", []))
        with capture(sig) as sent, mute(sig):
            sig.send("s", x=1)
        sent.assert_sent_once_with(sender="s", x=1)
        assert sent.sent[0].receivers == []

    def test_rejects_non_targets(self) -> None:
        """Something neither a signal nor callable is refused with an example."""
        with pytest.raises(TypeError, match=r"^mute\(\) takes signals and receivers; got 42\."):
            mute(42)  # type: ignore[arg-type]


class TestMuteReceiver:
    def test_only_that_receiver(self, sig: tocsin.Signal) -> None:
        """mute(receiver) silences that receiver and keeps the others."""
        log: list[str] = []
        a, b = _make("a", log), _make("b", log)
        sig.connect(a)
        sig.connect(b)
        with mute(a):
            assert [r for _, r in sig.send(None)] == ["b"]
        assert [r for _, r in sig.send(None)] == ["a", "b"]

    def test_on_every_signal_and_sender(self) -> None:
        """A muted receiver is silent on every signal and for every sender it is connected for."""
        one, two = tocsin.Signal(), tocsin.Signal()
        log: list[str] = []
        a = _make("a", log)
        one.connect(a)
        two.connect(a, sender="s")
        with mute(a):
            one.send(None)
            two.send("s")
        assert log == []

    def test_bound_method_and_dispatch_uid(self, sig: tocsin.Signal) -> None:
        """Bound methods (a new object each access) and uid-keyed connections are matched."""
        log: list[str] = []

        class Handler:
            def on(self, sender: Any, **kwargs: Any) -> None:
                log.append("method")

        h = Handler()
        uid = _make("uid", log)
        sig.connect(h.on)
        sig.connect(uid, dispatch_uid="the-uid")
        with mute(h.on, uid):
            sig.send(None)
        assert log == []
        sig.send(None)
        assert log == ["method", "uid"]

    def test_reconnected_inside_block_stays_muted(self, sig: tocsin.Signal) -> None:
        """The mute follows the receiver, not one connection."""
        log: list[str] = []
        a = _make("a", log)
        sig.connect(a)
        with mute(a):
            sig.disconnect(a)
            sig.connect(a, sender="s")
            sig.send("s")
        assert log == []
        sig.send("s")
        assert log == ["a"]

    def test_signal_and_receiver_nested(self, sig: tocsin.Signal) -> None:
        """Muting a receiver inside a muted signal and leaving it keeps the signal muted."""
        log: list[str] = []
        a = _make("a", log)
        sig.connect(a)
        with mute(sig):
            with mute(a):
                pass
            sig.send(None)
        assert log == []


class TestMuteDecorator:
    def test_sync_function(self, sig: tocsin.Signal) -> None:
        """As a decorator, each call runs muted."""
        log: list[str] = []
        sig.connect(_make("a", log))

        @mute(sig)
        def job() -> list[Any]:
            return sig.send(None)

        assert job() == []
        assert job.__name__ == "job"
        sig.send(None)
        assert log == ["a"]

    def test_async_function(self, sig: tocsin.Signal) -> None:
        """An async def stays a coroutine function and runs muted while awaited."""
        log: list[str] = []
        sig.connect(_make("a", log))

        @mute(sig)
        async def job() -> list[Any]:
            await asyncio.sleep(0)
            return sig.send(None)

        assert asyncio.iscoroutinefunction(job)
        assert asyncio.run(job()) == []
        assert log == []

    def test_recursive_calls(self, sig: tocsin.Signal) -> None:
        """Overlapping calls of one decorated function each hold their own block."""
        log: list[str] = []
        sig.connect(_make("a", log))

        @mute(sig)
        def job(depth: int) -> None:
            if depth:
                job(depth - 1)
            sig.send(None)

        job(3)
        assert log == []
        sig.send(None)
        assert log == ["a"]


class TestMuteIsGlobal:
    def test_other_threads_are_muted(self, sig: tocsin.Signal) -> None:
        """A mute is process-wide: a send from another thread is silenced too."""
        log: list[str] = []
        sig.connect(_make("a", log))
        results: list[Any] = []
        with mute(sig):
            t = threading.Thread(target=lambda: results.append(sig.send(None)))
            t.start()
            t.join()
        assert results == [[]]
        assert log == []

    def test_threads_muting_concurrently(self, sig: tocsin.Signal) -> None:
        """Blocks entered and left by many threads leave nothing muted behind."""
        log: list[str] = []
        a = _make("a", log)
        sig.connect(a)
        barrier = threading.Barrier(8)

        def work() -> None:
            barrier.wait()
            for _ in range(200):
                with mute(sig), mute(a):
                    sig.send(None)

        threads = [threading.Thread(target=work) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert log == []
        assert sig._filter is None  # every block left: no filter, nothing muted
        sig.send(None)
        assert log == ["a"]

    def test_asyncio_tasks_share_the_mute(self, sig: tocsin.Signal) -> None:
        """Another task's send is silenced while one task is inside the block."""
        log: list[str] = []
        sig.connect(_make("a", log))

        async def main() -> None:
            entered = asyncio.Event()
            leave = asyncio.Event()

            async def muter() -> None:
                with mute(sig):
                    entered.set()
                    await leave.wait()

            task = asyncio.create_task(muter())
            await entered.wait()
            sig.send(None)  # from this task, while the other holds the mute
            leave.set()
            await task
            sig.send(None)

        asyncio.run(main())
        assert log == ["a"]

    def test_dead_receiver_while_muted(self, sig: tocsin.Signal) -> None:
        """A muted receiver that dies is cleaned up; leaving the block does not fail."""
        log: list[str] = []
        a = _make("a", log)
        sig.connect(a)
        with mute(a):
            del a
            gc.collect()
            sig.send(None)
        assert sig.send(None) == []
        assert log == []
