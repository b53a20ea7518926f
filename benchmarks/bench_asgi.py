"""Overhead of tocsin.asgi.RequestSignalsMiddleware per request, in-process.

Calls ASGI apps directly in one asyncio loop (no server, no sockets), bare and
wrapped, with no receivers connected (the case every app pays for), and
reports the added time per request. Targets: <= 5 microseconds, and <= 5 % of
a minimal framework app.

Apps:
* raw: a bare ASGI function sending start + one body message: the floor,
  nothing a real app can go below.
* starlette: a one-route Starlette app returning a PlainTextResponse (skipped
  if Starlette is not installed).

Then, for scale, the cost with one sync receiver on request_finished (one
worker-thread hop per signal with receivers).

Usage: python benchmarks/bench_asgi.py [--quick]  (41 interleaved rounds; the
machine is noisy, so read the median paired overhead)
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import sys
import time
from typing import Any

from tocsin.asgi import RequestSignalsMiddleware, request_finished

SCOPE: dict[str, Any] = {
    "type": "http",
    "asgi": {"version": "3.0", "spec_version": "2.4"},
    "http_version": "1.1",
    "method": "GET",
    "scheme": "http",
    "path": "/",
    "raw_path": b"/",
    "query_string": b"",
    "root_path": "",
    "headers": [(b"host", b"bench")],
    "client": ("127.0.0.1", 1),
    "server": ("127.0.0.1", 80),
}


async def receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def send(message: dict[str, Any]) -> None:
    pass


START = {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
BODY = {"type": "http.response.body", "body": b"ok", "more_body": False}


async def raw_app(scope: Any, receive: Any, send: Any) -> None:
    await send(START)
    await send(BODY)


def starlette_app() -> Any:
    try:
        from starlette.applications import Starlette
        from starlette.responses import PlainTextResponse
        from starlette.routing import Route
    except ImportError:
        return None

    async def home(request: Any) -> Any:
        return PlainTextResponse("ok")

    return Starlette(routes=[Route("/", home)])


class NoOpMiddleware:
    """The cheapest pure ASGI middleware possible: the floor for any of them."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


async def per_call(app: Any, n: int, clock: Any = time.thread_time) -> float:
    """Seconds per request, for n sequential requests.

    CPU time of this thread by default: on a busy machine wall time also counts
    the time other processes held the CPU.
    """
    scope = SCOPE
    gc.collect()
    gc.disable()  # a collection landing in one side's round is noise, not overhead
    try:
        t0 = clock()
        for _ in range(n):
            await app(dict(scope), receive, send)
        return (clock() - t0) / n
    finally:
        gc.enable()


async def compare(bare: Any, n: int, rounds: int, middleware: Any) -> tuple[float, float, float]:
    """Best-of-rounds seconds per request for bare and wrapped, interleaved against
    drift, and the median of the per-round differences (robust to a busy machine)."""
    wrapped = middleware(bare)
    await per_call(bare, n // 10)  # warm up (Starlette builds its middleware stack lazily)
    await per_call(wrapped, n // 10)
    bare_times, wrapped_times = [], []
    for i in range(rounds):  # alternate which goes first
        first, second = (bare, wrapped) if i % 2 == 0 else (wrapped, bare)
        t_first, t_second = await per_call(first, n), await per_call(second, n)
        bare_times.append(t_first if first is bare else t_second)
        wrapped_times.append(t_second if first is bare else t_first)
    diffs = [w - b for b, w in zip(bare_times, wrapped_times, strict=True)]
    return min(bare_times), min(wrapped_times), statistics.median(diffs)


def row(name: str, bare: float, wrapped: float, median_diff: float) -> None:
    over = wrapped - bare
    print(
        f"{name:<22} bare {bare * 1e6:7.2f} us  wrapped {wrapped * 1e6:7.2f} us  "
        f"overhead {over * 1e6:5.2f} us ({over / bare * 100:5.1f} %)  "
        f"median paired overhead {median_diff * 1e6:5.2f} us ({median_diff / bare * 100:5.1f} %)"
    )


async def main(quick: bool) -> None:
    n, rounds = (5_000, 3) if quick else (30_000, 41)
    version = sys.version.split()[0]
    print(f"Python {version}, {n} requests x {rounds} rounds (best round, thread CPU time), no receivers:")
    row("raw ASGI function", *await compare(raw_app, n, rounds, RequestSignalsMiddleware))
    row("  (no-op middleware)", *await compare(raw_app, n, rounds, NoOpMiddleware))
    app = starlette_app()
    if app is not None:
        row("Starlette one route", *await compare(app, n // 5, rounds, RequestSignalsMiddleware))
        row("  (no-op middleware)", *await compare(app, n // 5, rounds, NoOpMiddleware))

    def on_finished(sender: Any, **kwargs: Any) -> None:
        pass

    request_finished.connect(on_finished)
    try:
        m = n // 50
        samples = [
            await per_call(RequestSignalsMiddleware(raw_app), m, time.perf_counter) for _ in range(rounds)
        ]
    finally:
        request_finished.disconnect(on_finished)
    print(
        f"{'1 sync receiver':<24} wrapped raw app {statistics.median(samples) * 1e6:8.2f} us "
        "per request, wall time (median round; one worker-thread hop)"
    )


if __name__ == "__main__":
    asyncio.run(main(quick="--quick" in sys.argv))
