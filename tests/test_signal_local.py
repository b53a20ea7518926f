"""connected_to(local=True): receivers that only hear sends from their own context."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from typing import Any

import pytest

import tocsin
from tocsin.exceptions import ReceiverSignatureError


class Sender:
    pass


def always(sender: Any, **kwargs: Any) -> str:
    return "always"


def no_kwargs(sender: object) -> None:
    pass


def recorder(log: list[Any]) -> Any:
    def receive(sender: Any, **kwargs: Any) -> str:
        log.append(kwargs.get("value"))
        return "local"

    return receive


class TestThreads:
    def test_other_threads_do_not_reach_it(self) -> None:
        """A send from another thread, made while the block is open, skips the local receiver."""
        sig = tocsin.Signal()
        sig.connect(always)
        heard: list[Any] = []
        other: list[Any] = []
        with sig.connected_to(recorder(heard), local=True) as receiver:
            worker = threading.Thread(target=lambda: other.append(sig.send(Sender, value="other")))
            worker.start()
            worker.join()
            mine = sig.send(Sender, value="mine")
        assert heard == ["mine"]
        assert other == [[(always, "always")]]
        assert mine == [(always, "always"), (receiver, "local")]
        assert sig.send(Sender, value="after") == [(always, "always")]
        assert heard == ["mine"]

    def test_concurrent_blocks_in_threads_are_isolated(self) -> None:
        """Each thread's local receiver hears exactly that thread's sends, under contention."""
        sig = tocsin.Signal()
        barrier = threading.Barrier(4)
        logs: dict[int, list[Any]] = {}

        def work(n: int) -> None:
            log: list[Any] = []
            logs[n] = log
            with sig.connected_to(recorder(log), local=True):
                barrier.wait()
                for i in range(200):
                    sig.send(Sender, value=(n, i))
                barrier.wait()

        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for n, log in logs.items():
            assert log == [(n, i) for i in range(200)]
        assert sig.connections() == []

    def test_context_copied_into_a_thread_counts(self) -> None:
        """Work run in a copy of the block's context (asyncio.to_thread does this) is inside it."""
        sig = tocsin.Signal()
        heard: list[Any] = []
        with sig.connected_to(recorder(heard), local=True):
            context = contextvars.copy_context()
            worker = threading.Thread(target=context.run, args=(lambda: sig.send(Sender, value="copied"),))
            worker.start()
            worker.join()
        assert heard == ["copied"]


class TestAsyncio:
    def test_concurrent_tasks_are_isolated(self) -> None:
        """Two requests handled concurrently each hear only their own sends, sync and async."""
        sig = tocsin.Signal()

        async def handle(name: str, log: list[Any]) -> None:
            with sig.connected_to(recorder(log), local=True):
                for i in range(3):
                    sig.send(Sender, value=(name, "send", i))
                    await asyncio.sleep(0)
                    await sig.asend(Sender, value=(name, "asend", i))

        async def main() -> tuple[list[Any], list[Any]]:
            a: list[Any] = []
            b: list[Any] = []
            await asyncio.gather(handle("a", a), handle("b", b))
            return a, b

        a, b = asyncio.run(main())
        assert a == [("a", kind, i) for i in range(3) for kind in ("send", "asend")]
        assert b == [("b", kind, i) for i in range(3) for kind in ("send", "asend")]

    def test_tasks_started_inside_the_block_count(self) -> None:
        """A task created inside the block copies its context, so its sends reach the receiver."""
        sig = tocsin.Signal()
        heard: list[Any] = []

        async def child() -> None:
            await sig.asend(Sender, value="child")

        async def main() -> None:
            with sig.connected_to(recorder(heard), local=True):
                await asyncio.create_task(child())
            await asyncio.create_task(child())  # after the block: nobody

        asyncio.run(main())
        assert heard == ["child"]

    def test_async_local_receiver(self) -> None:
        """An async local receiver is awaited by asend, and only in its context."""
        sig = tocsin.Signal()
        heard: list[Any] = []

        async def receive(sender: Any, **kwargs: Any) -> str:
            await asyncio.sleep(0)
            heard.append(kwargs["value"])
            return "async local"

        async def outsider() -> list[tuple[Any, Any]]:
            return await sig.asend(Sender, value="outsider")

        async def main() -> tuple[list[tuple[Any, Any]], list[tuple[Any, Any]]]:
            outside = asyncio.create_task(outsider())  # its context was copied before the block
            with sig.connected_to(receive, local=True):
                inside = await sig.asend(Sender, value="inside")
                return inside, await outside

        inside, outside = asyncio.run(main())
        assert inside == [(receive, "async local")]
        assert outside == []
        assert heard == ["inside"]


class TestConnection:
    def test_introspection_follows_the_context(self) -> None:
        """receivers_for, has_listeners and connections tell the truth for the asking context."""
        sig = tocsin.Signal()
        seen_elsewhere: list[Any] = []

        def receive(sender: Any, **kwargs: Any) -> None:
            pass

        with sig.connected_to(receive, sender=Sender, local=True):
            assert sig.receivers_for(Sender) == [receive]
            assert sig.has_listeners(Sender)
            worker = threading.Thread(
                target=lambda: seen_elsewhere.extend([sig.receivers_for(Sender), sig.has_listeners(Sender)])
            )
            worker.start()
            worker.join()
            (connection,) = sig.connections()
            assert connection.local
            assert connection.receiver is receive
            assert connection.sender is Sender
        assert seen_elsewhere == [[], False]
        assert not sig.has_listeners(Sender)

    def test_separate_from_a_global_connection_of_the_same_receiver(self) -> None:
        """A global connection of the same receiver is untouched by the block, and not doubled."""
        sig = tocsin.Signal()
        sig.connect(always)
        with sig.connected_to(always, local=True):
            assert [c.local for c in sig.connections()] == [False, True]
            assert sig.send(Sender) == [(always, "always"), (always, "always")]
        assert [c.local for c in sig.connections()] == [False]
        assert sig.disconnect(always)

    def test_nested_blocks_and_order(self) -> None:
        """Nested local blocks stack; priority orders local and global receivers together."""
        sig = tocsin.Signal()
        sig.connect(always, priority=1)
        outer_log: list[Any] = []
        inner_log: list[Any] = []
        with sig.connected_to(recorder(outer_log), local=True) as outer:
            with sig.connected_to(recorder(inner_log), local=True, priority=5) as inner:
                assert [r for r, _ in sig.send(Sender, value=1)] == [inner, always, outer]
            assert [r for r, _ in sig.send(Sender, value=2)] == [always, outer]
        assert outer_log == [1, 2]
        assert inner_log == [1]

    def test_exception_in_the_block_removes_it(self) -> None:
        """However the block ends, the local connection goes and the context is restored."""
        sig = tocsin.Signal()
        with pytest.raises(KeyError), sig.connected_to(always, local=True):
            raise KeyError("boom")
        assert sig.connections() == []
        assert sig.send(Sender) == []

    def test_bad_receiver_connects_nothing(self) -> None:
        """Validation happens on entry: nothing is connected and the block does not run."""
        sig = tocsin.Signal()
        ran: list[bool] = []
        with pytest.raises(ReceiverSignatureError), sig.connected_to(no_kwargs, local=True):
            ran.append(True)
        assert ran == []
        assert sig.connections() == []

    def test_bad_via_connects_nothing(self) -> None:
        """A via= that is not a policy is refused with connect()'s message."""
        sig = tocsin.Signal()
        with (
            pytest.raises(TypeError, match=r"^via= must be a delivery policy"),
            sig.connected_to(always, local=True, via="later"),  # type: ignore[arg-type]
        ):
            pass
        assert sig.connections() == []

    def test_meta_signals_see_it(self) -> None:
        """receiver_connected and receiver_disconnected report the local connection."""
        sig = tocsin.Signal()
        events: list[str] = []

        def on_connected(sender: Any, **kwargs: Any) -> None:
            if sender is sig:
                events.append("connected")

        def on_disconnected(sender: Any, **kwargs: Any) -> None:
            if sender is sig:
                events.append("disconnected")

        with (
            tocsin.receiver_connected.connected_to(on_connected),
            tocsin.receiver_disconnected.connected_to(on_disconnected),
            sig.connected_to(always, local=True),
        ):
            pass
        assert events == ["connected", "disconnected"]

    def test_fast_path_back_after_the_block(self) -> None:
        """Once the last local connection goes, sends publish a fast plan again."""
        sig = tocsin.Signal()
        sig.connect(always)
        with sig.connected_to(recorder([]), local=True):
            sig.send(Sender)
            assert sig._routes.get(id(Sender), sig._routes["default"]).__class__ is not tuple
        sig.send(Sender)
        assert sig._routes["default"].__class__ is tuple


class TestTrio:
    def test_trio_tasks_are_isolated(self) -> None:
        """Under trio too: each task's local receiver hears only that task's asend()s."""
        trio = pytest.importorskip("trio")
        sig = tocsin.Signal()
        logs: dict[str, list[Any]] = {"a": [], "b": []}

        async def handle(name: str) -> None:
            with sig.connected_to(recorder(logs[name]), local=True):
                for i in range(3):
                    await sig.asend(Sender, value=(name, i))
                    await trio.sleep(0)

        async def main() -> None:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(handle, "a")
                nursery.start_soon(handle, "b")

        trio.run(main)
        assert logs == {"a": [("a", i) for i in range(3)], "b": [("b", i) for i in range(3)]}
