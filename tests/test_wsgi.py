"""tocsin.wsgi in-process: plain WSGI apps driven the way PEP 3333 servers drive them.

The real-server tests (Flask under cheroot) are in test_wsgi_servers.py.
"""

from __future__ import annotations

import builtins
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest

from tocsin.wsgi import (
    RequestSignalsMiddleware,
    got_request_exception,
    relay_flask_exceptions,
    request_finished,
    request_started,
)

WSGIApp = Callable[[dict[str, Any], Any], Iterable[bytes]]


class Log:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def receiver(self, name: str) -> Callable[..., None]:
        def receive(sender: Any, **kwargs: Any) -> None:
            kwargs.pop("signal")
            self.events.append((name, {"sender": sender, **kwargs}))

        return receive

    def names(self) -> list[str]:
        return [name for name, _ in self.events]


@pytest.fixture(name="log")
def _log() -> Iterator[Log]:
    log = Log()
    pairs = [
        (sig, log.receiver(sig.name or ""))
        for sig in (request_started, request_finished, got_request_exception)
    ]
    for sig, receiver in pairs:
        sig.connect(receiver, weak=False)
    yield log
    for sig, receiver in pairs:
        sig.disconnect(receiver)


def environ() -> dict[str, Any]:
    return {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "wsgi.version": (1, 0)}


def start_response(
    status: str, headers: list[tuple[str, str]], exc_info: Any = None
) -> Callable[[bytes], None]:
    return lambda data: None


def serve(app: WSGIApp, env: dict[str, Any], log: Log, *, stop_after: int | None = None) -> list[bytes]:
    """Drive *app* like a server: call, iterate (maybe stopping early), always close()."""
    result = RequestSignalsMiddleware(app)(env, start_response)
    body: list[bytes] = []
    try:
        for chunk in result:
            log.events.append(("chunk", {"data": chunk}))
            body.append(chunk)
            if stop_after is not None and len(body) >= stop_after:
                break  # the client went away
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return body


def streaming_app(*chunks: bytes) -> WSGIApp:
    def app(env: dict[str, Any], start: Any) -> Iterator[bytes]:
        start("200 OK", [("Content-Type", "text/plain")])
        yield from chunks

    return app


class TestTiming:
    def test_order_and_kwargs(self, log: Log):
        """started, the body, then finished once from close(); environ and sender passed."""
        env = environ()
        assert serve(streaming_app(b"a", b"b", b"c"), env, log) == [b"a", b"b", b"c"]
        assert log.names() == ["request_started", "chunk", "chunk", "chunk", "request_finished"]
        assert log.events[0][1] == {"sender": RequestSignalsMiddleware, "environ": env}
        assert log.events[-1][1] == {"sender": RequestSignalsMiddleware, "environ": env}

    def test_closes_the_inner_iterable_first(self, log: Log):
        """The app's own close() runs before request_finished."""

        class Body:
            def __iter__(self) -> Iterator[bytes]:
                return iter([b"x"])

            def close(self) -> None:
                log.events.append(("inner close", {}))

        def app(env: dict[str, Any], start: Any) -> Body:
            start("200 OK", [])
            return Body()

        serve(app, environ(), log)
        assert log.names()[-2:] == ["inner close", "request_finished"]

    def test_disconnect_mid_stream(self, log: Log):
        """The server stops iterating and closes: finished once, nothing reported."""
        serve(streaming_app(b"a", b"b", b"c"), environ(), log, stop_after=1)
        assert log.names() == ["request_started", "chunk", "request_finished"]

    def test_close_twice_finishes_once(self, log: Log):
        """A second close() does nothing."""
        result: Any = RequestSignalsMiddleware(streaming_app(b"a"))(environ(), start_response)
        list(result)
        result.close()
        result.close()
        assert log.names().count("request_finished") == 1


class TestExceptions:
    def test_app_raises(self, log: Log):
        """The app raises on call: reported, finished, re-raised as the same object."""
        boom = RuntimeError("boom")

        def app(env: dict[str, Any], start: Any) -> list[bytes]:
            raise boom

        env = environ()
        with pytest.raises(RuntimeError) as info:
            serve(app, env, log)
        assert info.value is boom
        assert log.names() == ["request_started", "got_request_exception", "request_finished"]
        assert log.events[1][1] == {
            "sender": RequestSignalsMiddleware,
            "request": None,
            "exception": boom,
            "environ": env,
        }

    def test_iterable_raises_before_any_byte(self, log: Log):
        """A generator failing before its first non-empty chunk becomes a 500: reported."""

        def app(env: dict[str, Any], start: Any) -> Iterator[bytes]:
            start("200 OK", [])
            yield b""
            raise ValueError("late")

        with pytest.raises(ValueError, match=r"^late$"):
            serve(app, environ(), log)
        assert log.names() == ["request_started", "chunk", "got_request_exception", "request_finished"]

    def test_iterable_raises_mid_body(self, log: Log):
        """After body bytes went out the failure only cuts the response short: not reported."""

        def app(env: dict[str, Any], start: Any) -> Iterator[bytes]:
            start("200 OK", [])
            yield b"partial"
            raise ValueError("mid")

        with pytest.raises(ValueError, match=r"^mid$"):
            serve(app, environ(), log)
        assert log.names() == ["request_started", "chunk", "request_finished"]

    def test_failing_receivers_are_logged(self, log: Log, caplog: pytest.LogCaptureFixture):
        """request_finished/got_request_exception receivers never raise into the server."""

        def bad(sender: Any, **kwargs: Any) -> None:
            raise KeyError("receiver bug")

        def app(env: dict[str, Any], start: Any) -> list[bytes]:
            raise RuntimeError("original")

        request_finished.connect(bad)
        got_request_exception.connect(bad)
        try:
            with (
                caplog.at_level(logging.ERROR, logger="tocsin"),
                pytest.raises(RuntimeError, match=r"^original$"),
            ):
                serve(app, environ(), log)
        finally:
            request_finished.disconnect(bad)
            got_request_exception.disconnect(bad)
        assert sum(1 for r in caplog.records if r.exc_info and isinstance(r.exc_info[1], KeyError)) == 2


class TestPassThrough:
    def test_no_receivers_returns_the_app_result(self):
        """With nothing connected the app's own iterable comes back, unwrapped."""
        body = [b"x"]
        result = RequestSignalsMiddleware(lambda env, start: body)(environ(), start_response)
        assert result is body

    def test_not_an_app(self):
        """A non-callable says what was expected and how to wrap Flask."""
        with pytest.raises(TypeError, match=r"^RequestSignalsMiddleware\(app\) needs a WSGI application"):
            RequestSignalsMiddleware(None)  # type: ignore[arg-type]


class TestFlaskRelayImport:
    def test_missing_flask_names_the_extra(self, monkeypatch: pytest.MonkeyPatch):
        """Without Flask the helper says how to install it."""
        real_import = builtins.__import__

        def no_flask(name: str, *args: Any, **kwargs: Any) -> Any:
            if name == "flask":
                raise ImportError(name)
            return real_import(name, *args, **kwargs)

        monkeypatch.setattr(builtins, "__import__", no_flask)
        with pytest.raises(
            ImportError,
            match=r"^tocsin\.wsgi\.relay_flask_exceptions\(\) requires Flask: pip install 'tocsin\[flask\]'$",
        ):
            relay_flask_exceptions(object())
