"""The errors ``tocsin.background`` raises.

Their hierarchy::

DispatchError (tocsin.exceptions)
+-- InvalidArgumentError (DispatchError, TypeError, ValueError)
|   +-- JobsConfigurationError                          Jobs(...) arguments, a bad store
+-- ReceiverNotNameableError (DispatchError, TypeError)   connect(via=jobs.later()) refused
+-- PayloadError (DispatchError, TypeError)               send(): an argument JSON cannot carry
"""

from __future__ import annotations

from tocsin.exceptions import DispatchError, InvalidArgumentError

__all__ = ["JobsConfigurationError", "PayloadError", "ReceiverNotNameableError"]


class JobsConfigurationError(InvalidArgumentError):
    """``Jobs()`` or ``jobs.later()`` was given something it cannot use.

    .. versionadded:: 0.1
    """


class ReceiverNotNameableError(DispatchError, TypeError):
    """A receiver connected ``via=jobs.later()`` that a worker could not find by name.

    A worker finds a job's receiver among the connections of its own process,
    by ``module:qualname``: lambdas, functions defined inside functions,
    ``functools.partial`` objects, callable instances and methods of an
    instance have no such name. Raised by ``connect()`` before anything is
    connected.

    .. versionadded:: 0.1
    """


class PayloadError(DispatchError, TypeError):
    """A send's argument cannot be stored as a job (JSON, model references, a few tagged types).

    Raised in the sending thread, by ``send()``, before the job is written:
    nothing is enqueued. ``argument`` names the argument (``instance``,
    ``data['when']``...).

    .. versionadded:: 0.1
    """

    def __init__(self, message: str, argument: str) -> None:
        super().__init__(message)
        self.argument = argument
