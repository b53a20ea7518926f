"""tocsin.background side by side with a plain INSERT and with huey (`make bench-jobs`).

Four measurements, each in a fresh process where a worker is involved:

1. enqueue cost inside a transaction (SQLite file, Jobs(engine)): a send to a
   background receiver vs a plain single-row INSERT in the same transaction;
2. throughput of no-op jobs, embedded store, one worker (one thread), vs
   huey's SqliteHuey with one worker thread, queues filled beforehand;
3. throughput with 4 worker processes (`tocsin worker --processes 4`) on
   PostgreSQL (a throwaway server from tests/_postgres.py);
4. latency from COMMIT to the receiver starting, idle worker process,
   embedded and PostgreSQL (p50, p99).

Options: --jobs N (throughput jobs, default 5000), --latency N (samples, default 200).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # _postgres


# ---- the receivers a worker process imports (this module, by name) ----------------------------

_app: dict[str, object] = {}


def noop(sender, **kwargs):
    counter = _app.get("counter")
    if counter is not None:
        counter()


def stamp(sender, **kwargs):
    os.write(_app["fd"], f"{time.time()!r}\n".encode())  # type: ignore[arg-type]


def _connect_from_env() -> None:
    import tocsin
    from tocsin.background import Jobs

    url = os.environ["BENCH_JOBS_URL"]
    jobs = Jobs(url, table=os.environ.get("BENCH_TABLE", "tocsin_jobs"))
    signal_noop.connect(noop, via=jobs.later())
    signal_stamp.connect(stamp, via=jobs.later())
    if "BENCH_REPORT" in os.environ:
        _app["fd"] = os.open(os.environ["BENCH_REPORT"], os.O_WRONLY)
    del tocsin


import tocsin  # noqa: E402

signal_noop = tocsin.Signal(name="bench_noop")
signal_stamp = tocsin.Signal(name="bench_stamp")
if os.environ.get("BENCH_JOBS_URL"):
    _connect_from_env()


def _env(url: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["BENCH_JOBS_URL"] = url
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), *filter(None, [env.get("PYTHONPATH")])])
    env.update(extra)
    return env


# ---- 1. enqueue cost -------------------------------------------------------------------------


def bench_enqueue(n: int) -> tuple[float, float]:
    from sqlalchemy import Column, Integer, MetaData, String, Table, create_engine, insert
    from sqlalchemy.orm import Session

    from tocsin.background import Jobs
    from tocsin.sqlalchemy import use_session

    with tempfile.TemporaryDirectory() as tmp:
        engine = create_engine(f"sqlite:///{tmp}/app.db")
        metadata = MetaData()
        plain = Table("plain", metadata, Column("id", Integer, primary_key=True), Column("data", String))
        metadata.create_all(engine)
        jobs = Jobs(engine)
        jobs.store.ensure_schema()
        sig = tocsin.Signal(name="bench_enqueue")
        sig.connect(noop, via=jobs.later())
        try:
            best_send = best_insert = float("inf")
            for _round in range(5):
                with Session(engine) as session, use_session(session):
                    session.begin()
                    start = time.perf_counter()
                    for i in range(n):
                        session.execute(insert(plain), {"data": f"row {i}"})
                    best_insert = min(best_insert, (time.perf_counter() - start) / n)
                    start = time.perf_counter()
                    for i in range(n):
                        sig.send("bench", n=i)
                    best_send = min(best_send, (time.perf_counter() - start) / n)
                    session.rollback()
        finally:
            sig.disconnect(noop)
            jobs.close()
            engine.dispose()
    return best_insert, best_send


# ---- 2. throughput, embedded store vs huey, one worker ------------------------------------------


def child_tocsin_throughput(path: str, n: int) -> None:
    from tocsin.background import Jobs

    jobs = Jobs(f"sqlite:///{path}")
    signal_noop.connect(noop, via=jobs.later())
    for i in range(n):
        signal_noop.send("bench", n=i)
    done = threading.Event()
    count = [0]

    def counter() -> None:
        count[0] += 1
        if count[0] == n:
            done.set()

    _app["counter"] = counter
    worker = jobs.worker(concurrency=1)
    start = time.perf_counter()
    worker.start()
    done.wait()
    elapsed = time.perf_counter() - start
    worker.stop()
    print(n / elapsed)


def child_huey_throughput(path: str, n: int) -> None:
    from huey import SqliteHuey

    huey = SqliteHuey(filename=path, results=False)
    done = threading.Event()
    count = [0]

    @huey.task()
    def task(i: int) -> None:
        count[0] += 1
        if count[0] == n:
            done.set()

    for i in range(n):
        task(i)
    consumer = huey.create_consumer(workers=1, periodic=False, initial_delay=0.001, check_worker_health=False)
    start = time.perf_counter()
    thread = threading.Thread(target=consumer.run, daemon=True)
    thread.start()
    done.wait()
    elapsed = time.perf_counter() - start
    consumer.stop(graceful=True)
    print(n / elapsed)


def run_child(kind: str, n: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            [sys.executable, __file__, "--child", kind, f"{tmp}/q.db", str(n)],
            capture_output=True,
            text=True,
            check=True,
        )
    return float(out.stdout.strip().splitlines()[-1])


# ---- 3. PostgreSQL, 4 processes ---------------------------------------------------------------


def bench_postgresql_processes(url: str, n: int) -> float:
    import bench_jobs as app  # the receivers under the name the workers know them by
    from sqlalchemy import create_engine, text

    from tocsin.background import Jobs

    engine = create_engine(url)
    jobs = Jobs(engine, table="bench_jobs4")
    app.signal_noop.connect(app.noop, via=jobs.later())
    try:
        for i in range(n):
            app.signal_noop.send("bench", n=i)
        count = text("SELECT count(*) FROM bench_jobs4")
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tocsin",
                "worker",
                "--jobs",
                url,
                "--table",
                "bench_jobs4",
                "--import",
                "bench_jobs",
                "--processes",
                "4",
                "--batch",
                "20",
                "--threads",
                "2",
            ],
            env=_env(url, BENCH_TABLE="bench_jobs4"),
            stdout=subprocess.DEVNULL,
        )
        with engine.connect() as conn:
            while conn.execute(count).scalar_one() == n:
                conn.commit()
                time.sleep(0.005)
            start, left = time.perf_counter(), conn.execute(count).scalar_one()
            conn.commit()
            while (remaining := conn.execute(count).scalar_one()) > 0:
                conn.commit()
                time.sleep(0.01)
            elapsed = time.perf_counter() - start
        del remaining
        proc.terminate()
        proc.wait(60)
        return left / elapsed
    finally:
        app.signal_noop.disconnect(app.noop)
        jobs.close()
        engine.dispose()


# ---- 4. latency -------------------------------------------------------------------------------------


def bench_latency(url: str, app_url: str, samples: int, table: str = "tocsin_jobs") -> tuple[float, float]:
    import bench_jobs as app  # the receivers under the name the worker knows them by
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from tocsin.background import Jobs
    from tocsin.sqlalchemy import use_session

    with tempfile.TemporaryDirectory() as tmp:
        fifo = f"{tmp}/report.fifo"
        os.mkfifo(fifo)
        read_fd = os.open(fifo, os.O_RDWR)
        jobs = Jobs(url if url.startswith("sqlite") else create_engine(url), table=table)
        jobs.store.ensure_schema()
        app_engine = create_engine(app_url)
        app.signal_stamp.connect(app.stamp, via=jobs.later())
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tocsin",
                "worker",
                "--jobs",
                url,
                "--table",
                table,
                "--import",
                "bench_jobs",
            ],
            env=_env(url, BENCH_REPORT=fifo, BENCH_TABLE=table),
            stdout=subprocess.DEVNULL,
        )
        reader = os.fdopen(read_fd, "r", buffering=1)
        latencies = []
        try:
            for sample in range(samples + 5):
                time.sleep(random.uniform(0.02, 0.05))
                with Session(app_engine) as session, use_session(session):
                    session.begin()
                    app.signal_stamp.send("bench")
                    committed = time.time()
                    session.commit()
                started = float(reader.readline())
                if sample >= 5:  # the first ones warm the worker up
                    latencies.append(started - committed)
        finally:
            proc.terminate()
            proc.wait(60)
            app.signal_stamp.disconnect(app.stamp)
            jobs.close()
            app_engine.dispose()
    latencies.sort()
    return statistics.median(latencies), latencies[int(len(latencies) * 0.99) - 1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--latency", type=int, default=200)
    parser.add_argument("--child", nargs=3)
    args = parser.parse_args()
    if args.child:
        kind, path, n = args.child
        (child_tocsin_throughput if kind == "tocsin" else child_huey_throughput)(path, int(n))
        return
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    insert_cost, send_cost = bench_enqueue(2000)
    print(
        f"enqueue in a transaction (SQLite file): plain INSERT {insert_cost * 1e6:.1f} us, "
        f"background send {send_cost * 1e6:.1f} us, ratio {send_cost / insert_cost:.2f} (target <= 2)"
    )
    ours = statistics.median(run_child("tocsin", args.jobs) for _ in range(3))
    huey = statistics.median(run_child("huey", args.jobs) for _ in range(3))
    print(
        f"no-op jobs, one worker, SQLite: tocsin {ours:,.0f}/s, "
        f"huey SqliteHuey {huey:,.0f}/s (target >= huey)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        p50, p99 = bench_latency(f"sqlite:///{tmp}/jobs.db", f"sqlite:///{tmp}/app.db", args.latency)
    print(
        f"COMMIT -> receiver start, embedded: p50 {p50 * 1e3:.2f} ms, p99 {p99 * 1e3:.2f} ms (targets 5, 50)"
    )
    from _postgres import PostgresServer, PostgresUnavailableError

    try:
        server = PostgresServer()
        url = server.start()
    except PostgresUnavailableError as exc:
        print(f"PostgreSQL skipped: {exc}")
        return
    try:
        rate = bench_postgresql_processes(url, args.jobs * 4)
        print(f"no-op jobs, 4 worker processes, PostgreSQL: {rate:,.0f}/s (target >= 2,000)")
        p50, p99 = bench_latency(url, url, args.latency, table="bench_latency")
        print(
            f"COMMIT -> receiver start, PostgreSQL: p50 {p50 * 1e3:.2f} ms, "
            f"p99 {p99 * 1e3:.2f} ms (targets 5, 50)"
        )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
