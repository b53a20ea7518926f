"""Django's request signals for any ASGI application (Starlette, FastAPI, ...).

Wrap the application, or add it as a middleware; this module imports no web
framework::

    from starlette.applications import Starlette
    from tocsin.asgi import RequestSignalsMiddleware, request_finished

    app = Starlette(routes=[...])
    app.add_middleware(RequestSignalsMiddleware)

    @request_finished.connect
    def close_connections(sender, scope, **kwargs):
        ...

For every ``http`` request the middleware sends, with
``sender=RequestSignalsMiddleware`` (the class, like Django's handler class):

* ``request_started(scope=scope)`` before the application runs. The
  application reads the body lazily, so this comes before the body is read
  (Django's ASGI handler reads the whole body first).
* ``got_request_exception(request=None, exception=exc, scope=scope)`` when an
  exception escapes the application before a response started, or after a
  500 response started (an error middleware such as Starlette's
  ``ServerErrorMiddleware`` sent it). The exception is then re-raised
  unchanged. Exceptions the application turns into responses itself
  (``HTTPException``, 404) are not reported, as in Django, and neither is an
  error that cuts short a response already under way with another status:
  the client got that status, so it did not become a 500.
* ``request_finished(scope=scope)`` exactly once per request: right after the
  final ``http.response.body`` message (``more_body`` false) was sent, so
  after a streamed body and before Starlette's background tasks; otherwise
  when the application returns or raises, including on client disconnect.
  After a 500 response it waits until the application returns, so that
  ``got_request_exception`` comes first when an error middleware inside
  ours sent the 500 and re-raises. With ``app.add_middleware`` Starlette's
  ``ServerErrorMiddleware`` is outside ours: the exception passes through us
  first, and ``request_finished`` comes before that middleware sends the 500.

``lifespan`` and ``websocket`` scopes pass through untouched.

Receivers are called with ``await signal.asend(...)``: sync receivers run in a
worker thread and never block the event loop, async receivers run
concurrently. A ``request_started`` receiver's exception fails the request
(the application does not run and ``request_finished`` is not sent, as in
Django); ``request_finished`` and ``got_request_exception`` are sent robustly
(a receiver's exception is logged on logger ``tocsin`` and never reaches the
application or masks the original error).

When no receiver (and no interceptor, such as ``tocsin.testing`` tools) is
connected to any of the three signals at the start of a request, the request
passes straight through: a receiver connected while a request is in flight
sees the next request.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from tocsin.exceptions import InvalidArgumentError

from ._request_signals import (
    all_quiet,
    got_request_exception,
    request_finished,
    request_started,
    watch_silence,
)

if TYPE_CHECKING:
    from ._core.signal import Signal

__all__ = ["RequestSignalsMiddleware", "got_request_exception", "request_finished", "request_started"]

_Scope = MutableMapping[str, Any]
_Message = MutableMapping[str, Any]
_Receive = Callable[[], Awaitable[_Message]]
_Send = Callable[[_Message], Awaitable[None]]
_ASGIApp = Callable[[_Scope, _Receive, _Send], Awaitable[None]]

# Whether none of the three signals has a receiver or an interceptor: read on
# every request as one module global (see _request_signals.watch_silence).
_silent = False


def _track_silence(silent: bool) -> None:  # noqa: FBT001 - a watcher's signature
    global _silent  # noqa: PLW0603 - the flag is a global so that reading it is one lookup
    _silent = silent


watch_silence(_track_silence)


class RequestSignalsMiddleware:
    """Send the request signals around every HTTP request of an ASGI app.

    Pure ASGI middleware: ``request_started``, ``request_finished`` and
    ``got_request_exception``.

    See the module docstring for the exact arguments and timing. Works with
    any ASGI 3 application and server; use it as
    ``app.add_middleware(RequestSignalsMiddleware)`` or
    ``app = RequestSignalsMiddleware(app)``.

    Args:
        app: the ASGI 3 application to wrap.

    .. versionadded:: 0.1

    """

    __slots__ = ("app",)

    def __init__(self, app: _ASGIApp) -> None:
        candidate: object = app
        if not callable(candidate):
            msg = (
                f"RequestSignalsMiddleware(app) needs an ASGI application: an async callable "
                f"app(scope, receive, send); got {app!r}. Pass the application object itself, "
                f"for example RequestSignalsMiddleware(app), not the result of calling it."
            )
            raise InvalidArgumentError(msg)
        self.app = app

    async def __call__(self, scope: _Scope, receive: _Receive, send: _Send) -> None:
        """Serve one ASGI connection, sending the signals for ``http`` scopes."""
        # No receiver and no interceptor on any of the three signals: one
        # global read, without a call, because it runs on every request.
        if _silent or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sender = self.__class__
        if all_quiet(sender):
            await self.app(scope, receive, send)
            return
        await self._observe(sender, scope, receive, send)

    async def _observe(self, sender: type, scope: _Scope, receive: _Receive, send: _Send) -> None:
        status: int | None = None
        trailers = False
        finish = _Shielded(request_finished, sender, scope=scope)

        async def watch(message: _Message) -> None:
            nonlocal status, trailers
            await send(message)
            kind = message["type"]
            if kind == "http.response.start":
                status = message["status"]
                trailers = bool(message.get("trailers", False))
            elif status != 500 and _is_last(kind, message, trailers=trailers):  # noqa: PLR2004
                # A 500 may come from an error middleware that re-raises next:
                # finishing waits for the app, so got_request_exception comes first.
                await finish.run()

        await request_started.asend(sender, scope=scope)
        try:
            await self.app(scope, receive, watch)
        except Exception as exc:
            if status is None or status == 500:  # noqa: PLR2004 - the status that means "error"
                report = _Shielded(got_request_exception, sender, request=None, exception=exc, scope=scope)
                await report.run()
            raise
        finally:
            await finish.run()


class _Shielded:
    """One robust send that runs once, to completion, even if its awaiter is cancelled.

    anyio cancels level-triggered: when Starlette's StreamingResponse cancels
    its task group (uvicorn answers ``receive()`` with ``http.disconnect`` as
    soon as the last chunk is out, or the client hung up), every later await
    in it is cancelled too, including ours inside its ``send()``. So the send
    runs in its own task that cancellation does not reach; an awaiter that is
    cancelled leaves it running and the middleware's ``finally`` awaits it
    again. Under trio a shielded cancel scope does the same.
    """

    __slots__ = ("_done", "_named", "_sender", "_signal", "_task")

    def __init__(self, signal: Signal, sender: object, **named: Any) -> None:
        self._signal = signal
        self._sender = sender
        self._named = named
        self._task: asyncio.Task[Any] | None = None
        self._done = False

    async def run(self) -> None:
        if self._done:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not asyncio: trio (Signal.asend supports no other)
            self._done = True
            trio: Any = sys.modules["trio"]
            with trio.CancelScope(shield=True):
                await self._signal.asend_robust(self._sender, **self._named)
            return
        if self._task is None:
            self._task = loop.create_task(self._signal.asend_robust(self._sender, **self._named))
        await asyncio.shield(self._task)
        self._done = True


def _is_last(kind: str, message: _Message, *, trailers: bool) -> bool:
    """Whether *message* completes the response (ASGI HTTP spec 2.4 + extensions)."""
    if kind in {"http.response.body", "http.response.zerocopysend"}:
        return not trailers and not message.get("more_body", False)
    if kind == "http.response.trailers":
        return not message.get("more_trailers", False)
    return kind == "http.response.pathsend"
