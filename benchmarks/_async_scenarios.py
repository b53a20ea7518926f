"""Rows for async dispatch (issue: asend, async receivers from sync send).

Each timed call runs ``BATCH`` sends inside one ``run_until_complete`` on an
event loop made for the case, so the loop's own start-up is spread over the
batch for every library and for the baseline alike. Only tocsin and
django.dispatch have an ``asend`` with Django's semantics; the other
libraries are left out of these rows.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from _scenarios import Case, Scenario, Sender, _check_hits, register

if TYPE_CHECKING:
    from _libs import Lib

BATCH = 20
N = 10
ASYNC_LIBS = ("tocsin", "django", "django-cached")


def _make_async(hits: list[int], i: int) -> Any:
    async def receiver(sender: object, *args: object, **kwargs: object) -> None:
        hits[i] += 1

    return receiver


def _make_sync(hits: list[int], i: int) -> Any:
    def receiver(sender: object, *args: object, **kwargs: object) -> None:
        hits[i] += 1

    return receiver


def _asend_case(lib: Lib, make: Any, n: int) -> Case:
    hits = [0] * n
    receivers = [make(hits, i) for i in range(n)]
    sig = lib.make()
    for r in receivers:
        lib.connect(sig, r, None)
    loop = asyncio.new_event_loop()

    async def batch() -> None:
        for _ in range(BATCH):
            await sig.asend(Sender, value=1)

    def run() -> None:
        loop.run_until_complete(batch())

    def verify(runs: int) -> str | None:
        return _check_hits(lib.name, hits, [1] * n, runs * BATCH)

    return Case(run, verify=verify, keep=(receivers, loop))


def build_asend_async(lib: Lib) -> Case | None:
    return _asend_case(lib, _make_async, N) if lib.name in ASYNC_LIBS else None


def baseline_gather() -> Case:
    hits = [0] * N
    receivers = [_make_async(hits, i) for i in range(N)]
    sig = object()
    loop = asyncio.new_event_loop()

    async def batch() -> None:
        for _ in range(BATCH):
            await asyncio.gather(*[r(signal=sig, sender=Sender, value=1) for r in receivers])

    def run() -> None:
        loop.run_until_complete(batch())

    def verify(runs: int) -> str | None:
        return _check_hits("gather", hits, [1] * N, runs * BATCH)

    return Case(run, verify=verify, keep=(receivers, loop))


def build_asend_sync(lib: Lib) -> Case | None:
    return _asend_case(lib, _make_sync, N) if lib.name in ASYNC_LIBS else None


def baseline_to_thread() -> Case:
    """The least a non-blocking asend of sync receivers must do: one thread hop."""
    hits = [0] * N
    receivers = [_make_sync(hits, i) for i in range(N)]
    sig = object()
    loop = asyncio.new_event_loop()

    def call_all() -> None:
        for r in receivers:
            r(signal=sig, sender=Sender, value=1)

    async def batch() -> None:
        for _ in range(BATCH):
            await loop.run_in_executor(None, call_all)

    def run() -> None:
        loop.run_until_complete(batch())

    def verify(runs: int) -> str | None:
        return _check_hits("thread hop", hits, [1] * N, runs * BATCH)

    return Case(run, verify=verify, keep=(receivers, loop))


def build_sync_send_async_receiver(lib: Lib) -> Case | None:
    if lib.name not in ASYNC_LIBS:
        return None
    hits = [0]
    receiver = _make_async(hits, 0)
    sig = lib.make()
    lib.connect(sig, receiver, None)
    ns = {**lib.ns, "sig": sig, "sender": Sender}

    def verify(runs: int) -> str | None:
        return _check_hits(lib.name, hits, [1], runs)

    return Case(lib.send_stmt, ns, verify, keep=receiver)


register(
    Scenario(
        f"asend, {N} async receivers (x{BATCH} per loop run)",
        1.1,
        build=build_asend_async,
        baseline=baseline_gather,
        baseline_name="asyncio.gather of the same coroutines",
        libs=ASYNC_LIBS,
        must_beat=("django", "django-cached"),
    )
)
register(
    Scenario(
        f"asend, {N} sync receivers (x{BATCH} per loop run)",
        None,
        build=build_asend_sync,
        baseline=baseline_to_thread,
        baseline_name="one run_in_executor hop calling them",
        libs=ASYNC_LIBS,
        must_beat=("django", "django-cached"),
    )
)
register(
    Scenario(
        "sync send, 1 async receiver",
        50.0,
        unit="us",
        build=build_sync_send_async_receiver,
        libs=ASYNC_LIBS,
        must_beat=("django", "django-cached"),
    )
)
