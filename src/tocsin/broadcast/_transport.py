"""What a bus needs from a transport, and which transport a URL names.

A transport moves opaque messages (bytes) between processes. The bus runs
two threads over it: a publisher calling :meth:`Transport.publish` with
batches, and a listener calling :meth:`Transport.listen`, which returns
when the bus stops and raises when the connection is lost. The bus owns
reconnection (backoff), status, gaps and shutdown; a transport only reports
each (re)subscription through ``subscribed(reason)``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

from ._errors import BusConfigurationError

__all__ = ["LazyPublisher", "Transport", "masked", "open_transport"]


class Transport(Protocol):
    """A way to move messages between processes (see the module docstring)."""

    #: The largest message (bytes) it carries; the bus refuses larger ones in the sender.
    limit: int

    def publish(self, messages: list[bytes]) -> None:
        """Publish *messages* in order; raise on any failure (the bus retries the whole batch)."""

    def listen(
        self,
        running: Callable[[], bool],
        subscribed: Callable[[str | None], None],
        deliver: Callable[[bytes], None],
    ) -> None:
        """Receive until ``running()`` is False; raise when the connection is lost.

        Call ``subscribed(reason)`` once connected and whenever messages may
        have been missed (every subscription, a trimmed stream...), before
        delivering what follows; ``subscribed(None)`` when connected with
        nothing missed (a stream resumed). Call ``deliver(message)`` for each
        message, in order.
        """

    def interrupt(self) -> None:
        """Make a blocked ``listen()`` notice ``running()`` soon (any thread)."""

    def close(self) -> None:
        """Drop the connections (called after both threads ended)."""

    def forget(self) -> None:
        """In a forked child: drop the references to the parent's connections without closing them."""


class LazyPublisher:
    """What the network transports share: one publisher connection, opened when first needed.

    A failed publication drops (and closes) it, so the bus's retry opens a
    new one; the listener opens its own connection in each ``listen()`` and
    polls ``running()`` every 0.25 s, so ``interrupt()`` has nothing to do.
    """

    _publisher: Any = None  # anything with close(): a socket, a redis-py client, a psycopg connection

    @contextmanager
    def publishing(self, connect: Callable[[], Any]) -> Iterator[Any]:
        """The publisher connection (made by *connect* if there is none); dropped if the block raises."""
        if self._publisher is None:
            self._publisher = connect()
        try:
            yield self._publisher
        except BaseException:  # even half-written: the connection's state is unknown
            publisher, self._publisher = self._publisher, None
            publisher.close()
            raise

    def interrupt(self) -> None:
        """Nothing to do: ``listen()`` polls ``running()`` every 0.25 s."""

    def close(self) -> None:
        publisher, self._publisher = self._publisher, None
        if publisher is not None:
            publisher.close()

    def forget(self) -> None:
        """In a forked child: the parent's connections are not ours to close (closing could end them)."""
        self._publisher = None


def masked(url: str) -> str:
    """*url* with its passwords replaced by ``***`` (for status, logs and ``Origin``).

    Both places redis-py takes one: ``redis://:password@host`` and ``?password=``.
    """
    parts = urlsplit(url)
    query = _PASSWORD_PARAMETER.sub(r"\1***", parts.query)
    if parts.password is None:
        return url if query == parts.query else urlunsplit(parts._replace(query=query))
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit((parts.scheme, user + host, parts.path, query, parts.fragment))


_PASSWORD_PARAMETER = re.compile(r"((?:^|&)password=)[^&]*", re.IGNORECASE)


def open_transport(url: str, channel: str, maxlen: int, *, health_check: float, timeout: float) -> Transport:
    """The transport *url* names (``memory://``, ``redis://``, ``redis+stream://``, ``postgresql://``).

    Redis also takes ``rediss://`` (TLS) and ``unix:///path/to/redis.sock``, each
    with ``+stream`` for Streams (``rediss+stream://``, ``unix+stream://``).

    Raises:
        BusConfigurationError: an unknown scheme, a ``unix://`` URL without an
            absolute socket path, a TLS file named in the URL that does not
            exist, or the extra it needs is missing.
    """
    if not _is_str(url):
        msg = (
            f"Bus() needs a URL string such as 'redis://localhost:6379/0', 'postgresql://...' or "
            f"'memory://'; got {url!r} ({type(url).__name__})."
        )
        raise BusConfigurationError(msg)
    scheme = urlsplit(url).scheme.lower()
    if scheme in {"unix", "unix+stream"}:
        _check_unix(url)
    if scheme in {"rediss", "rediss+stream"}:
        _check_tls_files(url)
    if scheme == "memory":
        from ._transport_memory import MemoryTransport  # noqa: PLC0415 - one transport per bus

        return MemoryTransport(url, channel)
    if scheme in {"redis", "rediss", "unix"}:
        from ._transport_redis import RedisTransport  # noqa: PLC0415

        return RedisTransport(url, channel, timeout=timeout, health_interval=health_check)
    if scheme in {"redis+stream", "rediss+stream", "unix+stream"}:
        from ._transport_stream import StreamTransport  # noqa: PLC0415

        return StreamTransport(url.replace("+stream", "", 1), channel, maxlen, timeout=timeout)
    if scheme.startswith(("postgresql", "postgres")):
        from ._transport_postgres import PostgresTransport  # noqa: PLC0415

        return PostgresTransport(url, channel, timeout=timeout, health_interval=health_check)
    msg = (
        f"Bus() does not know the URL scheme {scheme!r} of {masked(url)!r}: use 'redis://', "
        f"'rediss://' (TLS), 'unix:///path/to/redis.sock' (each with '+stream' for Redis Streams: "
        f"'redis+stream://'...), 'postgresql://' or 'memory://'."
    )
    raise BusConfigurationError(msg)


def _check_unix(url: str) -> None:
    """A ``unix://`` URL names an absolute socket path after three slashes, and no host."""
    parts = urlsplit(url)
    if parts.hostname or not parts.path.startswith("/"):
        scheme = parts.scheme.lower()
        msg = (
            f"Bus() needs the absolute path of the Redis socket in a {scheme}:// URL, after three "
            f"slashes: '{scheme}:///run/redis/redis.sock' (a password: '{scheme}://:password@/run/...'); "
            f"got {masked(url)!r}"
            + (f", which names the host {parts.hostname!r}." if parts.hostname else ", without a path.")
        )
        raise BusConfigurationError(msg)


#: redis-py's URL options naming TLS files (opened only at the first connection).
_TLS_FILES = ("ssl_ca_certs", "ssl_ca_path", "ssl_certfile", "ssl_keyfile")


def _check_tls_files(url: str) -> None:
    """The TLS files a ``rediss://`` URL names exist (else every connection attempt fails obscurely)."""
    query = parse_qs(urlsplit(url).query)
    for option in _TLS_FILES:
        for value in query.get(option, []):
            path = unquote(value)
            if not os.path.exists(path):  # noqa: PTH110 - a str path, as redis-py takes it
                msg = (
                    f"Bus() cannot find {option}={path!r}, named in {masked(url)!r}: give the path of an "
                    f"existing PEM file (a directory for ssl_ca_path), e.g. "
                    f"'?ssl_ca_certs=/etc/ssl/redis-ca.pem'."
                )
                raise BusConfigurationError(msg)


def _is_str(value: object) -> bool:
    return isinstance(value, str)
