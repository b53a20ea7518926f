"""Receiver order, priorities, and changes made while a send is running."""

from __future__ import annotations

import gc
from typing import TYPE_CHECKING, Any

import pytest

import tocsin

if TYPE_CHECKING:
    from collections.abc import Callable


class Sender:
    pass


def recorder(log: list[str], name: str, result: Any = None) -> Callable[..., Any]:
    def receiver(**kwargs: Any) -> Any:
        log.append(name)
        return result if result is not None else name

    receiver.__qualname__ = name
    return receiver


@pytest.fixture(name="sig")
def _sig() -> tocsin.Signal:
    return tocsin.Signal(name="order")


class TestOrder:
    def test_connection_order(self, sig: tocsin.Signal) -> None:
        """Receivers of equal priority run in connection order."""
        log: list[str] = []
        names = [f"r{i}" for i in range(20)]
        receivers = [recorder(log, name) for name in names]
        for receiver in receivers:
            sig.connect(receiver)
        assert [response for _, response in sig.send(None)] == names
        assert log == names
        assert sig.receivers_for(None) == receivers

    def test_priority_then_connection_order(self, sig: tocsin.Signal) -> None:
        """Higher priority first; ties keep connection order; negatives last."""
        log: list[str] = []
        keep = []
        for name, priority in [("a", 0), ("b", 10), ("c", -5), ("d", 10), ("e", 0), ("f", -5), ("g", 3)]:
            receiver = recorder(log, name)
            keep.append(receiver)
            sig.connect(receiver, priority=priority)
        sig.send(None)
        assert log == ["b", "d", "g", "a", "e", "c", "f"]

    def test_priority_across_sender_and_any(self, sig: tocsin.Signal) -> None:
        """Sender-specific and any-sender receivers are merged into one order."""
        log: list[str] = []
        sender = Sender()
        keep = [recorder(log, n) for n in ("any-low", "own-high", "any-high", "own-low")]
        sig.connect(keep[0], priority=-1)
        sig.connect(keep[1], sender=sender, priority=5)
        sig.connect(keep[2], priority=5)
        sig.connect(keep[3], sender=sender)
        sig.send(sender)
        assert log == ["own-high", "any-high", "own-low", "any-low"]
        log.clear()
        sig.send(None)
        assert log == ["any-high", "any-low"]

    def test_order_is_stable_across_rebuilds(self, sig: tocsin.Signal) -> None:
        """Unrelated connects and disconnects do not reorder existing receivers."""
        log: list[str] = []
        receivers = [recorder(log, f"r{i}") for i in range(6)]
        for i, receiver in enumerate(receivers):
            sig.connect(receiver, priority=i % 2)
        extra = recorder(log, "extra")
        for _ in range(3):
            sig.connect(extra, sender="elsewhere")
            sig.send(None)
            sig.disconnect(extra, sender="elsewhere")
        log.clear()
        sig.send(None)
        assert log == ["r1", "r3", "r5", "r0", "r2", "r4"]

    def test_has_listeners_and_receivers_for_agree_with_send(self, sig: tocsin.Signal) -> None:
        """receivers_for() lists what send() calls, in the same order."""
        log: list[str] = []
        keep = [recorder(log, n) for n in "abc"]
        sig.connect(keep[0], sender="s")
        sig.connect(keep[1], priority=2)
        sig.connect(keep[2], sender="t")
        assert sig.receivers_for("s") == [keep[1], keep[0]]
        assert [r for r, _ in sig.send("s")] == [keep[1], keep[0]]
        assert sig.receivers_for("u") == [keep[1]]


class TestDuringSend:
    def test_connect_during_send_applies_next_time(self, sig: tocsin.Signal) -> None:
        """A receiver connected by a receiver does not run in the same send."""
        log: list[str] = []
        late = recorder(log, "late")

        def first(**kwargs: Any) -> None:
            log.append("first")
            sig.connect(late)

        sig.connect(first)
        sig.send(None)
        assert log == ["first"]
        log.clear()
        sig.send(None)
        assert log == ["first", "late"]

    def test_disconnect_other_during_send(self, sig: tocsin.Signal) -> None:
        """Disconnecting the next receiver mid-send does not skip or repeat anyone."""
        log: list[str] = []
        second = recorder(log, "second")
        third = recorder(log, "third")

        def first(**kwargs: Any) -> None:
            log.append("first")
            sig.disconnect(second)

        for receiver in (first, second, third):
            sig.connect(receiver)
        sig.send(None)
        assert log == ["first", "second", "third"]
        log.clear()
        sig.send(None)
        assert log == ["first", "third"]

    def test_disconnect_self_during_send(self, sig: tocsin.Signal) -> None:
        """A receiver disconnecting itself skips nobody (PyDispatcher skips the next one)."""
        log: list[str] = []
        second = recorder(log, "second")
        third = recorder(log, "third")

        def first(**kwargs: Any) -> None:
            log.append("first")
            sig.disconnect(first)

        for receiver in (first, second, third):
            sig.connect(receiver)
        sig.send(None)
        assert log == ["first", "second", "third"]
        log.clear()
        sig.send(None)
        assert log == ["second", "third"]

    def test_disconnect_and_connect_during_send(self, sig: tocsin.Signal) -> None:
        """The classic peer test: receiver 1 disconnects 2 and connects "late"."""
        log: list[str] = []
        second = recorder(log, "second")
        late = recorder(log, "late")

        def first(**kwargs: Any) -> None:
            log.append("first")
            sig.disconnect(second)
            sig.connect(late)

        sig.connect(first)
        sig.connect(second)
        sig.send(None)
        assert log == ["first", "second"]

    def test_disconnect_all_during_send(self, sig: tocsin.Signal) -> None:
        """Disconnecting every receiver mid-send still completes the snapshot."""
        log: list[str] = []
        receivers = [recorder(log, f"r{i}") for i in range(4)]

        def clear(**kwargs: Any) -> None:
            log.append("clear")
            for receiver in [*receivers, clear]:
                sig.disconnect(receiver)

        sig.connect(clear)
        for receiver in receivers:
            sig.connect(receiver)
        sig.send(None)
        assert log == ["clear", "r0", "r1", "r2", "r3"]
        assert sig.send(None) == []

    def test_weak_receiver_collected_mid_send(self, sig: tocsin.Signal) -> None:
        """A weak receiver collected before its turn is skipped quietly."""
        log: list[str] = []

        class Victim:
            def __call__(self, **kwargs: Any) -> None:
                log.append("victim")

        holder = [Victim()]

        def killer(**kwargs: Any) -> None:
            log.append("killer")
            holder.clear()
            gc.collect()

        after = recorder(log, "after")
        sig.connect(killer)
        sig.connect(holder[0])
        sig.connect(after)
        responses = sig.send(None)
        assert log == ["killer", "after"]
        assert [response for _, response in responses] == [None, "after"]
        assert len(sig.connections()) == 2

    def test_weak_method_collected_mid_send_robust(self, sig: tocsin.Signal) -> None:
        """The same for a weakly held bound method under send_robust and a priority."""
        log: list[str] = []

        class Victim:
            def on(self, **kwargs: Any) -> None:
                log.append("victim")

        holder = [Victim()]

        def killer(**kwargs: Any) -> None:
            holder.clear()
            gc.collect()

        sig.connect(killer, priority=1)
        sig.connect(holder[0].on)
        assert len(sig.send_robust(None)) == 1
        assert log == []

    def test_reentrant_send(self, sig: tocsin.Signal) -> None:
        """A receiver may send the same signal again; nested sends complete first."""
        log: list[str] = []

        def countdown(n: int, **kwargs: Any) -> int:
            log.append(f"enter {n}")
            if n:
                sig.send(None, n=n - 1)
            log.append(f"leave {n}")
            return n

        tail = recorder(log, "tail")
        sig.connect(countdown)
        sig.connect(tail)
        responses = sig.send(None, n=2)
        assert [r for _, r in responses] == [2, "tail"]
        assert log == [
            "enter 2",
            "enter 1",
            "enter 0",
            "leave 0",
            "tail",
            "leave 1",
            "tail",
            "leave 2",
            "tail",
        ]

    def test_reentrant_send_with_changes(self, sig: tocsin.Signal) -> None:
        """A nested send sees a connection made just before it; the outer send does not."""
        log: list[str] = []
        late = recorder(log, "late")

        def outer(depth: int, **kwargs: Any) -> None:
            log.append(f"outer {depth}")
            if depth == 0:
                sig.connect(late)
                sig.send(None, depth=1)

        sig.connect(outer)
        sig.send(None, depth=0)
        assert log == ["outer 0", "outer 1", "late"]

    def test_sends_from_other_sender_during_send(self, sig: tocsin.Signal) -> None:
        """A receiver sending for another sender reaches that sender's receivers."""
        log: list[str] = []
        sender_a, sender_b = Sender(), Sender()
        on_b = recorder(log, "b")

        def on_a(**kwargs: Any) -> None:
            log.append("a")
            sig.send(sender_b)

        sig.connect(on_a, sender=sender_a)
        sig.connect(on_b, sender=sender_b)
        sig.send(sender_a)
        assert log == ["a", "b"]
