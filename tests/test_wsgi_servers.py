"""tocsin.wsgi on a real server: a Flask app under cheroot, over loopback.

cheroot is a pure-Python, threaded PEP 3333 server (CherryPy's). Each test
gets a server on a free 127.0.0.1 port, driven by httpx (or a raw socket for
the disconnect). Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from _eventlog import TIMEOUT, EventLog
from tocsin.wsgi import (
    RequestSignalsMiddleware,
    got_request_exception,
    relay_flask_exceptions,
    request_finished,
    request_started,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

flask = pytest.importorskip("flask")
cheroot_wsgi = pytest.importorskip("cheroot.wsgi")
cheroot_server = pytest.importorskip("cheroot.server")

CHUNK_DELAY = 0.05


class Log(EventLog):
    """The event log, with this server's request-signal receivers.

    ``returned`` is set when the server closed a request's response (PEP
    3333's close()): after it, nothing of that request runs.
    """

    def __init__(self) -> None:
        super().__init__()
        self.returned = threading.Event()

    def on_started(self, sender: Any, environ: dict[str, Any], **kwargs: Any) -> None:
        self.add("request_started", environ["PATH_INFO"])

    def on_finished(self, sender: Any, environ: dict[str, Any], **kwargs: Any) -> None:
        self.add("request_finished", environ["PATH_INFO"])
        self.finished.set()

    def on_exception(self, sender: Any, **kwargs: Any) -> None:
        self.add("got_request_exception", {"sender": sender, **kwargs})

    def on_flask_finished(self, sender: Any, **kwargs: Any) -> None:
        self.add("flask.request_finished")


@pytest.fixture(name="log")
def _log() -> Iterator[Log]:
    log = Log()
    pairs: list[tuple[Any, Any]] = [
        (request_started, log.on_started),
        (request_finished, log.on_finished),
        (got_request_exception, log.on_exception),
    ]
    for sig, receiver in pairs:
        sig.connect(receiver)
    yield log
    for sig, receiver in pairs:
        sig.disconnect(receiver)


def make_app(log: Log, *, propagate: bool = False) -> Any:
    app = flask.Flask("tocsin_test_app")
    app.config["PROPAGATE_EXCEPTIONS"] = propagate

    @app.get("/ok")
    def ok() -> str:
        return "ok"

    @app.get("/stream")
    def stream() -> Any:
        count = int(flask.request.args.get("n", "3"))

        def body() -> Iterator[bytes]:
            for i in range(count):
                log.add("chunk", i)
                yield f"chunk{i};".encode()
                time.sleep(CHUNK_DELAY)

        return flask.Response(body(), mimetype="text/plain")

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("boom")

    app.wsgi_app = RequestSignalsMiddleware(app.wsgi_app)  # type: ignore[method-assign]
    undo = relay_flask_exceptions(app)
    flask.request_finished.connect(log.on_flask_finished, app)

    def cleanup() -> None:
        undo()
        flask.request_finished.disconnect(log.on_flask_finished, app)

    app.config["tocsin_cleanup"] = cleanup
    return app


class Connection(cheroot_server.HTTPConnection):
    """cheroot's connection, recorded by its server, closing its writer too.

    cheroot closes a connection's reader and socket but never its writer
    (cherrypy/cheroot#734). When a client hangs up mid-response the failed
    write leaves its bytes in the writer's buffer, and the writer's finalizer
    later flushes them into the closed socket: ``OSError(EBADF)``, which
    Python 3.13 reports as an unraisable exception (older versions drop it)
    and pytest turns into an error at exit.
    """

    def __init__(self, server: Server, sock: socket.socket, *args: Any) -> None:
        super().__init__(server, sock, *args)
        server.accepted.append(self)

    def close(self) -> None:
        # Flushing fails only when the client has gone: the rest has nowhere to go.
        with contextlib.suppress(OSError):
            self.wfile.close()
        super().close()


class Server(cheroot_wsgi.Server):
    """cheroot's WSGI server, keeping every connection it accepted for the teardown check."""

    ConnectionClass = Connection

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.accepted: list[Connection] = []


class SignallingClose:
    """Wrap a WSGI app: set *returned* once the server has closed a response."""

    def __init__(self, app: Any, returned: threading.Event) -> None:
        self.app = app
        self.returned = returned
        self.config = app.config  # serve() reads the Flask app's cleanup there

    def __call__(self, environ: dict[str, Any], start_response: Any) -> _Closing:
        return _Closing(self.app(environ, start_response), self.returned)


class _Closing:
    """The app's response iterable, unchanged, whose close() also sets *returned*."""

    def __init__(self, result: Any, returned: threading.Event) -> None:
        self.result = result
        self.returned = returned

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.result)

    def close(self) -> None:
        try:
            close = getattr(self.result, "close", None)
            if close is not None:
                close()
        finally:
            self.returned.set()


@contextlib.contextmanager
def serve(app: Any) -> Iterator[str]:
    server = Server(("127.0.0.1", 0), app, numthreads=4, timeout=2, shutdown_timeout=2)
    server.prepare()
    port = server.bind_addr[1]
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
        thread.join(TIMEOUT)
        assert not thread.is_alive(), "cheroot did not stop"
        # A writer left open is flushed by its finalizer, maybe into a closed socket.
        assert [c for c in server.accepted if not c.wfile.closed] == [], "a connection left its writer open"
        app.config["tocsin_cleanup"]()


@pytest.fixture(name="server")
def _server(log: Log) -> Iterator[str]:
    with serve(SignallingClose(make_app(log), log.returned)) as url:
        yield url


@pytest.fixture(name="client")
def _client(server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, timeout=TIMEOUT) as client:
        yield client


def ours(log: Log) -> list[str]:
    return [name for name in log.names() if not name.startswith("flask.")]


def test_normal(client: httpx.Client, log: Log):
    """started, then finished once."""
    response = client.get("/ok")
    assert response.text == "ok"
    log.wait_finished()
    assert ours(log) == ["request_started", "request_finished"]


def test_streaming_three_chunks(client: httpx.Client, log: Log):
    """Ours comes after the third chunk; Flask's own request_finished before the first."""
    with client.stream("GET", "/stream") as response:
        assert b"".join(response.iter_raw()) == b"chunk0;chunk1;chunk2;"
    log.wait_finished()
    assert log.names() == [
        "request_started",
        "flask.request_finished",
        "chunk",
        "chunk",
        "chunk",
        "request_finished",
    ]


def test_exception_relayed_from_flask(client: httpx.Client, log: Log):
    """Flask turns the error into a 500; the relay reports it once with the request."""
    response = client.get("/boom")
    assert response.status_code == 500
    log.wait_finished()
    assert ours(log) == ["request_started", "got_request_exception", "request_finished"]
    report = log.events[[n for n, _ in log.events].index("got_request_exception")][1]
    assert isinstance(report["exception"], RuntimeError)
    assert str(report["exception"]) == "boom"
    assert isinstance(report["request"], flask.Request)
    assert report["request"].path == "/boom"
    assert report["environ"] is report["request"].environ
    assert report["sender"].name == "tocsin_test_app"


def test_propagated_exception_reported_once(log: Log):
    """With PROPAGATE_EXCEPTIONS Flask re-raises: the middleware does not report it again."""
    with serve(make_app(log, propagate=True)) as url, httpx.Client(base_url=url, timeout=TIMEOUT) as client:
        assert client.get("/boom").status_code == 500
        log.wait_finished()
    assert ours(log) == ["request_started", "got_request_exception", "request_finished"]


def test_not_found_is_not_an_exception(client: httpx.Client, log: Log):
    """A 404 is a response, not an exception."""
    assert client.get("/missing").status_code == 404
    log.wait_finished()
    assert ours(log) == ["request_started", "request_finished"]


def test_head(client: httpx.Client, log: Log):
    """HEAD: no body, still started and finished once."""
    response = client.head("/ok")
    assert response.status_code == 200
    assert response.content == b""
    log.wait_finished()
    assert ours(log) == ["request_started", "request_finished"]


def test_client_disconnect_mid_stream(server: str, log: Log):
    """The client hangs up after the first chunk: finished once (from close()), nothing reported."""
    port = int(server.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as conn:
        conn.sendall(b"GET /stream?n=60 HTTP/1.1\r\nHost: test\r\n\r\n")
        received = b""
        while b"chunk0;" not in received:
            data = conn.recv(4096)
            assert data, "server closed before the first chunk"
            received += data
    log.wait_finished()
    # Only once the response is closed can no second request_finished or report come.
    assert log.returned.wait(TIMEOUT), f"the response was never closed; events: {log.names()}"
    names = ours(log)
    assert names.count("request_finished") == 1
    assert "got_request_exception" not in names
    assert names.count("chunk") < 60
