"""Async dispatch: asend/asend_robust on asyncio and trio, async receivers from sync send."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import gc
import logging
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from pathlib import Path

import pytest
import trio

import tocsin

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


@pytest.fixture(name="sig")
def _sig():
    return tocsin.Signal(name="async-test")


class TestAsyncDetection:
    """Async receivers are recognised at connect time, whatever their shape."""

    def test_shapes(self, sig):
        async def coro_function(**kwargs):
            return "function"

        class Handler:
            async def method(self, **kwargs):
                return "method"

        class CallableObject:
            async def __call__(self, **kwargs):
                return "object"

        def marked(**kwargs):
            return coro_function()

        from asgiref.sync import markcoroutinefunction

        markcoroutinefunction(marked)
        handler, obj = Handler(), CallableObject()
        receivers = [
            coro_function,
            handler.method,
            obj,
            functools.partial(coro_function),
            functools.partial(obj),
            marked,
        ]
        for receiver in receivers:
            sig.connect(receiver, weak=False)
        assert all(c.is_async for c in sig.connections())
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            results = sig.send(None)
            gc.collect()
        assert [r for _, r in results] == ["function", "method", "object", "function", "object", "function"]

    def test_sync_receivers_are_not_async(self, sig):
        def plain(**kwargs):
            return 1

        sig.connect(plain)
        assert [c.is_async for c in sig.connections()] == [False]


class TestAsendAsyncio:
    """asend on asyncio: Django's order, threads, failures, cancellation."""

    def test_order_sync_first_then_async(self, sig):
        loop_threads = []

        def sync_a(**kwargs):
            loop_threads.append(threading.current_thread())
            return "a"

        async def async_b(**kwargs):
            await asyncio.sleep(0)
            return "b"

        def sync_c(**kwargs):
            loop_threads.append(threading.current_thread())
            return "c"

        sig.connect(async_b)
        sig.connect(sync_a)
        sig.connect(sync_c)
        results = asyncio.run(sig.asend(None))
        assert [r for _, r in results] == ["a", "c", "b"]
        # One worker thread, not the loop's, ran both sync receivers.
        assert len(set(loop_threads)) == 1
        assert loop_threads[0] is not threading.main_thread()

    def test_async_receivers_run_concurrently(self, sig):
        async def slow(**kwargs):
            await asyncio.sleep(0.2)
            return "slow"

        async def slow2(**kwargs):
            await asyncio.sleep(0.2)
            return "slow2"

        sig.connect(slow)
        sig.connect(slow2)
        start = time.perf_counter()
        results = asyncio.run(sig.asend(None))
        assert [r for _, r in results] == ["slow", "slow2"]
        assert time.perf_counter() - start < 0.39

    def test_sync_receivers_do_not_block_the_loop(self, sig):
        ticks = []

        def blocking(**kwargs):
            time.sleep(0.2)

        async def main():
            async def ticker():
                for _ in range(5):
                    ticks.append(time.perf_counter())
                    await asyncio.sleep(0.02)

            task = asyncio.create_task(ticker())
            await sig.asend(None)
            await task

        sig.connect(blocking)
        asyncio.run(main())
        assert len(ticks) == 5
        assert ticks[-1] - ticks[0] < 0.19  # ticked while the receiver slept

    def test_contextvars_reach_sync_and_async_receivers(self, sig):
        seen = []

        def sync(**kwargs):
            seen.append(request_id.get())

        async def asyn(**kwargs):
            seen.append(request_id.get())

        sig.connect(sync)
        sig.connect(asyn)

        async def main():
            request_id.set("r-42")
            await sig.asend(None)

        asyncio.run(main())
        assert seen == ["r-42", "r-42"]

    def test_first_exception_propagates_unchanged_and_siblings_are_cancelled(self, sig):
        error = KeyError("boom")
        cancelled = []

        async def fails(**kwargs):
            await asyncio.sleep(0.01)
            raise error

        async def sibling(**kwargs):
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                cancelled.append(True)
                raise

        sig.connect(sibling)
        sig.connect(fails)

        async def main():
            with pytest.raises(KeyError) as info:
                await sig.asend(None)
            assert info.value is error
            # Nothing of this send is left running.
            assert cancelled == [True]
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            assert others == []

        asyncio.run(main())

    def test_failure_stops_the_sync_thread_before_raising(self, sig):
        ran = []

        def first(**kwargs):
            time.sleep(0.1)
            ran.append("first")

        def second(**kwargs):
            ran.append("second")

        async def fails(**kwargs):
            raise ValueError("x")

        sig.connect(first)
        sig.connect(second)
        sig.connect(fails)

        async def main():
            with pytest.raises(ValueError, match="x"):
                await sig.asend(None)
            assert ran == ["first"]  # waited for first; second never started

        asyncio.run(main())
        time.sleep(0.05)
        assert ran == ["first"]

    def test_sync_failure_cancels_async_receivers(self, sig):
        cancelled = []

        def fails(**kwargs):
            raise RuntimeError("sync failed")

        async def waits(**kwargs):
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                cancelled.append(True)
                raise

        sig.connect(fails)
        sig.connect(waits)
        with pytest.raises(RuntimeError, match="sync failed"):
            asyncio.run(sig.asend(None))
        assert cancelled == [True]

    def test_asend_robust_collects_and_logs(self, sig, caplog):
        def sync_fail(**kwargs):
            raise ValueError("sync")

        async def async_fail(**kwargs):
            raise KeyError("async")

        async def ok(**kwargs):
            return "ok"

        sig.connect(sync_fail)
        sig.connect(async_fail)
        sig.connect(ok)
        with caplog.at_level(logging.ERROR, logger="tocsin"):
            results = asyncio.run(sig.asend_robust(None))
        responses = [r for _, r in results]
        assert isinstance(responses[0], ValueError)
        assert isinstance(responses[1], KeyError)
        assert responses[2] == "ok"
        names = " ".join(r.getMessage() for r in caplog.records)
        assert "sync_fail" in names
        assert "async_fail" in names
        assert all(r.exc_info for r in caplog.records)

    def test_cancellation_cancels_receivers_and_reraises(self, sig):
        cancelled = []

        async def waits(**kwargs):
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                cancelled.append(True)
                raise

        sig.connect(waits)
        sig.connect(functools.partial(waits))

        async def main():
            task = asyncio.create_task(sig.asend_robust(None))
            await asyncio.sleep(0.05)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert cancelled == [True, True]

        asyncio.run(main())

    def test_receiver_raising_before_returning_its_awaitable(self, sig):
        """A marked receiver that raises when called: siblings are closed, never left un-awaited."""
        from asgiref.sync import markcoroutinefunction

        started = []

        async def first(**kwargs):
            started.append("first")

        def broken(**kwargs):
            raise LookupError("before any await")

        markcoroutinefunction(broken)
        sig.connect(first)
        sig.connect(broken)

        async def main():
            with pytest.raises(LookupError, match="before any await"):
                await sig.asend(None)
            await asyncio.sleep(0)  # let the cancelled sibling task finish
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            assert others == []

        with warnings.catch_warnings():
            warnings.simplefilter("error")
            asyncio.run(main())
            gc.collect()
        assert started == []  # the sibling was cancelled before it started

    def test_only_async_receivers_and_no_receivers(self, sig):
        assert asyncio.run(sig.asend(None)) == []

        async def only(**kwargs):
            return 1

        sig.connect(only)
        assert asyncio.run(sig.asend(None)) == [(only, 1)]

    def test_asend_checks_arguments(self, sig):
        with pytest.raises(TypeError, match="needs a sender"):
            asyncio.run(sig.asend())
        with pytest.raises(TypeError, match="signal="):
            asyncio.run(sig.asend(None, signal=1))


class TestSequentialMode:
    """async_mode="sequential": one receiver at a time in priority/connection order."""

    def test_strict_order(self):
        sig = tocsin.Signal(async_mode="sequential")
        log = []

        async def a1(**kwargs):
            await asyncio.sleep(0.02)
            log.append("a1")
            return "a1"

        def s1(**kwargs):
            log.append("s1")
            return "s1"

        async def a2(**kwargs):
            log.append("a2")
            return "a2"

        def high(**kwargs):
            log.append("high")
            return "high"

        sig.connect(a1)
        sig.connect(s1)
        sig.connect(a2)
        sig.connect(high, priority=5)
        results = asyncio.run(sig.asend(None))
        assert log == ["high", "a1", "s1", "a2"]
        assert [r for _, r in results] == ["high", "a1", "s1", "a2"]
        log.clear()
        assert [r for _, r in sig.send(None)] == ["high", "a1", "s1", "a2"]
        assert log == ["high", "a1", "s1", "a2"]

    def test_rejects_unknown_mode(self):
        with pytest.raises(ValueError, match="async_mode must be"):
            tocsin.Signal(async_mode="parallel")  # type: ignore[arg-type]


class TestSyncSendWithAsyncReceivers:
    """send() from sync code runs async receivers on a per-thread loop."""

    def test_runs_async_receivers_after_sync_ones(self, sig):
        async def asyn(**kwargs):
            await asyncio.sleep(0)
            return "async"

        def sync(**kwargs):
            return "sync"

        sig.connect(asyn)
        sig.connect(sync)
        assert [r for _, r in sig.send(None)] == ["sync", "async"]

    def test_one_loop_per_thread_reused(self, sig):
        loops = []

        async def record(**kwargs):
            loops.append(asyncio.get_running_loop())

        sig.connect(record)
        sig.send(None)
        sig.send(None)
        other: list[asyncio.AbstractEventLoop] = []

        def in_thread():
            sig.send(None)
            other.append(loops[-1])

        thread = threading.Thread(target=in_thread)
        thread.start()
        thread.join()
        assert loops[0] is loops[1]
        assert other[0] is not loops[0]

    def test_a_finished_threads_loop_is_closed_without_gc(self, sig):
        loops: list[asyncio.AbstractEventLoop] = []

        async def record(**kwargs):
            loops.append(asyncio.get_running_loop())

        sig.connect(record)
        gc.disable()  # closed by reference counting as the thread ends, not by a gc pass
        try:
            thread = threading.Thread(target=sig.send, args=(None,))
            thread.start()
            thread.join()
            [loop] = loops
            assert loop.is_closed()
        finally:
            gc.enable()

    @pytest.mark.skipif(not Path("/dev/fd").is_dir(), reason="POSIX only: resource limits, /dev/fd")
    def test_a_thread_per_send_does_not_run_out_of_file_descriptors(self):
        # A server with a thread per request, under a low descriptor limit, in
        # a subprocess so that the limit does not touch this test run.
        script = textwrap.dedent(
            """
            import asyncio, os, resource, threading
            import tocsin

            sig = tocsin.Signal()
            ran = []

            async def receiver(sender, **kwargs):
                await asyncio.sleep(0)
                ran.append(sender)

            sig.connect(receiver)
            highest = max(int(fd) for fd in os.listdir("/dev/fd"))
            hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
            # Room for the loops of the 8 threads alive at once (3 descriptors each).
            resource.setrlimit(resource.RLIMIT_NOFILE, (highest + 40, hard))
            failures = []

            def request(n):
                try:
                    sig.send(n)
                except BaseException as exc:
                    failures.append(repr(exc))

            for start in range(0, 400, 8):
                batch = [threading.Thread(target=request, args=(n,)) for n in range(start, start + 8)]
                for thread in batch:
                    thread.start()
                for thread in batch:
                    thread.join()
            sig.send("main")  # the main thread's loop: closed at exit, silently
            print(len(set(ran)), failures[:3])
            """
        )
        proc = subprocess.run(
            [sys.executable, "-W", "error", "-c", script],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert (proc.stdout, proc.stderr, proc.returncode) == ("401 []\n", "", 0)

    def test_inside_running_loop_raises_before_any_receiver(self, sig):
        ran = []

        def sync(**kwargs):
            ran.append(1)

        async def asyn(**kwargs):
            ran.append(2)

        sig.connect(sync)
        sig.connect(asyn)

        async def main():
            with pytest.raises(RuntimeError, match="asend"):
                sig.send(None)

        with warnings.catch_warnings():
            warnings.simplefilter("error")
            asyncio.run(main())
            gc.collect()
        assert ran == []

    def test_send_robust_with_failing_async_receiver(self, sig, caplog):
        async def fails(**kwargs):
            raise KeyError("k")

        sig.connect(fails)
        with caplog.at_level(logging.ERROR, logger="tocsin"):
            [(receiver, response)] = sig.send_robust(None)
        assert receiver is fails
        assert isinstance(response, KeyError)
        assert "fails" in caplog.text

    def test_send_propagates_async_exception_unchanged(self, sig):
        error = LookupError("same")

        async def fails(**kwargs):
            raise error

        sig.connect(fails)
        with pytest.raises(LookupError) as info:
            sig.send(None)
        assert info.value is error


class TestTrio:
    """asend under trio.run with trio-native receivers."""

    def test_asend_under_trio(self, sig):
        def sync(**kwargs):
            return "sync"

        async def native(**kwargs):
            await trio.sleep(0.01)
            return "trio"

        sig.connect(native)
        sig.connect(sync)
        results = trio.run(sig.asend, None)
        assert [r for _, r in results] == ["sync", "trio"]

    def test_failure_propagates_unwrapped_and_cancels_siblings(self, sig):
        error = KeyError("boom")
        cancelled = []

        async def fails(**kwargs):
            await trio.sleep(0.01)
            raise error

        async def sibling(**kwargs):
            try:
                await trio.sleep(10)
            except trio.Cancelled:
                cancelled.append(True)
                raise

        sig.connect(sibling)
        sig.connect(fails)

        async def main():
            with pytest.raises(KeyError) as info:
                await sig.asend(None)
            assert info.value is error
            assert cancelled == [True]

        trio.run(main)

    def test_robust_and_cancellation(self, sig):
        async def fails(**kwargs):
            raise ValueError("v")

        async def waits(**kwargs):
            await trio.sleep(10)

        sig.connect(fails)

        async def main():
            [(_, response)] = await sig.asend_robust(None)
            assert isinstance(response, ValueError)
            sig.disconnect(fails)
            sig.connect(waits)
            with trio.move_on_after(0.05) as scope:
                await sig.asend(None)
            assert scope.cancelled_caught

        trio.run(main)

    def test_sequential_under_trio(self):
        sig = tocsin.Signal(async_mode="sequential")
        log = []

        async def a(**kwargs):
            await trio.sleep(0.01)
            log.append("a")

        def b(**kwargs):
            log.append("b")

        sig.connect(a)
        sig.connect(b)
        trio.run(sig.asend, None)
        assert log == ["a", "b"]


class TestAwaiter:
    """An integration may tell a sync send inside a running loop how to wait (async_asyncio.awaiter)."""

    def test_sync_send_in_a_loop_uses_the_awaiter(self, sig):
        from concurrent.futures import ThreadPoolExecutor

        from tocsin._core import async_asyncio as _async

        ran: list[str] = []

        async def receiver(sender, **kwargs):
            await asyncio.sleep(0)
            ran.append(sender)
            return "done"

        def sync_receiver(sender, **kwargs):
            ran.append(f"sync {sender}")

        def in_another_thread(coro):
            # Stands in for SQLAlchemy's await_: any way of running it to completion.
            with ThreadPoolExecutor(1) as pool:
                return pool.submit(asyncio.run, coro).result()

        sig.connect(receiver)
        sig.connect(sync_receiver)

        async def main():
            with pytest.raises(RuntimeError, match="asend"):
                sig.send("refused")
            token = _async.awaiter.set(in_another_thread)
            try:
                return sig.send("waited")
            finally:
                _async.awaiter.reset(token)

        responses = asyncio.run(main())
        assert ran == ["sync waited", "waited"]
        assert responses == [(sync_receiver, None), (receiver, "done")]

    def test_awaiter_errors_propagate(self, sig):
        from tocsin._core import async_asyncio as _async

        async def receiver(**kwargs):
            raise LookupError("boom")

        sig.connect(receiver)
        token = _async.awaiter.set(asyncio.run)
        try:
            with pytest.raises(LookupError, match="boom"):
                sig.send(None)
        finally:
            _async.awaiter.reset(token)
