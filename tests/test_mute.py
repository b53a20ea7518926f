"""tocsin.testing.mute: silencing signals and receivers, nesting, threads, tasks."""

from __future__ import annotations

import asyncio
import gc
import io
import threading
import types
import unittest
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

import tocsin
from tocsin.testing import capture, mute

pytest_plugins = ["pytester"]


@pytest.fixture(name="sig")
def _sig() -> tocsin.Signal:
    return tocsin.Signal(name="sig")


def _make(name: str, log: list[str]) -> Any:
    def handler(sender: Any, **kwargs: Any) -> str:
        log.append(name)
        return name

    return handler


class TestMuteSignal:
    def test_silences_every_receiver(self, sig: tocsin.Signal) -> None:
        """A muted signal runs no receiver and send() returns []."""
        log: list[str] = []
        a, b = _make("a", log), _make("b", log)
        sig.connect(a)
        sig.connect(b, sender="s")
        with mute(sig):
            assert sig.send("s") == []
            assert sig.send_robust(None) == []
        assert log == []
        assert [r for _, r in sig.send("s")] == ["a", "b"]

    def test_nesting_inner_exit_keeps_outer(self, sig: tocsin.Signal) -> None:
        """Leaving an inner mute of the same signal does not unmute the outer one."""
        log: list[str] = []
        a = _make("a", log)
        sig.connect(a)
        with mute(sig):
            with mute(sig):
                sig.send(None)
            sig.send(None)
            assert log == []
        sig.send(None)
        assert log == ["a"]

    def test_order_and_new_receivers_survive(self, sig: tocsin.Signal) -> None:
        """Order, priorities and receivers connected meanwhile are kept."""
        log: list[str] = []
        a, b, c, d = (_make(n, log) for n in "abcd")
        sig.connect(a)
        sig.connect(b, priority=10)
        with mute(sig):
            sig.connect(c)
            sig.connect(d, priority=20)
            sig.send(None)
            sig.disconnect(a)
            sig.connect(a)
        assert log == []
        sig.send(None)
        assert log == ["d", "b", "c", "a"]

    def test_no_stale_table(self, sig: tocsin.Signal) -> None:
        """A send right after the block sees the receivers again (no cached empty table)."""
        log: list[str] = []
        sig.connect(_make("a", log))
        sig.send(None)  # build and publish the table first
        with mute(sig):
            sig.send(None)
        sig.send(None)
        assert log == ["a", "a"]
        assert sig.has_listeners()

    def test_muted_send_is_still_captured(self, sig: tocsin.Signal) -> None:
        """capture() records a muted send, with no receivers run."""
        sig.connect(_make("a", []))
        with capture(sig) as sent, mute(sig):
            sig.send("s", x=1)
        sent.assert_sent_once_with(sender="s", x=1)
        assert sent.sent[0].receivers == []

    def test_rejects_non_targets(self) -> None:
        """Something neither a signal nor callable is refused with an example."""
        with pytest.raises(TypeError, match=r"^mute\(\) takes signals and receivers; got 42\."):
            mute(42)  # type: ignore[arg-type]


class TestMuteReceiver:
    def test_only_that_receiver(self, sig: tocsin.Signal) -> None:
        """mute(receiver) silences that receiver and keeps the others."""
        log: list[str] = []
        a, b = _make("a", log), _make("b", log)
        sig.connect(a)
        sig.connect(b)
        with mute(a):
            assert [r for _, r in sig.send(None)] == ["b"]
        assert [r for _, r in sig.send(None)] == ["a", "b"]

    def test_on_every_signal_and_sender(self) -> None:
        """A muted receiver is silent on every signal and for every sender it is connected for."""
        one, two = tocsin.Signal(), tocsin.Signal()
        log: list[str] = []
        a = _make("a", log)
        one.connect(a)
        two.connect(a, sender="s")
        with mute(a):
            one.send(None)
            two.send("s")
        assert log == []

    def test_bound_method_and_dispatch_uid(self, sig: tocsin.Signal) -> None:
        """Bound methods (a new object each access) and uid-keyed connections are matched."""
        log: list[str] = []

        class Handler:
            def on(self, sender: Any, **kwargs: Any) -> None:
                log.append("method")

        h = Handler()
        uid = _make("uid", log)
        sig.connect(h.on)
        sig.connect(uid, dispatch_uid="the-uid")
        with mute(h.on, uid):
            sig.send(None)
        assert log == []
        sig.send(None)
        assert log == ["method", "uid"]

    def test_reconnected_inside_block_stays_muted(self, sig: tocsin.Signal) -> None:
        """The mute follows the receiver, not one connection."""
        log: list[str] = []
        a = _make("a", log)
        sig.connect(a)
        with mute(a):
            sig.disconnect(a)
            sig.connect(a, sender="s")
            sig.send("s")
        assert log == []
        sig.send("s")
        assert log == ["a"]

    def test_signal_and_receiver_nested(self, sig: tocsin.Signal) -> None:
        """Muting a receiver inside a muted signal and leaving it keeps the signal muted."""
        log: list[str] = []
        a = _make("a", log)
        sig.connect(a)
        with mute(sig):
            with mute(a):
                pass
            sig.send(None)
        assert log == []


class TestMuteDecorator:
    def test_sync_function(self, sig: tocsin.Signal) -> None:
        """As a decorator, each call runs muted."""
        log: list[str] = []
        sig.connect(_make("a", log))

        @mute(sig)
        def job() -> list[Any]:
            return sig.send(None)

        assert job() == []
        assert job.__name__ == "job"
        sig.send(None)
        assert log == ["a"]

    def test_async_function(self, sig: tocsin.Signal) -> None:
        """An async def stays a coroutine function and runs muted while awaited."""
        log: list[str] = []
        sig.connect(_make("a", log))

        @mute(sig)
        async def job() -> list[Any]:
            await asyncio.sleep(0)
            return sig.send(None)

        assert asyncio.iscoroutinefunction(job)
        assert asyncio.run(job()) == []
        assert log == []

    def test_recursive_calls(self, sig: tocsin.Signal) -> None:
        """Overlapping calls of one decorated function each hold their own block."""
        log: list[str] = []
        sig.connect(_make("a", log))

        @mute(sig)
        def job(depth: int) -> None:
            if depth:
                job(depth - 1)
            sig.send(None)

        job(3)
        assert log == []
        sig.send(None)
        assert log == ["a"]


def _run_unittest(*classes: type[unittest.TestCase]) -> unittest.TestResult:
    """Load *classes* as unittest's loader finds them in a module, and run them."""
    module = types.ModuleType("decorated_tests")
    for cls in classes:
        setattr(module, cls.__name__, cls)
    suite = unittest.defaultTestLoader.loadTestsFromModule(module)
    return unittest.TextTestRunner(stream=io.StringIO(), verbosity=0).run(suite)


class TestMuteClasses:
    """@mute(...) on classes: unittest.TestCase subclasses and plain test classes."""

    def test_unittest_testcase(self, sig: tocsin.Signal) -> None:
        """The class stays a TestCase; setUpClass, setUp and every test run muted, then it unmutes."""
        log: list[str] = []
        sig.connect(_make("a", log))
        seen: list[tuple[str, list[Any]]] = []

        @mute(sig)
        class OrderTests(unittest.TestCase):
            @classmethod
            def setUpClass(cls) -> None:
                seen.append(("setUpClass", sig.send(None)))

            def setUp(self) -> None:
                seen.append(("setUp", sig.send(None)))

            def test_one(self) -> None:
                seen.append(("test_one", sig.send(None)))

            def test_two(self) -> None:
                seen.append(("test_two", sig.send(None)))

        assert isinstance(OrderTests, type)
        assert issubclass(OrderTests, unittest.TestCase)
        result = _run_unittest(OrderTests)
        assert (result.testsRun, result.errors, result.failures) == (2, [], [])
        assert seen == [
            ("setUpClass", []),
            ("setUp", []),
            ("test_one", []),
            ("setUp", []),
            ("test_two", []),
        ]
        assert log == []
        sig.send(None)
        assert log == ["a"]

    def test_inherited_setupclass_and_subclasses(self, sig: tocsin.Signal) -> None:
        """Without its own setUpClass the class still mutes; a subclass inherits the mute."""
        log: list[str] = []
        sig.connect(_make("a", log))

        @mute(sig)
        class Base(unittest.TestCase):
            def test_base(self) -> None:
                assert sig.send(None) == []

        class Child(Base):
            @classmethod
            def setUpClass(cls) -> None:
                super().setUpClass()
                assert sig.send(None) == []

            def test_child(self) -> None:
                assert sig.send(None) == []

        result = _run_unittest(Base, Child)
        assert (result.testsRun, result.errors, result.failures) == (3, [], [])
        assert log == []
        sig.send(None)
        assert log == ["a"]

    def test_setupclass_failure_unmutes(self, sig: tocsin.Signal) -> None:
        """A setUpClass that raises still leaves the signal unmuted (a class cleanup)."""
        log: list[str] = []
        sig.connect(_make("a", log))

        @mute(sig)
        class Broken(unittest.TestCase):
            @classmethod
            def setUpClass(cls) -> None:
                msg = "fixture failed"
                raise RuntimeError(msg)

            def test_never_runs(self) -> None:
                pass

        result = _run_unittest(Broken)
        assert len(result.errors) == 1
        assert "fixture failed" in result.errors[0][1]
        sig.send(None)
        assert log == ["a"]

    def test_isolated_asyncio_testcase(self, sig: tocsin.Signal) -> None:
        """async test methods of an IsolatedAsyncioTestCase run muted, asend included."""
        log: list[str] = []
        sig.connect(_make("a", log))
        ran: list[str] = []

        @mute(sig)
        class AsyncTests(unittest.IsolatedAsyncioTestCase):
            async def test_async(self) -> None:
                assert await sig.asend(None) == []
                ran.append("test_async")

        result = _run_unittest(AsyncTests)
        assert (result.testsRun, result.errors, result.failures) == (1, [], [])
        assert ran == ["test_async"]
        assert log == []

    def test_plain_test_class(self, sig: tocsin.Signal) -> None:
        """A pytest-style class: each test* method runs muted (sync and async); other methods do not."""
        log: list[str] = []
        sig.connect(_make("a", log))

        class Base:
            def test_inherited(self) -> list[Any]:
                return sig.send(None)

        @mute(sig)
        class TestOrders(Base):
            def test_sync(self) -> list[Any]:
                return sig.send(None)

            async def test_async(self) -> list[Any]:
                return await sig.asend(None)

            @staticmethod
            def test_static() -> list[Any]:
                return sig.send(None)

            def helper(self) -> list[Any]:
                return sig.send(None)

        tests = TestOrders()
        assert tests.test_sync() == []
        assert tests.test_inherited() == []
        assert TestOrders.test_static() == []
        assert asyncio.iscoroutinefunction(TestOrders.test_async)
        assert asyncio.run(tests.test_async()) == []
        assert log == []
        assert [r for _, r in tests.helper()] == ["a"]
        assert [r for _, r in Base().test_inherited()] == ["a"]  # the base class is untouched
        assert TestOrders.test_sync.__name__ == "test_sync"

    def test_classes_under_pytest(self, pytester: pytest.Pytester) -> None:
        """Under pytest: both kinds of class keep their tests (fixtures, parametrize), run muted."""
        pytester.makepyfile(
            test_decorated="""
            import unittest

            import pytest
            import tocsin
            from tocsin.testing import mute

            sig = tocsin.Signal()
            calls = []
            def handler(sender, **kwargs):
                calls.append(sender)
            sig.connect(handler)

            @pytest.fixture
            def sender():
                return "fixture"

            @mute(sig)
            class TestMuted:
                def test_with_fixture(self, sender):
                    sig.send(sender)
                    assert calls == []

                @pytest.mark.parametrize("n", [1, 2])
                def test_parametrized(self, n):
                    sig.send(n)
                    assert calls == []

            @mute(sig)
            class MutedCase(unittest.TestCase):
                @classmethod
                def setUpClass(cls):
                    sig.send("setUpClass")

                def test_one(self):
                    sig.send(1)
                    assert calls == []

                def test_two(self):
                    sig.send(2)
                    assert calls == []

            def test_after():
                sig.send("after")
                assert calls == ["after"]
            """
        )
        result = pytester.runpytest("-p", "no:randomly", "-W", "error")
        result.assert_outcomes(passed=6)

    def test_class_without_tests_is_refused(self, sig: tocsin.Signal) -> None:
        """A class with nothing to mute is refused, not silently changed."""

        class OrderFactory:
            def build(self) -> None:
                pass

        with pytest.raises(
            TypeError,
            match=r"^@mute\(\.\.\.\) decorates functions, unittest\.TestCase subclasses and test classes "
            r"with test\* methods; .*OrderFactory is a class with no test\* methods\.",
        ):
            mute(sig)(OrderFactory)


class TestMuteMisuse:
    """mute() without targets and a bare @mute are refused with a clear message."""

    def test_no_targets(self) -> None:
        """mute() silences nothing: refused, saying what to pass."""
        with pytest.raises(
            TypeError,
            match=r"^mute\(\) needs the signals or receivers to silence, for example mute\(post_save\)",
        ):
            mute()

    def test_bare_decorator_on_a_function(self, sig: tocsin.Signal) -> None:
        """@mute without arguments above a def: calling the result explains the mistake."""

        @mute  # the mistake under test
        def import_orders(rows: int) -> None:
            sig.send(None)

        with pytest.raises(TypeError, match=r"bare `@mute` above `def import_orders`") as info:
            import_orders(3)  # type: ignore[type-var] # a type checker sees the mistake too
        assert "write `@mute(post_save)`" in str(info.value)
        with pytest.raises(TypeError, match=r"bare `@mute` above `def import_orders`"):
            import_orders()

    def test_bare_decorator_on_a_test_class(self) -> None:
        """@mute without arguments above a test class is refused at once (its tests would vanish)."""
        with pytest.raises(TypeError, match=r"^mute\(\) got the test class .*Cases as a signal or receiver"):

            @mute
            class Cases(unittest.TestCase):
                def test_x(self) -> None:
                    pass

        with pytest.raises(
            TypeError, match=r"^mute\(\) got the test class .*TestPlain as a signal or receiver"
        ):

            @mute
            class TestPlain:
                def test_x(self) -> None:
                    pass

    def test_generator_function(self, sig: tocsin.Signal) -> None:
        """A decorated generator runs muted while it is iterated, not only while it is created."""
        log: list[str] = []
        sig.connect(_make("a", log))

        @mute(sig)
        def sends() -> Iterator[list[Any]]:
            yield sig.send(None)
            yield sig.send(None)

        assert list(sends()) == [[], []]
        assert log == []

    def test_async_generator_refused(self, sig: tocsin.Signal) -> None:
        """An async generator cannot be muted faithfully by a wrapper: refused, with the alternative."""

        async def events() -> AsyncIterator[int]:
            yield 1

        with pytest.raises(TypeError, match=r"^@mute\(\.\.\.\) cannot decorate the async generator"):
            mute(sig)(events)


class TestMuteIsGlobal:
    def test_other_threads_are_muted(self, sig: tocsin.Signal) -> None:
        """A mute is process-wide: a send from another thread is silenced too."""
        log: list[str] = []
        sig.connect(_make("a", log))
        results: list[Any] = []
        with mute(sig):
            t = threading.Thread(target=lambda: results.append(sig.send(None)))
            t.start()
            t.join()
        assert results == [[]]
        assert log == []

    def test_threads_muting_concurrently(self, sig: tocsin.Signal) -> None:
        """Blocks entered and left by many threads leave nothing muted behind."""
        log: list[str] = []
        a = _make("a", log)
        sig.connect(a)
        barrier = threading.Barrier(8)

        def work() -> None:
            barrier.wait()
            for _ in range(200):
                with mute(sig), mute(a):
                    sig.send(None)

        threads = [threading.Thread(target=work) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert log == []
        assert sig._filter is None  # every block left: no filter, nothing muted
        sig.send(None)
        assert log == ["a"]

    def test_asyncio_tasks_share_the_mute(self, sig: tocsin.Signal) -> None:
        """Another task's send is silenced while one task is inside the block."""
        log: list[str] = []
        sig.connect(_make("a", log))

        async def main() -> None:
            entered = asyncio.Event()
            leave = asyncio.Event()

            async def muter() -> None:
                with mute(sig):
                    entered.set()
                    await leave.wait()

            task = asyncio.create_task(muter())
            await entered.wait()
            sig.send(None)  # from this task, while the other holds the mute
            leave.set()
            await task
            sig.send(None)

        asyncio.run(main())
        assert log == ["a"]

    def test_dead_receiver_while_muted(self, sig: tocsin.Signal) -> None:
        """A muted receiver that dies is cleaned up; leaving the block does not fail."""
        log: list[str] = []
        a = _make("a", log)
        sig.connect(a)
        with mute(a):
            del a
            gc.collect()
            sig.send(None)
        assert sig.send(None) == []
        assert log == []
