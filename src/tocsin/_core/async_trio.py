"""``asend`` under trio: the same contract as on asyncio (see ``_async``).

Requires trio >= 0.23 (``abandon_on_cancel``).

Imported only when a send happens inside ``trio.run``, so trio is never a
dependency. Sync receivers run in ``trio.to_thread.run_sync`` (one thread,
in order, contextvars copied); async receivers run in a nursery. The first
failure is recorded and cancels the nursery, so it propagates unchanged
(not wrapped in an ExceptionGroup) once every sibling has finished.
"""

from __future__ import annotations

import contextvars
from typing import TYPE_CHECKING, Any

import trio

from .async_asyncio import Responses, _call_async, _sequential, _SyncBatch, split

if TYPE_CHECKING:
    from .records import Record
    from .signal import Signal

__all__ = ["asend_trio"]


async def asend_trio(  # noqa: C901 - one place for the whole failure protocol
    signal: Signal, sender: Any, named: dict[str, Any], *, robust: bool
) -> Responses:
    """Deliver one async send inside ``trio.run``."""
    if signal.async_mode == "sequential":
        entries = signal._entries_for(sender)  # noqa: SLF001
        return await _sequential(
            signal, entries, sender, named, robust=robust, to_thread=trio.to_thread.run_sync
        )

    via, sync, asyn = split(signal, sender)
    call_entry = signal._call_entry  # noqa: SLF001 - the signal's own delivery step
    responses = [
        (receiver, call_entry(receiver, record, sender, named, robust=robust, method="asend_robust"))
        for receiver, record in via
    ]
    batch = _SyncBatch(signal, sync, sender, named)
    batch.robust = robust
    results: list[Any] = [None] * len(asyn)
    failures: list[BaseException] = []

    async def run_sync() -> None:
        try:
            await trio.to_thread.run_sync(contextvars.copy_context().run, batch.run, abandon_on_cancel=True)
        except trio.Cancelled:
            batch.stopped = True
            raise
        except Exception as exc:  # noqa: BLE001 - recorded, re-raised unchanged below
            failures.append(exc)
            nursery.cancel_scope.cancel()

    async def run_async(index: int, receiver: Any, record: Record | None) -> None:
        try:
            results[index] = await _call_async(signal, receiver, sender, named, robust=robust, record=record)
        except Exception as exc:  # noqa: BLE001 - recorded, re-raised unchanged below
            failures.append(exc)
            batch.stopped = True
            nursery.cancel_scope.cancel()

    async with trio.open_nursery() as nursery:
        if sync:
            nursery.start_soon(run_sync)
        for index, (receiver, record) in enumerate(asyn):
            nursery.start_soon(run_async, index, receiver, record)
    if failures:
        if batch.started:
            # Nothing of this send may run after it raised: wait for the
            # worker thread to stop (it checks batch.stopped between receivers).
            await trio.to_thread.run_sync(batch.finished.wait)
        raise failures[0]
    responses.extend(batch.responses)
    responses.extend((receiver, result) for (receiver, _), result in zip(asyn, results, strict=True))
    return responses
