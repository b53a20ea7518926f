"""Misuse of tocsin raises a ``tocsin.exceptions`` class, which also is the builtin Django raises."""

from __future__ import annotations

import asyncio
import pickle
from collections.abc import Callable
from typing import Any

import pytest

import tocsin
from tocsin import exceptions
from tocsin.asgi import RequestSignalsMiddleware as AsgiMiddleware
from tocsin.testing import mute
from tocsin.wsgi import RequestSignalsMiddleware as WsgiMiddleware


def handler(sender: Any, **kwargs: Any) -> None:
    pass


async def async_handler(sender: Any, **kwargs: Any) -> None:
    pass


class Unbound:
    """A holder whose signal no module-level name is bound to."""

    def __init__(self) -> None:
        self.changed = tocsin.Signal(name="changed")


def send_async_receiver_inside_a_loop() -> None:
    sig = tocsin.Signal()
    sig.connect(async_handler)

    async def main() -> None:
        sig.send(None)

    asyncio.run(main())


MISUSE: list[tuple[str, Callable[[], object], type[Exception]]] = [
    ("priority not an int", lambda: tocsin.Signal().connect(handler, priority="high"), TypeError),
    ("via not a policy", lambda: tocsin.Signal().connect(handler, via=42), TypeError),
    ("unknown async_mode", lambda: tocsin.Signal(async_mode="parallel"), ValueError),  # type: ignore[arg-type]
    ("disconnect with nothing", lambda: tocsin.Signal().disconnect(), TypeError),
    ("paused(on_error=...)", lambda: tocsin.Signal().paused(on_error="ignore"), ValueError),  # type: ignore[arg-type]
    ("paused(reduce=42)", lambda: tocsin.Signal().paused(42), TypeError),  # type: ignore[arg-type]
    ("observe(non-observer)", lambda: tocsin.observe(object()), TypeError),  # type: ignore[arg-type]
    ("mute(42)", lambda: mute(42), TypeError),  # type: ignore[arg-type]
    ("ASGI middleware(non-app)", lambda: AsgiMiddleware(42), TypeError),  # type: ignore[arg-type]
    ("WSGI middleware(non-app)", lambda: WsgiMiddleware(42), TypeError),  # type: ignore[arg-type]
    ("pickling an unbound signal", lambda: pickle.dumps(Unbound()), TypeError),
    ("@receiver on a string", lambda: tocsin.receiver("post_save"), TypeError),  # type: ignore[arg-type]
    ("send without a sender", lambda: tocsin.Signal().send(), TypeError),
    ("connect a non-callable", lambda: tocsin.Signal().connect(42), TypeError),  # type: ignore[call-overload]
    ("sync send to an async receiver in a loop", send_async_receiver_inside_a_loop, RuntimeError),
]


@pytest.mark.parametrize(("what", "call", "builtin"), MISUSE, ids=[m[0] for m in MISUSE])
def test_misuse_raises_a_dispatch_error(
    what: str, call: Callable[[], object], builtin: type[Exception]
) -> None:
    """Each misuse raises a DispatchError subclass that is also the builtin callers may catch."""
    with pytest.raises(exceptions.DispatchError) as info:
        call()
    assert isinstance(info.value, builtin), (what, type(info.value).__mro__)
    assert type(info.value).__module__ == "tocsin.exceptions"


def test_sqlalchemy_misuse_raises_a_dispatch_error() -> None:
    """install() and on_commit() refuse what they cannot use with InvalidArgumentError."""
    ts = pytest.importorskip("tocsin.sqlalchemy")
    with pytest.raises(exceptions.InvalidArgumentError, match=r"^install\(\) takes a declarative base"):
        ts.install(object())
    with pytest.raises(exceptions.InvalidArgumentError, match=r"^on_commit\(\) needs a callable"):
        ts.on_commit(42)  # type: ignore[arg-type]
