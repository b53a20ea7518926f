"""The embedded job store: a SQLite file through the stdlib ``sqlite3`` module (``Jobs("sqlite:///jobs.db")``).

It opens one ``sqlite3`` connection per thread, in WAL mode with
``synchronous=NORMAL`` (a committed job survives the death of any process;
``?synchronous=full`` in the URL also survives power loss), and runs write
transactions as ``BEGIN IMMEDIATE`` so that two writers queue on the busy
timeout instead of failing on a lock upgrade. Nothing but the standard
library is needed.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from . import _sql
from ._errors import JobsConfigurationError
from ._store import MIN_SQLITE, Claimed, NewJob, Outcome, Store

__all__ = ["SQLiteStore"]


def _sqlite_path(url: str) -> tuple[Path, dict[str, str]]:
    rest = url.removeprefix("sqlite://")
    path, _, query = rest.partition("?")
    path = path.removeprefix("/")
    options = dict(part.split("=", 1) for part in query.split("&") if "=" in part)
    if path in ("", ":memory:"):
        msg = (
            f"Jobs({url!r}): an in-memory SQLite database cannot be shared with a worker; "
            "give a file: Jobs('sqlite:///jobs.db') (relative to the current directory) or "
            "Jobs('sqlite:////absolute/path/jobs.db')."
        )
        raise JobsConfigurationError(msg)
    return Path(path).resolve(), options


class SQLiteStore(Store):
    """The embedded store: a SQLite file through the stdlib ``sqlite3`` module.

    Thread-safe: each thread gets its own connection. After ``os.fork()`` the
    child opens new ones.
    """

    def __init__(self, url: str, *, table: str) -> None:
        if sqlite3.sqlite_version_info < MIN_SQLITE:
            msg = (
                f"tocsin.background needs SQLite >= 3.35 (UPDATE ... RETURNING); this Python's sqlite3 "
                f"module uses SQLite {sqlite3.sqlite_version}. Use a newer Python build, or "
                f"Jobs(engine) on PostgreSQL."
            )
            raise JobsConfigurationError(msg)
        self.path, options = _sqlite_path(url)
        self.synchronous = options.get("synchronous", "normal").upper()
        if self.synchronous not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            msg = f"Jobs({url!r}): synchronous= must be off, normal, full or extra; got {self.synchronous!r}."
            raise JobsConfigurationError(msg)
        self.timeout = float(options.get("timeout", "30"))
        self.table = table
        self.identity = f"sqlite:///{self.path}#{table}"
        self._local = threading.local()
        self._generation = 0  # bumped by close() and at fork: stale thread-locals reopen
        self._open: list[sqlite3.Connection] = []  # closed by close()
        self._lock = threading.Lock()
        self._schema_ready = False
        _stores.add(self)

    def _connection(self) -> sqlite3.Connection:
        local = self._local
        conn: sqlite3.Connection | None = getattr(local, "conn", None)
        if conn is not None and local.generation == self._generation:
            return conn
        conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False)
        try:
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
            if not self._schema_ready:
                self._create_schema(conn)
        except BaseException:
            conn.close()  # the next call starts over, WAL switch included
            raise
        local.conn, local.generation = conn, self._generation
        with self._lock:
            self._open.append(conn)
        return conn

    def _create_schema(self, conn: sqlite3.Connection) -> None:
        if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            self._switch_to_wal(conn)
        with _transaction(conn):
            for statement in _sql.SCHEMA:
                conn.execute(self._sql(statement))
        self._schema_ready = True

    def _switch_to_wal(self, conn: sqlite3.Connection) -> None:
        """``PRAGMA journal_mode=WAL`` (persistent: once per file), waiting up to ``timeout`` for the lock.

        The switch needs the file to itself, and SQLite fails it at once,
        without its busy timeout, while another connection holds a write
        transaction (a file created through SQLAlchemy, in rollback-journal
        mode, that the application is writing to): retry as a busy statement
        would wait.
        """
        deadline = time.monotonic() + self.timeout
        delay = 0.005
        while True:
            try:
                conn.execute("PRAGMA journal_mode=WAL")
            except sqlite3.OperationalError as exc:  # noqa: PERF203 - retried a few times at most
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
                self._busy_wait(min(delay, max(0.0, deadline - time.monotonic())))
                delay = min(delay * 2, 0.1)
            else:
                return

    def _busy_wait(self, seconds: float) -> None:
        """Wait before trying a busy database again."""
        time.sleep(seconds)

    def ensure_schema(self) -> None:
        self._connection()

    def insert(self, job: NewJob) -> None:
        conn = self._connection()
        statement = self._sql(_sql.INSERT_KEYED if job.job_key is not None else _sql.INSERT)
        conn.execute(statement, job.params())  # autocommit: one statement, one transaction

    def settle_and_claim(
        self, outcomes: Sequence[Outcome], *, worker: str, limit: int, now: float, lease: float
    ) -> list[Claimed]:
        conn = self._connection()
        if not outcomes and (
            limit <= 0 or conn.execute(self._sql(_sql.ANY_DUE), {"now": now}).fetchone() is None
        ):
            return []  # nothing to write: no write lock taken
        with _transaction(conn):
            for statement, params in self._settle_statements(outcomes, worker):
                conn.execute(statement, params)
            if limit <= 0:
                return []
            rows = conn.execute(
                self._sql(_sql.CLAIM),
                {"now": now, "lease_until": now + lease, "worker": worker, "limit": limit},
            ).fetchall()
        return [Claimed(*row) for row in rows]

    def renew(self, worker: str, lease_until: float) -> None:
        self._connection().execute(self._sql(_sql.RENEW), {"worker": worker, "lease_until": lease_until})

    def execute(self, statement: str, params: Iterable[dict[str, Any]]) -> int:
        conn = self._connection()
        changed = 0
        with _transaction(conn):
            for one in params:
                changed += conn.execute(statement, one).rowcount
        return changed

    def query(self, statement: str, params: dict[str, Any]) -> list[Sequence[Any]]:
        return list(self._connection().execute(statement, params).fetchall())

    def write(self, statement: str, params: dict[str, Any]) -> list[Sequence[Any]]:
        conn = self._connection()
        with _transaction(conn):
            return list(conn.execute(statement, params).fetchall())

    def data_version(self) -> int:
        """SQLite's ``PRAGMA data_version``: changes when another connection commits."""
        version: int = self._connection().execute("PRAGMA data_version").fetchone()[0]
        return version

    def close(self) -> None:
        with self._lock:
            connections, self._open = self._open, []
            self._generation += 1
        for conn in connections:
            conn.close()

    def close_thread(self) -> None:
        """Close this thread's connection (a thread that ends should)."""
        local = self._local
        conn: sqlite3.Connection | None = getattr(local, "conn", None)
        if conn is None:
            return
        local.conn = None
        with self._lock:
            mine = conn in self._open  # else close() has closed it already
            if mine:
                self._open.remove(conn)
        if mine:
            conn.close()

    def _forked(self) -> None:
        # The parent's connections must not be used (nor closed) in the child.
        self._open = []
        self._lock = threading.Lock()
        self._generation += 1


class _transaction:  # noqa: N801 - used like contextlib's lower-case managers
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on error) on an autocommit connection."""

    __slots__ = ("conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self.conn.execute("COMMIT" if exc_type is None else "ROLLBACK")


_stores: weakref.WeakSet[SQLiteStore] = weakref.WeakSet()


def _after_fork() -> None:
    for store in list(_stores):
        store._forked()  # noqa: SLF001 - this module's own class


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
