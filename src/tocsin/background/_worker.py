"""The worker: claims due jobs under a lease, runs them, records their outcomes.

One worker per process (``tocsin worker`` starts several processes for
``--processes N``), or per thread for an in-process worker
(``Jobs.start_worker()``). Its threads:

* the **main loop** (``run()``): one write transaction per turn records the
  outcomes of finished jobs and claims as many due jobs as there are free
  slots (``Store.settle_and_claim``), then waits for a wake-up, a finished
  job or the poll interval;
* the **runners**: N threads (``threads=N``), or one event loop running up
  to N jobs at once (``use_asyncio=True``: async receivers are awaited,
  sync ones run in the loop's thread pool);
* the **heartbeat**: renews the lease of every job this worker holds, every
  third of the lease, so only a dead or frozen worker loses its jobs;
* the **listener**: turns commits into wake-ups. PostgreSQL: ``LISTEN`` on
  the table's channel (the sender's ``NOTIFY`` is delivered at COMMIT, and
  dropped by ROLLBACK). SQLite: ``PRAGMA data_version`` checked every
  ``wake_interval`` (it changes when another connection commits). In the
  sending process, an enqueue also wakes its workers directly. Polling
  every ``poll_interval`` stays as the safety net: a missed wake-up only
  delays a job.

Shutdown (``stop()``, or SIGTERM/SIGINT under ``tocsin worker``): claim no
more, give back claimed jobs not started yet, let running ones finish for
``grace`` seconds, then give those back too (their attempt counted) and
return.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import socket
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

from ._runner import Runner
from ._sqlalchemy_store import SQLAlchemyStore
from ._sqlite_store import SQLiteStore
from ._store import Claimed, Outcome

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._jobs import Jobs

__all__ = ["Worker", "listen"]

logger = logging.getLogger("tocsin.background")


class Worker:
    """Runs the jobs of one :class:`~tocsin.background.Jobs`.

    Args:
        jobs: the store and its settings (lease, poll interval).
        concurrency: jobs run at once: runner threads, or tasks with
            ``use_asyncio``.
        use_asyncio: run jobs in one event loop instead of threads.
        batch: most jobs claimed per transaction (default: ``concurrency``).
        grace: seconds ``stop()`` lets running jobs finish.

    ``run()`` blocks until ``stop()``; ``start()`` runs it in a daemon
    thread. Also a context manager (``with jobs.start_worker():``).

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        jobs: Jobs,
        *,
        concurrency: int = 1,
        use_asyncio: bool = False,
        batch: int | None = None,
        grace: float = 30.0,
    ) -> None:
        if type(concurrency) is not int or concurrency < 1:
            msg = f"concurrency must be an int >= 1; got {concurrency!r}."
            raise ValueError(msg)
        self.jobs = jobs
        self.concurrency = concurrency
        self.use_asyncio = use_asyncio
        self.batch = batch if batch is not None else concurrency
        self.grace = grace
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.runner = Runner(jobs)
        self._cond = threading.Condition()
        self._done: list[Outcome] = []
        self._inflight = 0
        self._woken = False
        self._stopping = False
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._pending: queue.SimpleQueue[Claimed | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self.processed = 0  # outcomes recorded, for tests and the CLI's report

    # ---- control ------------------------------------------------------------

    def wake(self) -> None:
        """Look for due jobs now (called on commit of a job, from any thread)."""
        with self._cond:
            self._woken = True
            self._cond.notify()

    def start(self) -> Worker:
        """Run the worker in a daemon thread; return it."""
        self._thread = threading.Thread(target=self.run, name=f"tocsin-worker-{self.id}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Stop claiming, finish or give back running jobs, and wait for ``run()`` to return."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout if timeout is not None else self.grace + 10)

    def __enter__(self) -> Worker:  # noqa: PYI034 - Self needs typing_extensions on 3.10
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ---- the main loop ------------------------------------------------------

    def run(self) -> None:
        """Claim and run jobs until :meth:`stop`."""
        self._start_runners()
        helpers = [
            threading.Thread(target=self._heartbeat, name="tocsin-heartbeat", daemon=True),
            threading.Thread(target=self._listen, name="tocsin-listener", daemon=True),
        ]
        for helper in helpers:
            helper.start()
        self.jobs._workers.add(self)  # noqa: SLF001 - in-process wake-ups
        try:
            self._loop_until_stopped()
            self._shutdown()
        finally:
            self.jobs._workers.discard(self)  # noqa: SLF001
            self._stopped.set()
            # When run() returns no thread of this worker uses the store any more
            # (so the caller may close it): the helpers see _stopped at once.
            for helper in helpers:
                helper.join()
            self.jobs.store.close_thread()
            for _ in self._threads:
                self._pending.put(None)
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self._loop.stop)

    def _loop_until_stopped(self) -> None:
        next_poll = 0.0
        poll = self.jobs.poll_interval
        while True:
            with self._cond:
                while not (
                    self._stopping
                    or self._done
                    or (self._inflight < self.concurrency and (self._woken or time.monotonic() >= next_poll))
                ):
                    timeout = next_poll - time.monotonic() if self._inflight < self.concurrency else None
                    self._cond.wait(timeout)
                if self._stopping:
                    return
                outcomes, self._done = self._done, []
                self._woken = False
                limit = min(self.concurrency - self._inflight, self.batch)
            claimed = self._settle_and_claim(outcomes, limit)
            if claimed is None:  # the store failed: try again after a poll interval
                next_poll = time.monotonic() + poll
                continue
            if limit > 0:
                next_poll = 0.0 if len(claimed) == limit else time.monotonic() + poll
            self._dispatch(claimed)

    def _settle_and_claim(self, outcomes: list[Outcome], limit: int) -> list[Claimed] | None:
        try:
            claimed = self.jobs.store.settle_and_claim(
                outcomes, worker=self.id, limit=limit, now=self.jobs.clock(), lease=self.jobs.lease
            )
        except Exception:
            logger.exception(
                "Worker %s: the job store failed; trying again in %s s", self.id, self.jobs.poll_interval
            )
            with self._cond:
                self._done[:0] = outcomes  # recorded next time
            return None
        with self._cond:
            self.processed += len(outcomes)
            self._inflight += len(claimed)
        return claimed

    def _dispatch(self, claimed: list[Claimed]) -> None:
        if self._loop is not None:
            for job in claimed:
                self._loop.call_soon_threadsafe(self._spawn, job)
        else:
            for job in claimed:
                self._pending.put(job)

    def _finished(self, outcome: Outcome) -> None:
        with self._cond:
            self._done.append(outcome)
            self._inflight -= 1
            self._cond.notify()

    def _shutdown(self) -> None:
        # Jobs claimed but not started go back at once, their attempt uncounted.
        released = []
        while True:
            try:
                job = self._pending.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                released.append(Outcome("release", job.id, job.attempts, run_at=self.jobs.clock()))
        deadline = time.monotonic() + self.grace
        with self._cond:
            self._inflight -= len(released)
            while self._inflight > 0 and (remaining := deadline - time.monotonic()) > 0:
                self._cond.wait(remaining)
            outcomes, self._done = [*self._done, *released], []
            running = self._inflight
        if running:
            logger.warning(
                "Worker %s: %d job(s) still running after %s s; giving them back",
                self.id,
                running,
                self.grace,
            )
        try:
            self.jobs.store.settle_and_claim(
                outcomes, worker=self.id, limit=0, now=self.jobs.clock(), lease=0
            )
            if running:
                self.jobs.store.execute(
                    self.jobs.store._sql(  # noqa: SLF001 - the store's own statements
                        "UPDATE {t} SET state = 'queued', run_at = :now, worker = NULL "
                        "WHERE worker = :worker AND state = 'running'"
                    ),
                    [{"now": self.jobs.clock(), "worker": self.id}],
                )
        except Exception:
            logger.exception(
                "Worker %s: could not record the last outcomes (their leases will expire)", self.id
            )

    # ---- runners -------------------------------------------------------------

    def _start_runners(self) -> None:
        if self.use_asyncio:
            ready = threading.Event()

            def loop_thread() -> None:
                loop = asyncio.new_event_loop()
                self._loop = loop
                ready.set()
                try:
                    loop.run_forever()
                finally:
                    loop.run_until_complete(loop.shutdown_default_executor())
                    loop.close()

            thread = threading.Thread(target=loop_thread, name="tocsin-jobs-loop", daemon=True)
            thread.start()
            ready.wait()
            return
        for index in range(self.concurrency):
            thread = threading.Thread(target=self._runner_thread, name=f"tocsin-job-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _runner_thread(self) -> None:
        while True:
            job = self._pending.get()
            if job is None:
                return
            self._finished(self._run_one(job))

    def _run_one(self, job: Claimed) -> Outcome:
        try:
            return self.runner.run(job)
        except BaseException as exc:
            logger.exception("Worker %s: running job %s failed", self.id, job.id)
            return Outcome("retry", job.id, job.attempts, run_at=self.jobs.clock() + 1, error=repr(exc))

    def _spawn(self, job: Claimed) -> None:
        async def run() -> None:
            try:
                outcome = await self.runner.arun(job)
            except BaseException as exc:
                logger.exception("Worker %s: running job %s failed", self.id, job.id)
                outcome = Outcome(
                    "retry", job.id, job.attempts, run_at=self.jobs.clock() + 1, error=repr(exc)
                )
            self._finished(outcome)

        loop = self._loop
        if loop is not None:
            task = loop.create_task(run())
            _tasks.add(task)
            task.add_done_callback(_tasks.discard)

    # ---- heartbeat and wake-ups -----------------------------------------------

    def _heartbeat(self) -> None:
        interval = self.jobs.lease / 3
        while not self._stopped.wait(interval):
            with self._cond:
                holding = self._inflight > 0 or bool(self._done)
            if not holding:
                continue
            try:
                self.jobs.store.renew(self.id, self.jobs.clock() + self.jobs.lease)
            except Exception:
                logger.exception("Worker %s: lease renewal failed", self.id)
        self.jobs.store.close_thread()

    def _listen(self) -> None:
        listen(self.jobs, self._stopped, self.wake, f"Worker {self.id}")


def listen(jobs: Jobs, stopped: threading.Event, wake: Callable[[], None], who: str) -> None:
    """Call *wake* when another process commits to *jobs*' store, until *stopped* is set.

    PostgreSQL: ``LISTEN`` on the table's channel; SQLite: ``PRAGMA
    data_version`` every ``wake_interval``. Returns at once for anything else
    (polling only). A failure is logged: the caller's polling goes on.
    """
    store = jobs.store
    try:
        if isinstance(store, SQLAlchemyStore) and store.postgresql:
            _listen_postgresql(store, stopped, wake)
        elif isinstance(store, SQLiteStore):
            _watch_sqlite(store, jobs.wake_interval, stopped, wake)
    except Exception:
        if not stopped.is_set():
            logger.exception("%s: wake-ups failed; polling every %s s", who, jobs.poll_interval)


def _watch_sqlite(
    store: SQLiteStore, interval: float, stopped: threading.Event, wake: Callable[[], None]
) -> None:
    version = store.data_version()
    while not stopped.wait(interval):
        now = store.data_version()
        if now != version:
            version = now
            wake()
    store.close_thread()


def _listen_postgresql(store: SQLAlchemyStore, stopped: threading.Event, wake: Callable[[], None]) -> None:
    raw: Any = store.engine.raw_connection()
    try:
        driver = raw.driver_connection
        notifies = getattr(driver, "notifies", None)
        if not callable(notifies):  # psycopg 2, or another driver: polling only
            return
        driver.autocommit = True
        driver.execute(f"LISTEN {store.channel}")
        while not stopped.is_set():
            for _notice in notifies(timeout=0.5, stop_after=1):
                wake()
    finally:
        raw.invalidate()  # a LISTENing connection must not go back to the pool


_tasks: set[asyncio.Task[None]] = set()
