"""The ``@receiver`` decorator, as in ``django.dispatch``, and ``connected_to``."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Hashable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar, cast

from tocsin.exceptions import NotASignalError

from . import inline as _inline
from .plans import active_scopes

if TYPE_CHECKING:
    from .delivery import DeliveryPolicy
    from .errors import ErrorHandler
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
    on_error: ErrorHandler | None = None,
) -> Callable[[_F], _F]:
    """Connect the decorated function to *signal* (or to each of a list).

    The keyword arguments are those of ``Signal.connect``. The function is
    returned unchanged. If connecting to one signal of a list fails, the
    connections already made by this decorator are undone before the error
    propagates, so nothing stays half-connected.

    Duck-typed like Django's: a signal is any instance with a ``connect()``
    method (``priority``, ``via`` and ``on_error``, tocsin's own options,
    are passed on only when given, so a ``django.dispatch.Signal`` works too).
    ``on_error`` is called when the receiver raises (see ``Signal.connect``).

    Example::

        @receiver(post_save, sender=Order)
        def notify(sender, instance, **kwargs): ...

    Raises:
        NotASignalError: *signal* (or an item of the list) is not a signal;
            raised at once, before anything is connected.
    """
    signals = _signals_of(signal)
    options: dict[str, Any] = {}
    if priority != 0:
        options["priority"] = priority
    if via is not None:
        options["via"] = via
    if on_error is not None:
        options["on_error"] = on_error

    def decorator(func: _F) -> _F:
        done: list[Signal] = []
        # Bound to a name next, so never a temporary (see _inline): a nested
        # function decorated in a function body is weak, as in Django.
        with _inline.kept_by_caller(func):
            try:
                for sig in signals:
                    # A connection that existed before is not ours to undo.
                    is_connected = getattr(sig, "_is_connected", None)
                    fresh = is_connected is None or not is_connected(func, sender, dispatch_uid)
                    sig.connect(func, sender, weak, dispatch_uid, **options)
                    if fresh:
                        done.append(sig)
            except BaseException:
                for sig in done:
                    sig.disconnect(func, sender, dispatch_uid)
                raise
        return func

    return decorator


def _signals_of(signal: object) -> list[Signal]:
    """The signals ``@receiver(signal)`` connects to; raise if any is not one."""
    if _is_signal(signal):
        return [cast("Signal", signal)]
    if isinstance(signal, (str, bytes)) or not isinstance(signal, Iterable):
        raise _not_a_signal(signal, None)
    signals = list(signal)
    for index, sig in enumerate(signals):
        if not _is_signal(sig):
            raise _not_a_signal(sig, index)
    return signals


def _is_signal(obj: object) -> bool:
    """An instance with a ``connect()`` method (a class has one too, unbound)."""
    return not isinstance(obj, type) and callable(getattr(obj, "connect", None))


def _not_a_signal(obj: object, index: int | None) -> NotASignalError:
    """The error for *obj* given to ``@receiver`` (as item *index* of a list, if not None)."""
    got = f"item {index} of the list given is" if index is not None else "got"
    if isinstance(obj, type) and callable(getattr(obj, "connect", None)):
        what = (
            f"{got} the class {obj.__qualname__} itself. Create the signal once, at module level "
            f"(order_paid = {obj.__name__}()), and pass that instance: @receiver(order_paid)."
        )
    elif isinstance(obj, (str, bytes)):
        what = (
            f"{got} the string {obj!r}. Import the signal object and pass it: "
            "@receiver(order_paid), not @receiver('order_paid')."
        )
    elif index is None and callable(obj) and not isinstance(obj, type):
        what = (
            f"got {obj!r}: @receiver was used bare, without the signal. Write @receiver(order_paid) "
            "(or @receiver([order_paid, order_refunded])) above the function."
        )
    else:
        what = (
            f"{got} {obj!r} (of type {type(obj).__qualname__}). Pass the signal object: "
            "@receiver(order_paid) or @receiver([order_paid, order_refunded])."
        )
    return NotASignalError(
        f"@receiver needs a signal (an instance with a connect() method) or a list of signals; {what}"
    )


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
    on_error: ErrorHandler | None = None,
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
            receiver,
            sender,
            scope,
            weak=weak,
            dispatch_uid=dispatch_uid,
            priority=priority,
            via=via,
            on_error=on_error,
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
    signal.connect(receiver, sender, weak, dispatch_uid, priority=priority, via=via, on_error=on_error)
    try:
        yield receiver
    finally:
        if fresh:
            signal.disconnect(receiver, sender, dispatch_uid)
