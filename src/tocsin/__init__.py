"""tocsin: Django's signal dispatcher for any Python program, done right.

The public API is this flat namespace plus the public submodules
``tocsin.exceptions`` and ``tocsin.testing``, and one module per
integration, each behind an extra: ``tocsin.sqlalchemy``, ``tocsin.asgi``,
``tocsin.wsgi``, ``tocsin.otel``. Everything in ``tocsin._*`` is private.
"""

from __future__ import annotations

from ._connections import Connection as Connection
from ._decorators import receiver as receiver
from ._delivery import Deferred as Deferred
from ._delivery import DeferredCall as DeferredCall
from ._delivery import DeliveryPolicy as DeliveryPolicy
from ._namespace import Namespace as Namespace
from ._namespace import all_signals as all_signals
from ._namespace import receiver_connected as receiver_connected
from ._namespace import receiver_disconnected as receiver_disconnected
from ._namespace import signal as signal
from ._observe import Observer as Observer
from ._observe import ReceiverEvent as ReceiverEvent
from ._observe import SendEvent as SendEvent
from ._observe import observe as observe
from ._pause import HeldSend as HeldSend
from ._signal import Signal as Signal
from ._trace import trace as trace
from ._typed import TypedSignal as TypedSignal
from ._typed import typed_signal as typed_signal

__all__ = [
    "Connection",
    "Deferred",
    "DeferredCall",
    "DeliveryPolicy",
    "HeldSend",
    "Namespace",
    "Observer",
    "ReceiverEvent",
    "SendEvent",
    "Signal",
    "TypedSignal",
    "all_signals",
    "observe",
    "receiver",
    "receiver_connected",
    "receiver_disconnected",
    "signal",
    "trace",
    "typed_signal",
]


def __getattr__(name: str) -> str:
    if name == "__version__":
        from importlib.metadata import version  # noqa: PLC0415 - only when asked

        return version("tocsin")
    msg = f"module 'tocsin' has no attribute {name!r}"
    raise AttributeError(msg)
