"""Exceptions raised by tocsin itself.

Receiver exceptions are never wrapped: ``Signal.send`` lets them propagate
unchanged, ``Signal.send_robust`` returns them. The classes below are raised
only for mistakes in how tocsin is called, and each also inherits the builtin
exception Django raises in the same situation, so ``except TypeError`` code
written for ``django.dispatch`` keeps working::

    DispatchError (Exception)
    +-- ReceiverNotCallableError (DispatchError, TypeError)
    +-- ReceiverSignatureError (DispatchError, ValueError)
    +-- SendArgumentsError (DispatchError, TypeError)
"""

from __future__ import annotations

__all__ = [
    "DispatchError",
    "ReceiverNotCallableError",
    "ReceiverSignatureError",
    "SendArgumentsError",
]


class DispatchError(Exception):
    """Base class of the errors tocsin raises for misuse of its API."""


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
