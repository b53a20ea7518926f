"""``Signal.paused()``: hold sends during a block, deliver them when it exits.

While a signal is paused, an interceptor (see ``_hooks``) takes each send,
records its sender and arguments as a :class:`HeldSend`, and returns ``[]``
without running any receiver. When the block exits, the held sends are
delivered in the order they were made, or, with ``reduce=``, the list is
reduced to one send first (batching: one search-index update for a hundred
saves).

Contract:
    * Global: a pause holds the sends of every thread and task, like
      ``mute()``; it is meant for bulk jobs and tests.
    * Nesting: sends go to the innermost open block. When it exits, its
      sends (reduced by its own ``reduce``) are handed to the enclosing
      block, and only the outermost exit delivers.
    * Exceptions: by default (``on_error="deliver"``) the held sends are
      delivered even when the block raises, since what was sent did happen;
      then the block's exception propagates. ``on_error="drop"`` discards
      them instead. A receiver raising during delivery stops the delivery
      and its exception propagates (chained to the block's, if any).
    * Delivery goes through ``send()`` (``send_robust()`` for sends made
      robustly), so mute, capture and tracing see it as a normal send. Sends
      made with ``asend`` are delivered with ``asend`` when the block is
      left with ``async with``; a plain ``with`` delivers everything with
      the synchronous methods.
    * No cost while no block is open: the interceptor is removed with the
      last block.

Example::

    >>> import tocsin
    >>> sig = tocsin.Signal(name="indexed")
    >>> def index(sender, ids, **kwargs): print("index", ids)
    >>> _ = sig.connect(index)
    >>> def merge(held):
    ...     return tocsin.HeldSend(None, {"ids": [i for h in held for i in h.kwargs["ids"]]})
    >>> with sig.paused(reduce=merge):
    ...     sig.send(None, ids=[1])
    ...     sig.send(None, ids=[2, 3])
    []
    []
    index [1, 2, 3]
"""

from __future__ import annotations

import dataclasses
import threading
import weakref
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal, cast

from tocsin.exceptions import InvalidArgumentError

if TYPE_CHECKING:
    from types import TracebackType

    from .hooks import Dispatch, Responses
    from .signal import Signal

__all__ = ["HeldSend", "Paused", "Reducer"]


@dataclasses.dataclass(frozen=True)
class HeldSend:
    """A send held by ``Signal.paused()``, as a reducer sees and returns it.

    Attributes:
        sender: the sender.
        kwargs: the named arguments.
        robust: deliver with ``send_robust`` (``asend_robust``).
        is_async: made with ``asend``; delivered with it under ``async with``.

    .. versionadded:: 0.1

    """

    sender: Any
    kwargs: dict[str, Any]
    robust: bool = False
    is_async: bool = False


Reducer = Callable[[list[HeldSend]], HeldSend]


class Held(list[tuple[Any, Any]]):
    """The ``[]`` a held send returns; its type tells ``capture()`` it was held."""

    __slots__ = ()


_lock = threading.Lock()


class _Frame:
    __slots__ = ("held",)

    def __init__(self) -> None:
        self.held: list[HeldSend] = []


class _State:
    """The open pause blocks of one signal, and the interceptor holding its sends."""

    __slots__ = ("frames", "remove")

    def __init__(self) -> None:
        self.frames: list[_Frame] = []
        self.remove: Callable[[], None] = lambda: None

    def hold(self, dispatch: Dispatch) -> bool:
        held = HeldSend(dispatch.sender, dict(dispatch.kwargs), dispatch.robust, dispatch.is_async)
        with _lock:
            if not self.frames:  # the last block just closed
                return False
            self.frames[-1].held.append(held)
            return True

    def send(self, dispatch: Dispatch, proceed: Callable[[], Responses]) -> Responses:
        return Held() if self.hold(dispatch) else proceed()

    async def asend(self, dispatch: Dispatch, proceed: Callable[[], Awaitable[Responses]]) -> Responses:
        return Held() if self.hold(dispatch) else await proceed()


_states: weakref.WeakKeyDictionary[Signal, _State] = weakref.WeakKeyDictionary()


class Paused:
    """What ``Signal.paused()`` returns: a (sync or async) context manager.

    .. versionadded:: 0.1
    """

    def __init__(
        self, signal: Signal, reduce: Reducer | None, *, on_error: Literal["deliver", "drop"]
    ) -> None:
        if on_error not in ("deliver", "drop"):
            msg = f"on_error must be 'deliver' or 'drop'; got {on_error!r}."
            raise InvalidArgumentError(msg)
        if not callable(cast("object", reduce)) and reduce is not None:
            msg = f"reduce must be a callable taking a list of HeldSend and returning one; got {reduce!r}."
            raise InvalidArgumentError(msg)
        self.signal = signal
        self.reduce = reduce
        self.on_error = on_error
        self._frames: list[_Frame] = []

    def __repr__(self) -> str:
        return f"<Paused {self.signal!r}>"

    def __enter__(self) -> Paused:  # noqa: PYI034 - final in practice
        frame = _Frame()
        with _lock:
            state = _states.get(self.signal)
            install = state is None
            if state is None:
                state = _states[self.signal] = _State()
            state.frames.append(frame)
        if install:
            state.remove = self.signal.add_interceptor(state)
        self._frames.append(frame)
        return self

    def _close(self, failed: bool) -> list[HeldSend]:  # noqa: FBT001
        """Close the innermost block of this object; return what to deliver now."""
        frame = self._frames.pop()
        with _lock:
            state = _states[self.signal]
            state.frames.remove(frame)
        held: list[HeldSend] = []
        try:
            if not (failed and self.on_error == "drop"):
                held = [self.reduce(frame.held)] if self.reduce is not None and frame.held else frame.held
        finally:  # even if reduce raises, the last block must remove the interceptor
            with _lock:
                last = not state.frames
                if last:
                    del _states[self.signal]
                else:
                    state.frames[-1].held.extend(held)
                    held = []
            if last:
                state.remove()
        return held

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for held in self._close(exc_type is not None):
            send = self.signal.send_robust if held.robust else self.signal.send
            send(held.sender, **held.kwargs)

    async def __aenter__(self) -> Paused:  # noqa: PYI034 - final in practice
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for held in self._close(exc_type is not None):
            sig = self.signal
            if held.is_async:
                await (sig.asend_robust if held.robust else sig.asend)(held.sender, **held.kwargs)
            else:
                (sig.send_robust if held.robust else sig.send)(held.sender, **held.kwargs)
