"""Sending: arguments, responses, exceptions, send_robust and its logging."""

from __future__ import annotations

import functools
import logging
from typing import Any

import pytest

import tocsin
from tocsin.exceptions import DispatchError, SendArgumentsError


class Sender:
    pass


class Boom(Exception):
    pass


def echo(signal: tocsin.Signal, sender: object, **kwargs: Any) -> tuple[Any, ...]:
    return (signal, sender, kwargs)


def fails(**kwargs: Any) -> None:
    raise Boom("fails")


@pytest.fixture(name="sig")
def _sig() -> tocsin.Signal:
    return tocsin.Signal(name="sending")


@pytest.fixture(name="logs")
def _logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.ERROR, logger="tocsin")
    return caplog


class TestSend:
    def test_no_receivers(self, sig: tocsin.Signal) -> None:
        """Sending with nobody connected returns an empty list."""
        assert sig.send(None) == []
        assert sig.send_robust(Sender()) == []

    def test_arguments_reach_receiver(self, sig: tocsin.Signal) -> None:
        """Receivers get signal=, sender= and the named arguments."""
        sender = Sender()
        sig.connect(echo)
        ((receiver, (signal, got_sender, kwargs)),) = sig.send(sender, a=1, b="two")
        assert receiver is echo
        assert signal is sig
        assert got_sender is sender
        assert kwargs == {"a": 1, "b": "two"}

    def test_sender_as_keyword(self, sig: tocsin.Signal) -> None:
        """send(sender=...) works like the positional form."""
        sig.connect(echo)
        assert sig.send(sender="s")[0][1][1] == "s"
        assert sig.send_robust(sender="s")[0][1][1] == "s"

    def test_responses_in_order(self, sig: tocsin.Signal) -> None:
        """send() returns (receiver, response) pairs in call order, Nones included."""

        def none(**kwargs: Any) -> None:
            return None

        def value(**kwargs: Any) -> int:
            return 7

        sig.connect(none)
        sig.connect(value)
        assert sig.send(None) == [(none, None), (value, 7)]

    def test_named_arguments_are_copied_per_receiver(self, sig: tocsin.Signal) -> None:
        """A receiver mutating its kwargs does not change what the next one gets."""

        def mutate(**kwargs: Any) -> None:
            kwargs["extra"] = 1
            kwargs.pop("value")

        def check(**kwargs: Any) -> set[str]:
            return set(kwargs)

        sig.connect(mutate)
        sig.connect(check)
        assert sig.send(None, value=1)[1][1] == {"signal", "sender", "value"}

    def test_bound_method_and_callable_object(self, sig: tocsin.Signal) -> None:
        """Methods get their instance; callable objects are called."""

        class Listener:
            def __init__(self) -> None:
                self.seen: list[object] = []

            def on(self, sender: object, **kwargs: Any) -> Listener:
                self.seen.append(sender)
                return self

            def __call__(self, **kwargs: Any) -> str:
                return "called"

        listener = Listener()
        sig.connect(listener.on)
        sig.connect(listener)
        responses = sig.send("s")
        assert responses[0][0] == listener.on
        assert responses[0][1] is listener
        assert responses[1] == (listener, "called")
        assert listener.seen == ["s"]


class TestSendArguments:
    def test_missing_sender(self, sig: tocsin.Signal) -> None:
        """send() without a sender is a clear TypeError, even with no receivers."""
        for name in ("send", "send_robust"):
            with pytest.raises(TypeError, match=rf"^Signal\.{name}\(\) needs a sender") as info:
                getattr(sig, name)()
            assert isinstance(info.value, SendArgumentsError)
            assert isinstance(info.value, DispatchError)

    def test_missing_sender_with_receivers(self, sig: tocsin.Signal) -> None:
        """The check happens before any receiver runs."""
        called: list[object] = []
        sig.connect(lambda **kwargs: called.append(kwargs))
        with pytest.raises(TypeError, match="needs a sender"):
            sig.send(value=1)
        with pytest.raises(TypeError, match="needs a sender"):
            sig.send_robust(value=1)
        assert called == []

    def test_signal_among_named(self, sig: tocsin.Signal) -> None:
        """signal= among the named arguments is refused before any receiver runs."""
        called: list[object] = []
        sig.connect(lambda **kwargs: called.append(kwargs))
        for method in (sig.send, sig.send_robust):
            with pytest.raises(TypeError, match=r"got signal='oops' among its named arguments"):
                method(None, signal="oops")
        assert called == []

    @pytest.mark.parametrize("method", ["send", "send_robust", "asend", "asend_robust"])
    @pytest.mark.parametrize("receivers", [0, 1])
    def test_errors_name_the_method_called(self, sig: tocsin.Signal, method: str, receivers: int) -> None:
        """Each method's errors name it (and the example awaits the async ones), on every send."""
        if receivers:
            sig.connect(echo)
        example = f"{'await ' if method.startswith('a') else ''}sig.{method}(sender=Order, order=order)"
        send = getattr(sig, method)
        for _ in range(3):  # a plain signal's later sends take the fast path
            with pytest.raises(SendArgumentsError) as info:
                send(value=1)
            assert str(info.value) == (
                f"Signal.{method}() needs a sender: the object (often a class) that is sending. "
                f"Pass it first, for example {example}, or None for no particular sender."
            )
            with pytest.raises(
                SendArgumentsError,
                match=rf"^Signal\.{method}\(\) got signal='oops' among its named arguments",
            ):
                send(None, signal="oops")
            sig.send(None)

    def test_errors_name_the_subclass(self) -> None:
        """A subclass's errors name its class."""

        def spec(*, value: int) -> None: ...

        typed = tocsin.TypedSignal(spec)
        with pytest.raises(SendArgumentsError, match=r"^TypedSignal\.send_robust\(\) needs a sender"):
            typed.send_robust()  # type: ignore[call-arg]

    def test_signal_among_named_without_receivers(self, sig: tocsin.Signal) -> None:
        """The same error with nobody connected, so mistakes show up early."""
        with pytest.raises(SendArgumentsError):
            sig.send(Sender(), signal=sig)

    def test_sender_twice(self, sig: tocsin.Signal) -> None:
        """sender given positionally and by name is Python's own TypeError."""
        with pytest.raises(TypeError, match="multiple values"):
            sig.send(None, sender=None)  # type: ignore[misc]


class TestExceptions:
    def test_propagates_same_object(self, sig: tocsin.Signal) -> None:
        """A receiver's exception propagates unchanged and later receivers do not run."""
        error = Boom("original")
        after: list[str] = []

        def raises(**kwargs: Any) -> None:
            raise error

        sig.connect(raises)
        sig.connect(lambda **kwargs: after.append("ran"))
        with pytest.raises(Boom) as info:
            sig.send(None)
        assert info.value is error
        assert after == []

    def test_earlier_receivers_ran(self, sig: tocsin.Signal) -> None:
        """Receivers before the failing one have run."""
        before: list[str] = []
        sig.connect(lambda **kwargs: before.append("ran"))
        sig.connect(fails)
        with pytest.raises(Boom):
            sig.send(None)
        assert before == ["ran"]

    def test_base_exceptions_propagate_from_robust(self, sig: tocsin.Signal) -> None:
        """send_robust lets KeyboardInterrupt and SystemExit through."""

        def interrupt(**kwargs: Any) -> None:
            raise KeyboardInterrupt

        sig.connect(interrupt)
        with pytest.raises(KeyboardInterrupt):
            sig.send_robust(None)

    def test_traceback_points_at_receiver(self, sig: tocsin.Signal) -> None:
        """The propagated traceback ends in the receiver."""
        sig.connect(fails)
        with pytest.raises(Boom) as info:
            sig.send(None)
        assert info.traceback[-1].name == "fails"


class TestSendRobust:
    def test_failure_becomes_response(self, sig: tocsin.Signal, logs: pytest.LogCaptureFixture) -> None:
        """Every receiver runs; a failure is returned with its traceback."""
        ran: list[str] = []

        def after(**kwargs: Any) -> str:
            ran.append("after")
            return "ok"

        sig.connect(fails)
        sig.connect(after)
        (first, second) = sig.send_robust(None)
        assert first[0] is fails
        assert isinstance(first[1], Boom)
        assert first[1].args == ("fails",)
        assert first[1].__traceback__ is not None
        assert second[1] == "ok"
        assert ran == ["after"]

    def test_logs_each_failure(self, sig: tocsin.Signal, logs: pytest.LogCaptureFixture) -> None:
        """Each failure is logged on 'tocsin' at ERROR, with exc_info, in Django's words."""

        def also_fails(**kwargs: Any) -> None:
            raise KeyError("second")

        sig.connect(fails)
        sig.connect(also_fails)
        responses = sig.send_robust(None)
        records = [r for r in logs.records if r.name == "tocsin"]
        assert len(records) == 2
        for record, (_, error) in zip(records, responses, strict=True):
            assert record.levelno == logging.ERROR
            assert record.exc_info is not None
            assert record.exc_info[1] is error
        assert records[0].getMessage() == "Error calling fails in Signal.send_robust() (fails)"
        assert records[1].getMessage() == (
            "Error calling TestSendRobust.test_logs_each_failure.<locals>.also_fails in "
            "Signal.send_robust() ('second')"
        )

    def test_success_logs_nothing(self, sig: tocsin.Signal, logs: pytest.LogCaptureFixture) -> None:
        """A send_robust without failures logs nothing."""
        sig.connect(echo)
        sig.send_robust(None)
        assert logs.records == []

    def test_partial_failure(self, sig: tocsin.Signal, logs: pytest.LogCaptureFixture) -> None:
        """A failing functools.partial is logged by its function (Django raises AttributeError)."""

        def target(value: int, **kwargs: Any) -> None:
            raise Boom(value)

        sig.connect(functools.partial(target, 1))
        ((_, error),) = sig.send_robust(None)
        assert isinstance(error, Boom)
        (record,) = logs.records
        assert record.getMessage() == (
            "Error calling TestSendRobust.test_partial_failure.<locals>.target in Signal.send_robust() (1)"
        )

    def test_callable_object_failure(self, sig: tocsin.Signal, logs: pytest.LogCaptureFixture) -> None:
        """A failing callable object is logged by its class."""

        class Handler:
            def __call__(self, **kwargs: Any) -> None:
                raise Boom("object")

        handler = Handler()
        sig.connect(handler)
        ((_, error),) = sig.send_robust(None)
        assert isinstance(error, Boom)
        (record,) = logs.records
        assert "Handler instance" in record.getMessage()

    def test_class_failure(self, sig: tocsin.Signal, logs: pytest.LogCaptureFixture) -> None:
        """A class receiver whose constructor fails is logged by the class's name."""

        class Handler:
            def __init__(self, **kwargs: Any) -> None:
                raise Boom("init")

        sig.connect(Handler)
        ((_, error),) = sig.send_robust(None)
        assert isinstance(error, Boom)
        (record,) = logs.records
        assert "TestSendRobust.test_class_failure.<locals>.Handler in" in record.getMessage()

    def test_builtin_failure(self, sig: tocsin.Signal, logs: pytest.LogCaptureFixture) -> None:
        """A builtin receiver that fails is returned and logged too."""
        sig.connect(max)  # no signature to check; fails on the signal= keyword
        ((receiver, error),) = sig.send_robust(None)
        assert receiver is max
        assert isinstance(error, TypeError)
        (record,) = logs.records
        assert "max" in record.getMessage()

    def test_unprintable_receiver(self, sig: tocsin.Signal, logs: pytest.LogCaptureFixture) -> None:
        """A receiver whose repr raises still gets logged."""

        class Hostile:
            def __call__(self, **kwargs: Any) -> None:
                raise Boom("hostile")

            def __repr__(self) -> str:
                raise RuntimeError("no repr")

        hostile = Hostile()
        sig.connect(hostile, weak=False)
        ((_, error),) = sig.send_robust(None)
        assert isinstance(error, Boom)
        assert len(logs.records) == 1

    def test_failing_exception_str(self, sig: tocsin.Signal, logs: pytest.LogCaptureFixture) -> None:
        """An exception whose str() raises does not break send_robust."""

        class Weird(Exception):
            def __str__(self) -> str:
                raise RuntimeError("no str")

        def raises(**kwargs: Any) -> None:
            raise Weird

        sig.connect(raises)
        for _ in range(2):  # the first send and the fast path
            ((_, error),) = sig.send_robust(None)
            assert isinstance(error, Weird)
            (record,) = logs.records
            assert record.getMessage().endswith("raises in Signal.send_robust() (<exception str() failed>)")
            logs.clear()

    def test_signal_and_receiver_on_the_record(self, logs: pytest.LogCaptureFixture) -> None:
        """The message is Django's; the signal and receiver are attributes of the record."""
        sig = tocsin.Signal()
        sig.connect(fails)
        sig.send_robust(None)
        (record,) = logs.records
        assert repr(sig) not in record.getMessage()
        assert record.signal is sig  # type: ignore[attr-defined]
        assert record.receiver is fails  # type: ignore[attr-defined]
