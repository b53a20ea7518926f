"""The job table and its claim protocol, as SQL shared by every backend.

One table holds every job that is not finished (finished jobs are deleted):

* ``state``: ``queued`` (waiting, perhaps for a retry), ``running`` (claimed
  by a worker under a lease) or ``failed`` (a dead letter).
* ``run_at``: when the job is due (queued), or when its lease expires
  (running); NULL for a dead letter. A worker claims rows with
  ``run_at <= now``, so a running job whose worker died (its lease not
  renewed) is claimed again, with no separate sweep. One index on
  ``run_at`` serves every claim.
* ``attempts``: incremented *at claim*, so a job that kills its worker still
  reaches its limit and the dead letters. Every later write about a claimed
  job is guarded by ``worker`` and ``attempts``: a worker that lost its lease
  cannot settle somebody else's claim.
* ``job_key``: at most one *queued* job per ``(receiver, job_key)`` (a
  partial unique index); a new job with the same key replaces the queued one
  (see ``INSERT_KEYED``).

Statements use ``:name`` parameters: the stdlib ``sqlite3`` module and
SQLAlchemy's ``text()`` both accept them. ``{t}`` is the table name.

The protocol (claim, settle, renew, release) is independent of what runs a
job, so a relay that hands committed jobs to another queue (Celery, with
``task_id`` = job id) can reuse it.
"""

from __future__ import annotations

__all__ = [
    "ANY_DUE",
    "CLAIM",
    "CLAIM_ONE",
    "CLAIM_POSTGRESQL",
    "COLUMNS",
    "DEAD",
    "DONE",
    "INSERT",
    "INSERT_KEYED",
    "LIST",
    "PURGE",
    "RELAY_DUE",
    "RELAY_SENT",
    "RELEASE",
    "RENEW",
    "REQUEUE",
    "RETRY_FAILED",
    "SCHEMA",
    "SUPERSEDED",
]

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS {t} (
    id VARCHAR(40) PRIMARY KEY,
    state VARCHAR(10) NOT NULL,
    run_at DOUBLE PRECISION,
    receiver TEXT NOT NULL,
    signal TEXT NOT NULL,
    payload TEXT NOT NULL,
    job_key TEXT,
    attempts INTEGER NOT NULL,
    max_attempts INTEGER NOT NULL,
    backoff DOUBLE PRECISION NOT NULL,
    max_backoff DOUBLE PRECISION NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    worker TEXT,
    last_error TEXT,
    origin TEXT
)""",
    "CREATE INDEX IF NOT EXISTS {t}_due ON {t} (run_at)",
    "CREATE UNIQUE INDEX IF NOT EXISTS {t}_key ON {t} (receiver, job_key) WHERE state = 'queued'",
)

#: What a claim returns, in this order (see ``_store.Claimed``).
COLUMNS = (
    "id, receiver, signal, payload, job_key, attempts, max_attempts, backoff, max_backoff, created_at, origin"
)

_INSERT = (
    "INSERT INTO {t} (id, state, run_at, receiver, signal, payload, job_key, attempts, max_attempts, "
    "backoff, max_backoff, created_at, origin) VALUES (:id, 'queued', :run_at, :receiver, :signal, "
    ":payload, :job_key, 0, :max_attempts, :backoff, :max_backoff, :created_at, :origin)"
)
INSERT = _INSERT

#: A keyed job replaces the queued job with the same receiver and key: the
#: newest arguments and id win, the earlier due time is kept (a stream of
#: sends cannot postpone the work forever).
INSERT_KEYED = _INSERT + (
    " ON CONFLICT (receiver, job_key) WHERE state = 'queued' DO UPDATE SET id = excluded.id, "
    "signal = excluded.signal, payload = excluded.payload, max_attempts = excluded.max_attempts, "
    "backoff = excluded.backoff, max_backoff = excluded.max_backoff, origin = excluded.origin, "
    "created_at = excluded.created_at, attempts = 0, last_error = NULL, "
    "run_at = CASE WHEN excluded.run_at < {t}.run_at THEN excluded.run_at ELSE {t}.run_at END"
)

_CLAIM = (
    "UPDATE {t} SET state = 'running', attempts = attempts + 1, run_at = :lease_until, worker = :worker "
    "WHERE id IN (SELECT id FROM {t} WHERE run_at <= :now ORDER BY run_at LIMIT :limit%s) "
    "RETURNING " + COLUMNS
)
#: Whether any job is due: a read, so an idle SQLite worker never takes the write lock.
ANY_DUE = "SELECT 1 FROM {t} WHERE run_at <= :now LIMIT 1"
#: SQLite: the statement is atomic (one writer at a time); RETURNING needs 3.35.
CLAIM = _CLAIM % ""
#: PostgreSQL: concurrent claimers skip each other's rows instead of waiting.
CLAIM_POSTGRESQL = _CLAIM % " FOR UPDATE SKIP LOCKED"

_OURS = "id = :id AND worker = :worker AND attempts = :attempt AND state = 'running'"
#: A finished job is deleted, if the claim is still ours.
DONE = "DELETE FROM {t} WHERE " + _OURS
#: A failed attempt waits for its retry; skipped when a newer queued job has
#: the same key (that one will do the work: see ``SUPERSEDED``).
_NO_NEWER = (
    " AND NOT EXISTS (SELECT 1 FROM {t} AS newer WHERE newer.state = 'queued' "
    "AND newer.receiver = {t}.receiver AND newer.job_key = {t}.job_key)"
)
REQUEUE = (
    "UPDATE {t} SET state = 'queued', run_at = :run_at, worker = NULL, last_error = :error, "
    "attempts = attempts - :undo WHERE " + _OURS + _NO_NEWER
)
#: Our claim of a job superseded by a newer queued job with its key.
SUPERSEDED = DONE
#: A dead letter keeps its last error; it is never claimed (run_at is NULL).
DEAD = "UPDATE {t} SET state = 'failed', run_at = NULL, worker = NULL, last_error = :error WHERE " + _OURS
#: Lease renewal for every job this worker holds.
RENEW = "UPDATE {t} SET run_at = :lease_until WHERE worker = :worker AND state = 'running'"
#: Give back claimed jobs on shutdown (``undo`` = 1 for those not started).
RELEASE = REQUEUE

LIST = (
    "SELECT id, state, run_at, receiver, signal, payload, job_key, attempts, max_attempts, created_at, "
    "worker, last_error FROM {t}"
)
#: Dead letters back to the queue, attempts reset; those whose key has a
#: newer queued job are superseded instead (deleted by ``PURGE``).
RETRY_FAILED = (
    "UPDATE {t} SET state = 'queued', run_at = :now, attempts = 0, worker = NULL "
    "WHERE state = 'failed' AND id = :id" + _NO_NEWER
)
PURGE = "DELETE FROM {t} WHERE id = :id AND state = :state"

# ---- the Celery relay (``_celery``) -----------------------------------------------
#
# A job handed to Celery is ``sent``: ``run_at`` is when the relay sends it
# again if no task has claimed it by then (a message lost by the broker).
# The relay sends every row due by ``run_at``: queued and due, sent and
# overdue, running with an expired lease (its Celery worker died). The task
# claims its row by id (``CLAIM_ONE``), so duplicate messages never run a job
# twice at once, and a finished job (deleted) never runs again.

#: Rows the relay hands to Celery, oldest first (dead letters have no run_at).
RELAY_DUE = (
    "SELECT id, state, run_at, receiver, signal, origin FROM {t} WHERE run_at <= :now ORDER BY run_at "
    "LIMIT :limit"
)
#: After the broker accepted the message: ``sent``, unless a task claimed it
#: (or a send replaced it) meanwhile: the row must be as the relay read it.
RELAY_SENT = (
    "UPDATE {t} SET state = 'sent', run_at = :resend_at, worker = NULL "
    "WHERE id = :id AND state = :state AND run_at = :run_at"
)
#: The task's claim of its own job: sent, or due, or running under an expired
#: lease; ``attempts`` counted here, as every claim does.
CLAIM_ONE = (
    "UPDATE {t} SET state = 'running', attempts = attempts + 1, run_at = :lease_until, worker = :worker "
    "WHERE id = :id AND (state = 'sent' OR (state IN ('queued', 'running') AND run_at <= :now)) "
    "RETURNING " + COLUMNS
)
