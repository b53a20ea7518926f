"""Threads: concurrent connect/disconnect/send, no receiver under a lock, no deadlock."""

from __future__ import annotations

import gc
import sys
import threading
from typing import TYPE_CHECKING, Any

import pytest

import tocsin

if TYPE_CHECKING:
    from collections.abc import Callable

TIMEOUT = 10.0  # seconds: a deadlock fails the test instead of hanging it


class Sender:
    pass


def run_threads(targets: list[Callable[[], object]]) -> None:
    """Start *targets* together, join with a timeout, re-raise the first error."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(targets))

    def wrap(target: Callable[[], object]) -> Callable[[], None]:
        def run() -> None:
            try:
                barrier.wait(TIMEOUT)
                target()
            except BaseException as exc:
                errors.append(exc)

        return run

    threads = [threading.Thread(target=wrap(t), daemon=True) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    assert not any(thread.is_alive() for thread in threads), "deadlock: a thread did not finish"
    if errors:
        raise errors[0]


@pytest.fixture(autouse=True)
def _fast_switching() -> Any:
    # Switch threads often so that races show up within short loops.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    yield
    sys.setswitchinterval(interval)


@pytest.fixture(name="sig")
def _sig() -> tocsin.Signal:
    return tocsin.Signal()


class TestConcurrentUse:
    def test_connect_disconnect_send(self, sig: tocsin.Signal) -> None:
        """Many threads connecting, disconnecting and sending at once break nothing."""
        stable_calls: list[int] = []

        def stable(**kwargs: Any) -> None:
            stable_calls.append(1)

        sig.connect(stable)
        senders = [Sender(), "value", 3, None]

        def churner(n: int) -> Callable[[], None]:
            def run() -> None:
                receivers = []
                for i in range(200):

                    def receiver(**kwargs: Any) -> None:
                        pass

                    receivers.append(receiver)
                    sender = senders[(n + i) % len(senders)]
                    sig.connect(receiver, sender=sender, priority=i % 3)
                    if i % 2:
                        assert sig.disconnect(receiver, sender=sender)
                for i, receiver in enumerate(receivers):
                    if not i % 2:
                        assert sig.disconnect(receiver, sender=senders[(n + i) % len(senders)])

            return run

        sends = [0]

        def sender_thread() -> None:
            for i in range(400):
                sig.send(senders[i % len(senders)])
                sig.send_robust(senders[i % len(senders)])
                sig.has_listeners(senders[i % len(senders)])
                sends[0] += 2

        run_threads([churner(0), churner(1), churner(2), sender_thread, sender_thread])
        # The stable receiver saw every send, exactly once each.
        assert len(stable_calls) == sends[0]
        assert [c.receiver for c in sig.connections()] == [stable]

    def test_dispatch_uid_race(self, sig: tocsin.Signal) -> None:
        """Threads racing to connect one dispatch_uid make exactly one connection."""

        def make() -> Callable[..., None]:
            def receiver(**kwargs: Any) -> None:
                pass

            return receiver

        def connect_many() -> None:
            for _ in range(200):
                sig.connect(make(), dispatch_uid="one")

        run_threads([connect_many] * 4)
        assert len(sig.send(None)) == 1

    def test_weak_receivers_dying_during_sends(self, sig: tocsin.Signal) -> None:
        """Receivers collected in one thread while another sends never cause errors."""

        class Listener:
            def __call__(self, **kwargs: Any) -> None:
                pass

        def churn() -> None:
            for _ in range(300):
                listener = Listener()
                sig.connect(listener)
                sig.connect(listener, sender="s")
                del listener
                if not _ % 50:
                    gc.collect()

        def send() -> None:
            for _ in range(600):
                sig.send("s")
                sig.receivers_for("s")

        run_threads([churn, churn, send, send])
        assert sig.send("s") == []
        assert sig.connections() == []

    def test_senders_dying_during_sends(self, sig: tocsin.Signal) -> None:
        """Senders created and dropped concurrently never misroute."""
        wrong: list[object] = []

        def receiver(sender: object, expected: object, **kwargs: Any) -> None:
            if sender is not expected:
                wrong.append(sender)

        def work() -> None:
            for _ in range(300):
                sender = Sender()
                sig.connect(receiver, sender=sender)
                sig.send(sender, expected=sender)
                sig.send(Sender(), expected=None)  # must reach nobody
                del sender

        run_threads([work, work, work])
        assert wrong == []
        gc.collect()
        assert sig.connections() == []


class TestReceiversRunOutsideLocks:
    def test_receiver_blocking_does_not_block_others(self, sig: tocsin.Signal) -> None:
        """While a receiver blocks, other threads can connect, disconnect and send."""
        entered = threading.Event()
        release = threading.Event()

        def blocking(**kwargs: Any) -> None:
            entered.set()
            assert release.wait(TIMEOUT)

        def quick(**kwargs: Any) -> str:
            return "quick"

        sig.connect(blocking, sender="slow")
        worker = threading.Thread(target=sig.send, args=("slow",), daemon=True)
        worker.start()
        try:
            assert entered.wait(TIMEOUT)
            done = threading.Event()

            def other_thread() -> None:
                sig.connect(quick)
                assert sig.send("fast") == [(quick, "quick")]
                assert sig.disconnect(quick)
                done.set()

            helper = threading.Thread(target=other_thread, daemon=True)
            helper.start()
            assert done.wait(TIMEOUT), "a blocked receiver blocked the signal"
            helper.join(TIMEOUT)
        finally:
            release.set()
            worker.join(TIMEOUT)
        assert not worker.is_alive()

    def test_receiver_waits_for_another_thread_using_signal(self, sig: tocsin.Signal) -> None:
        """A receiver may wait for another thread that sends the same signal."""
        results: list[str] = []

        def inner(**kwargs: Any) -> None:
            results.append("inner")

        def outer(**kwargs: Any) -> None:
            helper = threading.Thread(target=sig.send, args=("inner",), daemon=True)
            helper.start()
            helper.join(TIMEOUT)
            assert not helper.is_alive(), "deadlock"
            results.append("outer")

        sig.connect(outer, sender="outer")
        sig.connect(inner, sender="inner")
        run_threads([lambda: sig.send("outer")])
        assert results == ["inner", "outer"]


class TestReceiversUsingTheSignal:
    def test_receiver_connects_disconnects_and_sends(self, sig: tocsin.Signal) -> None:
        """A receiver may connect, disconnect and send on its own signal, in any thread."""
        log: list[str] = []

        def extra(**kwargs: Any) -> None:
            log.append("extra")

        def busy(depth: int = 0, **kwargs: Any) -> None:
            sig.connect(extra, sender="x")
            sig.has_listeners("x")
            sig.connections()
            if depth == 0:
                sig.send("x", depth=1)
            sig.disconnect(extra, sender="x")

        sig.connect(busy)
        run_threads([lambda: sig.send(None)] * 3)
        assert "extra" in log
        assert sig.receivers_for("x") == [busy]

    def test_receiver_death_callback_under_lock(self, sig: tocsin.Signal) -> None:
        """A weak receiver collected while the signal's lock is held does not deadlock."""

        class Listener:
            def __call__(self, **kwargs: Any) -> None:
                pass

        def keep(**kwargs: Any) -> None:
            pass

        def connect_cyclic_garbage() -> None:
            for _ in range(50):
                listener = Listener()
                listener.self = listener  # type: ignore[attr-defined]
                sig.connect(listener)
                sig.connect(listener, sender="s")

        thresholds = gc.get_threshold()
        # Collect on (almost) every allocation, so receivers die inside
        # connect(), disconnect() and the table rebuild, under the lock.
        gc.set_threshold(1, 1, 1)
        try:
            for i in range(8):
                connect_cyclic_garbage()
                sig.connect(keep, sender=i)
                sig.send("s")
                sig.disconnect(keep, sender=i)
                sig.connections()
        finally:
            gc.set_threshold(*thresholds)
        gc.collect()
        assert sig.send("s") == []
        assert sig.connections() == []


class TestFinalizersUsingTheSignal:
    """Objects the signal lets go of may use the signal in __del__ without deadlock."""

    @staticmethod
    def in_thread(body: Callable[[], object]) -> None:
        run_threads([body])  # a self-deadlock fails on the join timeout

    def test_disconnect_frees_receiver_that_sends(self, sig: tocsin.Signal) -> None:
        """Disconnecting the last reference to a receiver whose __del__ sends."""
        log: list[str] = []

        class Owner:
            def __call__(self, **kwargs: Any) -> None:
                pass

            def __del__(self) -> None:
                sig.send("bye")
                log.append("finalized")

        sig.connect(Owner(), weak=False, dispatch_uid="owner")
        sig.connect(lambda **kwargs: log.append("bye"), sender="bye")
        self.in_thread(lambda: sig.disconnect(dispatch_uid="owner"))
        assert log == ["bye", "finalized"]

    def test_dead_sender_frees_receiver_that_disconnects(self, sig: tocsin.Signal) -> None:
        """A strong receiver of a dead sender, dropped by a sweep, may disconnect in __del__."""
        log: list[str] = []

        def other(**kwargs: Any) -> None:
            pass

        class Owner:
            def __call__(self, **kwargs: Any) -> None:
                pass

            def __del__(self) -> None:
                log.append(f"disconnected {sig.disconnect(other)}")

        class Sender:
            pass

        sender = Sender()
        sig.connect(other)
        sig.connect(Owner(), sender=sender, weak=False)
        del sender
        self.in_thread(lambda: sig.send(None))
        assert log == ["disconnected True"]

    def test_sweep_frees_sender_that_sends(self, sig: tocsin.Signal) -> None:
        """A sender held strongly (no weak references), released by a sweep, may send in __del__."""
        log: list[str] = []

        class Resource:
            __slots__ = ()

            def __del__(self) -> None:
                sig.send("closed")

        class Listener:
            def __call__(self, **kwargs: Any) -> None:
                pass

        def on_closed(**kwargs: Any) -> None:
            log.append("closed")

        listener = Listener()
        sig.connect(on_closed, sender="closed")
        sig.connect(listener, sender=Resource())  # the signal holds the only reference
        del listener  # its connection dies, and with it the signal's hold on the resource
        self.in_thread(lambda: sig.send(None))
        assert log == ["closed"]
