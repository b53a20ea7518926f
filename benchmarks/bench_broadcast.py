"""tocsin.broadcast on a real redis-server, beside encode's `broadcaster`: `make bench-broadcast` runs it.

1. publish cost in the sending process: a send of a shared signal (one local
   receiver) minus nothing: the whole send, with the unshared send beside it;
2. receiver-side cost when nothing is shared: an unshared signal's send with a
   started bus in the process, and without any bus;
3. loopback fan-out latency, send -> remote receiver start, 3 subscriber
   processes, one send every millisecond: p50 / p99 / max;
4. throughput, one process sending as fast as it can to 3 subscriber
   processes: messages per second until the slowest subscriber had them all.

`broadcaster` (if installed; `bench` dependency group) is measured the same
way: `await broadcast.publish(channel, json)` in the sender, its async
subscriber in the subscriber processes. broadcaster 0.3.1 delivers nothing
on redis-py >= 5 as it is (its listener task races the subscription, see
_broadcast_sub.py): the subscribers work around that race.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent / "tests"
sys.path.insert(0, str(TESTS))

from _redis import RedisServer  # noqa: E402
from tocsin import Signal  # noqa: E402
from tocsin.broadcast import Bus  # noqa: E402

LATENCY_COUNT = int(os.environ.get("BENCH_LATENCY_COUNT", "2000"))
THROUGHPUT_COUNT = int(os.environ.get("BENCH_THROUGHPUT_COUNT", "50000"))
SUBSCRIBERS = 3


def _best_per_call(run, n: int, rounds: int = 5) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        run(n)
        best = min(best, (time.perf_counter() - start) / n)
    return best


def _pause_until(when: float) -> None:
    """Sleep (releasing the GIL: the publisher thread must run) until perf_counter() reaches *when*."""
    delay = when - time.perf_counter()
    if delay > 0:
        time.sleep(delay)


def publish_cost(url: str) -> dict[str, float]:
    shared, plain = Signal(), Signal()

    def receiver(sender, **kwargs):
        return None

    shared.connect(receiver)
    plain.connect(receiver)
    bus = Bus(url, buffer=1_000_000)
    bus.share(shared, name="bench-cost")
    bus.start()

    def send_plain(n: int) -> None:
        for i in range(n):
            plain.send(None, post_id=i, t=0.0)

    n = 20_000
    best_shared = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for i in range(n):
            shared.send(None, post_id=i, t=0.0)
        best_shared = min(best_shared, (time.perf_counter() - start) / n)
        bus.flush(60)  # not timed: the publisher thread catches up between rounds
    with_bus = _best_per_call(send_plain, 200_000)
    bus.stop()
    bus.unshare(shared)
    without_bus = _best_per_call(send_plain, 200_000)
    return {"shared": best_shared, "unshared_with_bus": with_bus, "unshared_no_bus": without_bus}


def _subscribers(kind: str, url: str, count: int) -> list[subprocess.Popen[str]]:
    env = dict(os.environ)
    procs = [
        subprocess.Popen(
            [sys.executable, str(HERE / "_broadcast_sub.py"), kind, url, str(count)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(SUBSCRIBERS)
    ]
    for proc in procs:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line == "ready", line
    return procs


def _results(procs: list[subprocess.Popen[str]]) -> list[dict]:
    out = []
    for proc in procs:
        assert proc.stdout is not None
        out.append(json.loads(proc.stdout.readline()))
        proc.stdout.close()
        proc.wait(60)
    return out


def _latency_summary(results: list[dict]) -> dict[str, float]:
    latencies = sorted(x for r in results for x in r["latencies"])
    return {
        "p50": statistics.median(latencies),
        "p99": latencies[int(len(latencies) * 0.99) - 1],
        "max": latencies[-1],
    }


def tocsin_latency(url: str) -> dict[str, float]:
    procs = _subscribers("tocsin", url, LATENCY_COUNT)
    signal = Signal()
    bus = Bus(url)
    bus.share(signal, name="bench")
    bus.start()
    pace = time.perf_counter()
    for i in range(LATENCY_COUNT):
        pace += 0.001
        _pause_until(pace)  # one send per millisecond: latency, not queueing
        signal.send(None, post_id=i, t=time.perf_counter())
    bus.flush(60)
    result = _latency_summary(_results(procs))
    bus.stop()
    return result


def tocsin_throughput(url: str) -> float:
    procs = _subscribers("tocsin", url, THROUGHPUT_COUNT)
    signal = Signal()
    bus = Bus(url, buffer=THROUGHPUT_COUNT + 1)
    bus.share(signal, name="bench")
    bus.start()
    start = time.perf_counter()
    for i in range(THROUGHPUT_COUNT):
        signal.send(None, post_id=i, t=time.perf_counter())
    results = _results(procs)
    bus.stop()
    return THROUGHPUT_COUNT / (max(r["last"] for r in results) - start)


async def _broadcaster_publish(url: str, count: int, *, paced: bool) -> float:
    from broadcaster import Broadcast

    async with Broadcast(url) as broadcast:
        start = time.perf_counter()
        pace = start
        for i in range(count):
            if paced:
                pace += 0.001
                await asyncio.sleep(max(0.0, pace - time.perf_counter()))
            await broadcast.publish("bench", json.dumps({"post_id": i, "t": time.perf_counter()}))
        return (time.perf_counter() - start) / count


def broadcaster_runs(url: str) -> dict[str, float]:
    cost = asyncio.run(_broadcaster_publish(url, 20_000, paced=False))
    procs = _subscribers("broadcaster", url, LATENCY_COUNT)
    asyncio.run(_broadcaster_publish(url, LATENCY_COUNT, paced=True))
    latency = _latency_summary(_results(procs))
    procs = _subscribers("broadcaster", url, THROUGHPUT_COUNT)
    start = time.perf_counter()
    asyncio.run(_broadcaster_publish(url, THROUGHPUT_COUNT, paced=False))
    results = _results(procs)
    throughput = THROUGHPUT_COUNT / (max(r["last"] for r in results) - start)
    return {"publish": cost, **latency, "throughput": throughput}


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:8.2f} µs"


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:8.3f} ms"


def _latency_line(name: str, result: dict[str, float]) -> str:
    return f"  {name:12} p50 {_ms(result['p50'])}  p99 {_ms(result['p99'])}  max {_ms(result['max'])}"


def main() -> None:
    redis = RedisServer()
    redis.start()
    try:
        url = redis.url
        print(f"Python {sys.version.split()[0]}, redis-server on {url}, {SUBSCRIBERS} subscriber processes")
        cost = publish_cost(url)
        print("\n1-2. Cost in the sending process (best of 5), per send, one local receiver")
        print(f"  shared signal (encode + queue + local receiver)  {_us(cost['shared'])}")
        print(f"  unshared signal, a bus running in the process    {_us(cost['unshared_with_bus'])}")
        print(f"  unshared signal, no bus at all                   {_us(cost['unshared_no_bus'])}")
        latency = tocsin_latency(url)
        throughput = tocsin_throughput(url)
        print(f"\n3. Latency, send -> remote receiver start ({LATENCY_COUNT} sends, 1/ms, x{SUBSCRIBERS})")
        print(_latency_line("tocsin", latency))
        other = None
        try:
            import broadcaster  # noqa: F401
        except ImportError:
            print("  broadcaster  not installed (pip install 'broadcaster[redis]')")
        else:
            other = broadcaster_runs(url)
            print(_latency_line("broadcaster", other))
        print(
            f"\n4. Throughput, one process -> {SUBSCRIBERS} subscriber processes ({THROUGHPUT_COUNT:,} msgs)"
        )
        print(f"  tocsin       {throughput:10,.0f} msg/s")
        if other is not None:
            print(f"  broadcaster  {other['throughput']:10,.0f} msg/s")
            print(f"\n  broadcaster publish cost in the sender: {_us(other['publish'])} per awaited publish")
    finally:
        redis.close()


if __name__ == "__main__":
    main()
