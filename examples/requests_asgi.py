"""Request signals around a plain ASGI app, driven in-process (no server, no network).

Run: python examples/requests_asgi.py
"""

import asyncio

from tocsin.asgi import RequestSignalsMiddleware, got_request_exception, request_finished, request_started


async def app(scope, receive, send):
    if scope["path"] == "/boom":
        raise RuntimeError("boom")
    await send({"type": "http.response.start", "status": 200, "headers": []})
    for chunk in (b"one ", b"two ", b"three"):  # a streamed body
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


@request_started.connect
def started(sender, scope, **kwargs):
    print(f"request_started   {scope['path']}")


@request_finished.connect
async def finished(sender, scope, **kwargs):  # async receivers are awaited on the loop
    print(f"request_finished  {scope['path']}")


@got_request_exception.connect
def failed(sender, exception, scope, **kwargs):  # sync receivers run in a worker thread
    print(f"got_request_exception {scope['path']}: {exception!r}")


async def call(asgi_app, path):
    scope = {"type": "http", "method": "GET", "path": path, "headers": []}

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        if message["type"] == "http.response.body" and message["body"]:
            print(f"  sent {message['body']!r}")

    try:
        await asgi_app(scope, receive, send)
    except RuntimeError as exc:
        print(f"  the server would answer 500 for {exc!r}")


async def main():
    wrapped = RequestSignalsMiddleware(app)
    await call(wrapped, "/stream")
    await call(wrapped, "/boom")


asyncio.run(main())
