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
``make_death_callback``). Objects released while the lock is held are
handed back to the caller to drop after it is released, so a ``__del__``
using the signal cannot deadlock.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Callable, Hashable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Literal, cast

from . import hooks as _hooks
from . import receivers as _receivers
from . import senders as _senders
from .delivery import check_policy as _check_policy
from .plans import (
    _ANY_KEY,
    _BY_VALUE,
    _DEFAULT,
    _INTERCEPT_TABLE,
    _MISSING,
    _NO_SENDER,
    _STALE_TABLE,
    Plan,
    _bind,
    _check_priority,
    _make_plan,
    _published,
    _resolve,
    _SlowPlan,
    connection_key,
)
from .records import (
    R_DEREF,
    R_SENDER_ANCHOR,
    R_SENDER_KEY,
    R_SENDER_KIND,
    R_UID,
    Record,
    sender_of,
)

if TYPE_CHECKING:
    from .delivery import DeliveryPolicy
    from .signal import Signal

__all__ = ["Routing"]


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
        key = sig._anchor_keys.get(id(ref))  # noqa: SLF001 - the signal's own callback
        if key is None:  # a receiver
            sig._dead = True  # noqa: SLF001
            sig._invalidate()  # noqa: SLF001
            return
        # A dead sender's id may be reused as soon as this returns: drop its
        # route now. Popping from a dict needs no lock.
        sig._table.pop(key, None)  # noqa: SLF001
        sig._routes.pop(key, None)  # noqa: SLF001
        sig._invalidate()  # noqa: SLF001
        lock = sig._lock  # noqa: SLF001
        if lock.acquire(blocking=False):
            try:
                _dropped = sig._drop_sender(key, ref)  # noqa: SLF001 - freed after the release
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
    _table: dict[Hashable, Plan]
    _routes: dict[Hashable, Plan]
    _own_interceptors: tuple[_hooks.Interceptor, ...]
    _interceptors: tuple[_hooks.Interceptor, ...]
    _anchor_keys: dict[int, Hashable]
    _sender_anchors: dict[Hashable, tuple[Any, dict[Hashable, None]]]  # key -> (anchor, its connections)
    _dead: bool
    _unscanned: bool
    _filter: _hooks.ConnectionFilter | None
    _publication_watcher: Callable[[], None] | None
    _changes: list[Any]
    _death_callback: Callable[[weakref.ref[Any]], None]
    async_mode: Literal["concurrent", "sequential"]

    def _hold_sender(self, skey: Hashable, kind: str, sender: object, key: Hashable) -> Any:
        """Return the anchor of *sender*, shared by all its connections; *key* is a new one."""
        if kind in ("any", "value"):
            return None
        held = self._sender_anchors.get(skey)
        if held is not None:
            held[1][key] = None
            return held[0]
        anchor = weakref.ref(sender, self._death_callback) if kind == "weak" else sender
        self._sender_anchors[skey] = (anchor, {key: None})
        if kind == "weak":
            self._anchor_keys[id(anchor)] = skey
        return anchor

    def _release_sender(self, skey: Hashable, key: Hashable) -> None:
        anchor, keys = self._sender_anchors[skey]
        keys.pop(key, None)
        if not keys:
            del self._sender_anchors[skey]
            self._anchor_keys.pop(id(anchor), None)

    def _remove(self, key: Hashable, *, collected: bool = False) -> Record | None:
        """Drop the connection *key* and return its record (None if absent). Lock held."""
        record = self._records.pop(key, None)
        if record is None:
            return None
        watcher = _hooks.connection_watcher
        if watcher is not None and watcher.watches(cast("Signal", self)):
            self._changes.append((False, record, collected))
        if record[R_SENDER_KIND] in ("weak", "strong"):
            self._release_sender(record[R_SENDER_KEY], key)
        return record

    def _drop_sender(self, skey: Hashable, anchor: weakref.ref[Any]) -> list[object]:
        """Drop the connections of the dead sender *skey*. Lock held.

        Only its own connections, found through its anchor: a sweep of every
        connection per dying sender would make many deaths quadratic. Returns
        the dropped records, to be released after the lock (see ``_sweep``).
        """
        held = self._sender_anchors.get(skey)
        if held is None or held[0] is not anchor:  # swept already
            return []
        dropped: list[object] = [self._remove(key, collected=True) for key in list(held[1])]
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
            anchor = record[R_SENDER_ANCHOR]
            if record[R_DEREF]() is None or (record[R_SENDER_KIND] == "weak" and anchor() is None):
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
    ) -> Hashable:
        """Make a local connection for *scope* (see ``connected_to``) and return its key.

        What ``connect()`` does, without its inlined fast path: local
        connections are rare, and each one is new (its key holds *scope*).
        """
        rkey, deref, func, is_weak, is_async = _receivers.prepare(receiver, weak, self._death_callback)
        if via is not None:
            _check_policy(via, receiver, self)
        priority = _check_priority(priority)
        if dispatch_uid is not None:
            rkey = ("uid", dispatch_uid)
        skey, kind = _senders.classify(sender)
        key = (rkey, skey, scope)  # never equal to a connect() key: an int, 1- or 2-tuple
        with self._locked():
            if self._dead:
                _swept = self._sweep()  # freed after the lock is released
            anchor = self._hold_sender(skey, kind, sender, key)
            record = (deref, func, skey, anchor, is_weak, dispatch_uid, priority, via, is_async, kind)
            self._records[key] = (*record, scope)
            self._invalidate()
            watcher = _hooks.connection_watcher
            if watcher is not None and watcher.watches(cast("Signal", self)):
                self._changes.append((True, self._records[key], receiver))
        if self._changes:
            self._report_changes()
        return key

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
        rkey = ("uid", dispatch_uid) if dispatch_uid is not None else _receivers.receiver_key(receiver)
        with self._locked():
            if self._dead:
                _swept = self._sweep()  # freed after the lock is released
            return connection_key(rkey, _senders.send_key(sender)) in self._records

    def _rebuild(self) -> dict[Hashable, Plan]:
        """Publish a routing table for the current connections."""
        with self._locked():
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
            skip = self._filter
            for position, record in enumerate(self._records.values()):
                if skip is not None and skip(record):
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
            self._publish(_INTERCEPT_TABLE if self._interceptors else _published(table))
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
        # Order matters for lock-free readers: a send reading _routes after
        # this sees the stale table and rebuilds.
        self._table = _STALE_TABLE
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
            uid = record[R_UID]
            if connected:
                reported.append((True, extra, sender, uid, False))
            else:
                reported.append((False, _resolve(record), sender, uid, extra))
        watcher.changed(cast("Signal", self), reported)

    def _plan_for(self, sender: object) -> Plan:
        routes = self._table
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
        # Fast plans keep only (deref, func); map back to their records by the
        # identity of deref, which each record owns. Never by value: a weakref
        # hashes its referent, which may be unhashable or already dead.
        by_deref = {id(r[R_DEREF]): r for r in list(self._records.values())}
        return [by_deref[id(deref)] for deref, _ in plan if id(deref) in by_deref]

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
            pairs: list[tuple[Any, Record | None]] = [(_resolve(r), r) for r in plan.entries]
        else:
            pairs = [(deref() if func is None else _bind(deref(), func), None) for deref, func in plan]
        return [pair for pair in pairs if pair[0] is not None]
