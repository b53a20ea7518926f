"""Testing helpers: record sends, assert on them, silence receivers.

Nothing here needs pytest; the pytest plugin (``tocsin._pytest_plugin``,
registered automatically) only wraps these as fixtures and a marker.

* :func:`capture` records every send of some signals (or of all signals):
  sender, arguments, which receivers ran and what they returned, even when
  no receiver is connected. Its result has ``unittest.mock``-style
  assertions whose failure messages list what *was* sent.
* :class:`mute` silences whole signals or single receivers, nesting
  correctly (see ``tocsin._mute``).
* :func:`check` finds the classic receiver mistakes in source code without
  running it (what ``tocsin check`` reports), as :class:`Finding` objects:
  ``assert check("myapp") == []`` keeps them out of a codebase.

Example::

    >>> import tocsin
    >>> from tocsin.testing import capture
    >>> order_placed = tocsin.Signal(name="order_placed")
    >>> with capture(order_placed) as sent:
    ...     _ = order_placed.send("shop", order_id=7)
    >>> sent.assert_sent_once_with(sender="shop", order_id=7)
    >>> sent.assert_sent_once_with(sender="shop", order_id=8)
    Traceback (most recent call last):
    ...
    AssertionError: expected order_placed to be sent once with sender='shop', order_id=8; it was sent 1 time:
      1. order_placed: sender='shop', order_id=7 (no receivers ran)

``capture`` is process-wide, like the signals it watches: sends from other
threads and tasks are recorded too (in the order they happen).

.. versionadded:: 0.1
"""

from __future__ import annotations

import contextvars
import dataclasses
import threading
from typing import TYPE_CHECKING, Any

from ._core.hooks import add_global_interceptor, add_receiver_observer
from ._core.pause import Held
from ._observability.check import Finding, check
from ._tools.mute import mute

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator, Sequence
    from types import TracebackType

    from ._core.hooks import Dispatch, Responses
    from ._core.signal import Signal

__all__ = ["Capture", "Finding", "ReceiverCall", "SentSignal", "capture", "check", "mute"]

_NOT_GIVEN: Any = object()


@dataclasses.dataclass(frozen=True)
class ReceiverCall:
    """One receiver call of a recorded send, in the order the calls started.

    Attributes:
        receiver: the receiver called.
        result: what it returned (``None`` if it raised or had not finished).
        error: the exception it raised, else ``None``. Under ``asend``, the
            receivers still running when another one raised are cancelled:
            their error is the cancellation (``asyncio.CancelledError`` or
            ``trio.Cancelled``).
        finished: ``False`` if it was still running when the send ended (a
            synchronous receiver that a cancelled ``asend`` had started in
            its worker thread, which cannot be interrupted).

    .. versionadded:: 0.1

    """

    receiver: Any
    result: Any = None
    error: BaseException | None = None
    finished: bool = True


@dataclasses.dataclass(frozen=True)
class SentSignal:
    """One recorded send.

    Attributes:
        signal: the signal sent.
        sender: the sender.
        kwargs: the named arguments (without ``signal``/``sender``).
        responses: ``[(receiver, response)]`` as the send returned them;
            empty if it raised.
        error: the exception the send raised (``send``/``asend`` only; a
            receiver's, or the ``SendArgumentsError`` of a send refused by
            ``TypedSignal(validate=True)``), else ``None``.
        robust: made with ``send_robust``/``asend_robust``.
        is_async: made with ``asend``/``asend_robust``.
        calls: every receiver call, as :class:`ReceiverCall`, in the order
            they started (concurrent ``asend`` receivers: as they started).

    .. versionadded:: 0.1

    """

    signal: Signal
    sender: Any
    kwargs: dict[str, Any]
    responses: list[tuple[Any, Any]]
    error: BaseException | None = None
    robust: bool = False
    is_async: bool = False
    calls: tuple[ReceiverCall, ...] = ()

    @property
    def receivers(self) -> list[Any]:
        """The receivers that ran, in order.

        For a send that returned, in the order of ``responses``; for one
        that raised, in the order they started, the one that raised
        included (see ``raised_by``).
        """
        if self.error is not None:
            return [call.receiver for call in self.calls]
        return [receiver for receiver, _ in self.responses]

    @property
    def results(self) -> list[Any]:
        """What each receiver returned (or, for robust sends, raised).

        For a send that raised: for each receiver in ``receivers``, what it
        returned, or the exception it raised.
        """
        if self.error is not None:
            return [call.result if call.error is None else call.error for call in self.calls]
        return [response for _, response in self.responses]

    @property
    def raised_by(self) -> Any:
        """The receiver whose exception the send raised, or ``None``.

        ``None`` also when the error did not come from a receiver (a send
        refused by validation, or an interceptor's error).
        """
        error = self.error
        if error is None:
            return None
        return next((call.receiver for call in self.calls if call.error is error), None)

    def describe(self) -> str:
        """One line: the signal, sender, arguments and the receivers that ran, and what raised."""
        if self.error is not None:
            items = [_describe_call(call) for call in self.calls]
        else:
            raised = {id(call.error) for call in self.calls if call.error is not None}
            items = [
                f"{_name(receiver)} raised {result!r}"
                if isinstance(result, BaseException) and id(result) in raised
                else _name(receiver)
                for receiver, result in self.responses
            ]
        ran = ", ".join(items) or "no receivers ran"
        if self.error is not None and self.raised_by is None:
            ran += f"; raised {self.error!r}"
        return f"{_signal_name(self.signal)}: {_call_args(self.sender, self.kwargs)} ({ran})"


def _describe_call(call: ReceiverCall) -> str:
    if call.error is not None:
        return f"{_name(call.receiver)} raised {call.error!r}"
    return _name(call.receiver) if call.finished else f"{_name(call.receiver)} (still running)"


def _name(obj: object) -> str:
    return getattr(obj, "__qualname__", None) or repr(obj)


def _signal_name(signal: Signal) -> str:
    return signal.name or repr(signal)


def _call_args(sender: Any, kwargs: dict[str, Any]) -> str:
    parts = [] if sender is _NOT_GIVEN else [f"sender={sender!r}"]
    parts.extend(f"{k}={v!r}" for k, v in kwargs.items())
    return ", ".join(parts)


class _Run:
    """One receiver call while it happens (a :class:`ReceiverCall` once the send ends)."""

    __slots__ = ("error", "finished", "receiver", "result")

    def __init__(self, receiver: Any) -> None:
        self.receiver = receiver
        self.result: Any = None
        self.error: BaseException | None = None
        self.finished = False


# The send being recorded in this context: its Dispatch and the call lists of
# the captures recording it (several captures may watch one send). Worker
# threads and tasks of the send copy the context, so their calls land here;
# a send of another signal, captured or not, never matches the Dispatch.
_recording: contextvars.ContextVar[tuple[Dispatch, tuple[list[_Run], ...]] | None] = contextvars.ContextVar(
    "tocsin_capture", default=None
)


class _CallRecorder:
    """The receiver observer (see ``_hooks.add_receiver_observer``) of every open capture."""

    def _start(self, signal: Signal, receiver: Any) -> _Run | None:
        current = _recording.get()
        if current is None or current[0].signal is not signal:
            return None
        run = _Run(receiver)
        for calls in current[1]:
            calls.append(run)
        return run

    def call(self, signal: Signal, receiver: Any, call: Callable[[], Any]) -> Any:
        run = self._start(signal, receiver)
        if run is None:
            return call()
        try:
            run.result = call()
        except BaseException as exc:
            run.error = exc
            raise
        finally:
            run.finished = True
        return run.result

    async def acall(self, signal: Signal, receiver: Any, call: Callable[[], Awaitable[Any]]) -> Any:
        run = self._start(signal, receiver)
        if run is None:
            return await call()
        try:
            run.result = await call()
        except BaseException as exc:
            run.error = exc
            raise
        finally:
            run.finished = True
        return run.result


_call_recorder = _CallRecorder()
_observer_lock = threading.Lock()
_observer_users = 0
_remove_observer: Callable[[], None] | None = None


def _use_call_recorder(delta: int) -> None:
    """Install the receiver observer with the first open capture, remove it with the last."""
    global _observer_users, _remove_observer  # noqa: PLW0603 - guarded by _observer_lock
    with _observer_lock:
        _observer_users += delta
        if delta > 0 and _observer_users == 1:
            _remove_observer = add_receiver_observer(_call_recorder)
        elif delta < 0 and _observer_users == 0 and _remove_observer is not None:
            _remove_observer()
            _remove_observer = None


class _Recorder:
    """The interceptor behind :class:`Capture`.

    It records each send when it ends; the receiver observer above tells it
    which receivers ran, so a send that raised still says so. On a signal it
    runs before the signal's other interceptors, so it also sees a send that
    ``TypedSignal(validate=True)`` refuses.
    """

    __slots__ = ("capture",)

    def __init__(self, capture: Capture) -> None:
        self.capture = capture

    def _begin(self, dispatch: Dispatch) -> tuple[list[_Run], contextvars.Token[Any]]:
        calls: list[_Run] = []
        current = _recording.get()
        if current is not None and current[0] is dispatch:  # another capture of this send
            return calls, _recording.set((dispatch, (*current[1], calls)))
        return calls, _recording.set((dispatch, (calls,)))

    def _record(
        self, dispatch: Dispatch, responses: Responses, error: BaseException | None, runs: list[_Run]
    ) -> None:
        # A send held by Signal.paused() returns [] now and is recorded when
        # it is delivered; recording it twice would count it twice.
        if type(responses) is Held:
            return
        entry = SentSignal(
            dispatch.signal,
            dispatch.sender,
            dict(dispatch.kwargs),
            list(responses),
            error,
            dispatch.robust,
            dispatch.is_async,
            tuple(ReceiverCall(r.receiver, r.result, r.error, r.finished) for r in runs),
        )
        with self.capture._lock:  # noqa: SLF001 - the capture's own recorder
            self.capture.sent.append(entry)

    def send(self, dispatch: Dispatch, proceed: Callable[[], Responses]) -> Responses:
        runs, token = self._begin(dispatch)
        try:
            responses = proceed()
        except BaseException as exc:
            self._record(dispatch, [], exc, runs)
            raise
        finally:
            _recording.reset(token)
        self._record(dispatch, responses, None, runs)
        return responses

    async def asend(self, dispatch: Dispatch, proceed: Callable[[], Awaitable[Responses]]) -> Responses:
        runs, token = self._begin(dispatch)
        try:
            responses = await proceed()
        except BaseException as exc:
            self._record(dispatch, [], exc, runs)
            raise
        finally:
            _recording.reset(token)
        self._record(dispatch, responses, None, runs)
        return responses


class Capture:
    """The sends recorded by :func:`capture`, with assertions.

    Attributes:
        signals: the signals watched; empty means every signal.
        sent: every :class:`SentSignal`, in the order the sends finished.

    The assertion methods take ``signal=`` to look at one signal when
    several are captured, and ``sender=`` plus named arguments to compare
    with (``unittest.mock.ANY`` matches anything). Leaving out ``sender``
    matches any sender.

    .. versionadded:: 0.1

    """

    def __init__(self, signals: Sequence[Signal]) -> None:
        self.signals = tuple(signals)
        self.sent: list[SentSignal] = []
        self._lock = threading.Lock()
        self._removers: list[Callable[[], None]] = []

    def __repr__(self) -> str:
        return f"<Capture of {len(self.sent)} sends>"

    def __len__(self) -> int:
        return len(self.sent)

    def __iter__(self) -> Iterator[SentSignal]:
        return iter(list(self.sent))

    def __enter__(self) -> Capture:  # noqa: PYI034 - final in practice
        _use_call_recorder(+1)
        recorder = _Recorder(self)
        if self.signals:
            # Outermost: before a validator that may refuse the send.
            self._removers = [s.add_interceptor(recorder, outermost=True) for s in self.signals]
        else:
            self._removers = [add_global_interceptor(recorder)]
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        removers, self._removers = self._removers, []
        for remove in removers:
            remove()
        if removers:
            _use_call_recorder(-1)

    def clear(self) -> None:
        """Forget the sends recorded so far."""
        with self._lock:
            self.sent.clear()

    def sends(self, signal: Signal | None = None) -> list[SentSignal]:
        """Return the recorded sends, of *signal* only if given."""
        with self._lock:
            return [s for s in self.sent if signal is None or s.signal is signal]

    # ---- assertions ------------------------------------------------------

    def _what(self, signal: Signal | None) -> str:
        if signal is not None:
            return _signal_name(signal)
        if len(self.signals) == 1:
            return _signal_name(self.signals[0])
        return "a signal"

    def _report(self, sends: list[SentSignal]) -> str:
        if not sends:
            return "it was not sent."
        times = "time" if len(sends) == 1 else "times"
        lines = [f"it was sent {len(sends)} {times}:"]
        lines.extend(f"  {i}. {s.describe()}" for i, s in enumerate(sends, 1))
        return "\n".join(lines)

    @staticmethod
    def _matches(sent: SentSignal, sender: Any, kwargs: dict[str, Any]) -> bool:
        if sender is not _NOT_GIVEN and not (sender == sent.sender or sent.sender is sender):
            return False
        return kwargs == sent.kwargs

    def assert_sent(self, *, signal: Signal | None = None) -> None:
        """Assert that the signal was sent at least once."""
        if not self.sends(signal):
            msg = f"expected {self._what(signal)} to be sent; it was not sent."
            raise AssertionError(msg)

    def assert_sent_once(self, *, signal: Signal | None = None) -> None:
        """Assert that the signal was sent exactly once."""
        sends = self.sends(signal)
        if len(sends) != 1:
            msg = f"expected {self._what(signal)} to be sent once; {self._report(sends)}"
            raise AssertionError(msg)

    def assert_not_sent(self, *, signal: Signal | None = None) -> None:
        """Assert that the signal was not sent."""
        sends = self.sends(signal)
        if sends:
            msg = f"expected {self._what(signal)} not to be sent; {self._report(sends)}"
            raise AssertionError(msg)

    def assert_sent_with(
        self, *, signal: Signal | None = None, sender: Any = _NOT_GIVEN, **kwargs: Any
    ) -> None:
        """Assert that the *last* send had these sender and arguments."""
        sends = self.sends(signal)
        if not sends or not self._matches(sends[-1], sender, kwargs):
            expected = _call_args(sender, kwargs)
            msg = f"expected {self._what(signal)} to be sent last with {expected}; {self._report(sends)}"
            raise AssertionError(msg)

    def assert_sent_once_with(
        self, *, signal: Signal | None = None, sender: Any = _NOT_GIVEN, **kwargs: Any
    ) -> None:
        """Assert that the signal was sent exactly once, with these sender and arguments."""
        sends = self.sends(signal)
        if len(sends) != 1 or not self._matches(sends[0], sender, kwargs):
            expected = _call_args(sender, kwargs)
            msg = f"expected {self._what(signal)} to be sent once with {expected}; {self._report(sends)}"
            raise AssertionError(msg)

    def assert_any_send(
        self, *, signal: Signal | None = None, sender: Any = _NOT_GIVEN, **kwargs: Any
    ) -> None:
        """Assert that some send had these sender and arguments."""
        sends = self.sends(signal)
        if not any(self._matches(s, sender, kwargs) for s in sends):
            expected = _call_args(sender, kwargs)
            msg = f"expected {self._what(signal)} to have been sent with {expected}; {self._report(sends)}"
            raise AssertionError(msg)


def capture(*signals: Signal) -> Capture:
    """Record the sends of *signals* (of every signal if none is given).

    Use as a context manager: ``with capture(post_save) as sent: ...``.
    Sends are recorded when they finish, including failed ones (with their
    ``error``), sends that reach no receiver, and muted sends (no receivers
    ran). A send held by ``Signal.paused()`` is recorded when it is
    delivered, if the capture is still open then. Receivers run as usual:
    capturing observes, it does not stop delivery (combine with ``mute`` to
    do both).

    .. versionadded:: 0.1
    """
    return Capture(signals)
