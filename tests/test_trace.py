"""Observing dispatch: tocsin.observe(), tocsin.trace() and their zero cost when off."""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import threading

import pytest

import tocsin
from tocsin._core import hooks as _hooks
from tocsin._core.plans import _table_of
from tocsin._observability.observe import Observer, ReceiverEvent, SendEvent, observe
from tocsin._observability.trace import trace


class Recorder(Observer):
    def __init__(self):
        self.calls = []

    def send_started(self, event):
        self.calls.append(("send_started", event))

    def send_finished(self, event):
        self.calls.append(("send_finished", event))

    def receiver_started(self, event):
        self.calls.append(("receiver_started", event))

    def receiver_finished(self, event):
        self.calls.append(("receiver_finished", event))

    def deferred_started(self, event):
        self.calls.append(("deferred_started", event))

    def deferred_finished(self, event):
        self.calls.append(("deferred_finished", event))

    def kinds(self):
        return [kind for kind, _ in self.calls]


def ok(sender, **kwargs):
    return "ok"


def boom(sender, **kwargs):
    raise ValueError("boom")


def assert_off(sig):
    assert _hooks.receiver_observer is None
    assert _hooks.global_interceptors() == ()
    sig.send(sender=None)  # publishes the table again
    assert sig._routes is _table_of(sig._routes)  # the fast path is back


class TestObserve:
    def test_events_for_a_send(self):
        """Each send and receiver call is reported, in order, with timing and results."""
        sig = tocsin.Signal(name="ping")
        sig.connect(ok)
        rec = Recorder()
        with observe(rec):
            assert sig.send(sender="s", x=1) == [(ok, "ok")]
        assert rec.kinds() == ["send_started", "receiver_started", "receiver_finished", "send_finished"]
        send: SendEvent = rec.calls[0][1]
        assert (send.signal, send.sender, send.kwargs, send.label) == (sig, "s", {"x": 1}, "ping")
        assert not send.robust
        assert not send.is_async
        assert send.duration is not None
        assert send.duration >= 0
        assert send.responses == [(ok, "ok")]
        [event] = send.receivers
        assert isinstance(event, ReceiverEvent)
        assert (event.receiver, event.result, event.error) == (ok, "ok", None)
        assert event.name.endswith("test_trace.ok")
        assert 0 <= event.duration <= send.duration
        assert_off(sig)

    def test_exception_propagates_and_is_recorded(self):
        """send(): the receiver's exception is recorded on both events and still propagates."""
        sig = tocsin.Signal()
        sig.connect(boom)
        sig.connect(ok)
        rec = Recorder()
        with observe(rec), pytest.raises(ValueError, match=r"^boom$") as info:
            sig.send(sender=None)
        send = rec.calls[0][1]
        assert send.error is info.value
        assert send.responses is None
        assert [r.error for r in send.receivers] == [info.value]  # ok never ran

    def test_robust_records_failure_and_goes_on(self, caplog):
        """send_robust(): a failure is recorded and the next receiver still runs."""
        sig = tocsin.Signal()
        sig.connect(boom)
        sig.connect(ok)
        with caplog.at_level(logging.ERROR, logger="tocsin"), trace(level=None) as t:
            sig.send_robust(sender=None)
        [send] = t.sends
        assert send.robust
        assert send.error is None
        assert [type(r.error) for r in send.receivers] == [ValueError, type(None)]
        assert send.receivers[1].result == "ok"

    def test_nested_sends_know_their_parent(self):
        """A send made inside a receiver has the outer send as parent."""
        outer, inner = tocsin.Signal(name="outer"), tocsin.Signal(name="inner")

        def relay(sender, **kwargs):
            inner.send(sender=sender)

        outer.connect(relay)
        inner.connect(ok)
        with trace(level=None) as t:
            outer.send(sender=None)
        first, second = t.sends
        assert (first.label, first.depth, first.parent) == ("outer", 0, None)
        assert (second.label, second.depth, second.parent) == ("inner", 1, first)

    def test_fast_path_receivers_and_delivery_policies(self):
        """Plain receivers (fast plan) and via= receivers (slow plan) are both observed."""
        sig = tocsin.Signal()
        calls = []
        sig.connect(ok)
        sig.connect(boom, via=calls.append, weak=False)
        with trace(level=None) as t:
            sig.send(sender=None)
        first, second = t.sends[0].receivers
        assert first.result == "ok"
        assert isinstance(second.result, tocsin.Deferred)
        assert len(calls) == 1

    def test_deferred_runs_are_observed_later(self):
        """A via= receiver's later run is reported as a deferred event of its send,
        in the thread that runs it, with sends it makes as children of that send."""
        sig, child = tocsin.Signal(name="saved"), tocsin.Signal(name="child")
        pending = []

        def index(sender, **kwargs):
            child.send(sender=sender)
            return "indexed"

        sig.connect(index, via=pending.append)
        sig.connect(boom, via=pending.append)
        recorder = Recorder()
        with observe(recorder):
            sig.send(sender=None)
            assert recorder.kinds() == [
                "send_started",
                "receiver_started",
                "receiver_finished",
                "receiver_started",
                "receiver_finished",
                "send_finished",
            ]
            del recorder.calls[:]
            worker = threading.Thread(target=pending[0])
            worker.start()
            worker.join()
            with pytest.raises(ValueError, match=r"^boom$"):
                pending[1]()
        kinds = recorder.kinds()
        assert kinds == [
            "deferred_started",
            "send_started",
            "send_finished",
            "deferred_finished",
            "deferred_started",
            "deferred_finished",
        ]
        run, nested, _, _, failed, _ = (event for _, event in recorder.calls)
        assert run.deferred
        assert run.receiver is index
        assert run.result == "indexed"
        assert run.error is None
        assert nested.parent is run.send
        assert nested.depth == 1
        assert failed.deferred
        assert isinstance(failed.error, ValueError)
        assert run.send.deferred == [run, failed]
        assert [r.deferred for r in run.send.receivers] == [False, False]

    def test_deferred_run_unobserved_when_the_send_was_not(self):
        """A call handed over before observing started is run but not reported."""
        sig = tocsin.Signal()
        pending = []
        sig.connect(ok, via=pending.append)
        sig.send(sender=None)
        recorder = Recorder()
        with observe(recorder):
            assert pending[0]() == "ok"
        assert recorder.calls == []

    def test_async_deferred_run(self):
        """An async via= receiver is observed from its first await to its end, in the awaiting task."""
        sig = tocsin.Signal()
        pending = []

        async def later(sender, **kwargs):
            await asyncio.sleep(0)
            return "later"

        sig.connect(later, via=pending.append)
        recorder = Recorder()
        with observe(recorder):
            sig.send(sender=None)
            del recorder.calls[:]
            awaitable = pending[0]()
            assert recorder.calls == []  # nothing ran yet
            assert asyncio.run(awaitable) == "later"
        assert recorder.kinds() == ["deferred_started", "deferred_finished"]
        event = recorder.calls[1][1]
        assert event.result == "later"
        assert event.duration is not None

    def test_other_threads(self):
        """Sends from other threads are observed, with the thread's name."""
        sig = tocsin.Signal()
        sig.connect(ok)
        with trace(level=None) as t:
            thread = threading.Thread(target=sig.send, args=(None,), name="worker-1")
            thread.start()
            thread.join()
        [send] = t.sends
        assert send.thread == "worker-1"
        assert send.parent is None
        assert len(send.receivers) == 1

    def test_observer_errors_are_logged_not_raised(self, caplog):
        """An observer that fails never changes what a send does."""

        class Broken(Observer):
            def receiver_started(self, event):
                raise RuntimeError("observer bug")

        sig = tocsin.Signal()
        sig.connect(ok)
        with caplog.at_level(logging.ERROR, logger="tocsin"), observe(Broken()):
            assert sig.send(sender=None) == [(ok, "ok")]
        assert "observer bug" in caplog.text

    def test_remover_is_idempotent_and_restores_fast_path(self):
        """observe() returns a remover; after it nothing is installed."""
        sig = tocsin.Signal()
        sig.connect(ok)
        sig.send(sender=None)
        fast = sig._routes
        remove = observe(Recorder())
        assert sig._routes is not fast
        second = observe(Recorder())
        remove()
        remove()
        assert _hooks.receiver_observer is not None  # the second is still on
        second()
        assert_off(sig)

    def test_observe_needs_an_observer(self):
        """observe() names what it wants."""
        with pytest.raises(TypeError, match=r"^tocsin.observe\(\) takes a tocsin.Observer"):
            observe(object())  # type: ignore[arg-type]

    def test_signal_created_while_observing(self):
        """Signals created while observing are observed too."""
        with trace(level=None) as t:
            sig = tocsin.Signal(name="late")
            sig.connect(ok)
            sig.send(sender=None)
        assert [s.label for s in t.sends] == ["late"]


class TestAsync:
    def test_asend_sync_and_async_receivers(self):
        """asend: sync receivers (worker thread) and async ones are both observed."""
        sig = tocsin.Signal(name="a")

        async def aok(sender, **kwargs):
            await asyncio.sleep(0)
            return "aok"

        sig.connect(ok)
        sig.connect(aok)
        with trace(level=None) as t:
            asyncio.run(sig.asend(sender=None))
        [send] = t.sends
        assert send.is_async
        assert sorted(r.result for r in send.receivers) == ["aok", "ok"]
        assert all(r.duration is not None for r in send.receivers)

    def test_asend_robust_failure(self, caplog):
        """asend_robust: an async receiver's exception is recorded."""
        sig = tocsin.Signal()

        async def aboom(sender, **kwargs):
            raise KeyError("k")

        sig.connect(aboom)
        with caplog.at_level(logging.ERROR, logger="tocsin"), trace(level=None) as t:
            [(_, response)] = asyncio.run(sig.asend_robust(sender=None))
        assert isinstance(response, KeyError)
        assert t.sends[0].receivers[0].error is response

    def test_asend_under_trio(self):
        """asend under trio: receivers observed the same way."""
        trio = pytest.importorskip("trio")
        sig = tocsin.Signal(name="t")

        async def aok(sender, **kwargs):
            await trio.sleep(0)
            return "aok"

        sig.connect(ok)
        sig.connect(aok)
        with trace(level=None) as t:
            trio.run(functools.partial(sig.asend, sender=None))
        [send] = t.sends
        assert send.is_async
        assert sorted(r.result for r in send.receivers) == ["aok", "ok"]

    def test_sync_send_with_async_receiver(self):
        """send() running an async receiver to completion is observed too."""
        sig = tocsin.Signal()

        async def aok(sender, **kwargs):
            return 1

        sig.connect(aok)
        with trace(level=None) as t:
            sig.send(sender=None)
        assert [r.result for r in t.sends[0].receivers] == [1]


class TestTrace:
    def test_logs_on_tocsin_trace_at_debug(self, caplog):
        """trace() logs sends and receivers on logger tocsin.trace at DEBUG."""
        sig = tocsin.Signal(name="order_placed")
        sig.connect(ok)
        sig.connect(boom)
        with caplog.at_level(logging.DEBUG, logger="tocsin.trace"), trace():
            sig.send_robust(sender=None, order=1)
        records = [r for r in caplog.records if r.name == "tocsin.trace"]
        assert all(r.levelno == logging.DEBUG for r in records)
        messages = [r.getMessage() for r in records]
        assert messages[0] == "send_robust order_placed sender=None kwargs=['order']"
        assert re.fullmatch(r"  \S+test_trace\.ok \d+\.\d{3} ms ok", messages[1])
        assert re.fullmatch(r"  \S+test_trace\.boom \d+\.\d{3} ms raised ValueError: boom", messages[2])
        assert messages[3].startswith("done order_placed: 2 receivers in ")

    def test_timeline(self):
        """Trace.timeline() summarises the sends with per-receiver durations."""
        sig = tocsin.Signal(name="tick")
        sig.connect(ok)
        with trace(level=None) as t:
            sig.send(sender=None)
        lines = t.timeline().splitlines()
        assert lines[0].startswith("1 send, 1 receiver call, 0 failures, ")
        assert "send tick sender=None" in lines[1]
        assert lines[2].strip().endswith("test_trace.ok  ok")

    def test_timeline_and_log_show_deferred_runs(self, caplog):
        """Deferred runs appear in the log and the timeline, failures counted."""
        sig = tocsin.Signal(name="saved")
        pending = []
        sig.connect(boom, via=pending.append)
        with caplog.at_level(logging.DEBUG, logger="tocsin.trace"), trace() as t:
            sig.send(sender=None)
            with pytest.raises(ValueError, match=r"^boom$"):
                pending[0]()
        messages = [r.getMessage() for r in caplog.records if r.name == "tocsin.trace"]
        assert re.fullmatch(
            r"deferred \S+test_trace\.boom for saved \d+\.\d{3} ms raised ValueError: boom", messages[-1]
        )
        lines = t.timeline().splitlines()
        assert lines[0].startswith("1 send, 1 receiver call, 1 deferred run, 1 failure, ")
        assert re.search(
            r"deferred \S+test_trace\.boom  \(\d+\.\d{3} ms\)  FAILED ValueError: boom$", lines[-1]
        )

    def test_record_false(self):
        """record=False keeps nothing."""
        sig = tocsin.Signal()
        sig.connect(ok)
        with trace(record=False) as t:
            sig.send(sender=None)
        assert t.sends == []
