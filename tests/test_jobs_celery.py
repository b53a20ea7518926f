"""Background receivers on Celery: real redis-server, real ``celery worker`` subprocesses.

The test process sends jobs (into a SQLite file, in Session transactions) and
runs the relay; ``celery -A _celery_app worker --pool=solo`` subprocesses run
them and report each run on a FIFO (``test_jobs_workers.Reports``), so tests
wait on events, never on fixed sleeps. Workers and the relay are killed with
SIGKILL for real.

These tests run on the default interpreter only (``make test`` runs the
suite on 4 Pythons on a 2-core machine: the Celery bridge has no
version-specific code, and each worker start costs about a second).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

pytest.importorskip("celery", reason="celery is not installed: pip install 'tocsin[celery]'")

from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

import _celery_app
import _jobs_app
from _redis import RedisServer, RedisUnavailableError
from test_jobs_workers import Reports, _pythonpath
from tocsin.sqlalchemy import use_session

if TYPE_CHECKING:
    from collections.abc import Iterator

TESTS = Path(__file__).resolve().parent

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("TOCSIN_NOT_DEFAULT_PYTHON")),
    reason="the Celery tests run on make test's default interpreter only (make pytest-all sets "
    "TOCSIN_NOT_DEFAULT_PYTHON for the others): real workers are slow to start on the 2-core CI "
    "machine, and the bridge has no version-specific code",
)


def _unavailable(msg: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and redis-server is unavailable: {msg}", pytrace=False)
    pytest.skip(msg)


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    try:
        server = RedisServer()
        server.start()
    except RedisUnavailableError as exc:
        _unavailable(str(exc))
        raise
    try:
        yield server
    finally:
        server.close()


class Setup:
    """One test's broker, store, queue, reports; starts workers and relays."""

    def __init__(
        self,
        tmp_path: Path,
        redis: RedisServer,
        lease: float = 30.0,
        url: str | None = None,
        jobs_options: dict[str, Any] | None = None,
        **env: str,
    ) -> None:
        self.tmp = tmp_path
        self.extra_env = env  # more for the subprocesses, e.g. TOCSIN_CELERY_JOBS with ?timeout=
        self.redis = redis
        self.url = url or f"sqlite:///{tmp_path / 'app.db'}"  # the app's database, the job table in it
        self.queue = f"q{uuid.uuid4().hex[:10]}"
        self.lease = lease
        self.engine = create_engine(self.url)
        self.app, self.jobs = _celery_app.make(
            redis.url, self.engine, self.queue, lease=lease, **(jobs_options or {})
        )
        _jobs_app.connect(self.jobs)
        self.reports = Reports(tmp_path / "reports")
        self.processes: list[subprocess.Popen[bytes]] = []

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            TOCSIN_CELERY_BROKER=self.redis.url,
            TOCSIN_CELERY_JOBS=self.url,
            TOCSIN_CELERY_QUEUE=self.queue,
            TOCSIN_CELERY_LEASE=str(self.lease),
            TOCSIN_TEST_REPORT=str(self.reports.path),
            PYTHONPATH=_pythonpath(env),
        )
        env.update(self.extra_env)
        env.pop("TOCSIN_TEST_JOBS", None)
        return env

    def worker(self, *options: str) -> subprocess.Popen[bytes]:
        argv = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "_celery_app",
            "worker",
            "--pool=solo",
            "-Q",
            self.queue,
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
            "--loglevel=WARNING",
            "-n",
            f"w{len(self.processes)}@%h",
            *options,
        ]
        return self._spawn(argv, f"worker{len(self.processes)}.log")

    def _spawn(self, argv: list[str], log: str) -> subprocess.Popen[bytes]:
        with (self.tmp / log).open("ab") as stderr:
            process = subprocess.Popen(
                argv, cwd=TESTS, env=self.env(), stdout=subprocess.DEVNULL, stderr=stderr
            )
        self.processes.append(process)
        return process

    def relay_process(self) -> subprocess.Popen[bytes]:
        argv = [sys.executable, "-m", "tocsin", "relay", "--jobs", self.url, "--import", "_celery_app"]
        return self._spawn(argv, "relay.log")

    def send(self, n: int, *, sender: str = "record", commit: bool = True) -> None:
        with Session(self.engine) as session, use_session(session):
            session.execute(text("SELECT 1"))
            _jobs_app.work.send(sender=sender, n=n)
            if commit:
                session.commit()
            else:
                session.rollback()

    def send_many(self, numbers: range) -> None:
        with Session(self.engine) as session, use_session(session):
            session.execute(text("SELECT 1"))
            for n in numbers:
                _jobs_app.work.send(sender="record", n=n)
            session.commit()

    def ran(self) -> set[int]:
        return {int(line.split()[1]) for line in self.reports.lines if line.startswith("ran ")}

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait()
        _jobs_app.disconnect()
        self.reports.close()
        self.jobs.close()
        self.engine.dispose()


@pytest.fixture
def setup(tmp_path: Path, redis: RedisServer) -> Iterator[Setup]:
    one = Setup(tmp_path, redis, lease=3.0)
    try:
        yield one
    finally:
        one.close()


@pytest.fixture(params=["sqlite-file", "postgresql"])
def on_each_database(request: pytest.FixtureRequest, tmp_path: Path, redis: RedisServer) -> Iterator[Setup]:
    """The job table in the app's SQLite file or PostgreSQL database (a fresh schema), a 30 s lease.

    The long lease: a worker starved of CPU for the 3 s of the short one would lose its claim and
    see its job sent again (at least once; but these tests count runs).
    """
    from tests.conftest import _fresh_postgres_schema

    schemas = None
    url = None
    if request.param == "postgresql":
        schemas = _fresh_postgres_schema(request.getfixturevalue("postgres_url"))
        url = next(schemas)
    one = Setup(tmp_path, redis, lease=30.0, url=url)
    try:
        yield one
    finally:
        one.close()
        if schemas is not None:
            with contextlib.suppress(StopIteration):
                next(schemas)


def _wait_ran(setup: Setup, expected: set[int], timeout: float = 60) -> None:
    try:
        setup.reports.wait_for(lambda _lines: expected <= setup.ran(), timeout=timeout)
    except pytest.fail.Exception:
        # What a CI log needs to tell a lost job from a slow one: the rows left, the processes' logs.
        missing = sorted(expected - setup.ran())
        rows = [(job.id, job.state, job.attempts, job.run_at, job.last_error) for job in setup.jobs.list()]
        logs = "".join(
            f"\n--- {log.name}:\n{log.read_text(errors='replace')[-3000:]}"
            for log in sorted(setup.tmp.glob("*.log"))
        )
        pytest.fail(
            f"{len(missing)} job(s) not run within {timeout} s: {missing[:20]}; rows left ({len(rows)}): "
            f"{rows[:10]}{logs}",
            pytrace=False,
        )


def test_the_sending_transaction_does_what_the_embedded_store_does(tmp_path: Path) -> None:
    """Jobs(engine, celery=app) costs a send the same statements as Jobs(engine), and no broker round trip
    (its broker is a port nothing listens on)."""
    from sqlalchemy import event

    from tocsin.background import Jobs

    engine = create_engine(f"sqlite:///{tmp_path / 'app.db'}")
    embedded = Jobs(engine)
    _app, on_celery = _celery_app.make("redis://127.0.0.1:9/0", engine, "q")

    def statements(jobs: Jobs) -> list[str]:
        seen: list[str] = []

        def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            seen.append(statement)

        _jobs_app.connect(jobs)
        event.listen(engine, "before_cursor_execute", record)
        try:
            with Session(engine) as session, use_session(session):
                for n in range(3):
                    _jobs_app.work.send(sender="record", n=n)
                session.commit()
        finally:
            event.remove(engine, "before_cursor_execute", record)
            _jobs_app.disconnect()
        return seen

    try:
        first = statements(embedded)
        assert statements(on_celery) == first  # each store's first transaction: CREATE ... IF NOT EXISTS
        assert statements(on_celery) == statements(embedded)
        assert [s.split()[:3] for s in statements(on_celery)] == [["INSERT", "INTO", "tocsin_jobs"]] * 3
        assert len(on_celery.list()) == 15
    finally:
        on_celery.close()
        embedded.close()
        engine.dispose()


def test_commit_runs_rollback_never(on_each_database: Setup) -> None:
    setup = on_each_database
    setup.worker()
    with setup.jobs.start_relay():
        setup.send(1, commit=False)
        setup.send(2)
        setup.send(3, commit=False)
        setup.send(4)
        _wait_ran(setup, {2, 4})
    assert setup.ran() == {2, 4}


def test_an_async_receiver_runs_in_a_celery_worker(setup: Setup) -> None:
    setup.worker()
    with setup.jobs.start_relay():
        setup.send(5, sender="async")
        setup.send(6)
        _wait_ran(setup, {5, 6})
    assert sorted(line.split()[1::3] for line in setup.reports.lines if line.startswith("ran ")) == [
        ["5", "async"],
        ["6"],
    ]


def test_two_thousand_jobs_across_two_workers_none_lost(on_each_database: Setup) -> None:
    setup = on_each_database
    setup.worker()
    setup.worker()
    count = 2000
    with setup.jobs.start_relay():
        for start in range(0, count, 200):
            setup.send_many(range(start, start + 200))
        _wait_ran(setup, set(range(count)), timeout=180)
    runs = [line for line in setup.reports.lines if line.startswith("ran ")]
    assert len(runs) == count  # no worker died: none ran twice
    assert len({line.split()[3] for line in runs}) == 2  # both workers took jobs


def test_a_task_that_cannot_claim_its_job_gives_its_message_back(tmp_path: Path, redis: RedisServer) -> None:
    """The job table is locked past the worker's busy timeout when its message arrives (what lost jobs
    in CI: a worker's first connection met the sender's write transaction): the task must not
    acknowledge the message, which would leave the row `sent` with no message until resend_after."""
    db = tmp_path / "app.db"
    setup = Setup(
        tmp_path, redis, TOCSIN_CELERY_JOBS=f"sqlite:///{db}?timeout=0.2", TOCSIN_CELERY_POSTRUN="1"
    )
    try:
        setup.send(1)
        assert setup.jobs.relay().relay_once() is False
        (job,) = setup.jobs.list()
        assert job.state == "sent"
        lock = sqlite3.connect(db, isolation_level=None)
        try:
            lock.execute("BEGIN IMMEDIATE")  # an application's long write transaction
            lock.execute(f"UPDATE tocsin_jobs SET attempts = attempts WHERE id = '{job.id}'")
            setup.worker()
            setup.reports.wait_for(lambda lines: any(line.startswith("postrun ") for line in lines))
            lock.execute("ROLLBACK")
        finally:
            lock.close()
        _wait_ran(setup, {1}, timeout=30)
        setup.reports.wait_for(lambda lines: f"postrun {job.id} SUCCESS" in lines)  # reported after "ran"
        ends = [line.split()[1:] for line in setup.reports.lines if line.startswith("postrun ")]
        # Given back (once, or again if the next delivery beat the ROLLBACK), then run.
        assert ends[-1] == [job.id, "SUCCESS"]
        assert ends[:-1]
        assert all(end == [job.id, "REJECTED"] for end in ends[:-1])
        assert setup.jobs.list() == []
    finally:
        setup.close()


def test_a_message_the_broker_lost_is_sent_again_after_resend_after(
    tmp_path: Path, redis: RedisServer
) -> None:
    """The safety net of a `sent` row: Redis restarted without persistence (FLUSHALL here) lost the message;
    the relay sends the job again once resend_after passed with no task claiming it."""
    import redis as redis_client

    setup = Setup(tmp_path, redis, jobs_options={"resend_after": 1.0}, TOCSIN_CELERY_POSTRUN="1")
    client = redis_client.Redis.from_url(setup.redis.url)
    try:
        setup.send(1)
        relay = setup.jobs.relay()
        relay.relay_once()
        (job,) = setup.jobs.list()
        assert job.state == "sent"
        assert client.llen(setup.queue) == 1
        client.flushall()  # the broker loses what it held
        setup.worker()
        with setup.jobs.start_relay():
            _wait_ran(setup, {1}, timeout=30)
        setup.reports.wait_for(lambda lines: f"postrun {job.id} SUCCESS" in lines)  # its outcome recorded
        assert setup.jobs.list() == []
    finally:
        client.close()
        setup.close()


def test_sigkill_a_worker_mid_job_redelivers_it(setup: Setup) -> None:
    first = setup.worker()
    with setup.jobs.start_relay():
        setup.send(7, sender="block")
        setup.reports.wait_for(lambda lines: "started 7 1 " + str(first.pid) in lines)
        first.send_signal(signal.SIGKILL)
        first.wait()
        setup.worker()
        # The message comes back after the visibility timeout (3 s here), or the relay sends the job
        # again once its lease (3 s) expired: attempt 2 claims it and finishes.
        lines = setup.reports.wait_for(lambda lines: any(line.startswith("ran 7 2 ") for line in lines))
    assert [line.split()[:3] for line in lines if line.startswith("ran ")] == [["ran", "7", "2"]]


def _relay_killed(setup: Setup, when: str) -> None:
    env_setup = setup.env()
    argv = [sys.executable, "-m", "tocsin", "relay", "--jobs", setup.url, "--import", "_celery_app"]
    env_setup["TOCSIN_CELERY_KILL"] = when
    with (setup.tmp / "relay.log").open("ab") as stderr:
        process = subprocess.run(argv, cwd=TESTS, env=env_setup, stderr=stderr, check=False, timeout=60)
    assert process.returncode == -signal.SIGKILL


@pytest.mark.parametrize("when", ["before", "after"])
def test_relay_killed_around_the_broker_accept(setup: Setup, when: str) -> None:
    import redis as redis_client

    client = redis_client.Redis.from_url(setup.redis.url)
    try:
        for n in range(5):
            setup.send(n)
        _relay_killed(setup, when)
        duplicates = 1 if when == "after" else 0
        assert client.llen(setup.queue) == duplicates  # accepted by the broker before the SIGKILL
        assert {job.state for job in setup.jobs.list()} == {"queued"}  # no row marked: all sent again
        relay = setup.jobs.relay()
        assert relay.relay_once() is False
        assert client.llen(setup.queue) == 5 + duplicates
        assert {job.state for job in setup.jobs.list()} == {"sent"}
        setup.send(99)
        relay.relay_once()
    finally:
        client.close()
    setup.worker()  # one solo worker consumes in order: job 99 runs after every earlier message
    _wait_ran(setup, {*range(5), 99})
    runs = sorted(line.split()[1] for line in setup.reports.lines if line.startswith("ran "))
    assert runs == [*map(str, range(5)), "99"]  # the duplicate message found its job done: ran once


def not_in_the_worker(sender: Any, n: int, job: Any, **kwargs: Any) -> None:
    raise AssertionError("never runs: the worker did not connect it")


def test_a_message_for_an_unregistered_receiver_is_a_dead_letter(setup: Setup) -> None:
    _jobs_app.work.connect(not_in_the_worker, sender="other", via=setup.jobs.later())
    try:
        setup.send(1, sender="other")
        relay = setup.jobs.relay()
        relay.relay_once()
        setup.send(2)
        relay.relay_once()
        setup.worker()
        _wait_ran(setup, {2})  # the solo worker handled job 1's message first
    finally:
        _jobs_app.work.disconnect(not_in_the_worker, sender="other")
    (dead,) = setup.jobs.failed()
    assert dead.receiver.endswith(":not_in_the_worker")
    assert "is not connected to signal" in (dead.last_error or "")


class _Failures(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.seen = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("Relay: handing jobs to Celery failed"):
            self.seen.set()


def test_redis_down_the_relay_retries_and_the_app_keeps_committing(setup: Setup) -> None:
    setup.worker()
    failures = _Failures()
    logger = logging.getLogger("tocsin.background")
    logger.addHandler(failures)
    try:
        with setup.jobs.start_relay():
            setup.send(0)
            _wait_ran(setup, {0})
            setup.redis.stop()
            for n in range(1, 21):
                setup.send(n)  # commits: the broker is not in the sending transaction
            assert failures.seen.wait(30)
            assert {job.state for job in setup.jobs.list()} == {"queued"}
            setup.redis.start()
            _wait_ran(setup, set(range(21)), timeout=120)
    finally:
        logger.removeHandler(failures)


_REFUSED = {
    "prefetch": (
        {"worker_prefetch_multiplier": 4},
        (),
        (
            "a prefetch multiplier of 4 (expected 1: set app.conf.worker_prefetch_multiplier = 1 and do not "
            "pass --prefetch-multiplier;"
        ),
    ),
    "prefetch-option": (
        {},
        ("--prefetch-multiplier=3",),
        "a prefetch multiplier of 3 (expected 1: set app.conf.worker_prefetch_multiplier = 1",
    ),
    "acks-early": (
        {
            "task_annotations": {
                "tocsin.jobs.tocsin_jobs": {"acks_late": False, "reject_on_worker_lost": False}
            }
        },
        (),
        (
            "the task's acks_late=False (expected True: remove what overrides it, e.g. an entry of "
            "app.conf.task_annotations for 'tocsin.jobs.tocsin_jobs' or '*'); "
            "the task's reject_on_worker_lost=False"
        ),
    ),
    "no-json": (
        {"accept_content": ["yaml"]},
        (),
        (
            "accept_content=['yaml'] (expected to include 'json', the only format of tocsin's messages: "
            "add it to app.conf.accept_content)"
        ),
    ),
}


@pytest.mark.parametrize("case", list(_REFUSED))
def test_a_celery_worker_with_settings_that_lose_jobs_refuses_to_start(
    tmp_path: Path, redis: RedisServer, case: str
) -> None:
    settings, options, expected = _REFUSED[case]
    setup = Setup(tmp_path, redis, TOCSIN_CELERY_SETTINGS=json.dumps(settings))
    try:
        setup.send(1)
        setup.jobs.relay().relay_once()
        worker = setup.worker(*options)
        assert worker.wait(60) == 1
        log = (tmp_path / "worker0.log").read_text()
        assert (
            "celery worker refused to start: JobsConfigurationError: Celery app 'tocsin_test' would not run "
            "tocsin jobs at least once, one at a time per worker process: " + expected
        ) in log
        assert [job.state for job in setup.jobs.list()] == ["sent"]  # its message was not consumed
    finally:
        setup.close()


@pytest.mark.parametrize("receiver", ["record", "record_async"])
def test_a_job_run_in_a_celery_worker_reports_to_the_send_that_created_it(
    tmp_path: Path, redis: RedisServer, receiver: str
) -> None:
    """The send's trace context travels in the row (and the message): in the worker, tocsin.otel makes the
    run's span a child of the send's span, in the request's trace, and observe()/trace() see the run as a
    deferred run of a stand-in for that send; for a sync and an ``async def`` receiver."""
    pytest.importorskip("opentelemetry.sdk")
    import base64

    import redis as redis_client
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    import tocsin.otel

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    setup = Setup(tmp_path, redis, TOCSIN_CELERY_OBSERVE="1", TOCSIN_CELERY_POSTRUN="1")
    client = redis_client.Redis.from_url(setup.redis.url)
    try:
        with (
            tocsin.otel.instrument(tracer_provider=provider),
            provider.get_tracer("test").start_as_current_span("request"),
        ):
            setup.send(1, sender="async" if receiver == "record_async" else "record")
        (job,) = setup.jobs.list()
        setup.jobs.relay().relay_once()
        [message] = client.lrange(setup.queue, 0, -1)
        setup.worker()
        # Reported once the task returned: after every observer saw the run's end.
        lines = setup.reports.wait_for(lambda lines: f"postrun {job.id} SUCCESS" in lines)
    finally:
        client.close()
        setup.close()
        provider.shutdown()
    spans = {span.name: span for span in exporter.get_finished_spans()}
    request, send = spans["request"], spans["send work"]
    assert send.parent is not None
    assert send.parent.span_id == request.context.span_id
    trace_id, send_id = f"{request.context.trace_id:032x}", f"{send.context.span_id:016x}"
    flags = f"{send.context.trace_flags:02x}"
    traceparent = f"00-{trace_id}-{send_id}-{flags}"
    # In the message: the task trusts only the row, but Celery-side tools see the trace too.
    _args, kwargs, _embed = json.loads(base64.b64decode(json.loads(message)["body"]))
    assert json.loads(kwargs["origin"]) == {"send": "work", "traceparent": traceparent}
    assert [line.split()[:3] for line in lines if line.startswith("ran ")] == [["ran", "1", "1"]]
    # In the worker: the run's span, the only one it ended, is the send span's child.
    [run] = [json.loads(line.split(" ", 1)[1]) for line in lines if line.startswith("span ")]
    assert run["name"] == f"_jobs_app.{receiver}"
    assert run["attributes"] == {
        "tocsin.signal": "work",
        "tocsin.receiver": f"_jobs_app.{receiver}",
        "tocsin.deferred": True,
    }
    assert (run["trace_id"], run["parent_id"]) == (trace_id, send_id)
    # observe(): a deferred run of a stand-in send carrying what the sender's observers exported.
    deferred = [json.loads(line.split(" ", 1)[1]) for line in lines if line.startswith("deferred ")]
    expected = {
        "receiver": f"_jobs_app.{receiver}",
        "signal": "work",
        "remote": {"send": "work", "traceparent": traceparent},
        "error": None,
    }
    assert deferred == [{"when": "started", **expected}, {"when": "finished", **expected}]
    # trace(): logs the run as a deferred run of the send.
    [logged] = [line for line in lines if line.startswith("trace ")]
    assert logged.startswith(f"trace deferred _jobs_app.{receiver} for work ")
    assert logged.endswith(" ok")
