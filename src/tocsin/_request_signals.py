"""The request signals shared by ``tocsin.asgi`` and ``tocsin.wsgi``.

Defined once here so that a receiver connected through either public module
hears requests served by both middlewares. This module imports no web
framework.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Final

from ._core import hooks
from ._core.plans import _DEFAULT
from ._core.signal import Signal

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "all_quiet",
    "got_request_exception",
    "is_quiet",
    "request_finished",
    "request_started",
    "watch_silence",
]

# Every request asks whether all three signals are silent. Reading three
# signals' routing tables costs three objects' worth of cache misses in a
# real app (measured: about 0.1 us per request under Starlette), so the
# answer is kept in one flag per middleware module, updated whenever any of
# the three publishes a table.
_silence_lock = threading.RLock()  # reentrant: a weakref callback may publish mid-update
_silence_watchers: list[Callable[[bool], None]] = []
_group: tuple[Signal, ...] = ()  # the three signals, once they exist


def _publish_silence() -> None:
    # Under _silence_lock, after every change to any of the three tables: so
    # the flags always describe the latest three tables, whichever threads
    # published them. Allocates nothing (a collection could run callbacks).
    silent = bool(_group)
    for signal in _group:
        if not hooks.nobody_listens(signal):
            silent = False
            break
    for watcher in _silence_watchers:
        watcher(silent)


def watch_silence(watcher: Callable[[bool], None]) -> None:
    """Call *watcher* now and after every change with whether all three signals are silent.

    Silent means that each signal's published table is the empty one: no
    receiver and no interceptor for any sender. ``False`` only says "ask
    :func:`all_quiet`": a table not yet rebuilt after a change, or receivers
    for other senders, also read as not silent. The watcher runs under a
    lock, possibly in any thread; it must only store the value.
    """
    with _silence_lock:
        _silence_watchers.append(watcher)
        _publish_silence()


request_started = Signal(
    name="request_started",
    doc=("Sent when a request starts, before the application runs. ASGI sends scope=, WSGI sends environ=."),
)
request_finished = Signal(
    name="request_finished",
    doc=(
        "Sent exactly once per request, after the last byte of the response was handed "
        "to the server, or when the request ended early (error, client disconnect). "
        "ASGI sends scope=, WSGI sends environ=."
    ),
)
got_request_exception = Signal(
    name="got_request_exception",
    doc=(
        "Sent when an exception escapes the application and becomes a 500 response. "
        "Sends request= (None outside a framework relay), exception=, and scope= (ASGI) "
        "or environ= (WSGI)."
    ),
)
# Pickled, listed and found by `tocsin inspect` under a public path, never this
# private one: private modules may move (see _core.meta.reduce_signal).
for _signal in (request_started, request_finished, got_request_exception):
    _signal.module = "tocsin.asgi"
del _signal


def _published() -> None:
    with _silence_lock:
        _publish_silence()


with _silence_lock:
    _group = (request_started, request_finished, got_request_exception)
    for _signal in _group:
        hooks.set_publication_watcher(_signal, _published)
    del _signal

_EMPTY: Final = ()  # CPython's empty tuple is one object; the slow check covers the rest


def _make_all_quiet() -> Callable[[object], bool]:
    # Closure cells instead of module globals: this runs on every request.
    started, finished, exception = request_started, request_finished, got_request_exception
    default, empty, routes_of = _DEFAULT, _EMPTY, hooks.routes_of
    # The sender and the routing tables last found quiet for it, replaced as
    # one tuple so threads never pair one sender with another's tables. A
    # published table is never mutated except to drop a dead sender, and
    # every change that could add a receiver or an interceptor publishes a
    # new table, so the same three table objects are still quiet.
    last_quiet: tuple[object, object, object, object] = (None, None, None, None)

    def all_quiet(sender: object) -> bool:
        """Whether sends of all three signals from *sender* certainly reach nobody.

        Asked on every request, so when nothing changed it costs three
        identity checks. Otherwise an empty plan in each signal's published
        routing table means no receiver and no interceptor (the table the
        send path itself reads, without the lock); anything else (receivers,
        interceptors such as the testing tools, a table not yet rebuilt after
        a connect) goes to :func:`is_quiet`. A request that finds everything
        quiet is passed through untouched; a receiver connected meanwhile
        sees the next one.
        """
        nonlocal last_quiet
        r0 = routes_of(started)
        r1 = routes_of(finished)
        r2 = routes_of(exception)
        q_sender, q0, q1, q2 = last_quiet
        if r0 is q0 and r1 is q1 and r2 is q2 and sender is q_sender:
            return True
        key = id(sender)
        if (
            (r0.get(key) or r0[default]) is empty
            and (r1.get(key) or r1[default]) is empty
            and (r2.get(key) or r2[default]) is empty
        ):
            last_quiet = (sender, r0, r1, r2)  # exactly the tables just checked
            return True
        return _slow_all_quiet(sender)

    return all_quiet


all_quiet = _make_all_quiet()


def _slow_all_quiet(sender: object) -> bool:
    return (
        is_quiet(request_started, sender)
        and is_quiet(request_finished, sender)
        and is_quiet(got_request_exception, sender)
    )


def is_quiet(signal: Signal, sender: object) -> bool:
    """Whether a send from *sender* certainly reaches nobody (see ``Signal._is_quiet``).

    Receivers, interceptors such as the testing tools, or a table not yet
    rebuilt answer False and the caller sends for real. ``has_listeners()``
    builds lists; the middlewares ask this on every request, so it must cost
    a dict lookup.
    """
    return hooks.is_quiet(signal, sender)
