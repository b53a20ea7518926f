"""The ``via=`` extension point: how and when a connected receiver runs.

A *delivery policy* is any callable that accepts one zero-argument callable
and arranges for it to be called, now or later, here or elsewhere::

    signal.connect(index_document, via=executor.submit)      # a thread pool
    signal.connect(send_mail, via=pending.append)            # a queue you drain
    signal.connect(notify, sender=Order, via=on_commit)      # tocsin.sqlalchemy

On ``send()`` the signal does not call such a receiver. It builds a
:class:`DeferredCall` holding the receiver and the send's arguments and
passes it to the policy. The policy's return value (``None``, a future, a
task id...) is wrapped in a :class:`Deferred`, and that is the receiver's
response in the list ``send()`` returns.

Contract for policies:

* The policy runs in the sending thread, during ``send()``, in the
  receiver's turn. If it raises, the exception is treated like one raised by
  a receiver: ``send()`` propagates it, ``send_robust()`` returns and logs it.
* The :class:`DeferredCall` holds the receiver strongly until it is dropped,
  even if the receiver was connected weakly: a weak receiver alive at send
  time runs when the policy calls it.
* What happens to exceptions raised when the call finally runs is the
  policy's business (``concurrent.futures`` keeps them in the future).
* Observers (``tocsin.observe``, ``tocsin.trace``, ``tocsin.otel``) that saw
  the send also see each later run, as a deferred receiver event of that
  send.
* The core imports no policy; integrations provide them.
* A policy may refuse receivers it cannot deliver: if it has a
  ``check_receiver(receiver, signal)`` method, ``connect()`` (and
  ``@receiver``, ``connected_to``, ``ModelSignal.connect`` with a pending
  sender) calls it before connecting anything; an exception it raises
  propagates out of ``connect()`` and nothing is connected. A durable
  policy (``tocsin.background``) uses it to refuse receivers that a worker
  could not find by name (lambdas, closures, methods of instances).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Generic, Protocol, TypeVar

from . import hooks as _hooks
from .plans import _bad_via

__all__ = ["Deferred", "DeferredCall", "DeliveryPolicy", "check_policy"]

_T = TypeVar("_T")


class DeferredCall:
    """A receiver call captured at send time, to be run by a delivery policy.

    Calling it runs ``receiver(signal=signal, sender=sender, **kwargs)`` and
    returns the receiver's result. It may be called once or several times,
    from any thread; each call runs the receiver again. A call made while an
    observer is installed is reported to observers of the originating send.
    """

    __slots__ = ("_origin", "kwargs", "receiver", "sender", "signal")

    def __init__(
        self, receiver: Callable[..., Any], signal: object, sender: object, kwargs: Mapping[str, Any]
    ) -> None:
        self.receiver = receiver
        self.signal = signal
        self.sender = sender
        self.kwargs = dict(kwargs)
        # The observed send this call came from (see _observe), set by the
        # signal while observers are installed; None otherwise.
        self._origin: object | None = None

    def __call__(self) -> Any:
        if self._origin is not None:
            observer = _hooks.receiver_observer
            if observer is not None:
                return observer.call_deferred(self._origin, self)
        return self.receiver(signal=self.signal, sender=self.sender, **self.kwargs)

    def _run(self) -> Any:
        # The call itself, for the observer that wraps it (see _observe).
        return self.receiver(signal=self.signal, sender=self.sender, **self.kwargs)

    def __repr__(self) -> str:
        return f"<DeferredCall {self.receiver!r} sender={self.sender!r} kwargs={self.kwargs!r}>"


class Deferred(Generic[_T]):
    """The response ``send()`` returns for a receiver connected ``via=`` a policy.

    Attributes:
        call: the :class:`DeferredCall` handed to the policy.
        handle: whatever the policy returned for it (``None``, a future, ...).
    """

    __slots__ = ("call", "handle")

    def __init__(self, call: DeferredCall, handle: _T) -> None:
        self.call = call
        self.handle = handle

    def __repr__(self) -> str:
        return f"<Deferred {self.call.receiver!r} handle={self.handle!r}>"


class DeliveryPolicy(Protocol):
    """The type of ``via=``: any callable taking one :class:`DeferredCall`.

    The policy gets the call (a zero-argument callable) as its one positional
    argument and arranges for it to run, now or later, here or elsewhere;
    what it returns becomes :attr:`Deferred.handle`. ``executor.submit``,
    ``list.append`` and ``tocsin.sqlalchemy.on_commit`` all fit; nothing needs
    to subclass this. It runs in the sending thread in the receiver's turn,
    and an exception it raises counts as the receiver's.
    """

    # A callback protocol rather than a ``Callable[...]`` alias: an alias
    # cannot carry this docstring (and on Python 3.10 inspect takes it for an
    # undocumented class).
    def __call__(self, call: DeferredCall, /) -> Any: ...


def check_policy(via: object, receiver: Callable[..., Any], signal: object) -> None:
    """Raise unless *via* is a delivery policy willing to deliver *receiver* for *signal*.

    Called by every connect path before anything is connected: *via* must be
    callable, and a policy with a ``check_receiver(receiver, signal)`` method
    is asked (an exception it raises refuses the connection).

    Raises:
        TypeError: *via* is not callable.
    """
    if not callable(via):
        raise _bad_via(via)
    check = getattr(via, "check_receiver", None)
    if check is not None:
        check(receiver, signal)
