"""Muting: silence whole signals or single receivers, process-wide.

A muted connection stays connected; it is only left out of the routing
tables: ``_depths`` maps each signal with something muted to its mute keys
and their depths (how many open ``mute()`` blocks hold each), and the signal
gets a connection filter (``hooks.set_connection_filter``) leaving those
connections out when it rebuilds its table. So a mute costs nothing on the
send path, and every change invalidates the table, so nothing stale
survives a block.

The keys:

* :data:`ALL`: the whole signal, including receivers connected while the
  block is open.
* ``("receiver", key)``: one receiver (by ``_receivers.receiver_key``) on
  this signal, whatever its sender or ``dispatch_uid``.

Example::

    >>> import tocsin
    >>> from tocsin.testing import mute
    >>> sig = tocsin.Signal(name="demo")
    >>> def handler(sender, **kwargs): return "ran"
    >>> _ = sig.connect(handler)
    >>> with mute(sig):
    ...     sig.send(None)
    []
    >>> [r for _, r in sig.send(None)]
    ['ran']
"""

from __future__ import annotations

import functools
import inspect
import threading
import weakref
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any, Final, TypeVar, cast

from tocsin._core import hooks
from tocsin._core import receivers as _receivers
from tocsin._core.signal import Signal
from tocsin.exceptions import InvalidArgumentError

if TYPE_CHECKING:
    from types import TracebackType


__all__ = ["ALL", "mute"]

_F = TypeVar("_F", bound=Callable[..., Any])


class _All:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<all receivers>"


ALL: Final[Hashable] = _All()

# One lock for every mute change: entering and leaving are rare, and one lock
# makes "mute these three signals" atomic with respect to other mute blocks.
_lock = threading.Lock()
# signal -> {mute key: depth}, for the signals with something muted.
_depths: weakref.WeakKeyDictionary[Signal, dict[Hashable, int]] = weakref.WeakKeyDictionary()


def _skip_all(record: object) -> bool:
    del record
    return True


def _skip_muted(muted: dict[Hashable, int]) -> hooks.ConnectionFilter:
    """The connection filter leaving out what *muted* (a frozen snapshot) silences."""
    if ALL in muted:
        return _skip_all

    def skip(record: Any) -> bool:
        return ("receiver", _receivers.identity_of(record)) in muted

    return skip


class mute:  # noqa: N801 - used like a function, as contextlib's helpers are
    """Silence signals or single receivers while a block runs.

    ``mute(post_save)`` silences every receiver of ``post_save``, including
    ones connected inside the block; ``mute(handler)`` silences one receiver
    on every signal it is connected to. Use it as a context manager or as a
    decorator (on plain and ``async def`` functions).

    Contract:
        * Global: a mute applies to every thread and every asyncio task
          while the block is open, like the connection it silences. It is
          meant for tests and bulk jobs; for per-request behaviour use
          ``Signal.connected_to(receiver, local=True)`` or connect receivers
          with a sender instead.
        * Nests: each target counts its open blocks; leaving an inner block
          does not unmute what an outer block muted.
        * Nothing is disconnected: order, priorities and receivers connected
          or disconnected meanwhile are exactly as if no mute had happened.
        * Zero cost: the muted receivers are left out of the routing table,
          which is rebuilt on entry and exit. A muted send still reaches
          ``capture()`` and other interceptors, with no receivers run.
        * Muting a receiver covers the signals alive when the block starts.

    Args:
        *targets: signals and receivers (functions, bound methods, callable
            objects) to silence.

    Raises:
        TypeError: a target is neither a signal nor callable.

    .. versionadded:: 0.1

    """

    def __init__(self, *targets: Signal | Callable[..., Any]) -> None:
        keys: list[tuple[Signal | None, Hashable]] = []
        for target in cast("tuple[object, ...]", targets):  # checked at run time too
            if isinstance(target, Signal):
                keys.append((target, ALL))
            elif callable(target):
                keys.append((None, ("receiver", _receivers.receiver_key(target))))
            else:
                msg = (
                    f"mute() takes signals and receivers; got {target!r}. "
                    "For example: mute(post_save) or mute(send_welcome_email)."
                )
                raise InvalidArgumentError(msg)
        self._keys = keys
        self._entered: list[list[tuple[Signal, Hashable]]] = []

    def __repr__(self) -> str:
        return f"<mute {[k for _, k in self._keys]!r}>"

    def __enter__(self) -> mute:  # noqa: PYI034 - final in practice
        applied: list[tuple[Signal, Hashable]] = []
        with _lock:
            every: list[Signal] | None = None
            for signal, key in self._keys:
                if signal is not None:
                    applied.append((signal, key))
                    continue
                if every is None:
                    every = hooks.live_signals()
                applied.extend((sig, key) for sig in every)
            for signal, key in applied:
                _change(signal, key, +1)
        self._entered.append(applied)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        applied = self._entered.pop()
        with _lock:
            for signal, key in applied:
                _change(signal, key, -1)

    def __call__(self, func: _F) -> _F:
        """Decorate *func* so that every call runs muted."""
        keys = self._keys  # each call enters a fresh block: calls may overlap

        def fresh() -> mute:
            block = mute.__new__(mute)
            block._keys = keys  # noqa: SLF001 - same class
            block._entered = []  # noqa: SLF001
            return block

        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with fresh():
                    return await func(*args, **kwargs)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with fresh():
                return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]


def _change(signal: Signal, key: Hashable, delta: int) -> None:
    """Add *delta* to the depth of *key* on *signal*. Under ``_lock``."""
    muted = dict(_depths.get(signal, {}))
    depth = muted.get(key, 0) + delta
    if depth > 0:
        muted[key] = depth
    else:
        muted.pop(key, None)
    if muted:
        _depths[signal] = muted
    else:
        _depths.pop(signal, None)
    # A new filter over a frozen copy: the signal may be rebuilding its table
    # with the previous one in another thread.
    hooks.set_connection_filter(signal, _skip_muted(muted) if muted else None)
