"""tocsin.broadcast across real OS processes, on a real redis-server and the suite's PostgreSQL.

Each process runs ``_broadcast_app.py`` (a cache, a receiver evicting from it,
``bus.gap`` reported); the test drives them through stdin and waits for the
lines they print, never on fixed sleeps. The redis-server is killed and
restarted for real.

These tests run on the default interpreter only (``make pytest-all`` sets
TOCSIN_NOT_DEFAULT_PYTHON for the others): starting processes is slow on the
2-core CI machine, and the transports have no version-specific code.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest

pytest.importorskip("redis", reason="redis-py is not installed: pip install 'tocsin[redis]'")

from _broadcast_procs import AppProcess
from _redis import RedisServer, RedisUnavailableError

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("TOCSIN_NOT_DEFAULT_PYTHON")),
    reason="multi-process broadcast tests run on make test's default interpreter only",
)


@pytest.fixture(name="redis")
def _redis() -> Iterator[RedisServer]:
    try:
        server = RedisServer()
        server.start()
    except RedisUnavailableError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and redis-server is unavailable: {exc}", pytrace=False)
        pytest.skip(str(exc))
    try:
        yield server
    finally:
        server.close()


def _start(url: str, count: int = 3) -> list[AppProcess]:
    processes = [AppProcess(url) for _ in range(count)]
    for process in processes:
        process.wait_line("ready")
        assert process.lines.count("gap subscribed") == 1, process.lines
    return processes


def _close(processes: list[AppProcess]) -> None:
    for process in processes:
        process.close()


@pytest.fixture(name="bus_url", params=["redis", "redis+stream", "postgresql"])
def _bus_url(request: pytest.FixtureRequest) -> str:
    if request.param == "postgresql":
        url: str = request.getfixturevalue("postgres_url")
        return url
    redis: RedisServer = request.getfixturevalue("redis")
    return redis.url.replace("redis", request.param, 1)


def test_an_update_in_one_process_evicts_in_all_three(bus_url: str) -> None:
    processes = _start(bus_url)
    try:
        for process in processes:
            process.command("fill 1 2")
            process.wait_line("filled")
        processes[0].command("update 1")
        processes[0].wait_line("evicted 1 local")
        for process in processes[1:]:
            process.wait_line("evicted 1 remote")
        for process in processes:
            process.command("cache")
            process.wait_line("cache 2")
        # No echo: the sender ran its receiver once, locally, and never again.
        processes[1].command("update 2")
        for process in processes:
            process.wait_line("evicted 2 " + ("local" if process is processes[1] else "remote"))
        assert processes[0].lines.count("evicted 1 local") == 1
        assert not any(line.startswith("evicted 1 remote") for line in processes[0].lines)
    finally:
        _close(processes)


@pytest.mark.parametrize("scheme", ["redis", "redis+stream"])
def test_redis_killed_and_restarted_mid_traffic(redis: RedisServer, scheme: str) -> None:
    processes = _start(redis.url.replace("redis", scheme, 1))
    try:
        processes[0].command("traffic")
        for process in processes[1:]:  # traffic flows
            process.wait_for(lambda lines: any(line.endswith(" remote") for line in lines))
        redis.stop()
        redis.start()
        # Every process resubscribes and is told messages may have been lost: pub/sub on every
        # subscription, streams because the new server has none of the old stream.
        again = "gap subscribed" if scheme == "redis" else "gap server restarted"
        for process in processes:
            process.wait_for(lambda lines: again in lines[lines.index("gap subscribed") + 1 :])
        processes[0].command("quiet")
        processes[0].command("update 7")
        processes[0].wait_line("evicted 7 local")
        for process in processes[1:]:
            process.wait_line("evicted 7 remote")
    finally:
        _close(processes)
