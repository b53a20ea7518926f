"""How a sender is matched to the connections made for it.

Django and PyDispatcher key senders by ``id()``, so a receiver connected to a
dead sender fires for whatever new object reuses its address; Django's cache
then looks senders up by ``__eq__``, so two equal objects swap receivers.
tocsin uses one rule for connecting and for sending:

* ``None`` means any sender.
* A sender that supports weak references is matched by identity. The signal
  holds it weakly; its death removes its connections before its id can be
  reused (weakref callbacks run before the memory is freed).
* A hashable sender without weak reference support (``str``, ``int``,
  ``tuple``, ``frozenset``...) is matched by type and equality: ``1``,
  ``1.0`` and ``True`` are three different senders.
* Any other sender (``list``, ``dict``, slotted instances) is matched by
  identity and held strongly while it has connections.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Literal

__all__ = ["ANY_KEY", "SenderKind", "classify", "send_key", "value_key"]

#: Key of connections made with ``sender=None``.
ANY_KEY: Hashable = id(None)

SenderKind = Literal["any", "weak", "value", "strong"]


def _weakrefable(sender: object) -> bool:
    return type(sender).__weakrefoffset__ != 0


def value_key(sender: object) -> Hashable | None:
    """Return the by-value key of *sender*, or ``None`` if it is keyed by id."""
    if _weakrefable(sender):
        return None
    try:
        hash(sender)
    except TypeError:
        return None
    return (type(sender), sender)


def classify(sender: object) -> tuple[Hashable, SenderKind]:
    """Return the key of *sender* and how the signal must hold it."""
    if sender is None:
        return ANY_KEY, "any"
    if _weakrefable(sender):
        return id(sender), "weak"
    key = value_key(sender)
    if key is None:
        return id(sender), "strong"
    return key, "value"


def send_key(sender: object) -> Hashable:
    """Return the key under which *sender*'s connections are stored."""
    return classify(sender)[0]
