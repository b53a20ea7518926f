"""The errors ``tocsin.broadcast`` raises.

Their hierarchy::

DispatchError (tocsin.exceptions)
+-- InvalidArgumentError (DispatchError, TypeError, ValueError)
|   +-- BusConfigurationError                      Bus(...), bus.share(...): unusable arguments
+-- PayloadError (DispatchError, TypeError)          send(): an argument JSON cannot carry
|   +-- MessageTooLargeError (PayloadError, ValueError)   send(): over the transport's size limit
+-- BusUnavailableError (DispatchError, RuntimeError)     send(): the bounded publish buffer is full

``PayloadError`` is ``tocsin.background``'s: both encode a send's arguments
with the same codec.
"""

from __future__ import annotations

from tocsin.background import PayloadError
from tocsin.exceptions import DispatchError, InvalidArgumentError

__all__ = ["BusConfigurationError", "BusUnavailableError", "MessageTooLargeError", "PayloadError"]


class BusConfigurationError(InvalidArgumentError):
    """``Bus()`` or ``bus.share()`` was given something it cannot use (a URL, a name, a signal).

    Raised before anything changes.

    .. versionadded:: 0.1
    """


class MessageTooLargeError(PayloadError, ValueError):
    """A shared signal's send would make a message over the bus's size limit.

    Raised in the sending thread before any receiver runs and before
    anything is published. ``argument`` names the largest argument.

    .. versionadded:: 0.1
    """

    def __init__(self, message: str, argument: str, size: int, limit: int) -> None:
        super().__init__(message, argument)
        self.size = size
        self.limit = limit


class BusUnavailableError(DispatchError, RuntimeError):
    """A shared signal's send found the bus's publish buffer full.

    The buffer (``Bus(..., buffer=N)``) holds messages while the transport
    is unreachable; when it is full the send raises instead of growing
    memory without bound. Raised before any receiver runs.

    .. versionadded:: 0.1
    """
