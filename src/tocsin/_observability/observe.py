"""Observing dispatch: per-send and per-receiver events, and ``tocsin.observe()``.

While at least one :class:`Observer` is installed, one global interceptor
(see ``_hooks``) sees every send and the receiver observer slot of
``_hooks`` wraps every receiver call, and the later runs of ``via=``
receivers; removing the last observer removes both, so an unobserved
program pays nothing (sends keep their fast path).

The send being delivered is kept in a context variable, so a receiver event
knows its send, and a send made inside a receiver knows its parent, across
threads (each thread starts empty) and asyncio tasks (which copy the context).
``tocsin.trace()`` (see ``_trace``) is the observer that logs and records.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from typing import TYPE_CHECKING, Any, cast

from tocsin._core import hooks as _hooks
from tocsin._core import receivers as _receivers
from tocsin.exceptions import InvalidArgumentError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from tocsin._core.delivery import DeferredCall
    from tocsin._core.signal import Signal

__all__ = [
    "Observation",
    "Observer",
    "ReceiverEvent",
    "SendEvent",
    "export_origin",
    "observe",
    "remote_send",
    "signal_label",
]

logger = logging.getLogger("tocsin")

Responses = list[tuple[Any, Any]]


def signal_label(signal: object) -> str:
    """Return a readable name for *signal*: its given name, else its repr."""
    for attr in ("qualname", "full_name", "name"):
        value = getattr(signal, attr, None)
        if isinstance(value, str) and value:
            return value
    return repr(signal)


class SendEvent:
    """One observed send.

    Attributes:
        signal: the signal sent.
        sender: the sender.
        kwargs: the named arguments (do not mutate).
        robust: True for ``send_robust``/``asend_robust``.
        is_async: True for ``asend``/``asend_robust``.
        parent: the send whose receiver made this send, or ``None``.
        depth: 0 for a top-level send, parent's depth + 1 otherwise.
        thread: name of the sending thread.
        start: ``time.perf_counter()`` when the send started.
        end: when it finished (``None`` while running).
        receivers: the receiver events, in call order.
        deferred: the later runs of its ``via=`` receivers (see
            :class:`ReceiverEvent`), in start order; they may come after the
            send finished, from other threads.
        responses: what the send returned, or ``None`` if it raised.
        error: the exception the send raised, or ``None``.
        extra: a dict observers may use to keep their own state.
        remote: for a stand-in of a send made in another process (the
            origin of a background job run here), the carrier observers
            filled there (see ``Observer.export_send``); else ``None``.

    """

    __slots__ = (
        "deferred",
        "depth",
        "end",
        "error",
        "extra",
        "is_async",
        "kwargs",
        "parent",
        "receivers",
        "remote",
        "responses",
        "robust",
        "sender",
        "signal",
        "start",
        "thread",
    )

    def __init__(self, dispatch: _hooks.Dispatch, parent: SendEvent | None) -> None:
        self.signal: Signal = dispatch.signal
        self.sender = dispatch.sender
        self.kwargs = dispatch.kwargs
        self.robust = dispatch.robust
        self.is_async = dispatch.is_async
        self.parent = parent
        self.depth: int = 0 if parent is None else parent.depth + 1
        self.thread = threading.current_thread().name
        self.start = time.perf_counter()
        self.end: float | None = None
        self.receivers: list[ReceiverEvent] = []
        self.deferred: list[ReceiverEvent] = []
        self.responses: Responses | None = None
        self.error: BaseException | None = None
        self.extra: dict[Any, Any] = {}
        self.remote: dict[str, str] | None = None

    @property
    def label(self) -> str:
        """The signal's name (see :func:`signal_label`)."""
        return signal_label(self.signal)

    @property
    def duration(self) -> float | None:
        """Seconds from start to end, or ``None`` while running."""
        return None if self.end is None else self.end - self.start

    def __repr__(self) -> str:
        return f"<SendEvent {self.label} sender={self.sender!r} receivers={len(self.receivers)}>"


class ReceiverEvent:
    """One observed receiver call.

    Attributes:
        send: the :class:`SendEvent` it belongs to.
        receiver: the receiver called.
        name: its qualified name (a property).
        start, end: ``time.perf_counter()`` around the call.
        result: what it returned (a ``tocsin.Deferred`` for ``via=``).
        error: the exception it raised, or ``None``. Under ``send_robust``
            the send goes on; under ``send`` it propagates.
        deferred: False for a call made by the send (for a ``via=``
            receiver, the hand-off to its policy); True for the policy's
            later run of the receiver, reported to
            ``Observer.deferred_started``/``deferred_finished`` and listed in
            ``send.deferred``.
        extra: a dict observers may use to keep their own state.

    """

    __slots__ = ("_name", "deferred", "end", "error", "extra", "receiver", "result", "send", "start")

    def __init__(self, send: SendEvent, receiver: Any, *, deferred: bool = False) -> None:
        self.send = send
        self.receiver = receiver
        self.deferred = deferred
        self._name: str | None = None
        self.start = time.perf_counter()
        self.end: float | None = None
        self.result: Any = None
        self.error: BaseException | None = None
        self.extra: dict[Any, Any] = {}

    @property
    def name(self) -> str:
        """The receiver's qualified name (computed when first asked for)."""
        if self._name is None:
            self._name = _receivers.qualified_name(self.receiver)
        return self._name

    @property
    def duration(self) -> float | None:
        """Seconds from start to end, or ``None`` while running."""
        return None if self.end is None else self.end - self.start

    def __repr__(self) -> str:
        outcome = "running" if self.end is None else ("ok" if self.error is None else repr(self.error))
        later = " deferred" if self.deferred else ""
        return f"<ReceiverEvent{later} {self.name} {outcome}>"


class Observer:
    """Base class for dispatch observers; override the methods you need.

    Each method is called in the sending thread (or task), synchronously.
    An exception raised by an observer is logged on logger ``tocsin`` and
    otherwise ignored: observing never changes what a send does.
    """

    def send_started(self, event: SendEvent) -> None:
        """Handle the start of a send (its receivers have not run yet)."""

    def send_finished(self, event: SendEvent) -> None:
        """Handle the end of a send (``event.error`` is set if it raised)."""

    def receiver_started(self, event: ReceiverEvent) -> None:
        """Handle a receiver about to be called."""

    def receiver_finished(self, event: ReceiverEvent) -> None:
        """Handle a receiver that returned (``event.result``) or raised (``event.error``)."""

    def deferred_started(self, event: ReceiverEvent) -> None:
        """Handle a ``via=`` receiver about to run later, when its policy calls it.

        ``event.send`` is the observed send that handed it over (often
        finished by now); this runs in the thread (or task) that runs it.
        """

    def deferred_finished(self, event: ReceiverEvent) -> None:
        """Handle the end of a deferred run (``event.result`` or ``event.error``)."""

    def export_send(self, event: SendEvent, carrier: dict[str, str]) -> None:
        """Add to *carrier* what ties *event* to a deferred run in another process.

        Called when a ``via=`` policy stores a receiver call for another
        process (``tocsin.background`` keeps *carrier* in the job row). Put
        strings only (``tocsin.otel`` puts the W3C ``traceparent``).
        """

    def import_send(self, event: SendEvent, carrier: dict[str, str]) -> None:
        """Prepare *event*, a stand-in for a send made in another process, from *carrier*.

        Called in the process that runs the deferred receiver, before
        ``deferred_started``; *event* has ``remote`` set and is not reported
        through ``send_started``/``send_finished``.
        """


_current: contextvars.ContextVar[SendEvent | None] = contextvars.ContextVar("tocsin_send", default=None)


def _notify(observers: tuple[Observer, ...], method: str, event: object) -> None:
    for observer in observers:
        _notify_one(observer, method, event)


def _notify_one(observer: Observer, method: str, event: object) -> None:
    try:
        getattr(observer, method)(event)
    except Exception:
        logger.exception("Observer %r failed in %s", observer, method)


class _Hub:
    """The global interceptor and receiver observer that feed the observers."""

    def __init__(self) -> None:
        self.observers: tuple[Observer, ...] = ()
        self.remove_interceptor: Callable[[], None] | None = None

    # ---- interceptor -------------------------------------------------------

    def _begin(self, dispatch: _hooks.Dispatch) -> tuple[SendEvent, contextvars.Token[SendEvent | None]]:
        event = SendEvent(dispatch, _current.get())
        token = _current.set(event)
        _notify(self.observers, "send_started", event)
        return event, token

    def _end(self, event: SendEvent, token: contextvars.Token[SendEvent | None]) -> None:
        event.end = time.perf_counter()
        _current.reset(token)
        _notify(self.observers, "send_finished", event)

    def send(self, dispatch: _hooks.Dispatch, proceed: Callable[[], Responses]) -> Responses:
        event, token = self._begin(dispatch)
        try:
            event.responses = proceed()
        except BaseException as exc:
            event.error = exc
            raise
        finally:
            self._end(event, token)
        return event.responses

    async def asend(
        self, dispatch: _hooks.Dispatch, proceed: Callable[[], Awaitable[Responses]]
    ) -> Responses:
        event, token = self._begin(dispatch)
        try:
            event.responses = await proceed()
        except BaseException as exc:
            event.error = exc
            raise
        finally:
            self._end(event, token)
        return event.responses

    # ---- receiver observer -----------------------------------------------

    def _start_receiver(self, receiver: Any) -> ReceiverEvent | None:
        send = _current.get()
        if send is None:  # observing started in the middle of this send
            return None
        event = ReceiverEvent(send, receiver)
        send.receivers.append(event)
        _notify(self.observers, "receiver_started", event)
        return event

    def _finish_receiver(self, event: ReceiverEvent) -> None:
        event.end = time.perf_counter()
        _notify(self.observers, "receiver_finished", event)

    def call(self, signal: Signal, receiver: Any, call: Callable[[], Any]) -> Any:
        del signal
        event = self._start_receiver(receiver)
        if event is None:
            return call()
        try:
            event.result = call()
        except BaseException as exc:
            event.error = exc
            raise
        finally:
            self._finish_receiver(event)
        return event.result

    async def acall(self, signal: Signal, receiver: Any, call: Callable[[], Awaitable[Any]]) -> Any:
        del signal
        event = self._start_receiver(receiver)
        if event is None:
            return await call()
        try:
            event.result = await call()
        except BaseException as exc:
            event.error = exc
            raise
        finally:
            self._finish_receiver(event)
        return event.result

    # ---- deferred runs of via= receivers ------------------------------------

    def origin(self) -> SendEvent | None:
        return _current.get()

    def call_deferred(self, origin: object, call: DeferredCall) -> Any:
        event = ReceiverEvent(cast("SendEvent", origin), call.receiver, deferred=True)
        if _receivers.is_async_receiver(call.receiver):
            return self._await_deferred(event, call)
        token = self._start_deferred(event)
        try:
            event.result = call._run()  # noqa: SLF001 - same package
        except BaseException as exc:
            event.error = exc
            raise
        finally:
            self._finish_deferred(event, token)
        return event.result

    async def _await_deferred(self, event: ReceiverEvent, call: DeferredCall) -> Any:
        # Observed from the first await, in the task that awaits the run.
        event.start = time.perf_counter()
        token = self._start_deferred(event)
        try:
            event.result = await call._run()  # noqa: SLF001 - same package
        except BaseException as exc:
            event.error = exc
            raise
        finally:
            self._finish_deferred(event, token)
        return event.result

    def _start_deferred(self, event: ReceiverEvent) -> contextvars.Token[SendEvent | None]:
        event.send.deferred.append(event)
        _notify(self.observers, "deferred_started", event)
        # Sends the receiver makes are children of the send it came from.
        return _current.set(event.send)

    def _finish_deferred(self, event: ReceiverEvent, token: contextvars.Token[SendEvent | None]) -> None:
        _current.reset(token)
        event.end = time.perf_counter()
        _notify(self.observers, "deferred_finished", event)


_hub = _Hub()
_hub_lock = threading.Lock()


def _add(observer: Observer) -> None:
    with _hub_lock:
        _hub.observers = (*_hub.observers, observer)
        if _hub.remove_interceptor is None:
            _hooks.set_receiver_observer(_hub)
            _hub.remove_interceptor = _hooks.add_global_interceptor(_hub)


def _remove(observer: Observer) -> None:
    with _hub_lock:
        if observer not in _hub.observers:
            return
        _hub.observers = tuple(o for o in _hub.observers if o is not observer)
        if not _hub.observers and _hub.remove_interceptor is not None:
            _hub.remove_interceptor()
            _hub.remove_interceptor = None
            _hooks.set_receiver_observer(None)


class Observation:
    """What :func:`observe` returns: a remover that is also a context manager.

    Calling it, or leaving its ``with`` block, stops feeding sends to
    ``observer``; doing so again does nothing. Thread-safe.

    Attributes:
        observer: the observer being fed.

    .. versionadded:: 0.1
    """

    def __init__(self, observer: Observer) -> None:
        self.observer = observer

    def __call__(self) -> None:
        _remove(self.observer)

    def __enter__(self) -> Observer:
        return self.observer

    def __exit__(self, *exc_info: object) -> None:
        _remove(self.observer)


def export_origin(origin: object) -> dict[str, str]:
    """What a deferred run in another process needs to report to the send *origin*.

    *origin* is a ``DeferredCall``'s origin (the observed send). Returns a
    dict of strings: ``send`` (the signal's label) and what each observer
    adds in ``Observer.export_send``. For ``via=`` policies that store calls.
    """
    event = cast("SendEvent", origin)
    carrier = {"send": event.label}
    for observer in _hub.observers:
        _notify_export(observer, event, carrier)
    return carrier


def _notify_export(observer: Observer, event: SendEvent, carrier: dict[str, str]) -> None:
    try:
        observer.export_send(event, carrier)
    except Exception:
        logger.exception("Observer %r failed in export_send", observer)


def _notify_import(observer: Observer, event: SendEvent, carrier: dict[str, str]) -> None:
    try:
        observer.import_send(event, carrier)
    except Exception:
        logger.exception("Observer %r failed in import_send", observer)


def remote_send(signal: Any, sender: Any, named: dict[str, Any], carrier: dict[str, str]) -> SendEvent:
    """A stand-in ``SendEvent`` for a send made in another process, to be a deferred run's origin.

    Built from the *carrier* :func:`export_origin` made there; each observer
    prepares it in ``Observer.import_send``. It has no receivers and is
    already finished.
    """
    dispatch = _hooks.Dispatch(signal, sender, named, robust=False, is_async=False)
    event = SendEvent(dispatch, None)
    event.end = event.start
    event.remote = dict(carrier)
    for observer in _hub.observers:
        _notify_import(observer, event, event.remote)
    return event


def observe(observer: Observer) -> Observation:
    """Start feeding every send of every signal to *observer*.

    Returns a function that stops it (idempotent), which is also a context
    manager::

        with tocsin.observe(MyObserver()):
            ...

    Observers see sync and async sends, each receiver call with its timing,
    result or exception, and sends nested inside receivers (``parent``).
    Nothing is observed, and sending costs nothing extra, once the last
    observer is removed. Thread-safe.

    .. versionadded:: 0.1
    """
    if not isinstance(cast("object", observer), Observer):  # a runtime check for untyped callers
        msg = f"tocsin.observe() takes a tocsin.Observer (subclass it); got {observer!r}."
        raise InvalidArgumentError(msg)
    _add(observer)
    return Observation(observer)
