"""The ``@receiver`` decorator, as in ``django.dispatch``."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from ._signal import Signal

__all__ = ["receiver"]

_F = TypeVar("_F", bound=Callable[..., Any])


def receiver(
    signal: Signal | Iterable[Signal],
    *,
    sender: object = None,
    weak: bool = True,
    dispatch_uid: Hashable | None = None,
    priority: int = 0,
    via: Callable[[Callable[[], Any]], Any] | None = None,
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
    signals = [signal] if hasattr(signal, "connect") else list(signal)  # type: ignore[arg-type]

    def decorator(func: _F) -> _F:
        done: list[Signal] = []
        try:
            for sig in signals:
                sig.connect(func, sender, weak, dispatch_uid, priority=priority, via=via)
                done.append(sig)
        except BaseException:
            for sig in done:
                sig.disconnect(func, sender, dispatch_uid)
            raise
        return func

    return decorator
