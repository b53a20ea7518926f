"""Cross-process broadcast: a send in one process reaches receivers in every other.

::

    from tocsin.broadcast import Bus

    bus = Bus("redis://127.0.0.1:6379/0")  # or "redis+stream://...", "postgresql://...", "memory://"
    bus.share(post_changed)                # its sends are published to every process

    @receiver(post_changed)                # runs for local sends and for other processes' sends
    def evict(sender, post_id, **kwargs):
        cache.pop(post_id, None)

    @receiver(bus.gap)                     # messages may have been missed: start afresh
    def flush(sender, **kwargs):
        cache.clear()

    bus.start()                            # two background threads; or `async with bus:`

A remote send arrives with one more named argument, ``origin=`` (an
:class:`Origin`); :func:`local_only` and :func:`remote_only` filter on it.
Delivery guarantees per transport, the security model and failure
behaviour: ``docs/broadcast.md``.

.. versionadded:: 0.1
"""

from __future__ import annotations

from ._bus import Bus as Bus
from ._errors import BusConfigurationError as BusConfigurationError
from ._errors import BusUnavailableError as BusUnavailableError
from ._errors import MessageTooLargeError as MessageTooLargeError
from ._errors import PayloadError as PayloadError
from ._origin import Origin as Origin
from ._origin import is_remote as is_remote
from ._origin import local_only as local_only
from ._origin import remote_only as remote_only
from ._status import BusStatus as BusStatus

__all__ = [
    "Bus",
    "BusConfigurationError",
    "BusStatus",
    "BusUnavailableError",
    "MessageTooLargeError",
    "Origin",
    "PayloadError",
    "is_remote",
    "local_only",
    "remote_only",
]
