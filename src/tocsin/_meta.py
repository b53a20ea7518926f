"""Meta-signals (``receiver_connected``/``receiver_disconnected``) and signal origins.

Meta-signals are sent *after* the signal's lock is released, never under it:
a receiver of ``receiver_connected`` may well connect something itself. A
connection change made under the lock is queued on the signal
(``Signal._meta_pending``) and sent by the same call once the lock is free.
Nothing is queued while nobody listens to either meta-signal.

A weakly held receiver (or weakly referenced sender) dies inside a weakref
callback, which may run in any allocation, even one made under the lock, so
it must not send anything. Its ``receiver_disconnected`` (with
``collected=True`` and ``receiver=None`` when the receiver itself died) is
sent by the next ``connect()``, ``disconnect()`` or ``send()`` of that
signal, in that thread, before the operation returns (for a send: before its
receivers run).

Example::

    >>> import tocsin
    >>> seen = []
    >>> def watch(sender, receiver, **kwargs): seen.append(receiver.__name__)
    >>> _ = tocsin.receiver_connected.connect(watch)
    >>> sig = tocsin.Signal(name="demo")
    >>> def handler(sender, **kwargs): pass
    >>> _ = sig.connect(handler)
    >>> seen
    ['handler']
    >>> tocsin.receiver_connected.disconnect(watch)
    True
"""

from __future__ import annotations

import pkgutil
import sys
import warnings
from typing import TYPE_CHECKING, Any

from ._connections import R_SENDER_ANCHOR, R_SENDER_KEY, R_SENDER_KIND, R_UID, Record

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import CodeType

    from ._signal import Signal

__all__ = [
    "bind",
    "defining_module",
    "flush",
    "reduce_signal",
    "refresh",
    "warn_providing_args",
    "watched",
    "watching",
]

# True while a meta-signal may have receivers: the one check connect() and
# disconnect() make (a module attribute, cheaper than a call). Kept by the
# meta-signals' own connect/disconnect/sweep (see _namespace._MetaSignal).
watching = False
_connected: Signal | None = None
_disconnected: Signal | None = None
_factory_codes: set[CodeType] = set()  # frames skipped when finding a signal's module


def bind(connected: Signal, disconnected: Signal) -> None:
    """Make *connected*/*disconnected* the meta-signals (see ``_namespace``)."""
    global _connected, _disconnected
    _connected, _disconnected = connected, disconnected


def refresh() -> None:
    """Recompute :data:`watching` after a meta-signal's connections changed."""
    global watching  # noqa: PLW0603 - read lock-free by Signal.connect
    watching = bool(
        (_connected is not None and _connected._records)  # noqa: SLF001
        or (_disconnected is not None and _disconnected._records)  # noqa: SLF001
    )


def watched(signal: Signal) -> bool:
    """Whether changes to *signal* must be reported. Takes no lock.

    Changes to the meta-signals themselves are not reported, so watchers
    never see each other.
    """
    # Reading another signal's dict without its lock is fine: a stale answer
    # queues an event nobody receives, or misses one for a receiver being
    # connected at this very moment, which could not be ordered anyway.
    # Hot path (every connect and disconnect): nobody watching, no bool() call.
    if (_connected is not None and _connected._records) or (  # noqa: SLF001
        _disconnected is not None and _disconnected._records  # noqa: SLF001
    ):
        return signal is not _connected and signal is not _disconnected
    return False


def _sender_of(record: Record) -> Any:
    kind = record[R_SENDER_KIND]
    if kind == "any":
        return None
    if kind == "value":
        return record[R_SENDER_KEY][1]
    anchor: Any = record[R_SENDER_ANCHOR]
    return anchor() if kind == "weak" else anchor


def flush(signal: Signal) -> None:
    """Send the meta-signals queued on *signal*. Call without its lock."""
    from ._plans import _resolve  # noqa: PLC0415 - _signal imports this module

    with signal._locked():  # noqa: SLF001 - _meta owns _meta_pending
        events = list(signal._meta_pending)  # noqa: SLF001
        signal._meta_pending.clear()  # noqa: SLF001
    for connected, record, extra in events:
        # send_robust: a failing watcher is logged, and never makes the
        # connect()/disconnect()/send() that triggered it fail.
        if connected and _connected is not None:
            _connected.send_robust(
                signal, receiver=extra, for_sender=_sender_of(record), dispatch_uid=record[R_UID]
            )
        elif not connected and _disconnected is not None:
            _disconnected.send_robust(
                signal,
                receiver=_resolve(record),
                for_sender=_sender_of(record),
                dispatch_uid=record[R_UID],
                collected=extra,
            )


def skip_frames_of(code: CodeType) -> None:
    """Make :func:`defining_module` look past frames running *code* (factories)."""
    _factory_codes.add(code)


def defining_module() -> str | None:
    """Return the module constructing the signal being initialised.

    Called from ``Signal.__init__``; looks past ``__init__`` frames (of
    subclasses calling ``super().__init__``) and registered factories such as
    ``Namespace.signal``. ``None`` where frames are not available.
    """
    getframe = getattr(sys, "_getframe", None)
    if getframe is None:  # pragma: no cover - every CPython and PyPy has it
        return None
    frame = getframe(2)
    while frame is not None and (frame.f_code.co_name == "__init__" or frame.f_code in _factory_codes):
        frame = frame.f_back
    if frame is None:  # pragma: no cover - only a bare Signal() at the stack's root
        return None
    name = frame.f_globals.get("__name__")
    return name if isinstance(name, str) else None


def reduce_signal(signal: Signal) -> tuple[Callable[[str], object], tuple[str]]:
    """What pickle stores for *signal*: a reference to the module attribute bound to it.

    A signal is an identity, like a function or a class, so it is pickled the
    way they are: by the name its module binds it to (in the module that
    constructed it), and unpickled as the object that name holds, with its
    receivers. That holds across processes too, since the name is looked up
    again. ``pkgutil.resolve_name`` does the lookup: a stable public name to
    store in pickles.

    Raises:
        TypeError: no name in that module is bound to the signal (a signal
            created inside a function, or kept on an instance).
    """
    module = sys.modules.get(signal.module) if signal.module else None
    if module is not None:
        for attr, value in list(vars(module).items()):
            if value is signal:
                return pkgutil.resolve_name, (f"{signal.module}:{attr}",)
    where = f"module {signal.module}" if signal.module else "the module that created it"
    msg = (
        f"cannot pickle {signal!r}: signals are pickled by reference, like functions and "
        f"classes, and no name in {where} is bound to this one. Bind it at module level "
        f"(order_placed = Signal()), or leave it out of what you pickle (define __getstate__) "
        f"and create or look it up again after loading."
    )
    raise TypeError(msg)


def warn_providing_args() -> None:
    """Warn about Django's removed ``Signal(providing_args=...)``."""
    msg = (
        "Signal(providing_args=...) is deprecated and ignored: Django removed it in 4.0. "
        "Describe the arguments with doc= instead, or declare them with tocsin.TypedSignal "
        "so type checkers check every send()."
    )
    # 1: here, 2: Signal.__init__, 3: the code constructing the signal.
    warnings.warn(msg, DeprecationWarning, stacklevel=3)
