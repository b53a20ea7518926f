"""Named signals: a registry by name, and every live signal for introspection.

``Namespace`` is blinker's: ``ns.signal("order-placed")`` returns the same
signal for the same name, so modules that never import each other can
share one. The default namespace behind :func:`signal` is process-wide.

Every signal, named or not, is findable while it lives: :func:`all_signals`
lists them with the module that constructed them (``Signal.module``), for
debugging panels, ``manage.py``-style listings and tests that look for
leaks.

Example::

    >>> import tocsin
    >>> a = tocsin.signal("docs-example")
    >>> a is tocsin.signal("docs-example")
    True
    >>> a
    <Signal 'docs-example' at 0x...>
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from tocsin._core import hooks as _hooks
from tocsin._core import identity as _identity
from tocsin._core.signal import Signal

from . import meta as _meta

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tocsin._core.records import SenderRef

__all__ = ["Namespace", "all_signals", "receiver_connected", "receiver_disconnected", "signal"]


class Namespace:
    """A mapping of names to signals, creating each signal on first use.

    Signals are held strongly: a name keeps meaning the same signal (and its
    receivers) for the life of the namespace. Thread-safe.

    .. versionadded:: 0.1
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._signals: dict[str, Signal] = {}

    def signal(self, name: str, doc: str | None = None) -> Signal:
        """Return the signal called *name*, creating it on first use.

        Args:
            name: the signal's name; also its ``name`` attribute.
            doc: a description, used when the signal is created (a later
                call with another *doc* does not change it).

        """
        with self._lock:
            sig = self._signals.get(name)
            if sig is None:
                sig = self._signals[name] = Signal(name=name, doc=doc)
            return sig

    def __getitem__(self, name: str) -> Signal:
        with self._lock:
            return self._signals[name]

    def __contains__(self, name: object) -> bool:
        return name in self._signals

    def __iter__(self) -> Iterator[str]:
        with self._lock:
            return iter(sorted(self._signals))

    def __len__(self) -> int:
        return len(self._signals)

    def __repr__(self) -> str:
        return f"<Namespace {sorted(self._signals)!r}>"


default_namespace = Namespace()


def signal(name: str, doc: str | None = None) -> Signal:
    """Return the signal called *name* in the default namespace.

    ``tocsin.signal("user-logged-in")`` anywhere in the program returns the
    same signal, like blinker's ``signal()``.

    .. versionadded:: 0.1
    """
    return default_namespace.signal(name, doc)


_identity.skip_frames_of(Namespace.signal.__code__)
_identity.skip_frames_of(signal.__code__)


def all_signals() -> list[Signal]:
    """Every live signal, sorted by defining module then name.

    Signals are listed while something else references them (the registry
    is weak). Each has ``name`` (possibly ``None``), ``module`` (where it was
    constructed) and ``doc``.

    .. versionadded:: 0.1
    """
    return sorted(_hooks.live_signals(), key=lambda s: (s.module or "", s.name or "", id(s)))


class _MetaSignal(Signal):
    """A meta-signal: installs the connection watcher while it has connections (see ``meta``)."""

    def connect(self, *args: Any, **kwargs: Any) -> Any:
        result = super().connect(*args, **kwargs)
        _meta.refresh()
        return result

    def disconnect(self, *args: Any, **kwargs: Any) -> bool:
        result = super().disconnect(*args, **kwargs)
        _meta.refresh()
        return result

    def _sweep(self) -> list[object]:
        swept = super()._sweep()
        _meta.refresh()
        return swept

    def _drop_sender(self, anchor: SenderRef) -> list[object]:
        dropped = super()._drop_sender(anchor)
        _meta.refresh()
        return dropped


receiver_connected = _MetaSignal(
    name="receiver_connected",
    doc=(
        "Sent after a receiver is connected to any signal. sender: that signal; "
        "receiver, for_sender (the sender it was connected for, None for any) and dispatch_uid."
    ),
)
receiver_disconnected = _MetaSignal(
    name="receiver_disconnected",
    doc=(
        "Sent after a connection to any signal ends. sender: that signal; receiver (None if it "
        "was garbage-collected), for_sender, dispatch_uid, and collected (True when a weak "
        "receiver or sender died; sent at the signal's next connect, disconnect or send)."
    ),
)
# Pickled and listed under their public path, never this private one.
receiver_connected.module = receiver_disconnected.module = "tocsin"
_meta.bind(receiver_connected, receiver_disconnected)
