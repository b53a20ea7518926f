"""Meta-signals: ``receiver_connected`` and ``receiver_disconnected``.

Built on the core's connection watcher (``tocsin._core.hooks``): while either
meta-signal has a connection, a watcher is installed and the core queues every
connection change made under a signal's lock, then reports it once the lock
is free. So a receiver of ``receiver_connected`` may well connect something
itself. While nobody listens no watcher is installed and connecting costs one
module-attribute check.

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

from typing import TYPE_CHECKING

from tocsin._core import hooks

if TYPE_CHECKING:
    from tocsin._core.signal import Signal

__all__ = ["bind", "refresh"]

_connected: Signal | None = None
_disconnected: Signal | None = None


class _Watcher:
    """Turns connection changes into meta-signal sends."""

    def watches(self, signal: Signal) -> bool:
        # Changes to the meta-signals themselves are not reported, so
        # watchers never see each other.
        return signal is not _connected and signal is not _disconnected

    def changed(self, signal: Signal, changes: list[hooks.ConnectionChange]) -> None:
        for connected, receiver, for_sender, dispatch_uid, collected in changes:
            # send_robust: a failing watcher is logged, and never makes the
            # connect()/disconnect()/send() that triggered it fail.
            if connected and _connected is not None:
                _connected.send_robust(
                    signal, receiver=receiver, for_sender=for_sender, dispatch_uid=dispatch_uid
                )
            elif not connected and _disconnected is not None:
                _disconnected.send_robust(
                    signal,
                    receiver=receiver,
                    for_sender=for_sender,
                    dispatch_uid=dispatch_uid,
                    collected=collected,
                )


_watcher = _Watcher()


def bind(connected: Signal, disconnected: Signal) -> None:
    """Make *connected*/*disconnected* the meta-signals (see ``namespace``)."""
    global _connected, _disconnected
    _connected, _disconnected = connected, disconnected


def refresh() -> None:
    """Install the watcher while a meta-signal has connections, remove it otherwise."""
    # Reading another signal's connections without its lock is fine: a stale
    # answer queues an event nobody receives, or misses one for a receiver
    # being connected at this very moment, which could not be ordered anyway.
    watching = (_connected is not None and hooks.has_connections(_connected)) or (
        _disconnected is not None and hooks.has_connections(_disconnected)
    )
    hooks.set_connection_watcher(_watcher if watching else None)
