"""tocsin: Django's signal dispatcher for any Python program, done right.

The public API is this flat namespace plus the public submodules
``tocsin.exceptions`` and ``tocsin.testing``, and one module per
integration, each behind an extra: ``tocsin.sqlalchemy``, ``tocsin.asgi``,
``tocsin.wsgi``, ``tocsin.otel``. Everything in ``tocsin._*`` is private.
"""

from __future__ import annotations

from ._core import speedups as _speedups
from ._core.decorators import receiver as receiver
from ._core.delivery import Deferred as Deferred
from ._core.delivery import DeferredCall as DeferredCall
from ._core.delivery import DeliveryPolicy as DeliveryPolicy
from ._core.errors import ErrorContext as ErrorContext
from ._core.errors import ErrorHandler as ErrorHandler
from ._core.pause import HeldSend as HeldSend
from ._core.pause import Paused as Paused
from ._core.records import Connection as Connection
from ._core.signal import Signal as Signal
from ._observability.observe import Observation as Observation
from ._observability.observe import Observer as Observer
from ._observability.observe import ReceiverEvent as ReceiverEvent
from ._observability.observe import SendEvent as SendEvent
from ._observability.observe import observe as observe
from ._observability.trace import Trace as Trace
from ._observability.trace import trace as trace
from ._tools.discover import autodiscover as autodiscover
from ._tools.namespace import Namespace as Namespace
from ._tools.namespace import all_signals as all_signals
from ._tools.namespace import receiver_connected as receiver_connected
from ._tools.namespace import receiver_disconnected as receiver_disconnected
from ._tools.namespace import signal as signal
from ._tools.typed import TypedSignal as TypedSignal
from ._tools.typed import typed_signal as typed_signal

#: Whether ``Signal.send``/``send_robust`` run compiled (the optional C
#: accelerator, see docs/benchmarks.md); False in pure Python, for example
#: with ``TOCSIN_NO_EXTENSIONS=1``. Behaviour is the same either way.
__speedups__: bool = _speedups.ACTIVE
del _speedups

__all__ = [
    "Connection",
    "Deferred",
    "DeferredCall",
    "DeliveryPolicy",
    "ErrorContext",
    "ErrorHandler",
    "HeldSend",
    "Namespace",
    "Observation",
    "Observer",
    "Paused",
    "ReceiverEvent",
    "SendEvent",
    "Signal",
    "Trace",
    "TypedSignal",
    "all_signals",
    "autodiscover",
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
