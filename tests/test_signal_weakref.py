"""Weak and strong references to receivers and senders, and memory."""

from __future__ import annotations

import copy
import functools
import gc
import itertools
import pickle
import subprocess
import sys
import threading
import tracemalloc
import weakref
from typing import TYPE_CHECKING, Any

import pytest

import tocsin
from _reuse import AddressReuse

# Module-level: pickled by reference to this name.
order_placed = tocsin.Signal(name="order_placed")

if TYPE_CHECKING:
    from collections.abc import Callable


class Listener:
    def method(self, **kwargs: Any) -> str:
        return "method"

    def __call__(self, **kwargs: Any) -> str:
        return "call"


class SlottedListener:
    __slots__ = ()

    def method(self, **kwargs: Any) -> str:
        return "slotted"

    def __call__(self, **kwargs: Any) -> str:
        return "slotted-call"


class Sender:
    pass


def make_handler() -> Callable[..., str]:
    def handler(**kwargs: Any) -> str:
        return "inline"

    return handler


def module_function(**kwargs: Any) -> str:
    return "module"


@pytest.fixture(name="sig")
def _sig() -> tocsin.Signal:
    return tocsin.Signal()


def responses(sig: tocsin.Signal, sender: object = None) -> list[Any]:
    return [response for _, response in sig.send(sender)]


def retained_bytes(work: Callable[[], None], rounds: int) -> int:
    """Bytes by which memory grows while running *work* another *rounds* times.

    Measured over two consecutive batches of *rounds* runs under tracing,
    after a first batch: the smaller growth counts. A leak grows memory in
    both batches; a one-off allocation (a cache, the frame some Pythons keep
    per function the first time a rare path runs) lands in one of them only.
    """
    for _ in range(5):
        work()
    gc.collect()
    ignore = [tracemalloc.Filter(inclusive=False, filename_pattern=tracemalloc.__file__)]
    tracemalloc.start()
    try:
        for _ in range(rounds):
            work()
        gc.collect()
        snapshots = [tracemalloc.take_snapshot().filter_traces(ignore)]
        for _ in range(2):
            for _ in range(rounds):
                work()
            gc.collect()
            snapshots.append(tracemalloc.take_snapshot().filter_traces(ignore))
    finally:
        tracemalloc.stop()
    growths = [
        sum(stat.size_diff for stat in after.compare_to(before, "filename"))
        for before, after in itertools.pairwise(snapshots)
    ]
    return min(growths)


class TestWeakByDefault:
    def test_callable_object(self, sig: tocsin.Signal) -> None:
        """A callable object is held weakly and its connection dies with it."""
        listener = Listener()
        sig.connect(listener)
        assert responses(sig) == ["call"]
        assert sig.connections()[0].weak is True
        ref = weakref.ref(listener)
        del listener
        assert ref() is None  # the signal held no strong reference
        assert responses(sig) == []
        assert not sig.has_listeners()
        assert sig.connections() == []

    def test_bound_method(self, sig: tocsin.Signal) -> None:
        """A bound method is held through its instance, weakly."""
        listener = Listener()
        sig.connect(listener.method)
        assert responses(sig) == ["method"]
        ref = weakref.ref(listener)
        del listener
        assert ref() is None
        assert responses(sig) == []
        assert sig.connections() == []

    def test_named_nested_function(self, sig: tocsin.Signal) -> None:
        """A named nested function with a live reference is weak, and collected after del."""

        def nested(**kwargs: Any) -> str:
            return "nested"

        sig.connect(nested)
        assert sig.connections()[0].weak is True
        assert responses(sig) == ["nested"]
        ref = weakref.ref(nested)
        del nested
        gc.collect()
        assert ref() is None
        assert responses(sig) == []

    def test_module_function(self, sig: tocsin.Signal) -> None:
        """A module-level function is held weakly (it lives as long as its module)."""
        sig.connect(module_function)
        assert sig.connections()[0].weak is True

    def test_decorated_nested_function(self, sig: tocsin.Signal) -> None:
        """@receiver on a nested function behaves like Django: weak, gone with its scope."""

        def scope() -> weakref.ref[Any]:
            @tocsin.receiver(sig)
            def on(**kwargs: Any) -> str:
                return "on"

            assert responses(sig) == ["on"]
            return weakref.ref(on)

        ref = scope()
        gc.collect()
        assert ref() is None
        assert responses(sig) == []

    def test_weak_false_keeps_alive(self, sig: tocsin.Signal) -> None:
        """weak=False holds functions, methods and objects strongly."""
        listener = Listener()

        def nested(**kwargs: Any) -> str:
            return "nested"

        sig.connect(listener, weak=False)
        sig.connect(listener.method, weak=False)
        sig.connect(nested, weak=False)
        refs: list[weakref.ref[Any]] = [weakref.ref(listener), weakref.ref(nested)]
        del listener, nested
        gc.collect()
        assert all(ref() is not None for ref in refs)
        assert responses(sig) == ["call", "method", "nested"]
        assert [c.weak for c in sig.connections()] == [False, False, False]

    def test_weak_false_released_on_disconnect(self, sig: tocsin.Signal) -> None:
        """A strong receiver is released when disconnected, also after sends."""
        listener = Listener()
        sig.connect(listener, weak=False)
        sig.connect(listener.method, sender="value", weak=False)
        assert responses(sig, "value") == ["call", "method"]
        assert responses(sig, None) == ["call"]
        ref = weakref.ref(listener)
        sig.disconnect(listener)
        sig.disconnect(listener.method, sender="value")
        del listener
        assert ref() is None


class TestKeptStrongly:
    def test_lambda(self, sig: tocsin.Signal) -> None:
        """A lambda is held strongly: a weak reference would lose it at once."""
        sig.connect(lambda **kwargs: "lambda")
        gc.collect()
        assert responses(sig) == ["lambda"]
        assert sig.connections()[0].weak is False

    def test_partial(self, sig: tocsin.Signal) -> None:
        """A functools.partial is held strongly."""

        def target(value: str, **kwargs: Any) -> str:
            return value

        sig.connect(functools.partial(target, "partial"))
        gc.collect()
        assert responses(sig) == ["partial"]
        assert sig.connections()[0].weak is False

    def test_inline_closure(self, sig: tocsin.Signal) -> None:
        """sig.connect(make_handler()) keeps the closure it was given."""
        sig.connect(make_handler())
        gc.collect()
        assert responses(sig) == ["inline"]
        assert sig.connections()[0].weak is False

    def test_inline_closure_disconnect(self, sig: tocsin.Signal) -> None:
        """A kept closure is released again by disconnect."""
        handler = make_handler()
        sig.connect(make_handler())  # another closure: kept
        sig.connect(handler)  # referenced here: weak
        ref = weakref.ref(handler)
        assert [c.weak for c in sig.connections()] == [False, True]
        kept = sig.connections()[0].receiver
        kept_ref = weakref.ref(kept)
        assert sig.disconnect(kept)
        del kept, handler
        gc.collect()
        assert kept_ref() is None
        assert ref() is None
        assert responses(sig) == []

    def test_not_weakly_referenceable(self, sig: tocsin.Signal) -> None:
        """Objects and methods of slotted classes are held strongly instead of failing."""
        listener = SlottedListener()
        sig.connect(listener)
        sig.connect(listener.method)
        del listener
        gc.collect()
        assert responses(sig) == ["slotted-call", "slotted"]
        assert [c.weak for c in sig.connections()] == [False, False]

    def test_builtin(self, sig: tocsin.Signal) -> None:
        """A builtin receiver is kept."""
        sig.connect(dict)
        assert responses(sig, "s") == [{"signal": sig, "sender": "s"}]


class TestReceiverIdReuse:
    """A new receiver at a dead receiver's address is a new receiver.

    Each test provokes the reuse (tests/_reuse.py) and fails if it cannot.
    """

    @staticmethod
    def reuse(make: Callable[[], Any], dead_id: int) -> Any:
        keep = []
        for _ in range(100_000):
            obj = make()
            if id(obj) == dead_id:
                return obj
            keep.append(obj)
            if len(keep) > 2000:
                keep.clear()
        pytest.skip(
            "this Python never reused the dead object's address here, so id() reuse cannot be provoked"
        )

    def test_callable_object(self, sig: tocsin.Signal) -> None:
        """Connecting the newcomer is not mistaken for a duplicate of the dead one."""
        heap = AddressReuse(Listener)
        listener = heap.new()
        sig.connect(listener)
        dead_id = id(listener)
        del listener
        newcomer = heap.reuse(dead_id)
        assert sig.send(None) == []
        sig.connect(newcomer)
        assert sig.send(None) == [(newcomer, "call")]
        assert sig.disconnect(newcomer)

    def test_disconnect_newcomer(self, sig: tocsin.Signal) -> None:
        """Disconnecting a never-connected newcomer reports False."""
        heap = AddressReuse(Listener)
        listener = heap.new()
        sig.connect(listener)
        dead_id = id(listener)
        del listener
        newcomer = heap.reuse(dead_id)
        assert sig.disconnect(newcomer) is False

    def test_bound_method(self, sig: tocsin.Signal) -> None:
        """The same for a bound method whose instance reuses the address."""
        heap = AddressReuse(Listener)
        listener = heap.new()
        sig.connect(listener.method)
        sig.send(None)
        dead_id = id(listener)
        del listener
        newcomer = heap.reuse(dead_id)
        sig.connect(newcomer.method)
        assert sig.send(None) == [(newcomer.method, "method")]


class TestSenderReferences:
    def test_disconnect_releases_sender_weakref(self, sig: tocsin.Signal) -> None:
        """No weak reference to the sender outlives its last connection."""
        sender = Sender()
        sig.connect(module_function, sender=sender)
        sig.connect(module_function, sender=sender, dispatch_uid="x")
        sig.send(sender)
        assert weakref.getweakrefcount(sender) >= 1
        sig.disconnect(module_function, sender=sender)
        assert weakref.getweakrefcount(sender) >= 1
        sig.disconnect(dispatch_uid="x", sender=sender)
        assert weakref.getweakrefcount(sender) == 0

    @pytest.mark.parametrize("operation", ["connections", "send", "has_listeners"])
    def test_dead_sender_releases_strong_receiver(self, sig: tocsin.Signal, operation: str) -> None:
        """A receiver held strongly for a sender that died is released by the next use of the signal."""
        sender = Sender()
        listener = Listener()
        sig.connect(listener, sender=sender, weak=False)
        sig.connect(listener, sender="other")  # weak: lives only as long as the listener
        del sender
        ref = weakref.ref(listener)
        del listener
        use: dict[str, Callable[[], object]] = {
            "connections": sig.connections,
            "send": lambda: sig.send(None),
            "has_listeners": lambda: sig.has_listeners(None),
        }
        use[operation]()
        assert ref() is None
        assert sig.connections() == []

    def test_one_weakref_per_sender(self, sig: tocsin.Signal) -> None:
        """Many connections for one sender share a single weak reference."""
        sender = Sender()
        listeners = [Listener() for _ in range(10)]
        for listener in listeners:
            sig.connect(listener, sender=sender)
        assert weakref.getweakrefcount(sender) == 1


class _HashHook:
    """A dispatch_uid whose first hash, taken by connect() under the signal's lock, runs *hook*."""

    def __init__(self, hook: Callable[[], None]) -> None:
        self.hook: Callable[[], None] | None = hook

    def __hash__(self) -> int:
        hook, self.hook = self.hook, None
        if hook is not None:
            hook()
        return 1

    def __eq__(self, other: object) -> bool:
        return self is other


class TestDeadSenderReleasesAtOnce:
    """Receivers held strongly for a sender go when the sender dies, not at the next use."""

    @pytest.mark.parametrize("kind", ["lambda", "partial", "inline closure", "object, weak=False"])
    def test_released_when_the_sender_dies(self, sig: tocsin.Signal, kind: str) -> None:
        """Connected for one sender and held strongly: gone as the sender goes, with no further call."""
        sender = Sender()
        if kind == "lambda":
            receiver: Callable[..., Any] = lambda **kwargs: None
        elif kind == "partial":
            receiver = functools.partial(module_function)
        elif kind == "inline closure":
            sig.connect(make_handler(), sender=sender)
            [receiver] = sig.receivers_for(sender)
        else:
            receiver = Listener()
        sig.connect(receiver, sender=sender, weak=kind != "object, weak=False")
        assert [c.weak for c in sig.connections()] == [False]
        ref = weakref.ref(receiver)
        del receiver
        del sender  # no send, connect or connections() between this and the check
        assert ref() is None
        assert sig.connections() == []

    def test_sender_in_a_reference_cycle(self, sig: tocsin.Signal) -> None:
        """A sender freed by the garbage collector releases its receivers in that pass."""
        sender = Sender()
        sender.me = sender  # type: ignore[attr-defined]
        receiver = functools.partial(module_function)
        sig.connect(receiver, sender=sender)
        ref = weakref.ref(receiver)
        del receiver, sender
        gc.collect()
        assert ref() is None

    def test_sender_dies_while_another_thread_holds_the_lock(self, sig: tocsin.Signal) -> None:
        """The callback never waits for the lock; the thread holding it sweeps as it releases it."""
        sender = Sender()
        receiver = functools.partial(module_function)
        sig.connect(receiver, sender=sender)
        ref = weakref.ref(receiver)
        del receiver
        inside, proceed = threading.Event(), threading.Event()
        locked: list[bool] = []

        def hold() -> None:
            locked.append(sig._lock.locked())
            inside.set()
            proceed.wait(timeout=30)

        holder = threading.Thread(
            target=sig.connect, args=(module_function,), kwargs={"dispatch_uid": _HashHook(hold)}
        )
        holder.start()
        assert inside.wait(timeout=30)
        del sender  # the other thread is inside connect(), holding the lock
        held_meanwhile = ref() is not None
        proceed.set()
        holder.join()
        assert locked == [True]
        assert held_meanwhile  # released by the lock's holder, not here
        assert ref() is None
        assert [c.receiver for c in sig.connections()] == [module_function]

    def test_sender_dies_while_this_thread_holds_the_lock(self, sig: tocsin.Signal) -> None:
        """A sender dying inside a connect() of this thread is swept before connect() returns."""
        senders = [Sender()]
        receiver = functools.partial(module_function)
        sig.connect(receiver, sender=senders[0])
        ref = weakref.ref(receiver)
        del receiver
        locked: list[bool] = []

        def drop_sender() -> None:
            locked.append(sig._lock.locked())
            senders.clear()

        dead_after_connect: list[bool] = []

        def connect() -> None:
            sig.connect(module_function, dispatch_uid=_HashHook(drop_sender))
            dead_after_connect.append(ref() is None)

        thread = threading.Thread(target=connect, daemon=True)  # a deadlock fails the test, not the run
        thread.start()
        thread.join(timeout=30)
        assert not thread.is_alive()
        assert (senders, locked, dead_after_connect) == ([], [True], [True])
        assert [c.receiver for c in sig.connections()] == [module_function]

    def test_receiver_del_may_use_the_signal(self, sig: tocsin.Signal) -> None:
        """A released receiver's __del__ that connects and sends on the signal does not deadlock."""
        done: list[list[Any]] = []

        class UsesSignal:
            def __call__(self, **kwargs: Any) -> None:
                pass

            def __del__(self) -> None:
                sig.connect(module_function)
                done.append([response for _, response in sig.send(None)])

        def run() -> None:
            sender = Sender()
            sig.connect(UsesSignal(), sender=sender, weak=False)
            del sender
            # And with the sender dying while this thread holds the lock:
            senders = [Sender()]
            sig.connect(UsesSignal(), sender=senders[0], weak=False)
            sig.connect(listener, dispatch_uid=_HashHook(senders.clear))

        listener = Listener()
        thread = threading.Thread(target=run, daemon=True)  # a deadlock fails the test, not the run
        thread.start()
        thread.join(timeout=30)
        assert not thread.is_alive()
        assert done == [["module"], ["module", "call"]]

    def test_deaths_do_not_sweep_every_connection(
        self, sig: tocsin.Signal, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Each dying sender removes its own connections: 500 deaths, no full sweep."""
        senders = [Sender() for _ in range(500)]
        receivers = [functools.partial(module_function) for _ in senders]
        for sender, receiver in zip(senders, receivers, strict=True):
            sig.connect(receiver, sender=sender)
        refs = [weakref.ref(receiver) for receiver in receivers]
        del receivers, sender, receiver
        sweeps: list[int] = []
        real = type(sig)._sweep

        def counting(signal: tocsin.Signal) -> list[object]:
            sweeps.append(len(signal._records))
            return real(signal)

        monkeypatch.setattr(type(sig), "_sweep", counting)
        senders.clear()
        assert all(ref() is None for ref in refs)
        assert sweeps == []


class TestMemory:
    def test_no_weakref_outlives_connection(self, sig: tocsin.Signal) -> None:
        """Disconnecting removes every weak reference the signal made to the receiver."""
        listener = Listener()
        for sender in ("a", "b", None):
            sig.connect(listener, sender=sender)
            sig.connect(listener.method, sender=sender)
        sig.send("a")
        assert weakref.getweakrefcount(listener) == 6
        for sender in ("a", "b", None):
            sig.disconnect(listener, sender=sender)
            sig.disconnect(listener.method, sender=sender)
        assert weakref.getweakrefcount(listener) == 0

    def test_signal_collectable_while_receivers_live(self) -> None:
        """A signal is not kept alive by the weak receivers connected to it."""
        listener = Listener()
        sender = Sender()
        sig = tocsin.Signal()
        sig.connect(listener, sender=sender)
        sig.connect(listener.method)
        sig.connect(module_function)
        sig.send(sender)
        ref = weakref.ref(sig)
        del sig
        gc.collect()
        assert ref() is None
        assert weakref.getweakrefcount(listener) == 0
        assert weakref.getweakrefcount(sender) == 0
        del listener, sender  # the callbacks of a dead signal do nothing
        gc.collect()

    def test_signal_collectable_with_strong_cycle(self) -> None:
        """A strong receiver referring back to its signal forms a collectable cycle."""

        def build() -> weakref.ref[tocsin.Signal]:
            sig = tocsin.Signal()
            sig.connect(lambda **kwargs: sig)  # signal -> lambda -> closure cell -> signal
            sig.send(None)
            return weakref.ref(sig)

        ref = build()
        gc.collect()
        assert ref() is None

    def test_receiver_dies_after_signal(self) -> None:
        """A receiver or sender dying after its signal is collected: its death callback does nothing."""
        listener = Listener()
        sender = Sender()
        sig = tocsin.Signal()
        sig.connect(listener, sender=sender)
        sig.connect(listener.method)
        # The signal's weak references, kept alive past the signal: otherwise
        # they die with it and their callbacks never run.
        refs = [
            ref
            for ref in (*weakref.getweakrefs(listener), *weakref.getweakrefs(sender))
            if ref.__callback__ is not None
        ]
        assert len(refs) == 3  # the listener, the method's instance, the sender
        sig_ref = weakref.ref(sig)
        del sig
        gc.collect()
        assert sig_ref() is None
        errors: list[Any] = []  # an exception in a weakref callback is only "ignored", never raised
        hook = sys.unraisablehook
        sys.unraisablehook = errors.append
        try:
            del listener, sender
            gc.collect()
        finally:
            sys.unraisablehook = hook
        assert [ref() for ref in refs] == [None] * 3
        assert [(e.exc_type, e.exc_value) for e in errors] == []

    def test_connect_disconnect_cycles_retain_nothing(self, sig: tocsin.Signal) -> None:
        """Connect/send/disconnect cycles over every kind of receiver and sender retain nothing."""
        listener = Listener()
        sender = Sender()
        key = ["unhashable"]

        def cycle() -> None:
            for who in (None, "value", 17, sender, key):
                sig.connect(listener, sender=who)
                sig.connect(listener.method, sender=who, dispatch_uid="uid")
                sig.connect(module_function, sender=who, weak=False, priority=1)
                sig.send(who)
                sig.has_listeners(who)
                sig.disconnect(listener, sender=who)
                sig.disconnect(dispatch_uid="uid", sender=who)
                sig.disconnect(module_function, sender=who)

        assert retained_bytes(cycle, 300) < 2000
        assert sig.connections() == []

    def test_dead_receivers_do_not_pile_up(self, sig: tocsin.Signal) -> None:
        """Receivers and senders that die are cleaned up, not kept as dead entries."""

        def churn() -> None:
            listener = Listener()
            sender = Sender()
            sig.connect(listener)
            sig.connect(module_function, sender=sender)
            sig.send(sender)
            del listener, sender
            sig.send(None)

        assert retained_bytes(churn, 500) < 2000
        assert [c.receiver for c in sig.connections()] == []

    def test_sends_allocate_nothing_lasting(self, sig: tocsin.Signal) -> None:
        """Sending from many short-lived senders leaves no per-sender entries behind."""
        sig.connect(module_function)

        def send_from_temporaries() -> None:
            sig.send(Sender())
            sig.send(["list"])
            sig.has_listeners(Sender())

        assert retained_bytes(send_from_temporaries, 1000) < 2000


class TestCopy:
    def test_deepcopy_returns_same_signal(self) -> None:
        """Deep-copying an object holding a signal shares the signal."""

        class Holder:
            def __init__(self) -> None:
                self.changed = tocsin.Signal()
                self.listener = Listener()
                self.changed.connect(self.listener)

        holder = Holder()
        clone = copy.deepcopy(holder)
        assert clone.changed is holder.changed
        assert clone.listener is not holder.listener
        assert copy.deepcopy(holder.changed) is holder.changed

    def test_copy_returns_same_signal(self, sig: tocsin.Signal) -> None:
        """copy.copy() of a signal is the signal, like deepcopy."""
        assert copy.copy(sig) is sig

    def test_pickle_by_reference_keeps_identity_and_receivers(self) -> None:
        """A module-level signal unpickles as the same object, receivers and all."""
        listener = Listener()
        order_placed.connect(listener)
        try:
            holder = {"signal": order_placed, "payload": [1, 2]}
            for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
                clone = pickle.loads(pickle.dumps(holder, protocol=protocol))
                assert clone["signal"] is order_placed
                assert clone["payload"] == [1, 2]
            assert order_placed.receivers_for(None) == [listener]
        finally:
            order_placed.disconnect(listener)

    def test_pickle_across_processes(self) -> None:
        """Another process unpickles the signal its own module binds to that name."""
        from tocsin.asgi import request_finished

        data = pickle.dumps([request_finished])
        code = (
            "import pickle, sys; import tocsin.asgi as a; "
            "[s] = pickle.loads(sys.stdin.buffer.read()); "
            "print(s is a.request_finished, s.name)"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], input=data, capture_output=True, check=True, timeout=60
        )
        assert out.stdout.decode().split() == ["True", "request_finished"]

    def test_builtin_signals_pickle_by_their_public_path(self) -> None:
        """Every signal tocsin ships pickles as a public name: private modules may move."""
        import importlib

        found = []
        for public in ("tocsin", "tocsin.asgi", "tocsin.wsgi", "tocsin.sqlalchemy"):
            module = importlib.import_module(public)
            for name in module.__all__:
                value = getattr(module, name)
                if isinstance(value, tocsin.Signal):
                    found.append(value)
                    data = pickle.dumps(value)
                    assert b"tocsin._" not in data, (public, name, data)
                    assert value.module in ("tocsin", "tocsin.asgi", "tocsin.sqlalchemy")
                    assert f"{value.module}:".encode() in data
                    assert pickle.loads(data) is value
        # the meta-signals, three request signals and eight model signals
        assert len({id(s) for s in found}) == 13

    def test_pickle_unbound_signal_says_how_to_fix(self) -> None:
        """A signal no module-level name holds cannot be pickled; the error says why and what to do."""
        state = {"changed": tocsin.Signal(name="changed")}  # as an object would keep it
        with pytest.raises(TypeError, match=r"^cannot pickle <Signal 'changed' at 0x[0-9a-f]+>: ") as info:
            pickle.dumps(state)
        message = str(info.value)
        assert "pickled by reference, like functions and classes" in message
        assert f"no name in module {__name__} is bound to this one" in message
        assert "Bind it at module level" in message
        assert "__getstate__" in message

    def test_deepcopy_of_connected_signal(self, sig: tocsin.Signal) -> None:
        """Deep-copying works whatever is connected, locks and weakrefs included."""
        listener = Listener()
        sig.connect(listener, sender=Sender())
        sig.connect(listener.method, sender=["x"])
        sig.send(None)
        assert copy.deepcopy({"sig": sig})["sig"] is sig
