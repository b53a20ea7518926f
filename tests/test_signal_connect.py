"""Connecting: validation, duplicates, dispatch_uid, decorators and connections()."""

from __future__ import annotations

import ast
import dataclasses
import enum
import functools
import gc
import importlib.util
import inspect
import sys
import tracemalloc
import weakref
from pathlib import Path
from typing import Any

import pytest

import tocsin
from tocsin.exceptions import DispatchError, NotASignalError, ReceiverNotCallableError, ReceiverSignatureError


def handler(**kwargs: Any) -> str:
    return "handler"


def other(**kwargs: Any) -> str:
    return "other"


def no_kwargs(sender: object) -> None:
    pass


class Listener:
    def method(self, **kwargs: Any) -> str:
        return "method"

    def __call__(self, **kwargs: Any) -> str:
        return "call"


@pytest.fixture(name="sig")
def _sig() -> tocsin.Signal:
    return tocsin.Signal(name="sig")


class TestValidation:
    @pytest.mark.parametrize("bad", [42, "handler", object(), [handler]], ids=repr)
    def test_non_callable_is_type_error(self, sig: tocsin.Signal, bad: object) -> None:
        """A non-callable is refused with Django's message, naming the object."""
        with pytest.raises(TypeError, match=r"^Signal receivers must be callable\.") as info:
            sig.connect(bad)  # type: ignore[call-overload]
        assert isinstance(info.value, ReceiverNotCallableError)
        assert isinstance(info.value, DispatchError)
        assert repr(bad) in str(info.value)
        assert sig.connections() == []
        assert not sig.has_listeners()

    def test_result_of_call_is_refused(self, sig: tocsin.Signal) -> None:
        """Passing handler() instead of handler names the returned value."""
        with pytest.raises(TypeError, match="got 'handler'"):
            sig.connect(handler())  # type: ignore[call-overload]

    @pytest.mark.parametrize(
        "bad",
        [
            no_kwargs,
            lambda sender: None,
            functools.partial(no_kwargs),
        ],
        ids=["function", "lambda", "partial"],
    )
    def test_no_kwargs_is_value_error(self, sig: tocsin.Signal, bad: Any) -> None:
        """A receiver without **kwargs is refused, and the message names it."""
        with pytest.raises(
            ValueError, match=r"^Signal receivers must accept keyword arguments \(\*\*kwargs\)\."
        ) as info:
            sig.connect(bad)
        assert isinstance(info.value, ReceiverSignatureError)
        assert "no_kwargs" in str(info.value) or "lambda" in str(info.value)
        assert sig.connections() == []

    def test_method_without_kwargs(self, sig: tocsin.Signal) -> None:
        """A bound method without **kwargs is refused with its qualified name."""

        class Bad:
            def on(self, sender: object) -> None:
                pass

        with pytest.raises(
            ValueError, match=r"TestValidation\.test_method_without_kwargs\.<locals>\.Bad\.on"
        ):
            sig.connect(Bad().on)
        assert sig.connections() == []

    def test_callable_object_without_kwargs(self, sig: tocsin.Signal) -> None:
        """A callable object whose __call__ lacks **kwargs is refused, naming its class."""

        class Bad:
            def __call__(self, sender: object) -> None:
                pass

        with pytest.raises(ValueError, match=r"Bad instance"):
            sig.connect(Bad())
        assert sig.connections() == []

    def test_keyword_only_with_kwargs_is_fine(self, sig: tocsin.Signal) -> None:
        """Named keyword-only parameters plus **kwargs are accepted and filled."""

        def receiver(*, sender: object, value: int, **kwargs: Any) -> int:
            return value * 2

        sig.connect(receiver)
        assert sig.send("s", value=21) == [(receiver, 42)]

    def test_via_must_be_callable(self, sig: tocsin.Signal) -> None:
        """A non-callable via= is refused and nothing is connected."""
        with pytest.raises(TypeError, match=r"via= must be a delivery policy"):
            sig.connect(handler, via="later")  # type: ignore[call-overload]
        assert sig.connections() == []

    @pytest.mark.parametrize("bad", ["high", None, 1.5, [1]], ids=repr)
    def test_priority_must_be_an_int(self, sig: tocsin.Signal, bad: Any) -> None:
        """A priority that cannot sort is refused at connect, not at every later send."""
        sig.connect(handler)
        with pytest.raises(TypeError, match=r"^priority must be an int"):
            sig.connect(other, priority=bad)
        assert sig.send(None) == [(handler, "handler")]
        assert len(sig.connections()) == 1

    def test_priority_integer_like(self, sig: tocsin.Signal) -> None:
        """IntEnum members and bools are accepted as the ints they are."""

        class Level(enum.IntEnum):
            HIGH = 5

        sig.connect(handler)
        sig.connect(other, priority=Level.HIGH)
        assert [r for r, _ in sig.send(None)] == [other, handler]
        assert sig.connections()[1].priority == 5

    def test_failed_connect_keeps_existing(self, sig: tocsin.Signal) -> None:
        """A refused receiver does not disturb connections made before it."""
        sig.connect(handler)
        with pytest.raises(ValueError):
            sig.connect(no_kwargs)
        assert sig.receivers_for(None) == [handler]


class TestReceiverDecorator:
    def test_single_signal(self, sig: tocsin.Signal) -> None:
        """@receiver connects and returns the function unchanged."""

        @tocsin.receiver(sig, sender="s", dispatch_uid="uid", priority=5)
        def on(**kwargs: Any) -> str:
            return "on"

        assert on(x=1) == "on"
        assert sig.send("s") == [(on, "on")]
        assert sig.send("t") == []
        (conn,) = sig.connections()
        assert (conn.sender, conn.dispatch_uid, conn.priority) == ("s", "uid", 5)

    def test_signal_list(self) -> None:
        """@receiver([a, b]) connects to every signal of the list."""
        a, b = tocsin.Signal(), tocsin.Signal()

        @tocsin.receiver([a, b])
        def on(**kwargs: Any) -> str:
            return "on"

        assert a.send(None) == [(on, "on")]
        assert b.send(None) == [(on, "on")]

    def test_signal_tuple_and_generator(self) -> None:
        """Any iterable of signals works, including a one-shot generator."""
        a, b = tocsin.Signal(), tocsin.Signal()

        @tocsin.receiver(s for s in (a, b))
        def on(**kwargs: Any) -> None:
            pass

        assert a.has_listeners()
        assert b.has_listeners()

    def test_invalid_receiver_connects_nowhere(self) -> None:
        """A receiver without **kwargs is refused and left connected to no signal."""
        a, b = tocsin.Signal(), tocsin.Signal()
        with pytest.raises(ValueError, match="must accept keyword arguments"):
            tocsin.receiver([a, b])(no_kwargs)
        assert a.connections() == []
        assert b.connections() == []

    def test_failure_midway_rolls_back(self) -> None:
        """If the third signal of a list fails, the first two are disconnected again."""
        a, b = tocsin.Signal(), tocsin.Signal()

        class Broken(tocsin.Signal):
            def connect(self, *args: Any, **kwargs: Any) -> Any:
                raise RuntimeError("broken")

        with pytest.raises(RuntimeError, match="broken"):
            tocsin.receiver([a, b, Broken()])(handler)
        assert a.connections() == []
        assert b.connections() == []

    def test_rollback_keeps_earlier_connections(self) -> None:
        """A rollback removes only what the decorator added, not a connection made before."""
        a = tocsin.Signal()
        a.connect(handler)

        class Broken(tocsin.Signal):
            def connect(self, *args: Any, **kwargs: Any) -> Any:
                raise RuntimeError("broken")

        with pytest.raises(RuntimeError):
            tocsin.receiver([a, Broken()])(handler)
        assert a.receivers_for(None) == [handler]

    PREFIX = r"^@receiver needs a signal \(an instance with a connect\(\) method\) or a list of signals; "

    @pytest.mark.parametrize(
        ("given", "message"),
        [
            ("post_save", r"got the string 'post_save'\. Import the signal object and pass it: "),
            (42, r"got 42 \(of type int\)\. Pass the signal object: @receiver\(order_paid\)"),
            (object, r"got <class 'object'> \(of type type\)\."),
            (
                tocsin.Signal,
                (
                    r"got the class Signal itself\. Create the signal once, at module level "
                    r"\(order_paid = Signal\(\)\), and pass that instance"
                ),
            ),
            (tocsin.TypedSignal, r"got the class TypedSignal itself\."),
            (None, r"got None \(of type NoneType\)\."),
        ],
        ids=["string", "int", "class-without-connect", "Signal-class", "TypedSignal-class", "None"],
    )
    def test_not_a_signal(self, given: Any, message: str) -> None:
        """Anything but a signal (or a list of them) is refused at once, saying what to pass."""
        with pytest.raises(NotASignalError, match=self.PREFIX + message) as info:
            tocsin.receiver(given)
        assert isinstance(info.value, TypeError)
        assert isinstance(info.value, DispatchError)

    def test_bare_receiver(self) -> None:
        """@receiver used without arguments names the mistake and shows the right call."""
        with pytest.raises(
            NotASignalError,
            match=self.PREFIX
            + r"got <function handler at .*>: @receiver was used bare, without the signal\. "
            r"Write @receiver\(order_paid\) \(or @receiver\(\[order_paid, order_refunded\]\)\) above",
        ):
            tocsin.receiver(handler)  # type: ignore[arg-type]

    @pytest.mark.parametrize(
        ("item", "message"),
        [
            ("b", r"item 1 of the list given is the string 'b'\."),
            (tocsin.Signal, r"item 1 of the list given is the class Signal itself\."),
            (handler, r"item 1 of the list given is <function handler at .*> \(of type function\)\."),
            ([tocsin.Signal()], r"item 1 of the list given is \[<Signal at .*>\] \(of type list\)\."),
        ],
        ids=["string", "Signal-class", "function", "nested-list"],
    )
    def test_list_with_a_non_signal_connects_nothing(self, item: Any, message: str) -> None:
        """A bad item of a list is refused before any signal of the list is connected."""
        a, c = tocsin.Signal(), tocsin.Signal()
        with pytest.raises(NotASignalError, match=self.PREFIX + message):
            tocsin.receiver([a, item, c])(handler)
        assert a.connections() == []
        assert c.connections() == []

    def test_django_signal_duck_typed(self) -> None:
        """A django.dispatch.Signal works with @receiver, alone and in a list with tocsin's."""
        dispatch = pytest.importorskip("django.dispatch")
        theirs, ours = dispatch.Signal(), tocsin.Signal()

        @tocsin.receiver([theirs, ours], sender="s")
        def on(**kwargs: Any) -> str:
            return "on"

        assert theirs.send("s") == [(on, "on")]
        assert ours.send("s") == [(on, "on")]
        with pytest.raises(TypeError, match="priority"):  # tocsin's own option: Django refuses it
            tocsin.receiver(theirs, priority=1)(on)

    def test_connect_as_decorator(self, sig: tocsin.Signal) -> None:
        """@sig.connect and @sig.connect(...) both connect and return the function."""

        @sig.connect
        def bare(**kwargs: Any) -> str:
            return "bare"

        @sig.connect(sender="s", priority=1)
        def with_args(**kwargs: Any) -> str:
            return "with_args"

        assert sig.send("s") == [(with_args, "with_args"), (bare, "bare")]
        assert sig.send("t") == [(bare, "bare")]


class TestDuplicates:
    def test_same_receiver_same_sender_once(self, sig: tocsin.Signal) -> None:
        """Connecting the same receiver for the same sender again is a no-op."""
        for _ in range(5):
            assert sig.connect(handler, sender="s") is handler
        assert sig.send("s") == [(handler, "handler")]
        assert len(sig.connections()) == 1

    def test_same_receiver_other_senders(self, sig: tocsin.Signal) -> None:
        """The same receiver connected for two senders is two connections."""
        sig.connect(handler, sender="a")
        sig.connect(handler, sender="b")
        sig.connect(handler)
        assert len(sig.connections()) == 3
        assert sig.send("a") == [(handler, "handler"), (handler, "handler")]

    def test_bound_methods_of_one_instance_dedupe(self, sig: tocsin.Signal) -> None:
        """Each attribute access makes a new bound method; they still dedupe."""
        listener = Listener()
        sig.connect(listener.method)
        sig.connect(listener.method)
        assert len(sig.send(None)) == 1

    def test_bound_methods_of_two_instances_do_not_dedupe(self, sig: tocsin.Signal) -> None:
        """Methods of two instances are two receivers."""
        one, two = Listener(), Listener()
        sig.connect(one.method)
        sig.connect(two.method)
        assert len(sig.send(None)) == 2

    def test_first_duplicate_settings_win(self, sig: tocsin.Signal) -> None:
        """A duplicate connect changes nothing, not even the priority."""
        sig.connect(handler, priority=1)
        sig.connect(handler, priority=9, weak=False)
        (conn,) = sig.connections()
        assert (conn.priority, conn.weak) == (1, True)

    @pytest.mark.parametrize("uid", ["uid", 0, "", False, 0.0, ("a", 1), frozenset()], ids=repr)
    def test_dispatch_uid_dedupes(self, sig: tocsin.Signal, uid: Any) -> None:
        """Any hashable dispatch_uid, falsy ones included, connects once per sender."""
        sig.connect(handler, dispatch_uid=uid)
        sig.connect(other, dispatch_uid=uid)
        assert sig.send(None) == [(handler, "handler")]
        assert sig.connections()[0].dispatch_uid == uid
        assert sig.disconnect(dispatch_uid=uid) is True
        assert sig.connections() == []

    def test_dispatch_uid_is_per_sender(self, sig: tocsin.Signal) -> None:
        """The same uid for two senders makes two connections."""
        sig.connect(handler, sender="a", dispatch_uid="uid")
        sig.connect(other, sender="b", dispatch_uid="uid")
        assert sig.send("a") == [(handler, "handler")]
        assert sig.send("b") == [(other, "other")]
        assert sig.disconnect(dispatch_uid="uid", sender="a")
        assert sig.send("a") == []
        assert sig.send("b") == [(other, "other")]

    def test_uid_and_plain_connections_coexist(self, sig: tocsin.Signal) -> None:
        """A receiver connected with and without a uid is two connections."""
        sig.connect(handler)
        sig.connect(handler, dispatch_uid="uid")
        assert len(sig.send(None)) == 2

    def test_dispatch_uid_disconnect_ignores_receiver(self, sig: tocsin.Signal) -> None:
        """With a uid, disconnect finds the connection whatever receiver is passed."""
        sig.connect(handler, dispatch_uid="uid")
        assert sig.disconnect(other, dispatch_uid="uid") is True
        assert not sig.has_listeners()

    def test_repeated_duplicates_allocate_nothing(self, sig: tocsin.Signal) -> None:
        """Thousands of duplicate connects keep no memory (Django keeps a finalizer each)."""
        listener = Listener()
        sig.connect(listener.method, sender="s")
        sig.connect(handler, dispatch_uid="uid")
        sig.connect(handler)
        gc.collect()

        def duplicates() -> None:
            for _ in range(2000):
                sig.connect(listener.method, sender="s")
                sig.connect(other, dispatch_uid="uid")
                sig.connect(handler)

        tracemalloc.start()
        try:
            duplicates()  # one-off allocations (frames some Pythons keep) land here
            gc.collect()
            before = tracemalloc.take_snapshot()
            duplicates()
            gc.collect()
            after = tracemalloc.take_snapshot()
        finally:
            tracemalloc.stop()
        ignore = [tracemalloc.Filter(inclusive=False, filename_pattern=tracemalloc.__file__)]
        stats = after.filter_traces(ignore).compare_to(before.filter_traces(ignore), "filename")
        assert sum(stat.size_diff for stat in stats) < 1000  # 6000 connects: not a byte each
        assert len(sig.connections()) == 3

    def test_duplicate_connect_creates_no_weakref(self, sig: tocsin.Signal) -> None:
        """A duplicate connect makes no new weak reference to the receiver."""
        listener = Listener()
        sig.connect(listener)
        count = weakref.getweakrefcount(listener)
        for _ in range(100):
            sig.connect(listener)
        assert weakref.getweakrefcount(listener) == count


class TestDisconnect:
    def test_returns_whether_removed(self, sig: tocsin.Signal) -> None:
        """disconnect() is True once, then False."""
        sig.connect(handler)
        assert sig.disconnect(handler) is True
        assert sig.disconnect(handler) is False
        assert sig.disconnect(other) is False

    def test_only_the_matching_sender(self, sig: tocsin.Signal) -> None:
        """sender=None removes the any-sender connection, not the sender-specific one."""
        sig.connect(handler)
        sig.connect(handler, sender="s")
        assert sig.disconnect(handler)
        assert sig.send("s") == [(handler, "handler")]
        assert sig.send("t") == []
        assert sig.disconnect(handler, sender="s")
        assert sig.connections() == []

    def test_bound_method(self, sig: tocsin.Signal) -> None:
        """A fresh bound method object disconnects the one connected earlier."""
        listener = Listener()
        sig.connect(listener.method)
        assert sig.disconnect(listener.method)
        assert sig.send(None) == []

    def test_needs_receiver_or_uid(self, sig: tocsin.Signal) -> None:
        """disconnect() with neither receiver nor uid is a TypeError, not a silent no-op."""
        with pytest.raises(TypeError, match="needs the receiver or the dispatch_uid"):
            sig.disconnect()

    def test_reconnect_goes_last(self, sig: tocsin.Signal) -> None:
        """A receiver disconnected and connected again moves to the end."""
        sig.connect(handler)
        sig.connect(other)
        sig.disconnect(handler)
        sig.connect(handler)
        assert [r for r, _ in sig.send(None)] == [other, handler]


# Receiver classes for TestConnectionsCost, written to a file and imported
# from it, as an application's receivers are. Markers name the lines each
# class is defined on (a decorated class starts at its first decorator).
_RECEIVER_CLASSES = """\
import functools


def tag(cls):
    return cls


class Plain:  # Plain
    def __call__(self, **kwargs):
        pass


@tag  # Decorated
@functools.total_ordering
class Decorated:
    def __call__(self, **kwargs):
        pass

    def __lt__(self, other):
        return False


class Outer:  # Outer
    class Inner:  # Outer.Inner
        def __call__(self, **kwargs):
            pass


def make():
    class Local:  # make.<locals>.Local
        def __call__(self, **kwargs):
            pass

    return Local


Local = make()


class Twice:  # replaced below
    def __call__(self, **kwargs):
        pass


class Twice:  # Twice
    def __call__(self, **kwargs):
        pass
"""


def _import_receiver_classes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: int) -> Any:
    """Write _RECEIVER_CLASSES (plus *extra* plain classes) to a file and import it."""
    source = _RECEIVER_CLASSES + "".join(
        f"\n\nclass Extra{n}:  # Extra{n}\n    def __call__(self, **kwargs):\n        pass\n"
        for n in range(extra)
    )
    path = tmp_path / "tocsin_test_receiver_classes.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, path.stem, module)
    spec.loader.exec_module(module)
    return module


def _marked_line(module: Any, mark: str) -> int:
    """The line of *module*'s source ending with ``# mark``."""
    lines = Path(module.__file__).read_text().splitlines()
    [number] = [n for n, line in enumerate(lines, 1) if line.endswith(f"# {mark}")]
    return number


def _count_source_lookups(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every call of the functions that read or parse a source file."""
    calls: list[str] = []
    for owner, name in ((inspect, "getsourcelines"), (inspect, "findsource"), (ast, "parse")):
        real = getattr(owner, name)

        def counting(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
            calls.append(_name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(owner, name, counting)
    return calls


class TestConnectionsCost:
    """connections() costs in proportion to the connections, not to sources re-read."""

    def test_many_receivers_of_one_class_read_its_source_once(
        self, sig: tocsin.Signal, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Listing 300 instances of one class finds the class's line at most once."""
        module = _import_receiver_classes(tmp_path, monkeypatch, extra=0)
        receivers = [module.Plain() for _ in range(300)]
        for receiver in receivers:
            sig.connect(receiver)
        calls = _count_source_lookups(monkeypatch)
        connections = sig.connections()
        assert len(calls) <= 1, calls  # one parse of the file at most (none on 3.13+)
        assert {c.where for c in connections} == {f"{module.__file__}:{_marked_line(module, 'Plain')}"}

    def test_many_classes_of_one_file_parse_it_once(
        self, sig: tocsin.Signal, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Classes of one file (decorated, nested, local, redefined) cost one parse, then none."""
        module = _import_receiver_classes(tmp_path, monkeypatch, extra=40)
        classes = [module.Plain, module.Decorated, module.Outer.Inner, module.Local, module.Twice]
        classes += [getattr(module, f"Extra{n}") for n in range(40)]
        marks = [cls.__qualname__ for cls in classes]  # each marks its class's line
        receivers = [cls() for cls in classes]
        for receiver in receivers:
            sig.connect(receiver)
        calls = _count_source_lookups(monkeypatch)
        first = sig.connections()
        assert len(calls) <= 1, calls
        assert [c.where for c in first] == [f"{module.__file__}:{_marked_line(module, m)}" for m in marks]
        assert [c.qualname for c in first] == marks
        calls.clear()
        assert sig.connections() == first
        assert calls == []


class TestConnections:
    def test_record_fields(self, sig: tocsin.Signal) -> None:
        """connections() reports every field of each connection."""

        def policy(call: Any) -> None:
            pass

        sig.connect(handler, sender="s", dispatch_uid="uid", priority=3, via=policy)
        sig.connect(other, weak=False)
        first, second = sig.connections()
        assert isinstance(first, tocsin.Connection)
        assert first.receiver is handler
        assert first.sender == "s"
        assert first.weak is True
        assert first.dispatch_uid == "uid"
        assert first.priority == 3
        assert first.via is policy
        assert first.is_async is False
        assert first.module == __name__
        assert first.qualname == "handler"
        assert first.where == f"{__file__}:{handler.__code__.co_firstlineno}"
        assert second.receiver is other
        assert (second.sender, second.weak, second.dispatch_uid, second.priority, second.via) == (
            None,
            False,
            None,
            0,
            None,
        )

    def test_method_and_object_records(self, sig: tocsin.Signal) -> None:
        """Methods report their function's qualname, objects their class's."""
        listener = Listener()
        sender = Listener()
        sig.connect(listener.method, sender=sender)
        sig.connect(listener)
        method, obj = sig.connections()
        assert method.receiver == listener.method
        assert method.sender is sender
        assert method.qualname == "Listener.method"
        assert method.where == f"{__file__}:{Listener.method.__code__.co_firstlineno}"
        assert obj.receiver is listener
        assert obj.qualname == "Listener"
        assert obj.where == f"{__file__}:{inspect.getsourcelines(Listener)[1]}"

    def test_class_record(self, sig: tocsin.Signal) -> None:
        """A class used as a receiver is described as itself, not as ``type``."""

        class Handler:
            def __init__(self, **kwargs: Any) -> None:
                pass

        sig.connect(Handler)
        (conn,) = sig.connections()
        assert conn.receiver is Handler
        assert conn.module == __name__
        assert conn.qualname == "TestConnections.test_class_record.<locals>.Handler"
        assert conn.where == f"{__file__}:{inspect.getsourcelines(Handler)[1]}"

    def test_partial_record(self, sig: tocsin.Signal) -> None:
        """A partial is described by the function it wraps and is held strongly."""
        part = functools.partial(handler)
        sig.connect(part)
        (conn,) = sig.connections()
        assert conn.receiver is part
        assert conn.qualname == "handler"
        assert conn.where == f"{__file__}:{handler.__code__.co_firstlineno}"
        assert conn.weak is False

    def test_snapshot_in_connection_order(self, sig: tocsin.Signal) -> None:
        """connections() lists connection order, not priority order, and is a copy."""
        sig.connect(handler)
        sig.connect(other, priority=10)
        snapshot = sig.connections()
        sig.disconnect(handler)
        assert [c.receiver for c in snapshot] == [handler, other]
        assert [c.receiver for c in sig.connections()] == [other]

    def test_dead_connections_are_not_listed(self, sig: tocsin.Signal) -> None:
        """A collected receiver or sender is gone from connections()."""
        listener = Listener()
        sender = Listener()
        sig.connect(listener)
        sig.connect(handler, sender=sender)
        del listener, sender
        gc.collect()
        assert sig.connections() == []

    def test_value_and_unhashable_senders(self, sig: tocsin.Signal) -> None:
        """connections() reports the sender object as given."""
        key = ["unhashable"]
        sig.connect(handler, sender=key)
        sig.connect(handler, sender=("a", 1))
        first, second = sig.connections()
        assert first.sender is key
        assert second.sender == ("a", 1)


class TestUnhashableReceivers:
    """Receivers need not be hashable: dataclass instances are not, by default."""

    def test_method_of_dataclass_instance(self, sig: tocsin.Signal) -> None:
        """has_listeners, receivers_for and connections work for a dataclass's method."""

        @dataclasses.dataclass
        class Handler:
            calls: int = 0

            def on(self, **kwargs: Any) -> int:
                self.calls += 1
                return self.calls

        handler = Handler()
        sig.connect(handler.on)
        assert sig.has_listeners()
        assert sig.receivers_for(None) == [handler.on]
        assert sig.send(None) == [(handler.on, 1)]
        assert sig.connections()[0].receiver == handler.on
        assert sig.disconnect(handler.on)

    def test_callable_object_without_hash(self, sig: tocsin.Signal) -> None:
        """A callable object whose class sets __hash__ = None, connected twice for two senders."""

        class Handler:
            __hash__ = None  # type: ignore[assignment]

            def __eq__(self, other: object) -> bool:
                return True

            def __call__(self, **kwargs: Any) -> str:
                return "handler"

        one, two = Handler(), Handler()
        sig.connect(one)
        sig.connect(two, sender="s")
        assert sig.receivers_for("s") == [one, two]
        assert sig.receivers_for("s")[1] is two
        assert sig.has_listeners("s")
        assert [r for r, _ in sig.send("s")] == [one, two]


class TestConnectedTo:
    def test_connected_only_inside_the_block(self) -> None:
        """The receiver hears sends inside the block, not after; the block gets the receiver."""
        sig = tocsin.Signal()
        seen: list[object] = []
        with sig.connected_to(lambda sender, **kwargs: seen.append(sender)) as receiver:
            sig.send("inside")
            assert sig.receivers_for(None) == [receiver]
        sig.send("after")
        assert seen == ["inside"]
        assert sig.connections() == []

    def test_sender_and_connect_options(self) -> None:
        """sender=, priority= and dispatch_uid= mean what they mean for connect()."""
        sig = tocsin.Signal()
        sig.connect(other)
        with sig.connected_to(handler, sender="shop", priority=5, dispatch_uid="uid"):
            assert [r for r, _ in sig.send("shop")] == [handler, other]
            assert [r for r, _ in sig.send("elsewhere")] == [other]
            (mine,) = [c for c in sig.connections() if c.dispatch_uid == "uid"]
            assert (mine.sender, mine.priority, mine.weak) == ("shop", 5, False)
        assert [c.receiver for c in sig.connections()] == [other]

    def test_exception_in_the_block_still_disconnects(self) -> None:
        """However the block ends, the connection it made is removed."""
        sig = tocsin.Signal()
        with pytest.raises(KeyError), sig.connected_to(handler):
            raise KeyError("boom")
        assert sig.connections() == []

    def test_existing_connection_left_in_place(self) -> None:
        """A connection made before the block (or by an outer block) is not removed."""
        sig = tocsin.Signal()
        sig.connect(handler, sender="shop")
        with sig.connected_to(handler, sender="shop"):
            pass
        assert [(c.receiver, c.sender) for c in sig.connections()] == [(handler, "shop")]
        with sig.connected_to(other), sig.connected_to(other):
            pass
        assert [c.receiver for c in sig.connections()] == [handler]

    def test_other_connections_of_the_receiver_untouched(self) -> None:
        """Only the block's own connection goes, not the receiver's others (blinker removes them)."""
        sig = tocsin.Signal()
        sig.connect(handler, sender="a")
        with sig.connected_to(handler):
            pass
        assert [(c.receiver, c.sender) for c in sig.connections()] == [(handler, "a")]

    def test_bad_receiver_connects_nothing(self) -> None:
        """Validation happens on entry; nothing is connected and the block does not run."""
        sig = tocsin.Signal()
        ran = []
        with pytest.raises(ReceiverSignatureError), sig.connected_to(no_kwargs):
            ran.append(True)
        assert ran == []
        assert sig.connections() == []


class TestModuleCopies:
    """A file imported under two names connects two copies of each receiver: warned."""

    RECEIVERS = (
        "from holder import saved\n"
        "\n"
        "\n"
        "@saved.connect{args}\n"
        "def on_saved(sender, **kwargs):\n"
        "    return __name__\n"
        "\n"
        "\n"
        "def make_handler():\n"
        "    def handler(sender, **kwargs):\n"
        "        return 'closure'\n"
        "    return handler\n"
    )

    @staticmethod
    def load(path: Any, name: str) -> Any:
        import importlib.util
        import sys

        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module

    @pytest.fixture(name="files")
    def _files(self, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
        import sys

        (tmp_path / "holder.py").write_text("import tocsin\n\nsaved = tocsin.Signal(name='saved')\n")
        monkeypatch.syspath_prepend(str(tmp_path))
        yield tmp_path
        for name in ("holder", "app.receivers", "receivers"):
            sys.modules.pop(name, None)

    def test_warned_once_at_the_receiver(self, files: Any) -> None:
        path = files / "receivers.py"
        path.write_text(self.RECEIVERS.format(args=""))
        first = self.load(path, "app.receivers")
        self.load(path, "receivers")
        import holder  # type: ignore[import-not-found]

        with pytest.warns(tocsin.exceptions.DuplicateReceiverWarning) as caught:
            responses = holder.saved.send(sender=None)
        assert [r for _, r in responses] == ["app.receivers", "receivers"]  # the harm: called twice
        (warning,) = caught.list
        message = str(warning.message)
        assert message.startswith(f"receivers.on_saved is connected to {holder.saved!r} twice, ")
        assert f"from two copies of the module in {path}: 'app.receivers' and 'receivers'." in message
        assert "dispatch_uid=" in message
        assert (warning.filename, warning.lineno) == (str(path), 4)  # where the definition starts
        holder.saved.connect(first.make_handler(), weak=False)  # closures of one module: no warning
        holder.saved.connect(first.make_handler(), weak=False)
        responses = holder.saved.send(sender=None)  # filterwarnings=error: another warning would raise
        assert [r for _, r in responses].count("closure") == 2

    def test_dispatch_uid_makes_the_second_a_duplicate(self, files: Any) -> None:
        path = files / "receivers.py"
        path.write_text(self.RECEIVERS.format(args="(dispatch_uid='on-saved')"))
        self.load(path, "app.receivers")
        self.load(path, "receivers")
        import holder

        assert [r for _, r in holder.saved.send(sender=None)] == ["app.receivers"]
