"""Inline receivers are kept, through every signal class tocsin ships and through subclasses.

"Nothing connected vanishes silently": a receiver that only the connect call
references (``sig.connect(make_handler())``, ``sig.connect(logged(handler))``,
``sig.connect(Handler())``, ``sig.connect(Handler().on_save)``) is held
strongly, whatever its ``__qualname__`` or ``__dict__`` say, and however
many ``connect`` overrides forward the call (see ``tocsin._core.inline``). A
receiver something else references is held weakly and goes with it, as in
Django; so do nested functions decorated with ``@receiver``.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import sys
import threading
import weakref
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import tocsin
from tocsin import wsgi
from tocsin.sqlalchemy import ModelSignal, post_save

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator


# ---- receivers ---------------------------------------------------------------


def module_handler(**kwargs: Any) -> str:
    return "module"


def with_value(value: str, **kwargs: Any) -> str:
    return value


def logged(func: Callable[..., Any]) -> Callable[..., Any]:
    """A typical decorator: its wrapper copies __qualname__, __module__ and __dict__."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return func(*args, **kwargs)

    return wrapper


def make_closure() -> Callable[..., str]:
    def handler(**kwargs: Any) -> str:
        return "closure"

    return handler


def make_self_referencing() -> Callable[..., str]:
    """A one-shot handler: it names itself, so its closure references it."""

    def handler(**kwargs: Any) -> str:
        return "self-referencing" if handler is not None else ""

    return handler


class Listener:
    def method(self, **kwargs: Any) -> str:
        return "method"

    def __call__(self, **kwargs: Any) -> str:
        return "object"


# kind -> (a factory of fresh receivers, what the receiver returns)
INLINE: dict[str, tuple[Callable[[], Any], str]] = {
    "closure": (make_closure, "closure"),
    "wraps-wrapper": (lambda: logged(module_handler), "module"),
    "wrapped-bound-method": (lambda: logged(Listener().method), "method"),
    "self-referencing-closure": (make_self_referencing, "self-referencing"),
    "callable-object": (Listener, "object"),
    "bound-method": (lambda: Listener().method, "method"),
    "lambda": (lambda: lambda **kwargs: "lambda", "lambda"),
    "partial": (lambda: functools.partial(with_value, "partial"), "partial"),
}


# ---- signal classes ------------------------------------------------------------


class ExplicitSignal(tocsin.Signal):
    """A user subclass forwarding Django's signature explicitly."""

    def connect(  # type: ignore[override]
        self,
        receiver: Any = None,
        sender: Any = None,
        weak: bool = True,
        dispatch_uid: Any = None,
        **options: Any,
    ) -> Any:
        return super().connect(receiver, sender, weak, dispatch_uid, **options)


class ForwardingSignal(tocsin.Signal):
    """A user subclass forwarding *args and **kwargs."""

    def connect(self, *args: Any, **kwargs: Any) -> Any:
        return super().connect(*args, **kwargs)


class DeeperSignal(ForwardingSignal):
    """Two connect overrides in a super() chain."""

    def connect(self, *args: Any, **kwargs: Any) -> Any:
        return super().connect(*args, **kwargs)


class KeywordSignal(tocsin.Signal):
    """Forwards the receiver by keyword."""

    def connect(  # type: ignore[override]
        self,
        receiver: Any = None,
        sender: Any = None,
        weak: bool = True,
        dispatch_uid: Any = None,
        **kwargs: Any,
    ) -> Any:
        return super().connect(
            receiver=receiver, sender=sender, weak=weak, dispatch_uid=dispatch_uid, **kwargs
        )


class Base(DeclarativeBase):
    pass


class Mapped1(Base):
    __tablename__ = "inline_mapped1"
    id: Mapped[int] = mapped_column(primary_key=True)


def _spec(*, value: int = 0) -> None: ...


@contextlib.contextmanager
def _restoring(sig: tocsin.Signal, *string_senders: str) -> Iterator[None]:
    """Disconnect, afterwards, every connection the test added to a shared signal."""
    before = {(id(c.receiver), id(c.sender), c.dispatch_uid) for c in sig.connections()}
    try:
        yield
    finally:
        for c in sig.connections():
            if (id(c.receiver), id(c.sender), c.dispatch_uid) not in before:
                sig.disconnect(c.receiver, c.sender, c.dispatch_uid)
        for name in string_senders:
            for pending in list(sig._pending):  # type: ignore[attr-defined]
                sig.disconnect(pending[1], name)


class Setup:
    """A signal under test, the sender to connect for and how to send."""

    def __init__(self, sig: tocsin.Signal, sender: Any = None, named: dict[str, Any] | None = None) -> None:
        self.sig = sig
        self.sender = sender
        self.named = named or {}

    def responses(self) -> list[Any]:
        return [response for _, response in self.sig.send(self.sender, **self.named)]


SIGNALS = [
    "Signal",
    "TypedSignal",
    "typed_signal",
    "namespace",
    "ModelSignal",
    "post_save",
    "post_save-any-sender",
    "receiver_connected",
    "receiver_disconnected",
    "request_started",
    "got_request_exception",
    "ExplicitSignal",
    "ForwardingSignal",
    "DeeperSignal",
    "KeywordSignal",
    "ModelSignal-subclass",
    "TypedSignal-subclass",
]


class UserModelSignal(ModelSignal):
    def connect(self, *args: Any, **kwargs: Any) -> Any:
        return super().connect(*args, **kwargs)


class UserTypedSignal(tocsin.TypedSignal):  # type: ignore[type-arg]
    def connect(self, *args: Any, **kwargs: Any) -> Any:
        return super().connect(*args, **kwargs)


@pytest.fixture(name="setup", params=SIGNALS)
def _setup(request: pytest.FixtureRequest) -> Iterator[Setup]:
    name = request.param
    fresh: dict[str, Callable[[], Setup]] = {
        "Signal": lambda: Setup(tocsin.Signal()),
        "TypedSignal": lambda: Setup(tocsin.TypedSignal(_spec)),
        "typed_signal": lambda: Setup(tocsin.typed_signal(_spec)),
        "namespace": lambda: Setup(tocsin.Namespace().signal("inline")),
        "ModelSignal": lambda: Setup(ModelSignal(name="inline"), Mapped1, {"instance": None}),
        "ExplicitSignal": lambda: Setup(ExplicitSignal()),
        "ForwardingSignal": lambda: Setup(ForwardingSignal()),
        "DeeperSignal": lambda: Setup(DeeperSignal()),
        "KeywordSignal": lambda: Setup(KeywordSignal()),
        "ModelSignal-subclass": lambda: Setup(UserModelSignal(name="inline"), Mapped1, {"instance": None}),
        "TypedSignal-subclass": lambda: Setup(UserTypedSignal(_spec)),
    }
    shared: dict[str, Setup] = {
        "post_save": Setup(post_save, Mapped1, {"instance": None}),
        "post_save-any-sender": Setup(post_save, None, {"instance": None}),
        "receiver_connected": Setup(tocsin.receiver_connected, tocsin.Signal()),
        "receiver_disconnected": Setup(tocsin.receiver_disconnected, tocsin.Signal()),
        "request_started": Setup(wsgi.request_started, None, {"environ": {}}),
        "got_request_exception": Setup(wsgi.got_request_exception, None, {"request": None}),
    }
    if name in fresh:
        yield fresh[name]()
        return
    setup = shared[name]
    with _restoring(setup.sig):
        yield setup


def connect_inline(setup: Setup, factory: Callable[[], Any], shape: str) -> None:
    """Connect what *factory* makes, straight from the call: nothing else references it."""
    if shape == "positional":
        setup.sig.connect(factory(), setup.sender)
    elif shape == "keyword":
        setup.sig.connect(receiver=factory(), sender=setup.sender)
    else:  # Django's full positional form
        setup.sig.connect(factory(), setup.sender, True, None)


def connect_referenced(setup: Setup, receiver: Any) -> None:
    setup.sig.connect(receiver, setup.sender)


class TestInlineReceiversAreKept:
    def test_kept_and_called(self, setup: Setup) -> None:
        """Inline receivers of every kind, connected any way, through any signal class, are kept."""
        shapes = ["positional", "keyword", "django-positional"]
        for shape in shapes:
            for factory, _ in INLINE.values():
                connect_inline(setup, factory, shape)
        gc.collect()
        assert sorted(setup.responses()) == sorted(
            [response for _, response in INLINE.values()] * len(shapes)
        )
        mine = [c for c in setup.sig.connections() if c.sender is setup.sender]
        assert [c.weak for c in mine] == [False] * len(INLINE) * len(shapes)

    def test_kept_receiver_is_released_by_disconnect(self, setup: Setup) -> None:
        """Kept strongly only while connected."""
        connect_inline(setup, make_closure, "positional")
        (connection,) = [c for c in setup.sig.connections() if c.sender is setup.sender and c.weak is False]
        ref = weakref.ref(connection.receiver)
        assert setup.sig.disconnect(connection.receiver, setup.sender)
        del connection
        gc.collect()
        assert ref() is None


def _referenced(kind: str) -> tuple[Any, Any]:
    """A receiver of *kind* held by the caller, and the object whose death disconnects it."""
    if kind == "bound-method":
        listener = Listener()
        return listener.method, listener
    receiver = INLINE[kind][0]()
    return receiver, receiver


class TestReferencedReceiversStayWeak:
    """Django's semantics: a receiver held only in a local that goes away is disconnected."""

    def test_weak_and_gone_with_its_owner(self, setup: Setup) -> None:
        """Closures, wrappers, callable objects and methods held by the caller are weak."""
        kinds = ["closure", "wraps-wrapper", "self-referencing-closure", "callable-object", "bound-method"]
        referenced = [_referenced(kind) for kind in kinds]
        for receiver in [receiver for receiver, _ in referenced]:
            connect_referenced(setup, receiver)
        mine = [c for c in setup.sig.connections() if c.sender is setup.sender]
        assert [c.weak for c in mine] == [True] * len(kinds)
        assert sorted(setup.responses()) == sorted(INLINE[kind][1] for kind in kinds)
        refs = [weakref.ref(owner) for _, owner in referenced]
        del referenced, mine, receiver
        gc.collect()
        assert [ref() for ref in refs] == [None] * len(kinds)
        assert setup.responses() == []

    def test_decorated_nested_functions(self, setup: Setup) -> None:
        """@receiver and @sig.connect(...) return the function to its name: weak, gone with the scope."""

        def scope() -> list[weakref.ref[Any]]:
            @tocsin.receiver(setup.sig, sender=setup.sender)
            def on(**kwargs: Any) -> str:
                return "receiver"

            @setup.sig.connect(sender=setup.sender)
            def also(**kwargs: Any) -> str:
                return "connect"

            assert sorted(setup.responses()) == ["connect", "receiver"]
            return [weakref.ref(on), weakref.ref(also)]

        refs = scope()
        gc.collect()
        assert [ref() for ref in refs] == [None, None]
        assert setup.responses() == []

    def test_module_function_is_weak(self, setup: Setup) -> None:
        setup.sig.connect(module_handler, setup.sender)
        (connection,) = [c for c in setup.sig.connections() if c.receiver is module_handler]
        assert connection.weak is True


class TestHowItDecides:
    def test_wrapper_claiming_to_be_module_level(self) -> None:
        """A functools.wraps wrapper says it is module_handler; its code says it is nested."""
        wrapper = logged(module_handler)
        assert wrapper.__qualname__ == "module_handler"
        assert wrapper.__dict__ == {"__wrapped__": module_handler}
        sig = tocsin.Signal()
        sig.connect(logged(module_handler))
        gc.collect()
        assert sig.send(None)[0][1] == "module"

    def test_closure_that_lies_about_its_name(self) -> None:
        """Attributes set on a closure change nothing: it is decided by its code."""
        sig = tocsin.Signal()

        def make() -> Callable[..., str]:
            def handler(**kwargs: Any) -> str:
                return "liar"

            handler.__qualname__ = "module_handler"
            handler.__name__ = "module_handler"
            return handler

        sig.connect(make())
        gc.collect()
        assert [r for _, r in sig.send(None)] == ["liar"]

    def test_subclass_connect_is_wrapped_once(self) -> None:
        """The entry wrapper keeps the override's name and signature, and wraps it once."""
        assert ForwardingSignal.connect.__name__ == "connect"
        assert ForwardingSignal.connect.__wrapped__.__qualname__ == "ForwardingSignal.connect"  # type: ignore[attr-defined]

        class Reused(tocsin.Signal):
            connect = ForwardingSignal.connect

        assert Reused.connect is ForwardingSignal.connect

    def test_receiver_not_first_parameter(self) -> None:
        """An override taking the receiver under its name elsewhere is measured on that argument."""

        class SenderFirst(tocsin.Signal):
            def connect(self, sender: Any, receiver: Any, **kwargs: Any) -> Any:  # type: ignore[override]
                return super().connect(receiver, sender, **kwargs)

        sig = SenderFirst()
        sig.connect("s", make_closure())
        sig.connect(sender="t", receiver=make_closure())
        gc.collect()
        assert [r for _, r in sig.send("s")] == ["closure"]
        assert [r for _, r in sig.send("t")] == ["closure"]

    @pytest.mark.parametrize("cls", [tocsin.Signal, ForwardingSignal])
    def test_bare_connect_decorator_never_loses_a_bound_function(self, cls: type[tocsin.Signal]) -> None:
        """Bare @sig.connect on a nested function: connected while its name holds it.

        Python 3.11+ passes a decorated function with one more reference than
        a call's argument, so it is weak and goes with its scope, like
        @receiver; 3.10's counts cannot tell it from sig.connect(make()), so
        it is kept there (docs/signals.md).
        """
        sig = cls()

        def scope() -> None:
            @sig.connect
            def on(**kwargs: Any) -> str:
                return "bare"

            gc.collect()
            assert [r for _, r in sig.send(None)] == ["bare"]

        scope()
        gc.collect()
        assert [r for _, r in sig.send(None)] == ([] if sys.version_info >= (3, 11) else ["bare"])

    def test_pending_string_sender_keeps_an_inline_receiver(self) -> None:
        """Connected for a class not mapped yet, an inline receiver survives the class's mapping."""
        with _restoring(post_save, "InlineLater"):
            post_save.connect(make_closure(), sender="InlineLater")
            post_save.connect(receiver=Listener(), sender="InlineLater")
            gc.collect()

            class InlineLater(Base):
                __tablename__ = "inline_later"
                id: Mapped[int] = mapped_column(primary_key=True)

            gc.collect()
            responses = [r for _, r in post_save.send(InlineLater, instance=None)]
            assert responses == ["closure", "object"]

    def test_pending_string_sender_referenced_receiver_stays_weak(self) -> None:
        with _restoring(post_save, "InlineLaterWeak"):
            handler = make_closure()
            post_save.connect(handler, sender="InlineLaterWeak")

            class InlineLaterWeak(Base):
                __tablename__ = "inline_later_weak"
                id: Mapped[int] = mapped_column(primary_key=True)

            assert [c.weak for c in post_save.connections() if c.receiver is handler] == [True]
            ref = weakref.ref(handler)
            del handler
            gc.collect()
            assert ref() is None
            assert post_save.send(InlineLaterWeak, instance=None) == []


class TestReentrancyAndThreads:
    def test_connect_inside_a_meta_receiver(self) -> None:
        """A receiver_connected receiver connecting inline receivers, through subclasses too."""
        watched, target, other = DeeperSignal(), ForwardingSignal(), tocsin.Signal()

        def on_connected(sender: Any, receiver: Any, **kwargs: Any) -> None:
            if sender is watched:
                target.connect(make_closure())
                other.connect(receiver)  # the same (kept) inline receiver, elsewhere

        with _restoring(tocsin.receiver_connected):
            tocsin.receiver_connected.connect(on_connected)
            watched.connect(logged(module_handler))
            ForwardingSignal().connect(make_closure())  # not watched: ignored by on_connected
            gc.collect()
            assert [r for _, r in watched.send(None)] == ["module"]
            assert [r for _, r in target.send(None)] == ["closure"]
            assert [r for _, r in other.send(None)] == ["module"]

    def test_threads_decide_independently(self) -> None:
        """Threads connecting inline and referenced receivers at once: each decision is its own."""
        sig = DeeperSignal()
        threads_n, rounds = 8, 50
        start = threading.Barrier(threads_n)
        held: list[Any] = []
        lock = threading.Lock()

        def work() -> None:
            mine = []
            start.wait()
            for _ in range(rounds):
                sig.connect(make_closure())
                handler = make_closure()
                sig.connect(handler)
                mine.append(handler)
                sig.connect(logged(module_handler))
            with lock:
                held.extend(mine)

        threads = [threading.Thread(target=work) for _ in range(threads_n)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        gc.collect()
        weak = [c.weak for c in sig.connections()]
        assert weak.count(False) == 2 * threads_n * rounds
        assert weak.count(True) == threads_n * rounds
        held.clear()
        gc.collect()
        assert [c.weak for c in sig.connections()] == [False] * (2 * threads_n * rounds)
