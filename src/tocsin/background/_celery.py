"""Background receivers on Celery: the same job table, a relay, and tocsin's own task.

``Jobs(store, celery=app)`` keeps everything the embedded worker has (the
job row written in the sender's transaction, ``key=``, retries, dead letters,
``tocsin jobs ...``) and runs the jobs in Celery workers instead:

* the **relay** (:class:`Relay`: ``jobs.start_relay()`` in a process, or
  ``tocsin relay``) reads committed, due rows and publishes one message per
  job, ``task_id`` = job id, then marks the row ``sent``, only once the
  broker accepted the message. A crash between the two sends the job again:
  harmless, see below. Woken right after a commit (in-process, PostgreSQL
  ``NOTIFY``, SQLite ``data_version``); polling is the safety net. It also
  sends again what nobody ran: a ``sent`` row not claimed after
  ``resend_after`` seconds, a ``running`` row whose lease expired (its Celery
  worker died), a retry that fell due.
* the **task** (registered on the app as ``tocsin.jobs.<table>``) carries
  the job id and nothing it would trust: it claims the row by id
  (``_sql.CLAIM_ONE``: only one run at a time, attempts counted at claim),
  runs it with the embedded worker's :class:`~._runner.Runner` (the
  allowlist of this process's connections, arguments rebuilt and model
  instances loaded fresh, sync or ``async def``), renews its lease while it
  runs, and records the outcome in the row (deleted, retried by the relay
  later, or a dead letter). A message whose row is gone (finished), running
  elsewhere or not due is acknowledged and ignored: duplicates cost a
  claim, not a run. A claim that fails (the database is down or locked)
  gives the message back to the broker (``Reject(requeue=True)``) instead of
  acknowledging it: a job is never left ``sent`` with no message.

At-least-once needs acknowledgement after the run: the task is declared
``acks_late=True, reject_on_worker_lost=True``, and a Celery worker of an
app whose settings would not run jobs one at a time, at least once
(those two overridden by ``task_annotations``, a prefetch multiplier > 1,
JSON not accepted) refuses to start: it exits with the
:class:`JobsConfigurationError` of ``check_app`` as its message.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import uuid
from typing import TYPE_CHECKING, Any

from . import _sql
from ._errors import JobsConfigurationError
from ._runner import Runner
from ._worker import listen

if TYPE_CHECKING:
    from collections.abc import Iterator

    from ._jobs import Jobs

__all__ = ["Celery", "Relay", "check_app"]

logger = logging.getLogger("tocsin.background")


def check_app(app: Any, task: Any, *, prefetch_multiplier: object = None) -> None:
    """Refuse to run *task* in a worker of *app* whose settings would lose a job or decode unsafely.

    ``acks_late`` and ``reject_on_worker_lost`` are the task's own options
    (set by tocsin, so ``task_acks_late`` does not change them; only
    ``task_annotations`` can); the prefetch multiplier is the worker's
    (*prefetch_multiplier*: ``--prefetch-multiplier``, else
    ``worker_prefetch_multiplier``); ``accept_content`` is the app's.

    Raises:
        JobsConfigurationError: what was expected, what was found, and how to
            fix each.
    """
    wrong = [
        f"the task's {name}={getattr(task, name, None)!r} (expected True: remove what overrides it, "
        f"e.g. an entry of app.conf.task_annotations for {task.name!r} or '*')"
        for name in ("acks_late", "reject_on_worker_lost")
        if getattr(task, name, None) is not True
    ]
    prefetch = (
        app.conf.get("worker_prefetch_multiplier") if prefetch_multiplier is None else prefetch_multiplier
    )
    if prefetch != 1:
        wrong.append(
            f"a prefetch multiplier of {prefetch!r} (expected 1: set app.conf.worker_prefetch_multiplier = 1 "
            f"and do not pass --prefetch-multiplier; a prefetched message waits behind a long job while "
            f"the visibility timeout runs, and dies with its worker)"
        )
    accept = list(app.conf.get("accept_content") or ())
    if "json" not in accept and "application/json" not in accept:
        wrong.append(
            f"accept_content={accept!r} (expected to include 'json', the only format of tocsin's messages: "
            f"add it to app.conf.accept_content)"
        )
    if wrong:
        msg = (
            f"Celery app {app.main!r} would not run tocsin jobs at least once, one at a time per worker "
            f"process: {'; '.join(wrong)}."
        )
        raise JobsConfigurationError(msg)


class Celery:
    """The Celery side of one ``Jobs``: its task on *app*, where messages go."""

    def __init__(self, jobs: Jobs, app: Any, *, queue: str | None, resend_after: float) -> None:
        if not hasattr(app, "send_task") or not hasattr(app, "task"):
            msg = f"Jobs(celery=...) takes a celery.Celery application; got {app!r}."
            raise JobsConfigurationError(msg)
        if queue is not None and (not isinstance(queue, str) or not queue):
            msg = f"Jobs(celery_queue=...) must be a queue name (a non-empty str) or None; got {queue!r}."
            raise JobsConfigurationError(msg)
        if not isinstance(resend_after, (int, float)) or isinstance(resend_after, bool) or resend_after <= 0:
            msg = f"Jobs(resend_after=...) must be a positive number of seconds; got {resend_after!r}."
            raise JobsConfigurationError(msg)
        self.jobs = jobs
        self.app = app
        self.queue = queue
        self.resend_after = float(resend_after)
        self.name = f"tocsin.jobs.{jobs.store.table}"
        if self.name in app.tasks and getattr(app.tasks[self.name], "tocsin_jobs", None) is not None:
            msg = (
                f"Celery app {app.main!r} already runs the jobs of another Jobs on table "
                f"{jobs.store.table!r}: give one of them another table= ."
            )
            raise JobsConfigurationError(msg)
        self._runner: Runner | None = None
        #: Seconds a task waits before giving back a message whose job it could not claim.
        self.requeue_delay = min(1.0, jobs.poll_interval)
        self._pause = threading.Event()  # never set: an interruptible wait
        self._host = f"celery:{socket.gethostname()}:{os.getpid()}"

        def run_job(job_id: object, **message: Any) -> str:
            return self.run(job_id, message)

        run_job.__name__ = run_job.__qualname__ = "run_job"
        self.task = app.task(
            name=self.name,
            acks_late=True,
            reject_on_worker_lost=True,
            serializer="json",
            ignore_result=True,
            shared=False,  # this app's task only: not added to every Celery app created later
        )(run_job)
        self.task.tocsin_jobs = jobs
        from celery import signals  # type: ignore[import-untyped]  # noqa: PLC0415 - only with celery=

        signals.worker_init.connect(self._worker_init, weak=False)

    def _worker_init(self, sender: Any = None, **_kwargs: Any) -> None:
        """A Celery worker of this app is starting: refuse settings that would lose jobs."""
        if getattr(sender, "app", None) is not self.app:
            return
        try:
            check_app(self.app, self.task, prefetch_multiplier=getattr(sender, "prefetch_multiplier", None))
        except JobsConfigurationError as exc:
            # Celery logs and ignores what a signal receiver raises: only leaving the process stops
            # the worker, before it consumes a single message.
            msg = f"celery worker refused to start: {type(exc).__name__}: {exc}"
            raise SystemExit(msg) from exc

    # ---- the relay's side --------------------------------------------------------

    def publish(self, producer: Any, row: tuple[Any, ...]) -> None:
        """Hand one job to the broker; returns once the broker accepted it (raises otherwise)."""
        job_id, _state, _run_at, receiver, signal, origin = row
        self.app.send_task(
            self.name,
            args=[job_id],
            kwargs={"receiver": receiver, "signal": signal, "origin": origin},
            task_id=job_id,
            queue=self.queue,
            producer=producer,
            serializer="json",
            retry=False,
        )

    # ---- the task ---------------------------------------------------------------

    def run(self, job_id: object, message: dict[str, Any]) -> str:
        """Run job *job_id* in this Celery worker; return what became of it (for logs)."""
        if not isinstance(job_id, str):
            logger.error("Celery message for %s with job id %r (not a str): ignored", self.name, job_id)
            return "ignored"
        jobs = self.jobs
        store = jobs.store
        worker = f"{self._host}:{uuid.uuid4().hex[:12]}"
        try:
            claimed = store.claim_one(job_id, worker=worker, now=jobs.clock(), lease=jobs.lease)
        except Exception as exc:
            # Nothing is recorded: acknowledging the message (what Celery does with a task that
            # raises, acks_late or not) would leave the row `sent` until resend_after. Give the
            # message back instead, after a pause so a database that is down is not hammered.
            raise self._requeue(job_id, message, exc) from exc
        if claimed is None:
            logger.info(
                "Job %s (%s): nothing to run (finished, running elsewhere or not due yet)",
                job_id,
                message.get("receiver"),
            )
            return "skipped"
        runner = self._runner
        if runner is None:
            runner = self._runner = Runner(jobs)
        with _renewing(jobs, worker):
            outcome = runner.run(claimed)
        store.settle_and_claim([outcome], worker=worker, limit=0, now=jobs.clock(), lease=jobs.lease)
        if outcome.kind == "retry":
            jobs._wake()  # noqa: SLF001 - a relay in this process sends it when due
        return outcome.kind

    def _requeue(self, job_id: str, message: dict[str, Any], exc: Exception) -> Exception:
        """The ``Reject(requeue=True)`` giving back the message of a job that could not be claimed."""
        from celery.exceptions import Reject  # type: ignore[import-untyped]  # noqa: PLC0415 - celery= imports it

        logger.warning(
            "Job %s (%s): could not claim it (%s: %s); its message goes back to the queue in %s s",
            job_id,
            message.get("receiver"),
            type(exc).__name__,
            exc,
            self.requeue_delay,
        )
        self._pause.wait(self.requeue_delay)
        rejected: Exception = Reject(f"claiming job {job_id} failed: {exc!r}", requeue=True)
        return rejected


@contextlib.contextmanager
def _renewing(jobs: Jobs, worker: str) -> Iterator[None]:
    """Renew *worker*'s lease every third of it while the block runs."""
    stopped = threading.Event()

    def renew() -> None:
        while not stopped.wait(jobs.lease / 3):
            try:
                jobs.store.renew(worker, jobs.clock() + jobs.lease)
            except Exception:  # noqa: PERF203 - one renewal every lease / 3 s
                logger.exception("Celery task %s: lease renewal failed", worker)
        jobs.store.close_thread()

    thread = threading.Thread(target=renew, name="tocsin-lease", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stopped.set()
        thread.join()


class Relay:
    """Hands the committed jobs of a ``Jobs(..., celery=app)`` to Celery.

    Args:
        jobs: the store, with its Celery app.
        batch: most rows read and marked per transaction.

    ``run()`` blocks until ``stop()``; ``start()`` runs it in a daemon thread;
    a context manager too. Several relays on one store are safe (a row sent
    twice runs once, see the module docstring) but pointless. A broker that
    refuses or is down is retried every ``retry_interval`` seconds: rows
    stay queued meanwhile, senders are not affected.

    .. versionadded:: 0.1
    """

    def __init__(self, jobs: Jobs, *, batch: int = 500, retry_interval: float = 0.5) -> None:
        bridge = jobs.celery
        if bridge is None:
            msg = f"{jobs!r} has no Celery app: build it with Jobs(..., celery=app) to relay its jobs."
            raise JobsConfigurationError(msg)
        if type(batch) is not int or batch < 1:
            msg = f"batch must be an int >= 1; got {batch!r}."
            raise JobsConfigurationError(msg)
        self.jobs = jobs
        self.bridge: Celery = bridge
        self.batch = batch
        self.retry_interval = retry_interval
        self.sent = 0
        self._cond = threading.Condition()
        self._woken = False
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def wake(self) -> None:
        """Look for committed jobs now (called at commit, from any thread)."""
        with self._cond:
            self._woken = True
            self._cond.notify()

    def start(self) -> Relay:
        """Run the relay in a daemon thread; return it."""
        self.jobs._workers.add(self)  # noqa: SLF001 - woken from the first commit on
        self._thread = threading.Thread(target=self.run, name="tocsin-relay", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop relaying and wait for ``run()`` to return."""
        self._stopped.set()
        self.wake()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def __enter__(self) -> Relay:  # noqa: PYI034 - Self needs typing_extensions on 3.10
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def run(self) -> None:
        """Relay until ``stop()``."""
        self.jobs._workers.add(self)  # noqa: SLF001 - woken by this process's commits
        listener = threading.Thread(
            target=listen, args=(self.jobs, self._stopped, self.wake, "Relay"), name="tocsin-relay-listen"
        )
        listener.daemon = True
        listener.start()
        try:
            while not self._stopped.is_set():
                try:
                    more = self.relay_once()
                except Exception:
                    logger.exception(
                        "Relay: handing jobs to Celery failed; retrying in %s s", self.retry_interval
                    )
                    self._stopped.wait(self.retry_interval)
                    continue
                if not more:
                    self._wait(self.jobs.poll_interval)
        finally:
            self._stopped.set()
            listener.join()
            self.jobs._workers.discard(self)  # noqa: SLF001
            self.jobs.store.close_thread()

    def _wait(self, timeout: float) -> None:
        with self._cond:
            if not self._woken:
                self._cond.wait(timeout)
            self._woken = False

    def relay_once(self) -> bool:
        """Send one batch of due rows; return whether a full batch was found (more may wait)."""
        jobs, store = self.jobs, self.jobs.store
        with self._cond:
            self._woken = False
        now = jobs.clock()
        rows = store.query(store._sql(_sql.RELAY_DUE), {"now": now, "limit": self.batch})  # noqa: SLF001
        if not rows:
            return False
        sent: list[dict[str, Any]] = []
        try:
            with self.bridge.app.producer_or_acquire() as producer:
                for row in rows:
                    self.bridge.publish(producer, tuple(row))
                    sent.append({"id": row[0], "state": row[1], "run_at": row[2]})
        finally:
            # What the broker accepted is marked even if a later message failed.
            if sent:
                resend_at = jobs.clock() + self.bridge.resend_after
                for params in sent:
                    params["resend_at"] = resend_at
                store.execute(store._sql(_sql.RELAY_SENT), sent)  # noqa: SLF001
                self.sent += len(sent)
        return len(rows) >= self.batch
