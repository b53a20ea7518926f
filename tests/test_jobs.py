"""tocsin.background on the embedded store (a real SQLite file), in one process.

Connect checks, the policy and its payload, run_pending, retries and dead
letters, keys, eager mode, the testing and observing tools, the in-process
worker, and the `tocsin jobs` command. Worker processes: test_jobs_workers.py;
SQLAlchemy transactions: test_jobs_sqlalchemy.py.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import functools
import sqlite3
import subprocess
import sys
import threading
import uuid
from typing import TYPE_CHECKING, Any

import pytest

import tocsin
from tocsin import Deferred
from tocsin._cli import main
from tocsin.background import Jobs, JobsConfigurationError, PayloadError, ReceiverNotNameableError
from tocsin.exceptions import SendArgumentsError
from tocsin.testing import capture, mute

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

work = tocsin.Signal(name="work")
runs: list[dict[str, Any]] = []
ran = threading.Condition()  # notified at every run
gate = threading.Event()


def _ran(sender: Any, kwargs: dict[str, Any]) -> None:
    with ran:
        runs.append({"sender": sender, **kwargs})
        ran.notify_all()


def wait_for_runs(count: int) -> None:
    """Wait until *count* receivers ran (woken by each run, not polling)."""
    with ran:
        assert ran.wait_for(lambda: len(runs) >= count, timeout=10), f"{len(runs)} of {count} jobs ran"


def record(sender, **kwargs):
    _ran(sender, kwargs)


def fail(sender, **kwargs):
    _ran(sender, kwargs)
    msg = f"failed attempt {kwargs['job'].attempt}"
    raise RuntimeError(msg)


async def record_async(sender, **kwargs):
    await asyncio.sleep(0)
    _ran(sender, {"async": True, **kwargs})


def wait_for_gate(sender, **kwargs):
    _ran(sender, kwargs)
    gate.wait(10)


def typed_spec(*, n: int) -> None:
    """A typed signal's arguments."""


typed_work = tocsin.TypedSignal(typed_spec)


class Receivers:
    @classmethod
    def on_work(cls, sender, **kwargs):
        _ran(sender, {"cls": cls, **kwargs})

    def bound(self, sender, **kwargs):
        pass


@pytest.fixture(name="jobs")
def _jobs(tmp_path: Path) -> Iterator[Jobs]:
    runs.clear()
    gate.clear()
    jobs = Jobs(f"sqlite:///{tmp_path / 'jobs.db'}", poll_interval=0.05)
    yield jobs
    for connection in work.connections():
        work.disconnect(connection.receiver, connection.sender)
    jobs.close()


def _closure():
    def inner(**kwargs):
        pass

    return inner


class TestConnect:
    @pytest.mark.parametrize(
        ("make", "why"),
        [
            (lambda: lambda **kw: None, "it is a lambda"),
            (_closure, "it is defined inside a function"),
            (lambda: Receivers().bound, "it is a method bound to an instance"),
            (lambda: functools.partial(record, extra=1), "it is not a function"),
        ],
    )
    def test_refuses_receivers_without_a_name(self, jobs, make, why):
        """Lambdas, closures, instance methods, partials: refused, nothing connected."""
        receiver = make()
        with pytest.raises(ReceiverNotNameableError, match=why):
            work.connect(receiver, via=jobs.later())
        assert work.connections() == []

    def test_refused_by_receiver_decorator_too(self, jobs):
        """@receiver goes through the same check."""
        with pytest.raises(ReceiverNotNameableError):

            @tocsin.receiver(work, via=jobs.later())
            def local(**kwargs):
                pass

        assert work.connections() == []

    def test_refuses_a_nameless_signal(self, jobs):
        """A signal bound nowhere and without name= cannot be found by a worker."""
        nameless = tocsin.Signal()
        with pytest.raises(ReceiverNotNameableError, match="has no name a worker can find"):
            nameless.connect(record, via=jobs.later())
        assert nameless.connections() == []

    def test_accepts_functions_and_classmethods(self, jobs):
        """Module-level functions, async functions and classmethods have names."""
        work.connect(record, via=jobs.later())
        work.connect(record_async, via=jobs.later())
        work.connect(Receivers.on_work, via=jobs.later())
        assert len(work.connections()) == 3

    @pytest.mark.parametrize(
        ("options", "message"),
        [
            ({"retries": -1}, r"^retries= must be an int >= 0"),
            ({"backoff": "1"}, r"^backoff= must be a number of seconds >= 0"),
            ({"key": 3}, r"^key= must be a string, or a function"),
        ],
    )
    def test_bad_options(self, jobs, options, message):
        with pytest.raises(JobsConfigurationError, match=message):
            jobs.later(**options)

    def test_bad_store(self):
        with pytest.raises(JobsConfigurationError, match="in-memory SQLite database cannot be shared"):
            Jobs("sqlite://")
        with pytest.raises(JobsConfigurationError, match=r"^Jobs\(\) takes a database URL"):
            Jobs(42)
        with pytest.raises(JobsConfigurationError, match="plain SQL identifier"):
            Jobs("sqlite:///x.db", table="jobs; drop table x")


class TestSendAndRun:
    def test_send_writes_a_job_and_run_pending_runs_it(self, jobs):
        """send() returns a Deferred holding the job id; the receiver gets job= and the arguments."""
        work.connect(record, via=jobs.later())
        [(receiver, response)] = work.send("shop", order=7)
        assert receiver is record
        assert isinstance(response, Deferred)
        [job] = jobs.list()
        assert (job.id, job.state, job.receiver, job.attempts) == (
            response.handle,
            "queued",
            f"{__name__}:record",
            0,
        )
        assert runs == []
        assert jobs.run_pending() == 1
        [run] = runs
        assert (run["sender"], run["order"], run["signal"]) == ("shop", 7, work)
        assert (run["job"].id, run["job"].attempt, run["job"].max_attempts) == (response.handle, 1, 4)
        assert jobs.list() == []

    def test_arguments_round_trip(self, jobs):
        """Tagged types come back as they were sent; a class, if it is a connection's sender."""
        sent = {
            "when": dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.timezone.utc),
            "day": dt.date(2024, 5, 1),
            "at": dt.time(8, 15),
            "span": dt.timedelta(days=1, seconds=5, microseconds=7),
            "price": decimal.Decimal("10.25"),
            "ref": uuid.UUID(int=5),
            "blob": b"\x00\xff",
            "pair": (1, "a"),
            "tags": {"x", "y"},
            "frozen": frozenset({1}),
            "nested": {"$odd": [1, {"k": (2,)}], 3: None},
            "cls": Receivers,
        }
        work.connect(record, sender=Receivers, via=jobs.later())
        work.send(Receivers, **sent)
        jobs.run_pending()
        [run] = runs
        assert {k: run[k] for k in sent} == sent

    def test_unserialisable_argument_raises_in_the_caller(self, jobs):
        """The error names the argument; nothing is written."""
        work.connect(record, via=jobs.later())
        with pytest.raises(PayloadError, match=r"^argument data\['items'\]\[1\] = <object object at") as info:
            work.send("shop", data={"items": [1, object()]})
        assert info.value.argument == "data['items'][1]"
        assert jobs.list() == []

    def test_job_argument_is_reserved(self, jobs):
        work.connect(record, via=jobs.later())
        with pytest.raises(SendArgumentsError, match="gets job= from its worker"):
            work.send("shop", job=1)
        assert jobs.list() == []

    def test_async_receiver(self, jobs):
        work.connect(record_async, via=jobs.later())
        work.send("shop", n=1)
        assert jobs.run_pending() == 1
        assert runs[0]["async"] is True

    def test_classmethod_receiver(self, jobs):
        work.connect(Receivers.on_work, via=jobs.later())
        work.send("shop")
        jobs.run_pending()
        assert runs[0]["cls"] is Receivers

    def test_delay(self, jobs):
        """A delayed job is not due before its time."""
        now = [1000.0]
        jobs.clock = lambda: now[0]
        work.connect(record, via=jobs.later(delay=60))
        work.send("shop")
        [job] = jobs.list()
        job_run_at = job.run_at
        assert job_run_at is not None
        now[0] = job_run_at - 1
        assert jobs.run_pending() == 0
        now[0] = job_run_at
        assert jobs.run_pending() == 1


class TestFailures:
    def test_retries_then_dead_letter_then_retry(self, jobs):
        """An always-failing receiver: retries, then a dead letter with its error; retry() replays it."""
        work.connect(fail, via=jobs.later(retries=2, backoff=0))
        [(_, deferred)] = work.send("shop")
        assert jobs.run_pending() == 3
        assert [run["job"].attempt for run in runs] == [1, 2, 3]
        [dead] = jobs.failed()
        assert (dead.id, dead.state, dead.attempts, dead.run_at) == (deferred.handle, "failed", 3, None)
        assert dead.last_error is not None
        assert "RuntimeError: failed attempt 3" in dead.last_error
        assert "Traceback" in dead.last_error
        assert jobs.run_pending() == 0  # a dead letter is never claimed
        assert jobs.retry() == 1
        assert jobs.list("queued")[0].attempts == 0
        assert jobs.run_pending() == 3
        assert len(runs) == 6

    def test_backoff_waits(self, jobs):
        """A failed attempt is due again only after its backoff."""
        now = [1000.0]
        jobs.clock = lambda: now[0]
        work.connect(fail, via=jobs.later(retries=1, backoff=10))
        work.send("shop")
        assert jobs.run_pending() == 1
        [job] = jobs.list("queued")
        assert job.run_at is not None
        assert 1005.0 <= job.run_at <= 1010.0  # 10 s, jitter in its upper half
        assert "failed attempt 1" in (job.last_error or "")
        now[0] = job.run_at
        assert jobs.run_pending() == 1
        assert jobs.failed()[0].attempts == 2

    def test_receiver_missing_in_the_worker(self, jobs):
        """A row naming a receiver this process has not connected: a dead letter saying so."""
        work.connect(record, via=jobs.later())
        work.send("shop")
        work.disconnect(record)
        work.connect(fail, via=jobs.later())  # something else is allowed
        assert jobs.run_pending() == 1
        [dead] = jobs.failed()
        assert runs == []
        assert f"receiver {__name__}:record is not connected to signal" in (dead.last_error or "")
        assert "import the module that connects it" in (dead.last_error or "")

    def test_broken_row_is_a_dead_letter_not_a_crash(self, jobs):
        """A payload that is not ours: reported as a dead letter; the next job still runs."""
        work.connect(record, via=jobs.later())
        work.send("shop", n=1)
        work.send("shop", n=2)
        first = jobs.list()[0]
        jobs.store.execute(
            jobs.store._sql("UPDATE {t} SET payload = 'not json' WHERE id = :id"), [{"id": first.id}]
        )
        assert jobs.run_pending() == 2
        assert [run["n"] for run in runs] == [2]
        [dead] = jobs.failed()
        assert dead.id == first.id
        assert (dead.last_error or "").startswith("broken job row: ")

    def test_attempts_counted_at_claim(self, jobs):
        """A job whose worker dies each time (claimed, lease expired) still ends in the dead letters."""
        now = [1000.0]
        jobs.clock = lambda: now[0]
        work.connect(record, via=jobs.later(retries=1))
        work.send("shop")
        for attempt in (1, 2):
            [claimed] = jobs.store.settle_and_claim(
                [], worker=f"dies-{attempt}", limit=1, now=now[0], lease=5
            )
            assert claimed.attempts == attempt
            now[0] += 5  # the lease expires: the "worker" never renewed it
        assert jobs.run_pending() == 1
        assert runs == []
        [dead] = jobs.failed()
        assert "gave up: attempt 3 of 2 was claimed but never finished" in (dead.last_error or "")

    def test_a_lost_claim_is_not_settled_by_its_old_worker(self, jobs):
        """After a reclaim, the first worker's late outcome changes nothing."""
        from tocsin.background._store import Outcome

        now = [1000.0]
        jobs.clock = lambda: now[0]
        work.connect(record, via=jobs.later())
        work.send("shop")
        [first] = jobs.store.settle_and_claim([], worker="a", limit=1, now=now[0], lease=5)
        [second] = jobs.store.settle_and_claim([], worker="b", limit=1, now=now[0] + 6, lease=5)
        assert (first.id, second.attempts) == (second.id, 2)
        jobs.store.settle_and_claim(
            [Outcome("done", first.id, 1)], worker="a", limit=0, now=now[0] + 7, lease=5
        )
        [job] = jobs.list()
        assert (job.state, job.worker, job.attempts) == ("running", "b", 2)


class TestKeys:
    def test_a_queued_job_is_replaced_by_a_send_with_its_key(self, jobs):
        """Last arguments and id win; one job runs."""
        work.connect(record, via=jobs.later(key=lambda n, **kw: f"index:{n % 2}"))
        work.send("shop", n=1, version="old")
        [(_, second)] = work.send("shop", n=3, version="new")
        work.send("shop", n=2, version="other")
        assert sorted(job.key for job in jobs.list()) == ["index:0", "index:1"]
        assert jobs.get(second.handle) is not None
        assert jobs.run_pending() == 2
        assert sorted((run["n"], run["version"]) for run in runs) == [(2, "other"), (3, "new")]
        assert runs[0]["job"].key in {"index:0", "index:1"}

    def test_keys_are_per_receiver(self, jobs):
        work.connect(record, via=jobs.later(key="same"))
        work.connect(record_async, via=jobs.later(key="same"))
        work.send("shop")
        assert len(jobs.list()) == 2

    def test_a_running_job_is_not_replaced(self, jobs):
        """A send while the keyed job runs queues a new one, which runs after it."""
        work.connect(record, via=jobs.later(key="k"))
        work.send("shop", n=1)
        [claimed] = jobs.store.settle_and_claim([], worker="w", limit=1, now=jobs.clock(), lease=30)
        work.send("shop", n=2)
        assert sorted(job.state for job in jobs.list()) == ["queued", "running"]
        assert jobs.run_pending() == 1
        assert [run["n"] for run in runs] == [2]
        assert claimed.id != runs[0]["job"].id

    def test_a_failed_keyed_job_is_superseded_by_a_newer_one(self, jobs):
        """A retry is dropped when a newer job with its key is queued: that one does the work."""
        from tocsin.background._store import Outcome

        work.connect(record, via=jobs.later(key="k"))
        work.send("shop", n=1)
        [claimed] = jobs.store.settle_and_claim([], worker="w", limit=1, now=jobs.clock(), lease=30)
        work.send("shop", n=2)
        retry = Outcome("retry", claimed.id, claimed.attempts, run_at=jobs.clock(), error="boom")
        jobs.store.settle_and_claim([retry], worker="w", limit=0, now=jobs.clock(), lease=30)
        [job] = jobs.list()
        assert job.id != claimed.id
        assert job.state == "queued"

    def test_key_function_must_return_a_string(self, jobs):
        work.connect(record, via=jobs.later(key=lambda **kw: object()))
        with pytest.raises(JobsConfigurationError, match="must return a string"):
            work.send("shop")
        assert jobs.list() == []


class TestTestingTools:
    def test_eager_runs_at_send(self, tmp_path):
        jobs = Jobs(f"sqlite:///{tmp_path / 'eager.db'}", eager=True)
        runs.clear()
        try:
            work.connect(record, via=jobs.later())
            [(_, deferred)] = work.send("shop", n=1)
            assert runs[0]["n"] == 1
            assert runs[0]["job"].id == deferred.handle
            assert jobs.list() == []
            with pytest.raises(PayloadError):  # the same checks as a real send
                work.send("shop", n=object())
        finally:
            work.disconnect(record)
            jobs.close()

    def test_eager_propagates_errors(self, tmp_path):
        jobs = Jobs(f"sqlite:///{tmp_path / 'eager.db'}", eager=True)
        try:
            work.connect(fail, via=jobs.later())
            with pytest.raises(RuntimeError, match="failed attempt 1"):
                work.send("shop")
        finally:
            work.disconnect(fail)
            jobs.close()

    def test_capture_shows_the_jobs(self, jobs):
        work.connect(record, via=jobs.later())
        with capture(work) as sent:
            work.send("shop", n=1)
        [entry] = sent
        [deferred] = entry.results
        assert isinstance(deferred, Deferred)
        assert jobs.get(deferred.handle) is not None

    def test_mute_writes_no_job(self, jobs):
        work.connect(record, via=jobs.later())
        with mute(record):
            assert work.send("shop") == []
        assert jobs.list() == []

    def test_typed_signal(self, jobs):
        typed_work.connect(record, via=jobs.later())
        try:
            typed_work.send("shop", n=5)
            assert jobs.list()[0].signal == f"{__name__}:typed_work"
            jobs.run_pending()
        finally:
            typed_work.disconnect(record)
        assert runs[0]["n"] == 5


class TestObservability:
    def test_trace_shows_the_run_as_a_deferred_event_of_the_send(self, jobs):
        work.connect(record, via=jobs.later())
        with tocsin.trace(level=None) as tracer:
            work.send("shop")
            jobs.run_pending()
        [send] = tracer.sends
        [run] = send.deferred
        assert run.receiver is record
        assert run.error is None

    def test_a_run_in_another_process_gets_a_stand_in_send(self, jobs):
        """Without the sending process's memory, the row's origin ties the run to a remote send."""
        work.connect(record, via=jobs.later())
        with tocsin.trace(level=None):
            work.send("shop")
        [(origin,)] = jobs.store.query(jobs.store._sql("SELECT origin FROM {t}"), {})
        assert origin == '{"send":"work"}'
        jobs._origins.clear()  # as in another process
        seen = []

        class Deferreds(tocsin.Observer):
            def deferred_started(self, event):
                seen.append(event)

        with tocsin.observe(Deferreds()):
            jobs.run_pending()
        [event] = seen
        assert event.receiver is record
        assert event.send.remote == {"send": "work"}
        assert event.send.signal is work


class TestOpenTelemetry:
    def test_a_job_run_elsewhere_is_a_child_of_the_send_span(self, jobs):
        """The send's traceparent travels in the row: the run's span is its child in another process."""
        pytest.importorskip("opentelemetry.sdk")
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        import tocsin.otel

        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        work.connect(record, via=jobs.later())
        try:
            with tocsin.otel.instrument(tracer_provider=provider):
                work.send("shop")
                jobs._origins.clear()  # as in a worker process: only the row's carrier is left
                jobs.run_pending()
            spans = {span.name: span for span in exporter.get_finished_spans()}
        finally:
            provider.shutdown()
        send, run = spans["send work"], spans[f"{__name__}.record"]
        deferred = [span for span in exporter.get_finished_spans() if span.attributes.get("tocsin.deferred")]
        assert deferred == [run]
        assert run.parent is not None
        assert run.parent.span_id == send.context.span_id
        assert run.context.trace_id == send.context.trace_id


class TestWorker:
    def test_in_process_worker_runs_jobs_as_they_commit(self, jobs):
        work.connect(record, via=jobs.later())
        with jobs.start_worker(concurrency=2):
            for n in range(20):
                work.send("shop", n=n)
            wait_for_runs(20)
        assert sorted(run["n"] for run in runs) == list(range(20))
        assert jobs.list() == []

    def test_asyncio_worker(self, jobs):
        work.connect(record_async, via=jobs.later())
        work.connect(record, via=jobs.later())
        with jobs.start_worker(concurrency=4, use_asyncio=True):
            for n in range(10):
                work.send("shop", n=n)
            wait_for_runs(20)
        assert sum(1 for run in runs if run.get("async")) == 10

    def test_stop_gives_back_unstarted_jobs(self, jobs):
        """Graceful stop: the running job finishes, claimed-but-unstarted ones are released uncounted."""
        work.connect(wait_for_gate, via=jobs.later())
        worker = jobs.worker(concurrency=1, batch=1, grace=10)
        work.send("shop", n=1)
        work.send("shop", n=2)
        worker.start()
        wait_for_runs(1)
        stopper = threading.Thread(target=worker.stop)
        stopper.start()
        gate.set()
        stopper.join()
        [left] = jobs.list()
        assert (left.state, left.attempts) == ("queued", 0)


class TestSQLiteFile:
    def test_a_file_in_rollback_journal_mode_being_written_is_switched_to_wal(self, tmp_path):
        """A worker's first connection to a file the app is writing (SQLAlchemy leaves it in rollback-journal
        mode) waits for the write to end: SQLite fails the WAL switch at once, without its busy timeout."""
        from tocsin.background._sqlite_store import SQLiteStore

        path = tmp_path / "app.db"
        app = sqlite3.connect(path, isolation_level=None)
        app.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY)")
        app.execute("BEGIN IMMEDIATE")  # the application's write transaction
        app.execute("INSERT INTO orders VALUES (1)")
        waits: list[float] = []

        class Store(SQLiteStore):
            def _busy_wait(self, seconds: float) -> None:
                if not waits:
                    app.execute("COMMIT")  # the application commits while the store waits
                waits.append(seconds)
                super()._busy_wait(seconds)

        store = Store(f"sqlite:///{path}", table="tocsin_jobs")
        try:
            store.ensure_schema()
            assert store.query("PRAGMA journal_mode", {}) == [("wal",)]
            assert store.list() == []
        finally:
            store.close()
            app.close()
        assert len(waits) == 1


class TestWithoutSQLAlchemy:
    def test_the_embedded_store_needs_nothing(self, tmp_path):
        """With SQLAlchemy absent: the embedded store works; Jobs(URL) of a server names the extra."""
        code = f"""
import sys
sys.modules["sqlalchemy"] = None  # as if it were not installed
import tocsin
from tocsin.background import Jobs
sig = tocsin.Signal(name="ping")
ran = []
def pong(sender, job, **kwargs):
    ran.append(job.attempt)
sig.connect(pong, via=(jobs := Jobs({f"sqlite:///{tmp_path / 'j.db'}"!r})).later())
sig.send("x")
print(jobs.run_pending(), ran)
try:
    Jobs("postgresql://localhost/app")
except ImportError as exc:
    print(exc)
jobs.close()
"""
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines() == [
            "1 [1]",
            (
                "Jobs('postgresql://localhost/app') requires SQLAlchemy: pip install 'tocsin[sqlalchemy]' "
                "(the embedded store, Jobs('sqlite:///jobs.db'), needs nothing)"
            ),
        ]


class TestCommand:
    def test_jobs_list_failed_retry_purge(self, jobs, capsys):
        url = f"sqlite:///{jobs.store.path}"
        work.connect(fail, via=jobs.later(retries=0))
        work.send("shop")
        assert main(["jobs", "list", "--jobs", url]) == 0
        out = capsys.readouterr().out
        assert f"queued   {__name__}:fail  attempts=0/1" in out
        assert out.endswith("1 job(s)\n")
        jobs.run_pending()
        assert main(["jobs", "failed", "--jobs", url]) == 0
        out = capsys.readouterr().out
        assert "RuntimeError: failed attempt 1" in out
        assert main(["jobs", "retry", "--jobs", url]) == 0
        assert capsys.readouterr().out == "1 job(s) queued again\n"
        jobs.run_pending()
        assert main(["jobs", "purge", "--jobs", url]) == 1
        assert "pass --all" in capsys.readouterr().err
        assert main(["jobs", "purge", "--all", "--jobs", url]) == 0
        assert capsys.readouterr().out == "1 failed job(s) deleted\n"
        assert jobs.list() == []
