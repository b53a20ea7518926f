"""The ``@receiver`` decorator, as in ``django.dispatch``, and ``connected_to``."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Hashable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar, cast

from .plans import active_scopes

if TYPE_CHECKING:
    from .delivery import DeliveryPolicy
    from .signal import Signal

__all__ = ["connected_to", "receiver"]


class _Scope:
    """The identity of one ``connected_to(local=True)`` block (see ``_plans.active_scopes``)."""

    __slots__ = ()


_F = TypeVar("_F", bound=Callable[..., Any])


def receiver(
    signal: Signal | Iterable[Signal],
    *,
    sender: object = None,
    weak: bool = True,
    dispatch_uid: Hashable | None = None,
    priority: int = 0,
    via: DeliveryPolicy | None = None,
) -> Callable[[_F], _F]:
    """Connect the decorated function to *signal* (or to each of a list).

    The keyword arguments are those of ``Signal.connect``. The function is
    returned unchanged. If connecting to one signal of a list fails, the
    connections already made by this decorator are undone before the error
    propagates, so nothing stays half-connected.

    Example::

        @receiver(post_save, sender=Order)
        def notify(sender, instance, **kwargs): ...
    """
    # Duck-typed like Django: anything with connect() is one signal.
    signals = [cast("Signal", signal)] if hasattr(signal, "connect") else list(signal)

    def decorator(func: _F) -> _F:
        done: list[Signal] = []
        try:
            for sig in signals:
                # A connection that existed before is not ours to undo.
                is_connected = getattr(sig, "_is_connected", None)
                fresh = is_connected is None or not is_connected(func, sender, dispatch_uid)
                sig.connect(func, sender, weak, dispatch_uid, priority=priority, via=via)
                if fresh:
                    done.append(sig)
        except BaseException:
            for sig in done:
                sig.disconnect(func, sender, dispatch_uid)
            raise
        return func

    return decorator


@contextlib.contextmanager
def connected_to(
    signal: Signal,
    receiver: _F,
    sender: object = None,
    *,
    local: bool = False,
    weak: bool = False,
    dispatch_uid: Hashable | None = None,
    priority: int = 0,
    via: DeliveryPolicy | None = None,
) -> Iterator[_F]:
    """Connect *receiver* for the duration of a ``with`` block.

    This function is ``Signal.connected_to``: ``with
    sig.connected_to(handler, sender=Order): ...`` connects on entry
    (arguments as for ``connect()``) and, on exit, however the block ends,
    removes exactly that connection. A connection that already existed when
    the block started is left in place; one made by the block is removed
    even if the same receiver was connected again meanwhile (that second
    connect was a duplicate and did nothing). The block keeps the receiver
    (held strongly unless ``weak=True``) and the sender alive until it exits,
    so what it removes is the connection it made, never one made later for
    a new object that reused a dead sender's ``id()``.

    With ``local=True`` only sends made in the block's own context reach
    the receiver: the thread or asyncio task running the block, and the
    tasks it starts inside it (they copy its context), not other threads
    or requests running at the same time. A local connection is always
    made, separate from any other connection of the same receiver, and
    removed on exit. While one exists, sends of this signal take the
    slow path.

    Raises:
        ReceiverNotCallableError: *receiver* is not callable.
        ReceiverSignatureError: *receiver* does not accept ``**kwargs``.
    """
    if local:
        scope = _Scope()
        key = signal._connect_scoped(  # noqa: SLF001 - same package
            receiver, sender, scope, weak=weak, dispatch_uid=dispatch_uid, priority=priority, via=via
        )
        token = active_scopes.set(active_scopes.get() | {scope})
        try:
            yield receiver
        finally:
            signal._disconnect_key(key)  # noqa: SLF001
            active_scopes.reset(token)
        return
    # A connection that existed before the block is not ours to undo.
    fresh = not signal._is_connected(receiver, sender, dispatch_uid)  # noqa: SLF001 - same package
    signal.connect(receiver, sender, weak, dispatch_uid, priority=priority, via=via)
    try:
        yield receiver
    finally:
        if fresh:
            signal.disconnect(receiver, sender, dispatch_uid)
