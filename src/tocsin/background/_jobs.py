"""``Jobs``: one job store, the policies writing to it, and the ways to run its jobs.

Where a job row is written (``Jobs._enqueue``), decided at each send:

1. The send happens inside a SQLAlchemy Session transaction (the Session of
   the ``instance=`` argument, or the one set by
   ``tocsin.sqlalchemy.use_session``) and the job table lives in that
   Session's database (``Jobs(engine)``): the row is written **on the
   Session's connection**, in its transaction (the transactional outbox).
   COMMIT makes it durable; ROLLBACK, or rolling back a SAVEPOINT it was
   written in, removes it. On PostgreSQL a ``NOTIFY`` in the same
   transaction wakes the workers at COMMIT.
2. Inside a Session transaction, but the job table lives elsewhere (the
   embedded SQLite file): the row, already encoded, is written by an
   ``on_commit`` callback, after COMMIT; ROLLBACK drops it. A crash between
   the COMMIT and that write loses the job: the one at-most-once window.
3. Otherwise: written at once, in a transaction of its own.
"""

from __future__ import annotations

import builtins
import collections
import logging
import sys
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

from ._errors import JobsConfigurationError
from ._policy import KeyFunction, Later
from ._runner import JobContext, Runner, origin_json, run_coroutine
from ._sqlalchemy_store import SQLAlchemyStore, database_identity
from ._store import Job, NewJob, Outcome, Store, open_store
from ._worker import Worker

if TYPE_CHECKING:
    from tocsin._core.delivery import DeferredCall

    from ._celery import Celery, Relay
    from ._store import Claimed

__all__ = ["Jobs"]

logger = logging.getLogger("tocsin.background")

_WOKEN = "tocsin.background.woken"  # Session.info: the transaction already set to wake workers
_SCHEMA = "tocsin.background.schema"  # Session.info[(_SCHEMA, table)]: the transaction that created it
_MAX_ORIGINS = 10_000  # observed sends remembered for in-process runs


class Jobs:
    """A durable job store for background receivers; ``later()`` makes their policy.

    Args:
        store: ``"sqlite:///jobs.db"`` (or a path): the embedded store, a
            SQLite file through the standard library, no server and no
            dependency; a SQLAlchemy ``Engine`` on SQLite or PostgreSQL (the
            application's own database: jobs sent inside its Session
            transactions are written in them); or another SQLAlchemy URL.
            ``tocsin[sqlalchemy]`` is needed for the last two.
        table: the job table's name (created on first use).
        sessions: a ``sessionmaker`` (any callable returning a Session) the
            worker loads sent model instances with; defaults to one on the
            engine for ``Jobs(engine)``. Required to send model instances
            through the embedded store.
        lease: seconds a claimed job stays with its worker without renewal.
            A worker renews the leases of its jobs every ``lease / 3``; a
            job whose worker died runs again once its lease has expired.
        poll_interval: seconds between looks for due jobs when no wake-up
            comes (delayed jobs and retries rely on it, and it covers a
            lost wake-up).
        wake_interval: SQLite: how often an idle worker checks whether
            another process committed (``PRAGMA data_version``); the
            commit-to-start latency of other processes' jobs.
        eager: run receivers at once, in the sending thread, instead of
            writing jobs (for tests; see :meth:`later`).
        celery: a ``celery.Celery`` app: run the jobs in its workers
            instead (``tocsin[celery]``). The job row is still written as
            above; a relay (:meth:`start_relay`, ``tocsin relay``) hands
            committed jobs to the broker, and tocsin's task (registered on
            the app as ``tocsin.jobs.<table>``) runs them. See "Scaling out
            with Celery" in ``docs/background.md``.
        celery_queue: the Celery queue the relay sends to (default: the
            app's default queue).
        resend_after: seconds after which the relay sends a job again if
            no Celery worker has claimed it (a message the broker lost).

    Thread-safe. ``close()`` releases its connections.

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        store: Any,
        *,
        table: str = "tocsin_jobs",
        sessions: Callable[[], Any] | None = None,
        lease: float = 30.0,
        poll_interval: float = 1.0,
        wake_interval: float = 0.002,
        eager: bool = False,
        celery: Any = None,
        celery_queue: str | None = None,
        resend_after: float = 3600.0,
    ) -> None:
        for option, value in (
            ("lease", lease),
            ("poll_interval", poll_interval),
            ("wake_interval", wake_interval),
        ):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                msg = f"Jobs({option}=...) must be a positive number of seconds; got {value!r}."
                raise JobsConfigurationError(msg)
        if sessions is not None and not callable(cast("object", sessions)):
            msg = f"sessions= must be a sessionmaker (a callable returning a Session); got {sessions!r}."
            raise JobsConfigurationError(msg)
        self.store: Store = open_store(store, table=table)
        if sessions is None and isinstance(self.store, SQLAlchemyStore):
            from sqlalchemy.orm import sessionmaker  # noqa: PLC0415 - Jobs(engine) implies SQLAlchemy

            sessions = sessionmaker(self.store.engine)
        self.sessions = sessions
        self.lease = float(lease)
        self.poll_interval = float(poll_interval)
        self.wake_interval = float(wake_interval)
        self.eager = eager
        self.clock: Callable[[], float] = time.time
        self._workers: weakref.WeakSet[Worker | Relay] = weakref.WeakSet()  # woken at commit
        self._origins: collections.OrderedDict[str, object] = collections.OrderedDict()
        self._origins_lock = threading.Lock()
        self._runner: Runner | None = None
        self.celery: Celery | None = None
        if celery is not None:
            from ._celery import Celery  # noqa: PLC0415 - imports celery

            self.celery = Celery(self, celery, queue=celery_queue, resend_after=resend_after)

    def __repr__(self) -> str:
        return f"Jobs({self.store.identity.rsplit('#', 1)[0]!r})"

    # ---- the policy -----------------------------------------------------------

    def later(
        self,
        *,
        retries: int = 3,
        key: str | KeyFunction | None = None,
        backoff: float = 1.0,
        max_backoff: float = 600.0,
        delay: float = 0.0,
    ) -> Later:
        """The delivery policy running a receiver as a job of this store: ``connect(f, via=jobs.later())``.

        ``send()`` then writes a job instead of calling the receiver and
        returns, as that receiver's response, a ``tocsin.Deferred`` whose
        ``handle`` is the job id. The arguments are encoded in the caller
        (JSON, see ``docs/background.md``); one that cannot be raises
        ``PayloadError`` there, and nothing is written. A worker later calls
        ``receiver(signal=..., sender=..., **kwargs, job=JobContext)``.

        Args:
            retries: attempts after the first failed one before the job
                becomes a dead letter (attempts are counted when a worker
                claims the job, so a job that kills its worker counts too).
            key: coalesce pending work: at most one *queued* job per receiver
                and key. A send whose key matches a queued job replaces it:
                the new arguments and job id win, the earlier due time is
                kept. A running job is not affected (the new one runs after
                it). A string, or a function called with the send's
                arguments (``signal=``, ``sender=`` and the named ones)
                returning a string or ``None`` (no key).
            backoff: seconds before the first retry; doubled at each attempt,
                with jitter (each delay is drawn from its upper half).
            max_backoff: the longest delay between attempts.
            delay: seconds after the send before the job is due.

        Raises:
            JobsConfigurationError: an option is out of range.
        """
        return Later(self, retries=retries, key=key, backoff=backoff, max_backoff=max_backoff, delay=delay)

    # ---- writing jobs -----------------------------------------------------------

    def _enqueue(self, job: NewJob, call: DeferredCall) -> None:
        if call._origin is not None:  # noqa: SLF001 - observed: an in-process run reports to this send
            self._remember_origin(job.id, call._origin)  # noqa: SLF001
        session = _session_in_use(call)
        if session is not None and session.in_transaction():
            store = self.store
            if (
                isinstance(store, SQLAlchemyStore)
                and (connection := _outbox_connection(session, store)) is not None
            ):
                if not store._schema_ready:  # noqa: SLF001
                    if store.postgresql:
                        # On a connection of its own, tolerant of a worker creating it at the same time:
                        # in the sender's transaction, that race would abort the application's work.
                        store.ensure_schema()
                    else:  # SQLite: DDL on another connection would wait on ours
                        self._ensure_schema_on(session, connection, store)
                store.insert_on(connection, job)
                self._wake_at_commit(session, connection)
                return
            _on_commit(session, _InsertAfterCommit(self, job))
            return
        self.store.insert(job)
        self._wake()

    def _ensure_schema_on(self, session: Any, connection: Any, store: SQLAlchemyStore) -> None:
        # Once per (innermost) transaction, not once per send: the table is ready for good only
        # when a transaction that created it commits, and until then every send would run the DDL.
        # The innermost one, because a SAVEPOINT rolled back takes the DDL with it.
        transaction = session.get_nested_transaction() or session.get_transaction()
        marker = (_SCHEMA, store.identity)  # per table: several Jobs can share a Session
        if session.info.get(marker) is transaction:
            return
        session.info[marker] = transaction
        store.ensure_schema(connection)
        _on_commit(session, store.schema_committed)  # dropped with a SAVEPOINT rolled back

    def _wake_at_commit(self, session: Any, connection: Any) -> None:
        transaction = session.get_transaction()
        if session.info.get(_WOKEN) is transaction:
            return
        session.info[_WOKEN] = transaction
        store = self.store
        if isinstance(store, SQLAlchemyStore) and store.postgresql:
            store.notify_on(connection)  # delivered at COMMIT, dropped by ROLLBACK
        if self._workers:
            _on_commit(session, self._wake)

    def _wake(self) -> None:
        for worker in list(self._workers):
            worker.wake()

    # ---- observation across the queue ----------------------------------------------

    def _origin_of(self, call: DeferredCall) -> str | None:
        origin = call._origin  # noqa: SLF001 - set by the core while observers are installed
        if origin is None:
            return None
        from tocsin._observability import observe as _observe  # noqa: PLC0415 - only while observing

        carrier = _observe.export_origin(origin)
        return origin_json(carrier)

    def _remember_origin(self, job_id: str, origin: object) -> None:
        with self._origins_lock:
            self._origins[job_id] = origin
            while len(self._origins) > _MAX_ORIGINS:
                self._origins.popitem(last=False)

    def _origin_for_run(self, claimed: Claimed, call: DeferredCall) -> object | None:
        with self._origins_lock:
            origin = self._origins.pop(claimed.id, None)
        if origin is not None or claimed.origin is None:
            return origin
        import json  # noqa: PLC0415

        from tocsin._observability import observe as _observe  # noqa: PLC0415 - only while observing

        try:
            carrier = json.loads(claimed.origin)
        except ValueError:
            return None
        return _observe.remote_send(call.signal, call.sender, call.kwargs, carrier)

    # ---- running jobs here ------------------------------------------------------------

    def _run_eager(self, call: DeferredCall, policy: Later) -> str:
        job = policy.build(call)  # the same checks as a real send: the payload must encode
        if call._origin is not None:  # noqa: SLF001
            self._remember_origin(job.id, call._origin)  # noqa: SLF001
        runner = self._get_runner()
        claimed = _claimed(job)
        prepared = runner.prepare(claimed)
        if isinstance(prepared, Outcome):
            msg = f"eager job {job.id} cannot run: {prepared.error}"
            raise JobsConfigurationError(msg)
        with runner._session_scope(prepared):  # noqa: SLF001 - the runner's steps, without a store
            result = runner._begin(prepared)()  # noqa: SLF001
            if prepared.is_async:
                run_coroutine(result)
        return job.id

    def _get_runner(self) -> Runner:
        runner = self._runner
        if runner is None:
            runner = self._runner = Runner(self)
        else:
            runner.allowlist.refresh()
        return runner

    def run_pending(self, *, limit: int | None = None) -> int:
        """Run every due job in this thread, one at a time, until none is due; return how many ran.

        For tests and scripts: jobs committed so far run now, retries due
        at once (``backoff=0``) too; a failure is recorded as a worker would
        (retry or dead letter), never raised. Jobs claimed by a worker are
        left alone.
        """
        runner = self._get_runner()
        worker = f"run_pending:{id(self):x}"
        ran = 0
        outcomes: list[Any] = []
        while limit is None or ran < limit:
            claimed = self.store.settle_and_claim(
                outcomes, worker=worker, limit=1, now=self.clock(), lease=self.lease
            )
            outcomes = []
            if not claimed:
                break
            for job in claimed:
                outcomes.append(runner.run(job))
                ran += 1
        if outcomes:
            self.store.settle_and_claim(outcomes, worker=worker, limit=0, now=self.clock(), lease=self.lease)
        return ran

    def worker(
        self,
        *,
        concurrency: int = 1,
        use_asyncio: bool = False,
        batch: int | None = None,
        grace: float = 30.0,
    ) -> Worker:
        """A :class:`Worker` for this store (not started: ``run()`` or ``start()`` it)."""
        return Worker(self, concurrency=concurrency, use_asyncio=use_asyncio, batch=batch, grace=grace)

    def start_worker(self, *, concurrency: int = 1, use_asyncio: bool = False, grace: float = 30.0) -> Worker:
        """Start an in-process worker in a daemon thread (development, demos); ``stop()`` it.

        Usable as a context manager: ``with jobs.start_worker(): ...``. It
        runs the receivers connected in this process, woken at once by this
        process's commits.
        """
        return self.worker(concurrency=concurrency, use_asyncio=use_asyncio, grace=grace).start()

    def relay(self, *, batch: int = 500) -> Relay:
        """A relay handing this store's committed jobs to its Celery app (not started).

        Raises:
            JobsConfigurationError: the ``Jobs`` has no ``celery=`` app.
        """
        from ._celery import Relay  # noqa: PLC0415 - imports celery

        return Relay(self, batch=batch)

    def start_relay(self, *, batch: int = 500) -> Relay:
        """Start a relay in a daemon thread of this process; ``stop()`` it (or ``with``).

        In the sending process it is woken by this process's commits at once;
        from other processes by PostgreSQL ``NOTIFY`` or SQLite's
        ``data_version``, with ``poll_interval`` polling as the safety net.
        """
        return self.relay(batch=batch).start()

    # ---- inspecting and replaying ---------------------------------------------------------

    def list(self, state: str | None = None, *, limit: int | None = None) -> builtins.list[Job]:
        """The jobs in *state* (``"queued"``, ``"running"``, ``"failed"``; all if ``None``), oldest first."""
        if state not in (None, "queued", "running", "failed"):
            msg = f"state must be 'queued', 'running', 'failed' or None; got {state!r}."
            raise JobsConfigurationError(msg)
        return self.store.list(state, limit)

    def failed(self, *, limit: int | None = None) -> builtins.list[Job]:
        """The dead letters, oldest first, each with its ``last_error``."""
        return self.store.list("failed", limit)

    def get(self, job_id: str) -> Job | None:
        """The job with this id, or ``None`` (finished jobs are deleted)."""
        found = self.store.list(None, None, ids=[job_id])
        return found[0] if found else None

    def retry(self, ids: Sequence[str] | None = None) -> int:
        """Queue dead letters again (all, or those in *ids*), attempts reset; return how many.

        A dead letter whose key already has a queued job is superseded by it
        (deleted, not counted).
        """
        if ids is None:
            ids = [job.id for job in self.store.list("failed")]
        queued, _superseded = self.store.requeue_failed(list(ids), self.clock())
        if queued:
            self._wake()
        return queued

    def purge(self, ids: Sequence[str] | None = None, *, state: str = "failed") -> int:
        """Delete jobs in *state* (dead letters by default): all, or those in *ids*; return how many."""
        if state not in ("queued", "failed"):
            msg = f"purge() deletes 'failed' (dead letters) or 'queued' jobs; got state={state!r}."
            raise JobsConfigurationError(msg)
        if ids is None:
            ids = [job.id for job in self.store.list(state)]
        return self.store.purge(list(ids), state)

    def close(self) -> None:
        """Close the store's connections (they reopen if the store is used again).

        Stop this process's workers first: a connection closed under a
        running worker would fail its next statement.
        """
        self.store.close()


class _InsertAfterCommit:
    """The on_commit callback writing an encoded job to a separate store."""

    __slots__ = ("job", "jobs")

    def __init__(self, jobs: Jobs, job: NewJob) -> None:
        self.jobs = jobs
        self.job = job

    def __call__(self) -> None:
        try:
            self.jobs.store.insert(self.job)
        except Exception:
            # The transaction is committed: the job is lost. Log it whole.
            logger.exception(
                "Job %s (%s) could not be written after COMMIT and is lost; its row: %r",
                self.job.id,
                self.job.receiver,
                self.job,
            )
            raise
        self.jobs._wake()  # noqa: SLF001 - its own Jobs

    def __repr__(self) -> str:
        return f"<write job {self.job.id} ({self.job.receiver}) after commit>"


def _claimed(job: NewJob) -> Any:
    from ._store import Claimed  # noqa: PLC0415

    return Claimed(
        job.id, job.receiver, job.signal, job.payload, job.job_key, 1, 1, 0.0, 0.0, job.created_at, job.origin
    )


def _session_in_use(call: DeferredCall) -> Any:
    if sys.modules.get("sqlalchemy") is None:  # not in use (or blocked)
        return None
    from tocsin.sqlalchemy._commit import session_in_use  # noqa: PLC0415 - only once SQLAlchemy is in use

    return session_in_use(call.kwargs.get("instance"))


def _outbox_connection(session: Any, store: SQLAlchemyStore) -> Any:
    """The Session's connection if the job table lives in its database, else None."""
    try:
        bind = session.get_bind()
    except Exception:  # noqa: BLE001 - an unbound Session: not ours
        return None
    engine = getattr(bind, "engine", bind)
    if engine is not store.engine and database_identity(engine.url) != store.identity.rsplit("#", 1)[0]:
        return None
    if engine.dialect.is_async:
        from tocsin.sqlalchemy._commit import in_greenlet  # noqa: PLC0415

        if not in_greenlet():  # an AsyncSession used outside its greenlet: write after commit
            return None
    return session.connection()


def _on_commit(session: Any, callback: Callable[[], Any]) -> None:
    from tocsin.sqlalchemy import on_commit  # noqa: PLC0415 - a Session implies SQLAlchemy

    on_commit(callback, session=session, robust=True)


_ = JobContext  # re-exported by the package
