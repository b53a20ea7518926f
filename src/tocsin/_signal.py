"""The Signal: connections, routing tables and synchronous sending.

Design, in the order a send sees it:

* Connections live in ``_records``, a dict in connection order, guarded by
  ``_lock``. Every change replaces ``_routes`` with a table that sends a
  sender to the slow path, which rebuilds the table under the lock.
* The routing table maps a sender key (see ``_senders``) to a *plan*: a tuple
  of ``(deref, func)`` pairs (see ``_receivers``) already merged with the
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
thread holds the lock, so it must not take it). A sender's death also drops
its key from the published table at once, before its id can be reused.
"""

from __future__ import annotations

import inspect
import logging
import operator
import threading
import weakref
from collections.abc import Callable, Coroutine, Hashable, Iterable
from functools import partial
from types import FunctionType, MethodType
from typing import Any, Final, Literal, TypeVar, overload

from . import _async, _hooks, _meta, _mute, _pause, _receivers, _senders
from ._connections import (
    R_ASYNC,
    R_DEREF,
    R_FUNC,
    R_PRIORITY,
    R_SENDER_ANCHOR,
    R_SENDER_KEY,
    R_SENDER_KIND,
    R_UID,
    R_VIA,
    R_WEAK,
    Connection,
    Record,
)
from ._delivery import Deferred, DeferredCall
from .exceptions import SendArgumentsError

__all__ = ["Signal"]

logger = logging.getLogger("tocsin")

_F = TypeVar("_F", bound=Callable[..., Any])


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<missing>"


_MISSING: Final[Any] = _Missing()
_DEFAULT: Final = "default"  # routing-table slot of senders with no own entry
_ANY_KEY: Final = _senders.ANY_KEY
_MethodType: Final = MethodType
_FunctionType: Final = FunctionType
_CO_VARKEYWORDS: Final = inspect.CO_VARKEYWORDS
_KWARGS_OR_ASYNC: Final = inspect.CO_VARKEYWORDS | inspect.CO_COROUTINE
_weakref: Final = weakref.ref


class _SlowPlan:
    """A plan the fast loop cannot run; ``_send_slow`` handles it."""

    __slots__ = ("async_records", "entries", "kind", "sync_records", "via_records")

    def __init__(self, kind: str, entries: tuple[Record, ...] = ()) -> None:
        self.kind = kind
        self.entries = entries
        # asend's groups, computed once per plan rather than once per send.
        self.via_records = tuple(r for r in entries if r[R_VIA] is not None)
        self.async_records = tuple(r for r in entries if r[R_VIA] is None and r[R_ASYNC])
        self.sync_records = tuple(r for r in entries if r[R_VIA] is None and not r[R_ASYNC])


_STALE: Final = _SlowPlan("stale")  # the table must be rebuilt
_BY_VALUE: Final = _SlowPlan("by-value")  # look the sender up by value
_NO_SENDER: Final = _SlowPlan("no-sender")  # send() without a sender: an error
_INTERCEPTED: Final = _SlowPlan("intercepted")  # interceptors are installed
_STALE_TABLE: Final[dict[Hashable, Any]] = {_DEFAULT: _STALE}
_INTERCEPT_TABLE: Final[dict[Hashable, Any]] = {_DEFAULT: _INTERCEPTED}
# Published instead of a table without any receiver: send() returns at once.
_EMPTY_ROUTES: Final[dict[Hashable, Any]] = {_DEFAULT: (), id(_MISSING): _NO_SENDER}


def connection_key(rkey: Hashable, skey: Hashable) -> Hashable:
    """The key of a connection in ``Signal._records`` (``_mute.is_muted`` reads it back).

    ``(receiver key, sender key)``, except for connections to any sender,
    the most common: the receiver key alone when it is an ``id()`` (no tuple
    to allocate, 56 bytes less per connection), else ``(receiver key,)``.
    Ints, 1-tuples and 2-tuples never compare equal, so keys stay distinct.
    """
    if skey == _ANY_KEY:
        return rkey if rkey.__class__ is int else (rkey,)
    return (rkey, skey)


def _published(table: dict[Hashable, Any]) -> dict[Hashable, Any]:
    """The routes send() reads for *table* while no interceptor is installed."""
    # A table always holds the any-sender, default and missing-sender slots.
    if len(table) == 3 and table[_DEFAULT] == ():  # noqa: PLR2004
        return _EMPTY_ROUTES
    return table


Plan = Any  # tuple of (deref, func) pairs, or a _SlowPlan


def _sort_key(entry: tuple[int, Record]) -> tuple[int, int]:
    position, record = entry
    return (-record[R_PRIORITY], position)


def _make_plan(entries: list[tuple[int, Record]]) -> Plan:
    """Build the plan of *entries*, ``(position in Signal._records, record)`` pairs."""
    # Connection order is the order of Signal._records (a record is never
    # re-inserted), so records carry no sequence number: one int less each.
    entries.sort(key=_sort_key)
    records = [record for _, record in entries]
    if any(r[R_VIA] is not None or r[R_ASYNC] for r in records):
        return _SlowPlan("full", tuple(records))
    return tuple((r[R_DEREF], r[R_FUNC]) for r in records)


def _check_priority(priority: object) -> int:
    """Return *priority* as an int, or raise before it is stored.

    A priority that does not sort would make every later send of the signal
    fail while building its routing table, not the connect() that caused it.
    """
    try:
        return operator.index(priority)  # type: ignore[arg-type]
    except TypeError:
        msg = f"priority must be an int (higher runs first); got {priority!r}."
        raise TypeError(msg) from None


def _bind(obj: Any, func: Callable[..., Any]) -> Any:
    return None if obj is None else MethodType(func, obj)


def _resolve(record: Record) -> Any:
    obj = record[R_DEREF]()
    if obj is None or record[R_FUNC] is None:
        return obj
    return MethodType(record[R_FUNC], obj)


def _make_death_callback(signal: Signal) -> Callable[[weakref.ref[Any]], None]:
    signal_ref = weakref.ref(signal)

    def died(ref: weakref.ref[Any]) -> None:
        sig = signal_ref()
        if sig is None:
            return
        sig._dead = True  # noqa: SLF001 - the signal's own callback
        # A dead sender's id may be reused as soon as this returns: drop its
        # route now. Popping from a dict needs no lock.
        key = sig._anchor_keys.get(id(ref))  # noqa: SLF001
        sig._table.pop(key, None)  # noqa: SLF001
        sig._routes.pop(key, None)  # noqa: SLF001
        sig._invalidate()  # noqa: SLF001

    return died


class Signal:
    """A signal that receivers connect to and senders send.

    Compatible with ``django.dispatch.Signal``: code written for it runs
    unchanged. Receivers are called as ``receiver(signal=signal,
    sender=sender, **named)``.

    Contract:
        * Order: higher ``priority`` first, then connection order (stable).
        * References: receivers are held weakly by default (functions, bound
          methods, callable objects) and disconnected when collected.
          Lambdas, ``functools.partial`` objects, closures passed inline and
          objects that cannot be weakly referenced are held strongly, since a
          weak reference would lose them at once.
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
            _meta.warn_providing_args()
        if async_mode not in ("concurrent", "sequential"):
            msg = f"async_mode must be 'concurrent' or 'sequential'; got {async_mode!r}."
            raise ValueError(msg)
        self.name = name
        self.doc = doc
        self.module = _meta.defining_module()  # for introspection (see _namespace)
        self.async_mode = async_mode
        self._lock = threading.Lock()
        self._records: dict[Hashable, Record] = {}
        # _table is the real routing table; _routes is what send() reads: the
        # same table, or a constant one sending everything to the slow path.
        self._table: dict[Hashable, Plan] = _STALE_TABLE
        self._routes: dict[Hashable, Plan] = _STALE_TABLE
        self._own_interceptors: tuple[_hooks.Interceptor, ...] = ()
        self._interceptors: tuple[_hooks.Interceptor, ...] = ()
        self._anchor_keys: dict[int, Hashable] = {}  # id(sender weakref) -> sender key
        self._sender_anchors: dict[Hashable, tuple[Any, int]] = {}  # key -> (anchor, uses)
        self._dead = False
        self._muted: dict[Hashable, int] = {}  # mute key -> depth (see _mute)
        self._meta_pending: list[Any] = []  # receiver_(dis)connected to send (see _meta)
        self._death_callback = _make_death_callback(self)
        self._interceptors = _hooks.register(self)

    def __repr__(self) -> str:
        name = f" {self.name!r}" if self.name else ""
        return f"<{type(self).__name__}{name} at {id(self):#x}>"

    def __deepcopy__(self, memo: dict[int, Any]) -> Signal:
        # A signal is an identity, like a function or a class: copying an
        # object that holds one must not fork its receivers.
        return self

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
        via: Callable[[Callable[[], Any]], Any] | None = ...,
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
        via: Callable[[Callable[[], Any]], Any] | None = ...,
    ) -> Callable[[_F], _F]: ...

    def connect(  # noqa: C901, PLR0912 - the hot path is inlined on purpose (see benchmarks/)
        self,
        receiver: Callable[..., Any] | None = None,
        sender: object = None,
        weak: bool = True,  # noqa: FBT001, FBT002 - Django's signature
        dispatch_uid: Hashable | None = None,
        *,
        priority: int = 0,
        via: Callable[[Callable[[], Any]], Any] | None = None,
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

        Connecting the same receiver (or dispatch_uid) for the same sender
        again does nothing. Thread-safe.

        Raises:
            ReceiverNotCallableError: *receiver* is not callable.
            ReceiverSignatureError: *receiver* does not accept ``**kwargs``.
        """
        if receiver is None:

            def decorator(func: _F) -> _F:
                self.connect(func, sender, weak, dispatch_uid, priority=priority, via=via)
                return func

            return decorator
        # Everything about the receiver is worked out before taking the lock;
        # a weak reference made for a duplicate is simply dropped.
        if (
            type(receiver) is _FunctionType
            and weak
            and receiver.__code__.co_flags & _KWARGS_OR_ASYNC == _CO_VARKEYWORDS
            and "<" not in receiver.__qualname__  # not a lambda or a closure
            and not hasattr(receiver, "_is_coroutine_marker")  # markers: see _receivers
            and not hasattr(receiver, "_is_coroutine")
        ):
            # The common receiver, a module-level function: inline what
            # _receivers.prepare() would conclude.
            rkey: Hashable = id(receiver)
            deref: Any = _weakref(receiver, self._death_callback)
            func = None
            is_weak = True
            is_async = False
        else:
            rkey, deref, func, is_weak, is_async = _receivers.prepare(receiver, weak, self._death_callback)
        if via is not None and not callable(via):
            msg = (  # type: ignore[unreachable] # typed callers cannot get here; others can
                f"via= must be a delivery policy: a callable taking one zero-argument callable "
                f"(for example executor.submit or tocsin.sqlalchemy.on_commit); got {via!r}."
            )
            raise TypeError(msg)
        if priority.__class__ is not int:
            priority = _check_priority(priority)
        if dispatch_uid is not None:
            rkey = ("uid", dispatch_uid)
        if sender is None:
            skey: Hashable = _ANY_KEY
            kind: str = "any"
            key: Hashable = rkey if rkey.__class__ is int else (rkey,)  # inline connection_key()
        else:
            skey, kind = _senders.classify(sender)
            key = (rkey, skey)
        lock = self._lock
        lock.acquire()  # not `with`: try/finally is about twice as fast here
        try:
            if self._dead:
                _swept = self._sweep()  # freed after the lock is released
            records = self._records
            if kind != "any":
                if key in records:
                    return receiver
                anchor = self._hold_sender(skey, kind, sender)
            else:
                anchor = None
            # No sequence number: connection order is the order of _records (see _make_plan).
            record = (deref, func, skey, anchor, is_weak, dispatch_uid, priority, via, is_async, kind)
            # One lookup both checks for a duplicate and inserts.
            if records.setdefault(key, record) is not record:
                return receiver
            self._table = _STALE_TABLE  # inline _invalidate()
            self._routes = _STALE_TABLE
            if _meta.watching and _meta.watched(self):
                self._meta_pending.append((True, record, receiver))
        finally:
            lock.release()
        if self._meta_pending:
            _meta.flush(self)
        return receiver

    def _hold_sender(self, skey: Hashable, kind: str, sender: object) -> Any:
        """Return the anchor of *sender*, shared by all its connections."""
        if kind in ("any", "value"):
            return None
        held = self._sender_anchors.get(skey)
        if held is not None:
            self._sender_anchors[skey] = (held[0], held[1] + 1)
            return held[0]
        anchor = weakref.ref(sender, self._death_callback) if kind == "weak" else sender
        self._sender_anchors[skey] = (anchor, 1)
        if kind == "weak":
            self._anchor_keys[id(anchor)] = skey
        return anchor

    def _release_sender(self, skey: Hashable) -> None:
        anchor, uses = self._sender_anchors[skey]
        if uses > 1:
            self._sender_anchors[skey] = (anchor, uses - 1)
            return
        del self._sender_anchors[skey]
        self._anchor_keys.pop(id(anchor), None)

    def _remove(self, key: Hashable, *, collected: bool = False) -> Record | None:
        """Drop the connection *key* and return its record (None if absent). Lock held."""
        record = self._records.pop(key, None)
        if record is None:
            return None
        if _meta.watching and _meta.watched(self):
            self._meta_pending.append((False, record, collected))
        if record[R_SENDER_KIND] in ("weak", "strong"):
            self._release_sender(record[R_SENDER_KEY])
        return record

    def _sweep(self) -> list[object]:
        """Drop connections whose receiver or sender died. Lock held.

        Returns the dropped records. Callers keep them until the lock is
        released: a record may hold the last reference to a strong receiver
        or sender, whose ``__del__`` may use this signal (and so the lock).
        """
        self._dead = False
        dropped: list[object] = []
        for key, record in list(self._records.items()):
            anchor = record[R_SENDER_ANCHOR]
            if record[R_DEREF]() is None or (record[R_SENDER_KIND] == "weak" and anchor() is None):
                dropped.append(self._remove(key, collected=True))
                self._invalidate()
        return dropped

    def disconnect(
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
        if dispatch_uid is not None:
            rkey: Hashable = ("uid", dispatch_uid)
        elif receiver is None:
            msg = "Signal.disconnect() needs the receiver or the dispatch_uid it was connected with."
            raise TypeError(msg)
        elif type(receiver) is _MethodType:
            rkey = _receivers.receiver_key(receiver)
        else:
            rkey = id(receiver)  # inline receiver_key()
        if sender is None:
            key: Hashable = rkey if rkey.__class__ is int else (rkey,)  # inline connection_key()
        else:
            key = (rkey, _senders.send_key(sender))
        lock = self._lock
        lock.acquire()  # not `with`: see connect()
        try:
            if self._dead:
                _swept = self._sweep()  # freed after the lock is released
            # Keep the record until the lock is released: it may hold the last
            # reference to a receiver whose __del__ uses this signal.
            removed = self._remove(key)
            if removed is None:
                return False
            self._table = _STALE_TABLE  # inline _invalidate()
            self._routes = _STALE_TABLE
        finally:
            lock.release()
        if self._meta_pending:
            _meta.flush(self)
        return True

    def _is_connected(
        self, receiver: Callable[..., Any], sender: object, dispatch_uid: Hashable | None
    ) -> bool:
        """Whether ``connect()`` with these arguments would be a duplicate.

        Lets ``@receiver`` undo only the connections it made itself.
        """
        rkey = ("uid", dispatch_uid) if dispatch_uid is not None else _receivers.receiver_key(receiver)
        with self._lock:
            if self._dead:
                _swept = self._sweep()  # freed after the lock is released
            return connection_key(rkey, _senders.send_key(sender)) in self._records

    # ---- routing -----------------------------------------------------------

    def _rebuild(self) -> dict[Hashable, Plan]:
        """Publish a routing table for the current connections."""
        with self._lock:
            if self._table is not _STALE_TABLE:
                return self._table
            if self._dead:
                _swept = self._sweep()  # freed after the lock is released
            # Holding every live sender until the table is published means a
            # sender cannot die between the check below and the publication;
            # when it dies later its callback drops its key from this table.
            alive: list[Any] = []
            any_records: list[tuple[int, Record]] = []
            by_sender: dict[Hashable, list[tuple[int, Record]]] = {}
            by_value = False
            for position, (key, record) in enumerate(self._records.items()):
                if self._muted and _mute.is_muted(self._muted, key, record):
                    continue
                anchor = record[R_SENDER_ANCHOR]
                if record[R_SENDER_KIND] == "any":
                    any_records.append((position, record))
                    continue
                if record[R_SENDER_KIND] == "weak":
                    sender = anchor()
                    if sender is None:
                        continue
                    alive.append(sender)
                by_value = by_value or record[R_SENDER_KIND] == "value"
                by_sender.setdefault(record[R_SENDER_KEY], []).append((position, record))
            table: dict[Hashable, Plan] = {
                skey: _make_plan(any_records + records) for skey, records in by_sender.items()
            }
            any_plan = _make_plan(any_records)
            table[_senders.ANY_KEY] = any_plan
            table[_DEFAULT] = _BY_VALUE if by_value else any_plan
            table[id(_MISSING)] = _NO_SENDER
            self._table = table
            self._routes = _INTERCEPT_TABLE if self._interceptors else _published(table)
            # `alive` is released on return, after the lock: a sender freed
            # there may run a __del__ that uses this signal.
            return table

    def _invalidate(self) -> None:
        # Order matters for lock-free readers: a send reading _routes after
        # this sees the stale table and rebuilds.
        self._table = _STALE_TABLE
        self._routes = _STALE_TABLE

    def _plan_for(self, sender: object) -> Plan:
        routes = self._table
        if routes is _STALE_TABLE:
            routes = self._rebuild()
            if self._meta_pending:
                _meta.flush(self)
        plan = routes.get(id(sender))
        if plan is None:
            plan = routes[_DEFAULT]
            if plan is _BY_VALUE:
                value_key = _senders.value_key(sender)
                # The any-sender plan of this same table: a plan kept on self
                # would hold disconnected receivers alive until the next rebuild.
                any_plan = routes[_ANY_KEY]
                plan = routes.get(value_key, any_plan) if value_key is not None else any_plan
        return plan

    def _records_for(self, sender: object) -> Iterable[Record]:
        """The records a send from *sender* would call, in order."""
        plan = self._plan_for(sender)
        if isinstance(plan, _SlowPlan):
            return plan.entries
        # Fast plans keep only (deref, func); map back to their records by the
        # identity of deref, which each record owns. Never by value: a weakref
        # hashes its referent, which may be unhashable or already dead.
        by_deref = {id(r[R_DEREF]): r for r in list(self._records.values())}
        return [by_deref[id(deref)] for deref, _ in plan if id(deref) in by_deref]

    def receivers_for(self, sender: object) -> list[Callable[..., Any]]:
        """Return the live receivers a send from *sender* would call, in order.

        Bound methods held weakly come back as new bound method objects.
        """
        live = (_resolve(record) for record in self._records_for(sender))
        return [receiver for receiver in live if receiver is not None]

    def has_listeners(self, sender: object = None) -> bool:
        """Whether a send from *sender* would call any receiver.

        As in Django, ``has_listeners()`` (sender ``None``) counts only the
        receivers connected for any sender.
        """
        return bool(self.receivers_for(sender))

    def _is_quiet(self, sender: object) -> bool:
        """Whether a send from *sender* certainly reaches nobody, right now.

        For integrations that would do work only to send (the request
        middlewares, the SQLAlchemy model signals): skip it when this says
        True. Reads the published routes without the lock, as ``send()``
        does: an empty plain plan means no receiver and no interceptor.
        Anything else (receivers, interceptors such as ``tocsin.testing``'s,
        a table being rebuilt concurrently) answers False and the caller
        sends for real. A stale table is rebuilt first, as a send would, so
        a receiver connected earlier is always seen. Unlike
        ``has_listeners()`` it builds no list: a dict lookup.
        """
        routes = self._routes
        if routes is _STALE_TABLE:  # after any connect or disconnect: publish the new table
            self._rebuild()
            if self._meta_pending:
                _meta.flush(self)
            routes = self._routes
        plan = routes.get(id(sender))
        if plan is None:
            plan = routes[_DEFAULT]
        return plan.__class__ is tuple and not plan

    def connections(self) -> list[Connection]:
        """Return a snapshot of the live connections, in connection order."""
        with self._lock:
            if self._dead:
                # Drops what died, and so releases the receivers held strongly
                # by connections to a dead sender (after the lock is released).
                _swept = self._sweep()
            records = list(self._records.values())
        if self._meta_pending:
            _meta.flush(self)
        result = []
        for record in records:
            receiver = _resolve(record)
            anchor = record[R_SENDER_ANCHOR]
            if record[R_SENDER_KIND] == "any":
                sender = None
            elif record[R_SENDER_KIND] == "value":
                sender = record[R_SENDER_KEY][1]
            else:
                sender = anchor() if record[R_SENDER_KIND] == "weak" else anchor
            if receiver is None or (record[R_SENDER_KIND] == "weak" and sender is None):
                continue
            module, qualname, where = _receivers.describe(receiver)
            result.append(
                Connection(
                    receiver=receiver,
                    sender=sender,
                    weak=record[R_WEAK],
                    dispatch_uid=record[R_UID],
                    priority=record[R_PRIORITY],
                    via=record[R_VIA],
                    is_async=record[R_ASYNC],
                    module=module,
                    qualname=qualname,
                    where=where,
                )
            )
        return result

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
            return self._send_slow(plan, sender, named.pop("signal", _MISSING), named, robust=False)
        responses = []
        for deref, func in plan:
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
        ``tocsin`` at ERROR with the traceback and the receiver's qualified
        name. ``BaseException`` subclasses such as ``KeyboardInterrupt``
        propagate. ``send_robust`` itself never raises for a receiver.

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
            return self._send_slow(plan, sender, named.pop("signal", _MISSING), named, robust=True)
        responses: list[tuple[Any, Any]] = []
        for deref, func in plan:
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

    def _log_failure(self, receiver: object, exc: Exception) -> None:
        logger.error(
            "Error calling %s in Signal.send_robust() (%s)",
            _receivers.qualified_name(receiver),
            self.name or repr(self),
            exc_info=exc,
        )

    def _check_send_arguments(self, sender: object, signal: object, named: dict[str, Any]) -> None:
        if sender is _MISSING:
            msg = (
                "Signal.send() needs a sender: the object (often a class) that is sending. "
                "Pass it first, for example sig.send(sender=Order, order=order), or None "
                "for no particular sender."
            )
            raise SendArgumentsError(msg)
        if signal is not _MISSING:
            msg = (
                f"Signal.send() got signal={signal!r} among its named arguments, but the "
                "signal passes itself to receivers as signal=. Rename that argument."
            )
            raise SendArgumentsError(msg)
        del named

    def paused(
        self, reduce: _pause.Reducer | None = None, *, on_error: Literal["deliver", "drop"] = "deliver"
    ) -> _pause.Paused:
        """Hold the sends made while the block runs; deliver them as it exits.

        Inside the block ``send()`` returns ``[]``. See ``tocsin._pause`` and
        docs/tools.md for nesting, *reduce* and exceptions.
        """
        return _pause.Paused(self, reduce, on_error=on_error)

    # ---- interceptors (see _hooks) -------------------------------------------

    def add_interceptor(self, interceptor: _hooks.Interceptor) -> Callable[[], None]:
        """Install *interceptor* on this signal; return a function removing it.

        Interceptors see every send of this signal (see ``tocsin._hooks``);
        the testing, mute, pause and tracing tools are built on them. While
        none is installed, sending costs nothing extra.
        """
        with self._lock:
            self._own_interceptors = (*self._own_interceptors, interceptor)
        self._refresh_interceptors()

        def remove() -> None:
            with self._lock:
                self._own_interceptors = tuple(i for i in self._own_interceptors if i is not interceptor)
            self._refresh_interceptors()

        return remove

    def _refresh_interceptors(self) -> None:
        with self._lock:
            self._interceptors = _hooks.global_interceptors() + self._own_interceptors
            table = self._table
            if table is not _STALE_TABLE:
                self._routes = _INTERCEPT_TABLE if self._interceptors else _published(table)

    def _send_slow(
        self,
        plan: Plan,
        sender: Any,
        signal: Any,
        named: dict[str, Any],
        *,
        robust: bool,
    ) -> list[tuple[Any, Any]]:
        self._check_send_arguments(sender, signal, named)
        interceptors = self._interceptors
        if interceptors:
            dispatch = _hooks.Dispatch(self, sender, named, robust=robust, is_async=False)
            return self._intercepted(interceptors, 0, dispatch)
        return self._deliver(sender, named, robust=robust)

    def _intercepted(
        self, interceptors: tuple[_hooks.Interceptor, ...], index: int, dispatch: _hooks.Dispatch
    ) -> list[tuple[Any, Any]]:
        if index == len(interceptors):
            return self._deliver(dispatch.sender, dispatch.named, robust=dispatch.robust)
        return interceptors[index].send(
            dispatch, lambda: self._intercepted(interceptors, index + 1, dispatch)
        )

    def _deliver(self, sender: Any, named: dict[str, Any], *, robust: bool) -> list[tuple[Any, Any]]:
        """Run the receivers for *sender*, bypassing interceptors."""
        plan = self._plan_for(sender)
        observer = _hooks.receiver_observer  # tracing, see _trace
        if not isinstance(plan, _SlowPlan):
            responses: list[tuple[Any, Any]] = []
            for deref, func in plan:
                receiver = deref()
                if receiver is None:
                    continue
                if func is not None:
                    receiver = MethodType(func, receiver)
                try:
                    if observer is None:
                        response = receiver(signal=self, sender=sender, **named)
                    else:
                        call = partial(receiver, signal=self, sender=sender, **named)
                        response = observer.call(self, receiver, call)
                except Exception as exc:
                    if not robust:
                        raise
                    self._log_failure(receiver, exc)
                    response = exc
                responses.append((receiver, response))
            return responses
        responses = []
        pending_async: list[tuple[Any, Record]] = []
        sequential = self.async_mode == "sequential"
        for record in plan.entries:
            # Async receivers from sync code (see _async): refused before the
            # first receiver runs, so a refusal leaves nothing half-sent.
            if record[R_ASYNC] and record[R_VIA] is None:
                _async.check_no_running_loop(self, _resolve(record))
                break
        for record in plan.entries:
            receiver = _resolve(record)
            if receiver is None:
                continue
            if record[R_ASYNC] and record[R_VIA] is None:
                if sequential:
                    responses += _async.run_async_receivers(
                        self, [(receiver, record)], sender, named, robust=robust
                    )
                else:
                    pending_async.append((receiver, record))
                continue
            try:
                if observer is None:
                    response = self._call_one(record, receiver, sender, named)
                else:
                    call = partial(self._call_one, record, receiver, sender, named)
                    response = observer.call(self, receiver, call)
            except Exception as exc:
                if not robust:
                    raise
                self._log_failure(receiver, exc)
                response = exc
            responses.append((receiver, response))
        if pending_async:
            responses += _async.run_async_receivers(self, pending_async, sender, named, robust=robust)
        return responses

    def _call_entry(
        self, receiver: Any, record: Record | None, sender: Any, named: dict[str, Any], *, robust: bool
    ) -> Any:
        """Call one non-async entry as send_robust or send would."""
        try:
            if record is None:
                call = partial(receiver, signal=self, sender=sender, **named)
            else:
                call = partial(self._call_one, record, receiver, sender, named)
            observer = _hooks.receiver_observer  # tracing, see _trace
            return call() if observer is None else observer.call(self, receiver, call)
        except Exception as exc:
            if not robust:
                raise
            self._log_failure(receiver, exc)
            return exc

    def _entries_for(self, sender: object) -> list[tuple[Any, Record | None]]:
        """Live ``(receiver, record)`` pairs for *sender*, in call order.

        The record is None for plain immediate sync receivers.
        """
        plan = self._plan_for(sender)
        if isinstance(plan, _SlowPlan):
            pairs: list[tuple[Any, Record | None]] = [(_resolve(r), r) for r in plan.entries]
        else:
            pairs = [(deref() if func is None else _bind(deref(), func), None) for deref, func in plan]
        return [pair for pair in pairs if pair[0] is not None]

    def asend(self, sender: Any = _MISSING, **named: Any) -> Coroutine[Any, Any, list[tuple[Any, Any]]]:
        """Send from async code; await sync and async receivers alike.

        ``await sig.asend(sender, **named)``. Sync receivers run in a worker
        thread, one after another, so they never block the event loop; async
        receivers run concurrently (or everything runs in order with
        ``async_mode="sequential"``). Works under asyncio and trio. The result
        lists sync receivers first, then async ones. The first exception
        propagates unchanged after the other receivers were stopped (see
        docs/async.md for failures and cancellation).

        This is a plain method returning the coroutine to await, one frame
        fewer per send; bad arguments raise when it is called, before any
        coroutine exists.

        Raises:
            SendArgumentsError: no sender was given, or ``signal=`` was
                passed among the named arguments.
        """
        return self._asend(sender, named, robust=False)

    def asend_robust(self, sender: Any = _MISSING, **named: Any) -> Coroutine[Any, Any, list[tuple[Any, Any]]]:
        """Like :meth:`asend`, but exceptions become responses and are logged.

        Never raises for a receiver; cancellation still propagates.
        """
        return self._asend(sender, named, robust=True)

    def _asend(
        self, sender: Any, named: dict[str, Any], *, robust: bool
    ) -> Coroutine[Any, Any, list[tuple[Any, Any]]]:
        self._check_send_arguments(sender, named.pop("signal", _MISSING), named)
        interceptors = self._interceptors
        if not interceptors:
            return _async.asend(self, sender, named, robust=robust)
        dispatch = _hooks.Dispatch(self, sender, named, robust=robust, is_async=True)

        async def proceed(index: int) -> list[tuple[Any, Any]]:
            if index == len(interceptors):
                return await _async.asend(self, dispatch.sender, dispatch.named, robust=dispatch.robust)
            return await interceptors[index].asend(dispatch, lambda: proceed(index + 1))

        return proceed(0)

    def _call_one(self, record: Record, receiver: Any, sender: Any, named: dict[str, Any]) -> Any:
        via = record[R_VIA]
        if via is not None:
            call = DeferredCall(receiver, self, sender, named)
            return Deferred(call, via(call))
        return receiver(signal=self, sender=sender, **named)


def _make_temporary() -> Callable[..., None]:
    def temporary(**kwargs: Any) -> None:
        del kwargs

    return temporary


def _connect_temporary() -> None:
    Signal().connect(_make_temporary())


_receivers.calibrate_temporaries(_connect_temporary)
