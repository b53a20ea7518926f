"""The ``@receiver`` decorator, as in ``django.dispatch``, and ``connected_to``."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Hashable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar, cast

if TYPE_CHECKING:
    from ._delivery import DeliveryPolicy
    from ._signal import Signal

__all__ = ["connected_to", "receiver"]

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
    weak: bool = False,
    dispatch_uid: Hashable | None = None,
    priority: int = 0,
    via: DeliveryPolicy | None = None,
) -> Iterator[_F]:
    """Connect *receiver* while the ``with`` block runs (see ``Signal.connected_to``)."""
    # A connection that existed before the block is not ours to undo.
    fresh = not signal._is_connected(receiver, sender, dispatch_uid)  # noqa: SLF001 - same package
    signal.connect(receiver, sender, weak, dispatch_uid, priority=priority, via=via)
    try:
        yield receiver
    finally:
        if fresh:
            signal.disconnect(receiver, sender, dispatch_uid)
