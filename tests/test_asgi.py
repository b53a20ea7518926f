"""tocsin.asgi in-process: plain ASGI apps, no framework, no server.

The real-server tests (Starlette and FastAPI under uvicorn) are in
test_asgi_servers.py.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

import tocsin.asgi
import tocsin.wsgi
from tocsin.asgi import RequestSignalsMiddleware, got_request_exception, request_finished, request_started

Message = dict[str, Any]
App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


def http_scope(path: str = "/") -> dict[str, Any]:
    return {"type": "http", "method": "GET", "path": path, "headers": [], "asgi": {"version": "3.0"}}


async def no_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


class Log:
    """Records (signal name, kwargs) and what the app sent, in one ordered list."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.threads: list[int] = []

    def receiver(self, name: str) -> Callable[..., None]:
        def receive(sender: Any, **kwargs: Any) -> None:
            self.threads.append(threading.get_ident())
            kwargs.pop("signal")
            self.events.append((name, {"sender": sender, **kwargs}))

        return receive

    def names(self) -> list[str]:
        return [name for name, _ in self.events]

    async def send(self, message: Message) -> None:
        self.events.append((message["type"], message))


@pytest.fixture(name="log")
def _log() -> Iterator[Log]:
    log = Log()
    receivers = [
        (sig, log.receiver(sig.name or ""))
        for sig in (request_started, request_finished, got_request_exception)
    ]
    for sig, receiver in receivers:
        sig.connect(receiver, weak=False)
    yield log
    for sig, receiver in receivers:
        sig.disconnect(receiver)


def run(app: App, scope: dict[str, Any], send: Callable[[Message], Awaitable[None]]) -> None:
    asyncio.run(RequestSignalsMiddleware(app)(scope, no_body, send))


def response_app(*chunks: bytes, status: int = 200) -> App:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": status, "headers": []})
        for i, chunk in enumerate(chunks):
            await send({"type": "http.response.body", "body": chunk, "more_body": i < len(chunks) - 1})

    return app


class TestSignals:
    def test_shared_between_asgi_and_wsgi(self):
        """Both public modules re-export the same three signal objects."""
        for name in ("request_started", "request_finished", "got_request_exception"):
            assert getattr(tocsin.asgi, name) is getattr(tocsin.wsgi, name)

    def test_modules_import_no_framework(self):
        """Importing tocsin.asgi and tocsin.wsgi loads no web framework."""
        import subprocess

        code = (
            "import sys, tocsin.asgi, tocsin.wsgi; "
            "mods = ('starlette', 'fastapi', 'flask', 'werkzeug', 'uvicorn'); "
            "print(sorted(m for m in mods if m in sys.modules))"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30
        )
        assert out.stdout.strip() == "[]"


class TestTiming:
    def test_normal_order_and_kwargs(self, log: Log):
        """started, then the response, then finished once; scope and sender passed."""
        scope = http_scope("/ok")
        run(response_app(b"hi"), scope, log.send)
        assert log.names() == [
            "request_started",
            "http.response.start",
            "http.response.body",
            "request_finished",
        ]
        assert log.events[0][1] == {"sender": RequestSignalsMiddleware, "scope": scope}
        assert log.events[-1][1] == {"sender": RequestSignalsMiddleware, "scope": scope}

    def test_streamed_finished_after_last_chunk(self, log: Log):
        """request_finished comes after the final chunk, not after the first."""
        run(response_app(b"a", b"b", b"c", b""), http_scope(), log.send)
        assert log.names() == ["request_started", "http.response.start"] + ["http.response.body"] * 4 + [
            "request_finished"
        ]

    def test_finished_before_work_after_the_response(self, log: Log):
        """Work the app does after the last chunk (background tasks) comes after request_finished."""

        async def app(scope: Any, receive: Any, send: Any) -> None:
            await response_app(b"done")(scope, receive, send)
            log.events.append(("background", {}))

        run(app, http_scope(), log.send)
        assert log.names()[-2:] == ["request_finished", "background"]

    def test_no_body_sent(self, log: Log):
        """An app that returns without a response still finishes once."""

        async def app(scope: Any, receive: Any, send: Any) -> None:
            pass

        run(app, http_scope(), log.send)
        assert log.names() == ["request_started", "request_finished"]

    def test_trailers(self, log: Log):
        """With trailers the response ends with the last http.response.trailers."""

        async def app(scope: Any, receive: Any, send: Any) -> None:
            await send({"type": "http.response.start", "status": 200, "headers": [], "trailers": True})
            await send({"type": "http.response.body", "body": b"x"})
            await send({"type": "http.response.trailers", "headers": [], "more_trailers": False})

        run(app, http_scope(), log.send)
        assert log.names()[-2:] == ["http.response.trailers", "request_finished"]

    def test_pathsend(self, log: Log):
        """http.response.pathsend (ASGI extension) completes the response."""

        async def app(scope: Any, receive: Any, send: Any) -> None:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.pathsend", "path": "/etc/hostname"})
            log.events.append(("after", {}))

        run(app, http_scope(), log.send)
        assert log.names()[-3:] == ["http.response.pathsend", "request_finished", "after"]

    def test_send_failure_still_finishes(self, log: Log):
        """A client disconnect that makes send() raise still finishes once, unreported."""

        async def broken_send(message: Message) -> None:
            if message["type"] == "http.response.body":
                raise OSError("client went away")

        with pytest.raises(OSError, match=r"^client went away$"):
            run(response_app(b"a", b"b"), http_scope(), broken_send)
        assert log.names() == ["request_started", "request_finished"]

    def test_cancelled_still_finishes(self, log: Log):
        """Cancelling the request task (server shutdown) still sends request_finished."""

        async def main() -> None:
            gate = asyncio.Event()

            async def app(scope: Any, receive: Any, send: Any) -> None:
                gate.set()
                await asyncio.sleep(30)

            task = asyncio.ensure_future(RequestSignalsMiddleware(app)(http_scope(), no_body, log.send))
            await gate.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(main())
        assert log.names() == ["request_started", "request_finished"]


class TestExceptions:
    def test_reported_and_reraised_unchanged(self, log: Log):
        """An exception before the response is reported, then propagates as the same object."""
        boom = RuntimeError("boom")

        async def app(scope: Any, receive: Any, send: Any) -> None:
            raise boom

        scope = http_scope()
        with pytest.raises(RuntimeError) as info:
            run(app, scope, log.send)
        assert info.value is boom
        assert log.names() == ["request_started", "got_request_exception", "request_finished"]
        assert log.events[1][1] == {
            "sender": RequestSignalsMiddleware,
            "request": None,
            "exception": boom,
            "scope": scope,
        }

    def test_after_a_500_started(self, log: Log):
        """An error middleware inside us that sent a 500 and re-raised: reported."""

        async def app(scope: Any, receive: Any, send: Any) -> None:
            await response_app(b"Internal Server Error", status=500)(scope, receive, send)
            raise ValueError("x")

        with pytest.raises(ValueError, match=r"^x$"):
            run(app, http_scope(), log.send)
        assert log.names() == [
            "request_started",
            "http.response.start",
            "http.response.body",
            "got_request_exception",
            "request_finished",
        ]

    def test_mid_stream_failure_not_reported(self, log: Log):
        """A failure after a 200 started cannot become a 500: not reported, still finished."""

        async def app(scope: Any, receive: Any, send: Any) -> None:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"a", "more_body": True})
            raise ValueError("mid-stream")

        with pytest.raises(ValueError, match=r"^mid-stream$"):
            run(app, http_scope(), log.send)
        assert "got_request_exception" not in log.names()
        assert log.names()[-1] == "request_finished"

    def test_handled_error_response_not_reported(self, log: Log):
        """A 404 or 500 the app sends as a normal response is no exception."""
        run(response_app(b"nope", status=404), http_scope(), log.send)
        assert "got_request_exception" not in log.names()

    def test_failing_receivers_do_not_mask_the_error(self, log: Log, caplog: pytest.LogCaptureFixture):
        """got_request_exception/request_finished receivers are robust: logged, original re-raised."""

        def bad(sender: Any, **kwargs: Any) -> None:
            raise KeyError("receiver bug")

        got_request_exception.connect(bad)
        request_finished.connect(bad)
        try:

            async def app(scope: Any, receive: Any, send: Any) -> None:
                raise RuntimeError("original")

            with (
                caplog.at_level(logging.ERROR, logger="tocsin"),
                pytest.raises(RuntimeError, match=r"^original$"),
            ):
                run(app, http_scope(), log.send)
        finally:
            got_request_exception.disconnect(bad)
            request_finished.disconnect(bad)
        assert sum("receiver bug" in str(r.exc_info[1]) for r in caplog.records if r.exc_info) == 2

    def test_request_started_failure_fails_the_request(self, log: Log):
        """As in Django: a request_started receiver's error propagates and the app does not run."""
        ran: list[bool] = []

        def bad(sender: Any, **kwargs: Any) -> None:
            raise LookupError("no db")

        async def app(scope: Any, receive: Any, send: Any) -> None:
            ran.append(True)

        request_started.connect(bad)
        try:
            with pytest.raises(LookupError, match=r"^no db$"):
                run(app, http_scope(), log.send)
        finally:
            request_started.disconnect(bad)
        assert ran == []


class TestReceivers:
    def test_sync_receivers_run_off_the_loop_thread(self, log: Log):
        """Sync receivers run in a worker thread, never on the event loop's thread."""
        run(response_app(b"x"), http_scope(), log.send)
        assert log.threads
        assert threading.get_ident() not in log.threads

    def test_async_receivers_are_awaited(self):
        """Async receivers are awaited on the loop."""
        seen: list[str] = []

        async def on_finished(sender: Any, scope: dict[str, Any], **kwargs: Any) -> None:
            await asyncio.sleep(0)
            seen.append(scope["path"])

        request_finished.connect(on_finished)
        try:
            run(response_app(b"x"), http_scope("/async"), Log().send)
        finally:
            request_finished.disconnect(on_finished)
        assert seen == ["/async"]

    def test_sync_receiver_does_not_block_the_loop(self):
        """While a slow sync receiver runs, other coroutines on the loop keep running."""
        ticks: list[int] = []

        def slow(sender: Any, **kwargs: Any) -> None:
            threading.Event().wait(0.3)

        async def main() -> None:
            async def ticker() -> None:
                for i in range(100):
                    ticks.append(i)
                    await asyncio.sleep(0.01)

            tick_task = asyncio.ensure_future(ticker())
            await RequestSignalsMiddleware(response_app(b"x"))(http_scope(), no_body, Log().send)
            tick_task.cancel()

        request_started.connect(slow)
        try:
            asyncio.run(main())
        finally:
            request_started.disconnect(slow)
        assert len(ticks) >= 10


class TestTrio:
    def test_under_trio(self, log: Log):
        """The middleware works under trio too, and finishes through cancellation."""
        trio = pytest.importorskip("trio")

        async def main() -> None:
            await RequestSignalsMiddleware(response_app(b"a", b"b"))(http_scope(), no_body, log.send)
            with trio.move_on_after(0.05):

                async def app(scope: Any, receive: Any, send: Any) -> None:
                    await trio.sleep(30)

                await RequestSignalsMiddleware(app)(http_scope(), no_body, log.send)

        trio.run(main)
        assert [n for n in log.names() if n.startswith("request")] == [
            "request_started",
            "request_finished",
        ] * 2


class TestPassThrough:
    @pytest.mark.parametrize("kind", ["lifespan", "websocket"])
    def test_other_scopes_untouched(self, log: Log, kind: str):
        """lifespan and websocket scopes reach the app with the server's own callables, no signals."""
        got: list[Any] = []

        async def app(scope: Any, receive: Any, send: Any) -> None:
            got.extend([scope, receive, send])

        scope = {"type": kind}
        asyncio.run(RequestSignalsMiddleware(app)(scope, no_body, log.send))
        assert got == [scope, no_body, log.send]
        assert log.events == []

    def test_no_receivers_no_wrapping(self):
        """With nothing connected, the app gets the server's send itself."""
        got: list[Any] = []
        send = Log().send

        async def app(scope: Any, receive: Any, send: Any) -> None:
            got.append(send)

        asyncio.run(RequestSignalsMiddleware(app)(http_scope(), no_body, send))
        assert got == [send]

    def test_receiver_connected_after_quiet_requests(self):
        """The quiet fast path notices a new receiver at the next request, and its removal."""
        app = RequestSignalsMiddleware(response_app(b"x"))
        seen: list[str] = []

        def on_finished(sender: Any, scope: dict[str, Any], **kwargs: Any) -> None:
            seen.append(scope["path"])

        asyncio.run(app(http_scope("/quiet"), no_body, Log().send))
        asyncio.run(app(http_scope("/quiet"), no_body, Log().send))
        request_finished.connect(on_finished)
        try:
            asyncio.run(app(http_scope("/heard"), no_body, Log().send))
        finally:
            request_finished.disconnect(on_finished)
        asyncio.run(app(http_scope("/quiet-again"), no_body, Log().send))
        assert seen == ["/heard"]

    def test_silence_flag_follows_the_tables(self):
        """The one-global fast path is on while nothing listens, off as soon as anything does."""
        app = RequestSignalsMiddleware(response_app(b"x"))
        asyncio.run(app(http_scope("/quiet"), no_body, Log().send))
        assert tocsin.asgi._silent is True
        assert tocsin.wsgi._silent is True

        def on_exception(sender: Any, **kwargs: Any) -> None:
            pass

        got_request_exception.connect(on_exception, sender=object)  # another sender: still not silent
        try:
            assert tocsin.asgi._silent is False
            assert tocsin.wsgi._silent is False
            asyncio.run(app(http_scope("/other-sender"), no_body, Log().send))
            assert tocsin.asgi._silent is False  # the slow check answers quiet, the flag stays honest
        finally:
            got_request_exception.disconnect(on_exception, sender=object)
        asyncio.run(app(http_scope("/quiet-again"), no_body, Log().send))
        assert tocsin.asgi._silent is True

    def test_silence_flag_never_hides_a_receiver_under_threads(self):
        """Other threads publishing empty tables never leave the flag silent over a connected receiver."""
        app = RequestSignalsMiddleware(response_app(b"x"))
        stop = threading.Event()

        def churn(sig: Any) -> None:
            def transient(sender: Any, **kwargs: Any) -> None:
                pass

            while not stop.is_set():
                sig.connect(transient)
                sig.disconnect(transient)
                sig.has_listeners()  # rebuilds: publishes the empty table again

        threads = [
            threading.Thread(target=churn, args=(sig,)) for sig in (request_started, got_request_exception)
        ]
        heard: list[str] = []

        def steady(sender: Any, scope: dict[str, Any], **kwargs: Any) -> None:
            heard.append(scope["path"])

        async def requests() -> None:
            for i in range(100):
                request_finished.connect(steady)
                await app(http_scope(f"/{i}"), no_body, Log().send)
                request_finished.disconnect(steady)
                await app(http_scope("/unheard"), no_body, Log().send)

        for thread in threads:
            thread.start()
        try:
            asyncio.run(requests())
        finally:
            stop.set()
            for thread in threads:
                thread.join()
        assert heard == [f"/{i}" for i in range(100)]

    def test_capture_sees_sends_without_receivers(self):
        """tocsin.testing.capture (an interceptor) disables the pass-through: sends are recorded."""
        from tocsin.testing import capture

        app = RequestSignalsMiddleware(response_app(b"x"))
        asyncio.run(app(http_scope("/before"), no_body, Log().send))
        with capture(request_started, request_finished, got_request_exception) as sent:
            asyncio.run(app(http_scope("/captured"), no_body, Log().send))
        assert [(s.signal, s.kwargs["scope"]["path"]) for s in sent.sends()] == [
            (request_started, "/captured"),
            (request_finished, "/captured"),
        ]

    def test_not_an_app(self):
        """Passing something that is not callable says what was expected."""
        with pytest.raises(TypeError, match=r"^RequestSignalsMiddleware\(app\) needs an ASGI application"):
            RequestSignalsMiddleware("app")  # type: ignore[arg-type]
