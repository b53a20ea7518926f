"""Real worker processes (`tocsin worker`) on the embedded store and on PostgreSQL.

Receivers live in tests/_jobs_app.py and report each run as a line on a FIFO
that a reader thread collects, so the tests wait on events, never on fixed
sleeps. Workers are killed with SIGKILL for real.

The stress test runs 2,000 jobs across 4 worker processes by default; set
TOCSIN_STRESS_JOBS=10000 (``make test-stress``) for the 10,000-job version.
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

import _jobs_app
from tocsin.background import Jobs
from tocsin.sqlalchemy import use_session

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

TESTS = Path(__file__).resolve().parent
STRESS_JOBS = int(os.environ.get("TOCSIN_STRESS_JOBS", "2000"))


def _pythonpath(env: dict[str, str]) -> str:
    # Absolute: the workers run in tests/ (PYTHONPATH=src while developing).
    inherited = [str(Path(p).resolve()) for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    return os.pathsep.join([str(TESTS), *inherited])


class Reports:
    """Lines written by receivers in any process, collected as they arrive."""

    def __init__(self, path: Path) -> None:
        os.mkfifo(path)
        self.path = path
        self.lines: list[str] = []
        self._cond = threading.Condition()
        # Opened read-write so the FIFO never reports end of file when a writer dies.
        self._fd = os.open(path, os.O_RDWR)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        buffer = b""
        while True:
            try:
                chunk = os.read(self._fd, 65536)
            except OSError:
                return
            if not chunk or chunk.endswith(b"\x00"):  # see close()
                return
            buffer += chunk
            *complete, buffer = buffer.split(b"\n")
            with self._cond:
                self.lines.extend(line.decode() for line in complete)
                self._cond.notify_all()

    def wait_for(self, condition: Callable[[list[str]], bool], timeout: float = 60) -> list[str]:
        with self._cond:
            if not self._cond.wait_for(lambda: condition(self.lines), timeout=timeout):
                pytest.fail(f"timed out; {len(self.lines)} lines reported, last: {self.lines[-5:]}")
            return list(self.lines)

    def close(self) -> None:
        # Stop the reader before closing its descriptor (a number the next open may reuse).
        os.write(self._fd, b"\x00")
        self._thread.join(10)
        os.close(self._fd)


@pytest.fixture(name="reports")
def _reports(tmp_path: Path) -> Iterator[Reports]:
    reports = Reports(tmp_path / "reports.fifo")
    yield reports
    reports.close()


@pytest.fixture(name="start_worker")
def _start_worker(reports: Reports) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(url: str, *options: str, stdout: int = subprocess.DEVNULL) -> subprocess.Popen[bytes]:
        env = dict(os.environ)
        env["PYTHONPATH"] = _pythonpath(env)
        env["TOCSIN_TEST_JOBS"] = url
        env["TOCSIN_TEST_REPORT"] = str(reports.path)
        process = subprocess.Popen(
            [sys.executable, "-m", "tocsin", "worker", "--jobs", url, "--import", "_jobs_app", *options],
            env=env,
            cwd=TESTS,
            stdout=stdout,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in started:
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(name="store", params=["embedded", "postgresql"])
def _store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Jobs, Any]]:
    """(worker URL, the sending process's Jobs, the app's engine) on each backend."""
    if request.param == "embedded":
        url = f"sqlite:///{tmp_path / 'jobs.db'}"
        app = create_engine(f"sqlite:///{tmp_path / 'app.db'}")
        jobs = Jobs(url, poll_interval=0.2)
    else:
        from tests.conftest import _fresh_postgres_schema

        schemas = _fresh_postgres_schema(request.getfixturevalue("postgres_url"))
        url = next(schemas)
        app = create_engine(url)
        jobs = Jobs(app, poll_interval=0.2)
    jobs.store.ensure_schema()
    _jobs_app.connect(jobs)
    try:
        yield url, jobs, app
    finally:
        _jobs_app.disconnect()
        jobs.close()
        app.dispose()
        if request.param == "postgresql":
            with contextlib.suppress(StopIteration):
                next(schemas)


def ran(lines: list[str]) -> collections.Counter[int]:
    """How many times each job number ran to completion."""
    return collections.Counter(int(line.split()[1]) for line in lines if line.startswith("ran "))


def test_sigkill_mid_job_runs_it_again(store, reports, start_worker):
    """SIGKILL a worker mid-job: the job runs again and finishes; the others are neither lost nor blocked."""
    url, _jobs, _app = store
    first = start_worker(url, "--lease", "1")
    _jobs_app.work.send("block", n=0)
    for n in range(1, 21):
        _jobs_app.work.send("record", n=n)
    lines = reports.wait_for(lambda lines: any(line.startswith("started 0 1 ") for line in lines))
    assert f"started 0 1 {first.pid}" in lines
    first.send_signal(signal.SIGKILL)
    first.wait()
    second = start_worker(url, "--lease", "1")
    lines = reports.wait_for(lambda lines: set(ran(lines)) == set(range(21)))
    assert f"ran 0 2 {second.pid}" in lines  # attempt 2, after the lease expired
    counts = ran(lines)
    assert counts[0] == 1
    assert all(counts[n] == 1 for n in range(1, 21))  # the others: exactly once, none lost
    second.send_signal(signal.SIGTERM)  # a graceful stop records the last outcomes
    assert second.wait(30) == 0
    assert _jobs.list() == []


def _wait_until_ready(
    supervisor: subprocess.Popen[bytes], count: int, timeout: float = 60.0
) -> threading.Thread:
    """Wait for *count* worker processes of *supervisor* to print their start line (they claim after it).

    Returns the thread draining the supervisor's stdout: join it once the supervisor has exited.
    """
    assert supervisor.stdout is not None
    stdout, ready, all_ready = supervisor.stdout, [], threading.Event()

    def read() -> None:  # drains the pipe until the supervisor exits
        for line in stdout:
            if b" running " in line:
                ready.append(line)
                if len(ready) == count:
                    all_ready.set()
        all_ready.set()

    reader = threading.Thread(target=read, name="worker stdout", daemon=True)
    reader.start()
    assert all_ready.wait(timeout), f"{len(ready)} of {count} worker processes started within {timeout} s"
    assert len(ready) == count, f"the supervisor exited after {len(ready)} of {count} workers started"
    return reader


def test_commit_runs_rollback_never_across_four_processes(store, reports, start_worker):
    """STRESS_JOBS jobs sent in transactions, 1 in 5 rolled back, run by 4 worker processes.

    Every committed job runs, exactly once since no worker died; no job of a
    rolled-back transaction (or savepoint) ever runs.
    """
    url, jobs, app = store
    supervisor = start_worker(url, "--processes", "4", "--threads", "2", stdout=subprocess.PIPE)
    reader = _wait_until_ready(supervisor, 4)  # else on a busy machine one process may run everything alone
    committed: set[int] = set()
    rolled_back: set[int] = set()
    per_transaction = 50
    for start in range(0, STRESS_JOBS, per_transaction):
        numbers = range(start, min(start + per_transaction, STRESS_JOBS))
        commit = (start // per_transaction) % 5 != 4
        with Session(app) as session, use_session(session):
            session.begin()
            half = len(numbers) // 2
            for n in numbers[:half]:
                _jobs_app.work.send("record", n=n)
            savepoint = session.begin_nested()
            for n in numbers[half:]:
                _jobs_app.work.send("record", n=n)
            keep_savepoint = n % 3 != 0
            (savepoint.commit if keep_savepoint else savepoint.rollback)()
            if commit:
                session.commit()
                committed.update(numbers if keep_savepoint else numbers[:half])
                rolled_back.update(() if keep_savepoint else numbers[half:])
            else:
                session.rollback()
                rolled_back.update(numbers)
    lines = reports.wait_for(lambda lines: committed <= set(ran(lines)), timeout=120)
    supervisor.send_signal(signal.SIGTERM)  # a graceful stop records the last outcomes
    assert supervisor.wait(30) == 0
    reader.join(10)
    supervisor.stdout.close()  # type: ignore[union-attr] - a pipe, see start_worker(stdout=)
    assert jobs.list() == []  # nothing left that could still run
    counts = ran(lines)
    assert set(counts) == committed
    assert not set(counts) & rolled_back
    duplicates = sum(count - 1 for count in counts.values())
    assert duplicates == 0
    pids = {line.split()[3] for line in lines if line.startswith("ran ")}
    assert len(pids) >= 2  # the work was shared


def test_worker_refuses_to_start_without_receivers(tmp_path):
    """--import of a module that connects nothing to this store: a clear error, exit 1."""
    env = dict(os.environ)
    env["PYTHONPATH"] = _pythonpath(env)
    env.pop("TOCSIN_TEST_JOBS", None)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tocsin",
            "worker",
            "--jobs",
            f"sqlite:///{tmp_path / 'j.db'}",
            "--import",
            "_jobs_app",
        ],
        env=env,
        cwd=TESTS,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "no receiver is connected via a later() of Jobs(" in done.stderr
