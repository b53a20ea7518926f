"""tocsin.asgi on real servers: Starlette and FastAPI apps under uvicorn, over loopback.

Each app runs in a uvicorn.Server on its own thread, on a free 127.0.0.1 port,
driven by httpx (or a raw socket for the disconnect). Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, HTTPException
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request  # noqa: TC002 - FastAPI reads the annotation at runtime
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.routing import Route

from _eventlog import TIMEOUT, EventLog
from tocsin.asgi import RequestSignalsMiddleware, got_request_exception, request_finished, request_started

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator

CHUNK_DELAY = 0.05


class Log(EventLog):
    """The event log, with this server's request-signal receivers.

    ``paused`` is set when /gated has sent its first chunk and waits for
    ``gate``; ``returned`` when the server's call of the app for an ``http``
    request has returned (or raised): after it, nothing of that request runs.
    """

    def __init__(self) -> None:
        super().__init__()
        self.paused = threading.Event()
        self.gate = threading.Event()
        self.returned = threading.Event()

    # receivers
    def on_started(self, sender: Any, scope: dict[str, Any], **kwargs: Any) -> None:
        self.add("request_started", scope["path"])

    def on_finished(self, sender: Any, scope: dict[str, Any], **kwargs: Any) -> None:
        self.add("request_finished", scope["path"])
        self.finished.set()

    def on_exception(self, sender: Any, exception: Exception, **kwargs: Any) -> None:
        self.add("got_request_exception", exception)


@pytest.fixture(name="log")
def _log() -> Iterator[Log]:
    log = Log()
    pairs: list[tuple[Any, Callable[..., None]]] = [
        (request_started, log.on_started),
        (request_finished, log.on_finished),
        (got_request_exception, log.on_exception),
    ]
    for sig, receiver in pairs:
        sig.connect(receiver)
    yield log
    for sig, receiver in pairs:
        sig.disconnect(receiver)


def routes(log: Log) -> tuple[Any, Any, Any, Any, Any]:
    """Endpoints shared by the Starlette and FastAPI apps."""

    async def ok(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok", background=BackgroundTask(log.add, "background"))

    async def stream(request: Request) -> StreamingResponse:
        count = int(request.query_params.get("n", "3"))

        async def body() -> AsyncIterator[bytes]:
            for i in range(count):
                log.add("chunk", i)
                yield f"chunk{i};".encode()
                await _sleep(CHUNK_DELAY)

        return StreamingResponse(body(), media_type="text/plain")

    async def gated(request: Request) -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            yield b"first;"
            # Resumed once the first chunk's send() returned through the middleware.
            log.paused.set()
            await _wait_in_thread(log.gate)
            yield b"last;"

        return StreamingResponse(body(), media_type="text/plain")

    async def boom(request: Request) -> PlainTextResponse:
        raise RuntimeError("boom")

    async def forbidden(request: Request) -> PlainTextResponse:
        raise HTTPException(status_code=403, detail="no")

    return ok, stream, gated, boom, forbidden


async def _sleep(seconds: float) -> None:
    import anyio

    await anyio.sleep(seconds)


async def _wait_in_thread(event: threading.Event) -> None:
    import anyio

    assert await anyio.to_thread.run_sync(event.wait, TIMEOUT), "the test never opened the gate"


def signalling_return(app: Any, returned: threading.Event) -> Any:
    """Wrap an ASGI app: set *returned* when a call for an ``http`` request is over."""

    async def outer(scope: dict[str, Any], receive: Any, send: Any) -> None:
        try:
            await app(scope, receive, send)
        finally:
            if scope["type"] == "http":
                returned.set()

    return outer


def starlette_app(log: Log, *, outermost: bool) -> Any:
    ok, stream, gated, boom, forbidden = routes(log)
    app = Starlette(
        routes=[
            Route("/ok", ok),
            Route("/stream", stream),
            Route("/gated", gated),
            Route("/boom", boom),
            Route("/forbidden", forbidden),
        ]
    )
    if outermost:
        return RequestSignalsMiddleware(app)
    app.add_middleware(RequestSignalsMiddleware)
    return app


def fastapi_app(log: Log, *, outermost: bool) -> Any:
    ok, stream, gated, boom, forbidden = routes(log)
    app = FastAPI()
    app.add_api_route("/ok", ok, methods=["GET", "HEAD"])
    app.add_api_route("/stream", stream, methods=["GET"])
    app.add_api_route("/gated", gated, methods=["GET"])
    app.add_api_route("/boom", boom, methods=["GET"])
    app.add_api_route("/forbidden", forbidden, methods=["GET"])
    if outermost:
        return RequestSignalsMiddleware(app)
    app.add_middleware(RequestSignalsMiddleware)
    return app


@contextlib.contextmanager
def serve(app: Any) -> Iterator[str]:
    """Run *app* under uvicorn on a free loopback port; yield its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, log_config=None, lifespan="on", timeout_graceful_shutdown=2, access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + TIMEOUT
    while not server.started:
        assert thread.is_alive(), "uvicorn did not start"
        assert time.monotonic() < deadline, "uvicorn did not start in time"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(TIMEOUT)
        sock.close()
        assert not thread.is_alive(), "uvicorn did not stop"


@pytest.fixture(
    name="server",
    params=[
        ("starlette", False),
        ("starlette", True),
        ("fastapi", False),
        ("fastapi", True),
    ],
    ids=["starlette-add_middleware", "starlette-wrapped", "fastapi-add_middleware", "fastapi-wrapped"],
)
def _server(request: pytest.FixtureRequest, log: Log) -> Iterator[str]:
    framework, outermost = request.param
    make = starlette_app if framework == "starlette" else fastapi_app
    with serve(signalling_return(make(log, outermost=outermost), log.returned)) as url:
        yield url


@pytest.fixture(name="client")
def _client(server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, timeout=TIMEOUT) as client:
        yield client


def test_normal(client: httpx.Client, log: Log):
    """started, finished once, then the background task."""
    response = client.get("/ok")
    assert response.status_code == 200
    assert response.text == "ok"
    log.wait_finished()
    _wait_for(log, "background")
    assert log.names() == ["request_started", "request_finished", "background"]


def test_streaming_three_chunks(client: httpx.Client, log: Log):
    """request_finished comes after the third chunk went out, once."""
    with client.stream("GET", "/stream") as response:
        body = b"".join(response.iter_raw())
    assert body == b"chunk0;chunk1;chunk2;"
    log.wait_finished()
    assert log.names() == ["request_started", "chunk", "chunk", "chunk", "request_finished"]


def test_streaming_not_finished_mid_body(client: httpx.Client, log: Log):
    """While the body is still being sent, request_finished has not run."""
    with client.stream("GET", "/gated") as response:
        assert log.paused.wait(TIMEOUT), "the first chunk was never sent"
        assert not log.finished.is_set()
        assert log.names() == ["request_started"]
        log.gate.set()
        assert b"".join(response.iter_raw()) == b"first;last;"
    log.wait_finished()
    assert log.names() == ["request_started", "request_finished"]


def test_exception(client: httpx.Client, log: Log):
    """A route that raises: 500, reported once with the exception, then finished."""
    response = client.get("/boom")
    assert response.status_code == 500
    log.wait_finished()
    assert log.names() == ["request_started", "got_request_exception", "request_finished"]
    exc = log.events[1][1]
    assert type(exc) is RuntimeError
    assert str(exc) == "boom"


def test_not_found_is_not_an_exception(client: httpx.Client, log: Log):
    """404 (no route) and a handled HTTPException are responses, not exceptions."""
    assert client.get("/missing").status_code == 404
    log.wait_finished()
    log.finished.clear()
    assert client.get("/forbidden").status_code == 403
    log.wait_finished()
    assert log.names() == ["request_started", "request_finished"] * 2


def test_head(client: httpx.Client, log: Log):
    """HEAD: no body on the wire, still started and finished once."""
    response = client.head("/ok")
    assert response.status_code == 200
    assert response.content == b""
    log.wait_finished()
    assert log.names()[:2] == ["request_started", "request_finished"]
    assert log.names().count("request_finished") == 1


def test_client_disconnect_mid_stream(server: str, log: Log):
    """The client hangs up after the first chunk: finished once, no exception reported."""
    port = int(server.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as conn:
        conn.sendall(b"GET /stream?n=40 HTTP/1.1\r\nHost: test\r\n\r\n")
        received = b""
        while b"chunk0;" not in received:
            data = conn.recv(4096)
            assert data, "server closed before the first chunk"
            received += data
    log.wait_finished()
    # Only once the app call is over can no second request_finished or report come.
    assert log.returned.wait(TIMEOUT), f"the app never returned; events: {log.names()}"
    names = log.names()
    assert names.count("request_finished") == 1
    assert "got_request_exception" not in names
    assert names.count("chunk") < 40


def test_lifespan_passes_through(log: Log):
    """Startup and shutdown still reach the app through the middleware; no signals for them."""
    seen: list[str] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        seen.append("startup")
        yield
        seen.append("shutdown")

    app = RequestSignalsMiddleware(Starlette(lifespan=lifespan))
    with serve(app):
        assert seen == ["startup"]
    assert seen == ["startup", "shutdown"]
    assert log.names() == []


def _wait_for(log: Log, name: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while name not in log.names():
        assert time.monotonic() < deadline, f"{name} never happened; events: {log.names()}"
        time.sleep(0.005)
