"""``Bus``: shares signals between processes over a transport, with two background threads.

Threads and state:

* The **publisher** thread takes the queued messages in batches (one
  pipelined round trip per batch on Redis) and retries a failed batch with
  backoff; senders only encode and append to a bounded deque.
* The **listener** thread holds the subscription, reconnects with backoff
  after a loss, sends ``bus.gap`` on every (re)subscription the transport
  reports, and re-sends each remote message locally with ``send_robust()``
  (``asend_robust()`` on the event loop under ``async with bus:``),
  logging receivers' exceptions: a failing receiver never stops it.

A process id (``origin``) is drawn per bus and per OS process, lazily, so
a forked child never mistakes its siblings' messages for its own echoes.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import random
import secrets
import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from functools import partial
from typing import TYPE_CHECKING, Any

from tocsin._core.identity import reduce_signal
from tocsin._core.signal import Signal
from tocsin.background import _payload

from ._codec import unpack
from ._errors import BusConfigurationError, BusUnavailableError
from ._origin import Origin
from ._resolve import Resolver
from ._share import Publisher
from ._status import BusStatus, Counters
from ._transport import masked, open_transport

if TYPE_CHECKING:
    from types import TracebackType

    from typing_extensions import Self

__all__ = ["Bus"]

logger = logging.getLogger("tocsin")

_owners: weakref.WeakKeyDictionary[Signal, Bus] = weakref.WeakKeyDictionary()
_owners_lock = threading.Lock()
_BATCH = 512
_buses: weakref.WeakSet[Bus] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for bus in list(_buses):
        bus._after_fork()  # noqa: SLF001 - the module's own fork hook


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_after_fork_in_child)


class _Backoff:
    """Exponential backoff with jitter: 0.05 s doubling to *ceiling*, reset on success."""

    def __init__(self, ceiling: float) -> None:
        self.ceiling = ceiling
        self.attempt = 0

    def next(self) -> float:
        delay: float = min(self.ceiling, 0.05 * 2.0 ** min(self.attempt, 30))
        self.attempt += 1
        jitter: float = random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not cryptography
        return delay * jitter

    def reset(self) -> None:
        self.attempt = 0


class Bus:
    """Re-sends the sends of shared signals in every process connected to the same transport.

    Args:
        url: ``redis://host:port/db`` (pub/sub), ``redis+stream://host:port/db``
            (Redis Streams), ``postgresql://...`` (LISTEN/NOTIFY) or
            ``memory://name`` (buses of this process; tests and demos).
            Redis also takes ``unix:///path/to/redis.sock`` and TLS,
            ``rediss://host:port/db?ssl_ca_certs=/path/to/ca.pem`` (each
            with ``+stream``: ``unix+stream://``, ``rediss+stream://``).
        secret: sign every message (HMAC-SHA256) and drop those without a
            valid signature. Every process on the channel needs the same one.
        channel: the Redis channel / stream key / PostgreSQL channel name.
        max_bytes: the largest message a send may make (refused in the
            sender above it); capped by the transport's limit (NOTIFY: 7,999).
        buffer: how many messages may wait to be published (while the
            transport is unreachable); a send finding it full raises
            :class:`BusUnavailableError`.
        sessions: a SQLAlchemy ``sessionmaker``: remote model instances are
            loaded fresh with it; without, they arrive detached, holding
            only their primary key.
        maxlen: Redis Streams only: the stream's approximate length (``XADD
            MAXLEN ~``), i.e. its retention.
        max_backoff: the longest wait between reconnection attempts, seconds.
        health_check: after this many seconds without traffic the listener
            checks its connection (Redis: ``PING`` on the subscribed
            connection; PostgreSQL: ``SELECT 1``) and reads the reply.
        timeout: seconds to wait for a connection, a reply, or the
            health check's reply before the connection is presumed dead.

    Attributes:
        gap: a signal sent (sender: the bus, ``reason=``) whenever remote
            sends may have been missed: on every subscription and
            resubscription, and when a stream's retention was passed.

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        url: str,
        *,
        secret: str | bytes | None = None,
        channel: str = "tocsin",
        max_bytes: int = 64 * 1024,
        buffer: int = 10_000,
        sessions: Callable[[], Any] | None = None,
        maxlen: int = 100_000,
        max_backoff: float = 5.0,
        health_check: float = 5.0,
        timeout: float = 2.0,
    ) -> None:
        options: tuple[tuple[str, object], ...] = (
            ("max_bytes", max_bytes),
            ("buffer", buffer),
            ("maxlen", maxlen),
        )
        for option, value in options:
            if type(value) is not int or value < 1:
                msg = f"Bus({option}=...) must be a positive int; got {value!r}."
                raise BusConfigurationError(msg)
        if not _is_token(channel):
            msg = f"Bus(channel=...) must be a non-empty string without spaces; got {channel!r}."
            raise BusConfigurationError(msg)
        if not _is_secret(secret):
            msg = f"Bus(secret=...) must be a non-empty str or bytes; got {type(secret).__name__}."
            raise BusConfigurationError(msg)
        self.url = masked(url) if isinstance(url, str) else repr(url)
        for option, seconds in (
            ("max_backoff", max_backoff),
            ("health_check", health_check),
            ("timeout", timeout),
        ):
            if not _is_seconds(seconds):
                msg = f"Bus({option}=...) must be a positive number of seconds; got {seconds!r}."
                raise BusConfigurationError(msg)
        self._transport = open_transport(url, channel, maxlen, health_check=health_check, timeout=timeout)
        self.transport_limit = self._transport.limit
        self.max_bytes = min(max_bytes, self.transport_limit)
        self.secret = secret.encode() if isinstance(secret, str) else secret
        self.sessions = sessions
        self.gap = Signal(name="gap", doc="Remote sends may have been missed since the last message.")
        self._max_backoff = max_backoff
        # name -> (signal, interceptor remover, the resolver of its remote sends)
        self._shared: dict[str, tuple[Signal, Callable[[], None], Resolver]] = {}
        self._buffer = buffer
        self._queue: deque[bytes] = deque()
        self._queue_lock = threading.Lock()
        self._wake = threading.Event()
        self._idle = False
        self._progress = threading.Condition()
        self._enqueued = 0
        self._counters = Counters()
        self._seq = itertools.count(1)
        self._origin = ""
        self._pid = -1
        self._running = False
        self._stopped = threading.Event()
        self._subscribed = threading.Event()
        self._listener_lost = False  # since the listener's last subscription (one warning per loss)
        self._threads: list[threading.Thread] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        _buses.add(self)

    def __repr__(self) -> str:
        return f"<Bus {self.url} {self._counters.state}>"

    # ---- sharing --------------------------------------------------------

    def share(self, signal: Signal, *, name: str | None = None, senders: Iterable[type] = ()) -> Signal:
        """Publish every send of *signal* to the other processes, and re-send theirs here.

        Receivers need no change: a remote send reaches them with one more
        named argument, ``origin=`` (an :class:`Origin`). Only signals shared
        in this process are ever re-sent here.

        Args:
            signal: a ``tocsin.Signal`` bound to a module-level name.
            name: the name it travels under (default ``module:attribute``);
                every process must share it under the same name.
            senders: classes a remote send's sender may resolve to, besides
                the senders of *signal*'s connections and mapped SQLAlchemy
                classes (nothing is imported because a message names it).

        Returns:
            *signal*, so that ``post_changed = bus.share(Signal())`` works.

        Raises:
            BusConfigurationError: not a tocsin signal, no name found, the
                name is taken, or *signal* is shared on another bus.

        .. versionadded:: 0.1
        """
        if not _is_signal(signal):
            msg = f"bus.share() needs a tocsin.Signal; got {signal!r} ({type(signal).__name__})."
            raise BusConfigurationError(msg)
        name = self._name_of(signal) if name is None else name
        if (
            not isinstance(name, str)
            or not name
            or not name.isprintable()
            or " " in name
            or not name.isascii()
        ):
            msg = f"bus.share(name=...) must be a non-empty ASCII string without spaces; got {name!r}."
            raise BusConfigurationError(msg)
        classes = tuple(senders)
        with _owners_lock:
            owner = _owners.get(signal)
            if owner is not None and owner is not self:
                msg = (
                    f"{signal!r} is already shared on {owner!r}; a signal can be shared on one bus at a "
                    f"time (each would publish its sends). Call unshare() on that bus first."
                )
                raise BusConfigurationError(msg)
            taken = self._shared.get(name)
            if taken is not None and taken[0] is not signal:
                msg = f"the name {name!r} is already shared on {self!r} by {taken[0]!r}; pass name=..."
                raise BusConfigurationError(msg)
            if owner is self:
                return signal
            _owners[signal] = self
            resolver = Resolver(partial(_sender_classes, signal, classes), self.sessions)
            self._shared[name] = (signal, signal.add_interceptor(Publisher(self, name)), resolver)
        return signal

    def unshare(self, signal: Signal) -> None:
        """Stop publishing *signal*'s sends and re-sending remote ones (idempotent).

        .. versionadded:: 0.1
        """
        with _owners_lock:
            for name, (shared, remove, _resolver) in list(self._shared.items()):
                if shared is signal:
                    del self._shared[name]
                    remove()
                    _owners.pop(signal, None)

    @staticmethod
    def _name_of(signal: Signal) -> str:
        try:
            reference = reduce_signal(signal)[1][0]
        except TypeError:
            msg = (
                f"bus.share() cannot name {signal!r}: no module-level name is bound to it. Bind it at "
                f"module level, or pass share(signal, name='app.post_changed')."
            )
            raise BusConfigurationError(msg) from None
        return reference

    # ---- publishing (any thread) ----------------------------------------

    def origin_id(self) -> str:
        """The id of this bus in this OS process (a fork gets a new one)."""
        pid = os.getpid()
        if pid != self._pid:
            self._origin, self._pid = secrets.token_hex(6), pid
        return self._origin

    def next_seq(self) -> int:
        """The next message's sequence number (``itertools.count`` is atomic under the GIL)."""
        return next(self._seq)

    def enqueue(self, data: bytes) -> None:
        """Queue one encoded message for the publisher thread.

        Raises:
            BusUnavailableError: the buffer is full (the transport is down).
        """
        with self._queue_lock:
            if len(self._queue) >= self._buffer:
                status = self._counters
                msg = (
                    f"{self!r} cannot publish: {self._buffer:,} messages are already waiting (state "
                    f"{status.state!r}, last error {status.last_error!r}). Nothing was sent. Raise "
                    f"Bus(buffer=...) or check the transport."
                )
                raise BusUnavailableError(msg)
            self._queue.append(data)
            self._enqueued += 1
        if self._idle:
            self._wake.set()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every message queued so far is published; False if *timeout* passed first.

        .. versionadded:: 0.1
        """
        with self._progress:
            target = self._enqueued
            return self._progress.wait_for(lambda: self._counters.published >= target, timeout)

    # ---- lifecycle ------------------------------------------------------

    @property
    def status(self) -> BusStatus:
        """A snapshot of the connection state and counters (see :class:`BusStatus`).

        .. versionadded:: 0.1
        """
        return self._counters.snapshot(len(self._queue))

    def start(self, *, wait: float = 5.0) -> bool:
        """Start the publisher and listener threads (idempotent).

        Returns whether the bus subscribed within *wait* seconds: remote
        sends made after that reach this process, and ``gap``'s receivers
        have run (under ``async with``, they are scheduled on the loop).
        False is not an error: the bus keeps trying in the background (see
        :attr:`status`), and sends are buffered meanwhile.

        .. versionadded:: 0.1
        """
        if not self._running:
            self._running = True
            self._stopped.clear()
            self._subscribed.clear()
            with self._counters.lock:
                self._listener_lost = False
                self._counters.state = "connecting"
            self._threads = [
                threading.Thread(
                    target=self._publish_loop, name=f"tocsin-bus-publish {self.url}", daemon=True
                ),
                threading.Thread(target=self._listen_loop, name=f"tocsin-bus-listen {self.url}", daemon=True),
            ]
            for thread in self._threads:
                thread.start()
        return self._subscribed.wait(wait)

    def stop(self, timeout: float = 5.0) -> None:
        """Publish what is queued (for up to *timeout* s), then stop both threads (idempotent).

        Messages still unpublished after *timeout* are dropped and logged.

        .. versionadded:: 0.1
        """
        if not self._running:
            return
        self.flush(timeout)
        self._running = False
        self._stopped.set()
        self._wake.set()
        self._transport.interrupt()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout)
        self._threads = []
        self._transport.close()
        with self._queue_lock:
            lost = len(self._queue)
            self._queue.clear()
        if lost:
            logger.warning("%r stopped with %d unpublished messages, dropped.", self, lost)
        with self._counters.lock:
            self._counters.state = "stopped"

    close = stop

    def _after_fork(self) -> None:
        """In a forked child: a stopped bus with nothing queued, which ``start()`` starts afresh.

        The parent's threads do not exist here, its locks may be held by
        them, and its connections are its own: start over (a new origin id
        is drawn at the next publication).
        """
        self._running = False
        self._threads = []
        self._queue = deque()
        self._queue_lock = threading.Lock()
        self._wake = threading.Event()
        self._idle = False
        self._progress = threading.Condition()
        self._enqueued = 0
        self._counters = Counters()
        self._stopped = threading.Event()
        self._subscribed = threading.Event()
        self._listener_lost = False
        self._loop = None
        self._transport.forget()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        """Start the bus; remote sends are re-sent on this event loop (``asend_robust``)."""
        self._loop = asyncio.get_running_loop()
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.to_thread(self.stop)
        self._loop = None

    # ---- the publisher thread -------------------------------------------

    def _publish_loop(self) -> None:
        backoff = _Backoff(self._max_backoff)
        queue = self._queue
        while True:
            with self._queue_lock:
                batch = [queue.popleft() for _ in range(min(len(queue), _BATCH))]
            if not batch:
                if not self._running:
                    return
                self._idle = True
                if not queue and self._running:
                    self._wake.wait()
                self._wake.clear()
                self._idle = False
                continue
            try:
                self._transport.publish(batch)
            except Exception as exc:  # noqa: BLE001 - any failure: keep the batch, retry later
                with self._queue_lock:
                    queue.extendleft(reversed(batch))
                self._lost("publisher", exc, publishing=True)
                if not self._is_running():
                    return
                self._stopped.wait(backoff.next())
                continue
            backoff.reset()
            with self._progress:
                counters = self._counters
                counters.published += len(batch)
                if not counters.publishing:
                    counters.publishing = True
                    logger.info("%r publishes again.", self)
                self._progress.notify_all()

    # ---- the listener thread --------------------------------------------

    def _listen_loop(self) -> None:
        backoff = _Backoff(self._max_backoff)
        self._listen_backoff = backoff
        while self._is_running():
            if self._listen_once():
                self._stopped.wait(backoff.next())
                with self._counters.lock:
                    self._counters.state = "connecting"

    def _listen_once(self) -> bool:
        """Listen until stopped (False) or the connection is lost (True)."""
        try:
            self._transport.listen(self._is_running, self._on_subscribed, self._deliver)
        except Exception as exc:  # noqa: BLE001 - connection loss: reconnect with backoff
            if not self._is_running():
                return False
            self._lost("listener", exc, publishing=False)
            return True
        return False

    def _is_running(self) -> bool:
        return self._running

    def _lost(self, who: str, exc: Exception, *, publishing: bool) -> None:
        counters = self._counters
        with counters.lock:
            # Once per loss, not per failed attempt: the listener sets "connecting" before each retry.
            first = counters.publishing if publishing else not self._listener_lost
            if not publishing:
                self._listener_lost = True
            counters.last_error = f"{type(exc).__name__}: {exc}"
            if first:
                counters.reconnects += 1
            if publishing:
                counters.publishing = False
            else:
                counters.state = "disconnected"
        if first:
            logger.warning("%r: %s lost its connection (%s); retrying with backoff.", self, who, exc)

    def _on_subscribed(self, reason: str | None) -> None:
        with self._counters.lock:
            self._listener_lost = False
            self._counters.state = "connected"
            if reason is not None:
                self._counters.gaps += 1
        self._listen_backoff.reset()
        if reason is not None:  # before start() returns: its receivers have run by then (sync mode)
            self._resend(self.gap, self, {"reason": reason}, None)
        self._subscribed.set()

    def _deliver(self, data: bytes) -> None:
        counters = self._counters
        counters.received += 1  # only this thread writes it
        envelope = unpack(data, self.secret)
        if isinstance(envelope, str):
            counters.drop(envelope)
            return
        if envelope.origin == self._origin and self._pid == os.getpid():
            return  # our own publication: local receivers ran at send time
        entry = self._shared.get(envelope.name)
        if entry is None:
            counters.drop("unknown")
            return
        signal, _remove, resolver = entry
        if self.sessions is not None:  # a Session per message, closed after the re-send
            resolver = Resolver(resolver.classes, self.sessions)
        try:
            sender, kwargs = _payload.decode(envelope.payload, resolver)
        except Exception as exc:  # noqa: BLE001 - a bad message must not stop the listener
            resolver.close()
            counters.drop("undecodable")
            logger.warning("%r dropped a message of %s: %s", self, envelope.name, exc)
            return
        kwargs["origin"] = Origin(self.url, envelope.origin, envelope.seq, envelope.name)
        counters.delivered += 1
        self._resend(signal, sender, kwargs, resolver)

    def _resend(self, signal: Signal, sender: Any, kwargs: dict[str, Any], resolver: Resolver | None) -> None:
        loop = self._loop
        if loop is not None:
            asyncio.run_coroutine_threadsafe(self._aresend(signal, sender, kwargs, resolver), loop)
            return
        try:
            _log_failures(self, signal, signal.send_robust(sender, **kwargs))
        except Exception:  # a broken interceptor: log it, keep listening
            logger.exception("%r: re-sending %r failed", self, signal)
        finally:
            if resolver is not None:
                resolver.close()

    async def _aresend(
        self, signal: Signal, sender: Any, kwargs: dict[str, Any], resolver: Resolver | None
    ) -> None:
        try:
            _log_failures(self, signal, await signal.asend_robust(sender, **kwargs))
        except Exception:
            logger.exception("%r: re-sending %r failed", self, signal)
        finally:
            if resolver is not None:
                resolver.close()


def _is_token(text: object) -> bool:
    """Whether *text* can travel in a message header: printable ASCII without spaces."""
    return isinstance(text, str) and bool(text) and text.isascii() and text.isprintable() and " " not in text


def _is_seconds(value: object) -> bool:
    return type(value) in (int, float) and 0 < value < float("inf")  # type: ignore[operator] # int or float


def _is_signal(signal: object) -> bool:
    return isinstance(signal, Signal)


def _is_secret(secret: object) -> bool:
    return secret is None or (isinstance(secret, (str, bytes)) and bool(secret))


def _sender_classes(signal: Signal, extra: tuple[type, ...]) -> list[type]:
    found = [c.sender for c in signal.connections() if isinstance(c.sender, type)]
    return [*found, *extra]


def _log_failures(bus: Bus, signal: Signal, responses: list[tuple[Any, Any]]) -> None:
    for receiver, result in responses:
        if isinstance(result, Exception):
            logger.error(
                "%r: receiver %r of a remote send of %r raised %s: %s",
                bus,
                receiver,
                signal,
                type(result).__name__,
                result,
                exc_info=result,
            )
