"""Delivery policies (via=): deferred calls, responses and policy failures."""

from __future__ import annotations

import gc
import logging
import weakref
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

import tocsin


class Boom(Exception):
    pass


@pytest.fixture(name="sig")
def _sig() -> tocsin.Signal:
    return tocsin.Signal(name="delivery")


@pytest.fixture(name="pending")
def _pending() -> list[Any]:
    # list[Any], not list[DeferredCall]: connect() types via= as taking any
    # zero-argument callable, so list[DeferredCall].append does not fit it.
    return []


def record(log: list[Any], name: str) -> Any:
    def receiver(signal: tocsin.Signal, sender: object, **kwargs: Any) -> str:
        log.append((name, sender, kwargs))
        return name

    return receiver


class TestQueuedPolicy:
    def test_send_defers_the_call(self, sig: tocsin.Signal, pending: list[Any]) -> None:
        """A queued receiver does not run during send; send returns a Deferred for it."""
        log: list[Any] = []
        later = record(log, "later")
        sig.connect(later, via=pending.append)
        ((receiver, deferred),) = sig.send("s", value=1)
        assert receiver is later
        assert isinstance(deferred, tocsin.Deferred)
        assert deferred.handle is None  # what list.append returned
        assert log == []
        (call,) = pending
        assert isinstance(call, tocsin.DeferredCall)
        assert deferred.call is call
        assert call.receiver is later
        assert call.sender == "s"
        assert call.kwargs == {"value": 1}
        assert call() == "later"
        assert log == [("later", "s", {"value": 1})]

    def test_call_gets_signal(self, sig: tocsin.Signal, pending: list[Any]) -> None:
        """The deferred call passes signal= like a direct one."""
        seen: list[object] = []
        sig.connect(lambda signal, **kwargs: seen.append(signal), via=pending.append)
        sig.send(None)
        pending[0]()
        assert seen == [sig]

    def test_mixed_with_direct_receivers(self, sig: tocsin.Signal, pending: list[Any]) -> None:
        """Direct receivers run at once, in order, around the deferred one."""
        log: list[Any] = []
        first, queued, last = record(log, "first"), record(log, "queued"), record(log, "last")
        sig.connect(first)
        sig.connect(queued, via=pending.append)
        sig.connect(last)
        responses = sig.send(None)
        assert [r for r, _ in responses] == [first, queued, last]
        assert responses[0][1] == "first"
        assert isinstance(responses[1][1], tocsin.Deferred)
        assert responses[2][1] == "last"
        assert [name for name, *_ in log] == ["first", "last"]
        pending.pop()()
        assert [name for name, *_ in log] == ["first", "last", "queued"]

    def test_priority_order_applies_to_policy_calls(self, sig: tocsin.Signal, pending: list[Any]) -> None:
        """Policies are invoked in the receivers' priority order."""
        log: list[Any] = []
        low, high = record(log, "low"), record(log, "high")
        sig.connect(low, via=pending.append)
        sig.connect(high, via=pending.append, priority=1)
        sig.send(None)
        assert [call.receiver for call in pending] == [high, low]

    def test_each_send_queues_its_own_call(self, sig: tocsin.Signal, pending: list[Any]) -> None:
        """Two sends make two calls with their own arguments, also per sender."""
        log: list[Any] = []
        sig.connect(record(log, "r"), sender="a", via=pending.append)
        sig.send("a", n=1)
        sig.send("b", n=2)
        sig.send("a", n=3)
        for call in pending:
            call()
        assert log == [("r", "a", {"n": 1}), ("r", "a", {"n": 3})]

    def test_kwargs_are_captured(self, sig: tocsin.Signal, pending: list[Any]) -> None:
        """The captured kwargs are a copy, independent of later mutation by receivers."""

        def mutate(**kwargs: Any) -> None:
            kwargs["n"] = "changed"

        sig.connect(lambda **kwargs: kwargs["n"], via=pending.append)
        sig.connect(mutate)
        sig.send(None, n=1)
        assert pending[0]() == 1

    def test_weak_receiver_kept_by_pending_call(self, sig: tocsin.Signal, pending: list[Any]) -> None:
        """A weak receiver alive at send time still runs when the call runs."""
        log: list[str] = []

        class Listener:
            def on(self, **kwargs: Any) -> None:
                log.append("on")

        listener = Listener()
        sig.connect(listener.on, via=pending.append)
        sig.send(None)
        ref = weakref.ref(listener)
        del listener
        gc.collect()
        assert ref() is not None  # held by the pending call
        pending.pop()()
        assert log == ["on"]
        gc.collect()
        assert ref() is None
        assert sig.send(None) == []

    def test_connections_report_policy(self, sig: tocsin.Signal, pending: list[Any]) -> None:
        """connections() reports the policy of each connection."""
        sig.connect(record([], "r"), via=pending.append)
        assert sig.connections()[0].via == pending.append

    def test_receivers_for_includes_deferred(self, sig: tocsin.Signal, pending: list[Any]) -> None:
        """A deferred receiver is a listener like any other."""
        receiver = record([], "r")
        sig.connect(receiver, via=pending.append)
        assert sig.has_listeners()
        assert sig.receivers_for(None) == [receiver]
        assert pending == []

    def test_send_robust_defers_too(self, sig: tocsin.Signal, pending: list[Any]) -> None:
        """send_robust hands deferred receivers to their policy as well."""
        log: list[Any] = []
        sig.connect(record(log, "r"), via=pending.append)
        ((_, deferred),) = sig.send_robust("s")
        assert isinstance(deferred, tocsin.Deferred)
        deferred.call()
        assert log == [("r", "s", {})]

    def test_call_can_run_twice(self, sig: tocsin.Signal, pending: list[Any]) -> None:
        """A DeferredCall may be called again; each call runs the receiver."""
        log: list[Any] = []
        sig.connect(record(log, "r"), via=pending.append)
        sig.send(None)
        pending[0]()
        pending[0]()
        assert len(log) == 2

    def test_error_when_the_call_runs(self, sig: tocsin.Signal, pending: list[Any]) -> None:
        """An exception raised when the deferred call runs goes to whoever runs it."""

        def fails(**kwargs: Any) -> None:
            raise Boom("later")

        sig.connect(fails, via=pending.append)
        sig.send(None)
        with pytest.raises(Boom, match="later"):
            pending[0]()


class TestExecutorPolicy:
    def test_executor_submit(self, sig: tocsin.Signal) -> None:
        """executor.submit is a policy; the handle is the future."""
        with ThreadPoolExecutor(max_workers=1) as executor:
            sig.connect(lambda sender, **kwargs: f"done {sender}", via=executor.submit)
            ((_, deferred),) = sig.send("s")
            assert deferred.handle.result(timeout=10) == "done s"


class TestFailingPolicy:
    @staticmethod
    def failing_policy(call: Any) -> None:
        raise Boom("policy")

    def test_send_propagates(self, sig: tocsin.Signal) -> None:
        """A policy that raises is like a receiver that raises: send propagates and stops."""
        after: list[str] = []
        sig.connect(record([], "r"), via=self.failing_policy)
        sig.connect(lambda **kwargs: after.append("after"))
        with pytest.raises(Boom, match="policy"):
            sig.send(None)
        assert after == []

    def test_send_robust_returns_and_logs(self, sig: tocsin.Signal, caplog: pytest.LogCaptureFixture) -> None:
        """send_robust returns the policy's exception for that receiver and logs it."""
        caplog.set_level(logging.ERROR, logger="tocsin")
        receiver = record([], "queued")
        sig.connect(receiver, via=self.failing_policy)
        sig.connect(lambda **kwargs: "after")
        (first, second) = sig.send_robust(None)
        assert first[0] is receiver
        assert isinstance(first[1], Boom)
        assert second[1] == "after"
        (log,) = caplog.records
        assert log.name == "tocsin"
        assert log.levelno == logging.ERROR
        assert log.exc_info is not None
        assert log.exc_info[1] is first[1]
        assert "record.<locals>.receiver" in log.getMessage()
