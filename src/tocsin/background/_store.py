"""Job stores: the job table on SQLite (stdlib ``sqlite3``) or through SQLAlchemy.

Both backends run the same statements (``_sql``) and the same protocol:

* :meth:`Store.insert`: one job in its own transaction (committed on return);
  ``insert_on(connection, job)`` writes it on a SQLAlchemy connection the
  caller's transaction owns (the transactional outbox).
* :meth:`Store.settle_and_claim`: one write transaction that records the
  outcomes of finished attempts (delete, requeue with backoff, dead letter)
  and claims the next due jobs under a lease.
* :meth:`Store.renew` / :meth:`Store.release`: lease renewal; giving claims
  back on shutdown.

The embedded store opens one ``sqlite3`` connection per thread, in WAL mode
with ``synchronous=NORMAL`` (a committed job survives the death of any
process; ``?synchronous=full`` in the URL also survives power loss), and runs
write transactions as ``BEGIN IMMEDIATE`` so that two writers queue on the
busy timeout instead of failing on a lock upgrade.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import _sql
from ._errors import JobsConfigurationError

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["Claimed", "Job", "NewJob", "Outcome", "SQLAlchemyStore", "SQLiteStore", "Store", "open_store"]

_TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,50}")
_MIN_SQLITE = (3, 35, 0)  # UPDATE ... RETURNING


@dataclasses.dataclass(frozen=True, slots=True)
class NewJob:
    """A job row about to be written (see ``_sql.INSERT``)."""

    id: str
    receiver: str
    signal: str
    payload: str
    job_key: str | None
    max_attempts: int
    backoff: float
    max_backoff: float
    run_at: float
    created_at: float
    origin: str | None

    def params(self) -> dict[str, Any]:
        """The statement's parameters."""
        return {
            "id": self.id,
            "receiver": self.receiver,
            "signal": self.signal,
            "payload": self.payload,
            "job_key": self.job_key,
            "max_attempts": self.max_attempts,
            "backoff": self.backoff,
            "max_backoff": self.max_backoff,
            "run_at": self.run_at,
            "created_at": self.created_at,
            "origin": self.origin,
        }


@dataclasses.dataclass(frozen=True, slots=True)
class Claimed:
    """A job claimed by a worker: ``attempts`` already counts this attempt."""

    id: str
    receiver: str
    signal: str
    payload: str
    job_key: str | None
    attempts: int
    max_attempts: int
    backoff: float
    max_backoff: float
    created_at: float
    origin: str | None


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one claimed attempt.

    ``kind``: ``"done"`` (delete), ``"retry"`` (queued again at ``run_at``),
    ``"dead"`` (a dead letter with ``error``), or ``"release"`` (given back
    unstarted on shutdown: the attempt is not counted).
    """

    kind: str
    id: str
    attempt: int
    run_at: float = 0.0
    error: str | None = None


@dataclasses.dataclass(frozen=True)
class Job:
    """One row of the job table, as ``Jobs.list()`` returns it.

    Attributes:
        id: the job id (``Deferred.handle`` of the send that created it).
        state: ``"queued"``, ``"running"``, ``"failed"`` (a dead letter), or
            ``"sent"`` (handed to Celery, not claimed by a task yet).
        receiver: ``"module:qualname"`` of the receiver.
        signal: the signal's name (``"module:attribute"``).
        key: the ``key=`` it was sent with, or ``None``.
        attempts: attempts claimed so far.
        max_attempts: ``retries + 1``.
        run_at: when it is due (queued) or its lease ends (running), as a
            ``time.time()``; ``None`` for a dead letter.
        created_at: when it was sent (``time.time()``).
        worker: the worker holding it, while running.
        last_error: the last attempt's error (type, message, traceback), if any.
        payload: the JSON arguments.

    .. versionadded:: 0.1
    """

    id: str
    state: str
    receiver: str
    signal: str
    key: str | None
    attempts: int
    max_attempts: int
    run_at: float | None
    created_at: float
    worker: str | None
    last_error: str | None
    payload: str


def _job(row: Sequence[Any]) -> Job:
    ident, state, run_at, receiver, signal, payload, key, attempts, max_attempts, created, worker, error = row
    return Job(
        ident, state, receiver, signal, key, attempts, max_attempts, run_at, created, worker, error, payload
    )


def _outcome_params(outcome: Outcome, worker: str) -> dict[str, Any]:
    return {
        "id": outcome.id,
        "worker": worker,
        "attempt": outcome.attempt,
        "run_at": outcome.run_at,
        "error": outcome.error,
        "undo": 1 if outcome.kind == "release" else 0,
    }


class Store:
    """The operations every backend provides (see the module docstring).

    Attributes:
        identity: what names this store's table across processes: the
            database (without password or driver) and the table name. A
            worker started with ``--jobs URL`` runs the receivers connected
            through policies whose store has the same identity.
        table: the table name.
        postgresql: whether NOTIFY wake-ups and SKIP LOCKED claims apply.
    """

    identity: str
    table: str
    postgresql: bool = False

    def _sql(self, template: str) -> str:
        return template.replace("{t}", self.table)

    def ensure_schema(self) -> None:
        """Create the table and its indexes if missing (idempotent)."""
        raise NotImplementedError

    def insert(self, job: NewJob) -> None:
        """Write *job* in a transaction of its own, committed on return."""
        raise NotImplementedError

    def settle_and_claim(
        self, outcomes: Sequence[Outcome], *, worker: str, limit: int, now: float, lease: float
    ) -> list[Claimed]:
        """Record *outcomes*, then claim up to *limit* due jobs for *worker*, in one transaction."""
        raise NotImplementedError

    def renew(self, worker: str, lease_until: float) -> None:
        """Extend the lease of every job *worker* holds."""
        raise NotImplementedError

    def execute(self, statement: str, params: Iterable[dict[str, Any]]) -> int:
        """Run *statement* once per parameter set in one transaction; return the rows changed."""
        raise NotImplementedError

    def write(self, statement: str, params: dict[str, Any]) -> list[Sequence[Any]]:
        """Run a writing *statement* with ``RETURNING`` in a transaction of its own; return its rows."""
        raise NotImplementedError

    def claim_one(self, job_id: str, *, worker: str, now: float, lease: float) -> Claimed | None:
        """Claim job *job_id* for *worker* if nobody runs it (see ``_sql.CLAIM_ONE``)."""
        params = {"id": job_id, "worker": worker, "now": now, "lease_until": now + lease}
        rows = self.write(self._sql(_sql.CLAIM_ONE), params)
        return Claimed(*rows[0]) if rows else None

    def query(self, statement: str, params: dict[str, Any]) -> list[Sequence[Any]]:
        """Run a read-only *statement*; return its rows."""
        raise NotImplementedError

    def close(self) -> None:
        """Release connections (the store can still be used: they are opened again)."""

    def close_thread(self) -> None:
        """Release this thread's connection, if the backend keeps one per thread."""

    # ---- built on the above ------------------------------------------------

    def list(self, state: str | None = None, limit: int | None = None, ids: Sequence[str] = ()) -> list[Job]:
        """Jobs in *state* (all if ``None``), oldest first; only *ids* if given."""
        sql = self._sql(_sql.LIST)
        clauses: list[str] = []
        params: dict[str, Any] = {}
        if state is not None:
            clauses.append("state = :state")
            params["state"] = state
        if ids:
            names = [f"i{n}" for n in range(len(ids))]
            clauses.append(f"id IN ({', '.join(':' + n for n in names)})")
            params.update(zip(names, ids, strict=True))
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY created_at, id"
        if limit is not None:
            sql += " LIMIT :limit"
            params["limit"] = limit
        return [_job(row) for row in self.query(sql, params)]

    def requeue_failed(self, ids: Sequence[str], now: float) -> tuple[int, int]:
        """Queue dead letters *ids* again; return ``(queued, superseded)``.

        A dead letter whose key already has a queued job is superseded by it
        and deleted instead.
        """
        queued = self.execute(self._sql(_sql.RETRY_FAILED), [{"id": i, "now": now} for i in ids])
        superseded = self.execute(self._sql(_sql.PURGE), [{"id": i, "state": "failed"} for i in ids])
        return queued, superseded

    def purge(self, ids: Sequence[str], state: str) -> int:
        """Delete jobs *ids* that are in *state*; return how many."""
        return self.execute(self._sql(_sql.PURGE), [{"id": i, "state": state} for i in ids])

    def _settle_statements(
        self, outcomes: Sequence[Outcome], worker: str
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        for outcome in outcomes:
            params = _outcome_params(outcome, worker)
            if outcome.kind == "done":
                yield self._sql(_sql.DONE), params
            elif outcome.kind == "dead":
                yield self._sql(_sql.DEAD), params
            else:  # retry, release: requeued unless superseded by a newer keyed job
                yield self._sql(_sql.REQUEUE), params
                yield self._sql(_sql.SUPERSEDED), params  # only matches if not requeued


# ---- SQLite, stdlib ---------------------------------------------------------


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
        if sqlite3.sqlite_version_info < _MIN_SQLITE:
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


# ---- SQLAlchemy (SQLite or PostgreSQL) ----------------------------------------


class SQLAlchemyStore(Store):
    """The job table in a SQLAlchemy database (SQLite or PostgreSQL), through *engine*.

    Each operation checks a connection out of the engine's pool; the
    transactional outbox writes on the caller's connection instead
    (:meth:`insert_on`).
    """

    def __init__(self, engine: Any, *, table: str) -> None:
        from sqlalchemy import text  # noqa: PLC0415 - SQLAlchemy is optional

        name = engine.dialect.name
        if name not in ("sqlite", "postgresql"):
            msg = (
                f"Jobs(engine): the job table lives on SQLite or PostgreSQL; got a {name} engine "
                f"({engine.url!r})."
            )
            raise JobsConfigurationError(msg)
        if name == "sqlite" and sqlite3.sqlite_version_info < _MIN_SQLITE:
            msg = (
                f"tocsin.background needs SQLite >= 3.35 (UPDATE ... RETURNING); found "
                f"{sqlite3.sqlite_version}."
            )
            raise JobsConfigurationError(msg)
        self.engine = engine
        self.table = table
        self.postgresql = name == "postgresql"
        self.identity = database_identity(engine.url) + f"#{table}"
        self._text = text
        self._statements: dict[str, Any] = {}
        self._schema_ready = False
        self._schema_lock = threading.Lock()

    def statement(self, template: str) -> Any:
        """The ``text()`` construct for *template* (cached: SQLAlchemy caches its compilation)."""
        found = self._statements.get(template)
        if found is None:
            found = self._statements[template] = self._text(self._sql(template))
        return found

    def ensure_schema(self, connection: Any = None) -> None:
        """Create the table if missing, on *connection* (in its transaction) or on a new one."""
        if self._schema_ready:
            return
        if connection is not None:
            for statement in _sql.SCHEMA:
                connection.execute(self.statement(statement))
            return  # ready once that transaction commits: checked again until then
        with self._schema_lock:
            for _attempt in range(3):
                try:
                    with self.engine.begin() as conn:
                        for statement in _sql.SCHEMA:
                            conn.execute(self.statement(statement))
                    break
                except Exception:
                    if not self.exists():
                        raise
                    break
            self._schema_ready = True

    def schema_committed(self) -> None:
        """A transaction that ran ``ensure_schema(connection)`` committed: the table exists."""
        self._schema_ready = True

    def exists(self) -> bool:
        """Whether the table exists (committed)."""
        from sqlalchemy import inspect  # noqa: PLC0415

        with self.engine.connect() as conn:
            return bool(inspect(conn).has_table(self.table))

    def insert(self, job: NewJob) -> None:
        self.ensure_schema()
        with self.engine.begin() as conn:
            self.insert_on(conn, job)

    def insert_on(self, connection: Any, job: NewJob) -> None:
        """Write *job* on *connection*, in whatever transaction it is in."""
        template = _sql.INSERT_KEYED if job.job_key is not None else _sql.INSERT
        connection.execute(self.statement(template), job.params())

    def notify_on(self, connection: Any) -> None:
        """PostgreSQL: wake listening workers when *connection*'s transaction commits."""
        connection.exec_driver_sql(f"NOTIFY {self.channel}")

    @property
    def channel(self) -> str:
        """The NOTIFY channel of this table."""
        return f"{self.table}_wakeup"

    def settle_and_claim(
        self, outcomes: Sequence[Outcome], *, worker: str, limit: int, now: float, lease: float
    ) -> list[Claimed]:
        self.ensure_schema()
        claim = _sql.CLAIM_POSTGRESQL if self.postgresql else _sql.CLAIM
        if not outcomes and not self.postgresql:  # SQLite: look before taking the write lock
            if limit <= 0:
                return []
            with self.engine.connect() as conn:
                if conn.execute(self.statement(_sql.ANY_DUE), {"now": now}).first() is None:
                    return []
        with self.engine.begin() as conn:
            for statement, params in self._settle_statements(outcomes, worker):
                conn.execute(self._cached(statement), params)
            if limit <= 0:
                return []
            rows = conn.execute(
                self.statement(claim),
                {"now": now, "lease_until": now + lease, "worker": worker, "limit": limit},
            ).all()
        return [Claimed(*row) for row in rows]

    def _cached(self, sql: str) -> Any:
        found = self._statements.get(sql)
        if found is None:
            found = self._statements[sql] = self._text(sql)
        return found

    def renew(self, worker: str, lease_until: float) -> None:
        with self.engine.begin() as conn:
            conn.execute(self.statement(_sql.RENEW), {"worker": worker, "lease_until": lease_until})

    def execute(self, statement: str, params: Iterable[dict[str, Any]]) -> int:
        self.ensure_schema()
        changed = 0
        with self.engine.begin() as conn:
            for one in params:
                changed += conn.execute(self._cached(statement), one).rowcount
        return changed

    def query(self, statement: str, params: dict[str, Any]) -> list[Sequence[Any]]:
        self.ensure_schema()
        with self.engine.connect() as conn:
            return [tuple(row) for row in conn.execute(self._cached(statement), params)]

    def write(self, statement: str, params: dict[str, Any]) -> list[Sequence[Any]]:
        self.ensure_schema()
        with self.engine.begin() as conn:
            return [tuple(row) for row in conn.execute(self._cached(statement), params)]

    def close(self) -> None:
        self.engine.dispose()


def database_identity(url: Any) -> str:
    """Name a database across processes: backend, host, port, database; no driver or password.

    A SQLite file is named by its absolute path.
    """
    backend = url.get_backend_name()
    if backend == "sqlite":
        database = url.database or ""
        if database in ("", ":memory:") or database.startswith("file:"):
            return f"sqlite:///{database}"
        return f"sqlite:///{Path(database).resolve()}"
    host = url.host or ""
    port = f":{url.port}" if url.port else ""
    user = f"{url.username}@" if url.username else ""
    options = url.query.get("options", "")
    suffix = f"?options={options}" if options else ""  # a search_path can select another table
    return f"{backend}://{user}{host}{port}/{url.database or ''}{suffix}"


def check_table(table: str) -> str:
    """Return *table* if it is a plain identifier, else raise."""
    if not isinstance(table, str) or not _TABLE_NAME.fullmatch(table):
        msg = (
            f"table= must be a plain SQL identifier (letters, digits, _; at most 51 characters); "
            f"got {table!r}."
        )
        raise JobsConfigurationError(msg)
    return table


def open_store(target: object, *, table: str) -> Store:
    """The store for ``Jobs(target)``: a ``sqlite:///`` URL or path, another URL, or an Engine."""
    check_table(table)
    if isinstance(target, os.PathLike):
        return SQLiteStore(f"sqlite:///{os.fspath(target)}", table=table)
    if isinstance(target, str):
        if target.startswith("sqlite://") and "+" not in target.split("://", 1)[0]:
            return SQLiteStore(target, table=table)
        if "://" not in target:
            msg = (
                f"Jobs() takes a database URL ('sqlite:///jobs.db', 'postgresql+psycopg://...'), a path or a "
                f"SQLAlchemy Engine; got {target!r}."
            )
            raise JobsConfigurationError(msg)
        return SQLAlchemyStore(_create_engine(target), table=table)
    if type(target).__name__ == "AsyncEngine":
        msg = (
            f"Jobs() needs a synchronous Engine; got {target!r}. Pass create_engine() of the same database "
            "(sends inside an AsyncSession on that database still write the job in the session's "
            "transaction)."
        )
        raise JobsConfigurationError(msg)
    if hasattr(target, "dialect") and hasattr(target, "begin") and hasattr(target, "url"):
        return SQLAlchemyStore(target, table=table)
    msg = (
        f"Jobs() takes a database URL ('sqlite:///jobs.db', 'postgresql+psycopg://...'), a path or a "
        f"SQLAlchemy Engine; got {target!r} ({type(target).__name__})."
    )
    raise JobsConfigurationError(msg)


def _create_engine(url: str) -> Any:
    try:
        from sqlalchemy import create_engine  # noqa: PLC0415 - optional
    except ImportError:
        msg = (
            f"Jobs({url!r}) requires SQLAlchemy: pip install 'tocsin[sqlalchemy]' "
            "(the embedded store, Jobs('sqlite:///jobs.db'), needs nothing)"
        )
        raise ImportError(msg) from None
    return create_engine(url)
