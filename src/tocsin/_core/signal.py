"""The Signal: connections, routing tables and synchronous sending.

Design, in the order a send sees it:

* Connections live in ``_records``, a dict in connection order, guarded by
  ``_lock``. Every change replaces ``_routes`` with a table that sends a
  sender to the slow path, which rebuilds the table under the lock.
* The routing table maps a sender key (see ``_senders``) to a *plan*: a tuple
  of the connection records (see ``records``) already merged with the
  any-sender receivers and sorted by priority, then connection order. One
  dict lookup finds a sender's receivers; a table is never mutated once
  published except to drop a dead sender, so a send uses a consistent
  snapshot without taking the lock, and receivers run outside the lock.
* Anything unusual (a missing sender, senders keyed by value, receivers with
  a delivery policy or an async receiver, interceptors installed by the
  tools) is marked by a plan that is not a plain tuple, and goes to
  ``_send_slow``. The common case pays for none of it.

Weak references: a receiver's death only flags the signal for a sweep (a
weakref callback may run inside any allocation, even one made while this
thread holds the lock, so it must never wait for it). A sender's death also
drops its key from the published table at once, before its id can be reused,
and its connections as soon as the lock is free (see ``_routing``): every
holder of the lock calls ``_sweep_released`` after releasing it if something
died meanwhile.
"""

from __future__ import annotations

import inspect
import threading
import weakref
from collections.abc import Callable, Hashable, Iterable
from types import MethodType
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar, overload

from tocsin.exceptions import InvalidArgumentError

from . import decorators as _decorators
from . import hooks as _hooks
from . import identity as _identity
from . import inline as _inline
from . import pause as _pause
from . import receivers as _receivers
from . import senders as _senders
from . import speedups as _speedups
from .dispatch import Dispatching
from .plans import (
    _CO_VARKEYWORDS,
    _DEFAULT,
    _EMPTY_ROUTES,
    _KWARGS_OR_ASYNC,
    _MISSING,
    _STALE_TABLE,
    Plan,
    _FunctionType,
    _weakref,
)
from .records import (
    Connection,
    Record,
    SenderRef,
    attach,
    connection_key,
    detach,
    find_anchor,
    resolve,
    snapshot,
)
from .routing import make_death_callback

if TYPE_CHECKING:
    from .delivery import DeliveryPolicy
    from .errors import ErrorHandler

__all__ = ["Signal"]


_F = TypeVar("_F", bound=Callable[..., Any])

# connect()'s fast path takes functions with **kwargs, neither async nor nested.
_KWARGS_NESTED_OR_ASYNC = _KWARGS_OR_ASYNC | _inline.CO_NESTED
_NO_PRIORITY = 0  # connect()'s default, compared by identity on its inlined path
_getweakrefcount = weakref.getweakrefcount


class _KeywordsOnly:
    """Marks where connect()'s keyword-only parameters begin.

    ``priority`` and ``via`` are keyword-only, but declaring them after ``*``
    would make every call of connect() take CPython's unspecialised call path
    (3.11 never specialises a call to a function with keyword-only
    parameters), about 60 ns more per call. They follow this placeholder
    instead: a fifth positional argument lands here and is refused, as Python
    would refuse it. ``inspect.signature(Signal.connect)`` shows the declared
    signature.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "<keyword-only parameters follow>"


_KEYWORDS_ONLY: Final = _KeywordsOnly()


def _positional_options(value: object) -> TypeError:
    return TypeError(
        "Signal.connect() takes at most 4 positional arguments (receiver, sender, weak, "
        f"dispatch_uid); got a fifth, {value!r}. Pass priority=, via= and on_error= by keyword."
    )


class Signal(Dispatching):
    """A signal that receivers connect to and senders send.

    Compatible with ``django.dispatch.Signal``: code written for it runs
    unchanged. Receivers are called as ``receiver(signal=signal,
    sender=sender, **named)``.

    Contract:
        * Order: higher ``priority`` first, then connection order (stable).
        * References: receivers are held weakly by default (functions, bound
          methods, callable objects) and disconnected when collected.
          Receivers a weak reference would lose as ``connect()`` returns are
          held strongly: lambdas, ``functools.partial`` objects, objects that
          cannot be weakly referenced, and (decided from the code object and
          the reference count at the outermost ``connect`` call, never from
          attributes or the stack; see ``_inline``) nested functions and
          callable objects only the call references, and bound methods of an
          instance only the method references. A subclass's own ``connect``
          is wrapped at class creation so that this holds through
          ``super().connect()``.
        * Senders: ``None`` means any sender; objects that support weak
          references match by identity and their connections go when they
          die; other hashable senders match by type and equality; the rest
          match by identity and are held while connected.
        * Threads: every method may be called from any thread at any time,
          including from inside a receiver. Receivers run outside the lock.
        * A send calls the receivers connected when it starts; changes made
          during a send apply to the next one.

    Args:
        use_caching: accepted for compatibility with Django and ignored:
            tocsin always routes through a per-sender table, correctly.
        name: a name for reprs, logs and introspection.
        doc: a description of the signal and of what it sends.
        async_mode: how ``asend`` (and ``send`` with async receivers) orders
            receivers. ``"concurrent"`` (Django's): sync receivers in order in a
            worker thread while async ones run concurrently. ``"sequential"``:
            one receiver at a time in priority/connection order, for receivers
            that depend on each other.
    """

    # The state the hot paths use, in slots: the compiled methods (see speedups)
    # read them at fixed offsets instead of looking them up in the instance dict.
    __slots__ = (
        "_changes",
        "_dead",
        "_death_callback",
        "_lock",
        "_publication_watcher",
        "_records",
        "_routes",
        "_unscanned",
    )

    def __init__(
        self,
        use_caching: bool = False,  # noqa: FBT001, FBT002 - Django's signature
        *,
        name: str | None = None,
        doc: str | None = None,
        async_mode: Literal["concurrent", "sequential"] = "concurrent",
        providing_args: Iterable[str] | None = None,
    ) -> None:
        del use_caching
        if providing_args is not None:
            _identity.warn_providing_args()
        if async_mode not in ("concurrent", "sequential"):
            msg = f"async_mode must be 'concurrent' or 'sequential'; got {async_mode!r}."
            raise InvalidArgumentError(msg)
        self.name = name
        self.doc = doc
        self.module = _identity.defining_module()  # for introspection and pickling
        self.async_mode = async_mode
        self._lock = threading.Lock()
        self._records: dict[Hashable, Record] = {}
        # What send() reads (see plans._routes_for): the routing table, or routes
        # sending every sender to the slow path (stale, or interceptors installed).
        self._routes: dict[Hashable, Plan] = _STALE_TABLE
        self._own_interceptors: tuple[_hooks.Interceptor, ...] = ()
        self._interceptors: tuple[_hooks.Interceptor, ...] = ()
        self._dead = False
        self._filter: _hooks.ConnectionFilter | None = None  # see hooks.set_connection_filter
        self._publication_watcher: Callable[[], None] | None = None  # see hooks.set_publication_watcher
        self._changes: list[Any] = []  # for hooks.connection_watcher, reported after the lock
        self._unscanned = False  # connected since the last look for module copies (see _rebuild)
        self._death_callback = make_death_callback(self)
        self._interceptors = _hooks.register(self)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Make a subclass's own ``connect`` decide about inline receivers at its entry.

        A ``connect`` defined in the subclass body is wrapped (same call shape,
        see ``_inline.entry``): whether a receiver is a temporary to hold
        strongly is read where the caller's call arrives, before the subclass
        forwards it to ``super().connect()``.
        """
        super().__init_subclass__(**kwargs)
        connect = cls.__dict__.get("connect")
        if type(connect) is _FunctionType and not _inline.is_entry(connect):
            setattr(cls, "connect", _inline.entry(connect))  # noqa: B010 - mypy refuses assigning a method

    def __repr__(self) -> str:
        name = f" {self.name!r}" if self.name else ""
        return f"<{type(self).__name__}{name} at {id(self):#x}>"

    def __deepcopy__(self, memo: dict[int, Any]) -> Signal:
        # A signal is an identity, like a function or a class: copying an
        # object that holds one must not fork its receivers.
        return self

    def __copy__(self) -> Signal:
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled by reference to its module-level name (see identity).
        return _identity.reduce_signal(self)

    # ---- connecting ------------------------------------------------------

    @overload
    def connect(
        self,
        receiver: _F,
        sender: object = ...,
        weak: bool = ...,  # noqa: FBT001
        dispatch_uid: Hashable | None = ...,
        *,
        priority: int = ...,
        via: DeliveryPolicy | None = ...,
        on_error: ErrorHandler | None = ...,
    ) -> _F: ...

    @overload
    def connect(
        self,
        receiver: None = ...,
        sender: object = ...,
        weak: bool = ...,  # noqa: FBT001
        dispatch_uid: Hashable | None = ...,
        *,
        priority: int = ...,
        via: DeliveryPolicy | None = ...,
        on_error: ErrorHandler | None = ...,
    ) -> Callable[[_F], _F]: ...

    def connect(  # noqa: C901, PLR0912, PLR0917 - inlined hot path; keyword-only: see _KeywordsOnly
        self,
        receiver: Callable[..., Any] | None = None,
        sender: object = None,
        weak: bool = True,  # noqa: FBT001, FBT002 - Django's signature
        dispatch_uid: Hashable | None = None,
        _keywords_only: object = _KEYWORDS_ONLY,
        priority: int = 0,
        via: DeliveryPolicy | None = None,
        on_error: ErrorHandler | None = None,
    ) -> Any:
        """Connect *receiver* to this signal and return it.

        Also usable as a decorator, bare (``@sig.connect``) or with arguments
        (``@sig.connect(sender=Order)``).

        Args:
            receiver: a callable accepting ``**kwargs``.
            sender: only receive sends from this sender; ``None`` for any.
            weak: hold the receiver weakly (see the class docstring).
            dispatch_uid: a hashable identifying the connection instead of the
                receiver, so connecting twice under one uid connects once.
            priority: receivers with higher priority run first.
            via: a delivery policy deciding how and when the receiver runs
                (see ``tocsin.DeferredCall``); ``None`` calls it at once.
            on_error: called as ``on_error(exc, context)`` (a
                ``tocsin.ErrorContext``) when this receiver raises an
                ``Exception`` during a send, before the send goes on: ``send``
                still propagates the exception, ``send_robust`` still logs
                and returns it. An exception the handler raises is logged and
                does not change the outcome. Held strongly, except a bound
                method for a weak receiver (held weakly). See docs/patterns.md.

        Connecting the same receiver (or dispatch_uid) for the same sender
        again does nothing (the first connection's options, *on_error*
        included, stay). Thread-safe.

        Raises:
            ReceiverNotCallableError: *receiver* is not callable.
            ReceiverSignatureError: *receiver* does not accept ``**kwargs``.
            InvalidArgumentError: *priority*, *via* or *on_error* of the
                wrong kind; nothing is connected.
        """
        # With the accelerator, Signal.connect is its compiled form (see
        # speedups), which does the first branch below in C and calls this for
        # everything else. It matches every parameter by name: a new option
        # must be added there (_speedups_connect.h, match_params), or it is refused
        # there as an unknown keyword and handled here.
        if (
            type(receiver) is _FunctionType
            and weak
            # Takes **kwargs, is not async, and is not nested (a closure or a
            # wrapper that may be a temporary, see _inline) ...
            and (code := receiver.__code__).co_flags & _KWARGS_NESTED_OR_ASYNC == _CO_VARKEYWORDS
            and code.co_name != "<lambda>"
            # ... and has no attributes set on it: no coroutine marker
            # (inspect's or asgiref's, see _receivers).
            and not receiver.__dict__
            # Every option at its default: `is` is exact for the int 0 (cached
            # by CPython); any other zero takes the general path, which checks it.
            and priority is _NO_PRIORITY
            and dispatch_uid is None
            and via is None
            and on_error is None
            and _keywords_only is _KEYWORDS_ONLY
        ):
            # The common connection, a module-level function: inline what
            # _connect_general() would do (see records for the record and key).
            if sender is None:
                key: Hashable = id(receiver)  # see connection_key()
                anchor: Any = None
                record: Record = (_weakref(receiver, self._death_callback), None, None)
            elif type(sender).__weakrefoffset__:  # a sender matched by identity
                # Inline records.hold_sender().
                anchor = find_anchor(sender, self._death_callback) if _getweakrefcount(sender) else None
                if anchor is None:
                    anchor = SenderRef(sender, self._death_callback)
                    anchor.conns = None
                    anchor.key = id(sender)  # set last: see find_anchor()
                key = id(receiver) << 64 | anchor.key  # see connection_key()
                record = (_weakref(receiver, self._death_callback), None, anchor)
            else:
                # All positional (scope None): a call with keywords is not specialised.
                self._connect_general(receiver, sender, weak, dispatch_uid, priority, via, None, on_error)
                return receiver
        elif _keywords_only is not _KEYWORDS_ONLY:
            raise _positional_options(_keywords_only)
        elif receiver is None:
            # Built elsewhere: a closure here would make every call of
            # connect() allocate cells for the variables it captures.
            return _connect_decorator(self, sender, weak, dispatch_uid, priority, via, on_error)
        else:
            # Called from here, not through a helper: _inline.calibrate
            # measures a temporary's reference count through this very call.
            self._connect_general(receiver, sender, weak, dispatch_uid, priority, via, None, on_error)
            return receiver
        # Everything was worked out before taking the lock; weak references
        # made for a duplicate are simply dropped.
        lock = self._lock
        lock.acquire()  # not `with`: try/finally is about twice as fast here
        try:
            if self._dead:
                _swept = self._sweep()  # freed after the lock is released
            # No sequence number: connection order is the order of _records (see
            # _make_plan). One lookup both checks for a duplicate and inserts.
            if self._records.setdefault(key, record) is not record:
                return receiver
            if anchor is not None:  # the sender's death drops this connection (see _routing)
                if anchor.conns is None:
                    anchor.conns = key  # inline attach() for a sender's first connection
                else:
                    attach(anchor, key)
            self._routes = _STALE_TABLE  # inline _invalidate()
            if self._publication_watcher is not None:  # see hooks.set_publication_watcher
                self._publication_watcher()
            self._unscanned = True  # look for module copies at the next rebuild
            watcher = _hooks.connection_watcher
            if watcher is not None and watcher.watches(self):
                self._changes.append((True, record, receiver))
        finally:
            lock.release()
            if self._dead:  # died while the lock was held (see _routing.make_death_callback)
                self._sweep_released()
        if self._changes:
            self._report_changes()
        return receiver

    def disconnect(  # noqa: C901, PLR0912 - the hot path is inlined on purpose (see benchmarks/)
        self,
        receiver: Callable[..., Any] | None = None,
        sender: object = None,
        dispatch_uid: Hashable | None = None,
    ) -> bool:
        """Disconnect *receiver* (or *dispatch_uid*) from *sender*.

        Removes exactly the connection ``connect()`` made with the same
        receiver or uid and the same sender; ``sender=None`` means the
        any-sender connection, not every connection. Thread-safe; a send in
        progress still completes with the receivers it started with.

        Returns:
            True if a connection was removed, False if there was none.
        """
        # Compiled (see speedups): the first branch below, for a function, is done in C.
        if type(receiver) is _FunctionType and dispatch_uid is None:
            # Inline connection_key(receiver_key(receiver), send_key(sender)).
            if sender is None:
                key: Hashable = id(receiver)
            elif type(sender).__weakrefoffset__:
                key = id(receiver) << 64 | id(sender)
            else:
                key = connection_key(id(receiver), _senders.send_key(sender))
        else:
            key = self._connection_key(receiver, sender, dispatch_uid)
        lock = self._lock
        lock.acquire()  # not `with`: see connect()
        try:
            if self._dead:
                _swept = self._sweep()  # freed after the lock is released
            # Inline _remove(). Keep the record until the lock is released: it
            # may hold the last reference to a receiver whose __del__ uses this signal.
            removed = self._records.pop(key, None)
            if removed is None:
                return False
            link = removed[2]
            if link is not None:  # a sender of its own: the anchor forgets this connection
                anchor = link[0] if link.__class__ is tuple else link
                if anchor.__class__ is SenderRef:
                    detach(anchor, key)
            watcher = _hooks.connection_watcher
            if watcher is not None and watcher.watches(self):
                self._changes.append((False, removed, False))
            self._routes = _STALE_TABLE  # inline _invalidate()
            if self._publication_watcher is not None:  # see hooks.set_publication_watcher
                self._publication_watcher()
        finally:
            lock.release()
            if self._dead:  # see connect()
                self._sweep_released()
        if self._changes:
            self._report_changes()
        return True

    # A context manager function used as a method: see _decorators.
    connected_to = _decorators.connected_to

    def receivers_for(self, sender: object) -> list[Callable[..., Any]]:
        """Return the live receivers a send from *sender* would call, in order.

        Bound methods held weakly come back as new bound method objects.
        """
        live = (resolve(record) for record in self._records_for(sender))
        return [receiver for receiver in live if receiver is not None]

    def has_listeners(self, sender: object = None) -> bool:
        """Whether a send from *sender* would call any receiver.

        As in Django, ``has_listeners()`` (sender ``None``) counts only the
        receivers connected for any sender.
        """
        return bool(self.receivers_for(sender))

    def connections(self) -> list[Connection]:
        """Return a snapshot of the live connections, in connection order.

        Cost: proportional to the number of connections (a few microseconds
        each). ``Connection.where`` of a callable object or a class is looked
        up once per class and cached; before Python 3.13 the first lookup of
        a class in a given file parses that file once.
        """
        with self._locked():
            if self._dead:
                _swept = self._sweep()  # freed after the lock is released
            records = list(self._records.values())
        if self._changes:
            self._report_changes()
        snapshots = (snapshot(record, _receivers.describe) for record in records)
        return [connection for connection in snapshots if connection is not None]

    # ---- sending -----------------------------------------------------------

    def send(self, sender: Any = _MISSING, **named: Any) -> list[tuple[Any, Any]]:
        """Call every receiver for *sender* and return ``[(receiver, response)]``.

        Receivers run in the sending thread, in priority then connection
        order, as ``receiver(signal=self, sender=sender, **named)``. A
        receiver connected ``via=`` a delivery policy is handed to it instead
        and its response is a ``tocsin.Deferred``.

        Raises:
            Exception: the first exception a receiver raises propagates
                unchanged (the same object) and the remaining receivers do
                not run, as in Django.
            SendArgumentsError: no sender was given, or ``signal=`` was
                passed among the named arguments.
        """
        # `signal=` is refused (see _check_send_arguments) but looked up in
        # named, not declared: a keyword-only parameter costs filling in its
        # default on every call. No receiver at all: done at once.
        if self._routes is _EMPTY_ROUTES and sender is not _MISSING and "signal" not in named:
            return []
        routes = self._routes
        plan = routes.get(id(sender))
        if plan is None:
            plan = routes[_DEFAULT]
        if plan.__class__ is not tuple or "signal" in named:
            return self._send_slow(sender, named.pop("signal", _MISSING), named, robust=False)
        responses = []
        for deref, func, _ in plan:  # a record (see records)
            receiver = deref()
            if receiver is not None:
                if func is not None:
                    receiver = MethodType(func, receiver)
                responses.append((receiver, receiver(signal=self, sender=sender, **named)))
        return responses

    def send_robust(self, sender: Any = _MISSING, **named: Any) -> list[tuple[Any, Any]]:
        """Like :meth:`send`, but a receiver's exception becomes its response.

        Every receiver runs. A receiver raising an ``Exception`` subclass has
        that exception as its response, and the failure is logged on logger
        ``tocsin`` at ERROR with the traceback, as Django logs it: ``Error
        calling <qualname> in Signal.send_robust() (<error>)`` (the record's
        ``signal`` and ``receiver`` attributes hold both). ``BaseException``
        subclasses such as ``KeyboardInterrupt`` propagate. ``send_robust``
        itself never raises for a receiver.

        Raises:
            SendArgumentsError: no sender was given, or ``signal=`` was
                passed among the named arguments.
        """
        # `signal=` is refused (see _check_send_arguments) but looked up in
        # named, not declared: a keyword-only parameter costs filling in its
        # default on every call. No receiver at all: done at once.
        if self._routes is _EMPTY_ROUTES and sender is not _MISSING and "signal" not in named:
            return []
        routes = self._routes
        plan = routes.get(id(sender))
        if plan is None:
            plan = routes[_DEFAULT]
        if plan.__class__ is not tuple or "signal" in named:
            return self._send_slow(sender, named.pop("signal", _MISSING), named, robust=True)
        responses: list[tuple[Any, Any]] = []
        for deref, func, _ in plan:  # a record (see records)
            receiver = deref()
            if receiver is not None:
                if func is not None:
                    receiver = MethodType(func, receiver)
                try:
                    response = receiver(signal=self, sender=sender, **named)
                except Exception as exc:  # noqa: BLE001 - the robust contract
                    self._log_failure(receiver, exc)
                    response = exc
                responses.append((receiver, response))
        return responses

    def paused(
        self, reduce: _pause.Reducer | None = None, *, on_error: Literal["deliver", "drop"] = "deliver"
    ) -> _pause.Paused:
        """Hold the sends made while the block runs; deliver them as it exits.

        Inside the block ``send()`` returns ``[]``. See ``tocsin._pause`` and
        docs/tools.md for nesting, *reduce* and exceptions.
        """
        return _pause.Paused(self, reduce, on_error=on_error)

    # ---- interceptors (see _hooks) -------------------------------------------


def _declared_connect(
    self: Signal,
    receiver: Callable[..., Any] | None = None,
    sender: object = None,
    weak: bool = True,  # noqa: FBT001, FBT002 - Django's signature
    dispatch_uid: Hashable | None = None,
    *,
    priority: int = 0,
    via: DeliveryPolicy | None = None,
    on_error: ErrorHandler | None = None,
) -> Any:
    """Never called: its signature is the one ``Signal.connect`` shows (see _KeywordsOnly)."""


Signal.connect.__signature__ = inspect.signature(_declared_connect)  # type: ignore[attr-defined]


def _connect_decorator(  # noqa: PLR0917 - connect()'s arguments, passed on
    signal: Signal,
    sender: object,
    weak: bool,  # noqa: FBT001 - connect()'s positional argument
    dispatch_uid: Hashable | None,
    priority: int,
    via: DeliveryPolicy | None,
    on_error: ErrorHandler | None,
) -> Callable[[_F], _F]:
    """``connect()`` used as a decorator with arguments: ``@sig.connect(sender=Order)``."""

    def decorator(func: _F) -> _F:
        with _inline.kept_by_caller(func):  # bound to a name next: weak if nested
            signal.connect(func, sender, weak, dispatch_uid, priority=priority, via=via, on_error=on_error)
        return func

    return decorator


def _make_temporary() -> Callable[..., None]:
    def temporary(**kwargs: Any) -> None:
        del kwargs

    return temporary


def _connect_temporary() -> None:
    Signal().connect(_make_temporary())


def _connect_temporary_through_subclass() -> None:
    class Forwarding(Signal):
        def connect(self, *args: Any, **kwargs: Any) -> Any:
            return super().connect(*args, **kwargs)

    Forwarding().connect(_make_temporary())


# The compiled hot paths, where available (see speedups); before calibrating,
# which measures through the installed connect.
_speedups.install(Signal, _KEYWORDS_ONLY, _NO_PRIORITY)
_inline.calibrate(_connect_temporary, _connect_temporary_through_subclass)
