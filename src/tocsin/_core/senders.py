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
  ``1.0`` and ``True`` are three different senders, and so are ``(1,)``
  and ``(True,)`` (types count inside tuples and frozensets too).
* Any other sender (``list``, ``dict``, slotted instances, objects whose
  ``__hash__`` fails) is matched by identity and held strongly while it has
  connections.
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


def _types_inside(value: object) -> object:
    """What equality ignores in a tuple or frozenset: the types of its items."""
    if isinstance(value, tuple):
        return tuple([_types_inside(item) for item in value])
    if isinstance(value, frozenset):
        # Pairs, not a set of types: {1, 2.0} and {1.0, 2} hold the same types.
        return frozenset([(_types_inside(item), item) for item in value])
    return type(value)


def value_key(sender: object) -> Hashable | None:
    """Return the by-value key of *sender*, or ``None`` if it is keyed by id.

    The sender itself is always item 1 of the key.
    """
    if _weakrefable(sender):
        return None
    try:
        hash(sender)
        if isinstance(sender, (tuple, frozenset)):
            return (type(sender), sender, _types_inside(sender))
    # Unhashable (TypeError), or a __hash__ that fails some other way (or a
    # structure too deep to hash): such a sender is matched by identity, and
    # sending from it must never raise.
    except Exception:  # noqa: BLE001
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
