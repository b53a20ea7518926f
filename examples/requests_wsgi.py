"""Request signals around a plain WSGI app, driven in-process the way a PEP 3333
server drives it (no server, no network).

Run: python examples/requests_wsgi.py
"""

from tocsin.wsgi import RequestSignalsMiddleware, request_finished, request_started


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"one "
    yield b"two "
    yield b"three"


@request_started.connect
def started(sender, environ, **kwargs):
    print(f"request_started   {environ['PATH_INFO']}")


@request_finished.connect
def finished(sender, environ, **kwargs):
    print(f"request_finished  {environ['PATH_INFO']}  (from close(), after the body)")


def serve_one(wsgi_app, path):
    """What a server does: call, iterate, and always close()."""
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path}
    result = wsgi_app(environ, lambda status, headers, exc_info=None: None)
    try:
        for chunk in result:
            print(f"  sent {chunk!r}")
    finally:
        result.close()


serve_one(RequestSignalsMiddleware(app), "/stream")
