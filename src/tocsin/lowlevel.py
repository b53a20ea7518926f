# ruff: noqa: PLC0414 - explicit re-exports, as in __init__ (pyright --verifytypes)
"""Low-level extension points: interceptors, the hook tocsin's own tools are built on.

An interceptor sees every send of a signal (``Signal.add_interceptor``) or of
every signal (:func:`add_global_interceptor`) as a :class:`Dispatch`, and
decides whether and when it proceeds. ``tocsin.testing`` (capture),
``Signal.paused()`` and the tracing tools are interceptors. While none is
installed a signal's sends pay nothing for them.

Example::

    >>> import tocsin
    >>> from tocsin.lowlevel import Dispatch
    >>> class Logged:
    ...     def send(self, dispatch: Dispatch, proceed):
    ...         print("sending", dispatch.signal.name, dispatch.kwargs)
    ...         return proceed()
    ...     async def asend(self, dispatch: Dispatch, proceed):
    ...         return await proceed()
    >>> sig = tocsin.Signal(name="ping")
    >>> remove = sig.add_interceptor(Logged())
    >>> sig.send(None, n=1)
    sending ping {'n': 1}
    []
    >>> remove()
"""

from __future__ import annotations

from ._core.hooks import Dispatch as Dispatch
from ._core.hooks import Interceptor as Interceptor
from ._core.hooks import add_global_interceptor as add_global_interceptor
from ._core.hooks import live_signals as live_signals

__all__ = ["Dispatch", "Interceptor", "add_global_interceptor", "live_signals"]
