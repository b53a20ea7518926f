"""tocsin.background on Celery (docs/background.md, "Scaling out with Celery"): `make bench-jobs` runs it.

1. the cost of a send in the sending transaction: Jobs(engine) vs Jobs(engine, celery=app);
2. relay throughput: committed jobs handed to a real redis-server (tests/_redis.py), jobs/s;
3. COMMIT -> receiver start through the relay (in the sending process), Redis and one
   `celery worker --pool=solo` subprocess: the receiver writes a line to a FIFO, read here.
"""

from __future__ import annotations

import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent / "tests"
sys.path.insert(0, str(TESTS))

from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

import _celery_app  # noqa: E402
import _jobs_app  # noqa: E402
from _redis import RedisServer  # noqa: E402
from tocsin.background import Jobs  # noqa: E402
from tocsin.sqlalchemy import use_session  # noqa: E402


def send_costs(stores: dict[str, Jobs], engine, n: int = 2000, rounds: int = 7) -> dict[str, float]:
    """Best per-send time of each store, rounds interleaved (each in a transaction rolled back)."""
    best = dict.fromkeys(stores, float("inf"))
    for _round in range(rounds):
        for name, jobs in stores.items():
            _jobs_app.connect(jobs)
            try:
                with Session(engine) as session, use_session(session):
                    session.execute(text("SELECT 1"))
                    start = time.perf_counter()
                    for i in range(n):
                        _jobs_app.work.send(sender="record", n=i)
                    best[name] = min(best[name], (time.perf_counter() - start) / n)
                    session.rollback()
            finally:
                _jobs_app.disconnect()
    return best


def main() -> None:
    redis = RedisServer()
    redis.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            engine = create_engine(f"sqlite:///{tmp}/app.db")
            queue = f"bench{uuid.uuid4().hex[:8]}"
            plain = Jobs(engine)
            _app, jobs = _celery_app.make(redis.url, engine, queue)
            # Both tables ready, as after an application's first commit (until then each transaction
            # also runs the CREATE ... IF NOT EXISTS, once).
            plain.store.ensure_schema()
            jobs.store.ensure_schema()
            costs = send_costs({"embedded": plain, "celery": jobs}, engine)
            print(
                f"send in a transaction (SQLite file): Jobs(engine) {costs['embedded'] * 1e6:.1f} us, "
                f"Jobs(engine, celery=app) {costs['celery'] * 1e6:.1f} us (the same code path and statements)"
            )
            _jobs_app.connect(jobs)
            n = 5000
            with Session(engine) as session, use_session(session):
                for i in range(n):
                    _jobs_app.work.send(sender="record", n=i)
                session.commit()
            relay = jobs.relay(batch=500)
            start = time.perf_counter()
            while relay.relay_once():
                pass
            elapsed = time.perf_counter() - start
            print(
                f"relay into Redis: {relay.sent:,} jobs in {elapsed:.2f} s = "
                f"{relay.sent / elapsed:,.0f} jobs/s"
                " (target >= 1,000)"
            )
            jobs.store.execute("DELETE FROM tocsin_jobs", [{}])
            import redis as redis_client

            client = redis_client.Redis.from_url(redis.url)
            client.delete(queue)
            client.close()
            fifo = f"{tmp}/report"
            os.mkfifo(fifo)
            read_fd = os.open(fifo, os.O_RDWR)
            env = dict(os.environ)
            env.update(
                TOCSIN_CELERY_BROKER=redis.url,
                TOCSIN_CELERY_JOBS=f"sqlite:///{tmp}/app.db",
                TOCSIN_CELERY_QUEUE=queue,
                TOCSIN_TEST_REPORT=fifo,
                PYTHONPATH=os.pathsep.join([str(TESTS), *filter(None, [env.get("PYTHONPATH")])]),
            )
            worker = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "_celery_app",
                    "worker",
                    "--pool=solo",
                    "-Q",
                    queue,
                    "--without-heartbeat",
                    "--without-gossip",
                    "--without-mingle",
                    "--loglevel=WARNING",
                ],
                cwd=TESTS,
                env=env,
                stdout=subprocess.DEVNULL,
            )
            reader = os.fdopen(read_fd, "r", buffering=1)
            latencies = []
            try:
                with jobs.start_relay():
                    for sample in range(105):
                        time.sleep(random.uniform(0.02, 0.05))
                        with Session(engine) as session, use_session(session):
                            session.execute(text("SELECT 1"))
                            _jobs_app.work.send(sender="record", n=sample)
                            committed = time.time()
                            session.commit()
                        reader.readline()
                        if sample >= 5:  # warm-up
                            latencies.append(time.time() - committed)
            finally:
                worker.terminate()
                worker.wait(60)
                _jobs_app.disconnect()
            latencies.sort()
            print(
                f"COMMIT -> receiver start (reported), relay in-process, Redis, 1 solo worker: "
                f"p50 {statistics.median(latencies) * 1e3:.2f} ms, p99 {latencies[98] * 1e3:.2f} ms "
                "(target p50 <= 20)"
            )
            jobs.close()
            plain.close()
            engine.dispose()
    finally:
        redis.close()


if __name__ == "__main__":
    main()
