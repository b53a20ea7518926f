"""The publishing side of a shared signal: an interceptor that encodes each local send.

``bus.share(signal)`` installs a :class:`Publisher` on the signal. Each send
that does not carry an :class:`~tocsin.broadcast.Origin` (a remote re-send
is never published again: no echo, no loop) is encoded in the sending
thread *before* any receiver runs, so an unserialisable argument or an
oversized message raises there and nothing happens; then the message is
queued (or, inside a SQLAlchemy transaction, queued at COMMIT) and the
send proceeds as usual.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from tocsin.background import _payload

from ._codec import pack
from ._errors import MessageTooLargeError, PayloadError
from ._origin import Origin

if TYPE_CHECKING:
    from tocsin.lowlevel import Dispatch

    from ._bus import Bus

__all__ = ["Publisher"]

Responses = list[tuple[Any, Any]]


class Publisher:
    """The interceptor ``share()`` installs (see the module docstring)."""

    __slots__ = ("bus", "name")

    def __init__(self, bus: Bus, name: str) -> None:
        self.bus = bus
        self.name = name

    def send(self, dispatch: Dispatch, proceed: Callable[[], Responses]) -> Responses:
        if type(dispatch.kwargs.get("origin")) is not Origin:
            self.publish(dispatch.sender, dispatch.kwargs)
        return proceed()

    async def asend(self, dispatch: Dispatch, proceed: Callable[[], Awaitable[Responses]]) -> Responses:
        if type(dispatch.kwargs.get("origin")) is not Origin:
            self.publish(dispatch.sender, dispatch.kwargs)
        return await proceed()

    def publish(self, sender: Any, kwargs: dict[str, Any]) -> None:
        """Encode and queue one send (at COMMIT inside a SQLAlchemy transaction)."""
        bus = self.bus
        if "origin" in kwargs:
            msg = (
                f"{self.name} is shared on {bus!r}, whose remote sends carry origin=; a local send "
                f"cannot use that name (got origin={kwargs['origin']!r}). Rename the argument."
            )
            raise PayloadError(msg, "origin")
        payload, _models = _payload.encode(sender, kwargs, purpose=f"broadcast ({self.name})")
        data = pack(bus.origin_id(), bus.next_seq(), self.name, payload, bus.secret)
        if len(data) > bus.max_bytes:
            raise _too_large(self.name, sender, kwargs, len(data), bus)
        session = _transaction_of(kwargs) if sys.modules.get("sqlalchemy.orm") is not None else None
        if session is None:
            bus.enqueue(data)
            return
        from tocsin.sqlalchemy._commit import on_commit  # noqa: PLC0415 - SQLAlchemy is in use

        on_commit(partial(bus.enqueue, data), session=session, robust=True)


def _transaction_of(kwargs: dict[str, Any]) -> Any:
    """The Session whose open transaction the send belongs to, or None.

    That of ``instance=`` (an ORM instance attached to a Session), else the
    one set by ``tocsin.sqlalchemy.use_session()``, if it is in a transaction.
    """
    from tocsin.sqlalchemy._commit import session_in_use  # noqa: PLC0415 - SQLAlchemy is in use

    session = session_in_use(kwargs.get("instance"))
    return session if session is not None and session.in_transaction() else None


def _too_large(name: str, sender: Any, kwargs: dict[str, Any], size: int, bus: Bus) -> MessageTooLargeError:
    sizes = {
        key: len(_payload.encode(None, {key: value}, purpose="broadcast")[0]) for key, value in kwargs.items()
    }
    sizes["sender"] = len(_payload.encode(sender, {}, purpose="broadcast")[0])
    largest = max(sizes, key=sizes.__getitem__)
    msg = (
        f"a send of {name} makes a {size:,}-byte message, over the {bus.max_bytes:,}-byte limit of "
        f"{bus!r} (largest argument: {largest}, about {sizes[largest]:,} bytes). Send an id instead of "
        f"the data, or raise Bus(max_bytes=...) within the transport's limit."
    )
    return MessageTooLargeError(msg, largest, size, bus.max_bytes)
