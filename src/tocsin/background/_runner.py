"""Running one claimed job: find its receiver, rebuild its arguments, call it, judge the outcome.

The worker's security boundary is here. A job row names a signal and a
receiver; the runner looks them up in an *allowlist* built from the live
connections of this process whose policy writes to this store (receivers
connected ``via=`` a ``later()`` of a ``Jobs`` with the same table). A row
naming anything else becomes a dead letter saying so: nothing is imported
because a row says so, and no other callable can be reached. Classes in the
arguments resolve only to senders of those connections and mapped
SQLAlchemy classes.

Outcomes (``_store.Outcome``): ``done``; ``retry`` after an exponential
backoff with jitter while attempts remain; ``dead`` with the last error (or
at once, without calling anything, for a row that cannot run: unknown
receiver, broken payload, a model row that no longer exists, attempts
exhausted by workers that died).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import random
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from tocsin._core import hooks as _hooks
from tocsin._core import receivers as _receivers
from tocsin._core.delivery import DeferredCall

from . import _payload
from ._policy import Later, receiver_name, signal_name
from ._store import Claimed, Outcome

if TYPE_CHECKING:
    from ._jobs import Jobs

__all__ = [
    "Allowlist",
    "JobContext",
    "Prepared",
    "Runner",
    "error_text",
    "origin_json",
    "retry_delay",
    "run_coroutine",
]

logger = logging.getLogger("tocsin.background")

_MAX_ERROR = 8000  # characters of traceback kept in a dead letter


@dataclasses.dataclass(frozen=True)
class JobContext:
    """What a background receiver gets as ``job=``: which job, which attempt.

    Use ``id`` to make the receiver idempotent (a job runs at least once:
    again after a worker dies mid-job, or loses its lease).

    Attributes:
        id: the job id (the ``Deferred.handle`` its send returned).
        attempt: 1 for the first attempt, counted when a worker claims it.
        max_attempts: ``retries + 1``.
        key: the job's ``key=``, or ``None``.
        created_at: when it was sent (``time.time()``).

    .. versionadded:: 0.1
    """

    id: str
    attempt: int
    max_attempts: int
    key: str | None
    created_at: float

    @property
    def last_attempt(self) -> bool:
        """Whether a failure now makes it a dead letter."""
        return self.attempt >= self.max_attempts


def retry_delay(attempt: int, backoff: float, max_backoff: float) -> float:
    """Seconds before retrying after failed *attempt*: exponential, capped, with jitter.

    ``backoff * 2 ** (attempt - 1)``, at most *max_backoff*, then drawn
    uniformly from its upper half so that jobs failing together spread out.
    """
    delay = min(max_backoff, backoff * 2.0 ** min(attempt - 1, 60))
    return delay / 2 + random.random() * delay / 2  # noqa: S311 - jitter, not security


def error_text(exc: BaseException) -> str:
    """An exception with its traceback, as a dead letter keeps it."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return text if len(text) <= _MAX_ERROR else text[: _MAX_ERROR // 2] + "\n...\n" + text[-_MAX_ERROR // 2 :]


class Allowlist:
    """The receivers this process may run for one store, from its live connections."""

    def __init__(self, jobs: Jobs) -> None:
        self.jobs = jobs
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str], tuple[Any, Callable[..., Any]]] = {}
        self._classes: dict[str, type] = {}
        self.refresh()

    def refresh(self) -> None:
        """Scan every live signal's connections again."""
        identity = self.jobs.store.identity
        entries: dict[tuple[str, str], tuple[Any, Callable[..., Any]]] = {}
        classes: dict[str, type] = {}
        for signal in _hooks.live_signals():
            if not _hooks.has_connections(signal):
                continue
            for connection in signal.connections():
                via = connection.via
                if not isinstance(via, Later) or via.jobs.store.identity != identity:
                    continue
                rname, sname = receiver_name(connection.receiver), signal_name(signal)
                if rname is None or sname is None:
                    continue
                entries[sname, rname] = (signal, connection.receiver)
                if isinstance(connection.sender, type) and (cname := _payload.class_name(connection.sender)):
                    classes[cname] = connection.sender
        with self._lock:
            self._entries, self._classes = entries, classes

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[tuple[str, str]]:
        """``(signal, receiver)`` names allowed, sorted."""
        return sorted(self._entries)

    def find(self, signal: str, receiver: str) -> tuple[Any, Callable[..., Any]] | None:
        """The signal and receiver a row names, if allowed (rescanning once on a miss)."""
        found = self._entries.get((signal, receiver))
        if found is None:
            self.refresh()
            found = self._entries.get((signal, receiver))
        return found

    def find_class(self, name: str) -> type | None:
        """A sender class of an allowed connection, or a mapped SQLAlchemy class, by name."""
        found = self._classes.get(name)
        if found is None and sys.modules.get("sqlalchemy.orm") is not None:
            found = _mapped_classes().get(name)
        return found


def _mapped_classes() -> dict[str, type]:
    mapper_module = sys.modules.get("sqlalchemy.orm.mapper")
    found: dict[str, type] = {}
    for registry in list(getattr(mapper_module, "_mapper_registries", {})):
        for mapper in list(registry.mappers):
            name = _payload.class_name(mapper.class_)
            if name is not None:
                found[name] = mapper.class_
    return found


class _Resolver:
    """Rebuilds a job's classes and model instances (``_payload.Resolver``)."""

    def __init__(self, jobs: Jobs, allowlist: Allowlist) -> None:
        self.jobs = jobs
        self.allowlist = allowlist
        self.session: Any = None

    def find_class(self, name: str) -> type:
        found = self.allowlist.find_class(name)
        if found is None:
            msg = (
                f"class {name} is neither a sender of a background receiver connection nor a mapped "
                f"SQLAlchemy class in this worker (classes are never imported because a job names them)"
            )
            raise LookupError(msg)
        return found

    def load_model(self, cls: type, pk: tuple[Any, ...]) -> Any:
        if self.session is None:
            if self.jobs.sessions is None:
                msg = f"{self.jobs!r} has no sessions= to load {cls.__qualname__} rows with"
                raise LookupError(msg)
            self.session = self.jobs.sessions()
        instance = self.session.get(cls, pk if len(pk) > 1 else pk[0])
        if instance is None:
            msg = f"{cls.__module__}.{cls.__qualname__} with primary key {pk!r} no longer exists"
            raise LookupError(msg)
        return instance

    def rebuild_model(self, cls: type, pk: tuple[Any, ...], row: dict[str, Any]) -> Any:
        return _payload.detached_instance(cls, pk, row)


@dataclasses.dataclass
class Prepared:
    """A claimed job ready to call."""

    claimed: Claimed
    call: DeferredCall
    is_async: bool
    session: Any


class Runner:
    """Runs claimed jobs of one ``Jobs`` (sync, or in an event loop with :meth:`arun`)."""

    def __init__(self, jobs: Jobs, allowlist: Allowlist | None = None) -> None:
        self.jobs = jobs
        self.allowlist = allowlist if allowlist is not None else Allowlist(jobs)

    # ---- before the call ---------------------------------------------------

    def prepare(self, claimed: Claimed) -> Prepared | Outcome:
        """Look up and rebuild *claimed*; a dead-letter Outcome if it cannot run."""
        if claimed.attempts > claimed.max_attempts:
            return self._dead(
                claimed,
                f"gave up: attempt {claimed.attempts} of {claimed.max_attempts} was claimed but never "
                f"finished (each time the worker died or lost its lease while running it)",
            )
        found = self.allowlist.find(claimed.signal, claimed.receiver)
        if found is None:
            return self._dead(
                claimed,
                f"receiver {claimed.receiver} is not connected to signal {claimed.signal} via this store's "
                f"later() in this worker (connected: {self._connected()}); import the module that "
                f"connects it (tocsin worker --import MODULE), then retry the job",
            )
        signal, receiver = found
        resolver = _Resolver(self.jobs, self.allowlist)
        try:
            sender, kwargs = _payload.decode(claimed.payload, resolver)
        except (ValueError, LookupError) as exc:
            _close(resolver.session)
            kind = "broken job row" if isinstance(exc, ValueError) else "cannot rebuild the arguments"
            return self._dead(claimed, f"{kind}: {exc}")
        except Exception as exc:  # noqa: BLE001 - e.g. the database is down: try again later
            _close(resolver.session)
            return self._failed(claimed, exc)
        kwargs["job"] = JobContext(
            claimed.id, claimed.attempts, claimed.max_attempts, claimed.job_key, claimed.created_at
        )
        call = DeferredCall(receiver, signal, sender, kwargs)
        return Prepared(claimed, call, _receivers.is_async_receiver(receiver), resolver.session)

    def _connected(self) -> str:
        names = [f"{receiver} on {signal}" for signal, receiver in self.allowlist.names()]
        if len(names) > 5:  # noqa: PLR2004
            names = [*names[:5], f"... {len(names) - 5} more"]
        return ", ".join(names) or "none"

    # ---- the call ----------------------------------------------------------

    def _begin(self, prepared: Prepared) -> DeferredCall:
        call = prepared.call
        if _hooks.receiver_observer is not None:
            call._origin = self.jobs._origin_for_run(prepared.claimed, call)  # noqa: SLF001
        return call

    def run(self, claimed: Claimed) -> Outcome:
        """Run *claimed* in this thread (an async receiver in an event loop of its own)."""
        prepared = self.prepare(claimed)
        if isinstance(prepared, Outcome):
            return prepared
        try:
            with self._session_scope(prepared):
                result = self._begin(prepared)()
                if prepared.is_async:
                    run_coroutine(result)
        except Exception as exc:  # noqa: BLE001 - a receiver's failure is the job's outcome
            return self._failed(claimed, exc)
        return Outcome("done", claimed.id, claimed.attempts)

    async def arun(self, claimed: Claimed) -> Outcome:
        """Run *claimed* in the running event loop (a sync receiver in a thread)."""
        prepared = await asyncio.to_thread(self.prepare, claimed)
        if isinstance(prepared, Outcome):
            return prepared
        try:
            if prepared.is_async:
                with self._session_scope(prepared):
                    await self._begin(prepared)()
            else:
                await asyncio.to_thread(self._run_sync, prepared)
        except Exception as exc:  # noqa: BLE001 - a receiver's failure is the job's outcome
            return self._failed(claimed, exc)
        return Outcome("done", claimed.id, claimed.attempts)

    def _run_sync(self, prepared: Prepared) -> None:
        with self._session_scope(prepared):
            self._begin(prepared)()

    @contextlib.contextmanager
    def _session_scope(self, prepared: Prepared) -> Iterator[None]:
        """The Session that loaded the job's instances: current while it runs, committed if it returns."""
        session = prepared.session
        if session is None:
            yield
            return
        from tocsin.sqlalchemy import use_session  # noqa: PLC0415 - a Session implies SQLAlchemy

        try:
            with use_session(session):
                yield
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    # ---- outcomes ----------------------------------------------------------

    def _failed(self, claimed: Claimed, exc: BaseException) -> Outcome:
        error = error_text(exc)
        if claimed.attempts < claimed.max_attempts:
            delay = retry_delay(claimed.attempts, claimed.backoff, claimed.max_backoff)
            logger.warning(
                "Job %s (%s) failed on attempt %d of %d, retrying in %.1f s: %s",
                claimed.id,
                claimed.receiver,
                claimed.attempts,
                claimed.max_attempts,
                delay,
                _receivers.error_text(exc),
            )
            return Outcome(
                "retry", claimed.id, claimed.attempts, run_at=self.jobs.clock() + delay, error=error
            )
        logger.error(
            "Job %s (%s) failed on its last attempt (%d): dead letter. %s",
            claimed.id,
            claimed.receiver,
            claimed.attempts,
            _receivers.error_text(exc),
        )
        return Outcome("dead", claimed.id, claimed.attempts, error=error)

    def _dead(self, claimed: Claimed, reason: str) -> Outcome:
        logger.error("Job %s (%s): dead letter: %s", claimed.id, claimed.receiver, reason)
        return Outcome("dead", claimed.id, claimed.attempts, error=reason)


def _close(session: Any) -> None:
    if session is not None:
        session.close()


def run_coroutine(awaitable: Any) -> Any:
    async def wait() -> Any:
        return await awaitable

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(wait())
    # Called from inside a running loop (run_pending() in an async test): run it on a thread's loop.
    box: list[Any] = []

    def target() -> None:
        try:
            box.append((True, asyncio.run(wait())))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            box.append((False, exc))

    thread = threading.Thread(target=target, name="tocsin-job")
    thread.start()
    thread.join()
    ok, value = box[0]
    if not ok:
        raise value
    return value


def origin_json(carrier: dict[str, str]) -> str:
    """The ``origin`` column: what ties a job's run to the send that created it."""
    return json.dumps(carrier, separators=(",", ":"))
