"""Exceptions raised by tocsin itself.

Receiver exceptions are never wrapped: ``Signal.send`` lets them propagate
unchanged, ``Signal.send_robust`` returns them. The classes below are raised
only for mistakes in how tocsin is called, and each also inherits the builtin
exception Django raises in the same situation, so ``except TypeError`` code
written for ``django.dispatch`` keeps working::

    DispatchError (Exception)
    +-- AsyncContextError (DispatchError, RuntimeError)
    +-- InvalidArgumentError (DispatchError, TypeError, ValueError)
    +-- NotASignalError (DispatchError, TypeError)
    +-- NotPicklableError (DispatchError, TypeError)
    +-- ReceiverNotCallableError (DispatchError, TypeError)
    +-- ReceiverSignatureError (DispatchError, ValueError)
    +-- SendArgumentsError (DispatchError, TypeError)

    DuplicateReceiverWarning (UserWarning)
    UncheckedAnnotationWarning (UserWarning)
"""

from __future__ import annotations

__all__ = [
    "AsyncContextError",
    "DispatchError",
    "DuplicateReceiverWarning",
    "InvalidArgumentError",
    "NotASignalError",
    "NotPicklableError",
    "ReceiverNotCallableError",
    "ReceiverSignatureError",
    "SendArgumentsError",
    "UncheckedAnnotationWarning",
]


class DispatchError(Exception):
    """Base class of the errors tocsin raises for misuse of its API."""


class InvalidArgumentError(DispatchError, TypeError, ValueError):
    """A tocsin function, method or class was given an argument it cannot use.

    For example ``priority="high"``, ``via=42``, ``async_mode="parallel"``,
    ``mute(42)`` or ``install(object())``. Raised before anything changes.
    It is both a ``TypeError`` and a ``ValueError``, so code that caught the
    builtin raised for that argument keeps working.

    .. versionadded:: 0.1
    """


class NotPicklableError(DispatchError, TypeError):
    """A signal that no module-level name is bound to was pickled.

    Signals pickle by reference, like functions and classes; the message
    says how to fix it. A ``TypeError``, as ``pickle`` raises for objects
    it cannot pickle.

    .. versionadded:: 0.1
    """


class AsyncContextError(DispatchError, RuntimeError):
    """An async receiver or ``asend()`` cannot run where it was called.

    For example a plain ``send()`` inside a running event loop reaching an
    async receiver (use ``await sig.asend(...)``), or ``asend()`` awaited
    outside asyncio and trio. Raised before any receiver runs.

    .. versionadded:: 0.1
    """


class NotASignalError(DispatchError, TypeError):
    """``@receiver`` was given something that is not a signal.

    A signal is an instance with a ``connect()`` method (a ``tocsin.Signal``,
    or a signal object of another library with Django's ``connect()``); a
    list or other iterable of them is accepted too. Raised by ``receiver()``
    itself, before anything is connected: for a string, the ``Signal`` class
    instead of an instance, a bare ``@receiver`` without arguments, or any
    other object.
    """


class ReceiverNotCallableError(DispatchError, TypeError):
    """``connect()`` was given something that cannot be called.

    Nothing is connected when this is raised.
    """


class ReceiverSignatureError(DispatchError, ValueError):
    """``connect()`` was given a receiver that does not accept ``**kwargs``.

    Signals call receivers as ``receiver(signal=..., sender=..., **named)``;
    a receiver without ``**kwargs`` would break as soon as a sender adds an
    argument. Nothing is connected when this is raised.
    """


class SendArgumentsError(DispatchError, TypeError):
    """``send()`` (or a variant) was called with arguments it cannot deliver.

    Raised before any receiver runs: for a missing sender, or for a named
    argument that collides with the ``signal`` or ``sender`` the signal passes
    itself.
    """


class DuplicateReceiverWarning(UserWarning):
    """One receiver function is connected twice, from two copies of its module.

    A file imported under two names (``app.signals`` and ``signals``, when
    ``sys.path`` holds both the project and the app directory) runs twice, and
    each copy connects its own function object: every send then calls the
    receiver twice. Warned once per receiver, when a signal next rebuilds its
    routing table, at the receiver's definition. Fix the imports, or connect
    with ``dispatch_uid=`` so the second connect is a duplicate.
    """


class UncheckedAnnotationWarning(UserWarning):
    """``TypedSignal(validate=True)`` cannot check some arguments' types.

    An annotation of the spec does not resolve at run time, most often
    because the name is imported only under ``if TYPE_CHECKING:``. The
    argument names and every other annotation are still checked. Warned once
    per signal, at its first send, at the spec's definition. Import the
    names at run time to check them too, or filter this warning to accept it.
    """
