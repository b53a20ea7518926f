"""Connection records: the internal tuple layout and the public snapshot.

Internally a connection is a plain tuple (built in C, so ``connect()`` stays
cheap); the ``R_*`` constants name its fields. ``Signal.connections()``
turns them into :class:`Connection` objects for people and tools.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .delivery import DeliveryPolicy

__all__ = ["Connection", "sender_of"]

# Fields of the internal record tuple.
R_DEREF = 0  # () -> receiver or None (see _receivers)
R_FUNC = 1  # function of a weakly held bound method, else None
R_SENDER_KEY = 2  # key from _senders
R_SENDER_ANCHOR = 3  # weakref, strong sender or None
R_WEAK = 4  # bool: receiver held weakly
R_UID = 5  # dispatch_uid or None
R_PRIORITY = 6  # int, higher runs first
R_VIA = 7  # delivery policy or None
R_ASYNC = 8  # bool: receiver returns an awaitable
R_SENDER_KIND = 9  # "any", "weak", "value" or "strong" (see _senders)
R_SCOPE = 10  # the scope of a connected_to(local=True) connection, else None (see _plans)
# No sequence number: connection order is the order of Signal._records.

# Typed loosely on purpose: fields are read through the R_* constants, which
# mypy cannot map to per-position types of a fixed-length tuple type.
Record = tuple[Any, ...]


def sender_of(record: Record) -> Any:
    """The sender *record* was connected for: ``None`` for any sender.

    Also ``None`` once a weakly referenced sender has died (check
    ``record[R_SENDER_KIND] == "weak"`` to tell the two apart).
    """
    kind = record[R_SENDER_KIND]
    if kind == "any":
        return None
    if kind == "value":
        return record[R_SENDER_KEY][1]  # see senders.value_key
    anchor = record[R_SENDER_ANCHOR]
    return anchor() if kind == "weak" else anchor


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
