"""Django's request signals for any WSGI application (Flask, Bottle, Falcon, ...).

Wrap the application; this module imports no web framework::

    from tocsin.wsgi import RequestSignalsMiddleware, relay_flask_exceptions, request_finished

    app.wsgi_app = RequestSignalsMiddleware(app.wsgi_app)  # Flask
    relay_flask_exceptions(app)

    @request_finished.connect
    def close_connections(sender, environ, **kwargs):
        ...

For every request the middleware sends, with
``sender=RequestSignalsMiddleware`` (the class, like Django's handler class):

* ``request_started(environ=environ)`` before the application is called.
* ``got_request_exception(request=None, exception=exc, environ=environ)`` when
  the application raises, or its response iterable raises before yielding a
  non-empty chunk: the cases a server turns into a 500 (PEP 3333 sends no
  headers before the first non-empty chunk). The exception is then re-raised
  unchanged. A failure after body bytes went out only cuts the response
  short and is not reported. Frameworks that turn errors into 500 responses
  themselves (Flask) never let the middleware see them: relay theirs with
  :func:`relay_flask_exceptions`.
* ``request_finished(environ=environ)`` exactly once per request: from the
  response iterable's ``close()``, which PEP 3333 servers call once the
  response was sent or the request was cut short (client disconnect), so it
  comes after a streamed body; or at once if the application raised.

Receivers run synchronously in the server's thread, with ``send()`` for
``request_started`` (a receiver's exception fails the request and
``request_finished`` is not sent, as in Django) and ``send_robust()`` for the
other two (a receiver's exception is logged on logger ``tocsin``, never raised
into the server or over the original error).

The response is wrapped in a proxy, so a ``wsgi.file_wrapper`` response loses
the server's ``sendfile`` fast path while any receiver is connected. When no
receiver (and no interceptor, such as ``tocsin.testing`` tools) is connected
to any of the three signals at the start of a request, the request passes
straight through untouched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, Final, cast

from tocsin.exceptions import InvalidArgumentError

from ._request_signals import (
    all_quiet,
    got_request_exception,
    request_finished,
    request_started,
    watch_silence,
)

__all__ = [
    "RequestSignalsMiddleware",
    "got_request_exception",
    "relay_flask_exceptions",
    "request_finished",
    "request_started",
]

_Environ = dict[str, Any]
_StartResponse = Callable[..., Callable[[bytes], object]]
_WSGIApp = Callable[[_Environ, _StartResponse], Iterable[bytes]]

# An exception the Flask relay already reported, so that the middleware does
# not report it again when Flask re-raises it (PROPAGATE_EXCEPTIONS).
_REPORTED: Final = "tocsin.reported_exception"

# Whether none of the three signals has a receiver or an interceptor: read on
# every request as one module global (see _request_signals.watch_silence).
_silent = False


def _track_silence(silent: bool) -> None:  # noqa: FBT001 - a watcher's signature
    global _silent  # noqa: PLW0603 - the flag is a global so that reading it is one lookup
    _silent = silent


watch_silence(_track_silence)


def _report(sender: object, environ: _Environ, exc: Exception) -> None:
    if environ.get(_REPORTED) is not exc:
        environ[_REPORTED] = exc
        got_request_exception.send_robust(sender, request=None, exception=exc, environ=environ)


class RequestSignalsMiddleware:
    """Send the request signals around every request of a WSGI app.

    WSGI middleware: ``request_started``, ``request_finished`` and
    ``got_request_exception``.

    See the module docstring for the exact arguments and timing.

    Args:
        app: the WSGI application to wrap (for Flask: ``app.wsgi_app``).

    .. versionadded:: 0.1

    """

    __slots__ = ("app",)

    def __init__(self, app: _WSGIApp) -> None:
        candidate: object = app
        if not callable(candidate):
            msg = (
                f"RequestSignalsMiddleware(app) needs a WSGI application: a callable "
                f"app(environ, start_response); got {app!r}. For Flask wrap app.wsgi_app: "
                f"app.wsgi_app = RequestSignalsMiddleware(app.wsgi_app)."
            )
            raise InvalidArgumentError(msg)
        self.app = app

    def __call__(self, environ: _Environ, start_response: _StartResponse) -> Iterable[bytes]:
        """Serve one request; the returned iterable sends ``request_finished`` on close()."""
        if _silent:
            return self.app(environ, start_response)
        sender = self.__class__
        if all_quiet(sender):
            return self.app(environ, start_response)
        request_started.send(sender, environ=environ)
        try:
            result = self.app(environ, start_response)
        except Exception as exc:
            _report(sender, environ, exc)
            request_finished.send_robust(sender, environ=environ)
            raise
        return _Response(result, sender, environ)


class _Response:
    """The application's response iterable, sending request_finished on close()."""

    __slots__ = ("_closed", "_environ", "_result", "_sender")

    def __init__(self, result: Iterable[bytes], sender: object, environ: _Environ) -> None:
        self._result = result
        self._sender = sender
        self._environ = environ
        self._closed = False

    def __iter__(self) -> Iterator[bytes]:
        went_out = False
        try:
            for chunk in self._result:
                went_out = went_out or bool(chunk)
                yield chunk
        except Exception as exc:
            if not went_out:
                _report(self._sender, self._environ, exc)
            raise

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            close = getattr(self._result, "close", None)
            if close is not None:
                close()
        finally:
            request_finished.send_robust(self._sender, environ=self._environ)


def relay_flask_exceptions(app: Any) -> Callable[[], None]:
    """Relay Flask's ``got_request_exception`` for *app* to tocsin's.

    Flask turns an unhandled exception into a 500 response inside
    ``app.wsgi_app``, so no WSGI middleware sees it. This connects a relay
    to ``flask.got_request_exception`` for *app* that sends
    ``tocsin.wsgi.got_request_exception`` robustly with ``sender=app``,
    ``request=`` the Flask request, ``exception=`` and ``environ=``. When
    Flask re-raises (``PROPAGATE_EXCEPTIONS``, testing and debug modes),
    :class:`RequestSignalsMiddleware` does not report the same exception a
    second time.

    Args:
        app: a ``flask.Flask`` application.

    Returns:
        A function that disconnects the relay.

    Raises:
        ImportError: Flask is not installed.


    .. versionadded:: 0.1

    """
    try:
        import flask  # noqa: PLC0415 - optional dependency, only for this helper
    except ImportError:
        msg = "tocsin.wsgi.relay_flask_exceptions() requires Flask: pip install 'tocsin[flask]'"
        raise ImportError(msg, name="flask") from None

    def relay(sender: Any, exception: Exception, **extra: Any) -> None:
        del extra
        # The request itself, not the context-local proxy a receiver might keep.
        request = cast("Any", flask.request)._get_current_object()  # noqa: SLF001 - werkzeug's documented way
        environ = request.environ
        environ[_REPORTED] = exception
        got_request_exception.send_robust(sender, request=request, exception=exception, environ=environ)

    flask.got_request_exception.connect(relay, app, weak=False)

    def disconnect() -> None:
        flask.got_request_exception.disconnect(relay, app)

    return disconnect
