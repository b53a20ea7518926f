"""Connection records: how a connection is stored, built and read.

This module owns the record layout and the connection keys: every other
module builds records with :func:`make_record` and reads them with the
functions below, never by position. The exceptions, for speed, say so where
they occur: the inlined paths of ``Signal.connect()`` build the all-defaults
records and, with ``disconnect()``'s, the keys :func:`connection_key` would
make; the fast send loops unpack a record as ``deref, func, _``.
``tests/test_connections.py`` checks that they agree.

A record is a 3-tuple ``(deref, func, link)``, short because there is one
per connection and the routing tables share them (a plan is a tuple of
records, see ``plans``):

* ``deref`` and ``func``: how to get the receiver (see ``receivers``):
  ``deref()`` returns it (or ``None`` once a weakly held receiver died), and
  a weakly held bound method is ``MethodType(func, deref())``.
* ``link``: the sender and the rarely used options, in the cheapest form:
  ``None`` (any sender, all defaults), a sender *anchor* (one sender, all
  defaults), or an options tuple ``(anchor, priority, dispatch_uid, via,
  is_async, scope, on_error)`` for anything else (``on_error``: the error
  handler as ``errors.hold_handler`` stores it, or ``None``).

A sender *anchor* is a :class:`SenderRef`, the weak reference to a sender
matched by identity, shared by the signal's connections for that sender
(:func:`find_anchor`) and carrying the sender's routing key for the death
callback; or a :class:`HeldSender`, one per connection, for the rare
senders held strongly (see ``senders``).

Connection keys (the keys of ``Signal._records``) are built by
:func:`connection_key` and read back by :func:`receiver_key_of`.
``Signal.connections()`` turns records into :class:`Connection` snapshots.
"""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Callable, Hashable
from types import MethodType
from typing import TYPE_CHECKING, Any, Final

from . import senders as _senders

if TYPE_CHECKING:
    from .delivery import DeliveryPolicy

__all__ = ["Connection", "sender_of"]

# ``(deref, func, link)``: typed loosely, as the send loops unpack it.
Record = tuple[Any, Any, Any]

_ANY_KEY: Final = _senders.ANY_KEY
_weakref: Final = weakref.ref
_getweakrefs: Final = weakref.getweakrefs
_getweakrefcount: Final = weakref.getweakrefcount
_tuple: Final = tuple
_DEAD: Final = object()  # see snapshot()
_TWO_TO_64: Final = 1 << 64  # see connection_key()


class SenderRef(weakref.ref):  # type: ignore[type-arg] # referent type varies
    """The weak reference to a sender matched by identity, shared by its connections.

    ``key`` is the sender's routing key (its ``id()``), kept here because the
    death callback must drop it from the routing table after the sender is
    gone. ``conns`` names the connections holding it, by their keys in
    ``Signal._records``: ``None``, one key, or a list of keys when the sender
    has several (keys are ints or tuples, never lists). The death callback
    drops exactly those, with no scan of the other connections; it is kept
    under the signal's lock (see :func:`attach` and :func:`detach`). Each
    record holding the reference keeps it alive: it goes with the last one.
    """

    __slots__ = ("conns", "key")
    key: int
    conns: Hashable | list[Hashable] | None


def attach(anchor: SenderRef, key: Hashable) -> None:
    """Note that the connection *key* holds *anchor*. Signal lock held."""
    conns = anchor.conns
    if conns is None:
        anchor.conns = key
    elif conns.__class__ is list:
        conns.append(key)
    else:
        anchor.conns = [conns, key]  # type: ignore[list-item] # one key, checked above


def detach(anchor: SenderRef, key: Hashable) -> None:
    """Note that the connection *key* no longer holds *anchor*. Signal lock held."""
    conns = anchor.conns
    if conns.__class__ is list:
        keys: list[Hashable] = conns
        if key in keys:
            keys.remove(key)
        if len(keys) == 1:
            anchor.conns = keys[0]
    elif conns == key:
        anchor.conns = None


def connections_of(anchor: SenderRef) -> list[Hashable]:
    """The keys of the connections holding *anchor* (a copy). Signal lock held."""
    conns = anchor.conns
    if conns is None:
        return []
    if conns.__class__ is list:
        return list(conns)
    return [conns]  # type: ignore[list-item] # one key, checked above


class HeldSender:
    """The anchor of a sender held strongly: keyed by value, or by identity (see ``senders``)."""

    __slots__ = ("by_value", "key", "sender")

    def __init__(self, key: Hashable, sender: object, *, by_value: bool) -> None:
        self.key = key
        self.sender = sender
        self.by_value = by_value


Anchor = SenderRef | HeldSender | None


def find_anchor(sender: object, callback: Callable[[Any], None]) -> SenderRef | None:
    """The anchor of *sender* that a connection of this signal holds, if any.

    Found among the sender's weak references, by its type and the signal's
    own death *callback*, rather than in a table of the signal's: a table
    would cost an entry per sender and bookkeeping at every disconnect. The
    newest references come first, so the usual search is short.
    """
    for ref in _getweakrefs(sender):
        if ref.__class__ is SenderRef and ref.__callback__ is callback:
            try:
                ref.key  # noqa: B018 - only checks that it is set
            except AttributeError:
                # Made by a connect() in another thread that has not set its
                # key yet: this connection takes an anchor of its own.
                continue
            return ref
    return None


def hold_sender(sender: object, callback: Callable[[Any], None]) -> tuple[Hashable, Anchor]:
    """Return ``(routing key, anchor)`` for a connection made with *sender*.

    A sender matched by identity has one :class:`SenderRef` per signal,
    shared by its connections (see :func:`find_anchor`); *callback* is the
    signal's death callback.
    """
    if sender is None:
        return _ANY_KEY, None
    skey, kind = _senders.classify(sender)
    if kind == "weak":
        anchor = find_anchor(sender, callback) if _getweakrefcount(sender) else None
        if anchor is None:
            anchor = SenderRef(sender, callback)
            anchor.conns = None
            anchor.key = skey  # type: ignore[assignment] # an id() for kind "weak"; set last (see find_anchor)
        return skey, anchor
    return skey, HeldSender(skey, sender, by_value=kind == "value")


# ---- building ----------------------------------------------------------------


def make_record(
    deref: Callable[[], Any],
    func: Callable[..., Any] | None,
    anchor: Anchor,
    *,
    priority: int = 0,
    dispatch_uid: Hashable | None = None,
    via: DeliveryPolicy | None = None,
    is_async: bool = False,
    scope: object = None,
    on_error: object = None,
) -> Record:
    """Build the record of one connection (see the module docstring)."""
    if (
        priority == 0
        and dispatch_uid is None
        and via is None
        and not is_async
        and scope is None
        and on_error is None
    ):
        return (deref, func, anchor)
    return (deref, func, (anchor, priority, dispatch_uid, via, is_async, scope, on_error))


def connection_key(rkey: Hashable, skey: Hashable) -> Hashable:
    """The key of a connection in ``Signal._records``.

    For connections to any sender, the most common, the receiver key alone
    when it is an ``id()`` (no tuple to allocate), else ``(receiver key,)``.
    For a receiver and a sender both keyed by ``id()``, one int holding both
    (``rkey << 64 | skey``: 40 bytes, where a tuple and its second int take
    88), else ``(receiver key, sender key)``. Ids are below ``2 ** 64``, so
    ints below it are any-sender keys and ints above it are not; ints,
    1-tuples and 2-tuples never compare equal, so keys stay distinct. Local
    connections add a third item (see ``Routing._connect_general``).
    """
    if skey == _ANY_KEY:
        return rkey if rkey.__class__ is int else (rkey,)
    if rkey.__class__ is int and skey.__class__ is int:
        return rkey << 64 | skey
    return (rkey, skey)


def receiver_key_of(key: Hashable) -> Hashable:
    """The receiver key (or ``("uid", dispatch_uid)``) a connection key was built from."""
    if key.__class__ is int:
        return key if key < _TWO_TO_64 else key >> 64
    rkey: Hashable = key[0]  # type: ignore[index] # a tuple, see connection_key
    return rkey


# ---- reading -----------------------------------------------------------------


def _options(record: Record) -> tuple[Any, ...] | None:
    link = record[2]
    return link if link.__class__ is _tuple else None


def anchor_of(record: Record) -> Anchor:
    """The sender anchor: ``None`` for any sender."""
    link: Anchor | tuple[Any, ...] = record[2]
    return link[0] if link.__class__ is _tuple else link  # type: ignore[return-value]


def sender_key(record: Record) -> Hashable:
    """The routing key of the record's sender (see ``senders``)."""
    anchor = anchor_of(record)
    return _ANY_KEY if anchor is None else anchor.key


def sender_of(record: Record, dead: object = None) -> object:
    """The sender the connection was made for (``None``: any); *dead* if it died."""
    anchor = anchor_of(record)
    if anchor is None:
        return None
    if anchor.__class__ is SenderRef:
        sender = anchor()
        return dead if sender is None else sender
    return anchor.sender  # type: ignore[union-attr] # a HeldSender


def sender_died(record: Record) -> bool:
    """Whether the record's sender was weakly held and is gone."""
    anchor = anchor_of(record)
    return anchor.__class__ is SenderRef and anchor() is None


def sender_by_value(record: Record) -> bool:
    """Whether the record's sender is matched by value (see ``senders``)."""
    anchor = anchor_of(record)
    return anchor.__class__ is HeldSender and anchor.by_value


def resolve(record: Record) -> Any:
    """The receiver (a new bound method for weakly held methods), or ``None`` if it died."""
    obj = record[0]()
    func = record[1]
    if obj is None or func is None:
        return obj
    return MethodType(func, obj)


def receiver_alive(record: Record) -> bool:
    """Whether the receiver (or the instance of a weak bound method) is still alive."""
    return record[0]() is not None


def receiver_function(record: Record) -> object:
    """The function a receiver runs: *func* of a weak bound method, else the live receiver (or ``None``)."""
    func = record[1]
    return record[0]() if func is None else func


def is_weak(record: Record) -> bool:
    """Whether the receiver is held weakly (its ``deref`` is a weak reference)."""
    return record[0].__class__ is _weakref


def priority_of(record: Record) -> int:
    options = _options(record)
    return 0 if options is None else options[1]


def dispatch_uid_of(record: Record) -> Hashable | None:
    options = _options(record)
    return None if options is None else options[2]


def via_of(record: Record) -> DeliveryPolicy | None:
    """The delivery policy of the connection, or ``None`` for immediate delivery."""
    options = _options(record)
    return None if options is None else options[3]


def is_async(record: Record) -> bool:
    """Whether the receiver returns an awaitable."""
    options = _options(record)
    return options is not None and options[4]


def scope_of(record: Record) -> object:
    """The scope of a ``connected_to(local=True)`` connection, else ``None``."""
    options = _options(record)
    return None if options is None else options[5]


def on_error_of(record: Record) -> object:
    """The stored error handler of the connection (see ``errors.handler_of``), or ``None``."""
    options = _options(record)
    return None if options is None else options[6]


def is_plain(record: Record) -> bool:
    """Whether ``send()``'s fast loop can call it: immediate, sync, not local, no error handler."""
    options = _options(record)
    return options is None or (
        options[3] is None and not options[4] and options[5] is None and options[6] is None
    )


# ---- the public snapshot --------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Connection:
    """A snapshot of one live connection, as listed by ``Signal.connections()``.

    Attributes:
        receiver: the receiver (a new bound method for weakly held methods).
        sender: the sender filter; ``None`` means any sender.
        weak: whether the signal holds the receiver weakly.
        dispatch_uid: the ``dispatch_uid`` given to ``connect()``, or ``None``.
        priority: higher priorities run first.
        via: the delivery policy, or ``None`` for immediate delivery.
        is_async: whether the receiver returns an awaitable.
        module: module where the receiver is defined.
        qualname: qualified name of the receiver (of its class for objects).
        where: ``"file:line"`` of the definition, or ``None`` if unknown.
        local: made by ``connected_to(local=True)``: only sends from the
            context of that ``with`` block reach it.
        on_error: the ``on_error=`` handler, or ``None`` (also once a
            weakly held bound-method handler's instance was collected).
    """

    receiver: Callable[..., Any]
    sender: Any
    weak: bool
    dispatch_uid: Hashable | None
    priority: int
    via: DeliveryPolicy | None
    is_async: bool
    module: str
    qualname: str
    where: str | None
    local: bool = False
    on_error: Callable[..., Any] | None = None


def snapshot(record: Record, describe: Callable[[object], tuple[str, str, str | None]]) -> Connection | None:
    """The :class:`Connection` for *record*, or ``None`` if its receiver or sender died."""
    receiver = resolve(record)
    sender = sender_of(record, dead=_DEAD)
    if receiver is None or sender is _DEAD:
        return None
    module, qualname, where = describe(receiver)
    return Connection(
        receiver=receiver,
        sender=sender,
        weak=is_weak(record),
        dispatch_uid=dispatch_uid_of(record),
        priority=priority_of(record),
        via=via_of(record),
        is_async=is_async(record),
        module=module,
        qualname=qualname,
        where=where,
        local=scope_of(record) is not None,
        on_error=_handler_of(on_error_of(record)),
    )


def _handler_of(held: object) -> Callable[..., Any] | None:
    # errors.handler_of, without importing errors (which imports receivers,
    # which imports this module).
    if isinstance(held, weakref.WeakMethod):
        handler: Callable[..., Any] | None = held()
        return handler
    return held  # type: ignore[return-value] # a callable or None
