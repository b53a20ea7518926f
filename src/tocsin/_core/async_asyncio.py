"""Async sending: ``asend`` on asyncio, async receivers from a sync ``send``.

``asend``/``asend_robust`` run on asyncio here and on trio in
``_async_trio``.

Order and concurrency (``async_mode="concurrent"``, Django's semantics):
the synchronous receivers run one after another, in order, in one worker
thread (with the caller's contextvars copied in) so they never block the
event loop; meanwhile the async receivers run concurrently as tasks. The
result lists the synchronous receivers first, then the async ones, each
group in priority/connection order. Receivers connected ``via=`` a
delivery policy are handed to it in the event loop's thread, first.

With ``async_mode="sequential"`` every receiver runs alone, in
priority/connection order: sync ones in the worker thread, async ones
awaited in turn; the result is in that same order.

Failures (``asend``): the first exception propagates unchanged. Async
receivers still running are cancelled and awaited first, and the worker
thread runs no further receiver and is waited for, so nothing of this send
runs after ``asend`` raises. ``asend_robust`` collects every ``Exception``
as the receiver's response and logs it.

Cancellation: cancelling the task awaiting ``asend`` cancels the running
async receivers, awaits them and re-raises. A synchronous receiver already
running in the worker thread cannot be interrupted: it finishes in the
background, and the receivers after it do not start.

Sync ``send()`` with async receivers: the sync receivers run first, in
order; then the async ones run concurrently on an event loop kept for the
calling thread (one loop per thread, not one per send). That loop is closed
when its thread ends, before ``join()`` returns (see ``_LoopOwner``), and
the main thread's at exit. Inside a running
event loop that cannot work without blocking it, so ``send()`` raises
``RuntimeError`` naming ``asend`` before calling any receiver, unless an
integration set ``awaiter`` (see below) to a way of waiting from there.
"""

from __future__ import annotations

import asyncio
import atexit
import contextvars
import sys
import threading
import types
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from tocsin.exceptions import AsyncContextError

from . import hooks as _hooks
from .errors import call_handler
from .records import is_async, on_error_of, resolve, via_of

if TYPE_CHECKING:
    from .records import Record
    from .signal import Signal

__all__ = ["asend", "run_async_receivers"]

Responses = list[tuple[Any, Any]]
_CoroutineType = types.CoroutineType
# A resolved receiver with its record: what the loops below work on.
Entry = tuple[Any, "Record | None"]
# The method a robust async send's failure log names (see Dispatching._log_failure).
_ROBUST = "asend_robust"


def _running_library() -> str | None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        return "asyncio"
    trio = sys.modules.get("trio")
    if trio is not None:
        try:
            trio.lowlevel.current_trio_token()
        except RuntimeError:
            return None
        return "trio"
    return None


class _SyncBatch:
    """Runs sync receivers in a worker thread; stoppable between receivers."""

    def __init__(self, signal: Signal, entries: Sequence[Entry], sender: Any, named: dict[str, Any]) -> None:
        self.signal = signal
        self.entries = entries
        self.sender = sender
        self.named = named
        self.robust = False
        self.stopped = False
        self.started = False
        self.finished = threading.Event()
        self.responses: Responses = []

    def run(self) -> Responses:
        self.started = True
        try:
            for receiver, record in self.entries:
                if self.stopped:
                    break
                call = self.signal._call_entry  # noqa: SLF001 - the signal's own delivery step
                response = call(receiver, record, self.sender, self.named, robust=self.robust, method=_ROBUST)
                self.responses.append((receiver, response))
        finally:
            self.finished.set()
        return self.responses


def split(signal: Signal, sender: Any) -> tuple[list[Entry], list[Entry], list[Entry]]:
    """Return (delivery-policy, sync, async) entries for *sender*, in order."""
    plan = signal._plan_for(sender)  # noqa: SLF001
    if plan.__class__ is tuple:  # only plain sync receivers
        return [], signal._entries_for(sender), []  # noqa: SLF001
    via, sync, asyn = plan.via_records, plan.sync_records, plan.async_records
    return (_live(via) if via else []), (_live(sync) if sync else []), (_live(asyn) if asyn else [])


def _live(records: tuple[Record, ...]) -> list[Entry]:
    entries: list[Entry] = []
    for record in records:
        receiver = resolve(record)
        if receiver is not None:
            entries.append((receiver, record))
    return entries


async def asend(  # noqa: C901, PLR0912 - one place for the whole failure protocol
    signal: Signal, sender: Any, named: dict[str, Any], *, robust: bool
) -> Responses:
    """Deliver one async send (interceptors already applied)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        library = _running_library()
    else:
        library = "asyncio"
    if library == "trio":
        from .async_trio import asend_trio  # noqa: PLC0415 - only under trio

        return await asend_trio(signal, sender, named, robust=robust)
    if library != "asyncio":
        msg = "Signal.asend() must be awaited inside an asyncio or trio event loop."
        raise AsyncContextError(msg)
    if signal.async_mode == "sequential":
        entries = signal._entries_for(sender)  # noqa: SLF001
        return await _sequential(signal, entries, sender, named, robust=robust, to_thread=_in_executor)
    via, sync, asyn = split(signal, sender)
    call_entry = signal._call_entry  # noqa: SLF001 - the signal's own delivery step
    responses: Responses = (
        [
            (receiver, call_entry(receiver, record, sender, named, robust=robust, method=_ROBUST))
            for receiver, record in via
        ]
        if via
        else []
    )
    tasks = _start_tasks(signal, asyn, sender, named, robust=robust) if asyn else []
    batch = thread = None
    if sync:
        batch = _SyncBatch(signal, sync, sender, named)
        batch.robust = robust
        thread = asyncio.get_running_loop().run_in_executor(None, contextvars.copy_context().run, batch.run)
    waiting: list[asyncio.Future[Any]] = tasks if thread is None else [thread, *tasks]
    try:
        if len(waiting) == 1:
            results = [await waiting[0]]
        elif waiting:
            results = await asyncio.gather(*waiting)
        else:
            results = []
    except BaseException:
        if batch is not None:
            batch.stopped = True
        await _cancel_and_wait(tasks)
        if thread is not None and not isinstance(sys.exc_info()[1], asyncio.CancelledError):
            await asyncio.wait([thread])
        raise
    async_results = results[1:] if thread is not None else results
    if batch is not None:
        responses.extend(batch.responses)
    responses += [(entry[0], result) for entry, result in zip(asyn, async_results, strict=True)]
    return responses


def start(signal: Signal, sender: Any, named: dict[str, Any]) -> Coroutine[Any, Any, Responses]:
    """The coroutine ``Signal.asend`` returns (interceptors already ruled out).

    When every receiver is async, it is the lean :func:`_async_only`, one
    frame and one pass from ``asyncio.gather()``; otherwise :func:`asend`.
    """
    plan = signal._plan_for(sender)  # noqa: SLF001
    if (
        plan.__class__ is not tuple
        and not plan.via_records
        and not plan.sync_records
        and signal.async_mode == "concurrent"
        and _hooks.receiver_observer is None
        and not plan.handled
    ):
        return _async_only(signal, plan.async_records, sender, named)
    return asend(signal, sender, named, robust=False)


async def _async_only(
    signal: Signal, records: tuple[Record, ...], sender: Any, named: dict[str, Any]
) -> Responses:
    """``asend`` when every receiver is async: as close to ``gather()`` as it gets."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # under trio, or no loop at all: the general path says which
        return await asend(signal, sender, named, robust=False)
    receivers: list[Any] = []
    tasks: list[asyncio.Future[Any]] = []
    try:
        for record in records:
            receiver = resolve(record)
            if receiver is None:
                continue
            awaitable = receiver(signal=signal, sender=sender, **named)
            receivers.append(receiver)
            tasks.append(
                loop.create_task(awaitable)
                if type(awaitable) is _CoroutineType
                else asyncio.ensure_future(awaitable)
            )
    except BaseException:
        _cancel(tasks)
        raise
    if not tasks:
        return []
    try:
        results = [await tasks[0]] if len(tasks) == 1 else await asyncio.gather(*tasks)
    except BaseException:
        await _cancel_and_wait(tasks)
        raise
    return list(zip(receivers, results, strict=True))


def _start_tasks(
    signal: Signal, entries: Sequence[Entry], sender: Any, named: dict[str, Any], *, robust: bool
) -> list[asyncio.Future[Any]]:
    """Start one task per async receiver, in order."""
    if robust or _hooks.receiver_observer is not None or _handled(entries):
        return [
            asyncio.ensure_future(_call_async(signal, receiver, sender, named, robust=robust, record=record))
            for receiver, record in entries
        ]
    # The common case, as cheap as asyncio.gather() of the same coroutines:
    # no wrapper coroutine; exceptions come out of the tasks unchanged.
    create_task = asyncio.get_running_loop().create_task
    tasks: list[asyncio.Future[Any]] = []
    try:
        for receiver, _ in entries:
            awaitable = receiver(signal=signal, sender=sender, **named)
            tasks.append(
                create_task(awaitable)
                if type(awaitable) is _CoroutineType
                else asyncio.ensure_future(awaitable)
            )
    except BaseException:
        # A receiver raised before returning its awaitable.
        _cancel(tasks)
        raise
    return tasks


def _cancel(tasks: Sequence[asyncio.Future[Any]]) -> None:
    """Cancel tasks that have not started: their coroutines are closed (no "never awaited")."""
    for task in tasks:
        task.cancel()


async def _cancel_and_wait(tasks: Sequence[asyncio.Future[Any]]) -> None:
    """Cancel *tasks* and wait until each has finished: nothing of a failed send runs on."""
    _cancel(tasks)
    if tasks:
        await asyncio.wait(tasks)


def _handled(entries: Sequence[Entry]) -> bool:
    """Whether a connection among *entries* has an ``on_error`` handler (see ``errors``)."""
    return any(record is not None and on_error_of(record) is not None for _, record in entries)


async def _call_async(
    signal: Signal,
    receiver: Any,
    sender: Any,
    named: dict[str, Any],
    *,
    robust: bool,
    method: str = _ROBUST,
    record: Record | None = None,
) -> Any:
    observer = _hooks.receiver_observer  # tracing, see _observe
    try:
        if observer is None:
            return await receiver(signal=signal, sender=sender, **named)
        call = partial(receiver, signal=signal, sender=sender, **named)
        return await observer.acall(signal, receiver, call)
    except Exception as exc:
        if record is not None:
            held = on_error_of(record)
            if held is not None:
                call_handler(held, exc, signal, receiver, sender, named, method, robust=robust)
        if not robust:
            raise
        signal._log_failure(receiver, exc, method)  # noqa: SLF001
        return exc


async def _sequential(
    signal: Signal,
    entries: list[Entry],
    sender: Any,
    named: dict[str, Any],
    *,
    robust: bool,
    to_thread: Callable[[Callable[[], Any]], Awaitable[Any]],
) -> Responses:
    """``async_mode="sequential"``: one receiver at a time, in order, on asyncio or trio.

    *to_thread* runs a sync receiver's batch in a worker thread and waits
    for it (``run_in_executor`` on asyncio, ``trio.to_thread.run_sync``).
    """
    responses: Responses = []
    for receiver, record in entries:
        if record is not None and via_of(record) is not None:
            call_entry = signal._call_entry  # noqa: SLF001 - the signal's own delivery step
            result = call_entry(receiver, record, sender, named, robust=robust, method=_ROBUST)
        elif record is not None and is_async(record):
            result = await _call_async(signal, receiver, sender, named, robust=robust, record=record)
        else:
            batch = _SyncBatch(signal, [(receiver, record)], sender, named)
            batch.robust = robust
            await to_thread(partial(contextvars.copy_context().run, batch.run))
            result = batch.responses[0][1]
        responses.append((receiver, result))
    return responses


def _in_executor(func: Callable[[], Any]) -> Awaitable[Any]:
    return asyncio.get_running_loop().run_in_executor(None, func)


# ---- async receivers from a synchronous send ---------------------------------


# How a synchronous send runs async receivers when it is made from code
# running inside an event loop that can still wait: a function that runs a
# coroutine to completion and returns its result (or raises). Set by
# integrations for the duration of their sends, for example by the
# SQLAlchemy model signals to ``sqlalchemy.util.await_`` while an
# AsyncSession flushes inside SQLAlchemy's greenlet. None: the per-thread
# loop below, and refusal inside a running loop.
awaiter: contextvars.ContextVar[Callable[[Coroutine[Any, Any, Any]], Any] | None] = contextvars.ContextVar(
    "tocsin_awaiter", default=None
)


class _LoopOwner:
    """Holds the event loop of one thread and closes it when it dies.

    Only that thread's ``threading.local`` refers to it, and nothing refers
    back (the loop itself is full of reference cycles; this object is not in
    any), so reference counting frees it, and closes the loop, as the thread
    ends: before ``Thread.join()`` returns, with no garbage collection pass.
    """

    __slots__ = ("loop",)

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def __del__(self) -> None:
        # Runs in the ending thread while Python clears its state: only close.
        # Running the loop here (shutdown_asyncgens() and the like) would
        # re-create that thread state's dict and leak it on every thread
        # (measured on Python 3.10 to 3.12).
        _open_loops.discard(self.loop)
        _close(self.loop)


class _ThreadLoop(threading.local):
    owner: _LoopOwner | None = None


_thread_loop = _ThreadLoop()
# The loops not closed yet, for _close_loops at exit (the main thread's loop,
# and the loops of threads still running). set.add/discard need no lock.
_open_loops: set[asyncio.AbstractEventLoop] = set()


def _loop_for_this_thread() -> asyncio.AbstractEventLoop:
    owner = _thread_loop.owner
    if owner is None or owner.loop.is_closed():
        loop = asyncio.new_event_loop()
        _open_loops.add(loop)
        _thread_loop.owner = _LoopOwner(loop)  # a replaced owner's loop is closed already
        return loop
    return owner.loop


def _close(loop: asyncio.AbstractEventLoop) -> None:
    # Never a running loop: at exit another thread may still be in a send.
    if not loop.is_running() and not loop.is_closed():
        loop.close()  # its default executor too, without waiting for it


@atexit.register
def _close_loops() -> None:
    owner = _thread_loop.owner  # this (the main) thread's loop, idle at exit
    try:
        if owner is not None and not owner.loop.is_closed() and _running_library() is None:
            # As asyncio.run() ends: async generators that receivers left
            # suspended run their finally blocks.
            owner.loop.run_until_complete(owner.loop.shutdown_asyncgens())
    finally:
        for loop in list(_open_loops):
            _close(loop)
        _open_loops.clear()


def check_no_running_loop(signal: Signal, receiver: Any) -> None:
    """Raise before any receiver runs if async receivers can't run here."""
    if awaiter.get() is None and _running_library() is not None:
        from .receivers import qualified_name  # noqa: PLC0415 - error path only

        msg = (
            f"{signal!r} has an async receiver ({qualified_name(receiver)}), and Signal.send() was "
            "called inside a running event loop, where it cannot run it without blocking the loop. "
            "Use `await signal.asend(...)` (or asend_robust) from async code."
        )
        raise AsyncContextError(msg)


def run_async_receivers(
    signal: Signal, entries: Sequence[Entry], sender: Any, named: dict[str, Any], *, robust: bool
) -> Responses:
    """Run async receivers to completion from synchronous code, concurrently.

    Through the current ``awaiter`` if one is set, else on this thread's loop.
    """

    async def run_all() -> list[Any]:
        coros: list[Coroutine[Any, Any, Any]] = [
            _call_async(signal, receiver, sender, named, robust=robust, method="send_robust", record=record)
            for receiver, record in entries
        ]
        if len(coros) == 1:
            return [await coros[0]]
        tasks = [asyncio.ensure_future(c) for c in coros]
        try:
            return list(await asyncio.gather(*tasks))
        except BaseException:
            await _cancel_and_wait(tasks)
            raise

    run = awaiter.get()
    results = run(run_all()) if run is not None else _loop_for_this_thread().run_until_complete(run_all())
    return [(receiver, result) for (receiver, _), result in zip(entries, results, strict=True)]
