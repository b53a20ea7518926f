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
from collections.abc import Awaitable, Callable, Hashable
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from .plans import _EMPTY_ROUTES

if TYPE_CHECKING:
    from .delivery import DeferredCall
    from .signal import Signal

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
        kwargs: the named arguments (a dict the interceptor must not mutate),
            as ``DeferredCall.kwargs`` and ``HeldSend.kwargs`` name them.
        robust: True for ``send_robust``/``asend_robust``.
        is_async: True for ``asend``/``asend_robust``.
    """

    __slots__ = ("is_async", "kwargs", "robust", "sender", "signal")

    def __init__(
        self, signal: Signal, sender: Any, kwargs: dict[str, Any], *, robust: bool, is_async: bool
    ) -> None:
        self.signal = signal
        self.sender = sender
        self.kwargs = kwargs
        self.robust = robust
        self.is_async = is_async

    def __repr__(self) -> str:
        return f"<Dispatch {self.signal!r} sender={self.sender!r} kwargs={self.kwargs!r}>"


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


# ---- extension points for tools and integrations ----------------------------
#
# The core never imports a tool or an integration; they plug in here. Each slot
# is read on a path that is already slow (a table rebuild, a connection
# change), or is a plain attribute the core checks once.

#: One connection change, as ``ConnectionWatcher.changed`` receives it:
#: ``(connected, receiver, for_sender, dispatch_uid, collected)``. ``receiver``
#: is None when a weakly held receiver was collected; ``collected`` is True when
#: a weak receiver or sender died (always False for a connection made).
ConnectionChange = tuple[bool, Any, Any, Any, bool]


class ConnectionWatcher(Protocol):
    """Told of connection changes (the meta-signals are built on it)."""

    def watches(self, signal: Signal) -> bool:
        """Whether changes to *signal* are wanted. Called with the signal's lock held: no locking here."""

    def changed(self, signal: Signal, changes: list[ConnectionChange]) -> None:
        """Handle *changes* to *signal*, in order. Called without any lock, in the changing thread."""


#: The one watcher, or None. Read lock-free by connect() and disconnect().
connection_watcher: ConnectionWatcher | None = None


def set_connection_watcher(watcher: ConnectionWatcher | None) -> None:
    """Install (or with ``None`` remove) the connection watcher."""
    global connection_watcher  # noqa: PLW0603 - read lock-free by connect()/disconnect()
    connection_watcher = watcher


#: What a connection filter decides: skip the connection (given its internal
#: record; see ``receivers.identity_of``) when building routing tables.
#: Called with the signal's lock held: it must not use the signal.
ConnectionFilter = Callable[[Any], bool]


def set_connection_filter(signal: Signal, skip: ConnectionFilter | None) -> None:
    """Leave the connections *skip* selects out of *signal*'s routing tables.

    Muting is built on it: a skipped connection stays connected, costs
    nothing on the send path, and is back as soon as the filter is removed
    (``None``). The table is rebuilt at the next send.
    """
    signal._set_filter(skip)  # noqa: SLF001 - the core's own slot


def set_publication_watcher(signal: Signal, watcher: Callable[[], None] | None) -> None:
    """Call *watcher* after each change of what *signal*'s ``send()`` reads.

    For integrations that keep a cheap "nobody listens" answer of their own
    (the request middlewares): *watcher* runs right after every publication
    or invalidation of the signal's routing table, possibly with the
    signal's lock held and inside a weakref callback, so it must not block,
    send or allocate much; it should read :func:`nobody_listens`.
    """
    signal._publication_watcher = watcher  # noqa: SLF001 - the core's own slot
    if watcher is not None:
        watcher()


def nobody_listens(signal: Signal) -> bool:
    """Whether a send of *signal* from any sender certainly calls nothing, right now.

    Reads the published table lock-free, as ``send()`` does: True only when
    there is no receiver and no interceptor. After a connect, before the next
    send rebuilds the table, the answer is False (unknown).
    """
    return signal._routes is _EMPTY_ROUTES  # noqa: SLF001 - the core's own table


def is_quiet(signal: Signal, sender: object) -> bool:
    """Whether a send of *signal* from *sender* certainly calls nothing, right now.

    A dict lookup in the published routing table (rebuilt first if stale, as
    a send would); receivers, interceptors such as the testing tools, or a
    concurrent rebuild answer False and the caller sends for real. Unlike
    ``has_listeners()`` it builds no list: for integrations that would do
    work only to send.
    """
    return signal._is_quiet(sender)  # noqa: SLF001 - the core's own table


def routes_of(signal: Signal) -> dict[Hashable, Any]:
    """The routing table *signal*'s ``send()`` reads now; read it, never change it.

    A sender's plan is ``table.get(id(sender)) or table["default"]``; the
    empty tuple means nobody listens. The same table object means nothing
    changed (a published table is never mutated except to drop a dead
    sender), so callers may cache answers per table, as the request
    middlewares do for :func:`is_quiet`.
    """
    return signal._routes  # noqa: SLF001 - the core's own table


def has_connections(signal: Signal) -> bool:
    """Whether *signal* has any connection at all, live or not yet swept. Takes no lock."""
    return bool(signal._records)  # noqa: SLF001 - the core's own records
