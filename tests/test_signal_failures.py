"""A failing receiver under every send path, on the first send and on the next ones.

The first send of a signal builds its routing table (the slow path); later
sends of a plain signal take the fast loops of ``send``/``send_robust``. So
every scenario sends three times, and each send must behave the same:

* ``send``/``asend``: the receiver's exception propagates, nothing is logged;
* ``send_robust``/``asend_robust``: the exception is the receiver's response,
  the receivers after it still run, and exactly one record is logged, in
  Django's format: ``Error calling <qualname> in Signal.send_robust() (<error>)``
  on logger ``tocsin`` at ERROR with the traceback (``asend_robust()`` names
  itself).

Scenarios cover the fast path and each reason for the slow one: an
interceptor, a ``via=`` receiver (failing or not), an async receiver, a
local connection, sequential async mode; and trio for the async sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from typing import TYPE_CHECKING, Any

import pytest
import trio

import tocsin
from tocsin._core.plans import _DEFAULT

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator


SENDS = 3


def failing(**kwargs: Any) -> None:
    raise ValueError(f"boom {kwargs['n']}")


async def failing_async(**kwargs: Any) -> None:
    raise ValueError(f"boom {kwargs['n']}")


def fine(**kwargs: Any) -> str:
    return "fine"


async def fine_async(**kwargs: Any) -> str:
    return "fine-async"


def with_value(value: str, **kwargs: Any) -> None:
    raise ValueError(f"{value} {kwargs['n']}")


class Handler:
    def on_event(self, **kwargs: Any) -> None:
        raise ValueError(f"method {kwargs['n']}")

    def __call__(self, **kwargs: Any) -> None:
        raise ValueError(f"object {kwargs['n']}")


def at_once(call: Callable[[], Any]) -> Any:
    """A delivery policy that runs the receiver immediately."""
    return call()


class PassThrough:
    """An interceptor that only lets sends through (as the tools do when inactive)."""

    def send(self, dispatch: Any, proceed: Callable[[], Any]) -> Any:
        return proceed()

    async def asend(self, dispatch: Any, proceed: Callable[[], Awaitable[Any]]) -> Any:
        return await proceed()


SCENARIOS = [
    "fast",
    "interceptor",
    "via-other",
    "via-failing",
    "async-other",
    "async-failing",
    "local",
    "sequential",
]


@contextlib.contextmanager
def scenario(name: str, receiver: Callable[..., Any] = failing) -> Iterator[tocsin.Signal]:
    """A signal whose receivers are *receiver* then ``fine`` (plus what *name* adds)."""
    sig = tocsin.Signal(name="scenario", async_mode="sequential" if name == "sequential" else "concurrent")
    with contextlib.ExitStack() as stack:
        if name == "async-failing":
            receiver = failing_async
        sig.connect(receiver, via=at_once if name == "via-failing" else None)
        sig.connect(fine)
        if name == "interceptor":
            stack.callback(sig.add_interceptor(PassThrough()))
        elif name == "via-other":
            sig.connect(fine, sender="other", via=at_once)  # any connection with via= makes plans slow
            sig.connect(lambda **kwargs: None, via=at_once)
        elif name in ("async-other", "sequential"):
            sig.connect(fine_async)
        elif name == "local":
            stack.enter_context(sig.connected_to(lambda **kwargs: "local", local=True))
        yield sig


def expected_robust_responses(name: str) -> int:
    return {"via-other": 3, "async-other": 3, "sequential": 3, "local": 3}.get(name, 2)


def check_log(
    caplog: pytest.LogCaptureFixture,
    sig: tocsin.Signal,
    receiver: Any,
    error: BaseException,
    *,
    qualname: str,
    method: str,
) -> None:
    """Exactly one record since the last clear: Django's line for *receiver* and *error*."""
    records = [r for r in caplog.records if r.name == "tocsin"]
    assert len(records) == 1, [r.getMessage() for r in records]
    (record,) = records
    assert record.levelno == logging.ERROR
    assert record.getMessage() == f"Error calling {qualname} in Signal.{method}() ({error})"
    assert record.exc_info is not None
    assert record.exc_info[1] is error
    assert record.signal is sig  # type: ignore[attr-defined]
    assert record.receiver == receiver  # type: ignore[attr-defined]
    caplog.clear()


def failure_of(responses: list[tuple[Any, Any]]) -> tuple[Any, BaseException]:
    (failure,) = [(r, e) for r, e in responses if isinstance(e, BaseException)]
    return failure


def is_fast(sig: tocsin.Signal, sender: object) -> bool:
    """Whether a send from *sender* takes ``send``'s fast loop (a plain tuple plan)."""
    routes = sig._routes  # the test must know which path it exercised
    plan = routes.get(id(sender))
    if plan is None:
        plan = routes[_DEFAULT]
    return type(plan) is tuple


@pytest.fixture(autouse=True)
def _errors_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="tocsin")


@pytest.mark.parametrize("name", SCENARIOS)
class TestSync:
    def test_send_robust_logs_every_failure(self, name: str, caplog: pytest.LogCaptureFixture) -> None:
        """Each of three send_robust() calls returns the error and logs it once, Django's way."""
        with scenario(name) as sig:
            receiver = failing_async if name == "async-failing" else failing
            for n in range(SENDS):
                responses = sig.send_robust(None, n=n)
                assert len(responses) == expected_robust_responses(name)
                assert ("fine" in [r for _, r in responses]) is True
                failed, error = failure_of(responses)
                assert failed is receiver
                assert isinstance(error, ValueError)
                assert str(error) == f"boom {n}"
                check_log(caplog, sig, receiver, error, qualname=receiver.__qualname__, method="send_robust")

    def test_send_propagates_without_logging(self, name: str, caplog: pytest.LogCaptureFixture) -> None:
        """Each of three send() calls raises the receiver's exception and logs nothing."""
        with scenario(name) as sig:
            for n in range(SENDS):
                with pytest.raises(ValueError, match=rf"^boom {n}$"):
                    sig.send(None, n=n)
                assert caplog.records == []


def test_the_fast_scenario_takes_the_fast_path() -> None:
    """The "fast" scenario's later sends do reach send_robust's fast loop."""
    with scenario("fast") as sig:
        assert not is_fast(sig, None)
        sig.send_robust(None, n=0)
        assert is_fast(sig, None)
    with scenario("interceptor") as sig:
        sig.send_robust(None, n=0)
        assert not is_fast(sig, None)


@pytest.mark.parametrize(
    ("receiver", "qualname"),
    [
        (Handler().on_event, "Handler.on_event"),
        (Handler(), "Handler instance"),
        (functools.partial(with_value, "partial"), "with_value"),
    ],
    ids=["bound-method", "callable-object", "partial"],
)
@pytest.mark.parametrize("name", ["fast", "interceptor"])
def test_log_names_other_receivers(
    name: str, receiver: Any, qualname: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Methods, callable objects and partials are named by their qualname, on every send."""
    with scenario(name, receiver) as sig:
        for n in range(SENDS):
            failed, error = failure_of(sig.send_robust(None, n=n))
            assert failed == receiver
            check_log(caplog, sig, receiver, error, qualname=qualname, method="send_robust")


def test_log_of_a_nested_function_matches_django(caplog: pytest.LogCaptureFixture) -> None:
    """Django's tests/dispatch message, word for word."""
    sig = tocsin.Signal()

    def fails(val: Any, **kwargs: Any) -> None:
        raise ValueError("this")

    sig.connect(fails)
    for _ in range(SENDS):
        ((_, err),) = sig.send_robust(sender=None, val="test")
        (record,) = caplog.records
        assert record.getMessage() == (
            "Error calling test_log_of_a_nested_function_matches_django.<locals>.fails in "
            "Signal.send_robust() (this)"
        )
        assert record.exc_info is not None
        assert record.exc_info[1] is err
        caplog.clear()


async def _asend_robust_three_times(name: str, caplog: pytest.LogCaptureFixture) -> None:
    with scenario(name) as sig:
        receiver = failing_async if name == "async-failing" else failing
        for n in range(SENDS):
            responses = await sig.asend_robust(None, n=n)
            assert len(responses) == expected_robust_responses(name)
            failed, error = failure_of(responses)
            assert failed is receiver
            assert str(error) == f"boom {n}"
            check_log(caplog, sig, receiver, error, qualname=receiver.__qualname__, method="asend_robust")


async def _asend_three_times(name: str, caplog: pytest.LogCaptureFixture) -> None:
    with scenario(name) as sig:
        for n in range(SENDS):
            with pytest.raises(ValueError, match=rf"^boom {n}$"):
                await sig.asend(None, n=n)
            assert caplog.records == []


@pytest.mark.parametrize("name", SCENARIOS)
class TestAsync:
    def test_asend_robust_logs_every_failure_asyncio(
        self, name: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Under asyncio, three asend_robust() calls each log once, naming asend_robust()."""
        asyncio.run(_asend_robust_three_times(name, caplog))

    def test_asend_robust_logs_every_failure_trio(self, name: str, caplog: pytest.LogCaptureFixture) -> None:
        """Under trio, the same."""
        trio.run(_asend_robust_three_times, name, caplog)

    def test_asend_propagates_without_logging_asyncio(
        self, name: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        asyncio.run(_asend_three_times(name, caplog))

    def test_asend_propagates_without_logging_trio(self, name: str, caplog: pytest.LogCaptureFixture) -> None:
        trio.run(_asend_three_times, name, caplog)
