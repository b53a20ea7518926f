"""Background receivers for the worker-process tests (test_jobs_workers.py, test_jobs_sqlalchemy.py).

A worker subprocess imports this module with ``TOCSIN_TEST_JOBS`` set to the
store's URL, which connects the receivers to a ``Jobs`` on it. The test
process calls :func:`connect` with its own ``Jobs`` instead. Receivers
report each run as one line written to the FIFO (or file) named by
``TOCSIN_TEST_REPORT``: writes of less than PIPE_BUF bytes to a pipe are
atomic, so lines from several processes never mix.
"""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any

import tocsin
from tocsin.background import Jobs

work = tocsin.Signal(name="work")

_report_fd: list[int] = []


def report(line: str) -> None:
    if not _report_fd:
        _report_fd.append(os.open(os.environ["TOCSIN_TEST_REPORT"], os.O_WRONLY | os.O_APPEND))
    os.write(_report_fd[0], f"{line}\n".encode())


def record(sender: Any, n: int, job: Any, **kwargs: Any) -> None:
    report(f"ran {n} {job.attempt} {os.getpid()}")


def block_first(sender: Any, n: int, job: Any, **kwargs: Any) -> None:
    """Attempt 1 reports, then blocks until its worker is killed; later attempts finish."""
    report(f"started {n} {job.attempt} {os.getpid()}")
    if job.attempt == 1:
        threading.Event().wait()
    report(f"ran {n} {job.attempt} {os.getpid()}")


async def record_async(sender: Any, n: int, job: Any, **kwargs: Any) -> None:
    """An ``async def`` receiver: reports from inside its event loop."""
    await asyncio.sleep(0)
    report(f"ran {n} {job.attempt} {os.getpid()} async")


def connect(jobs: Jobs, **options: Any) -> None:
    work.connect(record, sender="record", via=jobs.later(**options))
    work.connect(block_first, sender="block", via=jobs.later(**options))
    work.connect(record_async, sender="async", via=jobs.later(**options))


def disconnect() -> None:
    work.disconnect(record, sender="record")
    work.disconnect(block_first, sender="block")
    work.disconnect(record_async, sender="async")


if os.environ.get("TOCSIN_TEST_JOBS"):  # in a worker process
    connect(Jobs(os.environ["TOCSIN_TEST_JOBS"], lease=float(os.environ.get("TOCSIN_TEST_LEASE", "30"))))
