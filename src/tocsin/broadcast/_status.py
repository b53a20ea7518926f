"""``bus.status``: a snapshot of a bus's connection state and counters."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["BusStatus", "Counters", "State"]

State = Literal["stopped", "connecting", "connected", "disconnected"]


@dataclass(frozen=True)
class BusStatus:
    """What a bus is doing, as ``bus.status`` returns it (a snapshot, never updated).

    Attributes:
        state: ``"stopped"`` (not started, or stopped), ``"connecting"``,
            ``"connected"`` (subscribed: remote sends arrive) or
            ``"disconnected"`` (lost; reconnecting with backoff).
        publishing: whether the last publication attempt succeeded (False
            while the publisher waits to reconnect).
        buffered: messages waiting to be published.
        published: messages published since the bus was created.
        received: messages read from the transport (echoes and drops included).
        delivered: remote sends re-sent locally.
        dropped: messages not re-sent, by reason: ``"unknown"`` (a signal
            name this process did not share), ``"unsigned"`` (missing or
            wrong signature), ``"malformed"``, ``"undecodable"`` (a class or
            model this process does not know).
        gaps: how many times ``bus.gap`` was sent.
        reconnects: connections lost (listener and publisher).
        last_error: the last connection error, as text, or None.

    .. versionadded:: 0.1
    """

    state: State
    publishing: bool
    buffered: int
    published: int
    received: int
    delivered: int
    dropped: dict[str, int] = field(default_factory=dict)
    gaps: int = 0
    reconnects: int = 0
    last_error: str | None = None


class Counters:
    """The live counters behind :class:`BusStatus` (updated by the bus's threads)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.state: State = "stopped"
        self.publishing = True
        self.published = 0
        self.received = 0
        self.delivered = 0
        self.dropped: dict[str, int] = {}
        self.gaps = 0
        self.reconnects = 0
        self.last_error: str | None = None

    def drop(self, reason: str) -> None:
        with self.lock:
            self.dropped[reason] = self.dropped.get(reason, 0) + 1

    def snapshot(self, buffered: int) -> BusStatus:
        with self.lock:
            return BusStatus(
                state=self.state,
                publishing=self.publishing,
                buffered=buffered,
                published=self.published,
                received=self.received,
                delivered=self.delivered,
                dropped=dict(self.dropped),
                gaps=self.gaps,
                reconnects=self.reconnects,
                last_error=self.last_error,
            )
