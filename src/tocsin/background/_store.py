"""The job store's contract: the rows it reads and writes, the protocol every backend provides.

Two backends run the same statements (``_sql``) and the same protocol:
:class:`~._sqlite_store.SQLiteStore` (the embedded store, stdlib
``sqlite3``) and :class:`~._sqlalchemy_store.SQLAlchemyStore` (SQLite or
PostgreSQL through an Engine); :func:`open_store` picks one for
``Jobs(target)``.

* :meth:`Store.insert`: one job in its own transaction (committed on return);
  ``SQLAlchemyStore.insert_on(connection, job)`` writes it on a connection
  the caller's transaction owns (the transactional outbox).
* :meth:`Store.settle_and_claim`: one write transaction that records the
  outcomes of finished attempts (delete, requeue with backoff, dead letter)
  and claims the next due jobs under a lease.
* :meth:`Store.renew`: lease renewal; an ``Outcome`` of kind ``"release"``
  gives a claim back on shutdown.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from . import _sql
from ._errors import JobsConfigurationError

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["MIN_SQLITE", "Claimed", "Job", "NewJob", "Outcome", "Store", "check_table", "open_store"]

_TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,50}")
MIN_SQLITE = (3, 35, 0)  # UPDATE ... RETURNING


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
    # The backends build on this module's Store: imported here, not at the top.
    from ._sqlalchemy_store import SQLAlchemyStore, engine_for  # noqa: PLC0415 - see above
    from ._sqlite_store import SQLiteStore  # noqa: PLC0415 - see above

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
        return SQLAlchemyStore(engine_for(target), table=table)
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
