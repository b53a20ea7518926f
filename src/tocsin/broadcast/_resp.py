"""A minimal RESP2 client for the pub/sub transport: the hot paths of publishers and subscribers.

redis-py's ``PubSub.get_message()`` costs about 16 µs a message (a
``select()`` per call, a dict per message); reading the socket in 64 KiB
chunks and splitting the pushes here costs a few. Only what a subscribed
connection receives is parsed: arrays of bulk strings and integers
(``message``, ``subscribe``, ``pong``), simple strings, errors.
"""

from __future__ import annotations

import socket
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["RespError", "command", "connect", "parse", "read_replies"]


class RespError(ConnectionError):
    """The server answered with an error (``-ERR ...``), or sent something this reader cannot parse."""


def command(*parts: bytes) -> bytes:
    """One command in RESP."""
    out = [b"*%d\r\n" % len(parts)]
    out.extend(b"$%d\r\n%s\r\n" % (len(part), part) for part in parts)
    return b"".join(out)


def connect(url: str, timeout: float) -> socket.socket:
    """A socket to the server of a ``redis://`` or ``unix://`` URL, authenticated if it names a password.

    The password (and user) come from the URL's netloc, else from its
    ``?password=`` (``?username=``) parameters, as redis-py reads them.
    """
    parts = urlsplit(url)
    if parts.scheme == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        path = unquote(parts.path)
        try:
            sock.connect(path)
        except OSError as exc:
            sock.close()
            # FileNotFoundError and friends say neither which path nor what was expected there.
            msg = (
                f"cannot connect to the Redis unix socket {path!r}: {exc.strerror or exc}. Expected "
                f"redis-server listening there ('unixsocket {path}' in redis.conf, readable by this "
                f"user); fix the path in the URL or start the server."
            )
            raise ConnectionError(msg) from exc
    else:
        sock = socket.create_connection((parts.hostname or "localhost", parts.port or 6379), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    query = parse_qs(parts.query)
    password = parts.password if parts.password is not None else query.get("password", [None])[0]
    username = parts.username or query.get("username", [None])[0]
    try:
        if password is not None:
            _auth(sock, username, password)
    except BaseException:
        sock.close()
        raise
    return sock


def _auth(sock: socket.socket, username: str | None, password: str) -> None:
    auth = [b"AUTH"]
    if username:
        auth.append(unquote(username).encode())
    auth.append(unquote(password).encode())
    sock.sendall(command(*auth))
    reply = b""
    while not reply.endswith(b"\r\n"):
        chunk = sock.recv(4096)
        if not chunk:
            msg = "connection closed during AUTH"
            raise RespError(msg)
        reply += chunk
    if not reply.startswith(b"+OK"):
        msg = f"AUTH refused: {reply.decode(errors='replace').strip()}"
        raise RespError(msg)


def parse(buffer: bytes, pos: int) -> tuple[Any, int] | None:  # noqa: C901, PLR0911 - one branch per RESP type
    """Parse one reply at *pos*; return ``(reply, next position)``, or None if it is incomplete."""
    end = buffer.find(b"\r\n", pos)
    if end < 0:
        return None
    kind = buffer[pos]
    if kind == 36:  # "$": bulk string  # noqa: PLR2004
        size = int(buffer[pos + 1 : end])
        if size < 0:
            return None, end + 2
        stop = end + 2 + size
        if len(buffer) < stop + 2:
            return None
        return buffer[end + 2 : stop], stop + 2
    if kind == 42:  # "*": array  # noqa: PLR2004
        count = int(buffer[pos + 1 : end])
        items = []
        pos = end + 2
        for _ in range(count):
            parsed = parse(buffer, pos)
            if parsed is None:
                return None
            item, pos = parsed
            items.append(item)
        return items, pos
    if kind == 58:  # ":": integer  # noqa: PLR2004
        return int(buffer[pos + 1 : end]), end + 2
    if kind == 43:  # "+": simple string  # noqa: PLR2004
        return buffer[pos + 1 : end], end + 2
    if kind == 45:  # "-": error  # noqa: PLR2004
        raise RespError(buffer[pos + 1 : end].decode(errors="replace"))
    msg = f"unexpected reply type {chr(kind)!r} from the server"
    raise RespError(msg)


def read_replies(sock: socket.socket, count: int) -> list[Any]:
    """Read *count* replies (raising :class:`RespError` for an error reply)."""
    replies: list[Any] = []
    buffer = b""
    pos = 0
    while len(replies) < count:
        parsed = parse(buffer, pos)
        if parsed is None:
            chunk = sock.recv(1 << 16)
            if not chunk:
                msg = "connection closed by the server"
                raise ConnectionError(msg)
            buffer = buffer[pos:] + chunk
            pos = 0
            continue
        reply, pos = parsed
        replies.append(reply)
    return replies
