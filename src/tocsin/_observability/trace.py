"""``tocsin.trace()``: the observer that logs every send and records a timeline.

Example::

    >>> import tocsin
    >>> sig = tocsin.Signal(name="ping")
    >>> def pong(sender, **kwargs):
    ...     return "pong"
    >>> _ = sig.connect(pong)
    >>> with tocsin.trace() as t:
    ...     _ = sig.send(sender=None)
    >>> [(s.label, [r.result for r in s.receivers]) for s in t.sends]
    [('ping', ['pong'])]
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from .observe import Observer, ReceiverEvent, SendEvent, observe

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["Trace", "format_timeline", "sender_label", "trace"]

trace_logger = logging.getLogger("tocsin.trace")
_MAX_REPR = 80  # characters of a sender repr in a log line


def _ms(seconds: float | None) -> str:
    return "?" if seconds is None else f"{seconds * 1000:.3f} ms"


def sender_label(sender: object) -> str:
    """A short, readable label for *sender* in logs, timelines and spans."""
    if sender is None:
        return "None"
    if isinstance(sender, type):
        return f"{sender.__module__}.{sender.__qualname__}"
    try:
        text = repr(sender)
    except Exception:  # noqa: BLE001 - a log line must never fail
        text = object.__repr__(sender)
    return text if len(text) <= _MAX_REPR else text[: _MAX_REPR - 3] + "..."


def _error_label(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


class Trace(Observer):
    """The observer :func:`trace` installs: logs, and records every send.

    Attributes:
        sends: every observed send, nested ones included, in start order.
        origin: ``time.perf_counter()`` when tracing started.

    """

    def __init__(
        self, *, log: logging.Logger | None = None, level: int | None = logging.DEBUG, record: bool = True
    ) -> None:
        self.log = trace_logger if log is None else log
        self.level = level  # None: record only
        self.record = record
        self.sends: list[SendEvent] = []
        self.origin = time.perf_counter()
        self._lock = threading.Lock()

    def send_started(self, event: SendEvent) -> None:
        if self.record:
            with self._lock:
                self.sends.append(event)
        if self.level is not None and self.log.isEnabledFor(self.level):
            kind = ("asend" if event.is_async else "send") + ("_robust" if event.robust else "")
            self.log.log(
                self.level,
                "%s%s %s sender=%s%s kwargs=%s",
                "  " * event.depth,
                kind,
                event.label,
                sender_label(event.sender),
                remote_label(event.kwargs),
                sorted(event.kwargs),
            )

    def receiver_finished(self, event: ReceiverEvent) -> None:
        if self.level is not None and self.log.isEnabledFor(self.level):
            outcome = "ok" if event.error is None else f"raised {_error_label(event.error)}"
            self.log.log(
                self.level,
                "%s  %s %s %s",
                "  " * event.send.depth,
                event.name,
                _ms(event.duration),
                outcome,
            )

    def deferred_finished(self, event: ReceiverEvent) -> None:
        if self.level is not None and self.log.isEnabledFor(self.level):
            outcome = "ok" if event.error is None else f"raised {_error_label(event.error)}"
            self.log.log(
                self.level,
                "%sdeferred %s for %s %s %s",
                "  " * event.send.depth,
                event.name,
                event.send.label,
                _ms(event.duration),
                outcome,
            )

    def send_finished(self, event: SendEvent) -> None:
        if self.level is not None and self.log.isEnabledFor(self.level):
            outcome = "" if event.error is None else f" raised {_error_label(event.error)}"
            self.log.log(
                self.level,
                "%sdone %s: %d receivers in %s%s",
                "  " * event.depth,
                event.label,
                len(event.receivers),
                _ms(event.duration),
                outcome,
            )

    def timeline(self) -> str:
        """Return the recorded sends as a plain-text timeline, one line per event."""
        return "\n".join(format_timeline(self.sends, self.origin))


def remote_label(kwargs: dict[str, Any]) -> str:
    """`` from <process>#<seq> via <bus>`` for a send re-sent by ``tocsin.broadcast``, else ``""``.

    Its ``origin=`` argument is recognised by a marker attribute: this layer
    cannot import the broadcast layer above it.
    """
    origin = kwargs.get("origin")
    if not getattr(type(origin), "__tocsin_origin__", False):
        return ""
    return f" from {origin} via {getattr(origin, 'bus', '?')}"


def format_timeline(sends: list[SendEvent], origin: float) -> Iterator[str]:
    """Yield the lines of a timeline of *sends* (times relative to *origin*).

    A send made inside a receiver is shown, indented, under that receiver.
    """
    calls = sum(len(s.receivers) for s in sends)
    runs = sum(len(s.deferred) for s in sends)
    failures = sum(1 for s in sends for r in (*s.receivers, *s.deferred) if r.error is not None)
    in_receivers = sum(r.duration or 0.0 for s in sends if s.parent is None for r in s.receivers)
    later = f", {runs} deferred run{'s' * (runs != 1)}" if runs else ""
    yield (
        f"{len(sends)} send{'s' * (len(sends) != 1)}, {calls} receiver call{'s' * (calls != 1)}{later}, "
        f"{failures} failure{'s' * (failures != 1)}, {_ms(in_receivers)} in receivers"
    )
    children: dict[int, list[SendEvent]] = {}
    for send in sends:
        if send.parent is not None:
            children.setdefault(id(send.parent), []).append(send)
    for send in sends:
        if send.parent is None or not any(send.parent is s for s in sends):
            yield from _send_lines(send, origin, children)


def _send_lines(send: SendEvent, origin: float, children: dict[int, list[SendEvent]]) -> Iterator[str]:
    indent = "  " * send.depth
    kind = ("asend" if send.is_async else "send") + ("_robust" if send.robust else "")
    thread = "" if send.thread == "MainThread" else f" [{send.thread}]"
    outcome = "" if send.error is None else f"  raised {_error_label(send.error)}"
    sender = f"sender={sender_label(send.sender)}{remote_label(send.kwargs)}"
    yield (
        f"{(send.start - origin) * 1000:10.3f} ms  {indent}{kind} {send.label} "
        f"{sender} ({_ms(send.duration)}){thread}{outcome}"
    )
    nested = children.get(id(send), [])
    for event in send.receivers:
        status = "ok" if event.error is None else f"FAILED {_error_label(event.error)}"
        yield f"{'':13}  {indent}  {_ms(event.duration):>10}  {event.name}  {status}"
        end = event.end if event.end is not None else float("inf")
        for child in nested:
            if event.start <= child.start <= end:
                yield from _send_lines(child, origin, children)
    for event in list(send.deferred):
        status = "running" if event.end is None else "ok" if event.error is None else "FAILED"
        if event.error is not None:
            status += f" {_error_label(event.error)}"
        yield (
            f"{(event.start - origin) * 1000:10.3f} ms  {indent}  deferred {event.name}  "
            f"({_ms(event.duration)})  {status}"
        )
        end = event.end if event.end is not None else float("inf")
        for child in nested:
            if event.start <= child.start <= end:
                yield from _send_lines(child, origin, children)


@contextlib.contextmanager
def trace(
    *, log: logging.Logger | None = None, level: int | None = logging.DEBUG, record: bool = True
) -> Iterator[Trace]:
    """Trace every send while the ``with`` block runs.

    Each send, and each receiver call with its duration and outcome, is
    logged on logger ``tocsin.trace`` (or *log*) at DEBUG (or *level*); the
    ``Trace`` yielded also records the sends (``trace.sends``,
    ``trace.timeline()``) unless ``record=False``; ``level=None`` turns
    logging off. Recording keeps every
    send's arguments alive until the trace is dropped: use it for debugging
    and tests, and ``record=False`` for long runs.

    .. versionadded:: 0.1
    """
    tracer = Trace(log=log, level=level, record=record)
    with observe(tracer):
        yield tracer
