"""The routing half of ``Signal``: connection bookkeeping and table rebuilds.

Connections live in ``_records`` (a dict in connection order) under
``_lock``. A change marks the table stale; the next send rebuilds it under
the lock. Weak references: a receiver's death only flags the signal for a
sweep (a weakref callback may run inside any allocation, even one made while
this thread holds the lock, so it must never wait for it). A sender's death
drops its key from the published table at once, before its id can be
reused, and its connections (with the receivers held strongly for it) as
soon as the lock is free: at once if the callback can take the lock without
waiting, else by whoever holds it, as they release it (see
``make_death_callback``); the sender's anchor names its connections (see
``records.SenderRef``), so a death scans nothing else. Objects released while the lock is held are
handed back to the caller to drop after it is released, so a ``__del__``
using the signal cannot deadlock.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Callable, Hashable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Literal, cast

from tocsin.exceptions import InvalidArgumentError

from . import errors as _errors
from . import hooks as _hooks
from . import receivers as _receivers
from . import senders as _senders
from .delivery import check_policy as _check_policy
from .plans import (
    _ANY_KEY,
    _BY_VALUE,
    _DEFAULT,
    _MISSING,
    _NO_SENDER,
    _STALE_TABLE,
    Plan,
    _check_priority,
    _make_plan,
    _routes_for,
    _SlowPlan,
    _table_of,
)
from .records import (
    Record,
    SenderRef,
    anchor_of,
    attach,
    connection_key,
    connections_of,
    detach,
    dispatch_uid_of,
    hold_sender,
    make_record,
    receiver_alive,
    resolve,
    sender_by_value,
    sender_died,
    sender_key,
    sender_of,
)

if TYPE_CHECKING:
    from .delivery import DeliveryPolicy
    from .errors import ErrorHandler
    from .signal import Signal

__all__ = ["Routing"]

_DEAD: Any = object()  # the sender of a record whose weakly held sender died


def make_death_callback(signal: Routing) -> Callable[[weakref.ref[Any]], None]:
    """The weakref callback of *signal*'s weakly held receivers and senders.

    A receiver's death flags the signal for a sweep at its next use. A
    sender's death removes the sender's connections, and so releases the
    receivers held strongly for it, before the callback returns, if the
    lock can be taken without waiting. If it cannot (another thread, or
    this one further up the stack, holds it), the callback flags the signal
    and the holder sweeps as it releases the lock (``_sweep_released``):
    the flag is set before the second attempt to take the lock, so whoever
    holds it then releases it afterwards and sees the flag.
    """
    signal_ref = weakref.ref(signal)

    def died(ref: weakref.ref[Any]) -> None:
        sig = signal_ref()
        if sig is None:
            return
        if ref.__class__ is not SenderRef:  # a receiver
            sig._dead = True  # noqa: SLF001 - the signal's own callback
            sig._invalidate()  # noqa: SLF001
            return
        # A dead sender's id may be reused as soon as this returns: drop its
        # route now. Popping from a dict needs no lock.
        key = ref.key
        routes = sig._routes  # noqa: SLF001 - read once: a rebuild may replace it meanwhile
        routes.pop(key, None)
        _table_of(routes).pop(key, None)
        sig._invalidate()  # noqa: SLF001
        lock = sig._lock  # noqa: SLF001
        if lock.acquire(blocking=False):
            try:
                _dropped = sig._drop_sender(ref)  # noqa: SLF001 - freed after the release
            finally:
                lock.release()
        else:
            sig._dead = True  # noqa: SLF001
            if not lock.acquire(blocking=False):
                return  # the holder sweeps as it releases the lock
            try:
                _dropped = sig._sweep()  # noqa: SLF001
            finally:
                lock.release()
        del _dropped  # a receiver's __del__ may use the signal: the lock is free
        if sig._dead:  # noqa: SLF001 - something else died while this held the lock
            sig._sweep_released()  # noqa: SLF001

    return died


class Routing:
    """Connection records and routing tables; ``Signal`` builds on it."""

    _lock: threading.Lock
    _records: dict[Hashable, Record]
    _routes: dict[Hashable, Plan]
    _own_interceptors: tuple[_hooks.Interceptor, ...]
    _interceptors: tuple[_hooks.Interceptor, ...]
    _dead: bool
    _unscanned: bool
    _filter: _hooks.ConnectionFilter | None
    _publication_watcher: Callable[[], None] | None
    _changes: list[Any]
    _death_callback: Callable[[weakref.ref[Any]], None]
    async_mode: Literal["concurrent", "sequential"]

    def _connect_general(  # noqa: PLR0917 - connect()'s arguments, passed on
        self,
        receiver: Callable[..., Any],
        sender: object,
        weak: bool,  # noqa: FBT001 - connect()'s positional argument
        dispatch_uid: Hashable | None,
        priority: int,
        via: DeliveryPolicy | None,
        scope: object = None,
        on_error: ErrorHandler | None = None,
    ) -> Hashable:
        """``connect()`` beyond its inlined common cases; return the connection's key.

        With a *scope*, make a local connection (see ``connected_to``): its
        key holds the scope, so it is always new. ``_inline.calibrate``
        measures the reference count of a temporary receiver through this
        path (``Signal.connect`` -> here -> ``receivers.prepare``).

        Raises:
            ReceiverNotCallableError: *receiver* is not callable.
            ReceiverSignatureError: *receiver* does not accept ``**kwargs``.
            InvalidArgumentError: a *via*, *priority* or *on_error* of the wrong kind.
        """
        rkey, deref, func, is_weak, is_async = _receivers.prepare(receiver, weak, self._death_callback)
        held_handler = None if on_error is None else _errors.hold_handler(on_error, weak=is_weak)
        if via is not None:
            _check_policy(via, receiver, self)  # callable, and willing (see delivery.check_policy)
        if priority.__class__ is not int:
            priority = _check_priority(priority)
        if dispatch_uid is not None:
            rkey = ("uid", dispatch_uid)
        skey, anchor = hold_sender(sender, self._death_callback)
        key = connection_key(rkey, skey) if scope is None else (rkey, skey, scope)
        record = make_record(
            deref,
            func,
            anchor,
            priority=priority,
            dispatch_uid=dispatch_uid,
            via=via,
            is_async=is_async,
            scope=scope,
            on_error=held_handler,
        )
        # Everything was worked out before taking the lock; weak references
        # made for a duplicate are simply dropped.
        with self._locked():
            if self._dead:
                _swept = self._sweep()  # freed after the lock is released
            # No sequence number: connection order is the order of _records (see
            # _make_plan). One lookup both checks for a duplicate and inserts.
            if self._records.setdefault(key, record) is not record:
                return key
            if anchor.__class__ is SenderRef:
                attach(anchor, key)
            self._invalidate()
            if scope is None:
                self._unscanned = True  # local connections, made per request, skip the scan
            watcher = _hooks.connection_watcher
            if watcher is not None and watcher.watches(cast("Signal", self)):
                self._changes.append((True, record, receiver))
        if self._changes:
            self._report_changes()
        return key

    def _connection_key(
        self, receiver: Callable[..., Any] | None, sender: object, dispatch_uid: Hashable | None
    ) -> Hashable:
        """The key ``connect()`` stored the connection under (see ``disconnect()``)."""
        if dispatch_uid is not None:
            rkey: Hashable = ("uid", dispatch_uid)
        elif receiver is None:
            msg = "Signal.disconnect() needs the receiver or the dispatch_uid it was connected with."
            raise InvalidArgumentError(msg)
        else:
            rkey = _receivers.receiver_key(receiver)
        return connection_key(rkey, _senders.send_key(sender))

    def _remove(self, key: Hashable, *, collected: bool = False) -> Record | None:
        """Drop the connection *key* and return its record (None if absent). Lock held."""
        record = self._records.pop(key, None)
        if record is None:
            return None
        watcher = _hooks.connection_watcher
        if watcher is not None and watcher.watches(cast("Signal", self)):
            self._changes.append((False, record, collected))
        if record[2] is not None:  # a sender of its own (see records; disconnect() inlines this)
            anchor = anchor_of(record)
            if anchor.__class__ is SenderRef:
                detach(anchor, key)
        return record

    def _drop_sender(self, anchor: SenderRef) -> list[object]:
        """Drop the connections of the dead sender of *anchor*. Lock held.

        Only its own connections, named by its anchor: a sweep of every
        connection per dying sender would make many deaths quadratic. Returns
        the dropped records, to be released after the lock (see ``_sweep``).
        """
        dropped: list[object] = []
        for key in connections_of(anchor):
            record = self._records.get(key)
            if record is not None and anchor_of(record) is anchor:
                dropped.append(self._remove(key, collected=True))
        if dropped:
            self._invalidate()
        return dropped

    def _sweep_released(self) -> None:
        """Sweep what died while the lock was held; call right after releasing it.

        Every holder of the lock calls this when ``_dead`` is set after its
        release (see ``make_death_callback``). Never waits: if the lock is
        taken again meanwhile, its new holder will do it.
        """
        lock = self._lock
        while self._dead and lock.acquire(blocking=False):
            try:
                _dropped = self._sweep()
            finally:
                lock.release()
            del _dropped  # after the release: a __del__ may use the signal

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """``with self._lock``, then ``_sweep_released`` if something died meanwhile.

        For the places that take the lock off the hot path; ``connect()`` and
        ``disconnect()`` inline the same steps.
        """
        try:
            with self._lock:
                yield
        finally:
            if self._dead:
                self._sweep_released()

    def _sweep(self) -> list[object]:
        """Drop connections whose receiver or sender died. Lock held.

        Returns the dropped records. Callers keep them until the lock is
        released: a record may hold the last reference to a strong receiver
        or sender, whose ``__del__`` may use this signal (and so the lock).
        """
        self._dead = False
        dropped: list[object] = []
        for key, record in list(self._records.items()):
            if not receiver_alive(record) or sender_died(record):
                dropped.append(self._remove(key, collected=True))
                self._invalidate()
        return dropped

    def _connect_scoped(
        self,
        receiver: Callable[..., Any],
        sender: object,
        scope: object,
        *,
        weak: bool,
        dispatch_uid: Hashable | None,
        priority: int,
        via: DeliveryPolicy | None,
        on_error: ErrorHandler | None = None,
    ) -> Hashable:
        """Make a local connection for *scope* (see ``connected_to``) and return its key."""
        return self._connect_general(receiver, sender, weak, dispatch_uid, priority, via, scope, on_error)

    def _disconnect_key(self, key: Hashable) -> bool:
        """Remove the connection stored under *key* (see ``_connect_scoped``)."""
        with self._locked():
            removed = self._remove(key)  # kept until the lock is released (see disconnect)
            if removed is not None:
                self._invalidate()
        if self._changes:
            self._report_changes()
        return removed is not None

    def _is_connected(
        self, receiver: Callable[..., Any], sender: object, dispatch_uid: Hashable | None
    ) -> bool:
        """Whether ``connect()`` with these arguments would be a duplicate.

        Lets ``@receiver`` undo only the connections it made itself.
        """
        key = self._connection_key(receiver, sender, dispatch_uid)
        with self._locked():
            if self._dead:
                _swept = self._sweep()  # freed after the lock is released
            return key in self._records

    def _rebuild(self) -> dict[Hashable, Plan]:
        """Publish a routing table for the current connections."""
        with self._locked():
            routes = self._routes  # read once: a sender's death callback may replace it meanwhile
            if routes is not _STALE_TABLE:
                return _table_of(routes)
            if self._dead:
                _swept = self._sweep()  # freed after the lock is released
            # Holding every live sender until the table is published means a
            # sender cannot die between the check below and the publication;
            # when it dies later its callback drops its key from this table.
            alive: list[Any] = []
            any_records: list[tuple[int, Record]] = []
            by_sender: dict[Hashable, list[tuple[int, Record]]] = {}
            by_value = False
            skip = self._filter
            for position, record in enumerate(self._records.values()):
                if skip is not None and skip(record):
                    continue
                sender = sender_of(record, dead=_DEAD)
                if sender is None:
                    any_records.append((position, record))
                    continue
                if sender is _DEAD:
                    continue
                alive.append(sender)
                by_value = by_value or sender_by_value(record)
                by_sender.setdefault(sender_key(record), []).append((position, record))
            table: dict[Hashable, Plan] = {
                skey: _make_plan(any_records + records) for skey, records in by_sender.items()
            }
            any_plan = _make_plan(any_records)
            table[_senders.ANY_KEY] = any_plan
            table[_DEFAULT] = _BY_VALUE if by_value else any_plan
            table[id(_MISSING)] = _NO_SENDER
            self._publish(_routes_for(table, intercepted=bool(self._interceptors)))
            copies = None
            if self._unscanned:  # only after connect(): local connections made per request skip it
                self._unscanned = False
                copies = _receivers.module_copies(self._records.values())
        if copies:  # warned outside the lock: a warnings filter may raise or log
            _receivers.warn_module_copies(self, copies)
        # `alive` is released on return, after the lock: a sender freed there
        # may run a __del__ that uses this signal.
        return table

    def _invalidate(self) -> None:
        # A send reading _routes after this sees the stale table and rebuilds.
        self._publish(_STALE_TABLE)

    def _publish(self, routes: dict[Hashable, Plan]) -> None:
        """Make *routes* what ``send()`` reads; tell the publication watcher, if any."""
        self._routes = routes
        if self._publication_watcher is not None:  # see hooks.set_publication_watcher
            self._publication_watcher()

    def _set_filter(self, skip: _hooks.ConnectionFilter | None) -> None:
        """Install the connection filter (see ``hooks.set_connection_filter``)."""
        with self._locked():
            self._filter = skip
            self._invalidate()

    def _report_changes(self) -> None:
        """Hand the queued connection changes to the watcher. Call without the lock."""
        with self._locked():
            changes, self._changes = self._changes, []
        watcher = _hooks.connection_watcher
        if watcher is None or not changes:
            return
        reported: list[_hooks.ConnectionChange] = []
        for connected, record, extra in changes:
            sender = sender_of(record)
            uid = dispatch_uid_of(record)
            if connected:
                reported.append((True, extra, sender, uid, False))
            else:
                reported.append((False, resolve(record), sender, uid, extra))
        watcher.changed(cast("Signal", self), reported)

    def _plan_for(self, sender: object) -> Plan:
        routes = _table_of(self._routes)
        if routes is _STALE_TABLE:
            routes = self._rebuild()
            if self._changes:
                self._report_changes()
        plan = routes.get(id(sender))
        if plan is None:
            plan = routes[_DEFAULT]
            if plan is _BY_VALUE:
                value_key = _senders.value_key(sender)
                # The any-sender plan of this same table: a plan kept on self
                # would hold disconnected receivers alive until the next rebuild.
                any_plan = routes[_ANY_KEY]
                plan = routes.get(value_key, any_plan) if value_key is not None else any_plan
        if plan.__class__ is _SlowPlan and plan.scoped:
            return plan.in_context()  # connected_to(local=True): filtered per send
        return plan

    def _records_for(self, sender: object) -> Iterable[Record]:
        """The records a send from *sender* would call, in order."""
        plan = self._plan_for(sender)
        if isinstance(plan, _SlowPlan):
            return plan.entries
        records: tuple[Record, ...] = plan  # a fast plan is a tuple of records
        return records

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
            if self._changes:
                self._report_changes()
            routes = self._routes
        plan = routes.get(id(sender))
        if plan is None:
            plan = routes[_DEFAULT]
        return plan.__class__ is tuple and not plan

    def _entries_for(self, sender: object) -> list[tuple[Any, Record | None]]:
        """Live ``(receiver, record)`` pairs for *sender*, in call order.

        The record is None for plain immediate sync receivers.
        """
        plan = self._plan_for(sender)
        if isinstance(plan, _SlowPlan):
            pairs: list[tuple[Any, Record | None]] = [(resolve(r), r) for r in plan.entries]
        else:
            pairs = [(resolve(r), None) for r in plan]
        return [pair for pair in pairs if pair[0] is not None]
