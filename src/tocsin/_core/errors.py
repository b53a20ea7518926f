"""Per-receiver error handlers: ``connect(..., on_error=handler)``.

A connection may carry a handler, called as ``handler(exc, context)`` when
that receiver raises an ``Exception`` during a send (``context`` is an
:class:`ErrorContext`). The handler observes the failure; it never changes
the outcome of the send:

* ``send``/``asend``: the receiver's exception still propagates, unchanged,
  after the handler returned.
* ``send_robust``/``asend_robust``: the exception is still logged and
  returned as the receiver's response.
* A handler that raises an ``Exception`` itself: that error is logged on
  logger ``tocsin`` at ERROR with its traceback (``Error calling on_error
  handler <name> for <receiver> in Signal.<method>() (<error>)``) and the
  send goes on as if the handler had returned. ``BaseException`` subclasses
  (``KeyboardInterrupt``) propagate.
* ``BaseException`` subclasses raised by the receiver (cancellation,
  ``KeyboardInterrupt``) do not call the handler.

Connections with a handler are never in a plain plan (see
``records.is_plain``), so ``send()``'s fast loop never looks for one: they
take the slow path, which is where the handler is called.

How the handler is held: strongly, as the connection's options; except a
bound method given for a weakly held receiver, held through a
``weakref.WeakMethod`` so that ``on_error=self.failed`` does not keep
``self`` (often the receiver's own instance) alive. Once such an instance is
gone its handler is no longer called. A bound method whose instance only the
method references (``on_error=Reporter().failed``) would be gone at once,
never called: it is held strongly, as ``connect()`` holds such receivers
(``inline.instance_vanishes``).
"""

from __future__ import annotations

import dataclasses
import logging
import types
import weakref
from collections.abc import Callable, Mapping
from typing import Any, Protocol, cast

from tocsin.exceptions import InvalidArgumentError

from . import inline as _inline
from . import receivers as _receivers

__all__ = ["ErrorContext", "ErrorHandler", "call_handler", "handler_of", "hold_handler"]

logger = logging.getLogger("tocsin")

_WeakMethod = weakref.WeakMethod


@dataclasses.dataclass(frozen=True)
class ErrorContext:
    """What an ``on_error`` handler is told about the failed receiver call.

    The handler is called as ``handler(exc, context)``, in the thread (or
    task) where the receiver ran, before the send goes on.

    Attributes:
        signal: the signal sent.
        sender: the sender of the send.
        receiver: the receiver that raised.
        kwargs: the named arguments of the send (a copy).
        method: the sending method called: ``"send"``, ``"send_robust"``,
            ``"asend"`` or ``"asend_robust"``.
        robust: whether the send collects the exception (``*_robust``)
            rather than letting it propagate once the handler returns.

    .. versionadded:: 0.1
    """

    signal: Any
    sender: Any
    receiver: Callable[..., Any]
    kwargs: Mapping[str, Any]
    method: str
    robust: bool


class ErrorHandler(Protocol):
    """The type of ``on_error=``: any callable taking ``(exc, context)``.

    ``exc`` is the ``Exception`` the receiver raised; ``context`` an
    :class:`ErrorContext`. The return value is ignored.

    .. versionadded:: 0.1
    """

    # A callback protocol rather than a Callable alias: an alias cannot carry
    # this docstring (see delivery.DeliveryPolicy).
    def __call__(self, exc: Exception, context: ErrorContext, /) -> object: ...


def hold_handler(on_error: Any, *, weak: bool) -> object:
    """Return what a record stores for *on_error* (see the module docstring).

    Raises:
        InvalidArgumentError: *on_error* is not callable.
    """
    if not callable(on_error):
        msg = (
            "on_error= must be a callable taking (exception, context), called when the receiver "
            f"raises; got {on_error!r}. Pass a function: def on_error(exc, context): ..."
        )
        raise InvalidArgumentError(msg)
    # A method of an instance nothing else references (on_error=Reporter().failed)
    # would die at once and never be called: held strongly, as inline receivers are.
    if weak and type(on_error) is types.MethodType and not _inline.instance_vanishes(on_error):
        try:
            return _WeakMethod(on_error)
        except TypeError:  # an instance without __weakref__: held strongly
            return on_error
    return on_error


def handler_of(held: object) -> Callable[..., Any] | None:
    """The handler stored as *held* (``None`` once a weakly held bound method's instance died)."""
    if isinstance(held, _WeakMethod):
        handler: Callable[..., Any] | None = held()
        return handler
    return cast("Callable[..., Any]", held)  # checked by hold_handler


def call_handler(  # noqa: PLR0917 - the failed call's whole context
    held: object,
    exc: Exception,
    signal: object,
    receiver: Callable[..., Any],
    sender: object,
    named: Mapping[str, Any],
    method: str,
    *,
    robust: bool,
) -> None:
    """Call the handler *held* for *exc*, raised by *receiver*; never raises an ``Exception``.

    *method* is the robust method's name (``send_robust``, ``asend_robust``),
    as the failure logs use; the context names the method actually called.
    """
    handler = handler_of(held)
    if handler is None:
        return
    called = method if robust else method.removesuffix("_robust")
    context = ErrorContext(signal, sender, receiver, dict(named), called, robust)
    try:
        handler(exc, context)
    except Exception as handler_exc:
        logger.error(  # noqa: TRY400 - exc_info given explicitly, as in Dispatching._log_failure
            "Error calling on_error handler %s for %s in Signal.%s() (%s)",
            _receivers.log_name(handler),
            _receivers.log_name(receiver),
            called,
            _receivers.error_text(handler_exc),
            exc_info=handler_exc,
            extra={"signal": signal, "receiver": receiver},
        )
