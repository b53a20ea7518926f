"""The job table in a SQLAlchemy database, SQLite or PostgreSQL: ``Jobs(engine)``, ``Jobs("postgresql+...")``.

Each operation checks a connection out of the engine's pool; the
transactional outbox writes on the sender's own connection, in its
transaction (:meth:`SQLAlchemyStore.insert_on`). SQLAlchemy is imported only
when such a store is built: the embedded store needs nothing.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from . import _sql
from ._errors import JobsConfigurationError
from ._store import MIN_SQLITE, Claimed, NewJob, Outcome, Store

__all__ = ["SQLAlchemyStore", "database_identity", "engine_for"]


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
        if name == "sqlite" and sqlite3.sqlite_version_info < MIN_SQLITE:
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


def engine_for(url: str) -> Any:
    """``sqlalchemy.create_engine(url)``, or an ImportError naming the extra to install."""
    try:
        from sqlalchemy import create_engine  # noqa: PLC0415 - optional
    except ImportError:
        msg = (
            f"Jobs({url!r}) requires SQLAlchemy: pip install 'tocsin[sqlalchemy]' "
            "(the embedded store, Jobs('sqlite:///jobs.db'), needs nothing)"
        )
        raise ImportError(msg) from None
    return create_engine(url)
