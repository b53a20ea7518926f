"""Testing helpers: record sends, assert on them, silence receivers.

Nothing here needs pytest; the pytest plugin (``tocsin._pytest_plugin``,
registered automatically) only wraps these as fixtures and a marker.

* :func:`capture` records every send of some signals (or of all signals):
  sender, arguments, which receivers ran and what they returned, even when
  no receiver is connected. Its result has ``unittest.mock``-style
  assertions whose failure messages list what *was* sent.
* :class:`mute` silences whole signals or single receivers, nesting
  correctly (see ``tocsin._mute``).

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

import dataclasses
import threading
from typing import TYPE_CHECKING, Any

from ._core.hooks import add_global_interceptor
from ._core.pause import Held
from ._tools.mute import mute

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator, Sequence
    from types import TracebackType

    from ._core.hooks import Dispatch, Responses
    from ._core.signal import Signal

__all__ = ["Capture", "SentSignal", "capture", "mute"]

_NOT_GIVEN: Any = object()


@dataclasses.dataclass(frozen=True)
class SentSignal:
    """One recorded send.

    Attributes:
        signal: the signal sent.
        sender: the sender.
        kwargs: the named arguments (without ``signal``/``sender``).
        responses: ``[(receiver, response)]`` as the send returned them;
            empty if it raised.
        error: the exception the send raised (``send`` only), else ``None``.
        robust: made with ``send_robust``/``asend_robust``.
        is_async: made with ``asend``/``asend_robust``.

    .. versionadded:: 0.1

    """

    signal: Signal
    sender: Any
    kwargs: dict[str, Any]
    responses: list[tuple[Any, Any]]
    error: BaseException | None = None
    robust: bool = False
    is_async: bool = False

    @property
    def receivers(self) -> list[Any]:
        """The receivers that ran, in order."""
        return [receiver for receiver, _ in self.responses]

    @property
    def results(self) -> list[Any]:
        """What each receiver returned (or, for robust sends, raised)."""
        return [response for _, response in self.responses]

    def describe(self) -> str:
        """One line: the signal, sender, arguments and the receivers that ran."""
        ran = ", ".join(_name(r) for r in self.receivers) or "no receivers ran"
        if self.error is not None:
            ran += f"; raised {self.error!r}"
        return f"{_signal_name(self.signal)}: {_call_args(self.sender, self.kwargs)} ({ran})"


def _name(obj: object) -> str:
    return getattr(obj, "__qualname__", None) or repr(obj)


def _signal_name(signal: Signal) -> str:
    return signal.name or repr(signal)


def _call_args(sender: Any, kwargs: dict[str, Any]) -> str:
    parts = [] if sender is _NOT_GIVEN else [f"sender={sender!r}"]
    parts.extend(f"{k}={v!r}" for k, v in kwargs.items())
    return ", ".join(parts)


class _Recorder:
    """The interceptor behind :class:`Capture`."""

    __slots__ = ("capture",)

    def __init__(self, capture: Capture) -> None:
        self.capture = capture

    def _wanted(self, dispatch: Dispatch) -> bool:
        signals = self.capture.signals
        return not signals or any(s is dispatch.signal for s in signals)

    def _record(self, dispatch: Dispatch, responses: Responses, error: BaseException | None) -> None:
        # A send held by Signal.paused() returns [] now and is recorded when
        # it is delivered; recording it twice would count it twice.
        if type(responses) is Held:
            return
        entry = SentSignal(
            dispatch.signal,
            dispatch.sender,
            dict(dispatch.named),
            list(responses),
            error,
            dispatch.robust,
            dispatch.is_async,
        )
        with self.capture._lock:  # noqa: SLF001 - the capture's own recorder
            self.capture.sent.append(entry)

    def send(self, dispatch: Dispatch, proceed: Callable[[], Responses]) -> Responses:
        if not self._wanted(dispatch):
            return proceed()
        try:
            responses = proceed()
        except BaseException as exc:
            self._record(dispatch, [], exc)
            raise
        self._record(dispatch, responses, None)
        return responses

    async def asend(self, dispatch: Dispatch, proceed: Callable[[], Awaitable[Responses]]) -> Responses:
        if not self._wanted(dispatch):
            return await proceed()
        try:
            responses = await proceed()
        except BaseException as exc:
            self._record(dispatch, [], exc)
            raise
        self._record(dispatch, responses, None)
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
        recorder = _Recorder(self)
        if self.signals:
            self._removers = [s.add_interceptor(recorder) for s in self.signals]
        else:
            self._removers = [add_global_interceptor(recorder)]
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for remove in self._removers:
            remove()
        self._removers = []

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
