"""Messages on the wire: an envelope naming the signal and origin, optionally signed.

One message is ASCII header, newline, JSON payload (``background._payload``)::

    T1 <mac or -> <origin> <seq> <signal name> NEWLINE <payload>

``mac`` is the hex HMAC-SHA256 of everything after it (``<origin> ...``
through the payload) under the bus's ``secret``; ``-`` when unsigned. A bus
with a secret drops messages without a valid MAC; a bus without one accepts
both (it cannot check them). Signal names and origins never contain spaces
or newlines (checked by ``share()``), so the header splits unambiguously.
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["Envelope", "pack", "unpack"]

_MAGIC = b"T1 "


class Envelope:
    """A received message, its header parsed; the payload still JSON text."""

    __slots__ = ("name", "origin", "payload", "seq")

    def __init__(self, origin: str, seq: int, name: str, payload: str) -> None:
        self.origin = origin
        self.seq = seq
        self.name = name
        self.payload = payload


def pack(origin: str, seq: int, name: str, payload: str, secret: bytes | None) -> bytes:
    """The wire bytes of one message."""
    body = f"{origin} {seq} {name}\n{payload}".encode()
    if secret is None:
        return _MAGIC + b"- " + body
    mac = hmac.new(secret, body, hashlib.sha256).hexdigest().encode("ascii")
    return _MAGIC + mac + b" " + body


def unpack(data: bytes, secret: bytes | None) -> Envelope | str:
    """Parse *data*; return the envelope, or why it was dropped (``"malformed"``, ``"unsigned"``).

    With a *secret*, a missing or wrong MAC is ``"unsigned"`` (the
    comparison is constant-time).
    """
    if not data.startswith(_MAGIC):
        return "malformed"
    mac, sep, body = data[len(_MAGIC) :].partition(b" ")
    if not sep:
        return "malformed"
    if secret is not None:
        expected = hmac.new(secret, body, hashlib.sha256).hexdigest().encode("ascii")
        if not hmac.compare_digest(mac, expected):
            return "unsigned"
    header, sep, payload = body.partition(b"\n")
    parts = header.split(b" ")
    if not sep or len(parts) != 3 or not parts[1].isdigit():  # noqa: PLR2004 - origin, seq, name
        return "malformed"
    try:
        return Envelope(parts[0].decode(), int(parts[1]), parts[2].decode(), payload.decode())
    except UnicodeDecodeError:
        return "malformed"
