"""tocsin: Django's signal dispatcher for any Python program, done right.

The public API is this flat namespace plus the public submodules
``tocsin.exceptions`` and ``tocsin.testing``. Everything in ``tocsin._*``
is private.
"""

from __future__ import annotations

from ._connections import Connection as Connection
from ._decorators import receiver as receiver
from ._delivery import Deferred as Deferred
from ._delivery import DeferredCall as DeferredCall
from ._delivery import DeliveryPolicy as DeliveryPolicy
from ._signal import Signal as Signal

__all__ = [
    "Connection",
    "Deferred",
    "DeferredCall",
    "DeliveryPolicy",
    "Signal",
    "receiver",
]


def __getattr__(name: str) -> str:
    if name == "__version__":
        from importlib.metadata import version  # noqa: PLC0415 - only when asked

        return version("tocsin")
    msg = f"module 'tocsin' has no attribute {name!r}"
    raise AttributeError(msg)
