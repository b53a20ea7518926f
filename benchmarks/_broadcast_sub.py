"""A subscriber process for bench_broadcast.py: ``python _broadcast_sub.py KIND URL COUNT``.

KIND is ``tocsin`` (a ``Bus`` re-sending into a receiver) or ``broadcaster``
(encode's package, async). It prints ``ready`` once subscribed, then, after
COUNT messages, one JSON line: the latency of each message (receiver start
minus the ``t`` the sender put in it, both ``time.perf_counter()``, which is
CLOCK_MONOTONIC on Linux and so comparable across processes) and the
perf_counter of the first and last arrival.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from typing import Any


def run_tocsin(url: str, count: int) -> dict[str, object]:
    from tocsin import Signal
    from tocsin.broadcast import Bus

    post_changed = Signal()
    bus = Bus(url)
    bus.share(post_changed, name="bench")
    latencies: list[float] = []
    arrivals: list[float] = []
    done = threading.Event()

    def receiver(sender: object, t: float, **kwargs: object) -> None:
        now = time.perf_counter()
        latencies.append(now - t)
        arrivals.append(now)
        if len(latencies) >= count:
            done.set()

    post_changed.connect(receiver)
    bus.start(wait=20)
    print("ready", flush=True)
    done.wait()
    bus.stop()
    return {"latencies": latencies, "first": arrivals[0], "last": arrivals[-1]}


async def run_broadcaster(url: str, count: int) -> dict[str, object]:
    from broadcaster import Broadcast

    latencies: list[float] = []
    arrivals: list[float] = []
    async with Broadcast(url) as broadcast:
        # broadcaster 0.3.1 on redis-py >= 5: Broadcast.subscribe() wakes its listener task before
        # redis-py records the subscription, so the listener finds none, stops, and nothing is ever
        # delivered (checked). Subscribing its PubSub first works around that race.
        await broadcast._backend._pubsub.subscribe("bench")  # type: ignore[attr-defined]
        async with broadcast.subscribe("bench") as subscriber:
            print("ready", flush=True)
            await _receive(subscriber, count, latencies, arrivals)
    return {"latencies": latencies, "first": arrivals[0], "last": arrivals[-1]}


async def _receive(subscriber: Any, count: int, latencies: list[float], arrivals: list[float]) -> None:
    async for event in subscriber:
        now = time.perf_counter()
        data = json.loads(event.message)
        latencies.append(now - data["t"])
        arrivals.append(now)
        if len(latencies) >= count:
            break


def main() -> None:
    kind, url, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    result = run_tocsin(url, count) if kind == "tocsin" else asyncio.run(run_broadcaster(url, count))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
