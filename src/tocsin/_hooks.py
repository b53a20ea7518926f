"""Interceptors: the one way tools hook into sending, at no cost when unused.

Muting, pausing, capturing and tracing all need to see or change sends. A
signal with no interceptor publishes its routing table to ``send()``
directly; installing one makes the signal publish a table whose every entry
leads to the slow path, which runs the interceptors in order around the real
dispatch. Removing the last one restores the fast table. So the send path
checks nothing extra while no tool is active.

An interceptor is an object with a ``send`` method (and, for async sends, an
``asend`` coroutine method) taking a :class:`Dispatch` and a ``proceed``
callable that runs the next interceptor or the receivers and returns the
``[(receiver, response)]`` list. An interceptor may call ``proceed`` zero
times (to hold or drop a send), once, or later.

Global interceptors apply to every live signal, including ones created
later; the registry of live signals is a weak set.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ._delivery import DeferredCall
    from ._signal import Signal

__all__ = [
    "Dispatch",
    "Interceptor",
    "add_global_interceptor",
    "add_receiver_observer",
    "live_signals",
]

Responses = list[tuple[Any, Any]]


class Dispatch:
    """One send as interceptors see it.

    Attributes:
        signal: the signal being sent.
        sender: the sender.
        named: the named arguments (a dict the interceptor must not mutate).
        robust: True for ``send_robust``/``asend_robust``.
        is_async: True for ``asend``/``asend_robust``.
    """

    __slots__ = ("is_async", "named", "robust", "sender", "signal")

    def __init__(
        self, signal: Signal, sender: Any, named: dict[str, Any], *, robust: bool, is_async: bool
    ) -> None:
        self.signal = signal
        self.sender = sender
        self.named = named
        self.robust = robust
        self.is_async = is_async

    def __repr__(self) -> str:
        return f"<Dispatch {self.signal!r} sender={self.sender!r} named={self.named!r}>"


class Interceptor(Protocol):
    """What ``Signal.add_interceptor`` and :func:`add_global_interceptor` take."""

    def send(self, dispatch: Dispatch, proceed: Callable[[], Responses]) -> Responses:
        """Handle a synchronous send; call ``proceed()`` to deliver it."""

    def asend(self, dispatch: Dispatch, proceed: Callable[[], Awaitable[Responses]]) -> Awaitable[Responses]:
        """Handle an async send; await ``proceed()`` to deliver it."""


_lock = threading.Lock()
_live: weakref.WeakSet[Signal] = weakref.WeakSet()
_global: tuple[Interceptor, ...] = ()


def register(signal: Signal) -> tuple[Interceptor, ...]:
    """Record a new signal; return the global interceptors it starts with."""
    with _lock:
        _live.add(signal)
        return _global


def live_signals() -> list[Signal]:
    """Every signal still alive, in no particular order."""
    with _lock:
        return list(_live)


def add_global_interceptor(interceptor: Interceptor) -> Callable[[], None]:
    """Install *interceptor* on every signal, now and future.

    Returns a function that removes it again (idempotent). Global
    interceptors run before a signal's own ones.
    """
    global _global  # noqa: PLW0603 - module-level registry, guarded by _lock
    with _lock:
        _global = (*_global, interceptor)
        signals = list(_live)
    for signal in signals:
        signal._refresh_interceptors()  # noqa: SLF001

    def remove() -> None:
        global _global  # noqa: PLW0603
        with _lock:
            if interceptor not in _global:
                return
            _global = tuple(i for i in _global if i is not interceptor)
            signals = list(_live)
        for signal in signals:
            signal._refresh_interceptors()  # noqa: SLF001

    return remove


def global_interceptors() -> tuple[Interceptor, ...]:
    """The installed global interceptors, in order."""
    return _global


class CallObserver(Protocol):
    """Wraps each receiver call of an intercepted send (see ``add_receiver_observer``)."""

    def call(self, signal: Signal, receiver: Any, call: Callable[[], Any]) -> Any:
        """Run ``call()`` (the receiver) and return or raise what it does."""

    def acall(self, signal: Signal, receiver: Any, call: Callable[[], Awaitable[Any]]) -> Awaitable[Any]:
        """Await ``call()`` (an async receiver) and return or raise what it does."""


class ReceiverObserver(CallObserver, Protocol):
    """A :class:`CallObserver` that also follows ``via=`` receivers' later runs (tracing)."""

    def origin(self) -> object | None:
        """Return what a ``via=`` receiver's later run should be tied to (the send), or None."""

    def call_deferred(self, origin: object, call: DeferredCall) -> Any:
        """Run *call* (a ``via=`` receiver's deferred run) for the send *origin*.

        Returns what it returns (for an async receiver, an awaitable that
        finishes the observation when awaited).
        """


class _Chain:
    """Several observers as one: each call runs inside every observer, first one outermost."""

    __slots__ = ("observers", "primary")

    def __init__(self, primary: ReceiverObserver | None, others: tuple[CallObserver, ...]) -> None:
        self.primary = primary
        self.observers = others if primary is None else (primary, *others)

    def call(self, signal: Signal, receiver: Any, call: Callable[[], Any]) -> Any:
        for observer in reversed(self.observers):
            call = partial(observer.call, signal, receiver, call)
        return call()

    async def acall(self, signal: Signal, receiver: Any, call: Callable[[], Awaitable[Any]]) -> Any:
        for observer in reversed(self.observers):
            call = partial(observer.acall, signal, receiver, call)
        return await call()

    def origin(self) -> object | None:
        return None if self.primary is None else self.primary.origin()

    def call_deferred(self, origin: object, call: DeferredCall) -> Any:
        if self.primary is None:  # tracing stopped since the send: run it unobserved
            return call._run()  # noqa: SLF001 - the observer protocol's own entry point
        return self.primary.call_deferred(origin, call)


# Per-receiver observation for the delivery loops of the slow path: tracing's
# observer (set_receiver_observer), plus those added by add_receiver_observer
# (capture), combined. Only the slow path reads it, and whoever installs an
# observer also installs interceptors for the signals it watches, so sends
# never look at it while nothing is observing.
receiver_observer: ReceiverObserver | None = None
_primary: ReceiverObserver | None = None
_others: tuple[CallObserver, ...] = ()


def _publish_observers() -> None:
    """Combine the observers into ``receiver_observer``. ``_lock`` held."""
    global receiver_observer  # noqa: PLW0603 - read lock-free by _deliver
    receiver_observer = _primary if not _others else _Chain(_primary, _others)


def set_receiver_observer(observer: ReceiverObserver | None) -> None:
    """Install (or with ``None`` remove) the tracing observer, which also follows ``via=`` runs."""
    global _primary  # noqa: PLW0603 - module-level registry, guarded by _lock
    with _lock:
        _primary = observer
        _publish_observers()


def add_receiver_observer(observer: CallObserver) -> Callable[[], None]:
    """Add an observer of receiver calls alongside tracing's; return a function removing it.

    Only its ``call``/``acall`` are used: the later runs of ``via=``
    receivers are tracing's alone. The remover is idempotent.
    """
    global _others  # noqa: PLW0603 - module-level registry, guarded by _lock
    with _lock:
        _others = (*_others, observer)
        _publish_observers()

    def remove() -> None:
        global _others  # noqa: PLW0603
        with _lock:
            _others = tuple(o for o in _others if o is not observer)
            _publish_observers()

    return remove
